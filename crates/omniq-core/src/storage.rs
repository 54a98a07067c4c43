//! The storage contract every backend implements.
//!
//! The trait is batch-first: enqueue, claim, heartbeat, complete and fail take and
//! return batches, one round trip (transaction / script / statement) per batch, with a
//! per-item [`Outcome`] so one stale lease never fails its neighbours. Single-item
//! helpers live in [`StorageExt`], which implementors never write.
//!
//! Time is passed in: every scheduling decision uses the `now` of the request, never the
//! backend's wall clock, so tests drive eta and lease expiry with a manual clock.
//! Across machines this assumes clocks agree to within a small fraction of the lease
//! (NTP); a skew larger than the lease can redeliver a task early.

use crate::{StorageError, StorageErrorKind, Task, TaskError, TaskId, TaskResult, TaskStatus};
use async_trait::async_trait;
use std::fmt;
use time::{Duration, OffsetDateTime};

/// A fencing token: per task, strictly increasing with every claim.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct LeaseToken(pub i64);

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A claim's lease: valid while `until` is in the future and `token` is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The fencing token every later write must present.
    pub token: LeaseToken,
    /// When the lease expires unless extended by a heartbeat.
    pub until: OffsetDateTime,
}

/// Identifies a held lease: the task and the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseRef {
    /// The task.
    pub task_id: TaskId,
    /// The token from its claim.
    pub token: LeaseToken,
}

/// A task claimed under a lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The task as it is now (status Running, attempts already incremented).
    pub task: Task,
    /// The lease.
    pub lease: Lease,
}

impl Claimed {
    /// The lease reference for later writes.
    pub fn lease_ref(&self) -> LeaseRef {
        LeaseRef {
            task_id: self.task.id,
            token: self.lease.token,
        }
    }
}

/// What to claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// Queues to claim from (at least one).
    pub queues: Vec<String>,
    /// At most this many tasks.
    pub limit: usize,
    /// The runtime's clock reading; tasks with `eta <= now` and leases with `until <= now` are due.
    pub now: OffsetDateTime,
    /// Lease length; the lease ends at `now + lease`.
    pub lease: Duration,
}

/// The result of enqueueing one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// The id that holds the task: the new one, or the existing one for a duplicate unique key.
    pub id: TaskId,
    /// True when a live task with the same (queue, unique_key) already existed.
    pub duplicate: bool,
}

/// Per-item outcome of a batched lease write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied.
    Ok,
    /// The token was stale (lease expired and re-claimed, or task moved on); nothing changed.
    LeaseLost,
    /// The task does not exist.
    NotFound,
    /// Heartbeat only: the lease was extended, and cancellation was requested.
    CancelRequested,
}

/// A successful run to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The lease the worker holds.
    pub lease: LeaseRef,
    /// The handler's encoded return value.
    pub result: Option<crate::Payload>,
    /// The runtime's clock reading.
    pub now: OffsetDateTime,
    /// For interval tasks: the next slot. The task goes back to Pending with this eta
    /// and attempts reset to 0, keeping its id; the run's result is stored.
    pub next_run: Option<OffsetDateTime>,
}

/// What a failed run turns into (decided by the runtime; applied atomically by the backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailAction {
    /// Back to Pending at `at`, attempts kept.
    Retry {
        /// The retry's eta.
        at: OffsetDateTime,
    },
    /// Interval task whose retries are exhausted: result stored as Failed for this run,
    /// back to Pending at the next slot with attempts reset.
    NextRun {
        /// The next slot.
        at: OffsetDateTime,
    },
    /// Final failure: status Failed, result stored.
    Fail,
    /// The run did not happen (this worker cannot run the task — e.g. it has no handler
    /// for it during a rolling deploy): back to Pending at `at` with the claim's attempt
    /// not counted, so the task costs nothing until a worker that can run it takes it.
    Defer {
        /// When to offer it again.
        at: OffsetDateTime,
    },
}

/// A failed run to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The lease the worker holds.
    pub lease: LeaseRef,
    /// The error, stored on the task (and on the result when final).
    pub error: TaskError,
    /// Retry, next run, or fail.
    pub action: FailAction,
    /// The runtime's clock reading.
    pub now: OffsetDateTime,
}

/// The result of a cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The task (Pending, Failed, or Running under an expired lease) is now Cancelled.
    Cancelled,
    /// The task is Running; it was flagged and its worker will stop it.
    Requested,
    /// The task had already finished with this status; nothing changed.
    AlreadyFinished(TaskStatus),
}

/// A cursor for [`Storage::list_tasks`] pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub TaskId);

/// What to list. Pages are ordered by task id (creation order for v7 ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only this status.
    pub status: Option<TaskStatus>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Page size.
    pub limit: usize,
    /// Continue after this cursor.
    pub cursor: Option<Cursor>,
}

