//! # omniq-sqlite
//!
//! The SQLite storage backend of OmniQ (B2), on sqlx: a database file in WAL mode (or a
//! private in-memory database), embedded migrations, one `BEGIN IMMEDIATE` transaction
//! per batch, and claims with `UPDATE … RETURNING` driven by a partial index, so several
//! workers — in one process or many — never claim the same task twice.
//!
//! Tasks are stored relationally in `{namespace}_tasks` (args as the caller's encoded
//! bytes, times as unix microseconds), results in `{namespace}_results`; the namespace is
//! the table prefix, so several namespaces share one file without seeing each other.
//!
//! Commits are synced to disk by default ([`Durability::Full`]): an acknowledged enqueue
//! survives power loss. [`Durability::Normal`] trades that for speed (a crash of the
//! process still loses nothing). Expired results (`result_ttl`, default 7 days) stop being
//! returned at once and are deleted, with their finished tasks, by a sweep that runs at
//! most once a minute alongside completions.
//!
//! ```
//! use omniq_core::{ClaimRequest, Completion, Outcome, Payload, Storage, StorageExt, Task};
//! use omniq_sqlite::SqliteStorage;
//! use time::{Duration, OffsetDateTime};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), omniq_core::StorageError> {
//! let storage = SqliteStorage::in_memory().await?; // or SqliteStorage::open("omniq.db")
//! let task = Task::new("emails.send", Payload(b"{\"to\":\"a@b\"}".to_vec()));
//! let id = storage.enqueue_one(task).await?.id;
//!
//! let now = OffsetDateTime::now_utc() + Duration::seconds(1);
//! let claimed = storage
//!     .claim(ClaimRequest { queues: vec!["default".into()], limit: 10, now, lease: Duration::seconds(30) })
//!     .await?;
//! assert_eq!(claimed.len(), 1);
//!
//! let done = Completion { lease: claimed[0].lease_ref(), result: None, now, next_run: None };
//! assert_eq!(storage.complete_one(done).await?, Outcome::Ok);
//! assert!(storage.get_result(&id).await?.is_some_and(|r| r.is_success()));
//! storage.close().await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod config;
mod convert;
mod error;
mod schema;

pub use config::{
    DEFAULT_BUSY_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_NAMESPACE, DEFAULT_RESULT_TTL,
    Durability, Location, SqliteConfig, SqliteStorageBuilder,
};

use crate::convert::{TaskRow, duration_micros, encode_error, micros, now_micros};
use crate::error::{BACKEND, config as config_error, map_sqlx};
use crate::schema::{SHAPES, Sql, shape_index, split_shapes};
use omniq_core::{
    CancelOutcome, Capabilities, ClaimRequest, Claimed, Completion, Cursor, Enqueued, FailAction,
    Failure, Format, Lease, LeaseRef, LeaseToken, Outcome, Page, QueueCounts, Storage,
    StorageError, StorageErrorKind, Task, TaskFilter, TaskId, TaskResult, TaskStatus, Wake,
    async_trait, validate_name,
};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use time::OffsetDateTime;
use tokio::sync::broadcast;

/// Largest batch one call accepts (see [`Capabilities::max_batch`]); larger batches work
/// too, split internally into cached statement shapes.
pub const MAX_BATCH: usize = 1000;

/// Capacity of the wake-up channel; slow subscribers just miss hints.
const WAKE_CAPACITY: usize = 1024;

type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

/// The SQLite [`Storage`]. Cheap to clone (all clones share the pools); `Debug` shows the
/// namespace and location only.
#[derive(Clone)]
pub struct SqliteStorage {
    inner: Arc<Inner>,
}

struct Inner {
    /// One connection: in-process writers queue on the pool instead of spinning on
    /// `SQLITE_BUSY`; every write batch is one `BEGIN IMMEDIATE` transaction on it.
    writer: SqlitePool,
    /// Readers (file mode); the writer pool itself in memory mode.
    reader: SqlitePool,
    sql: Sql,
    namespace: String,
    location: Location,
    format: Format,
    result_ttl_us: i64,
    closed: AtomicBool,
    wake: broadcast::Sender<Wake>,
    /// In memory mode: an idle connection that keeps the named shared-cache database
    /// alive, so the pool can replace its connection without losing the data.
    _keeper: Option<std::sync::Mutex<sqlx::SqliteConnection>>,
    /// When expired results were last swept (unix micros).
    last_sweep_us: std::sync::atomic::AtomicI64,
}

/// How often completions also delete expired results and finished tasks (T11).
const SWEEP_EVERY_US: i64 = 60 * 1_000_000;

