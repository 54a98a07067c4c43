//! [`AsyncTaskQueue`]: enqueue, inspect, wait for and cancel tasks.

use crate::duration::IntoDuration;
use crate::error::{Error, Result};
use crate::handler::TaskType;
use crate::logging as events;
use crate::outcome::{TaskOutcome, TypedTaskId};
use omniq_core::{
    CancelOutcome, Clock, Enqueued, Format, IntoInterval, Page, Payload, QueueCounts, Storage,
    StorageError, SystemClock, Task, TaskError, TaskFilter, TaskId, TaskResult, TaskStatus, Wake,
    validate_name,
};
use serde::Serialize;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

/// A task's id, handler and queue, kept for the logs and metrics of its batch.
type BatchName = (TaskId, String, String);

/// One batch of `enqueue_many`: its storage future (created ahead of its turn, not yet
/// polled) and what its logs and metrics read once it has moved to the storage.
struct Batch<'a> {
    /// Id, handler and queue per task; empty when nothing reads them, the queue empty
    /// unless metrics are on.
    names: Vec<BatchName>,
    single: bool,
    metrics_on: bool,
    debug: bool,
    fut: EnqueueFuture<'a>,
}

/// A storage `enqueue` future, created ahead of its turn by `enqueue_many`.
type EnqueueFuture<'a> =
    Pin<Box<dyn Future<Output = std::result::Result<Vec<Enqueued>, StorageError>> + Send + 'a>>;

/// Defaults applied to tasks that do not set their own.
#[derive(Debug, Clone)]
pub struct QueueDefaults {
    /// Retries after the first attempt (default 3).
    pub max_retries: u32,
    /// Per-run timeout (default none).
    pub timeout: Option<Duration>,
    /// Queue name (default `"default"`).
    pub queue: String,
    /// Enqueue rejects larger encoded args. Default 16 MiB.
    pub max_payload_bytes: usize,
}

impl Default for QueueDefaults {
    fn default() -> Self {
        Self {
            max_retries: 3,
            timeout: None,
            queue: omniq_core::DEFAULT_QUEUE.to_string(),
            max_payload_bytes: crate::worker::DEFAULT_MAX_PAYLOAD_BYTES,
        }
    }
}

/// The default deadline of each storage call of an [`AsyncTaskQueue`]: 30 s.
pub const DEFAULT_QUEUE_STORAGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The client side of OmniQ: enqueue tasks and read their state and results.
///
/// Cheap to clone; clones share the storage.
///
/// ```
/// # async fn demo(storage: std::sync::Arc<dyn omniq_core::Storage>) -> omniq_runtime::Result<()> {
/// use omniq_runtime::AsyncTaskQueue;
/// use time::Duration;
///
/// let queue = AsyncTaskQueue::new(storage);
/// let id = queue
///     .enqueue("emails.send", &serde_json::json!({"to": "a@example.com"}))
///     .queue("mail")
///     .max_retries(5)
///     .delay(Duration::seconds(10))
///     .await?;
/// let cleanup = queue.enqueue("maintenance.cleanup", &()).interval(3600).await?;
/// # let _ = (id, cleanup); Ok(()) }
/// ```
#[derive(Clone)]
pub struct AsyncTaskQueue {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) format: Format,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) defaults: Arc<QueueDefaults>,
    pub(crate) storage_timeout: std::time::Duration,
}

impl std::fmt::Debug for AsyncTaskQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncTaskQueue")
            .field("storage", &self.storage)
            .field("format", &self.format)
            .finish()
    }
}