impl Default for TaskFilter {
    fn default() -> Self {
        Self {
            status: None,
            queue: None,
            limit: 100,
            cursor: None,
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; None on the last page.
    pub next_cursor: Option<Cursor>,
}

/// Task counts of one queue by status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// The queue.
    pub queue: String,
    /// Pending tasks (due or not).
    pub pending: u64,
    /// Running tasks.
    pub running: u64,
    /// Successful tasks.
    pub success: u64,
    /// Failed tasks.
    pub failed: u64,
    /// Cancelled tasks.
    pub cancelled: u64,
}

impl QueueCounts {
    /// The count for one status.
    pub fn get(&self, status: TaskStatus) -> u64 {
        match status {
            TaskStatus::Pending => self.pending,
            TaskStatus::Running => self.running,
            TaskStatus::Success => self.success,
            TaskStatus::Failed => self.failed,
            TaskStatus::Cancelled => self.cancelled,
        }
    }

    /// The count for one status, to change in place: a backend that keeps counts
    /// beside its tasks moves a task from one status to another with two of these.
    ///
    /// ```
    /// use omniq_core::{QueueCounts, TaskStatus};
    ///
    /// let mut counts = QueueCounts { queue: "mail".into(), pending: 2, ..QueueCounts::default() };
    /// // A claim moves one task from Pending to Running.
    /// *counts.get_mut(TaskStatus::Pending) -= 1;
    /// *counts.get_mut(TaskStatus::Running) += 1;
    /// assert_eq!((counts.pending, counts.running, counts.total()), (1, 1, 2));
    /// ```
    pub fn get_mut(&mut self, status: TaskStatus) -> &mut u64 {
        match status {
            TaskStatus::Pending => &mut self.pending,
            TaskStatus::Running => &mut self.running,
            TaskStatus::Success => &mut self.success,
            TaskStatus::Failed => &mut self.failed,
            TaskStatus::Cancelled => &mut self.cancelled,
        }
    }

    /// Adds `n` to one status.
    pub fn add(&mut self, status: TaskStatus, n: u64) {
        *self.get_mut(status) += n;
    }

    /// All statuses added up.
    pub fn total(&self) -> u64 {
        self.pending + self.running + self.success + self.failed + self.cancelled
    }
}

/// What a backend can do. Conformance cases that need a capability are reported
/// `skipped: requires X` when it is false.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// At most one live task per (queue, unique_key).
    pub unique_keys: bool,
    /// [`Storage::subscribe`] delivers wake-ups, so waiters need not poll.
    pub push_wakeup: bool,
    /// A batch enqueue is all-or-nothing.
    pub transactional_enqueue: bool,
    /// Several processes may share one instance safely.
    pub multi_process: bool,
    /// Largest batch the runtime sends in one call; it splits larger ones. A backend
    /// handed a larger batch anyway applies it whole or rejects it with a `Config`
    /// error (see "Batch size" in [`Storage`]'s rules).
    pub max_batch: usize,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            unique_keys: false,
            push_wakeup: false,
            transactional_enqueue: false,
            multi_process: false,
            max_batch: 1000,
        }
    }
}

/// A hint that something changed, delivered by backends that can push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// Work may be available on this queue.
    Work {
        /// The queue.
        queue: String,
    },
    /// This task's run finished (a result may be available, or it is pending retry).
    Finished {
        /// The task.
        task_id: TaskId,
    },
}