impl fmt::Debug for SqliteStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStorage")
            .field("namespace", &self.inner.namespace)
            .field("location", &self.inner.location)
            .field("serializer", &self.inner.format)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SqliteStorage {
    /// A builder: `.path(…)` or `.in_memory()`, then `.build().await`.
    pub fn builder() -> SqliteStorageBuilder {
        SqliteStorageBuilder::new()
    }

    /// Opens (creating if needed) the database file at `path` with the defaults.
    pub async fn open(path: impl AsRef<std::path::Path>) -> Result<Self, StorageError> {
        Self::builder().path(path).build().await
    }

    /// A private in-memory database with the defaults.
    pub async fn in_memory() -> Result<Self, StorageError> {
        Self::builder().in_memory().build().await
    }

    /// The namespace (table prefix).
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// Where the database lives.
    pub fn location(&self) -> &Location {
        &self.inner.location
    }

    pub(crate) async fn connect(cfg: SqliteConfig) -> Result<Self, StorageError> {
        let location = cfg
            .location
            .clone()
            .ok_or_else(|| config_error("no database location"))?;
        let base = SqliteConnectOptions::new()
            .busy_timeout(cfg.busy_timeout)
            .foreign_keys(false)
            .statement_cache_capacity(256);
        let mut keeper_slot = None;
        let (writer, reader) = match &location {
            Location::File(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        StorageError::new(
                            StorageErrorKind::Config,
                            BACKEND,
                            format!("cannot create directory {}: {e}", parent.display()),
                        )
                        .with_source(e)
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
                let writer = connect_writer(writer_opts, 0)
                    .await
                    .map_err(|e| crate::error::open_error(e, path))?;
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
                let opts = std::str::FromStr::from_str(&name)
                    .map(|o: SqliteConnectOptions| {
                        o.busy_timeout(cfg.busy_timeout)
                            .foreign_keys(false)
                            .statement_cache_capacity(256)
                    })
                    .map_err(map_sqlx)?;
                let keeper = sqlx::Connection::connect_with(&opts)
                    .await
                    .map_err(map_sqlx)?;
                keeper_slot = Some(std::sync::Mutex::new(keeper));
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
                _keeper: keeper_slot,
                last_sweep_us: std::sync::atomic::AtomicI64::new(now_micros()),
            }),
        })
    }

    fn check_open(&self) -> Result<(), StorageError> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(StorageError::closed(BACKEND))
        } else {
            Ok(())
        }
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StorageError> {
        self.check_open()?;
        match self.inner.writer.begin_with("BEGIN IMMEDIATE").await {
            // SQLite rolls some failed transactions back by itself (SQLITE_FULL, IOERR,
            // NOMEM, …); sqlx then still counts one as open on that connection and
            // refuses to begin another. Replace the connection rather than fail every
            // write from now on (S3).
            Err(sqlx::Error::InvalidSavePointStatement) => {
                tracing::warn!(target: "omniq::storage", backend = BACKEND, "writer connection left in a failed transaction; reconnecting");
                let mut conn = self.inner.writer.acquire().await.map_err(map_sqlx)?;
                conn.close_on_drop();
                drop(conn);
                self.inner
                    .writer
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(map_sqlx)
            }
            other => other.map_err(map_sqlx),
        }
    }

    /// T11: at most once a minute, piggy-backed on completions, delete results past their
    /// TTL and the finished tasks they belong to, so storage does not grow without bound.
    async fn sweep_expired(&self) {
        let now = now_micros();
        let last = self.inner.last_sweep_us.load(Ordering::Relaxed);
        if now - last < SWEEP_EVERY_US
            || self
                .inner
                .last_sweep_us
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let cutoff = now - self.inner.result_ttl_us;
        if let Ok(cutoff) =
            omniq_core::time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(cutoff) * 1000)
        {
            if let Err(e) = self.purge_results(cutoff).await {
                tracing::warn!(target: "omniq::storage", backend = BACKEND, "expired-result sweep failed: {e}");
            }
        }
    }

    fn reader(&self) -> Result<&SqlitePool, StorageError> {
        self.check_open()?;
        Ok(&self.inner.reader)
    }

    fn wake(&self, wake: Wake) {
        // No receivers is fine: wake-ups are hints.
        let _ = self.inner.wake.send(wake);
    }

    fn wake_work<'a>(&self, queues: impl IntoIterator<Item = &'a str>) {
        let mut seen = HashSet::new();
        for q in queues {
            if seen.insert(q) {
                self.wake(Wake::Work {
                    queue: q.to_string(),
                });
            }
        }
    }

    /// Runs a fenced per-lease UPDATE (`sql[shape]`: one leading bind, then `(id, token)`
    /// rows; `RETURNING id, lease_token, …`) over `leases` in one transaction. Returns an
    /// outcome per lease — `hit(row)` for rows the token matched, NotFound/LeaseLost for
    /// the rest — and the returned rows. Keyed by (id, token): a batch naming one task
    /// twice with different tokens never reports the stale one as applied.
    async fn fenced_lease_write(
        &self,
        sql: &[String],
        leases: &[LeaseRef],
        first_bind: i64,
        follow_up: Option<&str>,
        hit: impl Fn(&SqliteRow) -> Result<Outcome, StorageError>,
    ) -> Result<(Vec<Outcome>, Vec<SqliteRow>), StorageError> {
        self.check_open()?;
        if leases.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let ids: Vec<String> = leases.iter().map(|l| l.task_id.to_string()).collect();
        let mut out = Vec::with_capacity(leases.len());
        let mut all_rows = Vec::new();
        let mut tx = self.begin().await?;
        let mut offset = 0;
        // A batch naming one task twice goes one item at a time, so the second write
        // sees the first (release twice = Ok, then LeaseLost).
        let duplicates = has_duplicate_ids(leases.iter().map(|l| &l.task_id));
        for size in lease_chunks(leases.len(), duplicates) {
            let range = offset..offset + size;
            offset += size;
            let mut q = sqlx::query(&sql[shape_index(size)]).bind(first_bind);
            for (l, id) in leases[range.clone()].iter().zip(&ids[range.clone()]) {
                q = q.bind(id.as_str()).bind(l.token.0);
            }
            let rows = q.fetch_all(&mut *tx).await.map_err(map_sqlx)?;
            let mut applied = HashMap::with_capacity(rows.len());
            for row in &rows {
                let id: String = row.try_get(0).map_err(map_sqlx)?;
                let token: i64 = row.try_get(1).map_err(map_sqlx)?;
                if let Some(follow_up) = follow_up {
                    sqlx::query(follow_up)
                        .bind(id.as_str())
                        .bind(first_bind)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_sqlx)?;
                }
                applied.insert((id, token), hit(row)?);
            }
            for (l, id) in leases[range.clone()].iter().zip(&ids[range]) {
                out.push(match applied.get(&(id.clone(), l.token.0)) {
                    Some(o) => *o,
                    None => self.miss_outcome(&mut tx, id).await?,
                });
            }
            all_rows.extend(rows);
        }
        tx.commit().await.map_err(map_sqlx)?;
        Ok((out, all_rows))
    }

    /// NotFound vs LeaseLost for a lease write that matched nothing.
    async fn miss_outcome(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        id: &str,
    ) -> Result<Outcome, StorageError> {
        let exists = sqlx::query(&self.inner.sql.task_exists)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(map_sqlx)?;
        Ok(if exists.is_some() {
            Outcome::LeaseLost
        } else {
            Outcome::NotFound
        })
    }
}

