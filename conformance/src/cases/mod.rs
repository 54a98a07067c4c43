//! The case registry and the helpers cases share.
//!
//! Every case is a named async fn over fresh storage that asserts outcomes and error
//! *kinds*, never message strings. Time is passed in: a case takes one base `now` and
//! hands later instants to the storage to move past etas and leases — no sleeps.

mod cancel;
mod checklist;
mod claim;
mod cron;
mod enqueue;
mod lease;
mod lifecycle;
mod listing;
pub mod runtime;

use crate::check::{CaseError, Ctx};
use omniq_core::{
    CancelOutcome, Capabilities, ClaimRequest, Claimed, Completion, ErrorType, FailAction, Failure,
    LeaseRef, Outcome, Payload, Storage, Task, TaskError, TaskId,
};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use time::{Duration, OffsetDateTime};

/// What a case body returns.
pub(crate) type CaseFuture = Pin<Box<dyn Future<Output = Result<(), CaseError>> + Send>>;

/// How a case is run, by what it needs from the factory.
#[derive(Clone, Copy)]
pub(crate) enum Body {
    /// One fresh instance.
    Fresh(fn(Arc<dyn Storage>) -> CaseFuture),
    /// The factory's broken instance (skipped when it has none).
    Broken(fn(Arc<dyn Storage>) -> CaseFuture),
    /// Two fresh instances, in different namespaces.
    Pair(fn(Arc<dyn Storage>, Arc<dyn Storage>) -> CaseFuture),
}

/// A capability a case needs; a backend without it reports the case
/// `skipped: requires <name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// [`Capabilities::unique_keys`].
    UniqueKeys,
    /// [`Capabilities::push_wakeup`].
    PushWakeup,
    /// [`Capabilities::transactional_enqueue`].
    TransactionalEnqueue,
    /// [`Capabilities::multi_process`].
    MultiProcess,
    /// Not a backend capability: the runtime-level cases need omniq-conformance's
    /// `runtime` feature (on by default), which runs them through a real worker pool.
    Runtime,
}

impl Capability {
    /// The field name in [`Capabilities`] (`unique_keys`).
    pub fn name(self) -> &'static str {
        match self {
            Self::UniqueKeys => "unique_keys",
            Self::PushWakeup => "push_wakeup",
            Self::TransactionalEnqueue => "transactional_enqueue",
            Self::MultiProcess => "multi_process",
            Self::Runtime => "runtime",
        }
    }

    /// Whether `caps` has it.
    pub fn is_supported_by(self, caps: &Capabilities) -> bool {
        match self {
            Self::UniqueKeys => caps.unique_keys,
            Self::PushWakeup => caps.push_wakeup,
            Self::TransactionalEnqueue => caps.transactional_enqueue,
            Self::MultiProcess => caps.multi_process,
            Self::Runtime => cfg!(feature = "runtime"),
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One conformance case.
#[derive(Clone, Copy)]
pub struct Case {
    /// Snake-case behaviour name, unique (`get_task_returns_none_for_missing_id`); the
    /// trial is named `conformance::<id>`.
    pub id: &'static str,
    /// The migration guide's checklist line this case checks, verbatim, or a short
    /// sentence of the contract it pins.
    pub checklist: &'static str,
    /// Requirement IDs this case checks, as defined in the repository's `docs/requirements.md`
    /// (a letter and a number, such as a storage-contract rule); they appear in the report.
    pub requirements: &'static [&'static str],
    /// The capability the case needs, if any.
    pub capability: Option<Capability>,
    /// The report section it is listed under: one of the guide's checklists (`Storage
    /// interface`, `Task interval type`, `TaskError model`, `Worker`) or a part of the
    /// storage contract (`Contract: claim`, …).
    pub group: &'static str,
    pub(crate) body: Body,
}

impl Case {
    /// True when the case runs against the factory's broken instance.
    pub fn needs_broken_instance(&self) -> bool {
        matches!(self.body, Body::Broken(_))
    }

    /// True when the case needs two instances from the factory (namespace isolation).
    pub fn needs_two_instances(&self) -> bool {
        matches!(self.body, Body::Pair(_))
    }
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case")
            .field("id", &self.id)
            .field("checklist", &self.checklist)
            .field("requirements", &self.requirements)
            .field("capability", &self.capability)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

/// Every case, in report order: the guide's storage checklists, the storage contract
/// (one file per part: enqueue, claim, leases, cancel, listing, lifecycle), then the
/// runtime-level cases ([`runtime`]).
pub fn cases() -> &'static [Case] {
    static ALL: OnceLock<Vec<Case>> = OnceLock::new();
    ALL.get_or_init(|| {
        [
            checklist::cases(),
            enqueue::cases(),
            claim::cases(),
            lease::cases(),
            cancel::cases(),
            listing::cases(),
            lifecycle::cases(),
            cron::cases(),
            runtime::cases(),
        ]
        .into_iter()
        .flatten()
        .collect()
    })
}

/// Sets the report group of `cases`.
pub(crate) fn grouped(group: &'static str, mut cases: Vec<Case>) -> Vec<Case> {
    for c in &mut cases {
        c.group = group;
    }
    cases
}

/// Looks a case up by id.
pub(crate) fn find(id: &str) -> Option<&'static Case> {
    cases().iter().find(|c| c.id == id)
}

