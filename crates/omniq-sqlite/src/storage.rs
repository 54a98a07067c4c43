//! [`SqliteStorage`]: the public type, its shared state, and the `Storage` impl — each
//! method one line over the inner function in `claim.rs`, `lease.rs` or `admin.rs`.

use crate::config::{Location, SqliteStorageBuilder};
use crate::error::{BACKEND, Error, Result, config};
use crate::schema::Sql;
use omniq_core::{
    CancelOutcome, Capabilities, ClaimRequest, Claimed, Completion, Enqueued, Failure, Format,
    LeaseRef, OperationExt, Outcome, Page, QueueCounts, Storage, StorageError, Task, TaskFilter,
    TaskId, TaskResult, Wake, async_trait, validate_name,
};
use sqlx::SqlitePool;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use time::OffsetDateTime;
use tokio::sync::broadcast;

/// Largest batch one call accepts (see [`Capabilities::max_batch`]); larger batches work
/// too, split internally into cached statement shapes.
pub const MAX_BATCH: usize = 1000;

/// The SQLite [`Storage`]. Cheap to clone (all clones share the pools); `Debug` shows the
/// namespace and location only.
#[derive(Clone)]
pub struct SqliteStorage {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// One connection: in-process writers queue on the pool instead of spinning on
    /// `SQLITE_BUSY`; every write batch is one `BEGIN IMMEDIATE` transaction on it.
    pub(crate) writer: SqlitePool,
    /// Readers (file mode); the writer pool itself in memory mode.
    pub(crate) reader: SqlitePool,
    pub(crate) sql: Sql,
    pub(crate) namespace: String,
    pub(crate) location: Location,
    pub(crate) format: Format,
    pub(crate) result_ttl_us: i64,
    pub(crate) closed: AtomicBool,
    pub(crate) wake: broadcast::Sender<Wake>,
    /// In memory mode: an idle connection that keeps the named shared-cache database
    /// alive, so the pool can replace its connection without losing the data.
    pub(crate) _keeper: Option<std::sync::Mutex<sqlx::SqliteConnection>>,
    /// When expired results were last swept (unix micros).
    pub(crate) last_sweep_us: AtomicI64,
}

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

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    pub(crate) fn reader(&self) -> Result<&SqlitePool> {
        self.check_open()?;
        Ok(&self.inner.reader)
    }

    pub(crate) fn wake(&self, wake: Wake) {
        // No receivers is fine: wake-ups are hints.
        let _ = self.inner.wake.send(wake);
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

/// A queue name checked like every other name: a `Config` error otherwise.
pub(crate) fn validate_queue(queue: &str) -> Result<()> {
    validate_name("queue", queue).map_err(config)
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
