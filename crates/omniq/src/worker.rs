//! [`AsyncWorkerPool`]: claims tasks in batches, runs their handlers, records outcomes
//! in batches (R2–R6).
//!
//! Shape of a running pool:
//! - a **fetcher** holds `concurrency + prefetch` claim permits; it claims as many tasks
//!   as it has free permits (one storage round trip), then waits for a wake-up hint, a
//!   freed permit or `poll_interval`;
//! - each claimed task waits for one of `concurrency` run slots, then runs in its own
//!   tokio task (so panics are caught) under its timeout;
//! - a **heartbeater** extends every held lease in one batch call per interval and stops
//!   runs whose lease was lost or whose cancellation was requested;
//! - a **completer** flushes finished runs to storage in batches; a claim permit is only
//!   returned after its outcome is stored.

use crate::error::{Error, Result};
use crate::handler::{HandlerError, Registry, TaskCtx, TaskHandler};
use crate::logging as events;
use crate::queue::AsyncTaskQueue;
use omniq_core::{
    Backoff, ClaimRequest, Claimed, Completion, ErrorType, FailAction, Failure, LeaseRef,
    LeaseToken, Outcome, Storage, StorageError, Task, TaskError, TaskId, Wake, next_interval_slot,
    validate_name,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use time::{Duration, OffsetDateTime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

/// The deprecation text of the legacy constructor (the guide's wording).
pub const LEGACY_STORAGE_WARNING: &str = "Passing 'storage' to AsyncWorkerPool is deprecated. \
Use 'queue' parameter instead: AsyncWorkerPool(queue=AsyncTaskQueue(storage=storage))";

static LEGACY_WARNED: AtomicBool = AtomicBool::new(false);

fn warn_legacy_once() {
    if !LEGACY_WARNED.swap(true, Ordering::SeqCst) {
        tracing::warn!(target: "omniq::worker", "DeprecationWarning: {LEGACY_STORAGE_WARNING}");
    }
}

/// Worker settings. Defaults: concurrency 4, prefetch = concurrency, poll 1 s, lease
/// 30 s, heartbeat every lease/3, queue `default`, R2's default back-off.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Handlers running at once.
    pub concurrency: usize,
    /// Extra claimed tasks waiting for a free slot; also the claim batch size bound.
    pub prefetch: usize,
    /// How long to wait between claims when idle and no wake-up arrives.
    pub poll_interval: std::time::Duration,
    /// Lease length of each claim.
    pub lease: Duration,
    /// How often leases are extended.
    pub heartbeat_interval: std::time::Duration,
    /// Queues to claim from.
    pub queues: Vec<String>,
    /// Retry back-off for queues without their own.
    pub backoff: Backoff,
    /// Per-queue back-off.
    pub queue_backoff: HashMap<String, Backoff>,
    /// Per-handler back-off (the policy for every task of that handler name); wins over
    /// the queue's.
    pub handler_backoff: HashMap<String, Backoff>,
    /// Largest batch of outcomes written in one storage call.
    pub completion_batch: usize,
    /// A name for logs (`worker` field).
    pub name: String,
    /// Tasks whose payload is larger fail with a non-retryable validation error instead of
    /// being decoded (S4). Default 16 MiB.
    pub max_payload_bytes: usize,
    /// Lease-expiry redeliveries (worker crashed or lost its lease) a task may have on top
    /// of its `max_retries + 1` runs before it is failed as crash-looping. Default 3.
    pub max_redeliveries: u32,
}

/// The default payload limit of queues and workers (S4): 16 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 16 * 1024 * 1024;

static WORKER_SEQ: AtomicUsize = AtomicUsize::new(1);

impl Default for WorkerOptions {
    fn default() -> Self {
        let n = WORKER_SEQ.fetch_add(1, Ordering::Relaxed);
        Self {
            concurrency: 4,
            prefetch: 4,
            poll_interval: std::time::Duration::from_secs(1),
            lease: Duration::seconds(30),
            heartbeat_interval: std::time::Duration::from_secs(10),
            queues: vec![omniq_core::DEFAULT_QUEUE.to_string()],
            backoff: Backoff::default(),
            queue_backoff: HashMap::new(),
            handler_backoff: HashMap::new(),
            completion_batch: 256,
            name: format!("worker-{}-{n}", std::process::id()),
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            max_redeliveries: 3,
        }
    }
}

/// Builds an [`AsyncWorkerPool`] from exactly one of a queue (new interface) or a
/// storage (legacy interface, deprecated) — R6.
///
/// Rust's types already rule out the guide's "wrong type" cases (`queue="invalid"`):
/// they do not compile. Neither-or-both is a runtime [`Error::Config`].
#[derive(Debug, Default)]
pub struct WorkerPoolBuilder {
    queue: Option<AsyncTaskQueue>,
    storage: Option<Arc<dyn Storage>>,
    opts: WorkerOptions,
    prefetch_set: bool,
    heartbeat_set: bool,
}

impl WorkerPoolBuilder {
    /// The queue to work (recommended).
    pub fn queue(mut self, queue: AsyncTaskQueue) -> Self {
        self.queue = Some(queue);
        self
    }

    /// The legacy interface: a storage, wrapped in an `AsyncTaskQueue` internally.
    #[deprecated(
        note = "Passing 'storage' to AsyncWorkerPool is deprecated. Use 'queue' instead: AsyncWorkerPool::builder().queue(AsyncTaskQueue::new(storage))"
    )]
    pub fn storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = Some(storage);
        self
    }

    /// Handlers running at once (≥ 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.opts.concurrency = n;
        self
    }
    /// Claimed tasks allowed to wait for a slot (default = concurrency).
    pub fn prefetch(mut self, n: usize) -> Self {
        self.opts.prefetch = n;
        self.prefetch_set = true;
        self
    }
    /// Idle poll interval.
    pub fn poll_interval(mut self, d: std::time::Duration) -> Self {
        self.opts.poll_interval = d;
        self
    }
    /// Lease length.
    pub fn lease(mut self, d: Duration) -> Self {
        self.opts.lease = d;
        self
    }
    /// Heartbeat interval (default lease / 3).
    pub fn heartbeat_interval(mut self, d: std::time::Duration) -> Self {
        self.opts.heartbeat_interval = d;
        self.heartbeat_set = true;
        self
    }
    /// Queues to claim from.
    pub fn queues<I: IntoIterator<Item = S>, S: Into<String>>(mut self, queues: I) -> Self {
        self.opts.queues = queues.into_iter().map(Into::into).collect();
        self
    }
    /// Default retry back-off.
    pub fn backoff(mut self, b: Backoff) -> Self {
        self.opts.backoff = b;
        self
    }
    /// Back-off for one queue.
    pub fn queue_backoff(mut self, queue: impl Into<String>, b: Backoff) -> Self {
        self.opts.queue_backoff.insert(queue.into(), b);
        self
    }
    /// Back-off for every task of one handler (wins over the queue's).
    pub fn handler_backoff(mut self, handler: impl Into<String>, b: Backoff) -> Self {
        self.opts.handler_backoff.insert(handler.into(), b);
        self
    }
    /// Outcome batch size.
    pub fn completion_batch(mut self, n: usize) -> Self {
        self.opts.completion_batch = n;
        self
    }
    /// Lease-expiry redeliveries allowed on top of `max_retries + 1` runs.
    pub fn max_redeliveries(mut self, n: u32) -> Self {
        self.opts.max_redeliveries = n;
        self
    }
    /// Largest payload a task may carry; larger ones fail (S4).
    pub fn max_payload_bytes(mut self, n: usize) -> Self {
        self.opts.max_payload_bytes = n;
        self
    }
    /// Worker name for logs.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.opts.name = name.into();
        self
    }

    /// Validates and builds the pool.
    pub fn build(self) -> Result<AsyncWorkerPool> {
        let queue = match (self.queue, self.storage) {
            (Some(q), None) => q,
            (None, Some(s)) => {
                warn_legacy_once();
                AsyncTaskQueue::new(s)
            }
            (None, None) => {
                return Err(Error::Config(
                    "AsyncWorkerPool needs either a queue or a storage: use .queue(AsyncTaskQueue::new(storage))"
                        .into(),
                ));
            }
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "AsyncWorkerPool takes a queue or a storage, not both: pass only .queue(...)"
                        .into(),
                ));
            }
        };
        let mut opts = self.opts;
        if opts.concurrency == 0 {
            return Err(Error::Config("concurrency must be at least 1".into()));
        }
        if !self.prefetch_set {
            opts.prefetch = opts.concurrency;
        }
        if !opts.lease.is_positive() {
            return Err(Error::Config(format!(
                "lease must be positive, got {}",
                opts.lease
            )));
        }
        if opts.concurrency > MAX_CONCURRENCY {
            return Err(Error::Config(format!(
                "concurrency must be at most {MAX_CONCURRENCY}, got {}",
                opts.concurrency
            )));
        }
        if opts.prefetch > MAX_CONCURRENCY {
            return Err(Error::Config(format!(
                "prefetch must be at most {MAX_CONCURRENCY}, got {}",
                opts.prefetch
            )));
        }
        let lease_std: std::time::Duration = opts.lease.unsigned_abs();
        if !self.heartbeat_set {
            opts.heartbeat_interval = (lease_std / 3).max(std::time::Duration::from_millis(10));
        } else if opts.heartbeat_interval.is_zero() || opts.heartbeat_interval > lease_std / 2 {
            return Err(Error::Config(format!(
                "heartbeat_interval must be positive and at most half the lease ({:?}), got {:?}",
                lease_std / 2,
                opts.heartbeat_interval
            )));
        }
        if opts.poll_interval.is_zero() {
            return Err(Error::Config(
                "poll_interval must be positive (e.g. 100 ms)".into(),
            ));
        }
        validate_backoff("backoff", &opts.backoff)?;
        for (name, b) in opts.queue_backoff.iter().chain(&opts.handler_backoff) {
            validate_backoff(name, b)?;
        }
        if opts.queues.is_empty() {
            return Err(Error::Config("a worker needs at least one queue".into()));
        }
        for q in &opts.queues {
            validate_name("queue name", q).map_err(Error::Config)?;
        }
        opts.completion_batch = opts.completion_batch.max(1);
        Ok(AsyncWorkerPool {
            queue,
            opts,
            registry: Registry::default(),
            state: Mutex::new(None),
        })
    }
}

