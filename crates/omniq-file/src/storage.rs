//! [`FileStorage`]: the public type, its shared state, and the `Storage` impl — each
//! method one line over the inner function in `claim.rs`, `lease.rs` or `admin.rs`.

use crate::config::{Durability, FileStorageBuilder, Location};
use crate::error::{BACKEND, Error, Result, config};
use crate::schema::Keys;
use object_store::ObjectStore;
use omniq_core::{
    CancelOutcome, Capabilities, ClaimRequest, Claimed, Completion, Enqueued, Failure, Format,
    LeaseRef, OperationExt, Outcome, Page, QueueCounts, Storage, StorageError, Task, TaskFilter,
    TaskId, TaskResult, Wake, async_trait, validate_name,
};
use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use time::OffsetDateTime;
use tokio::sync::broadcast;

/// Largest batch one call accepts (see [`Capabilities::max_batch`]).
pub const MAX_BATCH: usize = 1000;

/// The file [`Storage`]: tasks as files in a local directory, in memory, or in any
/// object store with conditional creates. Cheap to clone (clones share the store);
/// `Debug` shows the namespace and location only.
#[derive(Clone)]
pub struct FileStorage {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) keys: Keys,
    pub(crate) namespace: String,
    pub(crate) location: Location,
    /// The local directory, when the store is one (for `syncfs` and the `Debug` output).
    pub(crate) local_root: Option<PathBuf>,
    pub(crate) format: Format,
    pub(crate) result_ttl: time::Duration,
    pub(crate) durability: Durability,
    pub(crate) clock: Arc<dyn omniq_core::Clock>,
    pub(crate) closed: AtomicBool,
    /// Shared by every instance of this process on the same directory and namespace.
    pub(crate) wake: broadcast::Sender<Wake>,
    pub(crate) ready: crate::cache::ReadyCache,
    pub(crate) held: crate::cache::Held,
    pub(crate) committed: crate::cache::Committed,
    pub(crate) index_files: crate::cache::IndexFiles,
    /// A create answered `AlreadyExists` is checked against the bytes written (stores
    /// given by the caller may retry a create whose response was lost).
    pub(crate) verify_creates: bool,
}

impl fmt::Debug for FileStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStorage")
            .field("namespace", &self.inner.namespace)
            .field("location", &self.inner.location)
            .field("serializer", &self.inner.format)
            .field("durability", &self.inner.durability)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl FileStorage {
    /// A builder: `.dir(…)`, `.in_memory()` or `.store(…)`, then `.build().await`.
    pub fn builder() -> FileStorageBuilder {
        FileStorageBuilder::new()
    }

    /// Opens (creating if needed) the directory at `path` with the defaults.
    pub async fn open(path: impl AsRef<std::path::Path>) -> Result<Self, StorageError> {
        Self::builder().dir(path).build().await
    }

    /// A private in-memory store with the defaults.
    pub async fn in_memory() -> Result<Self, StorageError> {
        Self::builder().in_memory().build().await
    }

    /// Any object store that supports conditional creates, with the defaults.
    pub async fn with_store(store: Arc<dyn ObjectStore>) -> Result<Self, StorageError> {
        Self::builder().store(store).build().await
    }

    /// Opens the location a URL names (see [`crate::FileConfig::from_url`]).
    pub async fn from_url(url: &str) -> Result<Self, StorageError> {
        FileStorageBuilder::from_config(crate::FileConfig::from_url(url)?)
            .build()
            .await
    }

    /// The namespace (key prefix).
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// Where the files live.
    pub fn location(&self) -> &Location {
        &self.inner.location
    }

    /// The object store under this storage.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    /// Now, by the configured clock.
    pub(crate) fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    /// How old something modified at `modified` is, by the configured clock.
    pub(crate) fn age(&self, modified: OffsetDateTime) -> time::Duration {
        self.now() - modified
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
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
    validate_name("queue", queue).map_err(config)?;
    if queue.bytes().all(|b| b == b'.') {
        return Err(config(format!(
            "invalid queue {queue:?}: \".\" and \"..\" cannot name a directory"
        )));
    }
    Ok(())
}

/// Distinct, validated queue names in request order.
pub(crate) fn distinct_queues(queues: &[String]) -> Result<Vec<&str>> {
    let mut out: Vec<&str> = Vec::with_capacity(queues.len());
    for q in queues {
        validate_queue(q)?;
        if !out.contains(&q.as_str()) {
            out.push(q);
        }
    }
    Ok(out)
}

#[async_trait]
impl Storage for FileStorage {
    fn backend_name(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            unique_keys: true,
            push_wakeup: true,
            transactional_enqueue: true,
            multi_process: !matches!(self.inner.location, Location::Memory),
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
        // Idempotent; every write was synced before its call returned, so there is
        // nothing left to flush.
        self.inner.closed.store(true, Ordering::Release);
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
        assert_send(FileStorage::in_memory());
        assert_send(FileStorage::open("unused"));
    }

    #[test]
    fn dot_names_are_rejected() {
        assert!(validate_queue("..").is_err());
        assert!(validate_queue("a.b").is_ok());
    }
}
