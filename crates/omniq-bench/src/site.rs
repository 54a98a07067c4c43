//! Where a backend's benchmark runs: opening a storage in a namespace of its own, the
//! floor probe, and deleting what a run created.

use anyhow::{Context, Result};
use omniq::Storage;
use omniq::file::FileStorage;
use omniq::postgres::PostgresStorage;
use omniq::redis::RedisStorage;
use omniq::redis::fred::prelude::*;
use omniq::sqlite::SqliteStorage;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The four backends of the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Backend {
    /// omniq-file in a local directory, default durability.
    File,
    /// omniq-sqlite in a database file, default durability.
    Sqlite,
    /// omniq-postgres on the test server.
    Postgres,
    /// omniq-redis on the test server.
    Redis,
}

impl Backend {
    pub(crate) const ALL: [Backend; 4] = [
        Backend::File,
        Backend::Sqlite,
        Backend::Postgres,
        Backend::Redis,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::File => "file",
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Redis => "redis",
        }
    }

    /// What the floor probe measures, for the report.
    pub(crate) fn floor_what(self) -> &'static str {
        match self {
            Backend::File => {
                "conditional creates of 300-byte files through object_store LocalFileSystem"
            }
            Backend::Sqlite => "single-row INSERT commits (WAL, synchronous=FULL, as the backend)",
            Backend::Postgres => "single-row INSERT commits into a logged table",
            Backend::Redis => "single INCR round trips on one connection",
        }
    }
}

/// A backend plus where it lives: a directory for the embedded backends, a URL for the
/// servers.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub(crate) backend: Backend,
    pub(crate) location: String,
}

