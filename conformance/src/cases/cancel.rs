//! Cancel: Pending, Running (flagged), Failed, finished and unknown tasks.
//!
//! Each case's rule is written in the `# Behavior` section of the method it checks
//! (`crates/omniq-core/src/storage.rs`), which names the case.

use super::{
    Case, at_second, base_now, case, claim_none, claim_one, claimed_and_flagged, complete,
    enqueue_one, fail_item, fail_with, get, grouped, task,
};
use crate::check::{CaseError, Ctx};
use omniq_core::{
    CancelOutcome, Completion, ErrorType, FailAction, Failure, Outcome, Payload, Storage,
    TaskError, TaskId, TaskStatus,
};
use std::sync::Arc;
use time::Duration;

/// The group these cases are reported under.
pub(super) const GROUP: &str = "Contract: cancel";

pub(super) fn cases() -> Vec<Case> {
    grouped(
        GROUP,
        vec![
            case!(
                cancel_pending_task,
                "Cancelling a Pending task makes it Cancelled and never claimable",
                ["T9", "M2"]
            ),
            case!(
                cancel_running_task_is_requested,
                "Cancelling a Running task flags it: heartbeat reports CancelRequested, fail ends Cancelled",
                ["T9", "T3", "T5"]
            ),
            case!(
                cancel_missing_task_is_not_found,
                "cancel() of an unknown id is a NotFound error",
                ["T9", "T15"]
            ),
            case!(
                cancel_finished_task_reports_already_finished,
                "cancel() of a finished task reports AlreadyFinished and changes nothing",
                ["T9", "M2"]
            ),
            case!(
                cancel_failed_task,
                "Cancelling a Failed task makes it Cancelled",
                ["T9", "M2"]
            ),
            case!(
                reschedule_clears_cancel_request,
                "An explicit reschedule supersedes an earlier cancel request: the next run is not flagged",
                ["T7", "T9"]
            ),
            case!(
                cancel_sets_updated_at,
                "cancel() sets updated_at to its now, whether it cancels the task or flags it",
                ["T9", "T11"]
            ),
            case!(
                cancel_replaces_earlier_result,
                "Cancelling a Failed task, or an interval task between runs, replaces its latest result with the Cancelled one",
                ["T9", "T8", "R5"]
            ),
            case!(
                cancel_of_running_task_with_expired_lease_is_cancelled,
                "Cancelling a Running task whose lease expired (until <= now) cancels it at once",
                ["T9", "S2"]
            ),
        ],
    )
}

async fn cancel_pending_task(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.f", now)).await?;
    let out = s.cancel(&id, now).await.ctx("cancel")?;
    ensure_eq!(out, CancelOutcome::Cancelled, "cancel of a Pending task");
    ensure_eq!(
        get(&*s, id).await?.status,
        TaskStatus::Cancelled,
        "status after cancel"
    );
    let r = some!(
        s.get_result(&id).await.ctx("get_result")?,
        "a cancelled Pending task has a Cancelled result"
    );
    ensure_eq!(
        (r.status, r.result, r.error, r.finished_at, r.attempts),
        (TaskStatus::Cancelled, None, None, now, 0),
        "the Cancelled result (status, payload, error, finished_at, attempts)"
    );
    claim_none(
        &*s,
        now + Duration::hours(1),
        "a cancelled task is never claimed",
    )
    .await?;
    Ok(())
}

async fn cancel_running_task_is_requested(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.long", now)).await?;
    let c = claim_one(&*s, id, now).await?;
    let out = s.cancel(&id, now).await.ctx("cancel")?;
    ensure_eq!(out, CancelOutcome::Requested, "cancel of a Running task");
    ensure_eq!(
        get(&*s, id).await?.status,
        TaskStatus::Running,
        "a flagged task keeps running until its worker stops it"
    );
    let hb = s
        .heartbeat(&[c.lease_ref()], now + Duration::minutes(1))
        .await
        .ctx("heartbeat")?;
    ensure_eq!(
        hb,
        vec![Outcome::CancelRequested],
        "heartbeat of a flagged task"
    );

    let err = at_second(
        TaskError::new(ErrorType::Runtime, "cancelled by request"),
        now,
    );
    let out = fail_item(
        &*s,
        Failure {
            lease: c.lease_ref(),
            error: err,
            action: FailAction::Retry {
                at: now + Duration::seconds(5),
            },
            now: now + Duration::seconds(1),
        },
    )
    .await?;
    ensure_eq!(out, Outcome::Ok, "fail of the flagged task");
    ensure_eq!(
        get(&*s, id).await?.status,
        TaskStatus::Cancelled,
        "a flagged task ends Cancelled, not retried"
    );
    claim_none(
        &*s,
        now + Duration::hours(1),
        "a cancelled task is never claimed",
    )
    .await?;
    Ok(())
}