/// The largest concurrency (and prefetch) a pool accepts.
pub const MAX_CONCURRENCY: usize = 1 << 20;

fn validate_backoff(what: &str, b: &Backoff) -> Result<()> {
    b.validate()
        .map_err(|e| Error::Config(format!("back-off for {what} is invalid: {e}")))
}

/// What `stop` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StopReport {
    /// Runs that were in flight at stop and finished within the timeout.
    pub drained: usize,
    /// Claimed-but-unstarted tasks handed back (claimable again at once).
    pub handed_back: usize,
    /// Runs still going at the timeout, aborted and handed back.
    pub aborted: usize,
}

/// Runs registered handlers for tasks of an [`AsyncTaskQueue`] (R3–R6).
///
/// ```
/// # async fn demo(storage: std::sync::Arc<dyn omniq::Storage>) -> omniq::Result<()> {
/// use omniq::{AsyncTaskQueue, AsyncWorkerPool, HandlerError};
///
/// let queue = AsyncTaskQueue::new(storage);
/// let mut pool = AsyncWorkerPool::builder().queue(queue.clone()).concurrency(8).build()?;
/// pool.register("math.add", |(a, b): (i64, i64)| async move { Ok::<_, HandlerError>(a + b) });
/// pool.start()?;
/// let id = queue.enqueue("math.add", &(2, 3)).await?;
/// let result = queue.wait_result(&id, std::time::Duration::from_secs(5)).await?;
/// pool.stop(std::time::Duration::from_secs(5)).await?;
/// # let _ = result; Ok(()) }
/// ```
pub struct AsyncWorkerPool {
    queue: AsyncTaskQueue,
    opts: WorkerOptions,
    registry: Registry,
    state: Mutex<Option<Running>>,
}

