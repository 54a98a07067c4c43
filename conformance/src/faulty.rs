//! Deliberately faulty backends: the suite's self-test.
//!
//! A conformance suite that cannot fail proves nothing. Each wrapper here sits around a
//! correct inner [`Storage`] and breaks exactly one rule; the suite's self-test
//! (`conformance/selftest/tests/faulty.rs`) runs the suite against each wrapper and
//! checks that exactly the cases aimed at that rule **fail** (for [`ClaimsTwice`] and
//! [`IgnoresEta`], which break what nearly every case relies on: at least those), and
//! that the same cases pass on the unwrapped storage.
//!
//! | wrapper | breaks | caught by |
//! |---|---|---|
//! | [`ClaimsTwice`] | a claim re-returns tasks already handed out under a live lease | [`ClaimsTwice::TARGETS`] |
//! | [`IgnoresEta`] | claims as if every eta had passed | [`IgnoresEta::TARGETS`] |
//! | [`DropsErrorContext`] | stores failures without `TaskError::context` | [`DropsErrorContext::TARGETS`] |
//! | [`IgnoresFencing`] | reports stale-token writes as applied | [`IgnoresFencing::TARGETS`] |
//! | [`ClaimsDuplicateQueuesTwice`] | a claim naming a queue twice returns its tasks twice | [`ClaimsDuplicateQueuesTwice::TARGETS`] |
//! | [`MissesWakeUps`] | wakes only after enqueue and complete / fail | [`MissesWakeUps::TARGETS`] |
//! | [`SkipsUpdatedAt`] | complete, fail, release and cancel leave `updated_at` alone | [`SkipsUpdatedAt::TARGETS`] |
//! | [`ForgetsRuns`] | `start` answers `Ok` and records no run | [`ForgetsRuns::TARGETS`] |
//! | [`LooseCursor`] | a full last page still carries a cursor | [`LooseCursor::TARGETS`] |
//! | [`WrongCountsShape`] | no entry for an empty queue; emptied queues still listed | [`WrongCountsShape::TARGETS`] |
//! | [`AcceptsInvalidNamesInReads`] | `next_due`, `list_tasks`, `counts` accept invalid queue names | [`AcceptsInvalidNamesInReads::TARGETS`] |
//!
//! ```
//! use omniq_conformance::faulty::{FAULTS, FaultyFactory};
//! assert!(FAULTS.iter().all(|f| !f.targets.is_empty()));
//! # let _ = FaultyFactory::<omniq_conformance::faulty::NoFactory>::new;
//! ```
//!
//! These wrappers are for testing the suite only; never use them as storage.

use crate::StorageFactory;
use crate::wrap::{Hooks, Wrapped};
use async_trait::async_trait;
use omniq_core::broadcast;
use omniq_core::{
    CancelOutcome, Capabilities, ClaimRequest, Claimed, Completion, Cursor, Enqueued, Failure,
    LeaseRef, Outcome, Page, QueueCounts, Storage, StorageError, StorageErrorKind, Task,
    TaskFilter, TaskId, Wake,
};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use time::{Duration, OffsetDateTime};

/// Adds `wrap` to a faulty wrapper: the wrapper as a [`Storage`] (through [`Wrapped`]).
macro_rules! faulty_storage {
    ($ty:ident) => {
        impl $ty {
            /// Wraps `inner`.
            pub fn wrap(inner: Arc<dyn Storage>) -> Arc<dyn Storage> {
                Arc::new(Wrapped(Self::new(inner)))
            }
        }
    };
}

/// Breaks atomic claims: every task a claim hands out is handed out once more by a later claim,
/// as if leases did not exist.
#[derive(Debug)]
pub struct ClaimsTwice {
    inner: Arc<dyn Storage>,
    handed_out: Mutex<VecDeque<Claimed>>,
}

impl ClaimsTwice {
    /// The cases that must fail against this wrapper.
    pub const TARGETS: &'static [&'static str] = &[
        "atomic_claim_under_concurrent_claimers",
        "live_lease_is_not_redelivered",
    ];

    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self {
            inner,
            handed_out: Mutex::default(),
        }
    }
}