impl AsyncTaskQueue {
    /// A queue over `storage`, MessagePack payloads, the system clock and default settings.
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self {
            storage,
            format: Format::default(),
            clock: Arc::new(SystemClock),
            defaults: Arc::new(QueueDefaults::default()),
            storage_timeout: DEFAULT_QUEUE_STORAGE_TIMEOUT,
        }
    }

    /// The longest one storage call of this queue (enqueue, get, cancel, list, …) may
    /// take before it fails with a temporary `Unavailable` error naming the operation, so
    /// a hung backend cannot block a producer for good. Default 30 s; zero means no
    /// deadline. (A call given up on may still be applied later.)
    pub fn with_storage_timeout(mut self, d: impl IntoDuration) -> Self {
        self.storage_timeout = d.into_std();
        self
    }

    /// The deadline of each storage call (see [`AsyncTaskQueue::with_storage_timeout`]).
    pub fn storage_timeout(&self) -> std::time::Duration {
        self.storage_timeout
    }

    /// One storage call under the deadline.
    async fn call<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = std::result::Result<T, StorageError>>,
    ) -> std::result::Result<T, StorageError> {
        if self.storage_timeout.is_zero() {
            return fut.await;
        }
        match tokio::time::timeout(self.storage_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(StorageError::new(
                omniq_core::StorageErrorKind::Unavailable,
                self.storage.backend_name(),
                format!(
                    "no answer within {:?} (storage_timeout)",
                    self.storage_timeout
                ),
            )
            .with_operation(op)),
        }
    }

    /// Encode task arguments and results with `format` (workers must use the same).
    pub fn with_format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Use another clock (tests use [`omniq_core::ManualClock`]).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Replace the task defaults.
    pub fn with_defaults(mut self, defaults: QueueDefaults) -> Self {
        self.defaults = Arc::new(defaults);
        self
    }

    /// The storage this queue writes to.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The payload format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Start building a task for handler `func` with `args`; `.await` the builder to enqueue.
    pub fn enqueue<A: Serialize + ?Sized>(&self, func: &str, args: &A) -> EnqueueBuilder<'_> {
        EnqueueBuilder {
            queue: self,
            spec: TaskSpec::new(func, args, self.format),
        }
    }

    /// Start building a task of a declared [`TaskType`]: the arguments must be
    /// `T::Args`, checked at compile time; `.await` the builder for a [`TypedTaskId`]
    /// whose output [`AsyncTaskQueue::wait_output`] hands back as `T::Output`.
    ///
    /// ```
    /// # async fn demo(queue: omniq_runtime::AsyncTaskQueue) -> omniq_runtime::Result<()> {
    /// omniq_runtime::task_type!(Add = "math.add", (i64, i64) => i64);
    ///
    /// let id = queue.enqueue_typed::<Add>(&(2, 3)).max_retries(2).await?;
    /// let sum: Result<i64, omniq_core::TaskError> =
    ///     queue.wait_output(&id, std::time::Duration::from_secs(5)).await?;
    /// # let _ = sum; Ok(()) }
    /// ```
    ///
    /// Arguments of another type do not compile:
    ///
    /// ```compile_fail
    /// # async fn demo(queue: omniq_runtime::AsyncTaskQueue) -> omniq_runtime::Result<()> {
    /// omniq_runtime::task_type!(Add = "math.add", (i64, i64) => i64);
    /// let id = queue.enqueue_typed::<Add>(&"two and three").await?;
    /// # Ok(()) }
    /// ```
    pub fn enqueue_typed<T: TaskType>(&self, args: &T::Args) -> TypedEnqueueBuilder<'_, T> {
        TypedEnqueueBuilder {
            inner: self.enqueue(T::NAME, args),
            _task: std::marker::PhantomData,
        }
    }

    /// A [`TaskSpec`] of a declared [`TaskType`] (for [`AsyncTaskQueue::enqueue_many`]).
    pub fn task_typed<T: TaskType>(&self, args: &T::Args) -> TaskSpec {
        self.task(T::NAME, args)
    }

    /// The output of a finished task of a declared type: `None` while it has not
    /// finished, `Some(Ok(output))` after a successful run, `Some(Err(error))` after it
    /// failed for good or was cancelled.
    pub async fn output<T: TaskType>(
        &self,
        id: &TypedTaskId<T>,
    ) -> Result<Option<std::result::Result<T::Output, TaskError>>> {
        match self.get_result(id).await? {
            Some(outcome) => Ok(Some(outcome.into_output()?)),
            None => Ok(None),
        }
    }

    /// Waits (like [`AsyncTaskQueue::wait_result`]) for a task of a declared type and
    /// hands back its decoded output, or the TaskError it failed with.
    pub async fn wait_output<T: TaskType>(
        &self,
        id: &TypedTaskId<T>,
        timeout: impl IntoDuration,
    ) -> Result<std::result::Result<T::Output, TaskError>> {
        self.wait_result(id, timeout).await?.into_output()
    }

    /// Makes sure one live series of `func` runs on the cron schedule `expr` in `tz`, on
    /// `queue`: idempotent across restarts and across processes, because the series
    /// carries the unique key `periodic:<func>` — a second call finds the live series and
    /// returns its id (`duplicate: true`). Cancel the task to end the series.
    pub async fn ensure_periodic<A: Serialize + ?Sized>(
        &self,
        func: &str,
        args: &A,
        expr: &str,
        tz: &str,
        queue: &str,
    ) -> Result<Enqueued> {
        self.enqueue(func, args)
            .cron(expr, tz)
            .queue(queue)
            .unique_key(format!("periodic:{func}"))
            .send()
            .await
    }

    /// Build a [`TaskSpec`] (for [`AsyncTaskQueue::enqueue_many`]) with this queue's format.
    pub fn task<A: Serialize + ?Sized>(&self, func: &str, args: &A) -> TaskSpec {
        TaskSpec::new(func, args, self.format)
    }

    /// Enqueue many tasks in one storage round trip per `max_batch`.
    pub async fn enqueue_many(&self, specs: Vec<TaskSpec>) -> Result<Vec<Enqueued>> {
        let now = self.clock.now();
        let mut tasks = Vec::with_capacity(specs.len());
        for spec in specs {
            tasks.push(spec.into_task(&self.defaults, now)?);
        }
        let max = self.storage.capabilities().max_batch.max(1);
        let mut out = Vec::with_capacity(tasks.len());
        // Batches are taken from the front by moving each task once: splitting the tail
        // off a Vec per batch would copy the rest every time (quadratic in the count).
        let mut rest = tasks.into_iter();
        // The next batch's storage future is created while the previous batch is in
        // flight, so a backend that prepares its request when the future is created
        // (encoding) overlaps that with the previous round trip; it is polled (and so
        // writes) only after the previous batch succeeded, and dropped unpolled when that
        // one failed: a failed batch still leaves exactly the earlier ones stored.
        let mut next = self.next_enqueue(&mut rest, max);
        while let Some(Batch {
            names,
            single,
            metrics_on,
            debug,
            fut,
        }) = next.take()
        {
            let res = if rest.as_slice().is_empty() {
                // The last (or only) batch: nothing to prepare beside it, so no yield
                // (a single `enqueue` goes straight to the storage).
                self.call("enqueue", fut).await
            } else {
                let (res, following) = futures::future::join(self.call("enqueue", fut), async {
                    // Once first: the batch's request is handed to the backend's I/O
                    // task when its future is first polled, and that task runs on this
                    // thread only after this one yields.
                    tokio::task::yield_now().await;
                    self.next_enqueue(&mut rest, max)
                })
                .await;
                next = following;
                res
            };
            let res = match res {
                Ok(res) => res,
                Err(e) => {
                    crate::metrics::storage_error("enqueue", e.kind().as_str());
                    events::log_storage_error("enqueue", &e);
                    if out.is_empty() {
                        return Err(e.into());
                    }
                    return Err(Error::PartiallyEnqueued {
                        enqueued: out,
                        source: Box::new(e.into()),
                    });
                }
            };
            if metrics_on {
                let mut counts: std::collections::BTreeMap<(&str, &str), u64> =
                    std::collections::BTreeMap::new();
                for ((_, func, queue), r) in names.iter().zip(&res) {
                    if !r.duplicate {
                        *counts.entry((queue.as_str(), func.as_str())).or_default() += 1;
                    }
                }
                for ((queue, func), n) in counts {
                    crate::metrics::enqueued(queue, func, n);
                }
            }
            if single {
                if let (Some((id, func, _)), Some(r)) = (names.first(), res.first()) {
                    if !r.duplicate {
                        events::log_task_enqueued(id, func);
                    }
                }
            } else {
                // A batch logs one INFO line; its tasks' lines are DEBUG, so bulk enqueue
                // does not pay for (or flood the log with) a line per task at INFO (L7).
                let fresh = res.iter().filter(|r| !r.duplicate).count();
                tracing::info!(target: "omniq::queue", operation = "enqueue", tasks = fresh, duplicates = res.len() - fresh, "Enqueued a batch of {fresh} task(s)");
                if debug {
                    for ((id, func, _), r) in names.iter().zip(&res) {
                        if !r.duplicate {
                            tracing::debug!(target: "omniq::queue", task_id = %id, operation = "enqueue", correlation_id = %id, func_path = %func, "Task enqueued: {id} -> {func}");
                        }
                    }
                }
            }
            out.extend(res);
        }
        Ok(out)
    }

    /// The next batch of `enqueue_many` and its (not yet polled) storage future.
    fn next_enqueue<'a>(
        &'a self,
        rest: &mut std::vec::IntoIter<Task>,
        max: usize,
    ) -> Option<Batch<'a>> {
        let batch: Vec<Task> = rest.by_ref().take(max).collect();
        if batch.is_empty() {
            return None;
        }
        let single = batch.len() == 1;
        let metrics_on = crate::metrics::is_enabled();
        let debug = !single && tracing::enabled!(target: "omniq::queue", tracing::Level::DEBUG);
        // The names are copied only for what reads them after the batch has moved to the
        // storage: metrics, the single task's INFO line, the per-task DEBUG lines.
        let names = if single || metrics_on || debug {
            batch
                .iter()
                .map(|t| {
                    // Only metrics read the queue.
                    let queue = if metrics_on {
                        t.queue.clone()
                    } else {
                        String::new()
                    };
                    (t.id, t.func_path.clone(), queue)
                })
                .collect()
        } else {
            Vec::new()
        };
        Some(Batch {
            names,
            single,
            metrics_on,
            debug,
            fut: self.storage.enqueue(batch),
        })
    }

    /// The task, or None.
    pub async fn get_task(&self, id: &TaskId) -> Result<Option<Task>> {
        Ok(self.call("get_task", self.storage.get_task(id)).await?)
    }

    /// The latest finished run's result, or None. Never returns the failure of a run
    /// that will be retried (those are not stored as results).
    pub async fn get_result(&self, id: &TaskId) -> Result<Option<TaskOutcome>> {
        let result = match self.call("get_task", self.storage.get_task(id)).await? {
            None => self.call("get_result", self.storage.get_result(id)).await?,
            Some(task) => self.settled_result(&task).await?,
        };
        Ok(result.map(|r| TaskOutcome::new(r, self.format)))
    }

    async fn settled_result(&self, task: &Task) -> Result<Option<TaskResult>> {
        let settled = task.status.is_finished() || task.schedule.is_recurring();
        if !settled {
            return Ok(None);
        }
        // A recurring task's latest run is its result; a one-off's only once it finished.
        let res = self
            .call("get_result", self.storage.get_result(&task.id))
            .await?;
        if res.is_none() && task.status.is_finished() {
            // Finished without a stored result (purged, expired, or cancelled before it
            // ever ran on a backend that stores none): report the task's own outcome.
            return Ok(Some(TaskResult {
                task_id: task.id,
                status: task.status,
                result: None,
                error: task.error.clone(),
                finished_at: task.updated_at,
                attempts: task.attempts,
                last_attempt_at: task.last_attempt_at,
            }));
        }
        Ok(res)
    }

    /// Waits until the task has a final result (or, for a recurring task, any run's
    /// result), up to `timeout`. Uses the backend's push wake-ups when it has them and
    /// bounded back-off polling (10 ms doubling to 250 ms) otherwise. While a retry is
    /// pending it keeps waiting: it never returns an intermediate failure.
    pub async fn wait_result(
        &self,
        id: &TaskId,
        timeout: impl IntoDuration,
    ) -> Result<TaskOutcome> {
        let timeout = timeout.into_std();
        let start = tokio::time::Instant::now();
        let deadline = start
            .checked_add(timeout)
            .unwrap_or_else(|| start + std::time::Duration::from_secs(86_400 * 365));
        let mut wake = if self.storage.capabilities().push_wakeup {
            self.storage.subscribe()
        } else {
            None
        };
        let mut poll = std::time::Duration::from_millis(10);
        loop {
            let checked = match tokio::time::timeout_at(deadline, self.check_result(id)).await {
                Ok(r) => r,
                // A storage that does not answer before the deadline: the wait timed out.
                Err(_) => return Err(Error::Timeout(*id)),
            };
            match checked {
                Ok(Some(r)) => return Ok(TaskOutcome::new(r, self.format)),
                Ok(None) => {}
                // S3: a temporary outage only delays the answer.
                Err(Error::Storage(e))
                    if e.is_temporary() && tokio::time::Instant::now() < deadline =>
                {
                    events::log_storage_error("wait_result", &e);
                }
                Err(e) => return Err(e),
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(Error::Timeout(*id));
            }
            let step = poll.min(deadline - now);
            match wake.as_mut() {
                Some(rx) => {
                    // Woken by our task's Finished hint; re-check every 250 ms anyway
                    // because hints may be lost.
                    let step = std::time::Duration::from_millis(250).min(deadline - now);
                    let _ = tokio::time::timeout(step, async {
                        loop {
                            match rx.recv().await {
                                Ok(Wake::Finished { task_id }) if task_id == *id => break,
                                Ok(_) => continue,
                                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                    std::future::pending::<()>().await
                                }
                            }
                        }
                    })
                    .await;
                }
                None => {
                    tokio::time::sleep(step).await;
                    poll = (poll * 2).min(std::time::Duration::from_millis(250));
                }
            }
        }
    }

    /// The settled result, None while the task is still on its way, NotFound when neither
    /// the task nor a result exists.
    async fn check_result(&self, id: &TaskId) -> Result<Option<TaskResult>> {
        match self.call("get_task", self.storage.get_task(id)).await? {
            None => match self.call("get_result", self.storage.get_result(id)).await? {
                Some(r) => Ok(Some(r)),
                None => Err(Error::Storage(
                    StorageError::not_found(
                        self.storage.backend_name(),
                        format!("task {id} not found"),
                    )
                    .with_operation("wait_result"),
                )),
            },
            Some(task) => self.settled_result(&task).await,
        }
    }

    /// Cancel a task (Pending → Cancelled; Running → its worker stops it).
    pub async fn cancel(&self, id: &TaskId) -> Result<CancelOutcome> {
        let outcome = self
            .call("cancel", self.storage.cancel(id, self.clock.now()))
            .await?;
        tracing::info!(target: "omniq::queue", task_id = %id, operation = "cancel", correlation_id = %id, "Task cancel: {id} -> {outcome:?}");
        Ok(outcome)
    }

    /// One page of tasks.
    pub async fn list(&self, filter: TaskFilter) -> Result<Page<Task>> {
        Ok(self
            .call("list_tasks", self.storage.list_tasks(filter))
            .await?)
    }

    /// Counts by status, for one queue or all.
    pub async fn counts(&self, queue: Option<&str>) -> Result<Vec<QueueCounts>> {
        Ok(self.call("counts", self.storage.counts(queue)).await?)
    }

    /// Move a task to `eta` (Failed tasks are retried by hand this way).
    pub async fn reschedule(&self, id: &TaskId, eta: OffsetDateTime) -> Result<()> {
        self.call(
            "reschedule",
            self.storage.reschedule(id, eta, self.clock.now()),
        )
        .await
        .inspect_err(|e| {
            events::log_storage_error("reschedule", e);
        })?;
        tracing::info!(target: "omniq::queue", task_id = %id, operation = "reschedule", correlation_id = %id, eta = %eta, "Task rescheduled: {id} at {eta}");
        Ok(())
    }
}

