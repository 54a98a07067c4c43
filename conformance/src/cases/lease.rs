//! The fenced lease writes: heartbeat, start, complete, fail, release; per-item outcomes.
//!
//! Each case's rule is written in the `# Behavior` section of the method it checks
//! (`crates/omniq-core/src/storage.rs`), which names the case.

use super::{
    Case, LEASE, at_second, base_now, case, claim, claim_none, claim_one, claimed_and_flagged,
    complete, enqueue_one, fail_item, fail_with, get, grouped, task,
};
use crate::check::{CaseError, Ctx};
use omniq_core::{
    CancelOutcome, Completion, ErrorType, FailAction, Failure, LeaseRef, LeaseToken, Outcome,
    Payload, Storage, TaskError, TaskId, TaskStatus,
};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

/// The group these cases are reported under.
pub(super) const GROUP: &str = "Contract: leases and fencing";

pub(super) fn cases() -> Vec<Case> {
    grouped(
        GROUP,
        vec![
            case!(
                fail_defer_gives_back_the_attempt,
                "fail() with Defer puts the task back at `at` without counting the claim's attempt and stores no result; a flagged task ends Cancelled, its attempt not counted",
                ["T5", "R6", "T9"]
            ),
            case!(
                release_hands_back_unstarted_claim,
                "A released claim is Pending again at once, its attempt not counted, and its token fenced off",
                ["R6", "T2", "S2"]
            ),
            case!(
                fenced_complete_ignores_stale_worker,
                "complete() with a stale token gives LeaseLost and changes nothing",
                ["T4", "S2"]
            ),
            case!(
                fenced_fail_ignores_stale_worker,
                "fail() with a stale token gives LeaseLost and changes nothing",
                ["T5", "S2"]
            ),
            case!(
                fenced_heartbeat_ignores_stale_worker,
                "heartbeat() with a stale token gives LeaseLost and does not extend the lease",
                ["T3", "S2"]
            ),
            case!(
                heartbeat_extends_lease,
                "A heartbeat extends the lease: no redelivery before the new `until`",
                ["T3"]
            ),
            case!(
                heartbeat_reports_not_found_for_missing_task,
                "heartbeat() of an unknown task gives NotFound",
                ["T3"]
            ),
            case!(
                batch_complete_reports_per_item_outcomes,
                "One stale item in a batch completion is LeaseLost; the others apply",
                ["T4"]
            ),
            case!(
                batch_fail_reports_per_item_outcomes,
                "One stale item in a batch fail is LeaseLost and changes nothing; the others apply",
                ["T5"]
            ),
            case!(
                release_duplicate_items_apply_once,
                "Releasing the same lease twice in one batch applies once: [Ok, LeaseLost], attempts - 1",
                ["R6"]
            ),
            case!(
                complete_clears_task_error,
                "A successful run after a retry clears the error on the task and stores none on the result",
                ["T4", "M7"]
            ),
            case!(
                complete_next_run_on_cancel_requested_ends_series,
                "Completing a flagged interval run with next_run ends the series: Success, never claimed again",
                ["T4", "T9", "R5"]
            ),
            case!(
                fail_on_cancel_requested_ends_cancelled,
                "A flagged task that fails (Fail or NextRun) ends Cancelled and is never claimed again",
                ["T5", "T9"]
            ),
            case!(
                release_of_cancel_requested_task_ends_cancelled,
                "Releasing a flagged task ends it Cancelled, with a Cancelled result, never claimed again",
                ["R6", "T9"]
            ),
            case!(
                release_of_cancel_requested_task_gives_back_its_attempt,
                "Releasing a flagged task still un-counts the claim's attempt, on the task and on its Cancelled result",
                ["R6", "T9"]
            ),
            case!(
                complete_sets_updated_at,
                "complete() sets updated_at to its now, for a final run and for an interval re-arm",
                ["T4", "T11"]
            ),
            case!(
                fail_sets_updated_at,
                "fail() sets updated_at to its now, for Retry, NextRun and Fail",
                ["T5", "T11"]
            ),
            case!(
                release_sets_updated_at,
                "release() sets updated_at to its now, for a plain and for a flagged task",
                ["R6", "T11"]
            ),
            case!(
                start_counts_runs_under_the_fencing_rule,
                "start() counts a run for the current lease only (stale: LeaseLost, unknown: NotFound) and changes nothing else; claim, heartbeat, release and a Retry or Defer failure keep the count",
                ["S2", "T3"]
            ),
            case!(
                runs_start_over_with_each_series_and_on_reschedule,
                "Recorded runs go back to 0 with attempts when a recurring task moves to its next slot (complete with next_run, fail with NextRun) and on reschedule",
                ["S2", "T4", "T5", "T7"]
            ),
            case!(
                heartbeat_extends_an_expired_lease_not_yet_reclaimed,
                "A heartbeat extends a lease that ran out but was not re-claimed, by the given until and no clock, leaving updated_at alone",
                ["T3", "S2"]
            ),
        ],
    )
}