#[async_trait]
impl Hooks for ClaimsTwice {
    fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }

    async fn on_claim(&self, req: ClaimRequest) -> Result<Vec<Claimed>, StorageError> {
        let mut got = self.inner.claim(req.clone()).await?;
        let again: Vec<Claimed> = {
            let mut handed_out = self.handed_out.lock().unwrap_or_else(|p| p.into_inner());
            let again = handed_out
                .drain(..)
                .filter(|c| req.queues.contains(&c.task.queue))
                .collect();
            handed_out.extend(got.iter().cloned());
            again
        };
        got.extend(again);
        Ok(got)
    }
}

faulty_storage!(ClaimsTwice);

/// Breaks eta: claims as though it were a century later, so no eta is ever waited for.
#[derive(Debug)]
pub struct IgnoresEta {
    inner: Arc<dyn Storage>,
}

impl IgnoresEta {
    /// The cases that must fail against this wrapper.
    pub const TARGETS: &'static [&'static str] =
        &["eta_is_respected", "created_at_without_eta_gates_claim"];

    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl Hooks for IgnoresEta {
    fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }

    async fn on_claim(&self, mut req: ClaimRequest) -> Result<Vec<Claimed>, StorageError> {
        req.now += Duration::days(365 * 100);
        self.inner.claim(req).await
    }
}

faulty_storage!(IgnoresEta);

/// Breaks TaskError storage: a failure's `TaskError::context` is dropped before it is stored.
#[derive(Debug)]
pub struct DropsErrorContext {
    inner: Arc<dyn Storage>,
}

impl DropsErrorContext {
    /// The cases that must fail against this wrapper.
    pub const TARGETS: &'static [&'static str] = &[
        "task_error_context_persisted",
        "task_error_persisted_on_task_and_result",
    ];

    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl Hooks for DropsErrorContext {
    fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }

    async fn on_fail(&self, mut items: Vec<Failure>) -> Result<Vec<Outcome>, StorageError> {
        for item in &mut items {
            item.error.context.clear();
        }
        self.inner.fail(items).await
    }
}

faulty_storage!(DropsErrorContext);

/// Breaks fencing: heartbeat, complete and fail report `Ok` for a stale token
/// (the write a stale worker makes looks applied to it).
#[derive(Debug)]
pub struct IgnoresFencing {
    inner: Arc<dyn Storage>,
}

impl IgnoresFencing {
    /// The cases that must fail against this wrapper.
    pub const TARGETS: &'static [&'static str] = &[
        "fenced_complete_ignores_stale_worker",
        "fenced_fail_ignores_stale_worker",
        "fenced_heartbeat_ignores_stale_worker",
        "lease_expiry_redelivers",
        "batch_complete_reports_per_item_outcomes",
        "batch_fail_reports_per_item_outcomes",
        "reschedule_fences_running_task",
        "release_hands_back_unstarted_claim",
        "cancel_of_running_task_with_expired_lease_is_cancelled",
        "start_counts_runs_under_the_fencing_rule",
    ];

    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self { inner }
    }
}

fn lost_is_ok(outcomes: Vec<Outcome>) -> Vec<Outcome> {
    outcomes
        .into_iter()
        .map(|o| match o {
            Outcome::LeaseLost => Outcome::Ok,
            other => other,
        })
        .collect()
}

#[async_trait]
impl Hooks for IgnoresFencing {
    fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }

    async fn on_heartbeat(
        &self,
        leases: &[LeaseRef],
        until: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        self.inner.heartbeat(leases, until).await.map(lost_is_ok)
    }

    async fn on_complete(&self, items: Vec<Completion>) -> Result<Vec<Outcome>, StorageError> {
        self.inner.complete(items).await.map(lost_is_ok)
    }

    async fn on_fail(&self, items: Vec<Failure>) -> Result<Vec<Outcome>, StorageError> {
        self.inner.fail(items).await.map(lost_is_ok)
    }

    async fn on_start(&self, leases: &[LeaseRef]) -> Result<Vec<Outcome>, StorageError> {
        self.inner.start(leases).await.map(lost_is_ok)
    }
}

faulty_storage!(IgnoresFencing);

