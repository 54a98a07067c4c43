//! The migration guide's validation checklists, as far as they concern storage:
//! "Storage Interface Migration" (get_task / reschedule), "Task Interval Type
//! Migration" and "TaskError Model Migration".

use super::{
    Case, LEASE, at_second, base_now, broken_case, case, claim_none, claim_one, complete, enqueue,
    enqueue_one, fail_item, get, grouped, task,
};
use crate::check::{CaseError, Ctx};
use omniq_core::{
    Completion, ErrorType, FailAction, Failure, IntoInterval, JsonSerializer, Outcome, Payload,
    Serializer, Severity, Storage, StorageErrorKind, TaskError, TaskId, TaskStatus,
};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

pub(super) fn cases() -> Vec<Case> {
    [
        grouped(
            "Storage interface",
            vec![
            case!(
                get_task_returns_stored_task,
                "`get_task()` returns correct task for valid IDs",
                ["T6", "T1", "M1", "M3"]
            ),
            case!(
                get_task_returns_none_for_missing_id,
                "`get_task()` returns `None` for non-existent IDs",
                ["T6"]
            ),
            broken_case!(
                get_task_raises_storage_error_on_failure,
                "`get_task()` raises `StorageError` on retrieval failures",
                ["T6", "T15"]
            ),
            case!(
                reschedule_updates_eta,
                "`reschedule()` updates task ETA correctly",
                ["T7"]
            ),
            case!(
                reschedule_sets_status_pending,
                "`reschedule()` sets task status to `PENDING`",
                ["T7", "M2"]
            ),
            case!(
                reschedule_fences_running_task,
                "Rescheduling a Running task sets it Pending and fences off its worker's lease",
                ["T7", "T4", "S2"]
            ),
            case!(
                reschedule_keeps_attempts_and_error,
                "Rescheduling a Failed task keeps its attempts, its error and its latest result",
                ["T7", "M5", "T8"]
            ),
            case!(
                reschedule_missing_task_is_not_found,
                "`reschedule()` raises `NotFoundError` for missing tasks",
                ["T7", "T15"]
            ),
            broken_case!(
                reschedule_raises_storage_error_on_failure,
                "`reschedule()` raises `StorageError` on update failures",
                ["T7", "T15"]
            ),
            case!(
                reschedule_finished_task_is_conflict,
                "Rescheduling a Success or Cancelled task is a Conflict error, never a silent write",
                ["T7", "M2", "T15"]
            ),
            case!(
                retry_fail_reschedules_with_attempts_kept,
                "Retry logic works with your storage backend",
                ["T5", "R2"]
            ),
            case!(
                interval_completion_reschedules_next_run,
                "Interval tasks reschedule correctly",
                ["T4", "R5", "M3"]
            ),
            case!(
                task_lifecycle_enqueue_claim_complete,
                "All existing functionality still works",
                ["T1", "T2", "T4", "T8"]
            ),
            ],
        ),
        grouped(
            "Task interval type",
            vec![
            case!(
                interval_round_trips,
                "Update any custom storage backends to handle `timedelta` serialization",
                ["M3", "M4", "M9"]
            ),
            case!(
                old_records_with_int_interval_still_work,
                "Test backward compatibility with existing `int` intervals",
                ["M10", "M3", "T6"]
            ),
            case!(
                interval_final_failure_moves_to_next_run,
                "Verify interval tasks reschedule correctly",
                ["T5", "R5"]
            ),
            ],
        ),
        grouped(
            "TaskError model",
            vec![
            case!(
                task_error_persisted_on_task_and_result,
                "Storage backends handle TaskError correctly",
                ["T5", "T8", "M5"]
            ),
            case!(
                task_error_context_persisted,
                "Context information preserved in storage",
                ["T5", "M5"]
            ),
            case!(
                task_error_retry_count_survives_retries,
                "Retry logic functions correctly with TaskError",
                ["T5", "R2", "M5"]
            ),
            case!(
                old_records_without_error_still_work,
                "Backward compatibility maintained for tasks without errors",
                ["M10", "T6"]
            ),
            ],
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A task with every field set to something other than its default.
async fn get_task_returns_stored_task(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let mut t = task("reports.build", now);
    // Not UTF-8, with a NUL: payloads are bytes, not text.
    t.args = Payload(vec![0x92, 0x00, 0xff, 0xfe, b'a', 0x80]);
    t.queue = "round-trip".into();
    t.priority = 7;
    t.schedule.eta = Some(now + Duration::hours(1));
    t.schedule.interval = Some(Duration::minutes(90));
    t.max_retries = 5;
    t.timeout = Some(Duration::seconds(45));
    t.backoff = Some(omniq_core::Backoff::Exponential {
        base: Duration::milliseconds(500),
        cap: Duration::minutes(5),
        jitter: 0.2,
    });
    if s.capabilities().unique_keys {
        t.unique_key = Some("report-2024-01".into());
    }
    let id = enqueue_one(&*s, t.clone()).await?;
    let got = get(&*s, id).await?;

    ensure_eq!(got.id, t.id, "id");
    ensure_eq!(got.func_path, t.func_path, "func_path");
    ensure_eq!(got.args, t.args, "args bytes");
    ensure_eq!(got.queue, t.queue, "queue");
    ensure_eq!(got.priority, t.priority, "priority");
    ensure_eq!(got.status, TaskStatus::Pending, "status");
    ensure_eq!(got.schedule.eta, t.schedule.eta, "schedule.eta");
    ensure_eq!(
        got.schedule.interval,
        t.schedule.interval,
        "schedule.interval"
    );
    ensure_eq!(got.max_retries, t.max_retries, "max_retries");
    ensure_eq!(got.timeout, t.timeout, "timeout");
    ensure_eq!(got.attempts, 0, "attempts");
    ensure_eq!(got.runs, t.runs, "runs");
    ensure_eq!(got.created_at, t.created_at, "created_at");
    ensure_eq!(got.last_attempt_at, None, "last_attempt_at");
    ensure_eq!(got.error, None, "error");
    ensure_eq!(got.unique_key, t.unique_key, "unique_key");
    ensure_eq!(got.backoff, t.backoff, "the task's own back-off (R2)");
    Ok(())
}

async fn get_task_returns_none_for_missing_id(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    // Not empty: a stored neighbour must not be returned for the wrong id.
    enqueue_one(&*s, task("m.f", now)).await?;
    let missing = TaskId::new();
    let got = s.get_task(&missing).await.ctx("get_task of a missing id")?;
    ensure!(
        got.is_none(),
        "get_task({missing}) of an unknown id must be Ok(None), got {got:?}"
    );
    Ok(())
}

async fn get_task_raises_storage_error_on_failure(
    broken: Arc<dyn Storage>,
) -> Result<(), CaseError> {
    let id = TaskId::new();
    match broken.get_task(&id).await {
        // A NotFound is an answer ("no such task"), not a failure: the read itself must fail.
        Err(e) if e.kind() == StorageErrorKind::NotFound => Err(CaseError::new(format!(
            "get_task on a broken instance must fail with a StorageError other than NotFound, got NotFound: {e}"
        ))),
        Err(_) => Ok(()),
        Ok(v) => Err(CaseError::new(format!(
            "get_task on a broken instance must fail with a StorageError, got Ok({v:?})"
        ))),
    }
}

async fn reschedule_updates_eta(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let mut t = task("m.f", now);
    t.schedule.eta = Some(now + Duration::hours(1));
    let id = enqueue_one(&*s, t).await?;

    let new_eta = now + Duration::minutes(1);
    let at = now + Duration::seconds(7);
    s.reschedule(&id, new_eta, at).await.ctx("reschedule")?;
    let got = get(&*s, id).await?;
    ensure_eq!(got.updated_at, at, "updated_at = the reschedule's now");
    ensure_eq!(
        got.schedule.eta,
        Some(new_eta),
        "schedule.eta after reschedule"
    );
    ensure_eq!(got.status, TaskStatus::Pending, "status after reschedule");
    ensure_eq!(got.attempts, 0, "attempts after reschedule");
    ensure!(
        got.updated_at >= got.created_at,
        "updated_at {} must not be before created_at {}",
        got.updated_at,
        got.created_at
    );

    // Claims honour the new eta.
    claim_none(&*s, new_eta - Duration::seconds(1), "before the new eta").await?;
    claim_one(&*s, id, new_eta).await?;
    Ok(())
}

async fn reschedule_sets_status_pending(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.f", now)).await?;
    let c = claim_one(&*s, id, now).await?;
    let err = at_second(TaskError::new(ErrorType::Runtime, "boom"), now);
    let out = fail_item(
        &*s,
        Failure {
            lease: c.lease_ref(),
            error: err,
            action: FailAction::Fail,
            now,
        },
    )
    .await?;
    ensure_eq!(out, Outcome::Ok, "final fail with the current token");
    ensure_eq!(
        get(&*s, id).await?.status,
        TaskStatus::Failed,
        "status after final fail"
    );

    // Manual retry of a Failed task (M2: Failed -> Pending).
    let at = now + Duration::minutes(5);
    s.reschedule(&id, at, now)
        .await
        .ctx("reschedule of a Failed task")?;
    let got = get(&*s, id).await?;
    ensure_eq!(got.status, TaskStatus::Pending, "status after reschedule");
    ensure_eq!(got.schedule.eta, Some(at), "schedule.eta after reschedule");
    ensure_eq!(got.attempts, 1, "attempts are kept by reschedule");
    let again = claim_one(&*s, id, at).await?;
    ensure_eq!(again.task.attempts, 2, "attempts of the re-claimed task");
    Ok(())
}

async fn reschedule_fences_running_task(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.f", now)).await?;
    let first = claim_one(&*s, id, now).await?;

    let at = now + Duration::seconds(10);
    s.reschedule(&id, at, now)
        .await
        .ctx("reschedule of a Running task")?;
    let got = get(&*s, id).await?;
    ensure_eq!(
        got.status,
        TaskStatus::Pending,
        "status after rescheduling a Running task"
    );
    ensure_eq!(got.schedule.eta, Some(at), "schedule.eta");
    ensure_eq!(got.attempts, 1, "attempts are kept");

    // The old worker's lease is gone: its completion is fenced off.
    let out = complete(
        &*s,
        first.lease_ref(),
        now + Duration::seconds(1),
        Some(b"late"),
    )
    .await?;
    ensure_eq!(
        out,
        Outcome::LeaseLost,
        "complete with the pre-reschedule token"
    );
    let after = get(&*s, id).await?;
    ensure_eq!(
        after.status,
        TaskStatus::Pending,
        "status after the fenced completion"
    );
    ensure!(
        s.get_result(&id).await.ctx("get_result")?.is_none(),
        "a fenced completion must not store a result"
    );

    let second = claim_one(&*s, id, at).await?;
    ensure!(
        second.lease.token > first.lease.token,
        "a new claim must issue a greater token: first {}, second {}",
        first.lease.token,
        second.lease.token
    );
    ensure_eq!(second.task.attempts, 2, "attempts of the second claim");
    Ok(())
}

async fn reschedule_keeps_attempts_and_error(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.f", now)).await?;
    let c = claim_one(&*s, id, now).await?;
    let err = at_second(TaskError::new(ErrorType::Network, "connection reset"), now);
    let out = fail_item(
        &*s,
        Failure {
            lease: c.lease_ref(),
            error: err.clone(),
            action: FailAction::Fail,
            now,
        },
    )
    .await?;
    ensure_eq!(out, Outcome::Ok, "final fail");
    let result = s.get_result(&id).await.ctx("get_result")?;
    ensure!(result.is_some(), "a Failed run stores a result");

    let at = now + Duration::seconds(3);
    s.reschedule(&id, now + Duration::minutes(5), at)
        .await
        .ctx("reschedule of a Failed task")?;
    let got = get(&*s, id).await?;
    ensure_eq!(got.status, TaskStatus::Pending, "status after reschedule");
    ensure_eq!(got.attempts, 1, "attempts are kept");
    ensure_eq!(got.error, Some(err), "the error is kept");
    ensure_eq!(
        s.get_result(&id).await.ctx("get_result")?,
        result,
        "the latest result is kept"
    );
    Ok(())
}

async fn reschedule_missing_task_is_not_found(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    enqueue_one(&*s, task("m.f", now)).await?;
    let missing = TaskId::new();
    let e = ensure_kind!(
        s.reschedule(&missing, now, now).await,
        NotFound,
        "reschedule of an unknown id"
    );
    ensure!(e.is_not_found(), "is_not_found() must agree with the kind");
    Ok(())
}

async fn reschedule_raises_storage_error_on_failure(
    broken: Arc<dyn Storage>,
) -> Result<(), CaseError> {
    let id = TaskId::new();
    match broken.reschedule(&id, base_now(), base_now()).await {
        // A NotFound would pass for a healthy store that lacks the id: the update itself
        // must fail.
        Err(e) if e.kind() == StorageErrorKind::NotFound => Err(CaseError::new(format!(
            "reschedule on a broken instance must fail with a StorageError other than NotFound, got NotFound: {e}"
        ))),
        Err(_) => Ok(()),
        Ok(()) => Err(CaseError::new(
            "reschedule on a broken instance must fail with a StorageError, got Ok(())",
        )),
    }
}

async fn reschedule_finished_task_is_conflict(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let done = enqueue_one(&*s, task("m.done", now)).await?;
    let c = claim_one(&*s, done, now).await?;
    ensure_eq!(
        complete(&*s, c.lease_ref(), now, Some(b"1")).await?,
        Outcome::Ok,
        "complete"
    );
    let later = now + Duration::minutes(1);
    ensure_kind!(
        s.reschedule(&done, later, now).await,
        Conflict,
        "reschedule of a Success task"
    );
    ensure_eq!(
        get(&*s, done).await?.status,
        TaskStatus::Success,
        "status stays Success"
    );

    let cancelled = enqueue_one(&*s, task("m.cancelled", now)).await?;
    s.cancel(&cancelled, now).await.ctx("cancel")?;
    ensure_kind!(
        s.reschedule(&cancelled, later, now).await,
        Conflict,
        "reschedule of a Cancelled task"
    );
    ensure_eq!(
        get(&*s, cancelled).await?.status,
        TaskStatus::Cancelled,
        "status stays Cancelled"
    );
    Ok(())
}

async fn retry_fail_reschedules_with_attempts_kept(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.flaky", now)).await?;
    let c = claim_one(&*s, id, now).await?;
    let err = at_second(TaskError::new(ErrorType::Network, "connection reset"), now);
    let retry_at = now + Duration::seconds(30);
    let out = fail_item(
        &*s,
        Failure {
            lease: c.lease_ref(),
            error: err.clone(),
            action: FailAction::Retry { at: retry_at },
            now,
        },
    )
    .await?;
    ensure_eq!(out, Outcome::Ok, "fail with the current token");

    let got = get(&*s, id).await?;
    ensure_eq!(
        got.status,
        TaskStatus::Pending,
        "status while a retry is pending"
    );
    ensure_eq!(got.schedule.eta, Some(retry_at), "eta = the retry's time");
    ensure_eq!(got.attempts, 1, "attempts are kept for the retry");
    ensure_eq!(
        got.error.as_ref(),
        Some(&err),
        "the error is stored on the task"
    );
    let result = s.get_result(&id).await.ctx("get_result")?;
    ensure!(
        result.is_none(),
        "a retry stores no result (no intermediate failure), got {result:?}"
    );

    claim_none(
        &*s,
        retry_at - Duration::seconds(1),
        "the retry is not due yet",
    )
    .await?;
    let again = claim_one(&*s, id, retry_at).await?;
    ensure_eq!(again.task.attempts, 2, "attempts of the retry's claim");
    ensure!(
        again.lease.token > c.lease.token,
        "the retry's claim must carry a greater token"
    );
    Ok(())
}

async fn interval_completion_reschedules_next_run(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let mut t = task("m.tick", now);
    t.schedule.interval = Some(Duration::minutes(1));
    let id = enqueue_one(&*s, t).await?;

    let mut slot = now;
    for run in 1..=2u8 {
        let c = claim_one(&*s, id, slot).await?;
        ensure_eq!(c.task.attempts, 1, "attempts of run {run}");
        let next = slot + Duration::minutes(1);
        let out = s
            .complete(vec![Completion {
                lease: c.lease_ref(),
                result: Some(Payload(vec![run])),
                now: slot + Duration::seconds(1),
                next_run: Some(next),
            }])
            .await
            .ctx("complete with next_run")?;
        ensure_eq!(out, vec![Outcome::Ok], "complete of run {run}");

        let got = get(&*s, id).await?;
        ensure_eq!(got.id, id, "the series keeps its id");
        ensure_eq!(got.status, TaskStatus::Pending, "status after run {run}");
        ensure_eq!(
            got.schedule.eta,
            Some(next),
            "eta = next slot after run {run}"
        );
        ensure_eq!(got.attempts, 0, "attempts reset after run {run}");
        ensure_eq!(
            got.schedule.interval,
            Some(Duration::minutes(1)),
            "interval kept after run {run}"
        );

        let r = some!(
            s.get_result(&id).await.ctx("get_result")?,
            "result of run {run}"
        );
        ensure_eq!(r.status, TaskStatus::Success, "result status of run {run}");
        ensure_eq!(
            r.result,
            Some(Payload(vec![run])),
            "latest result is run {run}'s"
        );

        claim_none(
            &*s,
            next - Duration::seconds(1),
            "the next slot is not due yet",
        )
        .await?;
        slot = next;
    }
    Ok(())
}

async fn task_lifecycle_enqueue_claim_complete(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.f", now)).await?;
    ensure_eq!(
        get(&*s, id).await?.status,
        TaskStatus::Pending,
        "status after enqueue"
    );

    let c = claim_one(&*s, id, now).await?;
    ensure_eq!(c.task.attempts, 1, "attempts after the claim");
    ensure_eq!(
        c.task.last_attempt_at,
        Some(now),
        "last_attempt_at = claim time"
    );
    let running = get(&*s, id).await?;
    ensure_eq!(
        running.status,
        TaskStatus::Running,
        "stored status after the claim"
    );
    ensure_eq!(running.attempts, 1, "stored attempts after the claim");
    ensure_eq!(running.last_attempt_at, Some(now), "stored last_attempt_at");

    let done_at = now + Duration::seconds(2);
    ensure_eq!(
        complete(&*s, c.lease_ref(), done_at, Some(b"{\"ok\":true}")).await?,
        Outcome::Ok,
        "complete"
    );
    let got = get(&*s, id).await?;
    ensure_eq!(got.status, TaskStatus::Success, "status after complete");
    let r = some!(
        s.get_result(&id).await.ctx("get_result")?,
        "result after complete"
    );
    ensure_eq!(r.task_id, id, "result.task_id");
    ensure_eq!(r.finished_at, done_at, "result.finished_at");
    claim_none(&*s, done_at + LEASE * 2, "a finished task is never claimed").await?;
    Ok(())
}

async fn interval_round_trips(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let intervals = [
        ("sub-second", Duration::milliseconds(1500)),
        (
            "days and hours",
            Duration::days(2) + Duration::hours(3) + Duration::milliseconds(250),
        ),
        (
            "integer seconds",
            3600.into_interval()
                .map_err(|e| CaseError::new(format!("3600.into_interval(): {e}")))?,
        ),
    ];
    let mut tasks = Vec::new();
    for (_, d) in &intervals {
        let mut t = task("m.every", now);
        t.schedule.interval = Some(*d);
        t.schedule.eta = Some(now + Duration::days(1));
        tasks.push(t);
    }
    let ids = enqueue(&*s, tasks).await?;
    for ((what, d), id) in intervals.iter().zip(ids) {
        let got = get(&*s, id).await?;
        ensure_eq!(
            got.schedule.interval,
            Some(*d),
            "{what} interval after a round trip"
        );
    }
    Ok(())
}

/// Decodes an old JSON record (the guide's fixtures) with a fresh id.
fn old_record(json: &str) -> Result<omniq_core::Task, CaseError> {
    let json = json.replace("{id}", &TaskId::new().to_string());
    JsonSerializer
        .decode_task(json.as_bytes())
        .map_err(|e| CaseError::new(format!("decoding the old record {json} failed: {e}")))
}

async fn old_records_with_int_interval_still_work(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let t = old_record(
        r#"{"id":"{id}","func_path":"m.f","created_at":"2024-01-01T00:00:00Z","interval":3600,"error":"boom"}"#,
    )?;
    ensure_eq!(
        t.schedule.interval,
        Some(Duration::hours(1)),
        "decoded top-level int interval"
    );
    let id = enqueue_one(&*s, t.clone()).await?;
    let got = get(&*s, id).await?;
    ensure_eq!(
        got.schedule.interval,
        Some(Duration::hours(1)),
        "schedule.interval of the stored old record"
    );
    let err = some!(
        got.error.as_ref(),
        "the old string error, stored as a TaskError"
    );
    ensure_eq!(err.message.as_str(), "boom", "TaskError.message");
    ensure_eq!(err.error_type, ErrorType::Unknown, "TaskError.error_type");
    ensure_eq!(got.func_path.as_str(), "m.f", "func_path");
    ensure_eq!(got.created_at, t.created_at, "created_at");

    // It still runs on its interval.
    let now = base_now();
    let c = claim_one(&*s, id, now).await?;
    let next = now + Duration::hours(1);
    let out = s
        .complete(vec![Completion {
            lease: c.lease_ref(),
            result: None,
            now,
            next_run: Some(next),
        }])
        .await
        .ctx("complete with next_run")?;
    ensure_eq!(out, vec![Outcome::Ok], "complete");
    let after = get(&*s, id).await?;
    ensure_eq!(after.schedule.eta, Some(next), "eta after the run");
    ensure_eq!(after.status, TaskStatus::Pending, "status after the run");
    Ok(())
}

async fn old_records_without_error_still_work(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let plain = old_record(
        r#"{"id":"{id}","func_path":"m.g","args":"[1,2]","created_at":"2024-01-01T00:00:00Z"}"#,
    )?;
    let null_error = old_record(
        r#"{"id":"{id}","func_path":"m.h","created_at":"2024-01-01T00:00:00Z","error":null,"interval":0}"#,
    )?;
    let ids = enqueue(&*s, vec![plain.clone(), null_error.clone()]).await?;
    for (t, id) in [plain, null_error].iter().zip(ids) {
        let got = get(&*s, id).await?;
        ensure_eq!(got.error, None, "error of old record {}", t.func_path);
        ensure!(
            !got.has_error(),
            "has_error() of old record {}",
            t.func_path
        );
        ensure_eq!(
            got.schedule.interval,
            None,
            "interval of old record {}",
            t.func_path
        );
        ensure_eq!(got.args, t.args, "args of old record {}", t.func_path);
        ensure_eq!(
            got.status,
            TaskStatus::Pending,
            "status of old record {}",
            t.func_path
        );
    }
    Ok(())
}

async fn interval_final_failure_moves_to_next_run(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let mut t = task("m.tick", now);
    t.schedule.interval = Some(Duration::minutes(5));
    let id = enqueue_one(&*s, t).await?;
    let c = claim_one(&*s, id, now).await?;
    let err = at_second(TaskError::new(ErrorType::Runtime, "run failed"), now);
    let next = now + Duration::minutes(5);
    let out = fail_item(
        &*s,
        Failure {
            lease: c.lease_ref(),
            error: err.clone(),
            action: FailAction::NextRun { at: next },
            now,
        },
    )
    .await?;
    ensure_eq!(out, Outcome::Ok, "fail with the current token");

    let got = get(&*s, id).await?;
    ensure_eq!(got.status, TaskStatus::Pending, "status after a failed run");
    ensure_eq!(got.schedule.eta, Some(next), "eta = next slot");
    ensure_eq!(got.attempts, 0, "attempts reset for the next run");
    let r = some!(
        s.get_result(&id).await.ctx("get_result")?,
        "the failed run's result"
    );
    ensure_eq!(
        r.status,
        TaskStatus::Failed,
        "result status of the failed run"
    );
    ensure_eq!(
        r.error.as_ref(),
        Some(&err),
        "result error of the failed run"
    );
    claim_none(&*s, next - Duration::seconds(1), "next slot not due yet").await?;
    claim_one(&*s, id, next).await?;
    Ok(())
}

/// A TaskError with every optional part filled in.
fn rich_error(now: OffsetDateTime) -> TaskError {
    let mut e = TaskError::new(ErrorType::Resource, "database pool exhausted")
        .with_max_retries(0)
        .with_retryable(false)
        .with_severity(Severity::Critical)
        .with_context("worker", "w-17")
        .with_context("pool_size", 32)
        .with_context(
            "nested",
            serde_json::json!({"queues": ["a", "b"], "ratio": 0.5}),
        );
    e.traceback = Some("pool exhausted\n  0: caused by: timed out".into());
    e.exception_type = Some("sqlx::Error".into());
    at_second(e, now)
}

async fn task_error_persisted_on_task_and_result(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.f", now)).await?;
    let c = claim_one(&*s, id, now).await?;
    let err = rich_error(now);
    let out = fail_item(
        &*s,
        Failure {
            lease: c.lease_ref(),
            error: err.clone(),
            action: FailAction::Fail,
            now,
        },
    )
    .await?;
    ensure_eq!(out, Outcome::Ok, "final fail");

    let got = get(&*s, id).await?;
    ensure_eq!(got.status, TaskStatus::Failed, "status after final fail");
    ensure!(
        got.is_failed() && got.has_error(),
        "is_failed() and has_error()"
    );
    ensure_eq!(got.error.as_ref(), Some(&err), "TaskError on the task");
    let r = some!(
        s.get_result(&id).await.ctx("get_result")?,
        "result after final fail"
    );
    ensure_eq!(r.status, TaskStatus::Failed, "result status");
    ensure_eq!(r.error.as_ref(), Some(&err), "TaskError on the result");
    ensure_eq!(r.attempts, 1, "result attempts");
    ensure_eq!(r.result, None, "a failed result carries no payload");
    Ok(())
}

async fn task_error_context_persisted(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.f", now)).await?;
    let err = rich_error(now);

    // Retry first: the error on the task must keep its context while pending.
    let c = claim_one(&*s, id, now).await?;
    let out = fail_item(
        &*s,
        Failure {
            lease: c.lease_ref(),
            error: err.clone(),
            action: FailAction::Retry { at: now },
            now,
        },
    )
    .await?;
    ensure_eq!(out, Outcome::Ok, "fail with Retry");
    let pending = get(&*s, id).await?;
    let stored = some!(pending.error.as_ref(), "error on the task pending retry");
    ensure_eq!(stored.context, err.context, "TaskError.context on the task");
    ensure_eq!(
        stored.traceback,
        err.traceback,
        "TaskError.traceback on the task"
    );
    ensure_eq!(
        stored.exception_type,
        err.exception_type,
        "TaskError.exception_type on the task"
    );

    let later = now + Duration::seconds(1);
    let c = claim_one(&*s, id, later).await?;
    let out = fail_item(
        &*s,
        Failure {
            lease: c.lease_ref(),
            error: err.clone(),
            action: FailAction::Fail,
            now: later,
        },
    )
    .await?;
    ensure_eq!(out, Outcome::Ok, "final fail");
    let r = some!(
        s.get_result(&id).await.ctx("get_result")?,
        "result after final fail"
    );
    let stored = some!(r.error.as_ref(), "error on the result");
    ensure_eq!(
        stored.context,
        err.context,
        "TaskError.context on the result"
    );
    ensure_eq!(
        stored.traceback,
        err.traceback,
        "TaskError.traceback on the result"
    );
    Ok(())
}

async fn task_error_retry_count_survives_retries(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let mut t = task("m.flaky", now);
    t.max_retries = 2;
    let id = enqueue_one(&*s, t).await?;

    let mut err = at_second(
        TaskError::new(ErrorType::Timeout, "took too long").with_max_retries(2),
        now,
    );
    let mut at = now;
    for attempt in 1..=3u32 {
        let c = claim_one(&*s, id, at).await?;
        ensure_eq!(c.task.attempts, attempt, "attempts at claim {attempt}");
        if attempt > 1 {
            let prev = some!(c.task.error.as_ref(), "previous error on the claimed task");
            ensure_eq!(
                prev.retry_count,
                attempt - 2,
                "retry_count before attempt {attempt}"
            );
        }
        let action = if err.can_retry() {
            FailAction::Retry {
                at: at + Duration::seconds(10),
            }
        } else {
            FailAction::Fail
        };
        let out = fail_item(
            &*s,
            Failure {
                lease: c.lease_ref(),
                error: err.clone(),
                action,
                now: at,
            },
        )
        .await?;
        ensure_eq!(out, Outcome::Ok, "fail of attempt {attempt}");
        let got = get(&*s, id).await?;
        ensure_eq!(
            got.error.as_ref(),
            Some(&err),
            "error stored after attempt {attempt}"
        );
        ensure_eq!(
            got.attempts,
            attempt,
            "attempts stored after attempt {attempt}"
        );
        if attempt < 3 {
            ensure_eq!(
                got.status,
                TaskStatus::Pending,
                "status after retryable attempt {attempt}"
            );
            err = at_second(err.increment_retry(), now);
            at += Duration::seconds(10);
        } else {
            ensure_eq!(
                got.status,
                TaskStatus::Failed,
                "status once retries are exhausted"
            );
        }
    }
    let r = some!(s.get_result(&id).await.ctx("get_result")?, "final result");
    let e = some!(r.error.as_ref(), "final result error");
    ensure_eq!(e.retry_count, 2, "retry_count of the final error");
    ensure!(!e.can_retry(), "the final error can no longer retry");
    ensure_eq!(r.attempts, 3, "result attempts: 1 run + 2 retries");
    Ok(())
}