/// A task claimed twice (the first lease expired): returns (task id, stale, current, now).
async fn stale_and_current(
    s: &dyn Storage,
) -> Result<(TaskId, LeaseRef, LeaseRef, OffsetDateTime), CaseError> {
    let now = base_now();
    let id = enqueue_one(s, task("m.f", now)).await?;
    let first = claim_one(s, id, now).await?;
    let later = now + LEASE + Duration::seconds(1);
    let second = claim_one(s, id, later).await?;
    Ok((id, first.lease_ref(), second.lease_ref(), later))
}

async fn release_hands_back_unstarted_claim(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let (id, stale, current, now) = stale_and_current(&*s).await?;
    ensure_eq!(get(&*s, id).await?.attempts, 2, "attempts after two claims");
    let out = s.release(&[stale, current], now).await.ctx("release")?;
    ensure_eq!(
        out,
        vec![Outcome::LeaseLost, Outcome::Ok],
        "release of a stale and of the current lease"
    );
    let t = get(&*s, id).await?;
    ensure_eq!(
        t.status,
        omniq_core::TaskStatus::Pending,
        "status after release"
    );
    ensure_eq!(t.attempts, 1, "the released claim's attempt is not counted");
    // Claimable again at the same instant, by anyone, under a newer token.
    let again = claim_one(&*s, id, now).await?;
    ensure!(
        again.lease.token > current.token,
        "the claim after a release gets a greater token"
    );
    ensure_eq!(again.task.attempts, 2, "attempts after re-claiming");
    // The released lease is fenced off.
    ensure_eq!(
        complete(&*s, current, now, Some(b"late")).await?,
        Outcome::LeaseLost,
        "complete with the released token"
    );
    let missing = LeaseRef {
        task_id: TaskId::new(),
        token: current.token,
    };
    ensure_eq!(
        s.release(&[missing], now).await.ctx("release")?,
        vec![Outcome::NotFound],
        "release of an unknown task"
    );
    Ok(())
}

async fn fenced_complete_ignores_stale_worker(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let (id, stale, current, now) = stale_and_current(&*s).await?;
    let before = get(&*s, id).await?;
    let out = complete(&*s, stale, now, Some(b"stale")).await?;
    ensure_eq!(out, Outcome::LeaseLost, "complete with a stale token");
    ensure_eq!(
        get(&*s, id).await?,
        before,
        "the task after the fenced complete"
    );
    ensure!(
        s.get_result(&id).await.ctx("get_result")?.is_none(),
        "a fenced complete must not store a result"
    );
    // A token that was never issued is stale too.
    let forged = LeaseRef {
        task_id: id,
        token: LeaseToken(current.token.0.saturating_add(1_000)),
    };
    ensure_eq!(
        complete(&*s, forged, now, None).await?,
        Outcome::LeaseLost,
        "complete with a token never issued"
    );
    ensure_eq!(
        complete(&*s, current, now, Some(b"ok")).await?,
        Outcome::Ok,
        "complete with the current token"
    );
    // After success the task has moved on: even the last token is stale now.
    ensure_eq!(
        complete(&*s, current, now, Some(b"again")).await?,
        Outcome::LeaseLost,
        "a second complete of a finished task"
    );
    let r = some!(s.get_result(&id).await.ctx("get_result")?, "result");
    ensure_eq!(
        r.result,
        Some(Payload(b"ok".to_vec())),
        "the first completion's result stays"
    );
    Ok(())
}

async fn fenced_fail_ignores_stale_worker(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let (id, stale, current, now) = stale_and_current(&*s).await?;
    let before = get(&*s, id).await?;
    let err = at_second(TaskError::new(ErrorType::Runtime, "stale failure"), now);
    for action in [
        FailAction::Fail,
        FailAction::Retry {
            at: now + Duration::seconds(5),
        },
    ] {
        let out = fail_item(
            &*s,
            Failure {
                lease: stale,
                error: err.clone(),
                action,
                now,
            },
        )
        .await?;
        ensure_eq!(
            out,
            Outcome::LeaseLost,
            "fail ({action:?}) with a stale token"
        );
        ensure_eq!(
            get(&*s, id).await?,
            before,
            "the task after a fenced fail ({action:?})"
        );
    }
    ensure!(
        s.get_result(&id).await.ctx("get_result")?.is_none(),
        "a fenced fail must not store a result"
    );
    let out = fail_item(
        &*s,
        Failure {
            lease: current,
            error: err.clone(),
            action: FailAction::Fail,
            now,
        },
    )
    .await?;
    ensure_eq!(out, Outcome::Ok, "fail with the current token");
    ensure_eq!(
        get(&*s, id).await?.status,
        TaskStatus::Failed,
        "status after the real fail"
    );
    Ok(())
}