/// A task description for [`AsyncTaskQueue::enqueue_many`] (and the builder behind
/// [`AsyncTaskQueue::enqueue`]). Invalid input (bad interval, queue name, unencodable
/// args) is reported when the task is enqueued.
#[derive(Debug)]
pub struct TaskSpec {
    func: String,
    args: std::result::Result<Payload, omniq_core::SerializationError>,
    id: Option<TaskId>,
    eta: Option<OffsetDateTime>,
    delay: Option<Duration>,
    interval: Option<std::result::Result<Duration, omniq_core::IntervalError>>,
    max_retries: Option<u32>,
    timeout: Option<Duration>,
    queue: Option<String>,
    priority: i32,
    unique_key: Option<String>,
    backoff: Option<omniq_core::Backoff>,
    cron: Option<std::result::Result<omniq_core::CronSchedule, String>>,
}

impl TaskSpec {
    /// A task for `func`, its args encoded with `format`.
    pub fn new<A: Serialize + ?Sized>(func: &str, args: &A, format: Format) -> Self {
        Self {
            func: func.to_string(),
            args: format.encode(args).map(Payload),
            id: None,
            eta: None,
            delay: None,
            interval: None,
            max_retries: None,
            timeout: None,
            queue: None,
            priority: 0,
            unique_key: None,
            backoff: None,
            cron: None,
        }
    }