/// Connects the single-connection writer pool. Switching a new file to WAL takes an
/// exclusive lock that busy_timeout does not wait on, so a racing start is retried.
async fn connect_writer(
    opts: SqliteConnectOptions,
    min_connections: u32,
) -> Result<SqlitePool, StorageError> {
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
            .map_err(map_sqlx);
        match pool {
            Ok(pool) => return Ok(pool),
            Err(e) if e.is_temporary() && attempt < 50 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn status_text(status: TaskStatus) -> &'static str {
    // A task cannot be stored Running without a lease; it starts Pending.
    match status {
        TaskStatus::Running => TaskStatus::Pending.as_str(),
        s => s.as_str(),
    }
}

fn validate_queue(queue: &str) -> Result<(), StorageError> {
    validate_name("queue", queue).map_err(config_error)
}

fn has_duplicate_ids<'a>(ids: impl Iterator<Item = &'a TaskId>) -> bool {
    let mut seen = HashSet::new();
    ids.into_iter().any(|id| !seen.insert(*id))
}

/// Chunk sizes for a lease batch: cached shapes, or one by one when a task appears twice
/// (so the second write sees the first one's effect, like sequential calls).
fn lease_chunks(n: usize, duplicates: bool) -> Vec<usize> {
    if duplicates {
        vec![1; n]
    } else {
        split_shapes(n)
    }
}

fn bind_task<'q>(
    q: Query<'q>,
    t: &'q Task,
    error: Option<Vec<u8>>,
) -> Result<Query<'q>, StorageError> {
    Ok(q.bind(t.id.to_string())
        .bind(t.func_path.as_str())
        .bind(t.args.as_bytes())
        .bind(t.queue.as_str())
        .bind(i64::from(t.priority))
        .bind(status_text(t.status))
        .bind(t.schedule.eta.map(micros))
        .bind(micros(t.effective_eta()))
        .bind(t.schedule.interval.map(duration_micros))
        .bind(i64::from(t.max_retries))
        .bind(t.timeout.map(duration_micros))
        .bind(i64::from(t.attempts))
        .bind(micros(t.created_at))
        .bind(micros(t.updated_at))
        .bind(t.last_attempt_at.map(micros))
        .bind(error)
        .bind(t.unique_key.as_deref())
        .bind(convert::encode_backoff(t.backoff.as_ref())?))
}

