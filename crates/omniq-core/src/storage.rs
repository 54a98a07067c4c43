//! The storage contract (T1–T15) every backend implements.
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

use crate::{StorageError, Task, TaskError, TaskId, TaskResult, TaskStatus};
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

/// What to claim (T2).
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

/// The result of enqueueing one task (T1).
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
    /// Heartbeat only: the lease was extended, and cancellation was requested (T9).
    CancelRequested,
}

/// A successful run to record (T4).
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
    /// Back to Pending at `at`, attempts kept (R2).
    Retry {
        /// The retry's eta.
        at: OffsetDateTime,
    },
    /// Interval task whose retries are exhausted: result stored as Failed for this run,
    /// back to Pending at the next slot with attempts reset (R5).
    NextRun {
        /// The next slot.
        at: OffsetDateTime,
    },
    /// Final failure: status Failed, result stored.
    Fail,
}

/// A failed run to record (T5).
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

/// The result of a cancel (T9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// A Pending (or Failed) task is now Cancelled.
    Cancelled,
    /// The task is Running; it was flagged and its worker will stop it.
    Requested,
    /// The task had already finished with this status; nothing changed.
    AlreadyFinished(TaskStatus),
}

/// A cursor for [`Storage::list_tasks`] pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub TaskId);

/// What to list (T10). Pages are ordered by task id (creation order for v7 ids).
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

/// Task counts of one queue by status (T10).
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

    /// Adds `n` to one status.
    pub fn add(&mut self, status: TaskStatus, n: u64) {
        let slot = match status {
            TaskStatus::Pending => &mut self.pending,
            TaskStatus::Running => &mut self.running,
            TaskStatus::Success => &mut self.success,
            TaskStatus::Failed => &mut self.failed,
            TaskStatus::Cancelled => &mut self.cancelled,
        };
        *slot += n;
    }

    /// All statuses added up.
    pub fn total(&self) -> u64 {
        self.pending + self.running + self.success + self.failed + self.cancelled
    }
}

/// What a backend can do (T13). Conformance cases that need a capability are reported
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
    /// Largest batch one call accepts; larger batches are the runtime's to split.
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

