//! The OmniQ conformance suite against the SQLite backend. Every case gets a fresh
//! namespace in ONE shared WAL database file, so namespace isolation (T14) is checked
//! where it matters: tables of different namespaces side by side in the same file.
//!
//! The file is `shared.db` in a temporary directory, or the database
//! `OMNIQ_CONFORMANCE_URL` names (`sqlite://PATH` or a path); there, `cleanup` drops the
//! tables this run created and leaves everything else alone.

use omniq_conformance::{StorageFactory, async_trait};
use omniq_core::{Storage, StorageError, StorageErrorKind};
use omniq_sqlite::{Location, SqliteConfig, SqliteStorage};
use std::path::PathBuf;
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

/// The database every case's namespace lives in.
fn shared_db() -> Result<PathBuf, StorageError> {
    match std::env::var("OMNIQ_CONFORMANCE_URL") {
        Ok(url) => match SqliteConfig::from_url(&url)?.location {
            Some(Location::File(path)) => Ok(path),
            _ => Err(StorageError::new(
                StorageErrorKind::Config,
                "sqlite",
                format!("OMNIQ_CONFORMANCE_URL={url:?} is not a database file (sqlite://PATH)"),
            )),
        },
        Err(_) => Ok(dir().path().join("shared.db")),
    }
}

/// Namespaces of this run start with this prefix (the process id keeps runs against
/// one shared database apart).
fn prefix() -> String {
    format!("conf{}_", std::process::id())
}

struct SqliteFactory {
    next: AtomicUsize,
}

impl SqliteFactory {
    fn next_name(&self) -> String {
        format!("{}{}", prefix(), self.next.fetch_add(1, Ordering::Relaxed))
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
            .path(shared_db()?)
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

    /// Drops every table this run created in the shared database.
    async fn cleanup(&self) -> Result<(), StorageError> {
        let fail =
            |e: sqlx::Error| StorageError::new(StorageErrorKind::Backend, "sqlite", e.to_string());
        let url = format!("sqlite://{}", shared_db()?.display());
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
            .await
            .map_err(fail)?;
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, length(?1)) = ?1",
        )
        .bind(prefix())
        .fetch_all(&mut conn)
        .await
        .map_err(fail)?;
        for table in tables {
            sqlx::Executor::execute(
                &mut conn,
                format!(r#"DROP TABLE IF EXISTS "{table}""#).as_str(),
            )
            .await
            .map_err(fail)?;
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    omniq_conformance::run(SqliteFactory {
        next: AtomicUsize::new(0),
    })
}