#[async_trait]
impl Storage for SqliteStorage {
    fn backend_name(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            unique_keys: true,
            push_wakeup: true,
            transactional_enqueue: true,
            multi_process: matches!(self.inner.location, Location::File(_)),
            max_batch: MAX_BATCH,
        }
    }

    async fn enqueue(&self, tasks: Vec<Task>) -> Result<Vec<Enqueued>, StorageError> {
        self.check_open()?;
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let format = self.inner.format;
        let mut errors = Vec::with_capacity(tasks.len());
        for t in &tasks {
            validate_queue(&t.queue)?;
            errors.push(
                t.error
                    .as_ref()
                    .map(|e| encode_error(format, e))
                    .transpose()?,
            );
        }
        let sql = &self.inner.sql;
        let mut out = Vec::with_capacity(tasks.len());
        let mut tx = self.begin().await?;
        let mut offset = 0;
        let mut errors = errors.into_iter();
        for size in split_shapes(tasks.len()) {
            let chunk = &tasks[offset..offset + size];
            offset += size;
            let unique = chunk.iter().any(|t| t.unique_key.is_some());
            let idx = shape_index(size);
            let text = if unique {
                &sql.insert_returning[idx]
            } else {
                &sql.insert[idx]
            };
            let mut q = sqlx::query(text);
            for t in chunk {
                q = bind_task(q, t, errors.next().flatten())?;
            }
            if !unique {
                q.execute(&mut *tx).await.map_err(map_sqlx)?;
                out.extend(chunk.iter().map(|t| Enqueued {
                    id: t.id,
                    duplicate: false,
                }));
                continue;
            }
            let rows = q.fetch_all(&mut *tx).await.map_err(map_sqlx)?;
            let mut inserted = HashSet::with_capacity(rows.len());
            for row in &rows {
                let id: String = row.try_get(0).map_err(map_sqlx)?;
                inserted.insert(id);
            }
            for t in chunk {
                let id = t.id.to_string();
                if inserted.remove(&id) {
                    out.push(Enqueued {
                        id: t.id,
                        duplicate: false,
                    });
                    continue;
                }
                let key = t.unique_key.as_deref().ok_or_else(|| {
                    StorageError::new(
                        StorageErrorKind::Conflict,
                        BACKEND,
                        format!("task {id} was not inserted"),
                    )
                })?;
                let existing: Option<String> = sqlx::query_scalar(&sql.find_unique)
                    .bind(t.queue.as_str())
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                let existing = existing
                    .ok_or_else(|| {
                        StorageError::new(
                            StorageErrorKind::Conflict,
                            BACKEND,
                            format!("task {id} was not inserted and no live duplicate exists"),
                        )
                    })?
                    .parse::<TaskId>()
                    .map_err(|e| error::corrupt(format!("stored task id: {e}")))?;
                out.push(Enqueued {
                    id: existing,
                    duplicate: true,
                });
            }
        }
        tx.commit().await.map_err(map_sqlx)?;
        self.wake_work(
            tasks
                .iter()
                .zip(&out)
                .filter(|(_, e)| !e.duplicate)
                .map(|(t, _)| t.queue.as_str()),
        );
        Ok(out)
    }

    async fn claim(&self, req: ClaimRequest) -> Result<Vec<Claimed>, StorageError> {
        self.check_open()?;
        let mut queues: Vec<&str> = Vec::with_capacity(req.queues.len());
        for q in &req.queues {
            validate_queue(q)?;
            if !queues.contains(&q.as_str()) {
                queues.push(q);
            }
        }
        if req.limit == 0 || queues.is_empty() {
            return Ok(Vec::new());
        }
        let format = self.inner.format;
        let now = micros(req.now);
        let until_t = req.now + req.lease;
        let until = micros(until_t);
        let limit = i64::try_from(req.limit).unwrap_or(i64::MAX);
        let expire_sql = self.inner.sql.expire(queues.len());
        let claim_sql = self.inner.sql.claim(queues.len());

        let mut tx = self.begin().await?;
        let mut q = sqlx::query(&expire_sql).bind(now);
        for queue in &queues {
            q = q.bind(*queue);
        }
        let expired = q.fetch_all(&mut *tx).await.map_err(map_sqlx)?;
        let mut finished = Vec::new();
        for row in &expired {
            let status: &str = row.try_get(2).map_err(map_sqlx)?;
            if status == TaskStatus::Cancelled.as_str() {
                let id: String = row.try_get(0).map_err(map_sqlx)?;
                sqlx::query(&self.inner.sql.cancel_result)
                    .bind(id.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                finished.push(id);
            }
        }
        let mut q = sqlx::query(&claim_sql).bind(until).bind(now).bind(limit);
        for queue in &queues {
            q = q.bind(*queue);
        }
        let rows = q.fetch_all(&mut *tx).await.map_err(map_sqlx)?;
        let mut claimed = rows
            .iter()
            .map(|r| convert::task_from_row(r, format))
            .collect::<Result<Vec<TaskRow>, _>>()?;
        tx.commit().await.map_err(map_sqlx)?;

        for id in finished {
            if let Ok(task_id) = id.parse::<TaskId>() {
                self.wake(Wake::Finished { task_id });
            }
        }
        if expired.len() > claimed.len() {
            // Some redelivered tasks did not fit this claim: tell other workers.
            self.wake_work(queues.iter().copied());
        }
        claimed.sort_by(|a, b| {
            b.task
                .priority
                .cmp(&a.task.priority)
                .then(a.run_at.cmp(&b.run_at))
                .then(a.seq.cmp(&b.seq))
        });
        Ok(claimed
            .into_iter()
            .map(|r| Claimed {
                task: r.task,
                lease: Lease {
                    token: LeaseToken(r.lease_token),
                    until: until_t,
                },
            })
            .collect())
    }

    async fn heartbeat(
        &self,
        leases: &[LeaseRef],
        until: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        // RETURNING id, lease_token, cancel_requested
        let (out, _) = self
            .fenced_lease_write(
                &self.inner.sql.heartbeat,
                leases,
                micros(until),
                None,
                |row| {
                    let cancel: i64 = row.try_get(2).map_err(map_sqlx)?;
                    Ok(if cancel != 0 {
                        Outcome::CancelRequested
                    } else {
                        Outcome::Ok
                    })
                },
            )
            .await?;
        Ok(out)
    }

    async fn release(
        &self,
        leases: &[LeaseRef],
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        // RETURNING id, lease_token, queue, status. A released task whose cancellation
        // was requested ends Cancelled, with its Cancelled result stored in the same
        // transaction.
        let mut queues = Vec::new();
        let mut finished = Vec::new();
        let (out, rows) = self
            .fenced_lease_write(
                &self.inner.sql.release,
                leases,
                micros(now),
                Some(&self.inner.sql.released_cancel_result),
                |_| Ok(Outcome::Ok),
            )
            .await?;
        for row in &rows {
            let status: String = row.try_get(3).map_err(map_sqlx)?;
            if status == "cancelled" {
                let id: String = row.try_get(0).map_err(map_sqlx)?;
                if let Ok(id) = id.parse::<TaskId>() {
                    finished.push(id);
                }
            } else {
                queues.push(row.try_get::<String, _>(2).map_err(map_sqlx)?);
            }
        }
        for task_id in finished {
            self.wake(Wake::Finished { task_id });
        }
        self.wake_work(queues.iter().map(String::as_str));
        Ok(out)
    }

    async fn complete(&self, items: Vec<Completion>) -> Result<Vec<Outcome>, StorageError> {
        self.check_open()?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let sql = &self.inner.sql;
        let ids: Vec<String> = items.iter().map(|c| c.lease.task_id.to_string()).collect();
        let dup = has_duplicate_ids(items.iter().map(|c| &c.lease.task_id));
        let mut out = Vec::with_capacity(items.len());
        let mut wakes: Vec<(TaskId, Option<String>)> = Vec::new();
        let mut tx = self.begin().await?;
        let mut offset = 0;
        for size in lease_chunks(items.len(), dup) {
            let range = offset..offset + size;
            offset += size;
            let idx = shape_index(size);
            let (part, part_ids) = (&items[range.clone()], &ids[range.clone()]);
            bind_completions(sqlx::query(&sql.complete_results[idx]), part, part_ids)
                .execute(&mut *tx)
                .await
                .map_err(map_sqlx)?;
            let rows = bind_completions(sqlx::query(&sql.complete_tasks[idx]), part, part_ids)
                .fetch_all(&mut *tx)
                .await
                .map_err(map_sqlx)?;
            let hit = returned_rows(&rows)?;
            for (c, id) in items[range.clone()].iter().zip(&ids[range]) {
                match hit.get(id.as_str()) {
                    Some((queue, status)) => {
                        out.push(Outcome::Ok);
                        let requeued =
                            (status == TaskStatus::Pending.as_str()).then(|| queue.clone());
                        wakes.push((c.lease.task_id, requeued));
                    }
                    None => out.push(self.miss_outcome(&mut tx, id).await?),
                }
            }
        }
        tx.commit().await.map_err(map_sqlx)?;
        self.send_finished(wakes);
        self.sweep_expired().await;
        Ok(out)
    }

    async fn fail(&self, items: Vec<Failure>) -> Result<Vec<Outcome>, StorageError> {
        self.check_open()?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let sql = &self.inner.sql;
        let format = self.inner.format;
        let ids: Vec<String> = items.iter().map(|f| f.lease.task_id.to_string()).collect();
        let errors = items
            .iter()
            .map(|f| encode_error(format, &f.error))
            .collect::<Result<Vec<_>, _>>()?;
        let actions: Vec<(i64, Option<i64>)> = items
            .iter()
            .map(|f| match f.action {
                FailAction::Retry { at } => (0, Some(micros(at))),
                FailAction::NextRun { at } => (1, Some(micros(at))),
                FailAction::Fail => (2, None),
            })
            .collect();
        let dup = has_duplicate_ids(items.iter().map(|f| &f.lease.task_id));
        let mut out = Vec::with_capacity(items.len());
        let mut wakes: Vec<(TaskId, Option<String>)> = Vec::new();
        let mut tx = self.begin().await?;
        let mut offset = 0;
        for size in lease_chunks(items.len(), dup) {
            let range = offset..offset + size;
            offset += size;
            let idx = shape_index(size);
            let part = (
                &items[range.clone()],
                &ids[range.clone()],
                &errors[range.clone()],
                &actions[range.clone()],
            );
            bind_failures(sqlx::query(&sql.fail_results[idx]), part)
                .execute(&mut *tx)
                .await
                .map_err(map_sqlx)?;
            let rows = bind_failures(sqlx::query(&sql.fail_tasks[idx]), part)
                .fetch_all(&mut *tx)
                .await
                .map_err(map_sqlx)?;
            let hit = returned_rows(&rows)?;
            for i in range {
                match hit.get(ids[i].as_str()) {
                    Some((queue, status)) => {
                        out.push(Outcome::Ok);
                        let requeued =
                            (status == TaskStatus::Pending.as_str()).then(|| queue.clone());
                        wakes.push((items[i].lease.task_id, requeued));
                    }
                    None => out.push(self.miss_outcome(&mut tx, &ids[i]).await?),
                }
            }
        }
        tx.commit().await.map_err(map_sqlx)?;
        self.send_finished(wakes);
        Ok(out)
    }

    async fn get_task(&self, id: &TaskId) -> Result<Option<Task>, StorageError> {
        let row = sqlx::query(&self.inner.sql.get_task)
            .bind(id.to_string())
            .fetch_optional(self.reader()?)
            .await
            .map_err(map_sqlx)?;
        row.map(|r| convert::task_from_row(&r, self.inner.format).map(|t| t.task))
            .transpose()
    }

    async fn reschedule(&self, id: &TaskId, new_eta: OffsetDateTime) -> Result<(), StorageError> {
        let sql = &self.inner.sql;
        let key = id.to_string();
        let mut tx = self.begin().await?;
        let (status, queue) = current_status(&mut tx, sql, &key).await?;
        if status.is_terminal() {
            return Err(StorageError::new(
                StorageErrorKind::Conflict,
                BACKEND,
                format!("task {id} is {status}; it cannot be rescheduled"),
            ));
        }
        sqlx::query(&sql.reschedule)
            .bind(key.as_str())
            .bind(micros(new_eta))
            .bind(now_micros())
            .execute(&mut *tx)
            .await
            .map_err(map_sqlx)?;
        tx.commit().await.map_err(map_sqlx)?;
        self.wake(Wake::Work { queue });
        Ok(())
    }

    async fn get_result(&self, id: &TaskId) -> Result<Option<TaskResult>, StorageError> {
        let cutoff = now_micros().saturating_sub(self.inner.result_ttl_us);
        let row = sqlx::query(&self.inner.sql.get_result)
            .bind(id.to_string())
            .bind(cutoff)
            .fetch_optional(self.reader()?)
            .await
            .map_err(map_sqlx)?;
        row.map(|r| convert::result_from_row(&r, self.inner.format))
            .transpose()
    }

    async fn cancel(
        &self,
        id: &TaskId,
        now: OffsetDateTime,
    ) -> Result<CancelOutcome, StorageError> {
        let sql = &self.inner.sql;
        let key = id.to_string();
        let now = micros(now);
        let mut tx = self.begin().await?;
        let (status, _) = current_status(&mut tx, sql, &key).await?;
        let outcome = match status {
            TaskStatus::Pending | TaskStatus::Failed => {
                for text in [&sql.cancel_result, &sql.cancel_task] {
                    sqlx::query(text)
                        .bind(key.as_str())
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_sqlx)?;
                }
                CancelOutcome::Cancelled
            }
            TaskStatus::Running if lease_expired(&mut tx, sql, &key, now).await? => {
                // Its worker is gone (lease expired): nobody would act on a request.
                for text in [&sql.cancel_result, &sql.cancel_task] {
                    sqlx::query(text)
                        .bind(key.as_str())
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_sqlx)?;
                }
                CancelOutcome::Cancelled
            }
            TaskStatus::Running => {
                sqlx::query(&sql.request_cancel)
                    .bind(key.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                CancelOutcome::Requested
            }
            finished => CancelOutcome::AlreadyFinished(finished),
        };
        tx.commit().await.map_err(map_sqlx)?;
        if outcome == CancelOutcome::Cancelled {
            self.wake(Wake::Finished { task_id: *id });
        }
        Ok(outcome)
    }

    async fn list_tasks(&self, filter: TaskFilter) -> Result<Page<Task>, StorageError> {
        if let Some(q) = &filter.queue {
            validate_queue(q)?;
        }
        let pool = self.reader()?;
        if filter.limit == 0 {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            });
        }
        let text = self.inner.sql.list(
            filter.status.is_some(),
            filter.queue.is_some(),
            filter.cursor.is_some(),
        );
        let fetch = i64::try_from(filter.limit).unwrap_or(i64::MAX - 1) + 1;
        let rows = sqlx::query(&text)
            .bind(filter.cursor.as_ref().map(|c| c.0.to_string()))
            .bind(filter.status.map(TaskStatus::as_str))
            .bind(filter.queue.as_deref())
            .bind(fetch)
            .fetch_all(pool)
            .await
            .map_err(map_sqlx)?;
        let more = rows.len() > filter.limit;
        let items = rows
            .iter()
            .take(filter.limit)
            .map(|r| convert::task_from_row(r, self.inner.format).map(|t| t.task))
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if more {
            items.last().map(|t| Cursor(t.id))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn counts(&self, queue: Option<&str>) -> Result<Vec<QueueCounts>, StorageError> {
        if let Some(q) = queue {
            validate_queue(q)?;
        }
        let text = self.inner.sql.counts(queue.is_some());
        let rows = sqlx::query(&text)
            .bind(queue)
            .fetch_all(self.reader()?)
            .await
            .map_err(map_sqlx)?;
        let mut by_queue: BTreeMap<String, QueueCounts> = BTreeMap::new();
        for row in &rows {
            let name: String = row.try_get(0).map_err(map_sqlx)?;
            let status: &str = row.try_get(1).map_err(map_sqlx)?;
            let n: i64 = row.try_get(2).map_err(map_sqlx)?;
            let status = convert::status(status)?;
            by_queue
                .entry(name.clone())
                .or_insert_with(|| QueueCounts {
                    queue: name,
                    ..QueueCounts::default()
                })
                .add(status, u64::try_from(n).unwrap_or(0));
        }
        if let Some(q) = queue {
            by_queue
                .entry(q.to_string())
                .or_insert_with(|| QueueCounts {
                    queue: q.to_string(),
                    ..QueueCounts::default()
                });
        }
        Ok(by_queue.into_values().collect())
    }

    async fn purge_results(&self, older_than: OffsetDateTime) -> Result<u64, StorageError> {
        let cutoff = micros(older_than);
        let mut tx = self.begin().await?;
        let removed = sqlx::query(&self.inner.sql.purge_results)
            .bind(cutoff)
            .execute(&mut *tx)
            .await
            .map_err(map_sqlx)?
            .rows_affected();
        sqlx::query(&self.inner.sql.purge_tasks)
            .bind(cutoff)
            .execute(&mut *tx)
            .await
            .map_err(map_sqlx)?;
        tx.commit().await.map_err(map_sqlx)?;
        Ok(removed)
    }

    async fn close(&self) -> Result<(), StorageError> {
        // Idempotent: the first close releases the pools; every other call then fails Closed.
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner.writer.close().await;
        self.inner.reader.close().await;
        Ok(())
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<Wake>> {
        Some(self.inner.wake.subscribe())
    }
}

impl SqliteStorage {
    fn send_finished(&self, wakes: Vec<(TaskId, Option<String>)>) {
        let mut requeued = Vec::new();
        for (task_id, queue) in wakes {
            self.wake(Wake::Finished { task_id });
            if let Some(q) = queue {
                requeued.push(q);
            }
        }
        self.wake_work(requeued.iter().map(String::as_str));
    }
}

/// Binds `(id, token, result, now, next_run)` per completion.
fn bind_completions<'q>(mut q: Query<'q>, items: &'q [Completion], ids: &'q [String]) -> Query<'q> {
    for (c, id) in items.iter().zip(ids) {
        q = q
            .bind(id.as_str())
            .bind(c.lease.token.0)
            .bind(c.result.as_ref().map(|p| p.as_bytes()))
            .bind(micros(c.now))
            .bind(c.next_run.map(micros));
    }
    q
}