async fn fenced_heartbeat_ignores_stale_worker(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let (id, stale, current, now) = stale_and_current(&*s).await?;
    let before = get(&*s, id).await?;
    let far = now + Duration::hours(1);
    let out = s.heartbeat(&[stale], far).await.ctx("heartbeat")?;
    ensure_eq!(
        out,
        vec![Outcome::LeaseLost],
        "heartbeat with a stale token"
    );
    ensure_eq!(
        get(&*s, id).await?,
        before,
        "the task after a fenced heartbeat"
    );

    // The lease was not extended: it expires on its own schedule.
    let expiry = now + LEASE + Duration::seconds(1);
    let third = claim_one(&*s, id, expiry).await?;
    ensure!(
        third.lease.token > current.token,
        "the lease that expired is redelivered with a greater token"
    );
    Ok(())
}

async fn heartbeat_extends_lease(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.slow", now)).await?;
    let c = claim_one(&*s, id, now).await?;
    let until = now + Duration::minutes(2);
    let out = s
        .heartbeat(&[c.lease_ref()], until)
        .await
        .ctx("heartbeat")?;
    ensure_eq!(out, vec![Outcome::Ok], "heartbeat with the current token");

    // Between the old and the new `until`: still leased.
    claim_none(
        &*s,
        now + LEASE + Duration::seconds(1),
        "the lease was extended",
    )
    .await?;
    claim_none(&*s, until - Duration::seconds(1), "the lease was extended").await?;
    let got = get(&*s, id).await?;
    ensure_eq!(got.status, TaskStatus::Running, "status while extended");
    ensure_eq!(got.attempts, 1, "attempts while extended");
    ensure_eq!(
        complete(&*s, c.lease_ref(), until - Duration::seconds(1), None).await?,
        Outcome::Ok,
        "complete within the extended lease"
    );
    Ok(())
}

async fn heartbeat_reports_not_found_for_missing_task(
    s: Arc<dyn Storage>,
) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.f", now)).await?;
    let c = claim_one(&*s, id, now).await?;
    let missing = LeaseRef {
        task_id: TaskId::new(),
        token: c.lease.token,
    };
    let out = s
        .heartbeat(&[c.lease_ref(), missing], now + Duration::minutes(1))
        .await
        .ctx("heartbeat")?;
    ensure_eq!(
        out,
        vec![Outcome::Ok, Outcome::NotFound],
        "per-item heartbeat outcomes"
    );
    Ok(())
}

async fn batch_complete_reports_per_item_outcomes(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let b = enqueue_one(&*s, task("m.b", now)).await?;
    let b_stale = claim_one(&*s, b, now).await?;
    let later = now + LEASE + Duration::seconds(1);
    let a = enqueue_one(&*s, task("m.a", later)).await?;
    let c = enqueue_one(&*s, task("m.c", later)).await?;
    // B's lease expired: this claim redelivers it together with A and C.
    let claimed = claim(&*s, 10, later).await?;
    let mut got: Vec<TaskId> = claimed.iter().map(|x| x.task.id).collect();
    got.sort();
    let mut want = vec![a, b, c];
    want.sort();
    ensure_eq!(got, want, "the second claim returns A, C and the expired B");
    let lease_of = |id: TaskId| {
        claimed
            .iter()
            .find(|x| x.task.id == id)
            .map(|x| x.lease_ref())
            .ok_or_else(|| CaseError::new(format!("no lease for {id}")))
    };
    let missing = LeaseRef {
        task_id: TaskId::new(),
        token: b_stale.lease.token,
    };
    let done = later + Duration::seconds(1);
    let item = |lease: LeaseRef, body: &[u8]| Completion {
        lease,
        result: Some(Payload(body.to_vec())),
        now: done,
        next_run: None,
    };
    let out = s
        .complete(vec![
            item(lease_of(a)?, b"a"),
            item(b_stale.lease_ref(), b"b-stale"),
            item(lease_of(c)?, b"c"),
            item(missing, b"missing"),
        ])
        .await
        .ctx("batch complete")?;
    ensure_eq!(out.len(), 4, "one outcome per item");
    ensure_eq!(
        out[..3].to_vec(),
        vec![Outcome::Ok, Outcome::LeaseLost, Outcome::Ok],
        "outcomes for [A, stale B, C]"
    );
    ensure!(
        matches!(out[3], Outcome::NotFound | Outcome::LeaseLost),
        "an unknown task in a batch completion must not be Ok, got {:?}",
        out[3]
    );

    for (id, body) in [(a, b"a"), (c, b"c")] {
        ensure_eq!(
            get(&*s, id).await?.status,
            TaskStatus::Success,
            "status of {id}"
        );
        let r = some!(s.get_result(&id).await.ctx("get_result")?, "result of {id}");
        ensure_eq!(r.result, Some(Payload(body.to_vec())), "result of {id}");
    }
    let stale = get(&*s, b).await?;
    ensure_eq!(
        stale.status,
        TaskStatus::Running,
        "B stays Running under its new lease"
    );
    ensure_eq!(stale.attempts, 2, "B's attempts");
    ensure!(
        s.get_result(&b).await.ctx("get_result")?.is_none(),
        "the stale item stored no result"
    );
    Ok(())
}

