//! The OmniQ conformance suite against the PostgreSQL backend (`OMNIQ_CONFORMANCE_URL`,
//! else `OMNIQ_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`).
//! Every case gets a fresh namespace — its own schema — in one database, so namespace
//! isolation is checked where it matters; `cleanup` drops every schema this run created.

use omniq_conformance::{StorageFactory, async_trait};
use omniq_core::{Storage, StorageError, StorageErrorKind};
use omniq_postgres::PostgresStorage;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn url() -> String {
    std::env::var("OMNIQ_CONFORMANCE_URL")
        .or_else(|_| std::env::var("OMNIQ_TEST_POSTGRES_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Schemas of this run start with this prefix (the process id keeps parallel runs apart).
fn prefix() -> String {
    format!("omniq_conf_{}_", std::process::id())
}

struct PostgresFactory {
    next: AtomicUsize,
}

impl PostgresFactory {
    fn next_name(&self) -> String {
        format!("{}{}", prefix(), self.next.fetch_add(1, Ordering::Relaxed))
    }
}

#[async_trait]
impl StorageFactory for PostgresFactory {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn create(&self) -> Result<Arc<dyn Storage>, StorageError> {
        let storage = PostgresStorage::builder()
            .url(&url())
            .namespace(&self.next_name())
            .max_connections(8)
            .build()
            .await?;
        Ok(Arc::new(storage))
    }

    /// A storage whose schema was dropped behind its back: every operation fails with a
    /// `Backend` StorageError (undefined table), never `NotFound`.
    async fn broken(&self) -> Option<Arc<dyn Storage>> {
        let name = self.next_name();
        let storage = PostgresStorage::builder()
            .url(&url())
            .namespace(&name)
            .max_connections(1)
            .listen(false)
            .build()
            .await
            .unwrap_or_else(|e| panic!("building the broken instance: {e}"));
        // A setup failure must not turn the "raises StorageError" cases into skips.
        sqlx::query(&format!(r#"DROP SCHEMA "{name}" CASCADE"#))
            .execute(storage.pool())
            .await
            .unwrap_or_else(|e| panic!("dropping the broken instance's schema: {e}"));
        Some(Arc::new(storage))
    }

    /// Drops every schema this run created.
    async fn cleanup(&self) -> Result<(), StorageError> {
        let fail = |e: sqlx::Error| {
            StorageError::new(StorageErrorKind::Unavailable, "postgres", e.to_string())
        };
        let pool = sqlx::PgPool::connect(&url()).await.map_err(fail)?;
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1)",
        )
        .bind(prefix())
        .fetch_all(&pool)
        .await
        .map_err(fail)?;
        for name in names {
            sqlx::query(&format!(r#"DROP SCHEMA IF EXISTS "{name}" CASCADE"#))
                .execute(&pool)
                .await
                .map_err(fail)?;
        }
        pool.close().await;
        Ok(())
    }
}

fn main() -> ExitCode {
    omniq_conformance::run(PostgresFactory {
        next: AtomicUsize::new(0),
    })
}