impl std::fmt::Debug for AsyncWorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncWorkerPool")
            .field("opts", &self.opts)
            .field("registry", &self.registry)
            .finish()
    }
}
struct Running {
    stop_tx: watch::Sender<bool>,
    fetcher: tokio::task::JoinHandle<JoinSet<RunEnd>>,
    shared: Arc<Shared>,
    completer: tokio::task::JoinHandle<()>,
    heartbeater: tokio::task::JoinHandle<()>,
}

/// Why a run was interrupted from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupt {
    LeaseLost,
    Cancelled,
}

/// A lease this pool holds: from claim until its outcome is stored (or it is handed back).
struct Held {
    token: LeaseToken,
    /// When the lease ends unless a heartbeat extends it.
    until: OffsetDateTime,
    abort: Option<tokio::task::AbortHandle>,
    interrupt: Option<Interrupt>,
}

struct Shared {
    queue: AsyncTaskQueue,
    opts: WorkerOptions,
    registry: Registry,
    held: Mutex<HashMap<TaskId, Held>>,
    run_slots: Arc<Semaphore>,
    done_tx: mpsc::UnboundedSender<Msg>,
}

enum DoneKind {
    Complete(Completion),
    Fail(Failure),
}

struct Done {
    kind: DoneKind,
    permit: OwnedSemaphorePermit,
}

/// What runners send the completer. (`Done` is large and `Shutdown` is sent once, so
/// boxing `Done` would only add an allocation per task.)
#[allow(clippy::large_enum_variant)]
enum Msg {
    Done(Done),
    /// Every runner has ended: flush what is queued and stop.
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunEnd {
    Finished,
    HandedBack,
    Interrupted,
}

impl AsyncWorkerPool {
    /// Start building a pool (give it `.queue(...)`).
    pub fn builder() -> WorkerPoolBuilder {
        WorkerPoolBuilder::default()
    }

    /// A pool with default options over `queue` (the new interface).
    pub fn new(queue: AsyncTaskQueue) -> Self {
        match Self::builder().queue(queue).build() {
            Ok(p) => p,
            // Defaults always validate; keep the constructor infallible.
            Err(e) => unreachable!("default worker options are valid: {e}"),
        }
    }

    /// The legacy interface (R6): a pool over a storage. Emits the guide's deprecation
    /// warning once per process.
    #[deprecated(
        note = "Passing 'storage' to AsyncWorkerPool is deprecated. Use AsyncWorkerPool::new(AsyncTaskQueue::new(storage)) instead"
    )]
    pub fn from_storage(storage: Arc<dyn Storage>) -> Self {
        #[allow(deprecated)]
        match Self::builder().storage(storage).build() {
            Ok(p) => p,
            Err(e) => unreachable!("default worker options are valid: {e}"),
        }
    }

    /// The queue this pool works.
    pub fn queue(&self) -> &AsyncTaskQueue {
        &self.queue
    }

    /// The effective options.
    pub fn options(&self) -> &WorkerOptions {
        &self.opts
    }

    /// Registers a closure handler with typed, serde-decoded args. Handlers registered
    /// while the pool runs take effect at the next `start`.
    ///
    /// Handlers run on the tokio runtime: do blocking or CPU-heavy work inside
    /// `tokio::task::spawn_blocking`, so timeouts, heartbeats and other tasks keep going.
    pub fn register<A, R, E, F, Fut>(&mut self, name: &str, f: F) -> &mut Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        E: Into<HandlerError> + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<R, E>> + Send + 'static,
    {
        self.registry.insert_fn(name, f);
        self
    }

    /// Registers a [`TaskHandler`] under its `NAME` (see [`AsyncWorkerPool::register`]).
    pub fn register_handler<H: TaskHandler>(&mut self, handler: H) -> &mut Self {
        self.registry.insert_handler(handler);
        self
    }

    /// Registered handler names.
    pub fn handler_names(&self) -> Vec<String> {
        self.registry.names()
    }

    /// True between `start` and `stop`.
    pub fn is_running(&self) -> bool {
        self.state.lock().map(|s| s.is_some()).unwrap_or(false)
    }

    /// Starts claiming and running tasks in the background on the current tokio runtime.
    pub fn start(&self) -> Result<()> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Worker(
                "start() needs a tokio runtime; call it from async code or use the blocking WorkerPool"
                    .into(),
            ));
        }
        let mut state = self
            .state
            .lock()
            .map_err(|_| Error::Worker("state lock poisoned".into()))?;
        if state.is_some() {
            return Err(Error::Worker("already started".into()));
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queue: self.queue.clone(),
            opts: self.opts.clone(),
            registry: self.registry.clone(),
            held: Mutex::new(HashMap::new()),
            run_slots: Arc::new(Semaphore::new(self.opts.concurrency)),
            done_tx,
        });
        events::log_worker_started(&self.opts.name, self.opts.concurrency);
        let completer = tokio::spawn(completer(Arc::clone(&shared), done_rx));
        let heartbeater = tokio::spawn(heartbeater(Arc::clone(&shared), stop_rx.clone()));
        let fetcher = tokio::spawn(fetcher(Arc::clone(&shared), stop_rx));
        *state = Some(Running {
            stop_tx,
            fetcher,
            shared,
            completer,
            heartbeater,
        });
        Ok(())
    }

    /// Graceful stop (R6): stop claiming, hand back claimed tasks that have not started,
    /// let running handlers finish for up to `timeout` (then abort them and hand their
    /// tasks back), flush every outcome, then stop heartbeats.
    ///
    /// The shutdown runs in its own task: if the caller stops waiting (its future is
    /// dropped), the shutdown still completes.
    pub async fn stop(&self, timeout: std::time::Duration) -> Result<StopReport> {
        let running = self
            .state
            .lock()
            .map_err(|_| Error::Worker("state lock poisoned".into()))?
            .take();
        let Some(running) = running else {
            return Err(Error::Worker("not running".into()));
        };
        let name = self.opts.name.clone();
        tokio::spawn(shutdown(running, timeout, name))
            .await
            .map_err(|e| Error::Worker(format!("shutdown task failed: {e}")))
    }
}

