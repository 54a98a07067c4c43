//! Helpers for the PostgreSQL tests: the server URL, fresh namespaces dropped when the
//! test ends (even when it panics), tasks and claims.

#![allow(dead_code)]

use omniq_core::{ClaimRequest, Claimed, Payload, Storage, Task};
use omniq_postgres::{PostgresStorage, PostgresStorageBuilder};
use std::sync::atomic::{AtomicUsize, Ordering};
use time::{Duration, OffsetDateTime};

/// `OMNIQ_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`.
pub(crate) fn url() -> String {
    std::env::var("OMNIQ_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The URL with one more query parameter.
pub(crate) fn url_with(param: &str) -> String {
    let u = url();
    let sep = if u.contains('?') { '&' } else { '?' };
    format!("{u}{sep}{param}")
}

/// A namespace of its own, dropped (with everything in it) on drop.
pub(crate) struct Namespace {
    pub(crate) name: String,
}

impl Namespace {
    pub(crate) fn new(what: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        Self {
            name: format!(
                "omniq_it_{what}_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    /// A builder on the test server in this namespace.
    pub(crate) fn builder(&self) -> PostgresStorageBuilder {
        PostgresStorage::builder().url(&url()).namespace(&self.name)
    }

    /// A storage with the defaults in this namespace.
    pub(crate) async fn storage(&self) -> PostgresStorage {
        self.builder()
            .build()
            .await
            .unwrap_or_else(|e| panic!("storage in {}: {e}", self.name))
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Its own thread and runtime: this may run inside (or after) a test's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(pool) = sqlx::PgPool::connect(&url()).await {
                        let _ = sqlx::query(&format!(r#"DROP SCHEMA IF EXISTS "{name}" CASCADE"#))
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

/// Now, to the whole second.
pub(crate) fn now() -> OffsetDateTime {
    let n = OffsetDateTime::now_utc();
    n.replace_nanosecond(0).unwrap_or(n)
}

/// A Pending task on `queue` created at `created`.
pub(crate) fn task(queue: &str, created: OffsetDateTime) -> Task {
    let mut t = Task::new("tests.f", Payload(b"[1]".to_vec()));
    t.queue = queue.to_string();
    t.created_at = created;
    t.updated_at = created;
    t
}

/// Claims up to `limit` from `queue` at `at` with a 30 s lease.
pub(crate) async fn claim(
    s: &dyn Storage,
    queue: &str,
    limit: usize,
    at: OffsetDateTime,
) -> Vec<Claimed> {
    s.claim(ClaimRequest {
        queues: vec![queue.to_string()],
        limit,
        now: at,
        lease: Duration::seconds(30),
    })
    .await
    .expect("claim")
}