async fn complete_next_run_on_cancel_requested_ends_series(
    s: Arc<dyn Storage>,
) -> Result<(), CaseError> {
    let now = base_now();
    let mut t = task("m.tick", now);
    t.schedule.interval = Some(Duration::hours(1));
    let (id, c) = claimed_and_flagged(&*s, t, now).await?;

    let next = now + Duration::hours(1);
    let out = s
        .complete(vec![Completion {
            lease: c.lease_ref(),
            result: Some(Payload(b"last".to_vec())),
            now: now + Duration::seconds(1),
            next_run: Some(next),
        }])
        .await
        .ctx("complete with next_run")?;
    ensure_eq!(
        out,
        vec![Outcome::Ok],
        "complete of the flagged interval run"
    );
    ensure_eq!(
        get(&*s, id).await?.status,
        TaskStatus::Success,
        "a cancel request ends the series: the run is Success, not Pending at next_run"
    );
    let r = some!(
        s.get_result(&id).await.ctx("get_result")?,
        "the last run's result"
    );
    ensure_eq!(
        r.status,
        TaskStatus::Success,
        "result status of the last run"
    );
    claim_none(&*s, next, "the series ended; no next run").await?;
    claim_none(
        &*s,
        next + Duration::hours(1),
        "the series ended; no later run",
    )
    .await?;
    Ok(())
}

async fn fail_on_cancel_requested_ends_cancelled(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let next = now + Duration::minutes(5);
    for (name, action) in [
        ("m.fail", FailAction::Fail),
        ("m.next_run", FailAction::NextRun { at: next }),
    ] {
        let mut t = task(name, now);
        if matches!(action, FailAction::NextRun { .. }) {
            t.schedule.interval = Some(Duration::minutes(5));
        }
        let (id, c) = claimed_and_flagged(&*s, t, now).await?;
        let out = fail_with(
            &*s,
            c.lease_ref(),
            action,
            now + Duration::seconds(1),
            "stopped",
        )
        .await?;
        ensure_eq!(out, Outcome::Ok, "fail ({action:?}) of a flagged task");
        ensure_eq!(
            get(&*s, id).await?.status,
            TaskStatus::Cancelled,
            "a flagged task that fails ({action:?}) ends Cancelled"
        );
        claim_none(
            &*s,
            next,
            &format!("a cancelled task is never claimed ({action:?})"),
        )
        .await?;
        claim_none(
            &*s,
            now + Duration::hours(1),
            &format!("a cancelled task is never claimed ({action:?})"),
        )
        .await?;
    }
    Ok(())
}

async fn complete_clears_task_error(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.flaky", now)).await?;
    let c = claim_one(&*s, id, now).await?;
    let at = now + Duration::seconds(10);
    ensure_eq!(
        fail_with(&*s, c.lease_ref(), FailAction::Retry { at }, now, "flaky").await?,
        Outcome::Ok,
        "fail with Retry"
    );
    ensure!(
        get(&*s, id).await?.has_error(),
        "the error is on the task while the retry is pending"
    );

    let again = claim_one(&*s, id, at).await?;
    ensure_eq!(
        complete(&*s, again.lease_ref(), at, Some(b"ok")).await?,
        Outcome::Ok,
        "complete of the retry"
    );
    let got = get(&*s, id).await?;
    ensure_eq!(
        got.status,
        TaskStatus::Success,
        "status after the retry succeeded"
    );
    ensure_eq!(got.error, None, "task.error after a successful run");
    ensure!(!got.has_error(), "has_error() after a successful run");
    let r = some!(s.get_result(&id).await.ctx("get_result")?, "result");
    ensure_eq!(r.status, TaskStatus::Success, "result.status");
    ensure_eq!(r.error, None, "result.error of a successful run");
    Ok(())
}