/// Breaks "duplicate queue names count once": a claim that names a queue twice hands each
/// of that queue's tasks out twice, as a backend that walks `queues` literally would.
#[derive(Debug)]
pub struct ClaimsDuplicateQueuesTwice {
    inner: Arc<dyn Storage>,
}

impl ClaimsDuplicateQueuesTwice {
    /// The cases that must fail against this wrapper.
    pub const TARGETS: &'static [&'static str] =
        &["claim_with_duplicate_queue_names_returns_each_task_once"];

    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl Hooks for ClaimsDuplicateQueuesTwice {
    fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }

    async fn on_claim(&self, req: ClaimRequest) -> Result<Vec<Claimed>, StorageError> {
        let named_twice: BTreeSet<&String> = req
            .queues
            .iter()
            .filter(|q| req.queues.iter().filter(|r| r == q).count() > 1)
            .collect();
        let got = self.inner.claim(req.clone()).await?;
        let mut out = Vec::with_capacity(got.len() * 2);
        for c in got {
            if named_twice.contains(&c.task.queue) {
                out.push(c.clone());
            }
            out.push(c);
        }
        out.truncate(req.limit);
        Ok(out)
    }
}

faulty_storage!(ClaimsDuplicateQueuesTwice);

/// Breaks the wake-up list: it sends only the two hints a first reading suggests —
/// `Work` after an enqueue, `Finished` after a complete or fail — and none after a
/// release, a retry's `Work`, a reschedule, an interval re-arm, a cancel, or the end of
/// a flagged task.
#[derive(Debug)]
pub struct MissesWakeUps {
    inner: Arc<dyn Storage>,
    wake: broadcast::Sender<Wake>,
}

impl MissesWakeUps {
    /// The cases that must fail against this wrapper.
    pub const TARGETS: &'static [&'static str] = &[
        "wake_on_release_and_retry",
        "wake_on_interval_rearm",
        "wake_on_reschedule",
        "wake_on_cancel",
        "wake_on_release_of_cancel_requested_task",
        "wake_on_claim_ending_cancel_requested_lease",
    ];

    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self {
            inner,
            wake: broadcast::channel(1024).0,
        }
    }

    fn finished(&self, ids: &[TaskId], outcomes: &[Outcome]) {
        for (id, o) in ids.iter().zip(outcomes) {
            if *o == Outcome::Ok {
                let _ = self.wake.send(Wake::Finished { task_id: *id });
            }
        }
    }
}

#[async_trait]
impl Hooks for MissesWakeUps {
    fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }

    async fn on_enqueue(&self, tasks: Vec<Task>) -> Result<Vec<Enqueued>, StorageError> {
        let queues: Vec<String> = tasks.iter().map(|t| t.queue.clone()).collect();
        let out = self.inner.enqueue(tasks).await?;
        for (queue, e) in queues.into_iter().zip(&out) {
            if !e.duplicate {
                let _ = self.wake.send(Wake::Work { queue });
            }
        }
        Ok(out)
    }

    async fn on_complete(&self, items: Vec<Completion>) -> Result<Vec<Outcome>, StorageError> {
        let ids: Vec<TaskId> = items.iter().map(|c| c.lease.task_id).collect();
        let out = self.inner.complete(items).await?;
        self.finished(&ids, &out);
        Ok(out)
    }

    async fn on_fail(&self, items: Vec<Failure>) -> Result<Vec<Outcome>, StorageError> {
        let ids: Vec<TaskId> = items.iter().map(|f| f.lease.task_id).collect();
        let out = self.inner.fail(items).await?;
        self.finished(&ids, &out);
        Ok(out)
    }

    fn on_subscribe(&self) -> Option<broadcast::Receiver<Wake>> {
        self.inner.subscribe().map(|_| self.wake.subscribe())
    }
}

faulty_storage!(MissesWakeUps);

/// Breaks `updated_at`: `complete`, `fail`, `release` and `cancel` leave it where it was
/// (as if only `claim` and `reschedule` wrote it). Emulated on reads: while the stored
/// value is still the one such a write set, `get_task` and `list_tasks` show the value
/// from before the write.
#[derive(Debug)]
pub struct SkipsUpdatedAt {
    inner: Arc<dyn Storage>,
    /// Task → (updated_at before the write, the write's now).
    before: Mutex<HashMap<TaskId, (OffsetDateTime, OffsetDateTime)>>,
}

