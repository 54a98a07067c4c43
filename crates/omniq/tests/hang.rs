//! A backend call that never returns (S3): the pool gives up on it after
//! `storage_timeout`, `stop` still returns, and the pool recovers once the backend
//! answers again.

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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// Delegates to SQLite; while `hung` is set, every call hangs forever.
#[derive(Debug)]
struct Hang {
    inner: SqliteStorage,
    hung: AtomicBool,
}

impl Hang {
    async fn gate(&self) {
        if self.hung.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl Storage for Hang {
    fn backend_name(&self) -> &'static str {
        "hang"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<Wake>> {
        self.inner.subscribe()
    }
    async fn enqueue(&self, t: Vec<Task>) -> Result<Vec<Enqueued>, StorageError> {
        self.gate().await;
        self.inner.enqueue(t).await
    }
    async fn claim(&self, r: ClaimRequest) -> Result<Vec<Claimed>, StorageError> {
        self.gate().await;
        self.inner.claim(r).await
    }
    async fn next_due(&self, q: &[String]) -> Result<Option<OffsetDateTime>, StorageError> {
        self.gate().await;
        self.inner.next_due(q).await
    }
    async fn heartbeat(
        &self,
        l: &[LeaseRef],
        until: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        self.gate().await;
        self.inner.heartbeat(l, until).await
    }
    async fn start(&self, l: &[LeaseRef]) -> Result<Vec<Outcome>, StorageError> {
        self.gate().await;
        self.inner.start(l).await
    }
    async fn complete(&self, c: Vec<Completion>) -> Result<Vec<Outcome>, StorageError> {
        self.gate().await;
        self.inner.complete(c).await
    }
    async fn fail(&self, f: Vec<Failure>) -> Result<Vec<Outcome>, StorageError> {
        self.gate().await;
        self.inner.fail(f).await
    }
    async fn release(
        &self,
        l: &[LeaseRef],
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        self.gate().await;
        self.inner.release(l, now).await
    }
    async fn get_task(&self, id: &TaskId) -> Result<Option<Task>, StorageError> {
        self.gate().await;
        self.inner.get_task(id).await
    }
    async fn reschedule(
        &self,
        id: &TaskId,
        eta: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        self.gate().await;
        self.inner.reschedule(id, eta, now).await
    }
    async fn get_result(&self, id: &TaskId) -> Result<Option<TaskResult>, StorageError> {
        self.gate().await;
        self.inner.get_result(id).await
    }
    async fn cancel(
        &self,
        id: &TaskId,
        now: OffsetDateTime,
    ) -> Result<CancelOutcome, StorageError> {
        self.gate().await;
        self.inner.cancel(id, now).await
    }
    async fn list_tasks(&self, f: TaskFilter) -> Result<Page<Task>, StorageError> {
        self.gate().await;
        self.inner.list_tasks(f).await
    }
    async fn counts(&self, q: Option<&str>) -> Result<Vec<QueueCounts>, StorageError> {
        self.gate().await;
        self.inner.counts(q).await
    }
    async fn purge_results(&self, older: OffsetDateTime) -> Result<u64, StorageError> {
        self.gate().await;
        self.inner.purge_results(older).await
    }
    async fn close(&self) -> Result<(), StorageError> {
        self.inner.close().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_backend_neither_stalls_stop_nor_the_pool_for_good() {
    let hang = Arc::new(Hang {
        inner: SqliteStorage::in_memory().await.expect("sqlite"),
        hung: AtomicBool::new(false),
    });
    let queue = AsyncTaskQueue::new(Arc::clone(&hang) as Arc<dyn Storage>);
    let build = || {
        let mut p = AsyncWorkerPool::builder()
            .queue(queue.clone())
            .poll_interval(Duration::from_millis(20))
            .storage_timeout(Duration::from_millis(300))
            .build()
            .expect("pool");
        p.register("work", |x: u32| async move { Ok::<_, HandlerError>(x) });
        p
    };
    let pool = build();
    pool.start().expect("start");
    let before = queue.enqueue("work", &1u32).await.expect("enqueue");
    queue
        .wait_result(&before, Duration::from_secs(10))
        .await
        .expect("runs while the backend answers");

    hang.hung.store(true, Ordering::SeqCst);
    // A wait on a hung backend ends at its own deadline.
    let waited = Instant::now();
    let e = queue
        .wait_result(&before, Duration::from_millis(200))
        .await
        .expect_err("times out");
    assert!(matches!(e, omniq::Error::Timeout(_)), "{e}");
    assert!(waited.elapsed() < Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stopping = Instant::now();
    pool.stop(Duration::from_millis(200)).await.expect("stop");
    // The drain (200 ms) plus one storage_timeout per final step, never forever.
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        stopping.elapsed()
    );

    // The backend answers again: a new pool works.
    hang.hung.store(false, Ordering::SeqCst);
    let pool = build();
    pool.start().expect("start again");
    let after = queue.enqueue("work", &2u32).await.expect("enqueue");
    let out = queue
        .wait_result(&after, Duration::from_secs(10))
        .await
        .expect("runs after the hang");
    assert_eq!(out.status, TaskStatus::Success);
    pool.stop(Duration::from_secs(5)).await.expect("stop");
}

/// Outcomes waiting to be stored when the backend hangs: `stop` must not retry them for
/// a whole lease (30 s by default); it returns within `max(timeout, storage_timeout)`
/// plus one `storage_timeout`, and the tasks are redelivered afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_with_outcomes_to_flush_on_a_hung_backend_is_bounded() {
    let hang = Arc::new(Hang {
        inner: SqliteStorage::in_memory().await.expect("sqlite"),
        hung: AtomicBool::new(false),
    });
    let queue = AsyncTaskQueue::new(Arc::clone(&hang) as Arc<dyn Storage>);
    let started = Arc::new(tokio::sync::Semaphore::new(0));
    let mut pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .concurrency(4)
        .poll_interval(Duration::from_millis(20))
        .storage_timeout(Duration::from_millis(300))
        .build()
        .expect("pool");
    let signal = Arc::clone(&started);
    pool.register("slow", move |x: u32| {
        let signal = Arc::clone(&signal);
        async move {
            signal.add_permits(1);
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, HandlerError>(x)
        }
    });
    pool.start().expect("start");
    let mut ids = Vec::new();
    for i in 0..4u32 {
        ids.push(queue.enqueue("slow", &i).await.expect("enqueue"));
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), started.acquire_many(4))
        .await
        .expect("all four runs started");
    // The runs finish while the backend hangs: their outcomes cannot be stored.
    hang.hung.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopping = Instant::now();
    pool.stop(Duration::from_millis(100)).await.expect("stop");
    let took = stopping.elapsed();
    // Bound: max(0.1, 0.3) + 0.3 s, and a quarter second of grace; the old behaviour
    // retried the flush for the whole 30 s lease.
    assert!(took < Duration::from_secs(3), "stop took {took:?}");

    // The backend answers again: the tasks are still there and finish (their runs'
    // outcomes were lost, so they run again after the lease or are already stored).
    hang.hung.store(false, Ordering::SeqCst);
    let task = hang
        .inner
        .get_task(&ids[0])
        .await
        .expect("get")
        .expect("exists");
    assert!(
        matches!(task.status, TaskStatus::Running | TaskStatus::Success),
        "{:?}",
        task.status
    );
}

/// The queue's own calls have a deadline too: an enqueue, a read or a cancel on a hung
/// backend fails with a temporary error naming the operation instead of blocking the
/// producer for good, and works again once the backend answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_calls_on_a_hung_backend_end_at_the_storage_timeout() {
    let hang = Arc::new(Hang {
        inner: SqliteStorage::in_memory().await.expect("sqlite"),
        hung: AtomicBool::new(false),
    });
    let queue = AsyncTaskQueue::new(Arc::clone(&hang) as Arc<dyn Storage>)
        .with_storage_timeout(Duration::from_millis(200));
    assert_eq!(queue.storage_timeout(), Duration::from_millis(200));
    let id = queue.enqueue("work", &1u32).await.expect("enqueue");
    hang.hung.store(true, Ordering::SeqCst);
    let t = Instant::now();
    let e = queue
        .enqueue("work", &2u32)
        .await
        .expect_err("hung enqueue fails");
    let omniq::Error::Storage(se) = &e else {
        panic!("not a storage error: {e}")
    };
    assert_eq!(se.kind(), omniq::StorageErrorKind::Unavailable, "{se}");
    assert_eq!(se.operation(), Some("enqueue"));
    assert!(se.is_temporary());
    for (op, r) in [
        ("get_task", queue.get_task(&id).await.map(|_| ())),
        ("cancel", queue.cancel(&id).await.map(|_| ())),
        ("counts", queue.counts(None).await.map(|_| ())),
    ] {
        let e = r.expect_err(op);
        assert!(e.to_string().contains("storage_timeout"), "{op}: {e}");
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    hang.hung.store(false, Ordering::SeqCst);
    assert!(queue.get_task(&id).await.expect("answers again").is_some());
}