async fn release_duplicate_items_apply_once(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.f", now)).await?;
    let c = claim_one(&*s, id, now).await?;
    ensure_eq!(c.task.attempts, 1, "attempts of the claim");
    let l = c.lease_ref();
    let out = s.release(&[l, l], now).await.ctx("release")?;
    ensure_eq!(
        out,
        vec![Outcome::Ok, Outcome::LeaseLost],
        "release of the same lease twice in one batch"
    );
    let t = get(&*s, id).await?;
    ensure_eq!(t.status, TaskStatus::Pending, "status after release");
    ensure_eq!(t.attempts, 0, "one release un-counts exactly one attempt");
    let again = claim_one(&*s, id, now).await?;
    ensure_eq!(again.task.attempts, 1, "attempts after re-claiming");
    Ok(())
}

async fn batch_fail_reports_per_item_outcomes(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let b = enqueue_one(&*s, task("m.b", now)).await?;
    let b_stale = claim_one(&*s, b, now).await?;
    let later = now + LEASE + Duration::seconds(1);
    let a = enqueue_one(&*s, task("m.a", later)).await?;
    // B's lease expired: this claim redelivers it together with A.
    let claimed = claim(&*s, 10, later).await?;
    let mut got: Vec<TaskId> = claimed.iter().map(|x| x.task.id).collect();
    got.sort();
    let mut want = vec![a, b];
    want.sort();
    ensure_eq!(got, want, "the second claim returns A and the expired B");
    let a_lease = some!(
        claimed
            .iter()
            .find(|x| x.task.id == a)
            .map(|x| x.lease_ref()),
        "A's lease"
    );
    let b_before = get(&*s, b).await?;

    let done = later + Duration::seconds(1);
    let err = at_second(TaskError::new(ErrorType::Runtime, "batch failure"), now);
    let item = |lease: LeaseRef| Failure {
        lease,
        error: err.clone(),
        action: FailAction::Fail,
        now: done,
    };
    let out = s
        .fail(vec![item(a_lease), item(b_stale.lease_ref())])
        .await
        .ctx("batch fail")?;
    ensure_eq!(
        out,
        vec![Outcome::Ok, Outcome::LeaseLost],
        "outcomes for [A current, B stale]"
    );

    let a_after = get(&*s, a).await?;
    ensure_eq!(a_after.status, TaskStatus::Failed, "A after its fail");
    ensure_eq!(a_after.error.as_ref(), Some(&err), "A's stored error");
    let r = some!(s.get_result(&a).await.ctx("get_result")?, "A's result");
    ensure_eq!(r.status, TaskStatus::Failed, "A's result status");

    ensure_eq!(
        get(&*s, b).await?,
        b_before,
        "B after the stale item (Running under its new lease, unchanged)"
    );
    ensure!(
        s.get_result(&b).await.ctx("get_result")?.is_none(),
        "the stale item stored no result"
    );
    Ok(())
}

async fn release_of_cancel_requested_task_ends_cancelled(
    s: Arc<dyn Storage>,
) -> Result<(), CaseError> {
    let now = base_now();
    let (id, c) = claimed_and_flagged(&*s, task("m.f", now), now).await?;
    let out = s.release(&[c.lease_ref()], now).await.ctx("release")?;
    ensure_eq!(out, vec![Outcome::Ok], "release of a flagged task");
    ensure_eq!(
        get(&*s, id).await?.status,
        TaskStatus::Cancelled,
        "a released flagged task ends Cancelled, not Pending"
    );
    let r = some!(
        s.get_result(&id).await.ctx("get_result")?,
        "the result of a released flagged task"
    );
    ensure_eq!(r.status, TaskStatus::Cancelled, "result status");
    claim_none(&*s, now, "a cancelled task is never claimed").await?;
    claim_none(
        &*s,
        now + Duration::hours(1),
        "a cancelled task is never claimed",
    )
    .await?;
    Ok(())
}