type FailurePart<'q> = (
    &'q [Failure],
    &'q [String],
    &'q [Vec<u8>],
    &'q [(i64, Option<i64>)],
);

/// Binds `(id, token, error, now, action, at)` per failure.
fn bind_failures<'q>(
    mut q: Query<'q>,
    (items, ids, errors, actions): FailurePart<'q>,
) -> Query<'q> {
    for (((f, id), error), (action, at)) in items.iter().zip(ids).zip(errors).zip(actions) {
        q = q
            .bind(id.as_str())
            .bind(f.lease.token.0)
            .bind(error.as_slice())
            .bind(micros(f.now))
            .bind(*action)
            .bind(*at);
    }
    q
}

/// `id → (queue, status)` from a lease write's `RETURNING id, queue, status`.
fn returned_rows(
    rows: &[sqlx::sqlite::SqliteRow],
) -> Result<HashMap<String, (String, String)>, StorageError> {
    let mut hit = HashMap::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get(0).map_err(map_sqlx)?;
        let queue: String = row.try_get(1).map_err(map_sqlx)?;
        let status: String = row.try_get(2).map_err(map_sqlx)?;
        hit.insert(id, (queue, status));
    }
    Ok(hit)
}

/// The status and queue of a task inside a write transaction; `NotFound` if missing.
async fn current_status(
    tx: &mut Transaction<'static, Sqlite>,
    sql: &Sql,
    id: &str,
) -> Result<(TaskStatus, String), StorageError> {
    let row = sqlx::query(&sql.status_of)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(map_sqlx)?
        .ok_or_else(|| StorageError::not_found(BACKEND, format!("task {id} not found")))?;
    let status: &str = row.try_get(0).map_err(map_sqlx)?;
    let queue: String = row.try_get(1).map_err(map_sqlx)?;
    Ok((convert::status(status)?, queue))
}