impl SkipsUpdatedAt {
    /// The cases that must fail against this wrapper.
    pub const TARGETS: &'static [&'static str] = &[
        "complete_sets_updated_at",
        "fail_sets_updated_at",
        "release_sets_updated_at",
        "cancel_sets_updated_at",
    ];

    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self {
            inner,
            before: Mutex::default(),
        }
    }

    /// Notes each task's `updated_at` before a write at `now`.
    async fn note(&self, writes: Vec<(TaskId, OffsetDateTime)>) {
        for (id, now) in writes {
            if let Ok(Some(t)) = self.inner.get_task(&id).await {
                self.lock().insert(id, (t.updated_at, now));
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, (OffsetDateTime, OffsetDateTime)>> {
        self.before.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn shown(&self, mut t: Task) -> Task {
        if let Some((old, written)) = self.lock().get(&t.id) {
            if t.updated_at == *written {
                t.updated_at = *old;
            }
        }
        t
    }
}

#[async_trait]
impl Hooks for SkipsUpdatedAt {
    fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }

    async fn on_complete(&self, items: Vec<Completion>) -> Result<Vec<Outcome>, StorageError> {
        let writes = items.iter().map(|c| (c.lease.task_id, c.now)).collect();
        self.note(writes).await;
        self.inner.complete(items).await
    }

    async fn on_fail(&self, items: Vec<Failure>) -> Result<Vec<Outcome>, StorageError> {
        let writes = items.iter().map(|f| (f.lease.task_id, f.now)).collect();
        self.note(writes).await;
        self.inner.fail(items).await
    }

    async fn on_release(
        &self,
        leases: &[LeaseRef],
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        let writes = leases.iter().map(|l| (l.task_id, now)).collect();
        self.note(writes).await;
        self.inner.release(leases, now).await
    }

    async fn on_cancel(
        &self,
        id: &TaskId,
        now: OffsetDateTime,
    ) -> Result<CancelOutcome, StorageError> {
        self.note(vec![(*id, now)]).await;
        self.inner.cancel(id, now).await
    }

    async fn on_get_task(&self, id: &TaskId) -> Result<Option<Task>, StorageError> {
        Ok(self.inner.get_task(id).await?.map(|t| self.shown(t)))
    }

    async fn on_list_tasks(&self, filter: TaskFilter) -> Result<Page<Task>, StorageError> {
        let mut page = self.inner.list_tasks(filter).await?;
        page.items = page.items.into_iter().map(|t| self.shown(t)).collect();
        Ok(page)
    }
}

faulty_storage!(SkipsUpdatedAt);

/// Breaks recorded runs: `start` answers `Ok` for every lease and records nothing, as a
/// backend that treats it as a no-op would (the crash-loop guard then never fires).
#[derive(Debug)]
pub struct ForgetsRuns {
    inner: Arc<dyn Storage>,
}

impl ForgetsRuns {
    /// The cases that must fail against this wrapper.
    pub const TARGETS: &'static [&'static str] = &[
        "start_counts_runs_under_the_fencing_rule",
        "runs_start_over_with_each_series_and_on_reschedule",
    ];

    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl Hooks for ForgetsRuns {
    fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }

    async fn on_start(&self, leases: &[LeaseRef]) -> Result<Vec<Outcome>, StorageError> {
        Ok(vec![Outcome::Ok; leases.len()])
    }
}

faulty_storage!(ForgetsRuns);

/// Breaks the strict cursor: a full page always carries a cursor, also the last one
/// (the caller then reads an empty page), as a backend that fetches exactly `limit`
/// rows does.
#[derive(Debug)]
pub struct LooseCursor {
    inner: Arc<dyn Storage>,
}

impl LooseCursor {
    /// The cases that must fail against this wrapper.
    pub const TARGETS: &'static [&'static str] =
        &["list_tasks_cursor_is_none_exactly_on_the_last_page"];

    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl Hooks for LooseCursor {
    fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }

    async fn on_list_tasks(&self, filter: TaskFilter) -> Result<Page<Task>, StorageError> {
        let limit = filter.limit;
        let mut page = self.inner.list_tasks(filter).await?;
        if limit > 0 && page.items.len() == limit {
            page.next_cursor = page.items.last().map(|t| Cursor(t.id));
        }
        Ok(page)
    }
}

