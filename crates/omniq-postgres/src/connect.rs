//! Connecting: the first connection (a fast, clear error naming the server when it is
//! unreachable), migrations, the pool, and the LISTEN connection.

use crate::config::{Connection, PostgresConfig, describe};
use crate::error::{Error, Result, config};
use crate::notify::Notifier;
use crate::schema::{self, Sql};
use crate::storage::{Inner, PostgresStorage};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgConnection};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64};

/// Rows per statement of the expired-result sweep (no long locks).
pub(crate) const SWEEP_BATCH: i64 = 10_000;

impl PostgresStorage {
    pub(crate) async fn connect_with(cfg: PostgresConfig) -> Result<Self> {
        let connection = cfg
            .connection
            .clone()
            .ok_or_else(|| config("no PostgreSQL server: call .url(…) or .pool(…)"))?;
        let ns = cfg.namespace.clone();
        let sql = Sql::new(&ns);
        let (pool, owns_pool, options) = match connection {
            Connection::Options(options) => {
                let options = PostgresConfig::for_own_pool(&options);
                let mut conn = first_connection(&options, cfg.acquire_timeout).await?;
                let migrated = schema::migrate(&mut conn, &ns, &sql).await;
                let _ = sqlx::Connection::close(conn).await;
                migrated?;
                // Connections are checked before use, so one the server dropped (restart,
                // pg_terminate_backend) is replaced instead of failing a call.
                let pool = PgPoolOptions::new()
                    .max_connections(cfg.max_connections)
                    .min_connections(0)
                    .acquire_timeout(cfg.acquire_timeout)
                    .connect_lazy_with(options.clone());
                (pool, true, options)
            }
            Connection::Pool(pool) => {
                let options = (*pool.connect_options()).clone();
                let target = describe(&options);
                let mut conn = pool
                    .acquire()
                    .await
                    .map_err(|source| Error::Connect { target, source })?;
                schema::migrate(&mut conn, &ns, &sql).await?;
                (pool, false, options)
            }
        };
        let notifier = Notifier::new(&ns);
        if cfg.listen {
            notifier.start(options.clone(), cfg.acquire_timeout).await;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                owns_pool,
                sql,
                target: describe(&options),
                namespace: ns,
                format: cfg.format,
                result_ttl: cfg.result_ttl,
                closed: AtomicBool::new(false),
                notifier,
                last_sweep: AtomicI64::new(crate::admin::now_millis()),
                sweep_every: cfg.sweep_interval,
                sweep_batch: AtomicI64::new(SWEEP_BATCH),
            }),
        })
    }
}

/// One direct connection, without the pool's retry loop: an unreachable server or a
/// wrong password fails at once with an error naming the server.
async fn first_connection(
    options: &PgConnectOptions,
    timeout: std::time::Duration,
) -> Result<PgConnection> {
    let target = describe(options);
    match tokio::time::timeout(timeout, options.connect()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(source)) => Err(Error::Connect { target, source }),
        Err(_) => Err(Error::Connect {
            target,
            source: sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} ms", timeout.as_millis()),
            )),
        }),
    }
}
