//! Opening the database: the single-connection writer pool, the reader pool, the
//! keeper of in-memory databases, and `begin` (with recovery of a writer connection that
//! SQLite left inside a failed transaction).

use crate::config::{Durability, Location, SqliteConfig};
use crate::convert::{duration_micros, now_micros};
use crate::error::{BACKEND, Error, Result, config, is_cant_open};
use crate::schema::{self, Sql};
use crate::storage::{Inner, SqliteStorage};
use omniq_core::StorageErrorKind;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64};
use tokio::sync::broadcast;

/// Capacity of the wake-up channel; slow subscribers just miss hints.
const WAKE_CAPACITY: usize = 1024;

impl SqliteStorage {
    pub(crate) async fn connect(cfg: SqliteConfig) -> Result<Self> {
        let location = cfg
            .location
            .clone()
            .ok_or_else(|| config("no database location"))?;
        let base = SqliteConnectOptions::new()
            .busy_timeout(cfg.busy_timeout)
            .foreign_keys(false)
            .statement_cache_capacity(256);
        let mut keeper = None;
        let (writer, reader) = match &location {
            Location::File(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|source| Error::CreateDir {
                        path: parent.to_path_buf(),
                        source,
                    })?;
                }
                let synchronous = match cfg.durability {
                    Durability::Full => SqliteSynchronous::Full,
                    Durability::Normal => SqliteSynchronous::Normal,
                };
                let file = base
                    .filename(path)
                    .create_if_missing(true)
                    .synchronous(synchronous);
                let writer_opts = file.clone().journal_mode(SqliteJournalMode::Wal);
                let writer = connect_writer(writer_opts, 0).await.map_err(|e| match e {
                    Error::Sqlx(source) if is_cant_open(&source) => Error::Open {
                        path: path.clone(),
                        source,
                    },
                    other => other,
                })?;
                let reader = SqlitePoolOptions::new()
                    .test_before_acquire(false)
                    .max_connections(cfg.max_connections)
                    .min_connections(0)
                    .connect_lazy_with(file);
                (writer, reader)
            }
            Location::Memory => {
                // A named shared-cache memory database, private to this storage. The
                // keeper connection holds it alive; the pool's one connection can then be
                // replaced (after an error) without losing the data.
                let name = format!(
                    "sqlite:file:omniq-{}?mode=memory&cache=shared",
                    uuid::Uuid::new_v4()
                );
                let opts = name
                    .parse::<SqliteConnectOptions>()?
                    .busy_timeout(cfg.busy_timeout)
                    .foreign_keys(false)
                    .statement_cache_capacity(256);
                keeper = Some(std::sync::Mutex::new(
                    sqlx::Connection::connect_with(&opts).await?,
                ));
                let writer = connect_writer(opts, 1).await?;
                (writer.clone(), writer)
            }
        };
        schema::migrate(&writer, &cfg.namespace).await?;
        let (wake, _) = broadcast::channel(WAKE_CAPACITY);
        Ok(Self {
            inner: Arc::new(Inner {
                writer,
                reader,
                sql: Sql::new(&cfg.namespace),
                namespace: cfg.namespace,
                location,
                format: cfg.format,
                result_ttl_us: duration_micros(cfg.result_ttl),
                closed: AtomicBool::new(false),
                wake,
                _keeper: keeper,
                last_sweep_us: AtomicI64::new(now_micros()),
            }),
        })
    }

    /// A write transaction (`BEGIN IMMEDIATE`) on the single writer connection.
    pub(crate) async fn begin(&self) -> Result<Transaction<'static, Sqlite>> {
        self.check_open()?;
        match self.inner.writer.begin_with("BEGIN IMMEDIATE").await {
            // SQLite rolls some failed transactions back by itself (SQLITE_FULL, IOERR,
            // NOMEM, …); sqlx then still counts one as open on that connection and
            // refuses to begin another. Replace the connection rather than fail every
            // write from now on (S3).
            Err(sqlx::Error::InvalidSavePointStatement) => {
                tracing::warn!(target: "omniq::storage", backend = BACKEND, "writer connection left in a failed transaction; reconnecting");
                let mut conn = self.inner.writer.acquire().await?;
                conn.close_on_drop();
                drop(conn);
                Ok(self.inner.writer.begin_with("BEGIN IMMEDIATE").await?)
            }
            other => Ok(other?),
        }
    }
}

/// Connects the single-connection writer pool. Switching a new file to WAL takes an
/// exclusive lock that busy_timeout does not wait on, so a racing start is retried.
async fn connect_writer(opts: SqliteConnectOptions, min_connections: u32) -> Result<SqlitePool> {
    let mut attempt = 0u32;
    loop {
        // A local file has no connection to go stale: skip the ping per acquire.
        let pool = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .min_connections(min_connections)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts.clone())
            .await
            .map_err(Error::from);
        match pool {
            Ok(pool) => return Ok(pool),
            Err(e) if e.kind() == StorageErrorKind::Unavailable && attempt < 50 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Durability, SqliteStorage};
    use omniq_core::{Storage, Task};

    /// A write that fails with SQLITE_FULL (the disk is full) must not leave the
    /// single writer connection unusable: once space is back, writes succeed again.
    #[tokio::test]
    async fn writes_recover_after_the_disk_was_full() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SqliteStorage::open(dir.path().join("full.db"))
            .await
            .expect("open");
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&s.inner.writer)
            .await
            .expect("page_count");
        // The writer connection may not grow the file any more: a "full disk".
        sqlx::query(&format!("PRAGMA max_page_count = {pages}"))
            .execute(&s.inner.writer)
            .await
            .expect("limit");
        let big: Vec<Task> = (0..200)
            .map(|_| Task::new("f", omniq_core::Payload(vec![7u8; 4096])))
            .collect();
        let err = s.enqueue(big).await.expect_err("disk full");
        assert!(err.is_temporary(), "SQLITE_FULL is temporary: {err}");
        // Space comes back.
        sqlx::query("PRAGMA max_page_count = 1073741823")
            .execute(&s.inner.writer)
            .await
            .expect("lift the limit");
        let ok = s
            .enqueue(vec![Task::new("f", omniq_core::Payload(b"1".to_vec()))])
            .await;
        assert!(ok.is_ok(), "writes work again: {ok:?}");
    }

    #[tokio::test]
    async fn file_databases_sync_every_commit_unless_told_otherwise() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (durability, expected) in [(None, 2_i64), (Some(Durability::Normal), 1)] {
            let mut b = SqliteStorage::builder().path(dir.path().join(format!("{expected}.db")));
            if let Some(d) = durability {
                b = b.durability(d);
            }
            let s = b.build().await.expect("build");
            let mode: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&s.inner.writer)
                .await
                .expect("pragma");
            assert_eq!(mode, expected, "{durability:?}: 2 = FULL, 1 = NORMAL");
        }
    }
}