async fn release_of_cancel_requested_task_gives_back_its_attempt(
    s: Arc<dyn Storage>,
) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.f", now)).await?;
    claim_one(&*s, id, now).await?;
    // The first lease expires; the second claim counts attempt 2.
    let later = now + LEASE;
    let c = claim_one(&*s, id, later).await?;
    ensure_eq!(c.task.attempts, 2, "attempts of the second claim");
    ensure_eq!(
        s.cancel(&id, later).await.ctx("cancel")?,
        CancelOutcome::Requested,
        "cancel of the Running task"
    );
    let at = later + Duration::seconds(1);
    ensure_eq!(
        s.release(&[c.lease_ref()], at).await.ctx("release")?,
        vec![Outcome::Ok],
        "release of the flagged task"
    );
    let t = get(&*s, id).await?;
    ensure_eq!(t.status, TaskStatus::Cancelled, "status after the release");
    ensure_eq!(
        t.attempts,
        1,
        "the released claim's attempt is not counted, though the task ended Cancelled"
    );
    let r = some!(
        s.get_result(&id).await.ctx("get_result")?,
        "the Cancelled result"
    );
    ensure_eq!(
        (r.status, r.attempts, r.finished_at),
        (TaskStatus::Cancelled, 1, at),
        "the Cancelled result (status, attempts = the reduced count, finished_at = the release's now)"
    );
    Ok(())
}

async fn complete_sets_updated_at(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let created = now - Duration::minutes(10);
    let id = enqueue_one(&*s, task("m.once", created)).await?;
    let c = claim_one(&*s, id, now).await?;
    let done = now + Duration::seconds(7);
    ensure_eq!(
        complete(&*s, c.lease_ref(), done, Some(b"1")).await?,
        Outcome::Ok,
        "complete"
    );
    ensure_eq!(
        get(&*s, id).await?.updated_at,
        done,
        "updated_at of a completed task = the completion's now"
    );

    let mut t = task("m.tick", created);
    t.schedule.interval = Some(Duration::hours(1));
    let tick = enqueue_one(&*s, t).await?;
    let c = claim_one(&*s, tick, now).await?;
    let done = now + Duration::seconds(9);
    let out = s
        .complete(vec![Completion {
            lease: c.lease_ref(),
            result: None,
            now: done,
            next_run: Some(now + Duration::hours(1)),
        }])
        .await
        .ctx("complete with next_run")?;
    ensure_eq!(out, vec![Outcome::Ok], "complete with next_run");
    ensure_eq!(
        get(&*s, tick).await?.updated_at,
        done,
        "updated_at of a re-armed interval task = the completion's now"
    );
    Ok(())
}

async fn fail_sets_updated_at(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let created = now - Duration::minutes(10);
    let next = now + Duration::hours(1);
    for (i, action) in [
        FailAction::Retry { at: next },
        FailAction::NextRun { at: next },
        FailAction::Fail,
    ]
    .into_iter()
    .enumerate()
    {
        let mut t = task(&format!("m.f{i}"), created);
        if matches!(action, FailAction::NextRun { .. }) {
            t.schedule.interval = Some(Duration::hours(1));
        }
        let id = enqueue_one(&*s, t).await?;
        let c = claim_one(&*s, id, now).await?;
        let at = now + Duration::seconds(5 + i as i64);
        ensure_eq!(
            fail_with(&*s, c.lease_ref(), action, at, "boom").await?,
            Outcome::Ok,
            "fail ({action:?})"
        );
        ensure_eq!(
            get(&*s, id).await?.updated_at,
            at,
            "updated_at after fail ({action:?}) = the fail's now"
        );
    }
    Ok(())
}

async fn release_sets_updated_at(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let created = now - Duration::minutes(10);
    // A flagged task, released: it ends Cancelled.
    let (flagged, c) = claimed_and_flagged(&*s, task("m.flagged", created), now).await?;
    let at = now + Duration::seconds(8);
    ensure_eq!(
        s.release(&[c.lease_ref()], at).await.ctx("release")?,
        vec![Outcome::Ok],
        "release of the flagged task"
    );
    ensure_eq!(
        get(&*s, flagged).await?.updated_at,
        at,
        "updated_at of a released flagged task = the release's now"
    );
    // A plain one: back to Pending.
    let id = enqueue_one(&*s, task("m.plain", created)).await?;
    let c = claim_one(&*s, id, now).await?;
    let at = now + Duration::seconds(7);
    ensure_eq!(
        s.release(&[c.lease_ref()], at).await.ctx("release")?,
        vec![Outcome::Ok],
        "release"
    );
    ensure_eq!(
        get(&*s, id).await?.updated_at,
        at,
        "updated_at of a released task = the release's now"
    );
    Ok(())
}

