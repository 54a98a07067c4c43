//! The OmniQ conformance suite against the SQLite backend. Every case gets a fresh
//! namespace in ONE shared WAL database file, so namespace isolation (T14) is checked
//! where it matters: tables of different namespaces side by side in the same file.

use omniq_conformance::{StorageFactory, async_trait};
use omniq_core::{Storage, StorageError};
use omniq_sqlite::SqliteStorage;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// The directory every case's database lives in; removed when the process exits
/// normally (kept for inspection when it is killed).
fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("omniq-sqlite-conformance-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"))
    })
}

struct SqliteFactory {
    next: AtomicUsize,
}

impl SqliteFactory {
    fn next_name(&self) -> String {
        format!("case{}", self.next.fetch_add(1, Ordering::Relaxed))
    }
}

#[async_trait]
impl StorageFactory for SqliteFactory {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn create(&self) -> Result<Arc<dyn Storage>, StorageError> {
        let name = self.next_name();
        let storage = SqliteStorage::builder()
            .path(dir().path().join("shared.db"))
            .namespace(&name)
            .build()
            .await?;
        Ok(Arc::new(storage))
    }

    /// A storage whose tables were dropped behind its back: every operation fails
    /// with a `Backend` StorageError ("no such table").
    async fn broken(&self) -> Option<Arc<dyn Storage>> {
        let name = self.next_name();
        let path = dir().path().join(format!("{name}-broken.db"));
        let storage = SqliteStorage::builder()
            .path(&path)
            .namespace(&name)
            .build()
            .await
            .unwrap_or_else(|e| panic!("building the broken instance: {e}"));
        let url = format!("sqlite://{}", path.display());
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connecting to break the instance: {e}"));
        let drop = format!(
            r#"DROP TABLE "{name}_tasks"; DROP TABLE "{name}_results"; DROP TABLE "{name}_schema_version";"#
        );
        // A setup failure must not turn the "raises StorageError" cases into skips.
        sqlx::Executor::execute(&mut conn, drop.as_str())
            .await
            .unwrap_or_else(|e| panic!("dropping the broken instance's tables: {e}"));
        Some(Arc::new(storage))
    }
}

fn main() -> ExitCode {
    omniq_conformance::run(SqliteFactory {
        next: AtomicUsize::new(0),
    })
}