async fn cancel_missing_task_is_not_found(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    enqueue_one(&*s, task("m.f", now)).await?;
    ensure_kind!(
        s.cancel(&TaskId::new(), now).await,
        NotFound,
        "cancel of an unknown id"
    );
    Ok(())
}

async fn cancel_finished_task_reports_already_finished(
    s: Arc<dyn Storage>,
) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.f", now)).await?;
    let c = claim_one(&*s, id, now).await?;
    ensure_eq!(
        complete(&*s, c.lease_ref(), now, None).await?,
        Outcome::Ok,
        "complete"
    );
    let out = s.cancel(&id, now).await.ctx("cancel")?;
    ensure_eq!(
        out,
        CancelOutcome::AlreadyFinished(TaskStatus::Success),
        "cancel of a Success task"
    );
    ensure_eq!(
        get(&*s, id).await?.status,
        TaskStatus::Success,
        "status stays Success"
    );

    let cancelled = enqueue_one(&*s, task("m.g", now)).await?;
    s.cancel(&cancelled, now).await.ctx("cancel")?;
    let out = s.cancel(&cancelled, now).await.ctx("second cancel")?;
    ensure_eq!(
        out,
        CancelOutcome::AlreadyFinished(TaskStatus::Cancelled),
        "a second cancel"
    );
    Ok(())
}

async fn cancel_failed_task(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.f", now)).await?;
    let c = claim_one(&*s, id, now).await?;
    ensure_eq!(
        fail_with(&*s, c.lease_ref(), FailAction::Fail, now, "boom").await?,
        Outcome::Ok,
        "final fail"
    );
    ensure_eq!(
        get(&*s, id).await?.status,
        TaskStatus::Failed,
        "status after final fail"
    );
    let out = s.cancel(&id, now).await.ctx("cancel")?;
    ensure_eq!(out, CancelOutcome::Cancelled, "cancel of a Failed task");
    ensure_eq!(
        get(&*s, id).await?.status,
        TaskStatus::Cancelled,
        "status after cancelling a Failed task"
    );
    claim_none(
        &*s,
        now + Duration::hours(1),
        "a cancelled task is never claimed",
    )
    .await?;
    Ok(())
}

async fn reschedule_clears_cancel_request(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let (id, first) = claimed_and_flagged(&*s, task("m.f", now), now).await?;
    s.reschedule(&id, now, now)
        .await
        .ctx("reschedule of a flagged task")?;
    ensure_eq!(
        get(&*s, id).await?.status,
        TaskStatus::Pending,
        "status after rescheduling a flagged task"
    );
    let second = claim_one(&*s, id, now).await?;
    ensure!(
        second.lease.token > first.lease.token,
        "the claim after the reschedule gets a greater token"
    );
    let hb = s
        .heartbeat(&[second.lease_ref()], now + Duration::minutes(1))
        .await
        .ctx("heartbeat")?;
    ensure_eq!(
        hb,
        vec![Outcome::Ok],
        "heartbeat of the run after a reschedule (the old cancel request is superseded)"
    );
    ensure_eq!(
        complete(&*s, second.lease_ref(), now, None).await?,
        Outcome::Ok,
        "complete of the new run"
    );
    ensure_eq!(
        get(&*s, id).await?.status,
        TaskStatus::Success,
        "the new run ends Success, not Cancelled"
    );
    Ok(())
}

