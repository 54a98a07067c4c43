//! Worker settings and the builder that validates them.

use crate::duration::IntoDuration;
use crate::error::{Error, Result};
use crate::queue::AsyncTaskQueue;
use crate::worker::AsyncWorkerPool;
use omniq_core::{Backoff, Storage, validate_name};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use time::Duration;

/// The deprecation warning the legacy storage constructor logs once per process: the
/// migration guide's sentence, with the Rust way to pass a queue.
pub const LEGACY_STORAGE_WARNING: &str = "Passing 'storage' to AsyncWorkerPool is deprecated. \
Use 'queue' parameter instead: AsyncWorkerPool::builder().queue(AsyncTaskQueue::new(storage))";

static LEGACY_WARNED: AtomicBool = AtomicBool::new(false);

fn warn_legacy_once() {
    if !LEGACY_WARNED.swap(true, Ordering::SeqCst) {
        tracing::warn!(target: "omniq::worker", "DeprecationWarning: {LEGACY_STORAGE_WARNING}");
    }
}

/// Worker settings. Defaults: concurrency 4, prefetch = concurrency, poll 1 s, lease
/// 30 s, heartbeat every lease/3, queue `default`, the default back-off.
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
    /// being decoded. Default 16 MiB.
    pub max_payload_bytes: usize,
    /// Runs that never reported back (worker crashed or lost its lease) a task may have on
    /// top of its `max_retries + 1` runs before it is failed as crash-looping. Only runs
    /// whose handler really started count — claims a dead worker held without starting
    /// them do not — and a task's first run is not recorded, so one more may happen.
    /// Default 3.
    pub max_redeliveries: u32,
    /// How long a task whose handler no worker has may keep being handed back (a rolling
    /// deploy: new tasks reach workers that do not know them yet) before it fails.
    pub unknown_handler_grace: std::time::Duration,
    /// How long a task this worker has no handler for waits before it is offered again.
    pub unknown_handler_delay: std::time::Duration,
    /// The longest one storage call may take before it counts as failed (temporarily):
    /// a hung backend cannot stall the pool or its shutdown.
    pub storage_timeout: std::time::Duration,
}

/// The default payload limit of queues and workers: 16 MiB.
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
            unknown_handler_grace: std::time::Duration::from_secs(300),
            unknown_handler_delay: std::time::Duration::from_secs(2),
            storage_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// Builds an [`AsyncWorkerPool`] from exactly one of a queue (new interface) or a
/// storage (legacy interface, deprecated).
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

    /// Handlers running at once. Default 4; must be 1..=[`MAX_CONCURRENCY`], or
    /// `build()` fails.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.opts.concurrency = n;
        self
    }
    /// Claimed tasks allowed to wait for a free run slot, so a slot that frees up starts
    /// its next task without a storage round trip. Default = concurrency; at most
    /// [`MAX_CONCURRENCY`].
    pub fn prefetch(mut self, n: usize) -> Self {
        self.opts.prefetch = n;
        self.prefetch_set = true;
        self
    }
    /// The longest an idle worker waits before looking for work again. Idle workers
    /// normally wake when work is pushed or when the next task falls due; this is the
    /// safety net for lost hints. Default 1 s; must be positive.
    pub fn poll_interval(mut self, d: impl IntoDuration) -> Self {
        self.opts.poll_interval = d.into_std();
        self
    }
    /// How long a claim is held without a heartbeat; a crashed worker's tasks are
    /// redelivered after it. Default 30 s; must be positive.
    pub fn lease(mut self, d: impl IntoDuration) -> Self {
        self.opts.lease = d.into_duration();
        self
    }
    /// How often held leases are extended. Default lease / 3; must be positive and at
    /// most lease / 2, or `build()` fails.
    pub fn heartbeat_interval(mut self, d: impl IntoDuration) -> Self {
        self.opts.heartbeat_interval = d.into_std();
        self.heartbeat_set = true;
        self
    }
    /// Queues to claim from (default `["default"]`); names are validated.
    pub fn queues<I: IntoIterator<Item = S>, S: Into<String>>(mut self, queues: I) -> Self {
        self.opts.queues = queues.into_iter().map(Into::into).collect();
        self
    }
    /// The retry back-off for tasks whose task, handler and queue set none (default:
    /// exponential 1 s doubling to 60 s, ±25 % jitter).
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
    /// Largest batch of outcomes written in one storage call (default 256; the backend's
    /// `max_batch` caps it).
    pub fn completion_batch(mut self, n: usize) -> Self {
        self.opts.completion_batch = n;
        self
    }
    /// Runs that never reported back (worker crash, lost lease) a task may have on top of
    /// its `max_retries + 1` runs before it is failed as crash-looping. Only runs whose
    /// handler really started count (each start after a task's first claim is stored
    /// before the handler runs), so claims a killed worker held without starting them
    /// cost nothing. Default 3.
    pub fn max_redeliveries(mut self, n: u32) -> Self {
        self.opts.max_redeliveries = n;
        self
    }
    /// How long a task whose handler no worker has is handed back (without counting an
    /// attempt, every `unknown_handler_delay`) before it fails for good: the window in
    /// which a rolling deploy brings up workers that know it. Default 5 minutes; zero
    /// fails it at once.
    pub fn unknown_handler_grace(mut self, d: impl IntoDuration) -> Self {
        self.opts.unknown_handler_grace = d.into_std();
        self
    }
    /// How long a task this worker has no handler for waits before it is offered again
    /// (so another worker can take it). Default 2 s.
    pub fn unknown_handler_delay(mut self, d: impl IntoDuration) -> Self {
        self.opts.unknown_handler_delay = d.into_std();
        self
    }
    /// The longest one storage call (claim, heartbeat, complete, …) may take before the
    /// pool treats it as a temporary failure and backs off: a hung backend cannot stall
    /// the pool, and `stop(timeout)` returns within `max(timeout, storage_timeout)` plus
    /// one more `storage_timeout` for the final flush and hand-back (what that cuts short
    /// is redelivered after its lease). Default 10 s; must be positive. (A call given up on may still commit
    /// later; fencing keeps that harmless, and claimed tasks come back after their lease.)
    pub fn storage_timeout(mut self, d: impl IntoDuration) -> Self {
        self.opts.storage_timeout = d.into_std();
        self
    }
    /// Largest payload a task may carry; a larger one fails with a non-retryable
    /// validation error instead of being decoded. Default 16 MiB.
    pub fn max_payload_bytes(mut self, n: usize) -> Self {
        self.opts.max_payload_bytes = n;
        self
    }
    /// Worker name, the `worker` field of its log lines (default `worker-<pid>-<n>`).
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
        if opts.storage_timeout.is_zero() {
            return Err(Error::Config(
                "storage_timeout must be positive (e.g. 10 s)".into(),
            ));
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
        Ok(AsyncWorkerPool::with_options(queue, opts))
    }
}

/// The largest concurrency (and prefetch) a pool accepts.
pub const MAX_CONCURRENCY: usize = 1 << 20;

fn validate_backoff(what: &str, b: &Backoff) -> Result<()> {
    b.validate()
        .map_err(|e| Error::Config(format!("back-off for {what} is invalid: {e}")))
}