impl Drop for AsyncWorkerPool {
    /// A pool dropped while running shuts down as `stop(0)` would: nothing new starts,
    /// running handlers are aborted and every held task is handed back (best effort, when
    /// a tokio runtime is still there to do it). Call `stop` to drain instead.
    fn drop(&mut self) {
        let running = match self.state.get_mut() {
            Ok(state) => state.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(running) = running {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let name = self.opts.name.clone();
                handle.spawn(shutdown(running, std::time::Duration::ZERO, name));
            } else {
                let _ = running.stop_tx.send(true);
                abort_handlers(&running.shared);
                // Let the completer flush what it has and end, should its runtime live on.
                let _ = running.shared.done_tx.send(Msg::Shutdown);
            }
        }
    }
}

fn abort_handlers(shared: &Shared) {
    for h in shared.lock_held().values() {
        if let Some(a) = &h.abort {
            a.abort();
        }
    }
}

fn deadline_after(d: std::time::Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + std::time::Duration::from_secs(86_400 * 365))
}

async fn shutdown(running: Running, timeout: std::time::Duration, name: String) -> StopReport {
    let _ = running.stop_tx.send(true);
    let shared = running.shared;
    let mut set = match running.fetcher.await {
        Ok(set) => set,
        Err(e) => {
            // Its runners were dropped with it; their handlers may still be going.
            tracing::error!(target: "omniq::worker", worker = %name, "fetcher task failed: {e}");
            abort_handlers(&shared);
            JoinSet::new()
        }
    };
    let mut report = StopReport::default();
    let deadline = deadline_after(timeout);
    loop {
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(Some(Ok(RunEnd::Finished))) => report.drained += 1,
            Ok(Some(Ok(RunEnd::HandedBack))) => report.handed_back += 1,
            Ok(Some(Ok(RunEnd::Interrupted))) => {}
            Ok(Some(Err(e))) => {
                tracing::error!(target: "omniq::worker", worker = %name, "task runner failed: {e}");
            }
            Ok(None) => break,
            Err(_) => {
                // Timed out: abort the runners first (so none of them sees its handler end
                // and gives up its hold), then the handler tasks themselves. Their leases
                // are handed back below.
                report.aborted = set.len();
                set.abort_all();
                while set.join_next().await.is_some() {}
                abort_handlers(&shared);
                break;
            }
        }
    }
    // Every runner has ended: let the completer flush what is queued, while heartbeats
    // keep the leases alive, then stop heartbeats.
    let _ = shared.done_tx.send(Msg::Shutdown);
    let _ = running.completer.await;
    running.heartbeater.abort();
    let _ = running.heartbeater.await;
    // What is still held never got an outcome stored: hand it back — unless its handler
    // has not actually ended (aborts take effect at the next await): that lease is left to
    // expire, so the task cannot run twice at once.
    // Aborted handlers end at their next await: give them a moment to do so.
    let grace = deadline_after(std::time::Duration::from_millis(250));
    while tokio::time::Instant::now() < grace
        && shared
            .lock_held()
            .values()
            .any(|h| h.abort.as_ref().is_some_and(|a| !a.is_finished()))
    {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let leftovers: Vec<LeaseRef> = {
        let held = shared.lock_held();
        let (done, busy): (Vec<_>, Vec<_>) = held
            .iter()
            .partition(|(_, h)| h.abort.as_ref().is_none_or(|a| a.is_finished()));
        if !busy.is_empty() {
            tracing::warn!(target: "omniq::worker", worker = %name, "{} handler(s) did not stop in time; their tasks are redelivered when their leases expire", busy.len());
        }
        done.into_iter()
            .map(|(id, h)| LeaseRef {
                task_id: *id,
                token: h.token,
            })
            .collect()
    };
    if !leftovers.is_empty() {
        let now = shared.queue.clock.now();
        for chunk in leftovers.chunks(shared.max_batch()) {
            if let Err(e) = shared.queue.storage.release(chunk, now).await {
                events::log_storage_error("release", &e);
            }
        }
        shared.lock_held().clear();
    }
    events::log_worker_stopped(&name);
    report
}

/// A storage call that panicked, as a (permanent) storage error.
fn panicked(op: &str) -> StorageError {
    StorageError::new(
        omniq_core::StorageErrorKind::Backend,
        "omniq",
        format!("the storage backend panicked during {op}"),
    )
}

fn random_unit() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u64;
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

fn timeout_error(limit: Duration) -> TaskError {
    TaskError::new(
        ErrorType::Timeout,
        format!("Task exceeded {} second limit", limit.as_seconds_f64()),
    )
    .with_retryable(true)
    .with_context("timeout_seconds", limit.as_seconds_f64())
}

/// The anchor of an interval task's slot lattice: kept in the error context across
/// retries so a retried run does not shift later slots (R5).
const SLOT_KEY: &str = "interval_slot";

fn slot_anchor(task: &Task) -> OffsetDateTime {
    task.error
        .as_ref()
        .and_then(|e| e.context.get(SLOT_KEY))
        .and_then(|v| v.as_str())
        .and_then(|s| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| task.effective_eta())
}