faulty_storage!(LooseCursor);

/// Breaks the shape of `counts`: `counts(Some(queue))` of a queue without tasks has no
/// entry, and `counts(None)` keeps listing (with zeros) every queue that ever received
/// a task, as a backend keeping per-queue counters forever would.
#[derive(Debug)]
pub struct WrongCountsShape {
    inner: Arc<dyn Storage>,
    queues: Mutex<BTreeSet<String>>,
}

impl WrongCountsShape {
    /// The cases that must fail against this wrapper.
    pub const TARGETS: &'static [&'static str] = &[
        "counts_of_an_empty_queue_is_one_zero_entry",
        "counts_lists_only_queues_with_tasks",
    ];

    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self {
            inner,
            queues: Mutex::default(),
        }
    }
}

#[async_trait]
impl Hooks for WrongCountsShape {
    fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }

    async fn on_enqueue(&self, tasks: Vec<Task>) -> Result<Vec<Enqueued>, StorageError> {
        let names: Vec<String> = tasks.iter().map(|t| t.queue.clone()).collect();
        let out = self.inner.enqueue(tasks).await?;
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(names);
        Ok(out)
    }

    async fn on_counts(&self, queue: Option<&str>) -> Result<Vec<QueueCounts>, StorageError> {
        let mut counts = self.inner.counts(queue).await?;
        if queue.is_some() {
            counts.retain(|c| c.total() > 0);
            return Ok(counts);
        }
        let known = self
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for q in known {
            if !counts.iter().any(|c| c.queue == q) {
                counts.push(QueueCounts {
                    queue: q,
                    ..QueueCounts::default()
                });
            }
        }
        counts.sort_by(|a, b| a.queue.cmp(&b.queue));
        Ok(counts)
    }
}

faulty_storage!(WrongCountsShape);

/// Breaks name checks on reads: `next_due`, `list_tasks` and `counts` answer an invalid
/// queue name as an unknown, empty queue instead of with a `Config` error.
#[derive(Debug)]
pub struct AcceptsInvalidNamesInReads {
    inner: Arc<dyn Storage>,
}

impl AcceptsInvalidNamesInReads {
    /// The cases that must fail against this wrapper.
    pub const TARGETS: &'static [&'static str] = &[
        "next_due_rejects_invalid_queue_names",
        "list_tasks_and_counts_reject_invalid_queue_names",
    ];

    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self { inner }
    }
}

fn is_config(e: &StorageError) -> bool {
    e.kind() == StorageErrorKind::Config
}

#[async_trait]
impl Hooks for AcceptsInvalidNamesInReads {
    fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }

    async fn on_next_due(&self, queues: &[String]) -> Result<Option<OffsetDateTime>, StorageError> {
        match self.inner.next_due(queues).await {
            Err(e) if is_config(&e) => Ok(None),
            other => other,
        }
    }

    async fn on_list_tasks(&self, filter: TaskFilter) -> Result<Page<Task>, StorageError> {
        match self.inner.list_tasks(filter).await {
            Err(e) if is_config(&e) => Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            }),
            other => other,
        }
    }

    async fn on_counts(&self, queue: Option<&str>) -> Result<Vec<QueueCounts>, StorageError> {
        match self.inner.counts(queue).await {
            Err(e) if is_config(&e) => Ok(queue
                .map(|q| QueueCounts {
                    queue: q.to_string(),
                    ..QueueCounts::default()
                })
                .into_iter()
                .collect()),
            other => other,
        }
    }
}

faulty_storage!(AcceptsInvalidNamesInReads);

/// Not a fault: reports the given [`Capabilities`] instead of the inner storage's, to
/// check that the suite skips (`requires <capability>`) what a backend does not claim.
#[derive(Debug)]
pub struct WithCapabilities {
    inner: Arc<dyn Storage>,
    caps: Capabilities,
}

impl WithCapabilities {
    /// Wraps `inner`, reporting `caps`.
    pub fn with(inner: Arc<dyn Storage>, caps: Capabilities) -> Self {
        Self { inner, caps }
    }

