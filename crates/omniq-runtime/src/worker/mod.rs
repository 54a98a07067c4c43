//! [`AsyncWorkerPool`]: claims tasks in batches, runs their handlers, records outcomes
//! in batches.
//!
//! A running pool is four actors around one [`LeaseTable`](leases::LeaseTable), each in
//! its own file:
//!
//! ```text
//!            claim permits (concurrency + prefetch)
//!   fetcher ──claim(batch)──▶ storage            heartbeater ──heartbeat(batch)──▶ storage
//!      │  hold(claimed)                               │  extends / interrupts held leases
//!      ▼                                              ▼
//!   executor (one per claim) ──waits for a run slot──▶ handler task (holds its slot)
//!      │  outcome + claim permit
//!      ▼
//!   completer ──complete/fail(batch)──▶ storage ──stored──▶ forget lease, drop permits
//!      └──────────────▶ freed claim permits wake the fetcher, which claims again
//! ```
//!
//! - **fetcher** (`fetcher.rs`): claims as many tasks as it has free claim permits, in one
//!   storage call; when the queues run dry it sleeps until the next task falls due
//!   ([`Storage::next_due`](omniq_core::Storage::next_due)), a wake-up hint, a freed permit,
//!   or `poll_interval` (the safety net).
//! - **executor** (`executor.rs`): one per claimed task; waits for one of `concurrency`
//!   run slots, starts the handler in its own tokio task (the slot lives as long as that
//!   task, so `concurrency` holds even past timeouts and aborts), enforces the timeout,
//!   turns the outcome into a [`Completion`](omniq_core::Completion) or a
//!   [`Failure`](omniq_core::Failure); `decide.rs` holds the decisions (may it start;
//!   retry, next run or fail).
//! - **heartbeater** (`heartbeater.rs`): extends every held lease in one batch per
//!   interval; stops runs whose lease was lost or whose cancellation was requested.
//! - **completer** (`completer.rs`): writes outcomes in batches; a claim permit returns
//!   to the fetcher only after its outcome is stored.
//! - **shutdown** (`shutdown.rs`): stop claiming, hand back unstarted claims, drain (or
//!   abort at the deadline), flush, stop heartbeats, release what is still held.
//!
//! Every storage call goes through `Shared::call`: a panicking backend becomes a
//! storage error naming the operation instead of taking an actor down, and a call that
//! does not answer within `storage_timeout` a temporary one, so a hung backend cannot
//! stall the pool or its shutdown.

mod completer;
mod decide;
mod executor;
mod fetcher;
mod heartbeater;
mod leases;
mod options;
mod panics;
mod shutdown;

pub use options::{
    DEFAULT_MAX_PAYLOAD_BYTES, LEGACY_STORAGE_WARNING, MAX_CONCURRENCY, WorkerOptions,
    WorkerPoolBuilder,
};

use crate::duration::IntoDuration;
use crate::error::{Error, Result};
use crate::handler::{HandlerError, Registry, TaskFn, TaskHandler, TaskType};
use crate::logging as events;
use crate::middleware::Middleware;
use crate::queue::AsyncTaskQueue;
use completer::Msg;
use executor::RunEnd;
use futures::FutureExt;
use leases::LeaseTable;
use omniq_core::{Storage, StorageError, StorageErrorKind};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

/// What `stop` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StopReport {
    /// Runs whose handler was going when `stop` was called and that finished (their
    /// outcome stored) within the timeout.
    pub drained: usize,
    /// Claimed-but-unstarted tasks handed back (claimable again at once).
    pub handed_back: usize,
    /// Runs still going at the timeout, aborted and handed back.
    pub aborted: usize,
}

/// Runs registered handlers for tasks of an [`AsyncTaskQueue`].
///
/// ```
/// # async fn demo(storage: std::sync::Arc<dyn omniq_core::Storage>) -> omniq_runtime::Result<()> {
/// use omniq_runtime::{AsyncTaskQueue, AsyncWorkerPool, HandlerError};
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
    middleware: Vec<Arc<dyn Middleware>>,
    periodic: Vec<Periodic>,
    state: Mutex<Option<Running>>,
}

/// A recurring series the pool makes sure exists when it starts.
#[derive(Debug, Clone)]
struct Periodic {
    func: String,
    expr: String,
    tz: String,
}

impl std::fmt::Debug for AsyncWorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncWorkerPool")
            .field("opts", &self.opts)
            .field("registry", &self.registry)
            .finish()
    }
}

/// The actors of a started pool.
struct Running {
    stop_tx: watch::Sender<bool>,
    fetcher: JoinHandle<JoinSet<RunEnd>>,
    shared: Arc<Shared>,
    completer: JoinHandle<()>,
    heartbeater: JoinHandle<()>,
}