impl Shared {
    fn lock_held(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn held_leases(&self) -> Vec<LeaseRef> {
        self.lock_held()
            .iter()
            .map(|(id, h)| LeaseRef {
                task_id: *id,
                token: h.token,
            })
            .collect()
    }

    /// Records new claims. A task already held under an older token was redelivered to us
    /// (our lease lapsed): that older run is stale, so it is interrupted.
    fn hold(&self, claimed: &[Claimed]) {
        let mut held = self.lock_held();
        for c in claimed {
            let fresh = Held {
                token: c.lease.token,
                until: c.lease.until,
                abort: None,
                interrupt: None,
            };
            if let Some(old) = held.insert(c.task.id, fresh) {
                if let Some(a) = old.abort {
                    a.abort();
                }
            }
        }
    }

    /// Forgets a lease, only if it is still the one held under `token`.
    fn unhold(&self, lease: &LeaseRef) {
        let mut held = self.lock_held();
        if held
            .get(&lease.task_id)
            .is_some_and(|h| h.token == lease.token)
        {
            held.remove(&lease.task_id);
        }
    }

    fn interrupt_of(&self, lease: &LeaseRef) -> Option<Interrupt> {
        match self.lock_held().get(&lease.task_id) {
            Some(h) if h.token == lease.token => h.interrupt,
            // Replaced by a newer claim, or gone: this run no longer owns the task.
            _ => Some(Interrupt::LeaseLost),
        }
    }

    fn max_batch(&self) -> usize {
        self.queue.storage.capabilities().max_batch.max(1)
    }

    /// The task's own policy, else its handler's, else its queue's, else the pool's (R2).
    fn backoff_for(&self, task: &Task) -> Backoff {
        task.backoff
            .or_else(|| self.opts.handler_backoff.get(&task.func_path).copied())
            .or_else(|| self.opts.queue_backoff.get(&task.queue).copied())
            .unwrap_or(self.opts.backoff)
    }

    /// Decide retry / next run / fail for a failed run (R2, R5).
    fn failure_for(&self, task: &Task, mut error: TaskError, lease: LeaseRef) -> (Failure, bool) {
        let now = self.queue.clock.now();
        error.retry_count = task.attempts.saturating_sub(1);
        error.max_retries = task.max_retries;
        let anchor = slot_anchor(task);
        let action = if error.can_retry() {
            let delay = self
                .backoff_for(task)
                .delay(task.attempts, random_unit())
                .min(omniq_core::MAX_BACKOFF);
            if task.schedule.interval.is_some() {
                if let Ok(s) = anchor.format(&time::format_description::well_known::Rfc3339) {
                    error
                        .context
                        .insert(SLOT_KEY.into(), serde_json::Value::String(s));
                }
            }
            FailAction::Retry {
                at: now.checked_add(delay).unwrap_or(now),
            }
        } else if let Some(interval) = task.schedule.interval {
            FailAction::NextRun {
                at: next_interval_slot(anchor, interval, now),
            }
        } else {
            FailAction::Fail
        };
        let will_retry = matches!(action, FailAction::Retry { .. });
        (
            Failure {
                lease,
                error,
                action,
                now,
            },
            will_retry,
        )
    }
}

async fn fetcher(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) -> JoinSet<RunEnd> {
    let capacity = shared.opts.concurrency + shared.opts.prefetch;
    let claim_permits = Arc::new(Semaphore::new(capacity));
    let storage = Arc::clone(&shared.queue.storage);
    let mut wake = if storage.capabilities().push_wakeup {
        storage.subscribe()
    } else {
        None
    };
    let mut set = JoinSet::new();
    let mut error_backoff = std::time::Duration::from_millis(50);
    let max_batch = shared.max_batch();
    loop {
        if *stop.borrow() {
            break;
        }
        // Reap finished runners so the set does not grow without bound.
        while let Some(r) = set.try_join_next() {
            if let Err(e) = r {
                tracing::error!(target: "omniq::worker", "task runner failed: {e}");
            }
        }
        let first = tokio::select! {
            p = Arc::clone(&claim_permits).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.changed() => break,
        };
        let mut permits = vec![first];
        while permits.len() < max_batch {
            match Arc::clone(&claim_permits).try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        if let Some(rx) = wake.as_mut() {
            // Hints that arrived before this claim are answered by it.
            while rx.try_recv().is_ok() {}
        }
        let wanted = permits.len();
        let req = ClaimRequest {
            queues: shared.opts.queues.clone(),
            limit: wanted,
            now: shared.queue.clock.now(),
            lease: shared.opts.lease,
        };
        // Not raced against stop: a claim dropped mid-flight could commit and strand its
        // tasks until their leases expire.
        let call = std::panic::AssertUnwindSafe(storage.claim(req));
        let claimed = futures::FutureExt::catch_unwind(call)
            .await
            .unwrap_or_else(|_| Err(panicked("claim")));
        let mut claimed = match claimed {
            Ok(c) => {
                error_backoff = std::time::Duration::from_millis(50);
                c
            }
            Err(e) => {
                events::log_storage_error("claim", &e);
                drop(permits);
                // S3: back off and try again; the server may come back.
                tokio::select! {
                    _ = tokio::time::sleep(error_backoff) => {}
                    _ = stop.changed() => break,
                }
                error_backoff = (error_backoff * 2).min(std::time::Duration::from_secs(5));
                continue;
            }
        };
        if claimed.len() > wanted {
            // A backend returned more than asked: never hold more than we can start.
            let extra: Vec<LeaseRef> = claimed
                .split_off(wanted)
                .iter()
                .map(Claimed::lease_ref)
                .collect();
            if let Err(e) = storage.release(&extra, shared.queue.clock.now()).await {
                events::log_storage_error("release", &e);
            }
        }
        let got = claimed.len();
        if got > 0 {
            tracing::debug!(target: "omniq::worker", worker = %shared.opts.name, claimed = got, requested = wanted, "Claimed {got} task(s)");
        }
        shared.hold(&claimed);
        for c in claimed {
            let Some(permit) = permits.pop() else { break };
            set.spawn(run_one(Arc::clone(&shared), c, permit, stop.clone()));
        }
        drop(permits);
        if got < wanted {
            // Short claim: the queue is drained for now. Wait for a hint or the poll interval.
            let poll = shared.opts.poll_interval;
            match wake.as_mut() {
                Some(rx) => {
                    let queues = &shared.opts.queues;
                    tokio::select! {
                        _ = async {
                            loop {
                                match rx.recv().await {
                                    Ok(Wake::Work { queue }) if queues.contains(&queue) => break,
                                    Ok(_) => continue,
                                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                        std::future::pending::<()>().await
                                    }
                                }
                            }
                        } => {}
                        _ = tokio::time::sleep(poll) => {}
                        _ = stop.changed() => break,
                    }
                }
                None => {
                    tokio::select! {
                        _ = tokio::time::sleep(poll) => {}
                        _ = stop.changed() => break,
                    }
                }
            }
        }
    }
    set
}

/// Drops a run's hold if the runner panics before handing its outcome to the completer,
/// so the lease is not heartbeated forever. (An aborted runner keeps its hold on purpose:
/// shutdown hands those leases back.)
struct HoldGuard<'a> {
    shared: &'a Shared,
    lease: LeaseRef,
    armed: bool,
}