async fn cancel_sets_updated_at(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let created = now - Duration::minutes(10);
    let pending = enqueue_one(&*s, task("m.pending", created)).await?;
    let at = now + Duration::seconds(3);
    ensure_eq!(
        s.cancel(&pending, at).await.ctx("cancel")?,
        CancelOutcome::Cancelled,
        "cancel of a Pending task"
    );
    ensure_eq!(
        get(&*s, pending).await?.updated_at,
        at,
        "updated_at of a cancelled task = the cancel's now"
    );
    let running = enqueue_one(&*s, task("m.running", created)).await?;
    claim_one(&*s, running, now).await?;
    let at = now + Duration::seconds(4);
    ensure_eq!(
        s.cancel(&running, at).await.ctx("cancel")?,
        CancelOutcome::Requested,
        "cancel of a Running task"
    );
    ensure_eq!(
        get(&*s, running).await?.updated_at,
        at,
        "updated_at of a flagged task = the cancel's now"
    );
    Ok(())
}

async fn cancel_replaces_earlier_result(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    // A Failed task: its Failed result gives way to the Cancelled one.
    let failed = enqueue_one(&*s, task("m.failed", now)).await?;
    let c = claim_one(&*s, failed, now).await?;
    ensure_eq!(
        fail_with(&*s, c.lease_ref(), FailAction::Fail, now, "boom").await?,
        Outcome::Ok,
        "final fail"
    );
    let error = get(&*s, failed).await?.error;
    ensure!(error.is_some(), "a Failed task carries its error");
    let at = now + Duration::seconds(5);
    ensure_eq!(
        s.cancel(&failed, at).await.ctx("cancel")?,
        CancelOutcome::Cancelled,
        "cancel of a Failed task"
    );
    let r = some!(s.get_result(&failed).await.ctx("get_result")?, "result");
    ensure_eq!(
        (r.status, r.result, r.error, r.finished_at),
        (TaskStatus::Cancelled, None, error, at),
        "the Cancelled result replaces the Failed one (status, payload, the task's last error, finished_at)"
    );
    ensure_eq!(
        (r.attempts, r.last_attempt_at),
        (1, Some(now)),
        "the Cancelled result's attempts and last_attempt_at are the task's"
    );

    // An interval task between runs: its last run's Success result gives way too.
    let mut t = task("m.tick", now);
    t.schedule.interval = Some(Duration::hours(1));
    let tick = enqueue_one(&*s, t).await?;
    let c = claim_one(&*s, tick, now).await?;
    let out = s
        .complete(vec![Completion {
            lease: c.lease_ref(),
            result: Some(Payload(b"run 1".to_vec())),
            now,
            next_run: Some(now + Duration::hours(1)),
        }])
        .await
        .ctx("complete with next_run")?;
    ensure_eq!(out, vec![Outcome::Ok], "complete with next_run");
    let at = now + Duration::seconds(6);
    ensure_eq!(
        s.cancel(&tick, at).await.ctx("cancel")?,
        CancelOutcome::Cancelled,
        "cancel of an interval task between runs"
    );
    let r = some!(s.get_result(&tick).await.ctx("get_result")?, "result");
    ensure_eq!(
        (r.status, r.result, r.finished_at),
        (TaskStatus::Cancelled, None, at),
        "the Cancelled result replaces the last run's Success (status, payload, finished_at)"
    );
    Ok(())
}

async fn cancel_of_running_task_with_expired_lease_is_cancelled(
    s: Arc<dyn Storage>,
) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.orphan", now)).await?;
    let c = claim_one(&*s, id, now).await?;
    // Its worker is gone; at exactly `until` the lease has expired.
    let gone = c.lease.until;
    ensure_eq!(
        s.cancel(&id, gone).await.ctx("cancel")?,
        CancelOutcome::Cancelled,
        "cancel of a Running task whose lease ended at the cancel's now"
    );
    ensure_eq!(
        get(&*s, id).await?.status,
        TaskStatus::Cancelled,
        "status after the cancel"
    );
    let r = some!(
        s.get_result(&id).await.ctx("get_result")?,
        "the Cancelled result"
    );
    ensure_eq!(r.status, TaskStatus::Cancelled, "result status");
    ensure_eq!(
        complete(&*s, c.lease_ref(), gone, Some(b"late")).await?,
        Outcome::LeaseLost,
        "the gone worker's late completion is fenced off"
    );
    claim_none(
        &*s,
        gone + Duration::hours(1),
        "a cancelled task is never claimed",
    )
    .await?;
    Ok(())
}