async fn lease_expired(
    tx: &mut Transaction<'static, Sqlite>,
    sql: &Sql,
    id: &str,
    now: i64,
) -> Result<bool, StorageError> {
    Ok(sqlx::query(&sql.lease_expired)
        .bind(id)
        .bind(now)
        .fetch_optional(&mut **tx)
        .await
        .map_err(map_sqlx)?
        .is_some())
}

const _: () = assert!(SHAPES[0] * schema::INSERT_ARITY < 32_766);

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: T) {}

    #[test]
    fn build_future_is_send() {
        assert_send(SqliteStorage::in_memory());
        assert_send(SqliteStorage::open("unused.db"));
    }
}

#[cfg(test)]
mod plan_tests {
    use super::*;

    /// S3: a write that fails with SQLITE_FULL (the disk is full) must not leave the
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

    /// The query plan's detail lines for `sql` (parameters unbound = NULL).
    async fn plan(s: &SqliteStorage, sql: &str) -> Vec<String> {
        let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(&s.inner.writer)
            .await
            .unwrap_or_else(|e| panic!("explain {sql}: {e}"));
        rows.iter()
            .map(|r| r.try_get::<String, _>(3).unwrap_or_default())
            .collect()
    }

    fn assert_no_task_scan(what: &str, lines: &[String]) {
        for l in lines {
            let scans_tasks = l.starts_with("SCAN")
                && (l.contains("omniq_tasks") || l == "SCAN t")
                && !l.contains("INDEX");
            assert!(!scans_tasks, "{what} scans the tasks table: {lines:#?}");
        }
    }

    #[tokio::test]
    async fn hot_statements_never_scan_the_tasks_table() {
        let s = SqliteStorage::in_memory().await.expect("storage");
        let sql = &s.inner.sql;
        let mut checks: Vec<(String, String)> = vec![
            ("claim 1 queue".into(), sql.claim(1)),
            ("claim 3 queues".into(), sql.claim(3)),
            ("expire".into(), sql.expire(2)),
            ("get_task".into(), sql.get_task.clone()),
            ("find_unique".into(), sql.find_unique.clone()),
        ];
        for i in [0, SHAPES.len() - 1] {
            checks.push(("complete results".into(), sql.complete_results[i].clone()));
            checks.push(("complete tasks".into(), sql.complete_tasks[i].clone()));
            checks.push(("fail results".into(), sql.fail_results[i].clone()));
            checks.push(("fail tasks".into(), sql.fail_tasks[i].clone()));
            checks.push(("heartbeat".into(), sql.heartbeat[i].clone()));
        }
        for (what, text) in &checks {
            let lines = plan(&s, text).await;
            eprintln!("{what}: {lines:?}");
            assert_no_task_scan(what, &lines);
        }
    }
}