/// `OMNIQ_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`.
pub(crate) fn postgres_url() -> String {
    std::env::var("OMNIQ_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `OMNIQ_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`.
pub(crate) fn redis_url() -> String {
    std::env::var("OMNIQ_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

impl Site {
    /// The site of `backend`; the embedded backends live under `dir`.
    pub(crate) fn new(backend: Backend, dir: &Path) -> Self {
        let location = match backend {
            Backend::File | Backend::Sqlite => dir.display().to_string(),
            Backend::Postgres => postgres_url(),
            Backend::Redis => redis_url(),
        };
        Self { backend, location }
    }

    fn sqlite_path(&self, ns: &str) -> PathBuf {
        Path::new(&self.location).join(format!("{ns}.db"))
    }

    /// A storage in namespace `ns` (SQLite: a database file of its own, named after it).
    pub(crate) async fn open(&self, ns: &str) -> Result<Arc<dyn Storage>> {
        let storage: Arc<dyn Storage> = match self.backend {
            Backend::File => Arc::new(
                FileStorage::builder()
                    .dir(&self.location)
                    .namespace(ns)
                    .build()
                    .await?,
            ),
            Backend::Sqlite => Arc::new(
                SqliteStorage::builder()
                    .path(self.sqlite_path(ns))
                    .namespace(ns)
                    .build()
                    .await?,
            ),
            Backend::Postgres => Arc::new(
                PostgresStorage::builder()
                    .url(&self.location)
                    .namespace(ns)
                    .build()
                    .await?,
            ),
            Backend::Redis => Arc::new(
                RedisStorage::builder()
                    .url(&self.location)
                    .namespace(ns)
                    .build()
                    .await?,
            ),
        };
        Ok(storage)
    }

    /// Deletes everything namespace `ns` holds (and the floor probe's leftovers in it).
    pub(crate) async fn cleanup(&self, ns: &str) -> Result<()> {
        match self.backend {
            Backend::File => {
                let dir = Path::new(&self.location).join(ns);
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)
                        .with_context(|| format!("removing {}", dir.display()))?;
                }
            }
            Backend::Sqlite => {
                let db = self.sqlite_path(ns);
                for suffix in ["", "-wal", "-shm"] {
                    let p = PathBuf::from(format!("{}{suffix}", db.display()));
                    if p.exists() {
                        std::fs::remove_file(&p)
                            .with_context(|| format!("removing {}", p.display()))?;
                    }
                }
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.location).await?;
                sqlx::query(&format!(r#"DROP SCHEMA IF EXISTS "{ns}" CASCADE"#))
                    .execute(&pool)
                    .await?;
                pool.close().await;
            }
            Backend::Redis => {
                let client = redis_client(&self.location).await?;
                let mut keys: Vec<Key> = Vec::new();
                for pattern in [
                    format!("omniq:{{{ns}:*"),
                    format!("omniq:{ns}:*"),
                    format!("omniq:{{{ns}}}:*"),
                ] {
                    use futures::TryStreamExt;
                    let found: Vec<Key> = client
                        .scan_buffered(pattern, Some(1000), None)
                        .try_collect()
                        .await?;
                    keys.extend(found);
                }
                for chunk in keys.chunks(1000) {
                    let dels = chunk.iter().map(|k| client.del::<(), _>(k.clone()));
                    futures::future::try_join_all(dels).await?;
                }
                let _ = client.quit().await;
            }
        }
        Ok(())
    }

    /// The backend's raw durable single-write rate right now: up to `ops` writes, one at a
    /// time, for at most `budget`. Writes go into namespace `ns` (or a file named after it),
    /// which [`Site::cleanup`] deletes.
    pub(crate) async fn floor(&self, ns: &str, ops: usize, budget: Duration) -> Result<f64> {
        match self.backend {
            Backend::File => {
                use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
                use object_store::{local::LocalFileSystem, path};
                let dir = Path::new(&self.location).join(ns).join("floor");
                std::fs::create_dir_all(&dir)?;
                let store = LocalFileSystem::new_with_prefix(&dir)?;
                let store = &store;
                timed(ops, budget, move |i| {
                    let payload = PutPayload::from(vec![0u8; 300]);
                    async move {
                        // A conditional create, as the backend writes every record.
                        let opts = PutOptions {
                            mode: PutMode::Create,
                            ..PutOptions::default()
                        };
                        store
                            .put_opts(&path::Path::from(format!("f{i}")), payload, opts)
                            .await?;
                        Ok(())
                    }
                })
                .await
            }
            Backend::Sqlite => {
                use sqlx::ConnectOptions;
                use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
                let path = Path::new(&self.location).join(format!("{ns}-floor.db"));
                let mut conn = SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .connect()
                    .await?;
                sqlx::query("CREATE TABLE floor (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
                    .execute(&mut conn)
                    .await?;
                let conn = tokio::sync::Mutex::new(conn);
                let c_ref = &conn;
                let rate = timed(ops, budget, move |i| async move {
                    let mut c = c_ref.lock().await;
                    sqlx::query("INSERT INTO floor (id, v) VALUES (?, ?)")
                        .bind(i as i64)
                        .bind(vec![0u8; 100])
                        .execute(&mut *c)
                        .await?;
                    Ok(())
                })
                .await?;
                use sqlx::Connection;
                conn.into_inner().close().await?;
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                Ok(rate)
            }
            Backend::Postgres => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&self.location).await?;
                sqlx::query(&format!(r#"CREATE SCHEMA IF NOT EXISTS "{ns}""#))
                    .execute(&mut conn)
                    .await?;
                sqlx::query(&format!(
                    r#"CREATE TABLE "{ns}".floor (id bigint PRIMARY KEY, v bytea NOT NULL)"#
                ))
                .execute(&mut conn)
                .await?;
                let insert = format!(r#"INSERT INTO "{ns}".floor (id, v) VALUES ($1, $2)"#);
                let conn = tokio::sync::Mutex::new(conn);
                let (c_ref, insert) = (&conn, &insert);
                let rate = timed(ops, budget, move |i| async move {
                    let mut c = c_ref.lock().await;
                    sqlx::query(insert)
                        .bind(i as i64)
                        .bind(vec![0u8; 100])
                        .execute(&mut *c)
                        .await?;
                    Ok(())
                })
                .await?;
                conn.into_inner().close().await?;
                Ok(rate)
            }
            Backend::Redis => {
                let client = redis_client(&self.location).await?;
                let key = format!("omniq:{ns}:floor");
                let (c_ref, key) = (&client, &key);
                let rate = timed(ops, budget, move |_| async move {
                    c_ref.incr::<i64, _>(key.as_str()).await?;
                    Ok(())
                })
                .await?;
                let _ = client.quit().await;
                Ok(rate)
            }
        }
    }

    /// CPU time (user + system) the backend's server process has used so far, in seconds,
    /// where the server reports it over its own protocol: Redis (`INFO cpu`). `None` for
    /// SQLite and file (their work runs in the worker process, so the worker's CPU figure
    /// holds it) and for PostgreSQL (whose per-connection processes report no CPU time).
    pub(crate) async fn server_cpu_s(&self) -> Result<Option<f64>> {
        match self.backend {
            Backend::Redis => {
                let client = redis_client(&self.location).await?;
                let info: String = client
                    .info(Some(omniq::redis::fred::types::InfoKind::Cpu))
                    .await?;
                let _ = client.quit().await;
                Ok(Some(redis_cpu_s(&info)?))
            }
            Backend::File | Backend::Sqlite | Backend::Postgres => Ok(None),
        }
    }
}

/// `used_cpu_sys` + `used_cpu_user` of an `INFO cpu` reply.
fn redis_cpu_s(info: &str) -> Result<f64> {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
            .ok_or_else(|| anyhow::anyhow!("INFO cpu has no {name}: {info}"))?
            .parse::<f64>()
            .map_err(|e| anyhow::anyhow!("INFO cpu's {name} is not a number: {e}"))
    };
    Ok(field("used_cpu_sys")? + field("used_cpu_user")?)
}

async fn redis_client(url: &str) -> Result<Client> {
    let config = Config::from_url(url)?;
    let client = Builder::from_config(config).build()?;
    client.init().await?;
    Ok(client)
}

/// Runs `op(0..)` one at a time until `ops` are done or `budget` has passed; returns ops/s.
async fn timed<F, Fut>(ops: usize, budget: Duration, mut op: F) -> Result<f64>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let t = Instant::now();
    let mut done = 0;
    while done < ops.max(1) {
        op(done).await?;
        done += 1;
        if t.elapsed() >= budget {
            break;
        }
    }
    Ok(done as f64 / t.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::redis_cpu_s;

    #[test]
    fn redis_cpu_time_is_system_plus_user() {
        let info = "# CPU\r\nused_cpu_sys:1.250000\r\nused_cpu_user:2.500000\r\n\
                    used_cpu_sys_children:9.000000\r\nused_cpu_user_children:9.000000\r\n";
        assert!((redis_cpu_s(info).expect("parsed") - 3.75).abs() < 1e-9);
        assert!(redis_cpu_s("# CPU\r\nused_cpu_user:2.5\r\n").is_err());
        assert!(redis_cpu_s("used_cpu_sys:x\r\nused_cpu_user:1\r\n").is_err());
    }
}