impl Drop for HoldGuard<'_> {
    fn drop(&mut self) {
        if self.armed && std::thread::panicking() {
            self.shared.unhold(&self.lease);
        }
    }
}

async fn run_one(
    shared: Arc<Shared>,
    claimed: Claimed,
    permit: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) -> RunEnd {
    let lease = claimed.lease_ref();
    let task = claimed.task;
    let mut guard = HoldGuard {
        shared: &shared,
        lease,
        armed: true,
    };
    // Wait for a run slot, unless the pool is stopping: then hand the claim back.
    let slot = tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => None,
        s = Arc::clone(&shared.run_slots).acquire_owned() => s.ok(),
    };
    let Some(slot) = slot else {
        let now = shared.queue.clock.now();
        match shared.queue.storage.release(&[lease], now).await {
            Ok(_) => shared.unhold(&lease),
            Err(e) => events::log_storage_error("release", &e),
        }
        guard.armed = false;
        drop(permit);
        return RunEnd::HandedBack;
    };
    // L5: every line of this run carries task_id, operation, worker and correlation_id.
    // The correlation id is the task id, as in the guide's PROD sample: one id follows a
    // task from enqueue through every run and retry. The run is logged by the L6 helpers
    // (started; completed with its duration, or failed), two lines at INFO.
    let span = events::task_span(&task.id, &"process_task", &task.id, Some(&shared.opts.name));
    let end = async {
        let started = std::time::Instant::now();
        events::log_task_started(task.id, task.attempts);
        let outcome = execute(&shared, &task, &lease, slot).await;
        let elapsed = started.elapsed();
        // The failure lines carry the run's duration too (L5).
        tracing::Span::current().record("duration_ms", elapsed.as_secs_f64() * 1000.0);
        let kind = match outcome {
            RunOutcome::Interrupted(Interrupt::LeaseLost) => {
                tracing::warn!(target: "omniq::worker", task_id = %task.id, "Task lease lost: {} (another worker owns it now; result discarded)", task.id);
                shared.unhold(&lease);
                return RunEnd::Interrupted;
            }
            RunOutcome::Interrupted(Interrupt::Cancelled) => {
                let err = TaskError::new(ErrorType::User, "Task cancelled while running")
                    .with_retryable(false);
                events::log_task_failed(task.id, &err, false);
                DoneKind::Fail(Failure {
                    lease,
                    error: err,
                    action: FailAction::Fail,
                    now: shared.queue.clock.now(),
                })
            }
            RunOutcome::Ok(result) => {
                events::log_task_completed(task.id, task.attempts, elapsed);
                let now = shared.queue.clock.now();
                let next_run = task
                    .schedule
                    .interval
                    .map(|i| next_interval_slot(slot_anchor(&task), i, now));
                DoneKind::Complete(Completion {
                    lease,
                    result,
                    now,
                    next_run,
                })
            }
            RunOutcome::Err(err) => {
                if err.error_type == ErrorType::Decode {
                    events::log_serialization_error(task.id, &err);
                }
                let (failure, will_retry) = shared.failure_for(&task, err, lease);
                events::log_task_failed(task.id, &failure.error, will_retry);
                if let FailAction::Retry { at } = failure.action {
                    events::log_task_retry(task.id, task.attempts.saturating_add(1), at);
                }
                DoneKind::Fail(failure)
            }
        };
        if shared.done_tx.send(Msg::Done(Done { kind, permit })).is_err() {
            // Stop heartbeating it, so the lease expires and the task is redelivered.
            shared.unhold(&lease);
            tracing::error!(target: "omniq::worker", task_id = %task.id, "completion channel closed; outcome left to lease expiry");
        }
        RunEnd::Finished
    }
    .instrument(span)
    .await;
    guard.armed = false;
    end
}

enum RunOutcome {
    Ok(Option<omniq_core::Payload>),
    Err(TaskError),
    Interrupted(Interrupt),
}