    /// Wraps `inner`, reporting the defaults (no unique keys, no wake-ups).
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self::with(inner, Capabilities::default())
    }
}

#[async_trait]
impl Hooks for WithCapabilities {
    fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }

    fn caps(&self) -> Capabilities {
        self.caps
    }
}

faulty_storage!(WithCapabilities);

/// One faulty wrapper, described for table-driven tests.
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    /// The wrapper's name (`ClaimsTwice`).
    pub name: &'static str,
    /// Wraps a correct storage in this fault.
    pub wrap: fn(Arc<dyn Storage>) -> Arc<dyn Storage>,
    /// The case ids that must fail against it.
    pub targets: &'static [&'static str],
}

/// Every faulty wrapper.
pub const FAULTS: &[Fault] = &[
    Fault {
        name: "ClaimsTwice",
        wrap: ClaimsTwice::wrap,
        targets: ClaimsTwice::TARGETS,
    },
    Fault {
        name: "IgnoresEta",
        wrap: IgnoresEta::wrap,
        targets: IgnoresEta::TARGETS,
    },
    Fault {
        name: "DropsErrorContext",
        wrap: DropsErrorContext::wrap,
        targets: DropsErrorContext::TARGETS,
    },
    Fault {
        name: "IgnoresFencing",
        wrap: IgnoresFencing::wrap,
        targets: IgnoresFencing::TARGETS,
    },
    Fault {
        name: "ClaimsDuplicateQueuesTwice",
        wrap: ClaimsDuplicateQueuesTwice::wrap,
        targets: ClaimsDuplicateQueuesTwice::TARGETS,
    },
    Fault {
        name: "MissesWakeUps",
        wrap: MissesWakeUps::wrap,
        targets: MissesWakeUps::TARGETS,
    },
    Fault {
        name: "SkipsUpdatedAt",
        wrap: SkipsUpdatedAt::wrap,
        targets: SkipsUpdatedAt::TARGETS,
    },
    Fault {
        name: "ForgetsRuns",
        wrap: ForgetsRuns::wrap,
        targets: ForgetsRuns::TARGETS,
    },
    Fault {
        name: "LooseCursor",
        wrap: LooseCursor::wrap,
        targets: LooseCursor::TARGETS,
    },
    Fault {
        name: "WrongCountsShape",
        wrap: WrongCountsShape::wrap,
        targets: WrongCountsShape::TARGETS,
    },
    Fault {
        name: "AcceptsInvalidNamesInReads",
        wrap: AcceptsInvalidNamesInReads::wrap,
        targets: AcceptsInvalidNamesInReads::TARGETS,
    },
];

/// A factory whose instances are the inner factory's, wrapped in a fault.
pub struct FaultyFactory<F> {
    inner: F,
    wrap: fn(Arc<dyn Storage>) -> Arc<dyn Storage>,
}

impl<F: StorageFactory> FaultyFactory<F> {
    /// Wraps every instance `inner` creates with `wrap` (e.g. [`ClaimsTwice::wrap`]).
    /// The broken instance is passed through as it is.
    pub fn new(inner: F, wrap: fn(Arc<dyn Storage>) -> Arc<dyn Storage>) -> Self {
        Self { inner, wrap }
    }
}

impl<F> fmt::Debug for FaultyFactory<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyFactory").finish_non_exhaustive()
    }
}

#[async_trait]
impl<F: StorageFactory> StorageFactory for FaultyFactory<F> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn create(&self) -> Result<Arc<dyn Storage>, StorageError> {
        self.inner.create().await.map(self.wrap)
    }
    async fn broken(&self) -> Option<Arc<dyn Storage>> {
        self.inner.broken().await
    }
}

/// A factory with no service behind it (every `create()` is `Unavailable`); for docs
/// and for checking the runner's skip path.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFactory;

#[async_trait]
impl StorageFactory for NoFactory {
    fn backend(&self) -> &'static str {
        "none"
    }
    async fn create(&self) -> Result<Arc<dyn Storage>, StorageError> {
        Err(StorageError::new(
            omniq_core::StorageErrorKind::Unavailable,
            "none",
            "no backend behind this factory",
        ))
    }
}
