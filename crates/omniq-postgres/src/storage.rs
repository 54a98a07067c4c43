//! [`PostgresStorage`]: the public type, its shared state, and the `Storage` impl — each
//! method one line over the inner function in `claim.rs`, `lease.rs` or `admin.rs`.

use crate::config::PostgresStorageBuilder;
use crate::error::{BACKEND, Error, Result, config};
use crate::notify::Notifier;
use crate::schema::Sql;
use omniq_core::{
    CancelOutcome, Capabilities, ClaimRequest, Claimed, Completion, Enqueued, Failure, Format,
    LeaseRef, OperationExt, Outcome, Page, QueueCounts, Storage, StorageError, Task, TaskFilter,
    TaskId, TaskResult, Wake, async_trait, validate_name,
};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{PgPool, Postgres, Transaction};
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use time::OffsetDateTime;
use tokio::sync::broadcast;

/// Largest batch one call accepts (see [`Capabilities::max_batch`]): batches travel as
/// arrays in one statement, so this bounds a statement's size, not its shape.
pub const MAX_BATCH: usize = 5000;

/// The PostgreSQL [`Storage`]. Cheap to clone (all clones share the pool and the LISTEN
/// connection); `Debug` shows the namespace and server, never the password.
#[derive(Clone)]
pub struct PostgresStorage {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: PgPool,
    /// False for an application's pool: `close()` leaves it open, and statements are
    /// not kept prepared on its connections (see [`PostgresStorage::query`]).
    pub(crate) owns_pool: bool,
    pub(crate) sql: Sql,
    pub(crate) namespace: String,
    /// `host:port/database as user`, for `Debug`.
    pub(crate) target: String,
    pub(crate) format: Format,
    pub(crate) result_ttl: time::Duration,
    pub(crate) closed: AtomicBool,
    pub(crate) notifier: Notifier,
    /// When expired results were last swept (unix milliseconds).
    pub(crate) last_sweep: AtomicI64,
    pub(crate) sweep_every: std::time::Duration,
    /// Rows per sweep statement.
    pub(crate) sweep_batch: AtomicI64,
}

impl fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStorage")
            .field("namespace", &self.inner.namespace)
            .field("server", &self.inner.target)
            .field("serializer", &self.inner.format)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl PostgresStorage {
    /// A builder: `.url(…)` or `.pool(…)`, then `.build().await`.
    pub fn builder() -> PostgresStorageBuilder {
        PostgresStorageBuilder::new()
    }

    /// Connects to the server at `url` (`postgres://user:password@host:port/database`)
    /// with the defaults: namespace `omniq`, 10 connections, 7-day result TTL.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        Self::builder().url(url).build().await
    }

    /// Uses the application's pool with the defaults (see [`PostgresStorageBuilder::pool`]).
    pub async fn from_pool(pool: PgPool) -> Result<Self, StorageError> {
        Self::builder().pool(pool).build().await
    }

    /// The namespace (PostgreSQL schema).
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The pool this storage runs its statements on: the application's (given to
    /// [`PostgresStorageBuilder::pool`]) or its own, whose connections plan every
    /// statement afresh (`plan_cache_mode = force_custom_plan`). Use it to open the
    /// transactions [`PostgresStorage::enqueue_tx`] takes.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Enqueues `tasks` inside the caller's transaction: they exist exactly when the
    /// caller commits (and not at all after a rollback), and other processes are woken
    /// at that commit. Same semantics as [`Storage::enqueue`] otherwise. An error leaves
    /// the transaction aborted, as any failed statement does in PostgreSQL.
    ///
    /// ```no_run
    /// # async fn demo(storage: omniq_postgres::PostgresStorage) -> Result<(), Box<dyn std::error::Error>> {
    /// use omniq_core::{Payload, Task};
    ///
    /// let mut tx = storage.pool().begin().await?;
    /// sqlx::query("UPDATE accounts SET welcomed = true WHERE id = $1")
    ///     .bind(42_i64)
    ///     .execute(&mut *tx)
    ///     .await?;
    /// storage
    ///     .enqueue_tx(&mut tx, vec![Task::new("emails.welcome", Payload(b"[42]".to_vec()))])
    ///     .await?;
    /// tx.commit().await?; // the task and the update exist together, or neither does
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_tx(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        tasks: Vec<Task>,
    ) -> Result<Vec<Enqueued>, StorageError> {
        self.enqueue_in(tx, tasks).await.operation("enqueue")
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// The pool, unless closed.
    pub(crate) fn db(&self) -> Result<&PgPool> {
        self.check_open()?;
        Ok(&self.inner.pool)
    }

    /// A statement of this backend. Every plan must be made for the tables as they are
    /// now: a generic plan cached while a table was nearly empty (a fresh deployment)
    /// may scan it sequentially once it holds millions of rows. The own pool's
    /// connections plan every execution (`plan_cache_mode = force_custom_plan`, set when
    /// they connect); on an application's pool, whose settings are its own, statements
    /// are sent unprepared instead, which plans them each time too. The hot statements
    /// are calls of the namespace's functions (`schema::Function`), whose own plans are
    /// cached per connection and kept on the indexes by the functions' settings.
    pub(crate) fn query<'q>(&self, sql: &'q str) -> Query<'q> {
        sqlx::query(sql).persistent(self.inner.owns_pool)
    }

    /// [`PostgresStorage::query`] for a one-column answer.
    pub(crate) fn query_scalar<'q, T>(&self, sql: &'q str) -> QueryScalar<'q, T>
    where
        T: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
        (T,): for<'r> sqlx::FromRow<'r, PgRow>,
    {
        sqlx::query_scalar(sql).persistent(self.inner.owns_pool)
    }

    pub(crate) fn wake(&self, wake: Wake) {
        self.inner.notifier.local(wake);
    }

    /// One `Work` hint per distinct queue.
    pub(crate) fn wake_work<'a>(&self, queues: impl IntoIterator<Item = &'a str>) {
        let mut seen = HashSet::new();
        for q in queues {
            if seen.insert(q) {
                self.wake(Wake::Work {
                    queue: q.to_string(),
                });
            }
        }
    }
}

