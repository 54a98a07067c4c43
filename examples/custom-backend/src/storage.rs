//! [`MemoryStorage`] and its `impl Storage`: each method one line over an inner
//! function (in `claim.rs`, `lease.rs`, `admin.rs`) that names its operation.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use omniq_core::broadcast;
use omniq_core::time::OffsetDateTime;
use omniq_core::{
    CancelOutcome, Capabilities, ClaimRequest, Claimed, Completion, Enqueued, Failure, LeaseRef,
    OperationExt, Outcome, Page, QueueCounts, Storage, StorageError, Task, TaskFilter, TaskId,
    TaskResult, Wake, async_trait,
};

use crate::connect::Namespace;
use crate::{BACKEND, MemoryConfig, MemoryServer};

/// An OmniQ storage that keeps everything in process memory, on one namespace of a
/// [`MemoryServer`].
///
/// Correct under any number of concurrent callers (one lock per namespace, held for
/// the length of one batch), but gone when the process exits: for tests, demos and
/// single-process tools. Several handles on one namespace share its tasks within the
/// process; the backend does not report `multi_process`.
#[derive(Debug)]
pub struct MemoryStorage {
    pub(crate) server: MemoryServer,
    pub(crate) ns: Arc<Namespace>,
    pub(crate) config: MemoryConfig,
    pub(crate) closed: AtomicBool,
}

impl MemoryStorage {
    /// A storage on a private server of its own, namespace `default`.
    pub fn new() -> Self {
        let config = MemoryConfig::new(omniq_core::DEFAULT_QUEUE).expect("a valid name");
        MemoryServer::new()
            .connect(config)
            .expect("a new server is running")
    }

    /// The namespace this handle works in.
    pub fn namespace(&self) -> &str {
        self.config.namespace()
    }

    /// The server this handle is connected to.
    pub fn server(&self) -> &MemoryServer {
        &self.server
    }
}

impl Default for MemoryStorage {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Storage for MemoryStorage {
    fn backend_name(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            unique_keys: true,
            push_wakeup: true,
            transactional_enqueue: true,
            multi_process: false,
            max_batch: 1000,
        }
    }

    async fn enqueue(&self, tasks: Vec<Task>) -> Result<Vec<Enqueued>, StorageError> {
        self.enqueue_tasks(tasks).operation("enqueue")
    }

    async fn claim(&self, req: ClaimRequest) -> Result<Vec<Claimed>, StorageError> {
        self.claim_tasks(&req).operation("claim")
    }

    async fn next_due(&self, queues: &[String]) -> Result<Option<OffsetDateTime>, StorageError> {
        self.earliest_due(queues).operation("next_due")
    }

    async fn heartbeat(
        &self,
        leases: &[LeaseRef],
        until: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        self.extend_leases(leases, until).operation("heartbeat")
    }

    async fn start(&self, leases: &[LeaseRef]) -> Result<Vec<Outcome>, StorageError> {
        self.record_starts(leases).operation("start")
    }

    async fn complete(&self, items: Vec<Completion>) -> Result<Vec<Outcome>, StorageError> {
        self.complete_runs(items).operation("complete")
    }

    async fn fail(&self, items: Vec<Failure>) -> Result<Vec<Outcome>, StorageError> {
        self.fail_runs(items).operation("fail")
    }

    async fn release(
        &self,
        leases: &[LeaseRef],
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        self.release_claims(leases, now).operation("release")
    }

    async fn get_task(&self, id: &TaskId) -> Result<Option<Task>, StorageError> {
        self.read(|s| s.get(id).map(|e| e.task.clone()))
            .operation("get_task")
    }

    async fn reschedule(
        &self,
        id: &TaskId,
        new_eta: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        self.reschedule_task(id, new_eta, now)
            .operation("reschedule")
    }

    async fn get_result(&self, id: &TaskId) -> Result<Option<TaskResult>, StorageError> {
        self.read_result(id).operation("get_result")
    }

    async fn cancel(
        &self,
        id: &TaskId,
        now: OffsetDateTime,
    ) -> Result<CancelOutcome, StorageError> {
        self.cancel_task(id, now).operation("cancel")
    }

    async fn list_tasks(&self, filter: TaskFilter) -> Result<Page<Task>, StorageError> {
        self.list(&filter).operation("list_tasks")
    }

    async fn counts(&self, queue: Option<&str>) -> Result<Vec<QueueCounts>, StorageError> {
        self.count(queue).operation("counts")
    }

    async fn purge_results(&self, older_than: OffsetDateTime) -> Result<u64, StorageError> {
        self.purge(older_than).operation("purge_results")
    }

    async fn close(&self) -> Result<(), StorageError> {
        self.close_handle();
        Ok(())
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<Wake>> {
        Some(self.wake_receiver())
    }
}