/// Runs one claimed task. `slot` is its run slot: held until the handler has really
/// ended, even past a timeout, so `concurrency` is never exceeded.
async fn execute(
    shared: &Arc<Shared>,
    task: &Task,
    lease: &LeaseRef,
    slot: OwnedSemaphorePermit,
) -> RunOutcome {
    // A task redelivered after more lease expiries than allowed keeps killing workers:
    // stop it instead of crash-looping.
    let limit = task
        .max_retries
        .saturating_add(1)
        .saturating_add(shared.opts.max_redeliveries);
    if task.attempts > limit {
        return RunOutcome::Err(
            TaskError::new(
                ErrorType::System,
                format!(
                    "task was claimed {} times (max_retries {}, max_redeliveries {}); earlier runs never reported back (worker crash or lease expiry)",
                    task.attempts, task.max_retries, shared.opts.max_redeliveries
                ),
            )
            .with_retryable(false),
        );
    }
    if task.args.len() > shared.opts.max_payload_bytes {
        return RunOutcome::Err(
            TaskError::new(
                ErrorType::Validation,
                format!(
                    "payload of {} bytes exceeds the worker's max_payload_bytes ({})",
                    task.args.len(),
                    shared.opts.max_payload_bytes
                ),
            )
            .with_retryable(false)
            .with_context("payload_bytes", task.args.len()),
        );
    }
    let Some(handler) = shared.registry.get(&task.func_path) else {
        return RunOutcome::Err(
            TaskError::new(
                ErrorType::Validation,
                format!(
                    "no handler registered for '{}' (registered: {})",
                    task.func_path,
                    shared.registry.names().join(", ")
                ),
            )
            .with_retryable(false)
            .with_context("func_path", &task.func_path),
        );
    };
    let ctx = TaskCtx {
        task_id: task.id,
        func_path: task.func_path.clone(),
        attempt: task.attempts,
        queue: task.queue.clone(),
        correlation_id: task.id.to_string(),
    };
    // Spawn under the lock, after checking the run was not interrupted while it waited
    // for a slot: a cancelled or lost task never starts its handler, and neither does one
    // whose lease ran out while it waited (heartbeats failing during an outage).
    let args = task.args.clone();
    let now = shared.queue.clock.now();
    let mut handle = {
        let mut held = shared.lock_held();
        match held.get_mut(&task.id) {
            Some(h) if h.token == lease.token => {
                if let Some(i) = h.interrupt {
                    return RunOutcome::Interrupted(i);
                }
                if h.until <= now {
                    h.interrupt = Some(Interrupt::LeaseLost);
                    return RunOutcome::Interrupted(Interrupt::LeaseLost);
                }
                let handle =
                    tokio::spawn(handler(args, shared.queue.format, ctx).in_current_span());
                h.abort = Some(handle.abort_handle());
                handle
            }
            _ => return RunOutcome::Interrupted(Interrupt::LeaseLost),
        }
    };
    // R3: the deadline is enforced here, outside the handler's task, so a handler that
    // never yields is still recorded as timed out (and aborted at its next yield).
    let joined = match task.timeout {
        Some(limit) => {
            tokio::select! {
                r = &mut handle => Some(r),
                _ = tokio::time::sleep(limit.unsigned_abs()) => None,
            }
        }
        None => Some((&mut handle).await),
    };
    match joined {
        None => {
            handle.abort();
            // The handler stops at its next await; until then it keeps its run slot.
            tokio::spawn(async move {
                let _ = handle.await;
                drop(slot);
            });
            match shared.interrupt_of(lease) {
                Some(i) => RunOutcome::Interrupted(i),
                None => RunOutcome::Err(timeout_error(task.timeout.unwrap_or_default())),
            }
        }
        Some(Ok(Ok(result))) => RunOutcome::Ok(result),
        Some(Ok(Err(e))) => RunOutcome::Err(e),
        Some(Err(join)) if join.is_panic() => {
            let payload = join.into_panic();
            RunOutcome::Err(TaskError::from_panic(&*payload))
        }
        Some(Err(_)) => {
            RunOutcome::Interrupted(shared.interrupt_of(lease).unwrap_or(Interrupt::LeaseLost))
        }
    }
}