/// A statement with its arguments.
pub(crate) type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// A one-column statement with its arguments.
pub(crate) type QueryScalar<'q, T> = sqlx::query::QueryScalar<'q, Postgres, T, PgArguments>;

/// A queue name checked like every other name: a `Config` error otherwise.
pub(crate) fn validate_queue(queue: &str) -> Result<()> {
    validate_name("queue", queue).map_err(config)
}

/// The distinct, valid queue names of a request, in order.
pub(crate) fn distinct_queues(queues: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(queues.len());
    for q in queues {
        validate_queue(q)?;
        if !out.contains(q) {
            out.push(q.clone());
        }
    }
    Ok(out)
}

#[async_trait]
impl Storage for PostgresStorage {
    fn backend_name(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            unique_keys: true,
            push_wakeup: true,
            transactional_enqueue: true,
            multi_process: true,
            max_batch: MAX_BATCH,
        }
    }

    async fn enqueue(&self, tasks: Vec<Task>) -> Result<Vec<Enqueued>, StorageError> {
        self.enqueue_tasks(tasks).await.operation("enqueue")
    }

    async fn claim(&self, req: ClaimRequest) -> Result<Vec<Claimed>, StorageError> {
        self.claim_tasks(req).await.operation("claim")
    }

    async fn next_due(&self, queues: &[String]) -> Result<Option<OffsetDateTime>, StorageError> {
        self.earliest_due(queues).await.operation("next_due")
    }

    async fn heartbeat(
        &self,
        leases: &[LeaseRef],
        until: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        self.extend_leases(leases, until)
            .await
            .operation("heartbeat")
    }

    async fn start(&self, leases: &[LeaseRef]) -> Result<Vec<Outcome>, StorageError> {
        self.record_starts(leases).await.operation("start")
    }

    async fn complete(&self, items: Vec<Completion>) -> Result<Vec<Outcome>, StorageError> {
        self.complete_runs(items).await.operation("complete")
    }

    async fn fail(&self, items: Vec<Failure>) -> Result<Vec<Outcome>, StorageError> {
        self.fail_runs(items).await.operation("fail")
    }

    async fn release(
        &self,
        leases: &[LeaseRef],
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        self.release_leases(leases, now).await.operation("release")
    }

    async fn get_task(&self, id: &TaskId) -> Result<Option<Task>, StorageError> {
        self.read_task(id).await.operation("get_task")
    }

    async fn reschedule(
        &self,
        id: &TaskId,
        new_eta: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        self.move_task(id, new_eta, now)
            .await
            .operation("reschedule")
    }

    async fn get_result(&self, id: &TaskId) -> Result<Option<TaskResult>, StorageError> {
        self.read_result(id).await.operation("get_result")
    }

    async fn cancel(
        &self,
        id: &TaskId,
        now: OffsetDateTime,
    ) -> Result<CancelOutcome, StorageError> {
        self.cancel_task(id, now).await.operation("cancel")
    }

    async fn list_tasks(&self, filter: TaskFilter) -> Result<Page<Task>, StorageError> {
        self.list_page(filter).await.operation("list_tasks")
    }

    async fn counts(&self, queue: Option<&str>) -> Result<Vec<QueueCounts>, StorageError> {
        self.count_tasks(queue).await.operation("counts")
    }

    async fn purge_results(&self, older_than: OffsetDateTime) -> Result<u64, StorageError> {
        self.purge(older_than).await.operation("purge_results")
    }

    async fn close(&self) -> Result<(), StorageError> {
        // Idempotent: the first close stops the listener and closes an own pool; every
        // other call then fails Closed.
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner.notifier.stop();
        if self.inner.owns_pool {
            self.inner.pool.close().await;
        }
        Ok(())
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<Wake>> {
        Some(self.inner.notifier.subscribe())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.notifier.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: T) {}

    #[test]
    fn build_future_is_send() {
        assert_send(PostgresStorage::connect("postgres://localhost/db"));
    }

    #[test]
    fn duplicate_queue_names_count_once() {
        let q = |s: &str| s.to_string();
        let got = distinct_queues(&[q("a"), q("b"), q("a")]).expect("valid");
        assert_eq!(got, vec![q("a"), q("b")]);
        assert!(distinct_queues(&[q("bad queue")]).is_err());
    }
}
