//! Test helpers: the test server's URL and a storage in a fresh schema that is dropped
//! when the helper goes out of scope, even when the test panics.

use crate::PostgresStorage;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `OMNIQ_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`.
pub(crate) fn url() -> String {
    std::env::var("OMNIQ_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A storage in its own schema, dropped on drop.
pub(crate) struct Fresh {
    pub(crate) storage: PostgresStorage,
    pub(crate) ns: String,
}

impl Fresh {
    pub(crate) async fn new(what: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let ns = format!(
            "omniq_unit_{what}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let storage = PostgresStorage::builder()
            .url(&url())
            .namespace(&ns)
            .build()
            .await
            .unwrap_or_else(|e| panic!("test storage: {e}"));
        Self { storage, ns }
    }
}

impl Drop for Fresh {
    fn drop(&mut self) {
        let ns = self.ns.clone();
        // Its own thread and runtime: this may run inside (or after) a test's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(pool) = sqlx::PgPool::connect(&url()).await {
                        let _ = sqlx::query(&format!(r#"DROP SCHEMA IF EXISTS "{ns}" CASCADE"#))
                            .execute(&pool)
                            .await;
                        pool.close().await;
                    }
                });
            }
        })
        .join();
    }
}
