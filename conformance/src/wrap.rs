//! Wrapping a storage to change one behaviour, for tests.
//!
//! A [`Hooks`] implementation names an inner storage and overrides only the calls it
//! changes; every other call passes straight through. [`Wrapped`] turns it into a
//! [`Storage`]. The suite's own faulty wrappers ([`faulty`](crate::faulty)) are built this
//! way, and so can a test that needs, say, a slow `next_due` in front of a real backend:
//!
//! ```
//! use omniq_conformance::wrap::{Hooks, Wrapped};
//! use omniq_conformance::async_trait;
//! use omniq_core::{Storage, StorageError};
//! use std::sync::Arc;
//! use time::OffsetDateTime;
//!
//! #[derive(Debug)]
//! struct SlowDue(Arc<dyn Storage>);
//!
//! #[async_trait]
//! impl Hooks for SlowDue {
//!     fn inner(&self) -> &Arc<dyn Storage> {
//!         &self.0
//!     }
//!     async fn on_next_due(&self, q: &[String]) -> Result<Option<OffsetDateTime>, StorageError> {
//!         tokio::time::sleep(std::time::Duration::from_millis(10)).await;
//!         self.0.next_due(q).await
//!     }
//! }
//!
//! fn slow(inner: Arc<dyn Storage>) -> Arc<dyn Storage> {
//!     Arc::new(Wrapped(SlowDue(inner)))
//! }
//! ```

use async_trait::async_trait;
use omniq_core::broadcast;
use omniq_core::{
    CancelOutcome, Capabilities, ClaimRequest, Claimed, Completion, Enqueued, Failure, LeaseRef,
    Outcome, Page, QueueCounts, Storage, StorageError, Task, TaskFilter, TaskId, TaskResult, Wake,
};
use std::fmt;
use std::sync::Arc;
use time::OffsetDateTime;

/// The calls of a wrapper: each passes through to [`inner`](Hooks::inner) unless
/// overridden.
#[async_trait]
pub trait Hooks: Send + Sync + fmt::Debug + 'static {
    /// The wrapped storage.
    fn inner(&self) -> &Arc<dyn Storage>;

    /// [`Storage::backend_name`].
    fn name(&self) -> &'static str {
        self.inner().backend_name()
    }

    /// [`Storage::capabilities`].
    fn caps(&self) -> Capabilities {
        self.inner().capabilities()
    }

    /// [`Storage::subscribe`].
    fn on_subscribe(&self) -> Option<broadcast::Receiver<Wake>> {
        self.inner().subscribe()
    }

    /// [`Storage::enqueue`].
    async fn on_enqueue(&self, tasks: Vec<Task>) -> Result<Vec<Enqueued>, StorageError> {
        self.inner().enqueue(tasks).await
    }

    /// [`Storage::claim`].
    async fn on_claim(&self, req: ClaimRequest) -> Result<Vec<Claimed>, StorageError> {
        self.inner().claim(req).await
    }

    /// [`Storage::next_due`].
    async fn on_next_due(&self, queues: &[String]) -> Result<Option<OffsetDateTime>, StorageError> {
        self.inner().next_due(queues).await
    }

    /// [`Storage::heartbeat`].
    async fn on_heartbeat(
        &self,
        leases: &[LeaseRef],
        until: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        self.inner().heartbeat(leases, until).await
    }

    /// [`Storage::start`].
    async fn on_start(&self, leases: &[LeaseRef]) -> Result<Vec<Outcome>, StorageError> {
        self.inner().start(leases).await
    }

    /// [`Storage::complete`].
    async fn on_complete(&self, items: Vec<Completion>) -> Result<Vec<Outcome>, StorageError> {
        self.inner().complete(items).await
    }

    /// [`Storage::fail`].
    async fn on_fail(&self, items: Vec<Failure>) -> Result<Vec<Outcome>, StorageError> {
        self.inner().fail(items).await
    }

    /// [`Storage::release`].
    async fn on_release(
        &self,
        leases: &[LeaseRef],
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        self.inner().release(leases, now).await
    }

    /// [`Storage::get_task`].
    async fn on_get_task(&self, id: &TaskId) -> Result<Option<Task>, StorageError> {
        self.inner().get_task(id).await
    }

    /// [`Storage::reschedule`].
    async fn on_reschedule(
        &self,
        id: &TaskId,
        new_eta: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        self.inner().reschedule(id, new_eta, now).await
    }

    /// [`Storage::get_result`].
    async fn on_get_result(&self, id: &TaskId) -> Result<Option<TaskResult>, StorageError> {
        self.inner().get_result(id).await
    }

    /// [`Storage::cancel`].
    async fn on_cancel(
        &self,
        id: &TaskId,
        now: OffsetDateTime,
    ) -> Result<CancelOutcome, StorageError> {
        self.inner().cancel(id, now).await
    }

    /// [`Storage::list_tasks`].
    async fn on_list_tasks(&self, filter: TaskFilter) -> Result<Page<Task>, StorageError> {
        self.inner().list_tasks(filter).await
    }

    /// [`Storage::counts`].
    async fn on_counts(&self, queue: Option<&str>) -> Result<Vec<QueueCounts>, StorageError> {
        self.inner().counts(queue).await
    }

    /// [`Storage::purge_results`].
    async fn on_purge_results(&self, older_than: OffsetDateTime) -> Result<u64, StorageError> {
        self.inner().purge_results(older_than).await
    }

    /// [`Storage::close`].
    async fn on_close(&self) -> Result<(), StorageError> {
        self.inner().close().await
    }
}