/// A hint that something changed, delivered by backends that can push (T13).
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
/// with `omniq_conformance::conformance_tests!`.
///
/// Every method's `# Behavior` section is the contract the conformance suite checks.
#[async_trait]
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// The backend's short name (`sqlite`, `postgres`, …), used in errors and reports.
    fn backend_name(&self) -> &'static str;

    /// What this backend supports.
    fn capabilities(&self) -> Capabilities;

    /// T1: persist a batch of tasks.
    ///
    /// # Behavior
    /// - One transaction/script per call when `transactional_enqueue`; ids are kept.
    /// - A task is claimable once its eta (or `created_at` without one) is `<= now`.
    /// - With `unique_keys`, a task whose (queue, unique_key) matches a live (Pending or
    ///   Running) task is not inserted: its [`Enqueued`] carries the existing id and
    ///   `duplicate: true`. Duplicates inside one batch resolve to the first.
    /// - Returns one [`Enqueued`] per input, in input order.
    async fn enqueue(&self, tasks: Vec<Task>) -> Result<Vec<Enqueued>, StorageError>;

    /// T2: atomically claim up to `limit` due tasks from `queues`.
    ///
    /// # Behavior
    /// - Due = Pending with eta `<= now`, or Running with `lease_until <= now` (an expired
    ///   lease is redelivered).
    /// - Order: highest priority, then earliest eta, then enqueue order.
    /// - Each claimed task becomes Running, `attempts += 1`, `last_attempt_at = now`,
    ///   `updated_at = now`, with a fresh token (greater than any earlier token for that
    ///   task) and `until = now + lease`.
    /// - No task is ever returned to two callers under live leases, however many claim
    ///   concurrently.
    async fn claim(&self, req: ClaimRequest) -> Result<Vec<Claimed>, StorageError>;

    /// T3: extend leases to `until`.
    ///
    /// # Behavior
    /// - Per item: `Ok` (extended), `CancelRequested` (extended, and the task was asked to
    ///   stop), `LeaseLost` (token not current; nothing changes) or `NotFound`.
    async fn heartbeat(
        &self,
        leases: &[LeaseRef],
        until: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError>;

    /// T4: record successful runs.
    ///
    /// # Behavior
    /// - Per item, only if the token is current: store the result (status Success,
    ///   `finished_at = now`) as the task's latest result, clear its error, then either set
    ///   the task Success or — with `next_run` and no pending cancel — set it Pending at
    ///   `next_run` with attempts reset to 0.
    /// - A stale token gives `LeaseLost` and changes nothing; others in the batch apply.
    async fn complete(&self, items: Vec<Completion>) -> Result<Vec<Outcome>, StorageError>;

    /// T5: record failed runs.
    ///
    /// # Behavior
    /// - Per item, only if the token is current: store the error on the task, then apply
    ///   the [`FailAction`]. `Retry` keeps attempts and stores no result; `NextRun` and
    ///   `Fail` store a Failed result carrying the error. A task whose cancellation was
    ///   requested ends Cancelled instead.
    /// - A stale token gives `LeaseLost` and changes nothing.
    async fn fail(&self, items: Vec<Failure>) -> Result<Vec<Outcome>, StorageError>;

    /// Hand back claims that never started (graceful shutdown, R6).
    ///
    /// # Behavior
    /// - Per item, only if the token is current: the task goes back to Pending, its lease
    ///   is cleared and the claim's attempt is not counted (`attempts -= 1`), so it is
    ///   claimable again at once by anyone.
    /// - A stale token gives `LeaseLost` and changes nothing.
    ///
    /// The default implementation only approximates this (it reschedules each task to
    /// `now`: attempts stay counted and tokens are not checked) and does not pass the
    /// conformance case `release_hands_back_unstarted_claim`; every backend should
    /// implement it.
    async fn release(
        &self,
        leases: &[LeaseRef],
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        let mut out = Vec::with_capacity(leases.len());
        for l in leases {
            out.push(match self.reschedule(&l.task_id, now).await {
                Ok(()) => Outcome::Ok,
                Err(e) if e.is_not_found() => Outcome::NotFound,
                Err(e) if e.kind() == crate::StorageErrorKind::Conflict => Outcome::LeaseLost,
                Err(e) => return Err(e),
            });
        }
        Ok(out)
    }

    /// T6: the task with this id.
    ///
    /// # Behavior
    /// `Ok(None)` for an unknown id; `Err(StorageError)` when the read fails.
    async fn get_task(&self, id: &TaskId) -> Result<Option<Task>, StorageError>;

    /// T7: move a task to `new_eta`.
    ///
    /// # Behavior
    /// - Sets `schedule.eta`, status Pending and `updated_at`; keeps attempts. A Running
    ///   task loses its lease (its worker's later writes are fenced off).
    /// - `NotFound` for an unknown id; `Conflict` for a Success or Cancelled task (M2).
    async fn reschedule(&self, id: &TaskId, new_eta: OffsetDateTime) -> Result<(), StorageError>;

    /// T8: the latest finished run's result.
    ///
    /// # Behavior
    /// `Ok(None)` when no run has finished (or the result expired or was purged).
    async fn get_result(&self, id: &TaskId) -> Result<Option<TaskResult>, StorageError>;

    /// T9: cancel a task.
    ///
    /// # Behavior
    /// Pending/Failed → Cancelled; Running → flagged (`Requested`, heartbeat reports
    /// `CancelRequested`, the interval series ends); finished → `AlreadyFinished`;
    /// unknown id → `NotFound` error.
    async fn cancel(&self, id: &TaskId, now: OffsetDateTime)
    -> Result<CancelOutcome, StorageError>;

    /// T10: list tasks in id order, filtered, one page at a time.
    async fn list_tasks(&self, filter: TaskFilter) -> Result<Page<Task>, StorageError>;

    /// T10: counts by status for one queue, or for every queue.
    async fn counts(&self, queue: Option<&str>) -> Result<Vec<QueueCounts>, StorageError>;

    /// T11: remove results that finished before `older_than` (and finished tasks with
    /// them); returns how many results were removed.
    async fn purge_results(&self, older_than: OffsetDateTime) -> Result<u64, StorageError>;

    /// T12: flush and release resources.
    ///
    /// # Behavior
    /// Every other call after `close` fails with a `Closed` error; `close` itself is
    /// idempotent (a second call returns `Ok`).
    async fn close(&self) -> Result<(), StorageError>;

    /// T13: a stream of wake-up hints, when `push_wakeup` is true. Hints may be lost or
    /// repeated; they only shorten waits, correctness never depends on them.
    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<Wake>> {
        None
    }
}

/// Single-item conveniences over [`Storage`]; implemented for every storage.
#[async_trait]
pub trait StorageExt: Storage {
    /// Enqueue one task.
    async fn enqueue_one(&self, task: Task) -> Result<Enqueued, StorageError> {
        let backend = self.backend_name();
        self.enqueue(vec![task]).await?.pop().ok_or_else(|| {
            StorageError::new(
                crate::StorageErrorKind::Backend,
                backend,
                "enqueue returned no outcome",
            )
        })
    }

    /// Complete one lease.
    async fn complete_one(&self, item: Completion) -> Result<Outcome, StorageError> {
        Ok(self
            .complete(vec![item])
            .await?
            .pop()
            .unwrap_or(Outcome::NotFound))
    }

    /// Fail one lease.
    async fn fail_one(&self, item: Failure) -> Result<Outcome, StorageError> {
        Ok(self
            .fail(vec![item])
            .await?
            .pop()
            .unwrap_or(Outcome::NotFound))
    }
}

impl<S: Storage + ?Sized> StorageExt for S {}

/// Checks a queue or namespace name (S5): 1–64 chars of `[A-Za-z0-9_.-]`.
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
