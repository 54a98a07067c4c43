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
        if !self.heartbeat_set {
            let third: std::time::Duration = (opts.lease / 3_i32).unsigned_abs();
            opts.heartbeat_interval = third.max(std::time::Duration::from_millis(10));
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

struct Held {
    token: LeaseToken,
    abort: Option<tokio::task::AbortHandle>,
    interrupt: Option<Interrupt>,
}

struct Shared {
    queue: AsyncTaskQueue,
    opts: WorkerOptions,
    registry: Registry,
    held: Mutex<HashMap<TaskId, Held>>,
    run_slots: Arc<Semaphore>,
    done_tx: mpsc::UnboundedSender<Done>,
}

enum DoneKind {
    Complete(Completion),
    Fail(Failure),
}

struct Done {
    kind: DoneKind,
    _permit: OwnedSemaphorePermit,
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

    /// Registers a closure handler with typed, serde-decoded args (before `start`).
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

    /// Registers a [`TaskHandler`] under its `NAME` (before `start`).
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

    /// Starts claiming and running tasks in the background (on the current tokio runtime).
    pub fn start(&self) -> Result<()> {
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
    /// let running handlers finish for up to `timeout` (then abort and hand them back),
    /// flush every outcome, and stop heartbeats.
    pub async fn stop(&self, timeout: std::time::Duration) -> Result<StopReport> {
        let running = self
            .state
            .lock()
            .map_err(|_| Error::Worker("state lock poisoned".into()))?
            .take();
        let Some(running) = running else {
            return Err(Error::Worker("not running".into()));
        };
        let _ = running.stop_tx.send(true);
        let mut set = running
            .fetcher
            .await
            .map_err(|e| Error::Worker(format!("fetcher task failed: {e}")))?;
        let mut report = StopReport::default();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, set.join_next()).await {
                Ok(Some(Ok(RunEnd::Finished))) => report.drained += 1,
                Ok(Some(Ok(RunEnd::HandedBack))) => report.handed_back += 1,
                Ok(Some(Ok(RunEnd::Interrupted))) => {}
                Ok(Some(Err(e))) => {
                    tracing::error!(target: "omniq::worker", "task runner failed: {e}");
                }
                Ok(None) => break,
                Err(_) => {
                    // Timed out: abort what is left (the handlers too, which run in their
                    // own tasks); their leases are handed back below.
                    report.aborted = set.len();
                    // Runners first, so none of them sees its handler end and drops its
                    // hold; then the detached handler tasks themselves.
                    set.abort_all();
                    while set.join_next().await.is_some() {}
                    if let Ok(held) = running.shared.held.lock() {
                        for h in held.values() {
                            if let Some(a) = &h.abort {
                                a.abort();
                            }
                        }
                    }
                    break;
                }
            }
        }
        let shared = running.shared;
        // Everything still held now is either aborted or was never flushed: hand back.
        let leftovers: Vec<LeaseRef> = {
            let held = shared.held.lock().unwrap_or_else(|p| p.into_inner());
            held.iter()
                .map(|(id, h)| LeaseRef {
                    task_id: *id,
                    token: h.token,
                })
                .collect()
        };
        // Stop heartbeats, then drop the last sender so the completer flushes and ends.
        running.heartbeater.abort();
        let _ = running.heartbeater.await;
        let storage = Arc::clone(&shared.queue.storage);
        let now = shared.queue.clock.now();
        drop(shared);
        let _ = running.completer.await;
        if !leftovers.is_empty() {
            if let Err(e) = storage.release(&leftovers, now).await {
                events::log_storage_error("release", &e);
            }
        }
        events::log_worker_stopped(&self.opts.name);
        Ok(report)
    }
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
    /// Handler's policy, else the queue's, else the pool's default (R2).
    fn backoff_for(&self, task: &Task) -> Backoff {
        self.opts
            .handler_backoff
            .get(&task.func_path)
            .or_else(|| self.opts.queue_backoff.get(&task.queue))
            .copied()
            .unwrap_or(self.opts.backoff)
    }

    /// Decide retry / next run / fail for a failed run (R2, R5).
    fn failure_for(&self, task: &Task, mut error: TaskError, lease: LeaseRef) -> (Failure, bool) {
        let now = self.queue.clock.now();
        error.retry_count = task.attempts.saturating_sub(1);
        error.max_retries = task.max_retries;
        let anchor = slot_anchor(task);
        let action = if error.can_retry() {
            let delay = self.backoff_for(task).delay(task.attempts, random_unit());
            if task.schedule.interval.is_some() {
                if let Ok(s) = anchor.format(&time::format_description::well_known::Rfc3339) {
                    error
                        .context
                        .insert(SLOT_KEY.into(), serde_json::Value::String(s));
                }
            }
            FailAction::Retry { at: now + delay }
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

    fn release_hold(&self, id: &TaskId) {
        if let Ok(mut held) = self.held.lock() {
            held.remove(id);
        }
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
    let max_batch = storage.capabilities().max_batch.max(1);
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
        let claimed = match storage.claim(req).await {
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
        let mut claimed = claimed;
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
        {
            let mut held = shared.held.lock().unwrap_or_else(|p| p.into_inner());
            for c in &claimed {
                held.insert(
                    c.task.id,
                    Held {
                        token: c.lease.token,
                        abort: None,
                        interrupt: None,
                    },
                );
            }
        }
        for c in claimed {
            let Some(permit) = permits.pop() else { break };
            let sh = Arc::clone(&shared);
            let st = stop.clone();
            set.spawn(run_one(sh, c, permit, st));
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

async fn run_one(
    shared: Arc<Shared>,
    claimed: Claimed,
    permit: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) -> RunEnd {
    let lease = claimed.lease_ref();
    let task = claimed.task;
    // Wait for a run slot, unless the pool is stopping: then hand the claim back.
    let slot = tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => None,
        s = Arc::clone(&shared.run_slots).acquire_owned() => s.ok(),
    };
    let Some(_slot) = slot else {
        let now = shared.queue.clock.now();
        match shared.queue.storage.release(&[lease], now).await {
            Ok(_) => shared.release_hold(&task.id),
            Err(e) => events::log_storage_error("release", &e),
        }
        drop(permit);
        return RunEnd::HandedBack;
    };
    // L5: every line of this run carries task_id, operation, worker and correlation_id.
    // The correlation id is the task id, as in the guide's PROD sample: one id follows a
    // task from enqueue through every run and retry. The run is logged by the L6 helpers
    // (started; completed with its duration, or failed), two lines at INFO.
    let span = events::task_span(&task.id, &"process_task", &task.id, Some(&shared.opts.name));
    async move {
        let started = std::time::Instant::now();
        events::log_task_started(task.id, task.attempts);
        let outcome = execute(&shared, &task, &lease, task.id.to_string()).await;
        let elapsed = started.elapsed();
        // The failure lines carry the run's duration too (L5).
        tracing::Span::current().record("duration_ms", elapsed.as_secs_f64() * 1000.0);
        let kind = match outcome {
            RunOutcome::Interrupted(Interrupt::LeaseLost) => {
                tracing::warn!(target: "omniq::worker", task_id = %task.id, "Task lease lost: {} (another worker owns it now; result discarded)", task.id);
                shared.release_hold(&task.id);
                drop(permit);
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
                    events::log_task_retry(task.id, task.attempts + 1, at);
                }
                DoneKind::Fail(failure)
            }
        };
        if shared.done_tx.send(Done { kind, _permit: permit }).is_err() {
            tracing::error!(target: "omniq::worker", task_id = %task.id, "completion channel closed; outcome left to lease expiry");
        }
        RunEnd::Finished
    }
    .instrument(span)
    .await
}

enum RunOutcome {
    Ok(Option<omniq_core::Payload>),
    Err(TaskError),
    Interrupted(Interrupt),
}

async fn execute(
    shared: &Arc<Shared>,
    task: &Task,
    lease: &LeaseRef,
    correlation_id: String,
) -> RunOutcome {
    // A task redelivered after more lease expiries than its retry budget keeps killing
    // workers: stop it instead of crash-looping.
    if task.attempts > task.max_retries.saturating_add(1) {
        return RunOutcome::Err(
            TaskError::new(
                ErrorType::System,
                format!(
                    "task was claimed {} times (max_retries {}); earlier runs never reported back (worker crash or lease expiry)",
                    task.attempts, task.max_retries
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
        correlation_id,
    };
    let fut = handler(task.args.clone(), shared.queue.format, ctx);
    let timeout = task.timeout;
    let handle = tokio::spawn(
        async move {
            match timeout {
                Some(limit) => match tokio::time::timeout(limit.unsigned_abs(), fut).await {
                    Ok(r) => r,
                    Err(_) => Err(timeout_error(limit)),
                },
                None => fut.await,
            }
        }
        .in_current_span(),
    );
    {
        let mut held = shared.held.lock().unwrap_or_else(|p| p.into_inner());
        match held.get_mut(&task.id) {
            Some(h) if h.token == lease.token => {
                if let Some(i) = h.interrupt {
                    handle.abort();
                    return RunOutcome::Interrupted(i);
                }
                h.abort = Some(handle.abort_handle());
            }
            _ => {}
        }
    }
    match handle.await {
        Ok(Ok(result)) => RunOutcome::Ok(result),
        Ok(Err(e)) => RunOutcome::Err(e),
        Err(join) if join.is_panic() => {
            let payload = join.into_panic();
            RunOutcome::Err(TaskError::from_panic(&*payload))
        }
        Err(_) => {
            let interrupt = shared
                .held
                .lock()
                .ok()
                .and_then(|h| h.get(&task.id).and_then(|h| h.interrupt))
                .unwrap_or(Interrupt::LeaseLost);
            RunOutcome::Interrupted(interrupt)
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
            // Keep extending leases while draining after stop; the pool aborts us at the end.
            changed = stop.changed(), if !*stop.borrow() => {
                if changed.is_err() {
                    // The pool was dropped without `stop`: its leases will expire.
                    return;
                }
                continue;
            }
        }
        let leases: Vec<LeaseRef> = {
            let held = shared.held.lock().unwrap_or_else(|p| p.into_inner());
            held.iter()
                .map(|(id, h)| LeaseRef {
                    task_id: *id,
                    token: h.token,
                })
                .collect()
        };
        if leases.is_empty() {
            continue;
        }
        let until = shared.queue.clock.now() + shared.opts.lease;
        match storage.heartbeat(&leases, until).await {
            Ok(outcomes) => {
                let mut held = shared.held.lock().unwrap_or_else(|p| p.into_inner());
                for (l, o) in leases.iter().zip(outcomes) {
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
            Err(e) => events::log_storage_error("heartbeat", &e),
        }
    }
}

async fn completer(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Done>) {
    let storage = Arc::clone(&shared.queue.storage);
    let max = shared.opts.completion_batch;
    // Drop our own sender handle's influence: the channel closes when every runner and
    // the pool's Shared are gone, which `stop` arranges.
    let weak = Arc::downgrade(&shared);
    drop(shared);
    loop {
        let Some(first) = rx.recv().await else { break };
        let mut batch = vec![first];
        // Take what is queued; give runners that are about to finish one scheduler turn
        // to join this batch (bigger batches, same latency when idle).
        let mut yielded = false;
        while batch.len() < max {
            match rx.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) if !yielded => {
                    yielded = true;
                    tokio::task::yield_now().await;
                }
                Err(_) => break,
            }
        }
        let mut completes = Vec::new();
        let mut fails = Vec::new();
        let mut permits = Vec::with_capacity(batch.len());
        let mut ids = Vec::with_capacity(batch.len());
        for d in batch {
            match d.kind {
                DoneKind::Complete(c) => {
                    ids.push(c.lease.task_id);
                    completes.push(c);
                }
                DoneKind::Fail(f) => {
                    ids.push(f.lease.task_id);
                    fails.push(f);
                }
            }
            permits.push(d._permit);
        }
        if !completes.is_empty() {
            write_with_retry(&*storage, "complete", completes, |s, v| {
                Box::pin(s.complete(v))
            })
            .await;
        }
        if !fails.is_empty() {
            write_with_retry(&*storage, "fail", fails, |s, v| Box::pin(s.fail(v))).await;
        }
        if let Some(shared) = weak.upgrade() {
            let mut held = shared.held.lock().unwrap_or_else(|p| p.into_inner());
            for id in &ids {
                held.remove(id);
            }
        }
        // Return the batch's claim permits in one release, so the fetcher wakes to the
        // whole batch of free capacity and claims it in one round trip.
        let mut permits = permits.into_iter();
        if let Some(mut all) = permits.next() {
            for p in permits {
                all.merge(p);
            }
            drop(all);
        }
    }
}

type WriteFut<'a> = futures::future::BoxFuture<'a, std::result::Result<Vec<Outcome>, StorageError>>;

/// Writes a batch, retrying temporary failures with back-off (S3). Gives up after about
/// a minute: the leases then expire and the tasks are redelivered, so nothing is lost.
async fn write_with_retry<T: Clone>(
    storage: &dyn Storage,
    op: &str,
    items: Vec<T>,
    f: impl for<'a> Fn(&'a dyn Storage, Vec<T>) -> WriteFut<'a>,
) {
    let mut delay = std::time::Duration::from_millis(50);
    for _ in 0..12 {
        match f(storage, items.clone()).await {
            Ok(outcomes) => {
                for o in outcomes {
                    if o == Outcome::LeaseLost {
                        tracing::warn!(target: "omniq::worker", "{op}: lease lost, outcome discarded (the task was redelivered)");
                    }
                }
                return;
            }
            Err(e) => {
                events::log_storage_error(op, &e);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
}
