//! An idle worker listens for wake-up hints while it asks the storage when the next task
//! falls due: a task enqueued during that query starts without waiting for its answer.

use omniq::backend::{
    ClaimRequest, Claimed, Completion, Enqueued, Failure, LeaseRef, Outcome, Page, QueueCounts,
    TaskFilter,
};
use omniq::{
    AsyncTaskQueue, AsyncWorkerPool, CancelOutcome, Capabilities, HandlerError, Storage,
    StorageError, Task, TaskId, TaskResult, TaskStatus, Wake, async_trait,
};
use omniq_sqlite::SqliteStorage;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// How long every `next_due` takes.
const NEXT_DUE_TAKES: Duration = Duration::from_secs(20);

/// Delegates to SQLite; `next_due` answers only after `NEXT_DUE_TAKES`.
#[derive(Debug)]
struct SlowDue {
    inner: SqliteStorage,
}

#[async_trait]
impl Storage for SlowDue {
    fn backend_name(&self) -> &'static str {
        "slow-due"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<Wake>> {
        self.inner.subscribe()
    }
    async fn enqueue(&self, t: Vec<Task>) -> Result<Vec<Enqueued>, StorageError> {
        self.inner.enqueue(t).await
    }
    async fn claim(&self, r: ClaimRequest) -> Result<Vec<Claimed>, StorageError> {
        self.inner.claim(r).await
    }
    async fn next_due(&self, q: &[String]) -> Result<Option<OffsetDateTime>, StorageError> {
        // Far slower than anything below: a hint must not wait for it.
        tokio::time::sleep(NEXT_DUE_TAKES).await;
        self.inner.next_due(q).await
    }
    async fn heartbeat(
        &self,
        l: &[LeaseRef],
        until: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        self.inner.heartbeat(l, until).await
    }
    async fn start(&self, l: &[LeaseRef]) -> Result<Vec<Outcome>, StorageError> {
        self.inner.start(l).await
    }
    async fn complete(&self, c: Vec<Completion>) -> Result<Vec<Outcome>, StorageError> {
        self.inner.complete(c).await
    }
    async fn fail(&self, f: Vec<Failure>) -> Result<Vec<Outcome>, StorageError> {
        self.inner.fail(f).await
    }
    async fn release(
        &self,
        l: &[LeaseRef],
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        self.inner.release(l, now).await
    }
    async fn get_task(&self, id: &TaskId) -> Result<Option<Task>, StorageError> {
        self.inner.get_task(id).await
    }
    async fn reschedule(
        &self,
        id: &TaskId,
        eta: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        self.inner.reschedule(id, eta, now).await
    }
    async fn get_result(&self, id: &TaskId) -> Result<Option<TaskResult>, StorageError> {
        self.inner.get_result(id).await
    }
    async fn cancel(
        &self,
        id: &TaskId,
        now: OffsetDateTime,
    ) -> Result<CancelOutcome, StorageError> {
        self.inner.cancel(id, now).await
    }
    async fn list_tasks(&self, f: TaskFilter) -> Result<Page<Task>, StorageError> {
        self.inner.list_tasks(f).await
    }
    async fn counts(&self, q: Option<&str>) -> Result<Vec<QueueCounts>, StorageError> {
        self.inner.counts(q).await
    }
    async fn purge_results(&self, older: OffsetDateTime) -> Result<u64, StorageError> {
        self.inner.purge_results(older).await
    }
    async fn close(&self) -> Result<(), StorageError> {
        self.inner.close().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hint_during_next_due_starts_the_claim_at_once() {
    let storage = Arc::new(SlowDue {
        inner: SqliteStorage::in_memory().await.expect("sqlite"),
    });
    assert!(
        storage.capabilities().push_wakeup,
        "the case needs push wake-ups"
    );
    let queue = AsyncTaskQueue::new(Arc::clone(&storage) as Arc<dyn Storage>);
    let mut pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .poll_interval(Duration::from_secs(60))
        .build()
        .expect("pool");
    pool.register("work", |x: u32| async move { Ok::<_, HandlerError>(x) });
    pool.start().expect("start");
    // The first claim finds nothing: the fetcher is now waiting for `next_due`.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for x in 0..3u32 {
        let id = queue.enqueue("work", &x).await.expect("enqueue");
        // Well inside NEXT_DUE_TAKES: the task must not wait for the query's answer.
        let out = queue
            .wait_result(&id, NEXT_DUE_TAKES / 2)
            .await
            .expect("the hint starts the claim while next_due is still running");
        assert_eq!(out.status, TaskStatus::Success);
    }
    pool.stop(Duration::from_secs(5)).await.expect("stop");
}