    /// Run no earlier than `eta`.
    pub fn eta(mut self, eta: OffsetDateTime) -> Self {
        self.eta = Some(eta);
        self
    }
    /// Run no earlier than `delay` from now (`std::time::Duration` or `time::Duration`).
    pub fn delay(mut self, delay: impl IntoDuration) -> Self {
        self.delay = Some(delay.into_duration());
        self
    }
    /// Repeat every `interval`: a `time::Duration`, `std::time::Duration` or integer seconds.
    pub fn interval(mut self, interval: impl IntoInterval) -> Self {
        self.interval = Some(interval.into_interval());
        self
    }
    /// Repeat on a calendar: a cron expression (5 fields, or 6 with seconds first) read
    /// in the IANA time zone `tz`, e.g. `.cron("0 9 * * 1-5", "Europe/Berlin")`. The
    /// task keeps its id across runs; without an explicit eta its first run is the first
    /// slot after now. An invalid expression or zone is an error when it is enqueued.
    pub fn cron(mut self, expr: &str, tz: &str) -> Self {
        self.cron = Some(parse_cron(expr, tz));
        self
    }
    /// Retries after the first attempt.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }
    /// Per-run timeout (`std::time::Duration` or `time::Duration`).
    pub fn timeout(mut self, timeout: impl IntoDuration) -> Self {
        self.timeout = Some(timeout.into_duration());
        self
    }
    /// Queue name.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }
    /// Higher runs first.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }
    /// At most one live task per (queue, key): a duplicate returns the existing id.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }
    /// Use this id instead of a fresh UUID v7.
    pub fn task_id(mut self, id: TaskId) -> Self {
        self.id = Some(id);
        self
    }
    /// This task's own retry back-off, stored with it; it wins over the worker's
    /// handler, queue and pool policies.
    pub fn backoff(mut self, backoff: omniq_core::Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    pub(crate) fn into_task(self, defaults: &QueueDefaults, now: OffsetDateTime) -> Result<Task> {
        let args = self.args?;
        if args.len() > defaults.max_payload_bytes {
            return Err(Error::Config(format!(
                "arguments of '{}' encode to {} bytes, over max_payload_bytes ({})",
                self.func,
                args.len(),
                defaults.max_payload_bytes
            )));
        }
        let mut task = Task::new(self.func, args);
        if task.func_path.is_empty() {
            return Err(Error::Config(
                "handler name (func) must not be empty".into(),
            ));
        }
        task.created_at = now;
        task.updated_at = now;
        if let Some(id) = self.id {
            task.id = id;
        }
        task.queue = self.queue.unwrap_or_else(|| defaults.queue.clone());
        validate_name("queue name", &task.queue).map_err(Error::Config)?;
        task.priority = self.priority;
        task.max_retries = self.max_retries.unwrap_or(defaults.max_retries);
        task.timeout = self.timeout.or(defaults.timeout);
        if let Some(t) = task.timeout {
            if !t.is_positive() {
                return Err(Error::Config(format!("timeout must be positive, got {t}")));
            }
        }
        task.unique_key = self.unique_key;
        if let Some(b) = &self.backoff {
            b.validate().map_err(Error::Config)?;
        }
        task.backoff = self.backoff;
        task.schedule.interval = self.interval.transpose()?;
        task.schedule.cron = self.cron.transpose().map_err(Error::Config)?;
        if task.schedule.interval.is_some() && task.schedule.cron.is_some() {
            return Err(Error::Config(
                "a task repeats by interval or by cron, not both".into(),
            ));
        }
        let shifted = |t: OffsetDateTime, d: Duration| {
            t.checked_add(d)
                .ok_or_else(|| Error::Config(format!("eta {t} + delay {d} is out of range")))
        };
        task.schedule.eta = match (self.eta, self.delay) {
            (Some(eta), Some(d)) => Some(shifted(eta, d)?),
            (Some(eta), None) => Some(eta),
            (None, Some(d)) => Some(shifted(now, d)?),
            // Recurring tasks keep an explicit anchor so slots never drift (R5); a cron
            // task starts at its first slot.
            (None, None) => match &task.schedule.cron {
                Some(c) => Some(first_cron_slot(c, now)?),
                None => task.schedule.interval.map(|_| now),
            },
        };
        task.status = TaskStatus::Pending;
        Ok(task)
    }
}

#[cfg(feature = "cron")]
fn parse_cron(expr: &str, tz: &str) -> std::result::Result<omniq_core::CronSchedule, String> {
    crate::cron::Cron::parse(expr, tz)
        .map(|c| c.schedule().clone())
        .map_err(|e| match e {
            Error::Config(m) => m,
            other => other.to_string(),
        })
}

#[cfg(not(feature = "cron"))]
fn parse_cron(_expr: &str, _tz: &str) -> std::result::Result<omniq_core::CronSchedule, String> {
    Err("cron schedules need omniq's `cron` feature".into())
}

#[cfg(feature = "cron")]
fn first_cron_slot(c: &omniq_core::CronSchedule, now: OffsetDateTime) -> Result<OffsetDateTime> {
    crate::cron::Cron::of(c)?.next_after(now).ok_or_else(|| {
        Error::Config(format!(
            "cron expression {:?} never matches after {now}",
            c.expr
        ))
    })
}

#[cfg(not(feature = "cron"))]
fn first_cron_slot(_c: &omniq_core::CronSchedule, _now: OffsetDateTime) -> Result<OffsetDateTime> {
    Err(Error::Config(
        "cron schedules need omniq's `cron` feature".into(),
    ))
}

/// Builder returned by [`AsyncTaskQueue::enqueue`]; `.await` it to enqueue and get the id.
#[must_use = "an enqueue builder does nothing until awaited"]
#[derive(Debug)]
pub struct EnqueueBuilder<'q> {
    queue: &'q AsyncTaskQueue,
    spec: TaskSpec,
}