/// Declares a case whose body takes one fresh storage.
macro_rules! case {
    ($id:ident, $checklist:expr, [$($req:literal),*] $(, $cap:ident)?) => {
        $crate::cases::Case {
            id: stringify!($id),
            checklist: $checklist,
            requirements: &[$($req),*],
            capability: case!(@cap $($cap)?),
            group: "",
            body: $crate::cases::Body::Fresh(|s| Box::pin($id(s))),
        }
    };
    (@cap) => { None };
    (@cap $cap:ident) => { Some($crate::cases::Capability::$cap) };
}

/// Declares a case run against the factory's broken instance.
macro_rules! broken_case {
    ($id:ident, $checklist:expr, [$($req:literal),*]) => {
        $crate::cases::Case {
            id: stringify!($id),
            checklist: $checklist,
            requirements: &[$($req),*],
            capability: None,
            group: "",
            body: $crate::cases::Body::Broken(|s| Box::pin($id(s))),
        }
    };
}

/// Declares a case that takes two isolated instances.
macro_rules! pair_case {
    ($id:ident, $checklist:expr, [$($req:literal),*]) => {
        $crate::cases::Case {
            id: stringify!($id),
            checklist: $checklist,
            requirements: &[$($req),*],
            capability: None,
            group: "",
            body: $crate::cases::Body::Pair(|a, b| Box::pin($id(a, b))),
        }
    };
}

pub(crate) use {broken_case, case, pair_case};

// ---------------------------------------------------------------------------------
// Helpers shared by the cases.

/// The lease every helper claim takes.
pub(crate) const LEASE: Duration = Duration::seconds(30);

/// A base "now": the wall clock truncated to whole seconds, so any backend's timestamp
/// precision (seconds, micros, nanos) round-trips it exactly. Cases add to it; they
/// never read the clock again for scheduling.
pub(crate) fn base_now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// A Pending task on `queue`, created at `now` (so due at `now` unless given an eta).
pub(crate) fn task_on(queue: &str, func: &str, now: OffsetDateTime) -> Task {
    let mut t = Task::new(func, Payload(format!("[\"{func}\"]").into_bytes()));
    t.queue = queue.to_string();
    t.created_at = now;
    t.updated_at = now;
    t
}

/// A Pending task on the default queue, created at `now`.
pub(crate) fn task(func: &str, now: OffsetDateTime) -> Task {
    task_on(omniq_core::DEFAULT_QUEUE, func, now)
}

/// Enqueues, checks one non-duplicate outcome per task in order, returns the ids.
pub(crate) async fn enqueue(s: &dyn Storage, tasks: Vec<Task>) -> Result<Vec<TaskId>, CaseError> {
    let want: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
    let mut got = Vec::with_capacity(want.len());
    // Respect max_batch: splitting big batches is the caller's job.
    let max = s.capabilities().max_batch.max(1);
    let mut rest = tasks;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(max));
        let out = s.enqueue(rest).await.ctx("enqueue")?;
        got.extend(out);
        rest = tail;
    }
    let ids: Vec<TaskId> = got.iter().map(|e| e.id).collect();
    ensure_eq!(
        ids,
        want,
        "enqueue must return the input ids in input order"
    );
    ensure!(
        got.iter().all(|e| !e.duplicate),
        "enqueue of tasks without unique keys reported a duplicate: {got:?}"
    );
    Ok(ids)
}

/// Enqueues one task and returns its id.
pub(crate) async fn enqueue_one(s: &dyn Storage, t: Task) -> Result<TaskId, CaseError> {
    let ids = enqueue(s, vec![t]).await?;
    Ok(ids[0])
}