async fn heartbeat_extends_an_expired_lease_not_yet_reclaimed(
    s: Arc<dyn Storage>,
) -> Result<(), CaseError> {
    // An hour in the past: the lease has run out by any wall clock too, so a backend
    // that consults its own clock instead of the fencing token is caught.
    let now = base_now() - Duration::hours(1);
    let id = enqueue_one(&*s, task("m.slow", now - Duration::minutes(1))).await?;
    let c = claim_one(&*s, id, now).await?;
    let before = get(&*s, id).await?;
    // The lease ended at now + LEASE; nobody re-claimed the task since.
    let until = now + LEASE + Duration::minutes(2);
    ensure_eq!(
        s.heartbeat(&[c.lease_ref()], until)
            .await
            .ctx("heartbeat")?,
        vec![Outcome::Ok],
        "heartbeat of a lease that ran out but was not re-claimed"
    );
    claim_none(
        &*s,
        now + LEASE + Duration::seconds(1),
        "the lease was extended past its old end",
    )
    .await?;
    claim_none(&*s, until - Duration::seconds(1), "the lease was extended").await?;
    let after = get(&*s, id).await?;
    ensure_eq!(
        (after.status, after.attempts),
        (TaskStatus::Running, 1),
        "status and attempts of the extended task"
    );
    ensure_eq!(
        after.updated_at,
        before.updated_at,
        "a heartbeat leaves updated_at unchanged"
    );
    ensure_eq!(
        complete(&*s, c.lease_ref(), until - Duration::seconds(1), None).await?,
        Outcome::Ok,
        "complete within the extended lease"
    );
    Ok(())
}

async fn fail_defer_gives_back_the_attempt(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.unknown", now)).await?;
    let c = claim_one(&*s, id, now).await?;
    ensure_eq!(c.task.attempts, 1, "attempts of the claim");
    let later = now + Duration::seconds(10);
    ensure_eq!(
        fail_with(
            &*s,
            c.lease_ref(),
            FailAction::Defer { at: later },
            now,
            "no handler"
        )
        .await?,
        Outcome::Ok,
        "defer with the current token"
    );
    let t = get(&*s, id).await?;
    ensure_eq!(t.status, TaskStatus::Pending, "status after defer");
    ensure_eq!(t.attempts, 0, "the deferred claim's attempt is not counted");
    ensure_eq!(t.schedule.eta, Some(later), "eta after defer");
    ensure!(
        t.error.is_some(),
        "the deferral's error is stored on the task"
    );
    ensure!(
        s.get_result(&id).await.ctx("get_result")?.is_none(),
        "a deferral stores no result"
    );
    claim_none(&*s, later - Duration::seconds(1), "deferred until later").await?;
    let again = claim_one(&*s, id, later).await?;
    ensure_eq!(
        again.task.attempts,
        1,
        "the next claim is the first counted attempt"
    );

    // A flagged task that is deferred ends Cancelled, its attempt still not counted.
    let (flagged, c) = claimed_and_flagged(&*s, task("m.flagged", now), now).await?;
    ensure_eq!(
        fail_with(
            &*s,
            c.lease_ref(),
            FailAction::Defer { at: later },
            now,
            "no handler"
        )
        .await?,
        Outcome::Ok,
        "defer of a flagged task"
    );
    let t = get(&*s, flagged).await?;
    ensure_eq!(
        t.status,
        TaskStatus::Cancelled,
        "a flagged deferral ends Cancelled"
    );
    ensure_eq!(t.attempts, 0, "its attempt is not counted");
    let r = some!(
        s.get_result(&flagged).await.ctx("get_result")?,
        "the Cancelled result"
    );
    ensure_eq!(r.status, TaskStatus::Cancelled, "result status");
    ensure_eq!(r.attempts, 0, "the result's attempts");
    Ok(())
}

/// Records one start, returning its outcome.
async fn start_one(s: &dyn Storage, lease: LeaseRef) -> Result<Outcome, CaseError> {
    let out = s.start(&[lease]).await.ctx("start")?;
    ensure_eq!(out.len(), 1, "start returns one outcome per item");
    Ok(out[0])
}

