//! Worker pool behaviour that does not depend on the backend: drain on stop, the claim
//! bound, constructor validation, and the blocking wrappers. Runs on SQLite in memory.

use omniq::backend::ClaimRequest;
use omniq::{AsyncTaskQueue, AsyncWorkerPool, HandlerError, Storage, TaskStatus};
use omniq_sqlite::SqliteStorage;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;

async fn storage() -> Arc<dyn Storage> {
    Arc::new(SqliteStorage::in_memory().await.expect("sqlite in memory"))
}

async fn count(storage: &Arc<dyn Storage>, status: TaskStatus) -> u64 {
    storage
        .counts(None)
        .await
        .expect("counts")
        .iter()
        .map(|c| c.get(status))
        .sum()
}

async fn wait_until<F: AsyncFnMut() -> bool>(mut f: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in 20s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_drains_in_flight_tasks_and_hands_back_unstarted_claims() {
    let storage = storage().await;
    let queue = AsyncTaskQueue::new(Arc::clone(&storage));
    let mut pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .concurrency(2)
        .prefetch(4)
        .poll_interval(Duration::from_millis(20))
        .build()
        .expect("pool");
    let gate = Arc::new(Semaphore::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let (g, s) = (Arc::clone(&gate), Arc::clone(&started));
    pool.register("held", move |_: u32| {
        let (g, s) = (Arc::clone(&g), Arc::clone(&s));
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            let _permit = g.acquire().await.map_err(HandlerError::from)?;
            Ok::<_, HandlerError>(())
        }
    });
    let mut ids = Vec::new();
    for i in 0..10u32 {
        ids.push(queue.enqueue("held", &i).await.expect("enqueue"));
    }
    pool.start().expect("start");
    // Two run, four more are claimed and waiting: 6 Running in storage, never more.
    wait_until(async || {
        started.load(Ordering::SeqCst) == 2 && count(&storage, TaskStatus::Running).await == 6
    })
    .await;
    assert_eq!(
        count(&storage, TaskStatus::Running).await,
        6,
        "claims are bounded by concurrency + prefetch"
    );

    let stopping = {
        let gate = Arc::clone(&gate);
        async move {
            // Let the in-flight pair finish shortly after stop begins.
            tokio::time::sleep(Duration::from_millis(100)).await;
            gate.add_permits(100);
        }
    };
    let (report, ()) = tokio::join!(pool.stop(Duration::from_secs(10)), stopping);
    let report = report.expect("stop");
    assert_eq!(report.drained, 2, "{report:?}");
    assert_eq!(report.handed_back, 4, "{report:?}");
    assert_eq!(report.aborted, 0, "{report:?}");
    assert_eq!(
        started.load(Ordering::SeqCst),
        2,
        "no new task starts after stop"
    );
    assert_eq!(count(&storage, TaskStatus::Success).await, 2);
    assert_eq!(count(&storage, TaskStatus::Running).await, 0);
    assert_eq!(count(&storage, TaskStatus::Pending).await, 8);

    // Handed-back claims are claimable again at once, with their attempt not counted.
    let again = storage
        .claim(ClaimRequest {
            queues: vec!["default".into()],
            limit: 100,
            now: time::OffsetDateTime::now_utc(),
            lease: time::Duration::seconds(30),
        })
        .await
        .expect("claim");
    assert_eq!(again.len(), 8);
    assert!(
        again.iter().all(|c| c.task.attempts == 1),
        "released claims do not count as attempts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_aborts_runs_past_the_timeout_and_hands_them_back() {
    let storage = storage().await;
    let queue = AsyncTaskQueue::new(Arc::clone(&storage));
    let mut pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .concurrency(1)
        .prefetch(0)
        .poll_interval(Duration::from_millis(20))
        .build()
        .expect("pool");
    struct Dropped(Arc<AtomicUsize>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let started = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let (s, d) = (Arc::clone(&started), Arc::clone(&dropped));
    pool.register("forever", move |_: ()| {
        let (s, d) = (Arc::clone(&s), Arc::clone(&d));
        async move {
            let _guard = Dropped(d);
            s.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            Ok::<_, HandlerError>(())
        }
    });
    let id = queue.enqueue("forever", &()).await.expect("enqueue");
    pool.start().expect("start");
    wait_until(async || started.load(Ordering::SeqCst) == 1).await;
    let report = pool.stop(Duration::from_millis(100)).await.expect("stop");
    assert_eq!(report.aborted, 1, "{report:?}");
    let task = storage.get_task(&id).await.expect("get").expect("exists");
    assert_eq!(
        task.status,
        TaskStatus::Pending,
        "aborted run is handed back"
    );
    // The handler itself was stopped, not left running detached.
    wait_until(async || dropped.load(Ordering::SeqCst) == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_never_holds_more_than_concurrency_plus_prefetch() {
    let probe = Arc::new(Probe::new(storage().await, 0, 0));
    let storage: Arc<dyn Storage> = Arc::clone(&probe) as Arc<dyn Storage>;
    let queue = AsyncTaskQueue::new(Arc::clone(&storage));
    let mut pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .concurrency(3)
        .prefetch(2)
        .poll_interval(Duration::from_millis(10))
        .build()
        .expect("pool");
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (Arc::clone(&running), Arc::clone(&peak));
    pool.register("work", move |_: u32| {
        let (r, p) = (Arc::clone(&r), Arc::clone(&p));
        async move {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(2)).await;
            r.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, HandlerError>(())
        }
    });
    let specs = (0..300u32).map(|i| queue.task("work", &i)).collect();
    queue.enqueue_many(specs).await.expect("enqueue");
    pool.start().expect("start");
    wait_until(async || count(&storage, TaskStatus::Success).await == 300).await;
    pool.stop(Duration::from_secs(5)).await.expect("stop");
    // Counted at the storage boundary on every claim, not sampled.
    let held = probe.peak.load(Ordering::SeqCst);
    assert!(
        held <= 5,
        "held {held} claims at once, bound is concurrency + prefetch = 5"
    );
    assert!(held >= 4, "the pool did use its prefetch ({held})");
    assert!(
        peak.load(Ordering::SeqCst) <= 3,
        "ran {} at once, concurrency is 3",
        peak.load(Ordering::SeqCst)
    );
    assert_eq!(
        probe.outstanding.load(Ordering::SeqCst),
        0,
        "every claim was settled"
    );
}

#[tokio::test]
async fn constructor_needs_exactly_one_of_queue_or_storage() {
    let storage = storage().await;
    let err = AsyncWorkerPool::builder().build().expect_err("neither");
    assert!(
        err.to_string()
            .contains("needs either a queue or a storage"),
        "{err}"
    );
    #[allow(deprecated)]
    let err = AsyncWorkerPool::builder()
        .queue(AsyncTaskQueue::new(Arc::clone(&storage)))
        .storage(Arc::clone(&storage))
        .build()
        .expect_err("both");
    assert!(err.to_string().contains("not both"), "{err}");
    let err = AsyncWorkerPool::builder()
        .queue(AsyncTaskQueue::new(storage))
        .concurrency(0)
        .build()
        .expect_err("zero concurrency");
    assert!(err.to_string().contains("concurrency"), "{err}");
}

#[test]
fn blocking_wrappers_run_tasks_without_an_async_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = omniq::Settings {
        base_dir: dir.path().to_path_buf(),
        ..omniq::Settings::default()
    };
    let omniq = omniq::OmniQ::new(settings).expect("omniq");
    let mut worker = omniq.worker(2).expect("worker");
    worker.register(
        "double",
        |x: i64| async move { Ok::<_, HandlerError>(x * 2) },
    );
    worker.start().expect("start");
    let id = omniq
        .enqueue(omniq.task("double", &21i64))
        .expect("enqueue")
        .id;
    let res = omniq
        .wait_result(&id, Duration::from_secs(20))
        .expect("result");
    worker.stop(Duration::from_secs(5)).expect("stop");
    assert_eq!(res.status, TaskStatus::Success);
    let v: i64 = res.output().expect("decode");
    assert_eq!(v, 42);
    assert!(
        dir.path().join("omniq").is_dir() && !dir.path().join("omniq.db").exists(),
        "the embedded default stores files under base_dir/<namespace>"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_payloads_fail_their_task_not_the_worker() {
    let storage = storage().await;
    let queue = AsyncTaskQueue::new(Arc::clone(&storage));
    let mut pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .max_payload_bytes(64)
        .poll_interval(Duration::from_millis(20))
        .build()
        .expect("pool");
    pool.register("echo", |s: String| async move { Ok::<_, HandlerError>(s) });
    pool.start().expect("start");
    let big = queue
        .enqueue("echo", &"x".repeat(1000))
        .await
        .expect("enqueue");
    let big_res = queue
        .wait_result(&big, Duration::from_secs(20))
        .await
        .expect("big");
    // Enqueued only after the oversized task failed, so it proves the worker lived on.
    let small = queue.enqueue("echo", &"ok").await.expect("enqueue");
    let small_res = queue
        .wait_result(&small, Duration::from_secs(20))
        .await
        .expect("small");
    pool.stop(Duration::from_secs(5)).await.expect("stop");
    assert_eq!(big_res.status, TaskStatus::Failed);
    let err = big_res.error.expect("error");
    assert_eq!(err.error_type, omniq::ErrorType::Validation);
    assert!(err.message.contains("max_payload_bytes"), "{}", err.message);
    assert_eq!(
        small_res.status,
        TaskStatus::Success,
        "the worker keeps running"
    );

    // The queue refuses oversized args at enqueue, before anything is stored.
    let strict = AsyncTaskQueue::new(Arc::clone(&storage)).with_defaults(omniq::QueueDefaults {
        max_payload_bytes: 8,
        ..omniq::QueueDefaults::default()
    });
    let err = strict
        .enqueue("echo", &"x".repeat(100))
        .await
        .expect_err("too big");
    assert!(err.to_string().contains("max_payload_bytes"), "{err}");
}

#[tokio::test]
async fn blocking_wrappers_refuse_to_run_inside_an_async_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = omniq::Settings {
        base_dir: dir.path().to_path_buf(),
        ..omniq::Settings::default()
    };
    let err = omniq::OmniQ::new(settings).expect_err("inside a runtime");
    assert!(err.to_string().contains("AsyncOmniQ"), "{err}");
}

/// Real SQLite underneath, instrumented: the first `claims_fail` claims and
/// `completes_fail` completions fail with `Unavailable` (S3), and it tracks how many
/// claimed tasks are outstanding (claimed, outcome not yet written) and the peak.
#[derive(Debug)]
struct Probe {
    inner: Arc<dyn Storage>,
    claims_fail: std::sync::atomic::AtomicU32,
    completes_fail: std::sync::atomic::AtomicU32,
    /// The first N claims and completions panic (a buggy third-party backend).
    panics: std::sync::atomic::AtomicU32,
    outstanding: std::sync::atomic::AtomicI64,
    peak: std::sync::atomic::AtomicI64,
    /// Enqueue futures created and polled (started), and the (1-based) started batch
    /// that fails with `Unavailable` (0: none).
    enqueues_created: AtomicUsize,
    enqueues_started: AtomicUsize,
    enqueue_fails_at: AtomicUsize,
}

impl Probe {
    fn new(inner: Arc<dyn Storage>, claims_fail: u32, completes_fail: u32) -> Self {
        Self {
            inner,
            claims_fail: claims_fail.into(),
            completes_fail: completes_fail.into(),
            panics: 0.into(),
            outstanding: 0.into(),
            peak: 0.into(),
            enqueues_created: 0.into(),
            enqueues_started: 0.into(),
            enqueue_fails_at: 0.into(),
        }
    }
    fn settle(&self, n: usize) {
        self.outstanding.fetch_sub(n as i64, Ordering::SeqCst);
    }
    fn take_failure(counter: &std::sync::atomic::AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

fn down() -> omniq::StorageError {
    omniq::StorageError::new(
        omniq::StorageErrorKind::Unavailable,
        "probe",
        "server restarting",
    )
}

#[omniq::async_trait]
impl Storage for Probe {
    fn backend_name(&self) -> &'static str {
        "probe"
    }
    fn capabilities(&self) -> omniq::Capabilities {
        self.inner.capabilities()
    }
    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<omniq::Wake>> {
        self.inner.subscribe()
    }
    // Not `async`: counts the futures created apart from the ones polled.
    fn enqueue<'a, 'b>(
        &'a self,
        t: Vec<omniq::Task>,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<Vec<omniq::Enqueued>, omniq::StorageError>>
                + Send
                + 'b,
        >,
    >
    where
        'a: 'b,
        Self: 'b,
    {
        self.enqueues_created.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let n = self.enqueues_started.fetch_add(1, Ordering::SeqCst) + 1;
            if n == self.enqueue_fails_at.load(Ordering::SeqCst) {
                return Err(down());
            }
            self.inner.enqueue(t).await
        })
    }
    async fn claim(
        &self,
        r: ClaimRequest,
    ) -> Result<Vec<omniq::backend::Claimed>, omniq::StorageError> {
        if Self::take_failure(&self.claims_fail) {
            return Err(down());
        }
        if Self::take_failure(&self.panics) {
            panic!("probe: claim panicked (injected)");
        }
        let got = self.inner.claim(r).await?;
        let now = self
            .outstanding
            .fetch_add(got.len() as i64, Ordering::SeqCst)
            + got.len() as i64;
        self.peak.fetch_max(now, Ordering::SeqCst);
        Ok(got)
    }
    async fn next_due(
        &self,
        queues: &[String],
    ) -> Result<Option<time::OffsetDateTime>, omniq::StorageError> {
        self.inner.next_due(queues).await
    }
    async fn heartbeat(
        &self,
        l: &[omniq::backend::LeaseRef],
        u: time::OffsetDateTime,
    ) -> Result<Vec<omniq::backend::Outcome>, omniq::StorageError> {
        self.inner.heartbeat(l, u).await
    }
    async fn start(
        &self,
        l: &[omniq::backend::LeaseRef],
    ) -> Result<Vec<omniq::backend::Outcome>, omniq::StorageError> {
        self.inner.start(l).await
    }
    async fn complete(
        &self,
        i: Vec<omniq::backend::Completion>,
    ) -> Result<Vec<omniq::backend::Outcome>, omniq::StorageError> {
        if Self::take_failure(&self.completes_fail) {
            return Err(down());
        }
        if Self::take_failure(&self.panics) {
            panic!("probe: complete panicked (injected)");
        }
        let n = i.len();
        let out = self.inner.complete(i).await?;
        self.settle(n);
        Ok(out)
    }
    async fn fail(
        &self,
        i: Vec<omniq::backend::Failure>,
    ) -> Result<Vec<omniq::backend::Outcome>, omniq::StorageError> {
        let n = i.len();
        let out = self.inner.fail(i).await?;
        self.settle(n);
        Ok(out)
    }
    async fn release(
        &self,
        l: &[omniq::backend::LeaseRef],
        n: time::OffsetDateTime,
    ) -> Result<Vec<omniq::backend::Outcome>, omniq::StorageError> {
        let out = self.inner.release(l, n).await?;
        self.settle(l.len());
        Ok(out)
    }
    async fn get_task(
        &self,
        id: &omniq::TaskId,
    ) -> Result<Option<omniq::Task>, omniq::StorageError> {
        self.inner.get_task(id).await
    }
    async fn reschedule(
        &self,
        id: &omniq::TaskId,
        eta: time::OffsetDateTime,
        now: time::OffsetDateTime,
    ) -> Result<(), omniq::StorageError> {
        self.inner.reschedule(id, eta, now).await
    }
    async fn get_result(
        &self,
        id: &omniq::TaskId,
    ) -> Result<Option<omniq::TaskResult>, omniq::StorageError> {
        self.inner.get_result(id).await
    }
    async fn cancel(
        &self,
        id: &omniq::TaskId,
        now: time::OffsetDateTime,
    ) -> Result<omniq::CancelOutcome, omniq::StorageError> {
        self.inner.cancel(id, now).await
    }
    async fn list_tasks(
        &self,
        f: omniq::TaskFilter,
    ) -> Result<omniq::Page<omniq::Task>, omniq::StorageError> {
        self.inner.list_tasks(f).await
    }
    async fn counts(
        &self,
        q: Option<&str>,
    ) -> Result<Vec<omniq::QueueCounts>, omniq::StorageError> {
        self.inner.counts(q).await
    }
    async fn purge_results(&self, o: time::OffsetDateTime) -> Result<u64, omniq::StorageError> {
        self.inner.purge_results(o).await
    }
    async fn close(&self) -> Result<(), omniq::StorageError> {
        self.inner.close().await
    }
}

/// S3: a storage that is briefly unavailable (claims and completions fail with
/// `Unavailable`) slows the worker down but loses nothing: it backs off and recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_backs_off_and_recovers_when_storage_is_unavailable() {
    let flaky: Arc<dyn Storage> = Arc::new(Probe::new(storage().await, 4, 3));
    let queue = AsyncTaskQueue::new(Arc::clone(&flaky));
    let mut pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .concurrency(4)
        .poll_interval(Duration::from_millis(20))
        .build()
        .expect("pool");
    let runs = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&runs);
    pool.register("job", move |x: u32| {
        let r = Arc::clone(&r);
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            Ok::<u32, HandlerError>(x)
        }
    });
    let specs = (0..20u32).map(|i| queue.task("job", &i)).collect();
    let ids: Vec<_> = queue
        .enqueue_many(specs)
        .await
        .expect("enqueue")
        .into_iter()
        .map(|e| e.id)
        .collect();
    pool.start().expect("start");
    for id in &ids {
        let r = queue
            .wait_result(id, Duration::from_secs(30))
            .await
            .expect("result");
        assert_eq!(r.status, TaskStatus::Success);
        assert_eq!(r.attempts, 1, "a failed write is retried, not the task");
    }
    pool.stop(Duration::from_secs(5)).await.expect("stop");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        20,
        "every task ran exactly once"
    );
}