/// The storage contract. Implement this (and only this) to add a backend, then prove it
/// with the conformance suite (`omniq_conformance::run`).
///
/// Each method's `# Behavior` section is the contract; every rule the conformance suite
/// checks is written in one of them, and the `(case: …)` notes name the cases that pin a
/// rule, so a failing case leads back to its sentence.
///
/// # Rules for every method
///
/// - **Time is passed in.** Every due / expiry decision uses the `now` of the request
///   (the runtime's clock), never the backend's wall clock. Only result-TTL bookkeeping
///   ([`Storage::get_result`], expiry sweeps) may read the wall clock.
/// - **Comparisons are inclusive on the due side**: a task is due when `eta <= now`, a
///   lease has expired when `until <= now` (case: `boundaries_are_inclusive`).
/// - **`updated_at` is the time of the last change**: every write that changes a task
///   sets its `updated_at` to that request's `now` — `claim` (also when it ends a flagged
///   task whose lease expired), `complete`, `fail`, `release`, `reschedule`, and `cancel`
///   whether it cancels the task or flags it. `enqueue` stores the value given;
///   `heartbeat` reads no clock and leaves it unchanged. [`Storage::purge_results`] ages
///   finished tasks by it (cases: `claim_sets_updated_at_and_last_attempt_at`,
///   `complete_sets_updated_at`, `fail_sets_updated_at`, `release_sets_updated_at`,
///   `reschedule_updates_eta`, `cancel_sets_updated_at`,
///   `expired_lease_of_cancel_requested_task_is_not_redelivered`,
///   `heartbeat_extends_an_expired_lease_not_yet_reclaimed`).
/// - **Timestamps round-trip** at least to the microsecond; the suite only uses whole
///   seconds, so a backend storing microseconds passes.
/// - **After [`Storage::close`]** every method fails with [`StorageErrorKind::Closed`],
///   whatever its arguments (an invalid queue name included), except `close` itself,
///   which returns `Ok` again, and the infallible `backend_name`, `capabilities` and
///   `subscribe`, which answer as before (cases: `close_fails_every_operation`,
///   `close_twice_is_ok`, `subscribe_after_close_still_returns_a_receiver`).
/// - **Invalid names**: a queue name that fails [`validate_name`] in `enqueue`, `claim`,
///   `next_due`, `list_tasks` or `counts` is a [`StorageErrorKind::Config`] error, and
///   nothing is written (cases: `invalid_queue_name_is_config_error`,
///   `next_due_rejects_invalid_queue_names`,
///   `list_tasks_and_counts_reject_invalid_queue_names`).
/// - **Batch size**: the runtime never sends more than [`Capabilities::max_batch`] items
///   in one call; it splits. A backend handed a larger batch anyway either applies it
///   whole, as one call (splitting it internally, still all-or-nothing with
///   `transactional_enqueue`), or rejects it with a [`StorageErrorKind::Config`] error
///   and writes nothing (case: `enqueue_over_max_batch_is_whole_or_config`).
/// - **Failures are kinds**: a read or write that fails for any reason other than the
///   contract's own answers (missing id, stale token) is an `Err` whose kind is *not*
///   `NotFound` — `Unavailable` when retrying may help, else `Backend` or
///   `Serialization` (cases: `get_task_raises_storage_error_on_failure`,
///   `reschedule_raises_storage_error_on_failure`).
/// - **Fencing**: a lease write (`heartbeat`, `start`, `complete`, `fail`, `release`) applies only
///   while the task is Running under exactly the presented token; otherwise that item is
///   [`Outcome::LeaseLost`] (the task exists) or [`Outcome::NotFound`] (it does not) and
///   nothing about it changes. Items are independent: one stale item never fails the batch.
///   A batch naming one task twice applies its items in order, as separate calls would.
/// - **Round trips**: every field of a [`Task`] comes back from `get_task`, `claim` and
///   `list_tasks` as it was stored — intervals and timeouts to the microsecond, the
///   [`TaskError`] with its context, a cron schedule's expression and zone, old records
///   decoded by the serializer included (cases: `interval_round_trips`,
///   `cron_schedule_round_trips`, `old_records_with_int_interval_still_work`,
///   `old_records_without_error_still_work`, `task_error_context_persisted`).
/// - **Namespaces**: every instance works in a namespace of its own (a table prefix,
///   schema, key prefix, directory); two namespaces on one server or file never see each
///   other's tasks, results, counts or wake-ups (case: `namespaces_are_isolated`).
///
/// # What the runtime relies on
///
/// The suite also runs a real worker pool over the backend. A backend that follows the
/// rules above passes these without anything more; when one fails, the rule it broke is
/// usually in [`Storage::fail`] (retries and their etas), [`Storage::complete`] (interval
/// runs) or [`Storage::subscribe`] / [`Storage::next_due`] (waits):
/// `retry_logic_works_with_backend`, `retryable_failure_is_pending_with_later_eta`,
/// `task_backoff_overrides_the_workers` (a task's own back-off round-trips),
/// `non_retryable_error_stops_at_once`, `retries_exhaust_into_failed`,
/// `interval_tasks_reschedule_without_drift`, `worker_creates_task_error_on_exceptions`,
/// `both_worker_interfaces_process_tasks`, `get_result_waits_for_completion`; and for
/// cron schedules (a cron task is stored like any other; the runtime computes its slots
/// and hands each over as `next_run` / `NextRun`, and the task is Pending at its eta in
/// between): `cron_task_runs_each_slot_under_one_id`,
/// `cron_after_downtime_runs_once_then_resumes_on_schedule`,
/// `cron_follows_daylight_saving_time`, `cron_retries_do_not_shift_the_series`,
/// `cancel_ends_a_cron_series`, `two_pools_never_fire_one_cron_slot_twice`.
#[async_trait]
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// The backend's short name (`sqlite`, `postgres`, …), used in errors and reports.
    fn backend_name(&self) -> &'static str;

    /// What this backend supports; constant for the instance's life.
    fn capabilities(&self) -> Capabilities;

    /// Persist a batch of tasks.
    ///
    /// # Behavior
    /// - Tasks are stored as given — id, status, schedule, attempts, error, timestamps,
    ///   unique key, back-off — except that a `Running` input is stored Pending (a task is
    ///   only Running under a lease) and is claimable like any Pending task. Returns one
    ///   [`Enqueued`] per input, in input order (cases: `batch_enqueue_returns_ids_in_order`,
    ///   `get_task_returns_stored_task`, `enqueue_running_input_is_stored_pending`).
    /// - With `transactional_enqueue`, the batch is all-or-nothing: if any task is
    ///   rejected (invalid queue name → `Config`), none is stored
    ///   (case: `batch_enqueue_is_all_or_nothing`).
    /// - A task is claimable once its eta — or, without an eta, its `created_at` — is
    ///   `<= now` (cases: `eta_is_respected`, `created_at_without_eta_gates_claim`).
    /// - With `unique_keys`: a Pending (or Running) input whose (queue, unique_key) matches
    ///   a live (Pending or Running) task is not inserted; its [`Enqueued`] carries the
    ///   live task's id and `duplicate: true`. Duplicates inside one batch resolve to the
    ///   first. Once the holder is Success, Failed or Cancelled, the key is free again
    ///   (cases: `unique_key_duplicate_returns_existing_id`,
    ///   `unique_key_is_free_after_task_finishes`).
    /// - An input whose status is Success, Failed or Cancelled is stored as given: it is
    ///   never checked against a live holder of its key, and holds no key itself (case:
    ///   `unique_key_ignores_finished_inputs`).
    /// - A task whose **id** already exists, or was stored earlier in the same batch, is
    ///   a `Conflict` error (and, with `transactional_enqueue`, nothing of the batch is
    ///   stored): enqueue never overwrites a task (cases: `enqueue_existing_id_is_conflict`,
    ///   `enqueue_same_id_twice_in_a_batch_is_conflict`).
    /// - After commit, sends [`Wake::Work`] for each queue that received a new task (case:
    ///   `subscribe_wakes_on_enqueue`).
    /// - The returned future writes nothing before it is first polled: a caller may create
    ///   the next batch's future while the previous batch is in flight, and drops it
    ///   unpolled if that batch failed (the runtime's `enqueue_many` does both). An
    ///   implementation may therefore check and encode the batch when the future is
    ///   created, so that work overlaps the previous batch's round trip.
    async fn enqueue(&self, tasks: Vec<Task>) -> Result<Vec<Enqueued>, StorageError>;

    /// Atomically claim up to `limit` due tasks from `queues`.
    ///
    /// # Behavior
    /// - Due = Pending with eta `<= now`, or Running with a lease `until <= now` (an
    ///   expired lease is redelivered) (cases: `eta_is_respected`,
    ///   `lease_expiry_redelivers`, `live_lease_is_not_redelivered`).
    /// - **Except** a Running task whose cancellation was requested
    ///   ([`Storage::cancel`] returned `Requested`): when its lease expires it is not
    ///   redelivered but ends Cancelled (`updated_at = now`), with a Cancelled
    ///   [`TaskResult`] (no payload, the task's last error, `finished_at = now`, the
    ///   expired run's attempts), and [`Wake::Finished`] is sent (cases:
    ///   `expired_lease_of_cancel_requested_task_is_not_redelivered`,
    ///   `wake_on_claim_ending_cancel_requested_lease`).
    /// - Order: highest priority first, then earliest eta (`created_at` without one), then
    ///   enqueue order; across several queues the order is global
    ///   (cases: `claim_orders_priority_then_eta_then_fifo`, `claim_from_several_queues`).
    ///   Enqueue order is the task's original enqueue: going back to Pending (retry,
    ///   release, reschedule, interval re-arm, an expired lease) does not move it behind
    ///   tasks enqueued later (case: `claim_order_keeps_enqueue_order_after_requeue`).
    /// - Each claimed task becomes Running, `attempts += 1`, `last_attempt_at = now`,
    ///   `updated_at = now`, with a token greater than any earlier token of that task and
    ///   `until = now + lease`; the returned [`Claimed::task`] shows these values
    ///   (case: `claim_sets_updated_at_and_last_attempt_at`).
    /// - No task is returned to two callers under live leases, however many claim
    ///   concurrently, from one instance or several (case:
    ///   `atomic_claim_under_concurrent_claimers`).
    /// - Returns at most `limit` tasks; `limit: 0` or an empty `queues` returns none
    ///   (case: `claim_from_several_queues`). Duplicate queue names count once: a call
    ///   returns each task at most once, under one token (case:
    ///   `claim_with_duplicate_queue_names_returns_each_task_once`).
    /// - A due task whose stored record no longer decodes (corrupted outside the backend)
    ///   never fails the call and never blocks the tasks behind it: it ends Failed with a
    ///   non-retryable [`crate::ErrorType::Decode`] TaskError and a Failed result, and the
    ///   claim goes on with the next task. The suite cannot write garbage into your
    ///   storage, so no case checks this; `cargo xtask chaos` does for the backends in
    ///   this repository.
    async fn claim(&self, req: ClaimRequest) -> Result<Vec<Claimed>, StorageError>;

    /// The earliest instant at which a claim on `queues` could return a task: the
    /// smallest eta (`created_at` without one) of their Pending tasks and `until` of their
    /// Running tasks' leases. The runtime sleeps until then instead of polling.
    ///
    /// # Behavior
    /// - `None` when the queues hold no Pending or Running task; finished tasks never
    ///   count. The instant may be in the past (work is due now).
    /// - Must not scan a whole queue: answer from an index (or equivalent) ordered by eta
    ///   and by lease expiry (case: `next_due_reports_earliest_eta_and_lease_expiry`).
    /// - An invalid queue name is a `Config` error, as everywhere (case:
    ///   `next_due_rejects_invalid_queue_names`).
    /// - It is a hint: it may lag work another process added since this instance last
    ///   looked (a backend that lists lazily may answer from a listing up to its refresh
    ///   interval old). An answer that is too late costs latency, never correctness, and
    ///   work enqueued through this instance, or announced by a [`Wake`], is seen at once.
    /// - It may run beside a `claim` of the same worker: a worker with push wake-ups asks
    ///   it in a task of its own while it listens for hints, and when one arrives it claims
    ///   at once and leaves the query to finish unobserved (never more than one in flight
    ///   per worker). A claim may therefore start while it runs; neither may wait for
    ///   the other to finish.
    async fn next_due(&self, queues: &[String]) -> Result<Option<OffsetDateTime>, StorageError>;

    /// Extend leases to `until`.
    ///
    /// # Behavior
    /// - Per item: `Ok` (extended), `CancelRequested` (extended, and the task was asked to
    ///   stop), `LeaseLost` or `NotFound` (see the fencing rule)
    ///   (cases: `heartbeat_extends_lease`, `fenced_heartbeat_ignores_stale_worker`,
    ///   `heartbeat_reports_not_found_for_missing_task`).
    /// - Reads no clock: `until` (the runtime's `now + lease`) is stored as given, and the
    ///   task's `updated_at` is left unchanged. A lease that already ran out but was not
    ///   re-claimed still has the current token, so it is extended: nobody else holds the
    ///   task (case: `heartbeat_extends_an_expired_lease_not_yet_reclaimed`).
    async fn heartbeat(
        &self,
        leases: &[LeaseRef],
        until: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError>;

    /// Record that the handlers of these claims are starting.
    ///
    /// The runtime calls this just before it runs a handler for a task that was claimed
    /// before (a retry or a redelivery), and stops a task whose recorded starts reach its
    /// limit: claims that never started a handler — taken by a worker that died before
    /// running them — then cost nothing.
    ///
    /// # Behavior
    /// - Per item, under the fencing rule: the task's `runs` grows by one; nothing else
    ///   changes (status, lease, `attempts` and `updated_at` stay as they are). `Ok`, or
    ///   `LeaseLost` / `NotFound` (case: `start_counts_runs_under_the_fencing_rule`).
    /// - `runs` is stored as given by `enqueue` and comes back from `get_task`, `claim`
    ///   and `list_tasks`. `claim`, `heartbeat`, `release` and `fail` with `Retry` or
    ///   `Defer` keep it; it goes back to 0, with `attempts`, when a recurring task moves
    ///   to its next slot (`complete` with `next_run`, `fail` with `NextRun`), and on
    ///   `reschedule`, which gives a task brought back by hand a fresh allowance (case:
    ///   `runs_start_over_with_each_series_and_on_reschedule`).
    async fn start(&self, leases: &[LeaseRef]) -> Result<Vec<Outcome>, StorageError>;

    /// Record successful runs.
    ///
    /// # Behavior
    /// - Per item, under the fencing rule: store the run's [`TaskResult`] (status
    ///   Success, the payload, no error, `finished_at = now`, the task's attempts and
    ///   `last_attempt_at`) as the task's latest result, replacing an earlier one; clear
    ///   the task's error and set its `updated_at = now` (case: `complete_sets_updated_at`);
    ///   then
    ///   - without `next_run`: the task is Success;
    ///   - with `next_run` (an interval task): the task is Pending at eta `next_run` with
    ///     attempts reset to 0, keeping its id — unless its cancellation was requested,
    ///     which ends the series: the task is Success and never claimed again.
    ///
    ///   (cases: `task_lifecycle_enqueue_claim_complete`, `complete_clears_task_error`,
    ///   `interval_completion_reschedules_next_run`,
    ///   `complete_next_run_on_cancel_requested_ends_series`,
    ///   `fenced_complete_ignores_stale_worker`, `batch_complete_reports_per_item_outcomes`).
    /// - After commit, sends [`Wake::Finished`] per applied item, and [`Wake::Work`] for
    ///   the queue of each task that went back to Pending (cases:
    ///   `subscribe_wakes_on_finish`, `wake_on_interval_rearm`).
    async fn complete(&self, items: Vec<Completion>) -> Result<Vec<Outcome>, StorageError>;

    /// Record failed runs.
    ///
    /// # Behavior
    /// - Per item, under the fencing rule: store the error on the task and set its
    ///   `updated_at = now` (case: `fail_sets_updated_at`), then apply the [`FailAction`]:
    ///   - `Retry { at }`: Pending at eta `at`, attempts kept, no result stored (the
    ///     previous result, if any, stays);
    ///   - `NextRun { at }`: a Failed result carrying the error is stored, and the task is
    ///     Pending at `at` with attempts reset to 0;
    ///   - `Fail`: a Failed result carrying the error is stored and the task is Failed;
    ///   - `Defer { at }`: Pending at eta `at`, the claim's attempt not counted
    ///     (`attempts -= 1`, never below 0), no result stored (case:
    ///     `fail_defer_gives_back_the_attempt`).
    ///
    ///   (cases: `retry_fail_reschedules_with_attempts_kept`,
    ///   `interval_final_failure_moves_to_next_run`, `task_error_persisted_on_task_and_result`,
    ///   `task_error_context_persisted`, `task_error_retry_count_survives_retries`).
    /// - A task whose cancellation was requested ends Cancelled whatever the action, with
    ///   a Cancelled result carrying the error (case: `fail_on_cancel_requested_ends_cancelled`);
    ///   after `Defer` its attempt is still not counted, on the task and the result
    ///   (case: `fail_defer_gives_back_the_attempt`).
    /// - Stale items: see the fencing rule (cases: `fenced_fail_ignores_stale_worker`,
    ///   `batch_fail_reports_per_item_outcomes`).
    /// - After commit, sends [`Wake::Finished`] per applied item (also for a retry: waiters
    ///   re-check), and [`Wake::Work`] for the queue of each task that went back to Pending
    ///   — a retry sends both (case: `wake_on_release_and_retry`).
    async fn fail(&self, items: Vec<Failure>) -> Result<Vec<Outcome>, StorageError>;

    /// Hand back claims that never started (graceful shutdown).
    ///
    /// # Behavior
    /// - Per item, under the fencing rule: the task goes back to Pending, its lease is
    ///   cleared, the claim's attempt is not counted (`attempts -= 1`, never below 0),
    ///   `updated_at = now`, and its eta is unchanged — it was due when claimed, so it is
    ///   claimable again at once by anyone; the old token is fenced off
    ///   (cases: `release_hands_back_unstarted_claim`, `release_duplicate_items_apply_once`,
    ///   `release_sets_updated_at`).
    /// - A task whose cancellation was requested ends Cancelled instead of going back to
    ///   Pending: its lease is cleared, the claim's attempt is still not counted
    ///   (`attempts -= 1`), `updated_at = now`, and a Cancelled result (no payload, the
    ///   task's last error, `finished_at = now`, `attempts` = that reduced count) is stored
    ///   (cases: `release_of_cancel_requested_task_ends_cancelled`,
    ///   `release_of_cancel_requested_task_gives_back_its_attempt`).
    /// - After commit, sends [`Wake::Work`] for the queues of released tasks and
    ///   [`Wake::Finished`] for tasks that ended Cancelled (cases:
    ///   `wake_on_release_and_retry`, `wake_on_release_of_cancel_requested_task`).
    async fn release(
        &self,
        leases: &[LeaseRef],
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError>;

    /// The task with this id.
    ///
    /// # Behavior
    /// `Ok(None)` for an unknown id; `Err` (not `NotFound`) when the read fails
    /// (cases: `get_task_returns_stored_task`, `get_task_returns_none_for_missing_id`,
    /// `get_task_raises_storage_error_on_failure`).
    async fn get_task(&self, id: &TaskId) -> Result<Option<Task>, StorageError>;

    /// Move a task to `new_eta` (also how a Failed task is retried by hand).
    ///
    /// # Behavior
    /// - Sets `schedule.eta = new_eta`, status Pending, `runs = 0` and `updated_at = now`;
    ///   keeps attempts, the error and the latest result. A Running task loses its lease (its
    ///   worker's later writes are fenced off) (cases: `reschedule_updates_eta`,
    ///   `reschedule_sets_status_pending`, `reschedule_fences_running_task`,
    ///   `reschedule_keeps_attempts_and_error`).
    /// - With `unique_keys`, a Failed task brought back takes its key again; when another
    ///   live task holds that key now, the reschedule is a `Conflict` error and the task is
    ///   left unchanged (case: `reschedule_into_a_held_unique_key_is_conflict`).
    /// - Clears a pending cancel request: an explicit reschedule supersedes it
    ///   (case: `reschedule_clears_cancel_request`).
    /// - `NotFound` error for an unknown id; `Conflict` error for a Success or Cancelled
    ///   task, which is left unchanged (cases: `reschedule_missing_task_is_not_found`,
    ///   `reschedule_finished_task_is_conflict`).
    /// - After commit, sends [`Wake::Work`] for the task's queue (case: `wake_on_reschedule`).
    async fn reschedule(
        &self,
        id: &TaskId,
        new_eta: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StorageError>;

    /// The latest finished run's result.
    ///
    /// # Behavior
    /// - `Ok(None)` for an unknown id, when no run has finished, when the result was
    ///   purged, and once it is older than the backend's result TTL (`finished_at < wall
    ///   clock − ttl`; a result exactly at the edge is still returned) (cases:
    ///   `get_result_is_none_until_run_finishes`, `purge_results_removes_old_results`).
    /// - A retry stores no result, so while a retry is pending this is the previous
    ///   finished run's result (or None).
    /// - The result TTL is the backend's setting (none: results live until purged). The
    ///   suite cannot set it, so the TTL edge is the backend's own test to check; the
    ///   instances a conformance factory hands out must keep results at least a day.
    async fn get_result(&self, id: &TaskId) -> Result<Option<TaskResult>, StorageError>;

    /// Cancel a task.
    ///
    /// # Behavior
    /// - Pending or Failed → Cancelled at once, storing a Cancelled result (no payload, the
    ///   task's last error, `finished_at = now`, the task's attempts and
    ///   `last_attempt_at`) that replaces an earlier one (a Failed run's, an interval
    ///   task's last run's); returns `Cancelled` (cases: `cancel_pending_task`,
    ///   `cancel_failed_task`, `cancel_replaces_earlier_result`).
    /// - Running under a live lease → flagged, returns `Requested`: heartbeats answer
    ///   `CancelRequested`, and the run's outcome ends the task (see `complete`, `fail`,
    ///   `release`, and `claim` for an expired lease) (case: `cancel_running_task_is_requested`).
    /// - Running under an expired lease (`until <= now`: its worker is gone) → Cancelled
    ///   at once, as for Pending (case: `cancel_of_running_task_with_expired_lease_is_cancelled`).
    /// - Whether it cancels or flags, the task's `updated_at = now` (case:
    ///   `cancel_sets_updated_at`).
    /// - Success or Cancelled → `AlreadyFinished(status)`, nothing changes
    ///   (case: `cancel_finished_task_reports_already_finished`).
    /// - Unknown id → `NotFound` error (case: `cancel_missing_task_is_not_found`).
    /// - When the task ended Cancelled, sends [`Wake::Finished`] (case: `wake_on_cancel`).
    async fn cancel(&self, id: &TaskId, now: OffsetDateTime)
    -> Result<CancelOutcome, StorageError>;

    /// List tasks, filtered, one page at a time.
    ///
    /// # Behavior
    /// - Pages are in ascending task-id order (the UUID's byte order; for the default v7
    ///   ids that is creation order), filtered by status and/or queue, at most `limit`
    ///   items; passing `next_cursor` returns the items after that id, with no duplicates
    ///   or gaps (case: `list_tasks_filters_and_paginates`).
    /// - `next_cursor` is `Some(id of the page's last item)` exactly when at least one
    ///   more item matches, and `None` otherwise — also after a full page that happens to
    ///   be the last (look one item ahead) (case:
    ///   `list_tasks_cursor_is_none_exactly_on_the_last_page`).
    /// - `limit: 0` returns an empty page with no cursor (case:
    ///   `list_tasks_limit_zero_is_an_empty_last_page`); an unknown queue returns an
    ///   empty page (case: `list_tasks_filters_and_paginates`).
    /// - It is an operator's call, not a hot path: it may cost time linear in the number
    ///   of stored tasks (an object store without secondary indexes reads them all).
    async fn list_tasks(&self, filter: TaskFilter) -> Result<Page<Task>, StorageError>;

    /// Task counts by status, for one queue or for every queue.
    ///
    /// # Behavior
    /// - `Some(queue)`: exactly one entry for that queue, all zeros when it has no tasks
    ///   (case: `counts_of_an_empty_queue_is_one_zero_entry`).
    /// - `None`: one entry per queue that holds at least one task now — not a queue whose
    ///   tasks were all purged — sorted by queue name (case:
    ///   `counts_lists_only_queues_with_tasks`).
    /// - Counts reflect stored statuses (a Running task whose lease expired still counts
    ///   as Running until a claim on its queue takes it up) (case:
    ///   `counts_by_queue_and_status`).
    /// - Like `list_tasks`, it may cost time linear in the number of stored tasks.
    async fn counts(&self, queue: Option<&str>) -> Result<Vec<QueueCounts>, StorageError>;

    /// Remove old results and the finished tasks they belong to.
    ///
    /// # Behavior
    /// - Deletes every result with `finished_at < older_than` (strictly: a result finished
    ///   exactly at the cutoff stays) and every Success, Failed or Cancelled task whose
    ///   `updated_at < older_than`; returns how many **results** were removed. Pending and
    ///   Running tasks are never removed, whatever their age (cases:
    ///   `purge_results_removes_old_results`, `boundaries_are_inclusive`).
    /// - A finished task that has no result row (one enqueued already finished, as a
    ///   migration from another backend writes them) is removed by its `updated_at` too
    ///   (case: `purge_removes_finished_tasks_without_results`).
    ///   A backend that finds finished tasks through their results (so a completion adds
    ///   no entry to an index of finished tasks) must keep the result's `finished_at`
    ///   equal to the task's `updated_at` on every finish, and find the tasks that can lack
    ///   a result some other way.
    async fn purge_results(&self, older_than: OffsetDateTime) -> Result<u64, StorageError>;

    /// Flush and release resources.
    ///
    /// # Behavior
    /// Every other call after `close` fails with a `Closed` error, whatever its
    /// arguments — except `subscribe` (and the two getters), which cannot fail; `close`
    /// itself is idempotent: a second call returns `Ok` (cases:
    /// `close_makes_later_calls_fail_closed`, `close_fails_every_operation`,
    /// `close_twice_is_ok`, `subscribe_after_close_still_returns_a_receiver`).
    async fn close(&self) -> Result<(), StorageError>;

    /// A stream of wake-up hints, when `push_wakeup` is true (`None` otherwise).
    ///
    /// # Behavior
    /// - `Some` exactly when `push_wakeup` is true, for the instance's whole life — also
    ///   after `close`, when the receiver simply sees no new hints (case:
    ///   `subscribe_after_close_still_returns_a_receiver`).
    /// - Each call returns a new receiver that sees hints sent after it was created.
    /// - [`Wake::Work`] after a committed enqueue, retry, release, reschedule or interval
    ///   re-arm puts a task on a queue; [`Wake::Finished`] after a run's outcome is stored
    ///   (`complete`, `fail` — a retry included), after `release` or `claim` ends a flagged
    ///   task, and after `cancel` ends a task (cases: `subscribe_wakes_on_enqueue`,
    ///   `subscribe_wakes_on_finish`, `wake_on_release_and_retry`, `wake_on_interval_rearm`,
    ///   `wake_on_reschedule`, `wake_on_cancel`, `wake_on_release_of_cancel_requested_task`,
    ///   `wake_on_claim_ending_cancel_requested_lease`).
    /// - Hints may be lost, merged or repeated; they only shorten waits, and correctness
    ///   never depends on them. A backend shared by several processes should deliver
    ///   other processes' hints too where it can (e.g. Postgres NOTIFY).
    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<Wake>>;
}

/// Single-item conveniences over [`Storage`]; implemented for every storage.
///
/// Where a batch call answers a per-item [`Outcome`], these turn the one item's outcome
/// into an error of the matching kind: a stale token is [`StorageErrorKind::LeaseLost`],
/// a missing task [`StorageErrorKind::NotFound`].
#[async_trait]
pub trait StorageExt: Storage {
    /// Enqueue one task.
    async fn enqueue_one(&self, task: Task) -> Result<Enqueued, StorageError> {
        let backend = self.backend_name();
        self.enqueue(vec![task]).await?.pop().ok_or_else(|| {
            StorageError::new(
                StorageErrorKind::Backend,
                backend,
                "enqueue returned no outcome",
            )
            .with_operation("enqueue")
        })
    }

    /// Extend one lease; `Ok(true)` when cancellation was requested.
    async fn heartbeat_one(
        &self,
        lease: LeaseRef,
        until: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        let outcome = self.heartbeat(&[lease], until).await?.pop();
        single(self.backend_name(), "heartbeat", &lease, outcome)
    }

    /// Complete one lease.
    async fn complete_one(&self, item: Completion) -> Result<(), StorageError> {
        let lease = item.lease;
        let outcome = self.complete(vec![item]).await?.pop();
        single(self.backend_name(), "complete", &lease, outcome).map(drop)
    }

    /// Fail one lease.
    async fn fail_one(&self, item: Failure) -> Result<(), StorageError> {
        let lease = item.lease;
        let outcome = self.fail(vec![item]).await?.pop();
        single(self.backend_name(), "fail", &lease, outcome).map(drop)
    }

    /// Release one lease.
    async fn release_one(&self, lease: LeaseRef, now: OffsetDateTime) -> Result<(), StorageError> {
        let outcome = self.release(&[lease], now).await?.pop();
        single(self.backend_name(), "release", &lease, outcome).map(drop)
    }
}

impl<S: Storage + ?Sized> StorageExt for S {}

/// One item's outcome as a result: `Ok(cancel_requested)` or an error of the matching kind.
fn single(
    backend: &'static str,
    op: &'static str,
    lease: &LeaseRef,
    outcome: Option<Outcome>,
) -> Result<bool, StorageError> {
    let err = |kind, msg: String| Err(StorageError::new(kind, backend, msg).with_operation(op));
    match outcome {
        Some(Outcome::Ok) => Ok(false),
        Some(Outcome::CancelRequested) => Ok(true),
        Some(Outcome::LeaseLost) => err(
            StorageErrorKind::LeaseLost,
            format!(
                "task {} is no longer held under token {}",
                lease.task_id, lease.token
            ),
        ),
        Some(Outcome::NotFound) => err(
            StorageErrorKind::NotFound,
            format!("task {} not found", lease.task_id),
        ),
        None => err(
            StorageErrorKind::Backend,
            format!("{op} returned no outcome"),
        ),
    }
}

/// Checks a queue or namespace name: 1–64 chars of `[A-Za-z0-9_.-]`.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {what} {name:?}: use 1-64 characters from A-Z, a-z, 0-9, '_', '-', '.'"
        ))
    }
}