async fn start_counts_runs_under_the_fencing_rule(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let mut t = task("m.f", now);
    // Stored as given.
    t.runs = 2;
    let id = enqueue_one(&*s, t).await?;
    ensure_eq!(get(&*s, id).await?.runs, 2, "runs as enqueued");
    let first = claim_one(&*s, id, now).await?;
    ensure_eq!(first.task.runs, 2, "the claim keeps runs (claimed task)");
    ensure_eq!(get(&*s, id).await?.runs, 2, "the claim keeps runs");
    let before = get(&*s, id).await?;
    ensure_eq!(
        start_one(&*s, first.lease_ref()).await?,
        Outcome::Ok,
        "start with the current token"
    );
    let after = get(&*s, id).await?;
    ensure_eq!(after.runs, 3, "runs after a start");
    let mut same = after.clone();
    same.runs = before.runs;
    ensure_eq!(same, before, "start changes nothing but runs");
    // The lease is untouched: no redelivery before it ends, redelivery after.
    claim_none(
        &*s,
        now + LEASE - Duration::seconds(1),
        "the lease is still held",
    )
    .await?;
    let later = now + LEASE + Duration::seconds(1);
    let second = claim_one(&*s, id, later).await?;
    ensure_eq!(second.task.runs, 3, "a redelivery keeps runs");
    let missing = LeaseRef {
        task_id: TaskId::new(),
        token: second.lease.token,
    };
    ensure_eq!(
        s.start(&[first.lease_ref(), second.lease_ref(), missing])
            .await
            .ctx("start")?,
        vec![Outcome::LeaseLost, Outcome::Ok, Outcome::NotFound],
        "start of a stale, the current and an unknown lease"
    );
    ensure_eq!(
        get(&*s, id).await?.runs,
        4,
        "only the current lease's start counts"
    );
    let until = later + Duration::minutes(2);
    ensure_eq!(
        s.heartbeat(&[second.lease_ref()], until)
            .await
            .ctx("heartbeat")?,
        vec![Outcome::Ok],
        "heartbeat"
    );
    ensure_eq!(get(&*s, id).await?.runs, 4, "a heartbeat keeps runs");
    ensure_eq!(
        fail_with(
            &*s,
            second.lease_ref(),
            FailAction::Retry { at: later },
            later,
            "boom"
        )
        .await?,
        Outcome::Ok,
        "fail with Retry"
    );
    ensure_eq!(get(&*s, id).await?.runs, 4, "a Retry keeps runs");
    let third = claim_one(&*s, id, later).await?;
    ensure_eq!(
        fail_with(
            &*s,
            third.lease_ref(),
            FailAction::Defer { at: later },
            later,
            "no handler"
        )
        .await?,
        Outcome::Ok,
        "fail with Defer"
    );
    ensure_eq!(get(&*s, id).await?.runs, 4, "a Defer keeps runs");
    let fourth = claim_one(&*s, id, later).await?;
    ensure_eq!(
        s.release(&[fourth.lease_ref()], later)
            .await
            .ctx("release")?,
        vec![Outcome::Ok],
        "release"
    );
    ensure_eq!(get(&*s, id).await?.runs, 4, "a release keeps runs");
    Ok(())
}

async fn runs_start_over_with_each_series_and_on_reschedule(
    s: Arc<dyn Storage>,
) -> Result<(), CaseError> {
    let now = base_now();
    let mut t = task("m.every", now);
    t.schedule.interval = Some(Duration::minutes(1));
    let id = enqueue_one(&*s, t).await?;

    // complete with next_run: a new series.
    let c = claim_one(&*s, id, now).await?;
    ensure_eq!(start_one(&*s, c.lease_ref()).await?, Outcome::Ok, "start");
    ensure_eq!(get(&*s, id).await?.runs, 1, "runs after a start");
    let slot = now + Duration::minutes(1);
    let out = s
        .complete(vec![Completion {
            lease: c.lease_ref(),
            result: None,
            now,
            next_run: Some(slot),
        }])
        .await
        .ctx("complete")?;
    ensure_eq!(out, vec![Outcome::Ok], "complete with next_run");
    let t = get(&*s, id).await?;
    ensure_eq!(
        (t.attempts, t.runs),
        (0, 0),
        "attempts and runs at the next slot"
    );

    // fail with NextRun: a new series too.
    let c = claim_one(&*s, id, slot).await?;
    ensure_eq!(start_one(&*s, c.lease_ref()).await?, Outcome::Ok, "start");
    let next = slot + Duration::minutes(1);
    ensure_eq!(
        fail_with(
            &*s,
            c.lease_ref(),
            FailAction::NextRun { at: next },
            slot,
            "gave up"
        )
        .await?,
        Outcome::Ok,
        "fail with NextRun"
    );
    let t = get(&*s, id).await?;
    ensure_eq!(
        (t.attempts, t.runs),
        (0, 0),
        "attempts and runs after NextRun"
    );

    // reschedule: a fresh allowance, attempts kept.
    let c = claim_one(&*s, id, next).await?;
    ensure_eq!(start_one(&*s, c.lease_ref()).await?, Outcome::Ok, "start");
    ensure_eq!(
        start_one(&*s, c.lease_ref()).await?,
        Outcome::Ok,
        "a second start"
    );
    ensure_eq!(get(&*s, id).await?.runs, 2, "runs after two starts");
    let later = next + Duration::minutes(5);
    s.reschedule(&id, later, next).await.ctx("reschedule")?;
    let t = get(&*s, id).await?;
    ensure_eq!(
        (t.attempts, t.runs),
        (1, 0),
        "attempts kept and runs reset by reschedule"
    );
    Ok(())
}