/// A handler guard that counts when the handler's future is dropped (finished or aborted).
struct Dropped(Arc<AtomicUsize>);
impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A pool whose "hang" handler signals its start and never finishes on its own.
fn hanging_pool(
    queue: &AsyncTaskQueue,
    lease: time::Duration,
) -> (AsyncWorkerPool, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let mut pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .concurrency(1)
        .lease(lease)
        .heartbeat_interval(Duration::from_millis(50))
        .poll_interval(Duration::from_millis(20))
        .build()
        .expect("pool");
    let started = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let (s, d) = (Arc::clone(&started), Arc::clone(&dropped));
    pool.register("hang", move |_: ()| {
        let (s, d) = (Arc::clone(&s), Arc::clone(&d));
        async move {
            let _guard = Dropped(d);
            s.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            Ok::<_, HandlerError>(())
        }
    });
    (pool, started, dropped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_task_stops_its_handler() {
    let storage = storage().await;
    let queue = AsyncTaskQueue::new(Arc::clone(&storage));
    let (pool, started, dropped) = hanging_pool(&queue, time::Duration::seconds(5));
    let id = queue.enqueue("hang", &()).await.expect("enqueue");
    pool.start().expect("start");
    wait_until(async || started.load(Ordering::SeqCst) == 1).await;
    assert_eq!(
        queue.cancel(&id).await.expect("cancel"),
        omniq::CancelOutcome::Requested
    );
    let res = queue
        .wait_result(&id, Duration::from_secs(20))
        .await
        .expect("result");
    assert_eq!(res.status, TaskStatus::Cancelled);
    wait_until(async || dropped.load(Ordering::SeqCst) == 1).await;
    pool.stop(Duration::from_secs(5)).await.expect("stop");
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "a cancelled task is not run again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_stops_the_handler_and_records_nothing() {
    let storage = storage().await;
    let queue = AsyncTaskQueue::new(Arc::clone(&storage));
    let (pool, started, dropped) = hanging_pool(&queue, time::Duration::seconds(5));
    let id = queue.enqueue("hang", &()).await.expect("enqueue");
    pool.start().expect("start");
    wait_until(async || started.load(Ordering::SeqCst) == 1).await;
    // Someone else takes the task over (a reschedule fences the running lease off).
    let later = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    queue.reschedule(&id, later).await.expect("reschedule");
    // The next heartbeat sees LeaseLost and aborts the handler.
    wait_until(async || dropped.load(Ordering::SeqCst) == 1).await;
    pool.stop(Duration::from_secs(5)).await.expect("stop");
    let task = storage.get_task(&id).await.expect("get").expect("exists");
    assert_eq!(
        task.status,
        TaskStatus::Pending,
        "the fenced worker changed nothing"
    );
    assert_eq!(
        task.schedule.eta.map(|e| e.unix_timestamp()),
        Some(later.unix_timestamp())
    );
    assert!(storage.get_result(&id).await.expect("get_result").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_is_recorded_even_for_a_handler_that_never_yields() {
    let storage = storage().await;
    let queue = AsyncTaskQueue::new(Arc::clone(&storage));
    let mut pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .concurrency(1)
        .poll_interval(Duration::from_millis(20))
        .build()
        .expect("pool");
    pool.register("blocking", |_: ()| async move {
        // Blocks its thread without an await point (what handlers should not do).
        std::thread::sleep(Duration::from_millis(1500));
        Ok::<_, HandlerError>(())
    });
    pool.start().expect("start");
    let id = queue
        .enqueue("blocking", &())
        .max_retries(0)
        .timeout(time::Duration::milliseconds(200))
        .await
        .expect("enqueue");
    let res = queue
        .wait_result(&id, Duration::from_secs(20))
        .await
        .expect("result");
    pool.stop(Duration::from_secs(5)).await.expect("stop");
    assert_eq!(res.status, TaskStatus::Failed, "{res:?}");
    assert_eq!(
        res.error.map(|e| e.error_type),
        Some(omniq::ErrorType::Timeout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_running_pool_hands_its_tasks_back() {
    let storage = storage().await;
    let queue = AsyncTaskQueue::new(Arc::clone(&storage));
    let (pool, started, dropped) = hanging_pool(&queue, time::Duration::seconds(30));
    let id = queue.enqueue("hang", &()).await.expect("enqueue");
    pool.start().expect("start");
    wait_until(async || started.load(Ordering::SeqCst) == 1).await;
    drop(pool);
    wait_until(async || dropped.load(Ordering::SeqCst) == 1).await;
    wait_until(async || {
        storage.get_task(&id).await.ok().flatten().map(|t| t.status) == Some(TaskStatus::Pending)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_completes_even_if_the_caller_stops_waiting() {
    let storage = storage().await;
    let queue = AsyncTaskQueue::new(Arc::clone(&storage));
    let mut pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .concurrency(1)
        .poll_interval(Duration::from_millis(20))
        .build()
        .expect("pool");
    let started = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&started);
    pool.register("slow", move |_: ()| {
        let s = Arc::clone(&s);
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, HandlerError>(())
        }
    });
    let id = queue.enqueue("slow", &()).await.expect("enqueue");
    pool.start().expect("start");
    wait_until(async || started.load(Ordering::SeqCst) == 1).await;
    let gave_up = tokio::time::timeout(
        Duration::from_millis(10),
        pool.stop(Duration::from_secs(10)),
    )
    .await;
    assert!(gave_up.is_err(), "the caller stopped waiting");
    assert!(!pool.is_running());
    // The shutdown went on without the caller: the run drained and was recorded.
    let res = queue
        .wait_result(&id, Duration::from_secs(20))
        .await
        .expect("result");
    assert_eq!(res.status, TaskStatus::Success);
}

#[tokio::test]
async fn builder_rejects_settings_that_would_break_leases_or_spin() {
    let storage = storage().await;
    let q = AsyncTaskQueue::new(storage);
    let b = || AsyncWorkerPool::builder().queue(q.clone());
    let cases = [
        (
            "heartbeat_interval",
            b().heartbeat_interval(Duration::ZERO).build(),
        ),
        (
            "heartbeat_interval",
            b().lease(time::Duration::seconds(10))
                .heartbeat_interval(Duration::from_secs(6))
                .build(),
        ),
        ("poll_interval", b().poll_interval(Duration::ZERO).build()),
        (
            "back-off",
            b().backoff(omniq::Backoff::Exponential {
                base: time::Duration::seconds(1),
                cap: time::Duration::seconds(60),
                jitter: 2.0,
            })
            .build(),
        ),
        (
            "back-off",
            b().queue_backoff(
                "default",
                omniq::Backoff::Fixed(time::Duration::seconds(-1)),
            )
            .build(),
        ),
        ("lease", b().lease(time::Duration::ZERO).build()),
        ("queue name", b().queues(["bad queue!"]).build()),
    ];
    for (what, r) in cases {
        let err = r.expect_err(what).to_string();
        assert!(err.contains(what), "{what}: {err}");
    }
}

/// A backend that panics (in claim and in complete) must not take the pool down: the
/// fetcher backs off, the completer survives, and every task still finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_backend_does_not_kill_the_pool() {
    let probe = Probe::new(storage().await, 0, 0);
    probe.panics.store(2, Ordering::SeqCst);
    let probe = Arc::new(probe);
    let storage: Arc<dyn Storage> = Arc::clone(&probe) as Arc<dyn Storage>;
    let queue = AsyncTaskQueue::new(Arc::clone(&storage));
    let mut pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .concurrency(2)
        .lease(time::Duration::seconds(2))
        .poll_interval(Duration::from_millis(20))
        .build()
        .expect("pool");
    pool.register("job", |x: u32| async move { Ok::<u32, HandlerError>(x) });
    let specs = (0..10u32).map(|i| queue.task("job", &i)).collect();
    let ids: Vec<_> = queue
        .enqueue_many(specs)
        .await
        .expect("enqueue")
        .into_iter()
        .map(|e| e.id)
        .collect();
    pool.start().expect("start");
    for id in &ids {
        let r = queue
            .wait_result(id, Duration::from_secs(30))
            .await
            .expect("result");
        assert!(
            matches!(r.status, TaskStatus::Success | TaskStatus::Failed),
            "{r:?}"
        );
    }
    pool.stop(Duration::from_secs(5)).await.expect("stop");
    assert_eq!(
        probe.panics.load(Ordering::SeqCst),
        0,
        "both injected panics happened"
    );
}

/// `enqueue_many` creates the next batch's future while the previous batch is in flight,
/// but polls it only after that batch succeeded: when the second of four batches fails,
/// the first stays stored, the third is created and dropped unpolled, the fourth never
/// created, and the error carries the first batch's answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_many_sends_no_batch_after_a_failed_one() {
    let inner = storage().await;
    let max = inner.capabilities().max_batch;
    let probe = Arc::new(Probe::new(Arc::clone(&inner), 0, 0));
    probe.enqueue_fails_at.store(2, Ordering::SeqCst);
    let storage: Arc<dyn Storage> = Arc::clone(&probe) as Arc<dyn Storage>;
    let queue = AsyncTaskQueue::new(Arc::clone(&storage));
    let specs = (0..(max * 4) as u64)
        .map(|i| queue.task("job", &i))
        .collect();
    match queue.enqueue_many(specs).await {
        Err(omniq::Error::PartiallyEnqueued { enqueued, .. }) => {
            assert_eq!(enqueued.len(), max, "exactly the first batch");
        }
        other => panic!("expected PartiallyEnqueued, got {other:?}"),
    }
    assert_eq!(probe.enqueues_started.load(Ordering::SeqCst), 2);
    assert_eq!(probe.enqueues_created.load(Ordering::SeqCst), 3);
    assert_eq!(count(&inner, TaskStatus::Pending).await, max as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_many_over_several_batches_keeps_every_task_in_input_order() {
    let storage = storage().await;
    let max = storage.capabilities().max_batch;
    let n = max * 2 + max / 2;
    let queue = AsyncTaskQueue::new(Arc::clone(&storage));
    let specs = (0..n as u64).map(|i| queue.task("job", &i)).collect();
    let out = queue.enqueue_many(specs).await.expect("enqueue");
    assert_eq!(out.len(), n);
    assert!(out.iter().all(|e| !e.duplicate));
    assert_eq!(count(&storage, TaskStatus::Pending).await, n as u64);
    // Answers line up with the input across the batch boundaries.
    for i in [0, max - 1, max, 2 * max - 1, 2 * max, n - 1] {
        let task = storage
            .get_task(&out[i].id)
            .await
            .expect("get")
            .expect("stored");
        let arg: u64 = omniq::Format::MessagePack
            .decode(task.args.as_bytes())
            .expect("args");
        assert_eq!(arg, i as u64, "answer {i}");
    }
}