/// What every actor of a running pool shares.
struct Shared {
    queue: AsyncTaskQueue,
    opts: WorkerOptions,
    registry: Registry,
    middleware: Arc<[Arc<dyn Middleware>]>,
    leases: LeaseTable,
    /// `concurrency` permits; each running handler task holds one until it really ends.
    run_slots: Arc<Semaphore>,
    done_tx: mpsc::UnboundedSender<Msg>,
}

impl Shared {
    fn storage(&self) -> &dyn Storage {
        &*self.queue.storage
    }

    fn max_batch(&self) -> usize {
        self.storage().capabilities().max_batch.max(1)
    }

    /// Calls the storage: a panic in the backend becomes a `Backend` error, and the
    /// error names `op` if the backend did not.
    async fn call<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = std::result::Result<T, StorageError>>,
    ) -> std::result::Result<T, StorageError> {
        let guarded = AssertUnwindSafe(fut).catch_unwind();
        match tokio::time::timeout(self.opts.storage_timeout, guarded).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) if e.operation().is_none() => Err(e.with_operation(op)),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(StorageError::new(
                StorageErrorKind::Backend,
                self.storage().backend_name(),
                "the storage backend panicked",
            )
            .with_operation(op)),
            Err(_) => Err(StorageError::new(
                StorageErrorKind::Unavailable,
                self.storage().backend_name(),
                format!(
                    "no answer within {:?} (storage_timeout)",
                    self.opts.storage_timeout
                ),
            )
            .with_operation(op)),
        }
    }
}

/// Logs a storage error under the operation it names.
fn log_storage_error(e: &StorageError) {
    let op = e.operation().unwrap_or("storage");
    crate::metrics::storage_error(op, e.kind().as_str());
    events::log_storage_error(op, e);
}

impl AsyncWorkerPool {
    /// Start building a pool (give it `.queue(...)`).
    pub fn builder() -> WorkerPoolBuilder {
        WorkerPoolBuilder::default()
    }

    pub(crate) fn with_options(queue: AsyncTaskQueue, opts: WorkerOptions) -> Self {
        Self {
            queue,
            opts,
            registry: Registry::default(),
            middleware: Vec::new(),
            periodic: Vec::new(),
            state: Mutex::new(None),
        }
    }

    /// A pool with default options over `queue`.
    pub fn new(queue: AsyncTaskQueue) -> Self {
        match Self::builder().queue(queue).build() {
            Ok(p) => p,
            // Defaults always validate; keep the constructor infallible.
            Err(e) => unreachable!("default worker options are valid: {e}"),
        }
    }

    /// The legacy interface: a pool over a storage. Logs a deprecation warning once per
    /// process.
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

    /// Registers a function for a declared [`TaskType`]: it must take `T::Args` and
    /// return `T::Output` (checked at compile time); its error may be anything `?` takes.
    ///
    /// ```
    /// # fn demo(pool: &mut omniq_runtime::AsyncWorkerPool) {
    /// omniq_runtime::task_type!(Add = "math.add", (i64, i64) => i64);
    /// pool.handle::<Add>(|(a, b): (i64, i64)| async move { Ok::<_, omniq_runtime::HandlerError>(a + b) });
    /// # }
    /// ```
    pub fn handle<T: TaskType>(&mut self, f: impl TaskFn<T>) -> &mut Self {
        self.registry.insert_task_fn::<T, _>(f);
        self
    }

    /// Registers a [`TaskHandler`] for its task type (see [`AsyncWorkerPool::register`]).
    pub fn register_handler<H: TaskHandler>(&mut self, handler: H) -> &mut Self {
        self.registry.insert_handler(handler);
        self
    }

    /// Wraps every run in `middleware` (see [`crate::middleware`]); the first added is
    /// the outermost. Like handlers, layers added while the pool runs take effect at the
    /// next `start`.
    ///
    /// ```
    /// # fn demo(pool: &mut omniq_runtime::AsyncWorkerPool) {
    /// use omniq_runtime::middleware::{ConcurrencyLimit, RateLimit};
    /// pool.layer(ConcurrencyLimit::new().handler("emails.send", 2))
    ///     .layer(RateLimit::new().queue("partner-api", 5.0));
    /// # }
    /// ```
    pub fn layer(&mut self, middleware: impl Middleware) -> &mut Self {
        self.middleware.push(Arc::new(middleware));
        self
    }