/// A [`Storage`] made of [`Hooks`].
#[derive(Debug)]
pub struct Wrapped<H>(pub H);

#[async_trait]
impl<H: Hooks> Storage for Wrapped<H> {
    fn backend_name(&self) -> &'static str {
        self.0.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.0.caps()
    }
    fn subscribe(&self) -> Option<broadcast::Receiver<Wake>> {
        self.0.on_subscribe()
    }
    async fn enqueue(&self, tasks: Vec<Task>) -> Result<Vec<Enqueued>, StorageError> {
        self.0.on_enqueue(tasks).await
    }
    async fn claim(&self, req: ClaimRequest) -> Result<Vec<Claimed>, StorageError> {
        self.0.on_claim(req).await
    }
    async fn next_due(&self, queues: &[String]) -> Result<Option<OffsetDateTime>, StorageError> {
        self.0.on_next_due(queues).await
    }
    async fn heartbeat(
        &self,
        leases: &[LeaseRef],
        until: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        self.0.on_heartbeat(leases, until).await
    }
    async fn start(&self, leases: &[LeaseRef]) -> Result<Vec<Outcome>, StorageError> {
        self.0.on_start(leases).await
    }
    async fn complete(&self, items: Vec<Completion>) -> Result<Vec<Outcome>, StorageError> {
        self.0.on_complete(items).await
    }
    async fn fail(&self, items: Vec<Failure>) -> Result<Vec<Outcome>, StorageError> {
        self.0.on_fail(items).await
    }
    async fn release(
        &self,
        leases: &[LeaseRef],
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        self.0.on_release(leases, now).await
    }
    async fn get_task(&self, id: &TaskId) -> Result<Option<Task>, StorageError> {
        self.0.on_get_task(id).await
    }
    async fn reschedule(
        &self,
        id: &TaskId,
        new_eta: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        self.0.on_reschedule(id, new_eta, now).await
    }
    async fn get_result(&self, id: &TaskId) -> Result<Option<TaskResult>, StorageError> {
        self.0.on_get_result(id).await
    }
    async fn cancel(
        &self,
        id: &TaskId,
        now: OffsetDateTime,
    ) -> Result<CancelOutcome, StorageError> {
        self.0.on_cancel(id, now).await
    }
    async fn list_tasks(&self, filter: TaskFilter) -> Result<Page<Task>, StorageError> {
        self.0.on_list_tasks(filter).await
    }
    async fn counts(&self, queue: Option<&str>) -> Result<Vec<QueueCounts>, StorageError> {
        self.0.on_counts(queue).await
    }
    async fn purge_results(&self, older_than: OffsetDateTime) -> Result<u64, StorageError> {
        self.0.on_purge_results(older_than).await
    }
    async fn close(&self) -> Result<(), StorageError> {
        self.0.on_close().await
    }
}