/// Claims up to `limit` tasks from `queue` at `now` with [`LEASE`].
pub(crate) async fn claim_from(
    s: &dyn Storage,
    queue: &str,
    limit: usize,
    now: OffsetDateTime,
) -> Result<Vec<Claimed>, CaseError> {
    s.claim(ClaimRequest {
        queues: vec![queue.to_string()],
        limit,
        now,
        lease: LEASE,
    })
    .await
    .ctx("claim")
}

/// Claims from the default queue.
pub(crate) async fn claim(
    s: &dyn Storage,
    limit: usize,
    now: OffsetDateTime,
) -> Result<Vec<Claimed>, CaseError> {
    claim_from(s, omniq_core::DEFAULT_QUEUE, limit, now).await
}

/// Claims exactly one task from the default queue and checks it is `id`.
pub(crate) async fn claim_one(
    s: &dyn Storage,
    id: TaskId,
    now: OffsetDateTime,
) -> Result<Claimed, CaseError> {
    let mut got = claim(s, 10, now).await?;
    let ids: Vec<TaskId> = got.iter().map(|c| c.task.id).collect();
    ensure_eq!(
        ids,
        vec![id],
        "claim at {now} must return exactly the due task"
    );
    let c = some!(got.pop(), "claimed task");
    ensure_eq!(
        c.task.status,
        omniq_core::TaskStatus::Running,
        "status of a claimed task"
    );
    ensure_eq!(c.lease.until, now + LEASE, "lease.until = now + lease");
    Ok(c)
}

/// Checks a claim from the default queue at `now` returns nothing.
pub(crate) async fn claim_none(
    s: &dyn Storage,
    now: OffsetDateTime,
    why: &str,
) -> Result<(), CaseError> {
    let got = claim(s, 10, now).await?;
    let ids: Vec<TaskId> = got.iter().map(|c| c.task.id).collect();
    ensure!(
        ids.is_empty(),
        "claim at {now} must return nothing ({why}), got {ids:?}"
    );
    Ok(())
}

/// The task, which must exist.
pub(crate) async fn get(s: &dyn Storage, id: TaskId) -> Result<Task, CaseError> {
    let t = s.get_task(&id).await.ctx("get_task")?;
    Ok(some!(t, "get_task({id}) of a stored task"))
}

/// Completes one lease at `now` with `result`, returning the outcome.
pub(crate) async fn complete(
    s: &dyn Storage,
    lease: LeaseRef,
    now: OffsetDateTime,
    result: Option<&[u8]>,
) -> Result<Outcome, CaseError> {
    let out = s
        .complete(vec![Completion {
            lease,
            result: result.map(|r| Payload(r.to_vec())),
            now,
            next_run: None,
        }])
        .await
        .ctx("complete")?;
    ensure_eq!(out.len(), 1, "complete returns one outcome per item");
    Ok(out[0])
}

/// Fails one lease, returning its outcome.
pub(crate) async fn fail_item(s: &dyn Storage, item: Failure) -> Result<Outcome, CaseError> {
    let out = s.fail(vec![item]).await.ctx("fail")?;
    ensure_eq!(out.len(), 1, "fail returns one outcome per item");
    Ok(out[0])
}

/// Drops sub-second precision from a TaskError timestamp so it round-trips anywhere.
pub(crate) fn at_second(
    mut e: omniq_core::TaskError,
    now: OffsetDateTime,
) -> omniq_core::TaskError {
    e.timestamp = now;
    e
}

// Helpers shared by several case files.

/// Fails one lease with a Runtime error stamped `now`, returning the outcome.
pub(crate) async fn fail_with(
    s: &dyn Storage,
    lease: LeaseRef,
    action: FailAction,
    now: OffsetDateTime,
    message: &str,
) -> Result<Outcome, CaseError> {
    let out = s
        .fail(vec![Failure {
            lease,
            error: at_second(TaskError::new(ErrorType::Runtime, message), now),
            action,
            now,
        }])
        .await
        .ctx("fail")?;
    ensure_eq!(out.len(), 1, "fail returns one outcome per item");
    Ok(out[0])
}

/// Enqueues `t` on the default queue, claims it at `now` and cancels it (→ `Requested`).
pub(crate) async fn claimed_and_flagged(
    s: &dyn Storage,
    t: omniq_core::Task,
    now: OffsetDateTime,
) -> Result<(TaskId, omniq_core::Claimed), CaseError> {
    let id = enqueue_one(s, t).await?;
    let c = claim_one(s, id, now).await?;
    ensure_eq!(
        s.cancel(&id, now).await.ctx("cancel")?,
        CancelOutcome::Requested,
        "cancel of a Running task"
    );
    Ok((id, c))
}