async fn heartbeater(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let storage = Arc::clone(&shared.queue.storage);
    let mut tick = tokio::time::interval(shared.opts.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            // Keep extending leases while draining after stop; shutdown aborts us at the end.
            changed = stop.changed(), if !*stop.borrow() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        }
        if stop.has_changed().is_err() {
            // The pool is gone without a shutdown: its leases will expire.
            return;
        }
        let leases = shared.held_leases();
        let now = shared.queue.clock.now();
        let until = now.checked_add(shared.opts.lease).unwrap_or(now);
        for chunk in leases.chunks(shared.max_batch()) {
            let call = std::panic::AssertUnwindSafe(storage.heartbeat(chunk, until));
            let result = futures::FutureExt::catch_unwind(call)
                .await
                .unwrap_or_else(|_| Err(panicked("heartbeat")));
            match result {
                Ok(outcomes) if outcomes.len() == chunk.len() => {
                    let mut held = shared.lock_held();
                    for (l, o) in chunk.iter().zip(outcomes) {
                        if matches!(o, Outcome::Ok | Outcome::CancelRequested) {
                            if let Some(h) = held.get_mut(&l.task_id) {
                                if h.token == l.token {
                                    h.until = until;
                                }
                            }
                        }
                        let interrupt = match o {
                            Outcome::Ok => continue,
                            Outcome::CancelRequested => Interrupt::Cancelled,
                            Outcome::LeaseLost | Outcome::NotFound => Interrupt::LeaseLost,
                        };
                        if let Some(h) = held.get_mut(&l.task_id) {
                            if h.token == l.token && h.interrupt.is_none() {
                                h.interrupt = Some(interrupt);
                                if let Some(a) = &h.abort {
                                    a.abort();
                                }
                            }
                        }
                    }
                }
                Ok(outcomes) => {
                    tracing::error!(target: "omniq::worker", "heartbeat returned {} outcomes for {} leases", outcomes.len(), chunk.len());
                }
                Err(e) => {
                    events::log_storage_error("heartbeat", &e);
                    // Leases we could not extend and that have run out are lost: another
                    // worker may hold the task now, so stop our run of it.
                    let mut held = shared.lock_held();
                    for l in chunk {
                        if let Some(h) = held.get_mut(&l.task_id) {
                            if h.token == l.token && h.until <= now && h.interrupt.is_none() {
                                h.interrupt = Some(Interrupt::LeaseLost);
                                if let Some(a) = &h.abort {
                                    a.abort();
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn completer(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let max = shared.opts.completion_batch.min(shared.max_batch()).max(1);
    let mut shutting_down = false;
    while !shutting_down {
        let first = match rx.recv().await {
            Some(Msg::Done(d)) => d,
            Some(Msg::Shutdown) | None => break,
        };
        let mut batch = vec![first];
        // Take what is queued; give runners that are about to finish one scheduler turn
        // to join this batch (bigger batches, same latency when idle).
        let mut yielded = false;
        while batch.len() < max {
            match rx.try_recv() {
                Ok(Msg::Done(d)) => batch.push(d),
                Ok(Msg::Shutdown) => {
                    // Runners have all ended, so nothing can follow: flush and stop.
                    shutting_down = true;
                    while let Ok(Msg::Done(d)) = rx.try_recv() {
                        batch.push(d);
                    }
                    break;
                }
                Err(_) if !yielded => {
                    yielded = true;
                    tokio::task::yield_now().await;
                }
                Err(_) => break,
            }
        }
        for chunk in chunked(batch, max) {
            flush(&shared, chunk).await;
        }
    }
}

fn chunked<T>(mut items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    while items.len() > size {
        let rest = items.split_off(size);
        out.push(std::mem::replace(&mut items, rest));
    }
    if !items.is_empty() {
        out.push(items);
    }
    out
}

/// Stores one batch of outcomes, then forgets their holds and returns their claim
/// permits in one release (so the fetcher claims the freed capacity in one round trip).
async fn flush(shared: &Shared, batch: Vec<Done>) {
    let storage = &*shared.queue.storage;
    let mut completes = Vec::new();
    let mut fails = Vec::new();
    let mut permits = Vec::with_capacity(batch.len());
    let mut leases = Vec::with_capacity(batch.len());
    for d in batch {
        match d.kind {
            DoneKind::Complete(c) => {
                leases.push(c.lease);
                completes.push(c);
            }
            DoneKind::Fail(f) => {
                leases.push(f.lease);
                fails.push(f);
            }
        }
        permits.push(d.permit);
    }
    // One retry budget for the whole flush: after a lease's worth of outage the tasks are
    // redelivered elsewhere anyway.
    let deadline = deadline_after(shared.opts.lease.unsigned_abs());
    if !completes.is_empty() {
        let rejected = write_items(storage, "complete", completes, deadline, |s, v| {
            Box::pin(s.complete(v))
        })
        .await;
        // A result the backend refuses for good (e.g. it cannot encode it) fails its task
        // with that reason instead of leaving it to be redelivered forever.
        for (c, e) in rejected {
            fails.push(Failure {
                lease: c.lease,
                error: TaskError::new(
                    ErrorType::Runtime,
                    format!("the task's result could not be stored: {e}"),
                )
                .with_retryable(false),
                // A recurring task keeps its series (R5).
                action: c
                    .next_run
                    .map_or(FailAction::Fail, |at| FailAction::NextRun { at }),
                now: c.now,
            });
        }
    }
    if !fails.is_empty() {
        for (f, e) in
            write_items(storage, "fail", fails, deadline, |s, v| Box::pin(s.fail(v))).await
        {
            tracing::error!(target: "omniq::worker", task_id = %f.lease.task_id, "could not record the failure of task {}: {e}; it will be redelivered after its lease", f.lease.task_id);
        }
    }
    for l in &leases {
        shared.unhold(l);
    }
    let mut permits = permits.into_iter();
    if let Some(mut all) = permits.next() {
        for p in permits {
            all.merge(p);
        }
        drop(all);
    }
}

type WriteFut<'a> = futures::future::BoxFuture<'a, std::result::Result<Vec<Outcome>, StorageError>>;

/// Writes `items` as one batch; temporary errors are retried with back-off for up to
/// `retry_for` (S3; after that the leases have expired and the tasks are redelivered).
/// A permanent error splits the batch so one bad item cannot sink the others; returns the
/// items the backend refused for good, with the reason.
async fn write_items<T: Clone>(
    storage: &dyn Storage,
    op: &str,
    items: Vec<T>,
    deadline: tokio::time::Instant,
    f: impl for<'a> Fn(&'a dyn Storage, Vec<T>) -> WriteFut<'a> + Copy,
) -> Vec<(T, StorageError)> {
    let mut refused = Vec::new();
    let mut pending = vec![items];
    while let Some(batch) = pending.pop() {
        let mut delay = std::time::Duration::from_millis(50);
        loop {
            // A backend that panics is treated as refusing the batch, not allowed to take
            // the completer (and every later outcome) down with it.
            let call = std::panic::AssertUnwindSafe(f(storage, batch.clone()));
            let result = futures::FutureExt::catch_unwind(call)
                .await
                .unwrap_or_else(|_| Err(panicked(op)));
            match result {
                Ok(outcomes) => {
                    for o in outcomes {
                        if o == Outcome::LeaseLost {
                            tracing::warn!(target: "omniq::worker", "{op}: lease lost, outcome discarded (the task was redelivered)");
                        }
                    }
                    break;
                }
                Err(e) if e.is_temporary() && tokio::time::Instant::now() < deadline => {
                    events::log_storage_error(op, &e);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(5));
                }
                Err(e) if batch.len() > 1 && !e.is_temporary() => {
                    events::log_storage_error(op, &e);
                    // Bisect: find the item(s) the backend refuses.
                    let mut left = batch;
                    let right = left.split_off(left.len() / 2);
                    pending.push(right);
                    pending.push(left);
                    break;
                }
                Err(e) if e.is_temporary() => {
                    // Still down after the lease: the tasks are redelivered elsewhere, so
                    // these outcomes would be fenced off anyway.
                    events::log_storage_error(op, &e);
                    tracing::warn!(target: "omniq::worker", "{op}: storage still unavailable, giving up on {} outcome(s); their tasks are redelivered after the lease", batch.len());
                    break;
                }
                Err(e) => {
                    events::log_storage_error(op, &e);
                    for item in batch {
                        refused.push((
                            item,
                            StorageError::new(e.kind(), e.backend(), e.message().to_string()),
                        ));
                    }
                    break;
                }
            }
        }
    }
    refused
}