/// The task options, as setters on a builder that forwards them to its `$field`.
macro_rules! task_options {
    ($field:ident) => {
        /// Run no earlier than `eta`.
        pub fn eta(mut self, eta: OffsetDateTime) -> Self {
            self.$field = self.$field.eta(eta);
            self
        }
        /// Run no earlier than `delay` from now (`std::time::Duration` or `time::Duration`).
        pub fn delay(mut self, delay: impl IntoDuration) -> Self {
            self.$field = self.$field.delay(delay);
            self
        }
        /// Retries after the first attempt (default 3: up to 4 runs).
        pub fn max_retries(mut self, n: u32) -> Self {
            self.$field = self.$field.max_retries(n);
            self
        }
        /// Per-run timeout (`std::time::Duration` or `time::Duration`).
        pub fn timeout(mut self, timeout: impl IntoDuration) -> Self {
            self.$field = self.$field.timeout(timeout);
            self
        }
        /// Higher runs first.
        pub fn priority(mut self, priority: i32) -> Self {
            self.$field = self.$field.priority(priority);
            self
        }
        /// Use this id instead of a fresh UUID v7.
        pub fn task_id(mut self, id: TaskId) -> Self {
            self.$field = self.$field.task_id(id);
            self
        }
        /// This task's own retry back-off (wins over the worker's policies).
        pub fn backoff(mut self, backoff: omniq_core::Backoff) -> Self {
            self.$field = self.$field.backoff(backoff);
            self
        }
        /// Repeat every `interval` (`time::Duration`, `std::time::Duration` or integer
        /// seconds).
        pub fn interval(mut self, interval: impl IntoInterval) -> Self {
            self.$field = self.$field.interval(interval);
            self
        }
        /// Repeat on a calendar: a cron expression in an IANA time zone
        /// (`.cron("0 9 * * 1-5", "Europe/Berlin")`); see [`TaskSpec::cron`].
        pub fn cron(mut self, expr: &str, tz: &str) -> Self {
            self.$field = self.$field.cron(expr, tz);
            self
        }
        /// Queue name (default `"default"`).
        pub fn queue(mut self, queue: impl Into<String>) -> Self {
            self.$field = self.$field.queue(queue);
            self
        }
        /// At most one live task per (queue, key): a duplicate enqueue returns the live
        /// task's id instead of adding a second one.
        pub fn unique_key(mut self, key: impl Into<String>) -> Self {
            self.$field = self.$field.unique_key(key);
            self
        }
    };
}