    /// Runs handler `func` (with `()` arguments) on the cron schedule `expr` in the IANA
    /// zone `tz`: when the pool starts it makes sure exactly one live series exists
    /// ([`AsyncTaskQueue::ensure_periodic`] on the pool's first queue), so restarts and
    /// several processes never add a second one. The expression is checked here.
    ///
    /// ```
    /// # fn demo(pool: &mut omniq_runtime::AsyncWorkerPool) -> omniq_runtime::Result<()> {
    /// pool.register("reports.daily", |(): ()| async move { Ok::<_, omniq_runtime::HandlerError>(()) });
    /// pool.periodic("reports.daily", "0 9 * * 1-5", "Europe/Berlin")?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "cron")]
    pub fn periodic(&mut self, func: &str, expr: &str, tz: &str) -> Result<&mut Self> {
        crate::cron::Cron::parse(expr, tz)?;
        self.periodic.push(Periodic {
            func: func.to_string(),
            expr: expr.to_string(),
            tz: tz.to_string(),
        });
        Ok(self)
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
            middleware: self.middleware.iter().cloned().collect(),
            leases: LeaseTable::default(),
            run_slots: Arc::new(Semaphore::new(self.opts.concurrency)),
            done_tx,
        });
        panics::install_hook();
        events::log_worker_started(&self.opts.name, self.opts.concurrency);
        let completer = tokio::spawn(completer::run(Arc::clone(&shared), done_rx));
        let heartbeater = tokio::spawn(heartbeater::run(Arc::clone(&shared), stop_rx.clone()));
        let fetcher = tokio::spawn(fetcher::run(Arc::clone(&shared), stop_rx.clone()));
        if !self.periodic.is_empty() {
            tokio::spawn(ensure_periodic(
                self.queue.clone(),
                self.periodic.clone(),
                self.opts.queues[0].clone(),
                stop_rx,
            ));
        }
        *state = Some(Running {
            stop_tx,
            fetcher,
            shared,
            completer,
            heartbeater,
        });
        Ok(())
    }

    /// Graceful stop: stop claiming, hand back claimed tasks that have not started,
    /// let running handlers finish for up to `timeout` (then abort them and hand their
    /// tasks back), flush every outcome, then stop heartbeats.
    ///
    /// It returns within `max(timeout, storage_timeout)` plus one `storage_timeout`
    /// even if the backend hangs (see [`WorkerPoolBuilder::storage_timeout`]).
    ///
    /// The shutdown runs in its own task: if the caller stops waiting (its future is
    /// dropped), the shutdown still completes.
    pub async fn stop(&self, timeout: impl IntoDuration) -> Result<StopReport> {
        let timeout = timeout.into_std();
        let running = self
            .state
            .lock()
            .map_err(|_| Error::Worker("state lock poisoned".into()))?
            .take();
        let Some(running) = running else {
            return Err(Error::Worker("not running".into()));
        };
        let name = self.opts.name.clone();
        tokio::spawn(shutdown::run(running, timeout, name))
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
                handle.spawn(shutdown::run(running, std::time::Duration::ZERO, name));
            } else {
                let _ = running.stop_tx.send(true);
                running.shared.leases.abort_all();
                // Let the completer flush what it has and end, should its runtime live on.
                let _ = running.shared.done_tx.send(Msg::Shutdown);
            }
        }
    }
}

/// Makes sure every periodic series exists; a storage that is down is retried with
/// back-off until the pool stops.
async fn ensure_periodic(
    queue: AsyncTaskQueue,
    series: Vec<Periodic>,
    on: String,
    mut stop: watch::Receiver<bool>,
) {
    for p in series {
        let mut delay = std::time::Duration::from_millis(100);
        loop {
            match queue
                .ensure_periodic(&p.func, &(), &p.expr, &p.tz, &on)
                .await
            {
                Ok(e) => {
                    tracing::info!(target: "omniq::worker", func_path = %p.func, task_id = %e.id, existing = e.duplicate, "Periodic series '{}' on '{}' ({}): task {}", p.func, p.expr, p.tz, e.id);
                    break;
                }
                Err(e) if e.is_temporary() => {
                    tracing::warn!(target: "omniq::worker", func_path = %p.func, "Periodic series '{}' not registered yet: {e}", p.func);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => return,
                    }
                    delay = (delay * 2).min(std::time::Duration::from_secs(30));
                }
                Err(e) => {
                    tracing::error!(target: "omniq::worker", func_path = %p.func, "Periodic series '{}' cannot be registered: {e}", p.func);
                    break;
                }
            }
        }
    }
}

/// `now + d`, saturating far in the future.
fn deadline_after(d: std::time::Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + std::time::Duration::from_secs(86_400 * 365))
}
