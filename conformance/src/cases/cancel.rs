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
    CancelOutcome, ErrorType, FailAction, Failure, Outcome, Storage, TaskError, TaskId, TaskStatus,
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