impl EnqueueBuilder<'_> {
    task_options!(spec);

    /// Enqueue and report whether it was a duplicate of a live unique task.
    pub async fn send(self) -> Result<Enqueued> {
        let mut v = self.queue.enqueue_many(vec![self.spec]).await?;
        v.pop()
            .ok_or_else(|| Error::Worker("storage returned no enqueue outcome".into()))
    }
}

impl<'q> IntoFuture for EnqueueBuilder<'q> {
    type Output = Result<TaskId>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<TaskId>> + Send + 'q>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.send().await.map(|e| e.id) })
    }
}

/// Builder returned by [`AsyncTaskQueue::enqueue_typed`]: the same options as
/// [`EnqueueBuilder`]; `.await` it for a [`TypedTaskId`].
#[must_use = "an enqueue builder does nothing until awaited"]
pub struct TypedEnqueueBuilder<'q, T> {
    inner: EnqueueBuilder<'q>,
    _task: std::marker::PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for TypedEnqueueBuilder<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedEnqueueBuilder")
            .field("task", &std::any::type_name::<T>())
            .field("inner", &self.inner)
            .finish()
    }
}

impl<T: TaskType> TypedEnqueueBuilder<'_, T> {
    task_options!(inner);

    /// Enqueue and report whether it was a duplicate of a live unique task.
    pub async fn send(self) -> Result<Enqueued> {
        self.inner.send().await
    }
}

impl<'q, T: TaskType> IntoFuture for TypedEnqueueBuilder<'q, T> {
    type Output = Result<TypedTaskId<T>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<TypedTaskId<T>>> + Send + 'q>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.send().await.map(|e| TypedTaskId::new(e.id)) })
    }
}
