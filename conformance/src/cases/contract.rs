//! The storage contract beyond the guide's checklists: claims under concurrency,
//! ordering, eta, leases and fencing, heartbeats, batches, unique keys, namespaces,
//! purge, listing and counts, cancel, close and wake-ups.

use super::{
    Case, LEASE, at_second, base_now, case, claim, claim_from, claim_none, claim_one, complete,
    enqueue, enqueue_one, fail_item, get, pair_case, task, task_on,
};
use crate::check::{CaseError, Ctx};
use omniq_core::{
    CancelOutcome, ClaimRequest, Completion, ErrorType, FailAction, Failure, LeaseRef, LeaseToken,
    Outcome, Payload, Storage, TaskError, TaskFilter, TaskId, TaskStatus, Wake,
};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            atomic_claim_under_concurrent_claimers,
            "16 concurrent claimers over 512 tasks claim every task exactly once",
            ["T2", "S1"]
        ),
        case!(
            release_hands_back_unstarted_claim,
            "A released claim is Pending again at once, its attempt not counted, and its token fenced off",
            ["R6", "T2", "S2"]
        ),
        case!(
            claim_orders_priority_then_eta_then_fifo,
            "Claims take the highest priority first, then the earliest eta, then enqueue order",
            ["T2"]
        ),
        case!(
            eta_is_respected,
            "A task is not claimable before its eta and is claimable once now >= eta",
            ["T1", "T2"]
        ),
        case!(
            live_lease_is_not_redelivered,
            "A task held under a live lease is never claimed again",
            ["T2", "S2"]
        ),
        case!(
            lease_expiry_redelivers,
            "An expired lease is redelivered with attempts + 1 and a greater fencing token",
            ["T2", "S2"]
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
            batch_enqueue_returns_ids_in_order,
            "A batch enqueue returns the ids in input order and persists every task",
            ["T1"]
        ),
        case!(
            unique_key_duplicate_returns_existing_id,
            "A duplicate (queue, unique_key) returns the live task's id with duplicate = true",
            ["T1"],
            UniqueKeys
        ),
        case!(
            unique_key_is_free_after_task_finishes,
            "Once the task holding a unique key finishes, the key is accepted again",
            ["T1"],
            UniqueKeys
        ),
        pair_case!(
            namespaces_are_isolated,
            "Two namespaces never see each other's tasks, results or counts",
            ["T14"]
        ),
        case!(
            purge_results_removes_old_results,
            "purge_results(older_than) removes older results and returns how many",
            ["T11"]
        ),
        case!(
            get_result_is_none_until_run_finishes,
            "get_result() is None while pending or running and the run's result after complete",
            ["T8"]
        ),
        case!(
            list_tasks_filters_and_paginates,
            "list_tasks filters by status and queue and pages with the cursor without duplicates or gaps",
            ["T10"]
        ),
        case!(
            counts_by_queue_and_status,
            "counts() reports tasks by queue and status",
            ["T10"]
        ),
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
            close_makes_later_calls_fail_closed,
            "After close(), calls fail with a Closed error",
            ["T12", "T15"]
        ),
        case!(
            subscribe_wakes_on_enqueue,
            "subscribe() delivers a Work wake-up for the queue after an enqueue",
            ["T13"],
            PushWakeup
        ),
        case!(
            subscribe_wakes_on_finish,
            "subscribe() delivers a Finished wake-up after a completion",
            ["T13"],
            PushWakeup
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
            expired_lease_of_cancel_requested_task_is_not_redelivered,
            "A flagged task whose lease expires is not redelivered: it ends Cancelled, with a Cancelled result",
            ["T2", "T9", "S2"]
        ),
        case!(
            cancel_failed_task,
            "Cancelling a Failed task makes it Cancelled",
            ["T9", "M2"]
        ),
        case!(
            complete_clears_task_error,
            "A successful run after a retry clears the error on the task and stores none on the result",
            ["T4", "M7"]
        ),
        case!(
            batch_enqueue_is_all_or_nothing,
            "A batch enqueue with one invalid task fails with a Config error and stores none of the batch",
            ["T1", "T13"],
            TransactionalEnqueue
        ),
        case!(
            claim_from_several_queues,
            "A claim from several queues takes only from those, by priority across them, at most `limit`",
            ["T2"]
        ),
        case!(
            created_at_without_eta_gates_claim,
            "A task without an eta is not claimable before its created_at",
            ["T1"]
        ),
        case!(
            release_duplicate_items_apply_once,
            "Releasing the same lease twice in one batch applies once: [Ok, LeaseLost], attempts - 1",
            ["R6"]
        ),
        case!(
            batch_fail_reports_per_item_outcomes,
            "One stale item in a batch fail is LeaseLost and changes nothing; the others apply",
            ["T5"]
        ),
        case!(
            close_fails_every_operation,
            "After close(), every operation fails with a Closed error",
            ["T12", "T15"]
        ),
        case!(
            invalid_queue_name_is_config_error,
            "Enqueueing to or claiming from an invalid queue name is a Config error",
            ["S5", "T15"]
        ),
        case!(
            claim_sets_updated_at_and_last_attempt_at,
            "A claim sets updated_at and last_attempt_at to the claim's now",
            ["T2"]
        ),
        case!(
            release_of_cancel_requested_task_ends_cancelled,
            "Releasing a flagged task ends it Cancelled, with a Cancelled result, never claimed again",
            ["R6", "T9"]
        ),
        case!(
            reschedule_clears_cancel_request,
            "An explicit reschedule supersedes an earlier cancel request: the next run is not flagged",
            ["T7", "T9"]
        ),
        case!(
            wake_on_release_and_retry,
            "subscribe() delivers a Work wake-up after a release and a wake-up after a retry",
            ["T13"],
            PushWakeup
        ),
        case!(
            boundaries_are_inclusive,
            "eta == now is due, a lease ending exactly at now has expired, a result finished exactly at the purge cutoff stays",
            ["T1", "T2", "T11"]
        ),
        case!(
            close_twice_is_ok,
            "close() is idempotent: a second close returns Ok",
            ["T12"]
        ),
        case!(
            next_due_reports_earliest_eta_and_lease_expiry,
            "next_due() is the earliest pending eta or lease expiry of the given queues, None when nothing is pending or running",
            ["T2", "R1"]
        ),
        case!(
            enqueue_existing_id_is_conflict,
            "Enqueueing a task whose id exists is a Conflict error and never overwrites the stored task",
            ["T1", "T15"]
        ),
    ]
}

async fn boundaries_are_inclusive(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let eta = now + Duration::seconds(10);
    let mut t = task("m.edge", now);
    t.schedule.eta = Some(eta);
    let id = enqueue_one(&*s, t).await?;
    claim_none(&*s, eta - Duration::seconds(1), "a second before the eta").await?;
    let first = claim_one(&*s, id, eta).await?;
    // The lease ends at eta + LEASE: a claim at exactly that instant redelivers.
    claim_none(
        &*s,
        first.lease.until - Duration::seconds(1),
        "the lease is live",
    )
    .await?;
    let second = claim_one(&*s, id, first.lease.until).await?;
    ensure!(
        second.lease.token > first.lease.token,
        "redelivery at until == now issues a greater token"
    );
    let finished_at = second.lease.until - Duration::seconds(5);
    ensure_eq!(
        complete(&*s, second.lease_ref(), finished_at, Some(b"1")).await?,
        Outcome::Ok,
        "complete"
    );
    ensure_eq!(
        s.purge_results(finished_at).await.ctx("purge_results")?,
        0,
        "purge with a cutoff equal to finished_at removes nothing"
    );
    ensure!(
        s.get_result(&id).await.ctx("get_result")?.is_some(),
        "the result finished exactly at the cutoff stays"
    );
    ensure_eq!(
        s.purge_results(finished_at + Duration::seconds(1))
            .await
            .ctx("purge_results")?,
        1,
        "purge with a later cutoff removes it"
    );
    Ok(())
}

async fn next_due_reports_earliest_eta_and_lease_expiry(
    s: Arc<dyn Storage>,
) -> Result<(), CaseError> {
    let now = base_now();
    let default = vec![omniq_core::DEFAULT_QUEUE.to_string()];
    let both = vec![
        omniq_core::DEFAULT_QUEUE.to_string(),
        "elsewhere".to_string(),
    ];
    ensure_eq!(
        s.next_due(&default).await.ctx("next_due")?,
        None,
        "next_due of an empty queue"
    );
    let mut a = task("m.a", now);
    a.schedule.eta = Some(now + Duration::seconds(10));
    a.priority = 5;
    let mut b = task("m.b", now);
    b.schedule.eta = Some(now + Duration::seconds(5));
    let mut c = task_on("elsewhere", "m.c", now);
    c.schedule.eta = Some(now + Duration::seconds(1));
    let (a_id, b_id) = (a.id, b.id);
    enqueue(&*s, vec![a, b, c]).await?;
    ensure_eq!(
        s.next_due(&default).await.ctx("next_due")?,
        Some(now + Duration::seconds(5)),
        "the earliest eta of the queue, whatever the priorities"
    );
    ensure_eq!(
        s.next_due(&both).await.ctx("next_due")?,
        Some(now + Duration::seconds(1)),
        "the earliest eta over both queues"
    );
    let first = claim_one(&*s, b_id, now + Duration::seconds(5)).await?;
    ensure_eq!(
        s.next_due(&default).await.ctx("next_due")?,
        Some(now + Duration::seconds(10)),
        "the pending eta comes before the new lease's expiry"
    );
    let second = claim_one(&*s, a_id, now + Duration::seconds(10)).await?;
    ensure_eq!(
        s.next_due(&default).await.ctx("next_due")?,
        Some(first.lease.until),
        "with nothing pending, the earliest lease expiry"
    );
    for c in [first, second] {
        ensure_eq!(
            complete(&*s, c.lease_ref(), now + Duration::seconds(11), None).await?,
            Outcome::Ok,
            "complete"
        );
    }
    ensure_eq!(
        s.next_due(&default).await.ctx("next_due")?,
        None,
        "finished tasks never count"
    );
    Ok(())
}

async fn close_twice_is_ok(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    s.close().await.ctx("first close")?;
    s.close().await.ctx("second close")?;
    Ok(())
}

async fn enqueue_existing_id_is_conflict(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let original = task("m.original", now);
    let id = enqueue_one(&*s, original).await?;
    let mut copy = task("m.copy", now);
    copy.id = id;
    ensure_kind!(
        s.enqueue(vec![copy.clone()]).await,
        Conflict,
        "enqueue of an existing id"
    );
    ensure_eq!(
        get(&*s, id).await?.func_path.as_str(),
        "m.original",
        "the stored task is not overwritten"
    );
    if s.capabilities().transactional_enqueue {
        let fresh = task("m.fresh", now);
        let fresh_id = fresh.id;
        ensure_kind!(
            s.enqueue(vec![fresh, copy]).await,
            Conflict,
            "a batch holding an existing id"
        );
        ensure!(
            s.get_task(&fresh_id).await.ctx("get_task")?.is_none(),
            "an all-or-nothing batch with an existing id stores none of its tasks"
        );
    }
    Ok(())
}

const CLAIMERS: usize = 16;
const CONCURRENT_TASKS: usize = 512;

async fn atomic_claim_under_concurrent_claimers(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let queue = "contended";
    let tasks: Vec<_> = (0..CONCURRENT_TASKS)
        .map(|i| task_on(queue, &format!("m.f{i}"), now))
        .collect();
    let ids: HashSet<TaskId> = enqueue(&*s, tasks).await?.into_iter().collect();

    let mut handles = Vec::with_capacity(CLAIMERS);
    for worker in 0..CLAIMERS {
        let s = Arc::clone(&s);
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut busy_retries = 0;
            // A correct backend runs dry after CONCURRENT_TASKS claims in total; the bound
            // stops a broken one that keeps handing tasks out.
            for _ in 0..CONCURRENT_TASKS * 2 {
                let req = ClaimRequest {
                    queues: vec![queue.to_string()],
                    limit: 1 + worker % 5,
                    now,
                    lease: Duration::minutes(10),
                };
                match s.claim(req).await {
                    Ok(got) if got.is_empty() => break,
                    Ok(got) => mine.extend(got),
                    // "Temporarily unavailable, retrying is safe" (e.g. busy) is allowed.
                    Err(e) if e.is_temporary() && busy_retries < 100 => {
                        busy_retries += 1;
                        tokio::task::yield_now().await;
                    }
                    Err(e) => return Err(format!("claimer {worker}: claim failed: {e}")),
                }
                if mine.len() > CONCURRENT_TASKS {
                    break;
                }
            }
            Ok(mine)
        }));
    }

    let mut seen: HashSet<TaskId> = HashSet::new();
    let mut doubles = Vec::new();
    let mut total = 0usize;
    for h in handles {
        let claimed = h
            .await
            .map_err(|e| CaseError::new(format!("a claimer task panicked: {e}")))?
            .map_err(CaseError::new)?;
        for c in claimed {
            total += 1;
            if c.task.attempts != 1 {
                doubles.push(c.task.id);
            }
            if !seen.insert(c.task.id) {
                doubles.push(c.task.id);
            }
        }
    }
    ensure!(
        doubles.is_empty(),
        "{} claims handed out a task already held under a live lease (first: {:?})",
        doubles.len(),
        doubles.first()
    );
    ensure_eq!(total, CONCURRENT_TASKS, "number of claims in total");
    ensure!(
        seen == ids,
        "every enqueued task must be claimed exactly once"
    );
    let leftover = claim_from(&*s, queue, 10, now).await?;
    ensure!(
        leftover.is_empty(),
        "nothing may be left to claim, got {}",
        leftover.len()
    );
    Ok(())
}

async fn claim_orders_priority_then_eta_then_fifo(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let at = |secs: i64| Some(now - Duration::seconds(secs));
    let mut low_a = task("m.low_a", now);
    low_a.schedule.eta = at(10);
    let mut low_b = task("m.low_b", now);
    low_b.schedule.eta = at(10);
    let mut low_c = task("m.low_c", now);
    low_c.schedule.eta = at(10);
    // Same priority and eta: only enqueue order tells them apart. Their ids run the
    // other way (the first enqueued has the greatest id), so a backend that breaks the
    // tie by id instead of enqueue order is caught.
    let mut ids = [TaskId::new(), TaskId::new(), TaskId::new()];
    ids.sort();
    ensure!(
        ids[0] < ids[1] && ids[1] < ids[2],
        "three fresh task ids must be distinct: {ids:?}"
    );
    (low_a.id, low_b.id, low_c.id) = (ids[2], ids[1], ids[0]);
    let mut early = task("m.early", now);
    early.schedule.eta = at(20);
    let mut high = task("m.high", now);
    high.priority = 5;
    high.schedule.eta = at(5);
    let mut negative = task("m.negative", now);
    negative.priority = -1;
    negative.schedule.eta = at(60);

    // Separate calls so enqueue order is unambiguous; the high-priority one comes last.
    let mut expected = Vec::new();
    for t in [
        negative.clone(),
        low_a.clone(),
        low_b.clone(),
        early.clone(),
        low_c.clone(),
        high.clone(),
    ] {
        enqueue_one(&*s, t).await?;
    }
    for t in [&high, &early, &low_a, &low_b, &low_c, &negative] {
        expected.push((t.func_path.clone(), t.id));
    }

    let mut order = Vec::new();
    for _ in 0..expected.len() {
        let got = claim(&*s, 1, now).await?;
        ensure_eq!(got.len(), 1, "a claim with limit 1 while tasks are due");
        order.push((got[0].task.func_path.clone(), got[0].task.id));
    }
    ensure_eq!(
        order,
        expected,
        "claim order (priority, then eta, then FIFO)"
    );
    Ok(())
}

async fn eta_is_respected(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let mut later = task("m.later", now);
    later.schedule.eta = Some(now + Duration::minutes(1));
    let id = enqueue_one(&*s, later).await?;

    claim_none(&*s, now, "eta is a minute away").await?;
    claim_none(&*s, now + Duration::seconds(59), "eta is a second away").await?;
    ensure_eq!(
        get(&*s, id).await?.status,
        TaskStatus::Pending,
        "status before eta"
    );
    claim_one(&*s, id, now + Duration::minutes(1)).await?;

    // A limit is not an invitation to take tasks that are not due.
    let due = enqueue_one(&*s, task("m.due", now)).await?;
    let mut future = task("m.future", now);
    future.schedule.eta = Some(now + Duration::hours(1));
    enqueue_one(&*s, future).await?;
    // Within the first task's lease, so only eta decides.
    let got = claim(&*s, 10, now + Duration::minutes(1) + Duration::seconds(5)).await?;
    let ids: Vec<TaskId> = got.iter().map(|c| c.task.id).collect();
    ensure_eq!(ids, vec![due], "only the due task is claimed");
    Ok(())
}

async fn live_lease_is_not_redelivered(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.f", now)).await?;
    claim_one(&*s, id, now).await?;
    claim_none(&*s, now, "the task is leased").await?;
    claim_none(
        &*s,
        now + LEASE - Duration::seconds(1),
        "the lease is still live",
    )
    .await?;
    let got = get(&*s, id).await?;
    ensure_eq!(got.attempts, 1, "attempts of a leased task");
    ensure_eq!(got.status, TaskStatus::Running, "status of a leased task");
    Ok(())
}

async fn lease_expiry_redelivers(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.f", now)).await?;
    let first = claim_one(&*s, id, now).await?;
    ensure_eq!(first.task.attempts, 1, "attempts of the first claim");

    let expired = now + LEASE + Duration::seconds(1);
    let second = claim_one(&*s, id, expired).await?;
    ensure_eq!(second.task.attempts, 2, "attempts of the redelivery");
    ensure_eq!(
        second.task.last_attempt_at,
        Some(expired),
        "last_attempt_at of the redelivery"
    );
    ensure!(
        second.lease.token > first.lease.token,
        "the redelivery must carry a greater token: first {}, second {}",
        first.lease.token,
        second.lease.token
    );

    // The first worker's token is stale now.
    let before = get(&*s, id).await?;
    let out = complete(
        &*s,
        first.lease_ref(),
        expired + Duration::seconds(1),
        Some(b"late"),
    )
    .await?;
    ensure_eq!(
        out,
        Outcome::LeaseLost,
        "complete with the expired lease's token"
    );
    ensure_eq!(
        get(&*s, id).await?,
        before,
        "the task after the fenced completion"
    );

    let out = complete(
        &*s,
        second.lease_ref(),
        expired + Duration::seconds(2),
        Some(b"ok"),
    )
    .await?;
    ensure_eq!(out, Outcome::Ok, "complete with the current token");
    ensure_eq!(
        get(&*s, id).await?.status,
        TaskStatus::Success,
        "status after completion"
    );
    Ok(())
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

async fn batch_enqueue_returns_ids_in_order(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let n = 50.min(s.capabilities().max_batch.max(1));
    let tasks: Vec<_> = (0..n).map(|i| task(&format!("m.f{i}"), now)).collect();
    let want: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
    // One call: the batch as the runtime sends it.
    let out = s.enqueue(tasks.clone()).await.ctx("enqueue")?;
    let got: Vec<TaskId> = out.iter().map(|e| e.id).collect();
    ensure_eq!(got, want, "ids returned by a batch enqueue");
    ensure!(out.iter().all(|e| !e.duplicate), "no duplicates reported");
    for t in &tasks {
        let stored = get(&*s, t.id).await?;
        ensure_eq!(stored.func_path, t.func_path, "func_path of {}", t.id);
    }
    let counts = s
        .counts(Some(omniq_core::DEFAULT_QUEUE))
        .await
        .ctx("counts")?;
    let pending: u64 = counts.iter().map(|c| c.pending).sum();
    ensure_eq!(pending, n as u64, "pending count after the batch");
    Ok(())
}

async fn unique_key_duplicate_returns_existing_id(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let mut first = task("m.report", now);
    first.unique_key = Some("daily".into());
    let id = enqueue_one(&*s, first).await?;

    let mut dup = task("m.report", now);
    dup.unique_key = Some("daily".into());
    let dup_id = dup.id;
    let out = s.enqueue(vec![dup]).await.ctx("enqueue of a duplicate")?;
    ensure_eq!(out.len(), 1, "one outcome");
    ensure_eq!(out[0].id, id, "a duplicate returns the existing id");
    ensure!(out[0].duplicate, "a duplicate is flagged duplicate = true");
    ensure!(
        s.get_task(&dup_id).await.ctx("get_task")?.is_none(),
        "the duplicate must not be stored under its own id"
    );

    // Still a duplicate while Running.
    claim_one(&*s, id, now).await?;
    let mut running_dup = task("m.report", now);
    running_dup.unique_key = Some("daily".into());
    let out = s.enqueue(vec![running_dup]).await.ctx("enqueue")?;
    ensure!(
        out[0].id == id && out[0].duplicate,
        "a duplicate of a Running task returns its id, got {:?}",
        out[0]
    );

    // Same key on another queue, and duplicates inside one batch.
    let mut other_queue = task_on("elsewhere", "m.report", now);
    other_queue.unique_key = Some("daily".into());
    let mut x1 = task("m.x", now);
    x1.unique_key = Some("batch-key".into());
    let mut x2 = task("m.x", now);
    x2.unique_key = Some("batch-key".into());
    let (oq, x1_id) = (other_queue.id, x1.id);
    let out = s
        .enqueue(vec![other_queue, x1, x2])
        .await
        .ctx("enqueue of a mixed batch")?;
    ensure_eq!(out.len(), 3, "one outcome per item");
    ensure!(
        out[0].id == oq && !out[0].duplicate,
        "the same key on another queue is a new task, got {:?}",
        out[0]
    );
    ensure!(
        out[1].id == x1_id && !out[1].duplicate,
        "the first of two same-key tasks in a batch is inserted, got {:?}",
        out[1]
    );
    ensure!(
        out[2].id == x1_id && out[2].duplicate,
        "the second resolves to the first, got {:?}",
        out[2]
    );
    Ok(())
}

async fn unique_key_is_free_after_task_finishes(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let mut first = task("m.sync", now);
    first.unique_key = Some("sync".into());
    let id = enqueue_one(&*s, first).await?;
    let c = claim_one(&*s, id, now).await?;
    ensure_eq!(
        complete(&*s, c.lease_ref(), now, None).await?,
        Outcome::Ok,
        "complete"
    );

    let mut again = task("m.sync", now);
    again.unique_key = Some("sync".into());
    let again_id = again.id;
    let out = s.enqueue(vec![again]).await.ctx("enqueue after finish")?;
    ensure!(
        out.len() == 1 && out[0].id == again_id && !out[0].duplicate,
        "a finished task frees its key: expected a new id {again_id}, got {out:?}"
    );

    // Cancelled frees the key too.
    s.cancel(&again_id, now).await.ctx("cancel")?;
    let mut third = task("m.sync", now);
    third.unique_key = Some("sync".into());
    let third_id = third.id;
    let out = s.enqueue(vec![third]).await.ctx("enqueue after cancel")?;
    ensure!(
        out.len() == 1 && out[0].id == third_id && !out[0].duplicate,
        "a cancelled task frees its key: expected {third_id}, got {out:?}"
    );
    Ok(())
}

async fn namespaces_are_isolated(
    a: Arc<dyn Storage>,
    b: Arc<dyn Storage>,
) -> Result<(), CaseError> {
    let now = base_now();
    let in_a = enqueue(&*a, (0..3).map(|i| task(&format!("a.{i}"), now)).collect()).await?;
    let in_b = enqueue_one(&*b, task("b.0", now)).await?;

    for id in &in_a {
        ensure!(
            b.get_task(id).await.ctx("get_task")?.is_none(),
            "namespace B sees A's task {id}"
        );
        ensure_kind!(
            b.reschedule(id, now, now).await,
            NotFound,
            "B reschedules A's task"
        );
        ensure_kind!(b.cancel(id, now).await, NotFound, "B cancels A's task");
    }
    ensure!(
        a.get_task(&in_b).await.ctx("get_task")?.is_none(),
        "namespace A sees B's task"
    );

    let counts_b = b.counts(None).await.ctx("counts")?;
    let total_b: u64 = counts_b.iter().map(|c| c.total()).sum();
    ensure_eq!(total_b, 1, "B's counts cover only B's task ({counts_b:?})");
    let listed_b = b
        .list_tasks(TaskFilter::default())
        .await
        .ctx("list_tasks")?;
    let ids_b: Vec<TaskId> = listed_b.items.iter().map(|t| t.id).collect();
    ensure_eq!(ids_b, vec![in_b], "B's listing");

    // B's claimer takes only B's task; A's stay Pending.
    let claimed = claim(&*b, 10, now).await?;
    let ids: Vec<TaskId> = claimed.iter().map(|c| c.task.id).collect();
    ensure_eq!(ids, vec![in_b], "B claims only its own task");
    let done = complete(&*b, claimed[0].lease_ref(), now, Some(b"b")).await?;
    ensure_eq!(done, Outcome::Ok, "B completes its task");
    ensure!(
        a.get_result(&in_b).await.ctx("get_result")?.is_none(),
        "A sees B's result"
    );
    let counts_a = a.counts(None).await.ctx("counts")?;
    let pending_a: u64 = counts_a.iter().map(|c| c.pending).sum();
    let total_a: u64 = counts_a.iter().map(|c| c.total()).sum();
    ensure!(
        pending_a == 3 && total_a == 3,
        "A's counts are its own three pending tasks, got {counts_a:?}"
    );
    Ok(())
}

async fn purge_results_removes_old_results(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let old = enqueue_one(&*s, task("m.old", now)).await?;
    let c = claim_one(&*s, old, now).await?;
    ensure_eq!(
        complete(&*s, c.lease_ref(), now, Some(b"old")).await?,
        Outcome::Ok,
        "complete"
    );

    let recent_at = now + Duration::minutes(10);
    let recent = enqueue_one(&*s, task("m.recent", now)).await?;
    let c = claim_one(&*s, recent, recent_at).await?;
    ensure_eq!(
        complete(&*s, c.lease_ref(), recent_at, Some(b"new")).await?,
        Outcome::Ok,
        "complete"
    );
    let pending = enqueue_one(&*s, task("m.pending", now)).await?;

    let removed = s
        .purge_results(now + Duration::minutes(5))
        .await
        .ctx("purge_results")?;
    ensure_eq!(removed, 1, "results removed");
    ensure!(
        s.get_result(&old).await.ctx("get_result")?.is_none(),
        "the old result is gone"
    );
    ensure!(
        s.get_task(&old).await.ctx("get_task")?.is_none(),
        "the finished task goes with its purged result"
    );
    ensure!(
        s.get_result(&recent).await.ctx("get_result")?.is_some(),
        "the recent result stays"
    );
    ensure_eq!(
        get(&*s, pending).await?.status,
        TaskStatus::Pending,
        "a pending task is untouched"
    );
    ensure_eq!(
        s.purge_results(now + Duration::minutes(5))
            .await
            .ctx("purge_results")?,
        0,
        "a second purge removes nothing"
    );
    Ok(())
}

async fn get_result_is_none_until_run_finishes(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.f", now)).await?;
    ensure!(
        s.get_result(&id).await.ctx("get_result")?.is_none(),
        "no result while Pending"
    );
    let c = claim_one(&*s, id, now).await?;
    ensure!(
        s.get_result(&id).await.ctx("get_result")?.is_none(),
        "no result while Running"
    );
    let done = now + Duration::seconds(3);
    ensure_eq!(
        complete(&*s, c.lease_ref(), done, Some(b"{\"sum\":3}")).await?,
        Outcome::Ok,
        "complete"
    );
    let r = some!(
        s.get_result(&id).await.ctx("get_result")?,
        "result after complete"
    );
    ensure_eq!(r.task_id, id, "result.task_id");
    ensure_eq!(r.status, TaskStatus::Success, "result.status");
    ensure_eq!(
        r.result,
        Some(Payload(b"{\"sum\":3}".to_vec())),
        "result payload"
    );
    ensure_eq!(r.error, None, "result.error");
    ensure_eq!(r.finished_at, done, "result.finished_at");
    ensure_eq!(r.attempts, 1, "result.attempts");
    ensure_eq!(r.last_attempt_at, Some(now), "result.last_attempt_at");
    ensure!(
        s.get_result(&TaskId::new())
            .await
            .ctx("get_result")?
            .is_none(),
        "no result for an unknown id"
    );
    Ok(())
}

/// Two queues with tasks in several states, shared by the listing and counting cases:
/// queue "qa" has 10 Pending, 5 Running, 1 Success, 1 Failed, 1 Cancelled (+ their ids);
/// queue "qb" has 7 Pending.
async fn populate(
    s: &dyn Storage,
    now: OffsetDateTime,
) -> Result<(Vec<TaskId>, Vec<TaskId>), CaseError> {
    let qa = enqueue(
        s,
        (0..18)
            .map(|i| task_on("qa", &format!("a.{i}"), now))
            .collect(),
    )
    .await?;
    let qb = enqueue(
        s,
        (0..7)
            .map(|i| task_on("qb", &format!("b.{i}"), now))
            .collect(),
    )
    .await?;
    let claimed = claim_from(s, "qa", 7, now).await?;
    ensure_eq!(claimed.len(), 7, "claimed from qa");
    let ok = complete(s, claimed[0].lease_ref(), now, None).await?;
    ensure_eq!(ok, Outcome::Ok, "complete");
    let failed = fail_item(
        s,
        Failure {
            lease: claimed[1].lease_ref(),
            error: at_second(TaskError::new(ErrorType::Runtime, "x"), now),
            action: FailAction::Fail,
            now,
        },
    )
    .await?;
    ensure_eq!(failed, Outcome::Ok, "fail");
    let held: HashSet<TaskId> = claimed.iter().map(|c| c.task.id).collect();
    let to_cancel = some!(qa.iter().find(|id| !held.contains(id)), "a pending qa task");
    let out = s.cancel(to_cancel, now).await.ctx("cancel")?;
    ensure_eq!(out, CancelOutcome::Cancelled, "cancel of a pending task");
    Ok((qa, qb))
}

/// Pages through `filter` with a small page size, checking for duplicates and order.
async fn list_all(s: &dyn Storage, mut filter: TaskFilter) -> Result<Vec<TaskId>, CaseError> {
    let mut out = Vec::new();
    for _ in 0..100 {
        let page = s.list_tasks(filter.clone()).await.ctx("list_tasks")?;
        ensure!(
            page.items.len() <= filter.limit,
            "a page holds at most `limit` items: limit {}, got {}",
            filter.limit,
            page.items.len()
        );
        for t in &page.items {
            if let Some(status) = filter.status {
                ensure_eq!(t.status, status, "status of listed task {}", t.id);
            }
            if let Some(q) = &filter.queue {
                ensure_eq!(&t.queue, q, "queue of listed task {}", t.id);
            }
            out.push(t.id);
        }
        match page.next_cursor {
            Some(c) => filter.cursor = Some(c),
            None => {
                let unique: BTreeSet<TaskId> = out.iter().copied().collect();
                ensure_eq!(unique.len(), out.len(), "no task is listed twice");
                let mut sorted = out.clone();
                sorted.sort();
                ensure_eq!(out, sorted, "pages are in id order");
                return Ok(out);
            }
        }
    }
    Err(CaseError::new(
        "list_tasks never returned a last page (100 pages)",
    ))
}

async fn list_tasks_filters_and_paginates(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let (qa, qb) = populate(&*s, now).await?;
    let sorted = |mut v: Vec<TaskId>| {
        v.sort();
        v
    };

    let all_qa = list_all(
        &*s,
        TaskFilter {
            queue: Some("qa".into()),
            limit: 4,
            ..TaskFilter::default()
        },
    )
    .await?;
    ensure_eq!(
        all_qa,
        sorted(qa.clone()),
        "every qa task, once, over pages of 4"
    );

    let everything = list_all(
        &*s,
        TaskFilter {
            limit: 3,
            ..TaskFilter::default()
        },
    )
    .await?;
    ensure_eq!(
        everything,
        sorted(qa.iter().chain(&qb).copied().collect()),
        "every task, over pages of 3"
    );

    let pending_qb = list_all(
        &*s,
        TaskFilter {
            status: Some(TaskStatus::Pending),
            queue: Some("qb".into()),
            limit: 2,
            cursor: None,
        },
    )
    .await?;
    ensure_eq!(pending_qb, sorted(qb.clone()), "pending tasks of qb");

    for (status, n) in [
        (TaskStatus::Running, 5),
        (TaskStatus::Pending, 10),
        (TaskStatus::Success, 1),
        (TaskStatus::Failed, 1),
        (TaskStatus::Cancelled, 1),
    ] {
        let got = list_all(
            &*s,
            TaskFilter {
                status: Some(status),
                queue: Some("qa".into()),
                limit: 2,
                cursor: None,
            },
        )
        .await?;
        ensure_eq!(got.len(), n, "number of {status} tasks listed in qa");
    }
    let none = s
        .list_tasks(TaskFilter {
            queue: Some("no-such-queue".into()),
            ..TaskFilter::default()
        })
        .await
        .ctx("list_tasks")?;
    ensure!(
        none.items.is_empty() && none.next_cursor.is_none(),
        "an empty listing is one empty last page"
    );
    Ok(())
}

async fn counts_by_queue_and_status(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    populate(&*s, now).await?;
    let qa = s.counts(Some("qa")).await.ctx("counts(qa)")?;
    ensure_eq!(
        qa.len(),
        1,
        "counts for one queue return one entry ({qa:?})"
    );
    let a = &qa[0];
    ensure_eq!(a.queue.as_str(), "qa", "queue name");
    ensure_eq!(
        (a.pending, a.running, a.success, a.failed, a.cancelled),
        (10, 5, 1, 1, 1),
        "qa counts (pending, running, success, failed, cancelled)"
    );

    let all = s.counts(None).await.ctx("counts(None)")?;
    let find = |q: &str| all.iter().find(|c| c.queue == q).cloned();
    let a_all = some!(find("qa"), "qa in counts(None) {all:?}");
    ensure_eq!(&a_all, a, "qa in counts(None) matches counts(qa)");
    let b = some!(find("qb"), "qb in counts(None) {all:?}");
    ensure_eq!((b.pending, b.total()), (7, 7), "qb counts (pending, total)");
    let total: u64 = all.iter().map(|c| c.total()).sum();
    ensure_eq!(total, 25, "all tasks counted once");
    Ok(())
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

async fn close_makes_later_calls_fail_closed(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.f", now)).await?;
    s.close().await.ctx("close")?;
    ensure_kind!(s.get_task(&id).await, Closed, "get_task after close");
    ensure_kind!(
        s.enqueue(vec![task("m.g", now)]).await,
        Closed,
        "enqueue after close"
    );
    ensure_kind!(claim_req(&*s, now).await, Closed, "claim after close");
    ensure_kind!(s.counts(None).await, Closed, "counts after close");
    ensure_kind!(
        s.next_due(&[omniq_core::DEFAULT_QUEUE.to_string()]).await,
        Closed,
        "next_due after close"
    );
    Ok(())
}

async fn claim_req(
    s: &dyn Storage,
    now: OffsetDateTime,
) -> Result<Vec<omniq_core::Claimed>, omniq_core::StorageError> {
    s.claim(ClaimRequest {
        queues: vec![omniq_core::DEFAULT_QUEUE.to_string()],
        limit: 1,
        now,
        lease: LEASE,
    })
    .await
}

/// Waits (bounded, no polling) for a wake-up equal to `want`.
async fn wait_for_wake(
    rx: &mut tokio::sync::broadcast::Receiver<Wake>,
    want: &Wake,
) -> Result<(), CaseError> {
    wait_for_wake_where(rx, &format!("{want:?}"), |w| w == want).await
}

/// Waits (bounded, no polling) for a wake-up for which `matches` holds; `what` names it
/// in the failure.
async fn wait_for_wake_where(
    rx: &mut tokio::sync::broadcast::Receiver<Wake>,
    what: &str,
    matches: impl Fn(&Wake) -> bool,
) -> Result<(), CaseError> {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(w) if matches(&w) => return Ok(()),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Err(CaseError::new(format!(
                        "the wake-up channel closed before {what}"
                    )));
                }
            }
        }
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), wait).await {
        Ok(r) => r,
        Err(_) => Err(CaseError::new(format!("no {what} wake-up within 5 s"))),
    }
}

/// Discards the wake-ups already delivered, so a later wait sees only new ones.
fn drain_wakes(rx: &mut tokio::sync::broadcast::Receiver<Wake>) {
    use tokio::sync::broadcast::error::TryRecvError;
    loop {
        match rx.try_recv() {
            Ok(_) | Err(TryRecvError::Lagged(_)) => {}
            Err(TryRecvError::Empty | TryRecvError::Closed) => return,
        }
    }
}

async fn subscribe_wakes_on_enqueue(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let mut rx = some!(s.subscribe(), "subscribe() of a push_wakeup backend");
    let now = base_now();
    enqueue_one(&*s, task_on("wake-q", "m.f", now)).await?;
    wait_for_wake(
        &mut rx,
        &Wake::Work {
            queue: "wake-q".into(),
        },
    )
    .await
}

async fn subscribe_wakes_on_finish(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.f", now)).await?;
    let c = claim_one(&*s, id, now).await?;
    let mut rx = some!(s.subscribe(), "subscribe() of a push_wakeup backend");
    ensure_eq!(
        complete(&*s, c.lease_ref(), now, None).await?,
        Outcome::Ok,
        "complete"
    );
    wait_for_wake(&mut rx, &Wake::Finished { task_id: id }).await
}

/// Claims up to `limit` tasks from `queues` at `now` with [`LEASE`].
async fn claim_queues(
    s: &dyn Storage,
    queues: &[&str],
    limit: usize,
    now: OffsetDateTime,
) -> Result<Vec<omniq_core::Claimed>, CaseError> {
    s.claim(ClaimRequest {
        queues: queues.iter().map(|q| q.to_string()).collect(),
        limit,
        now,
        lease: LEASE,
    })
    .await
    .ctx("claim")
}

/// Fails one lease with a Runtime error stamped `now`, returning the outcome.
async fn fail_with(
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
async fn claimed_and_flagged(
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

async fn expired_lease_of_cancel_requested_task_is_not_redelivered(
    s: Arc<dyn Storage>,
) -> Result<(), CaseError> {
    let now = base_now();
    let (id, _c) = claimed_and_flagged(&*s, task("m.stuck", now), now).await?;
    // The worker died without stopping the task: its lease runs out.
    claim_none(
        &*s,
        now + LEASE + Duration::seconds(1),
        "a flagged task whose lease expired is not redelivered",
    )
    .await?;
    ensure_eq!(
        get(&*s, id).await?.status,
        TaskStatus::Cancelled,
        "a flagged task whose lease expired ends Cancelled"
    );
    let r = some!(
        s.get_result(&id).await.ctx("get_result")?,
        "the result of a flagged task whose lease expired"
    );
    ensure_eq!(r.status, TaskStatus::Cancelled, "result status");
    claim_none(
        &*s,
        now + Duration::hours(1),
        "a cancelled task is never claimed",
    )
    .await?;
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

async fn batch_enqueue_is_all_or_nothing(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let valid: Vec<_> = (0..3).map(|i| task(&format!("m.ok{i}"), now)).collect();
    let ids: Vec<TaskId> = valid.iter().map(|t| t.id).collect();
    // The invalid task comes last: a backend that inserts one by one has already
    // written the valid ones when it reaches it.
    let mut batch = valid;
    batch.push(task_on("bad queue!", "m.bad", now));
    ensure_kind!(
        s.enqueue(batch).await,
        Config,
        "a batch enqueue with an invalid queue name"
    );
    for id in &ids {
        ensure!(
            s.get_task(id).await.ctx("get_task")?.is_none(),
            "a failed batch must store none of its tasks, but {id} exists"
        );
    }
    claim_none(&*s, now, "a failed batch enqueued nothing").await?;
    Ok(())
}

async fn claim_from_several_queues(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let on = |queue: &str, priority: i32| {
        let mut t = task_on(queue, &format!("{queue}.p{priority}"), now);
        t.priority = priority;
        t
    };
    let (a1, a3, b2, b4, c9) = (on("a", 1), on("a", 3), on("b", 2), on("b", 4), on("c", 9));
    enqueue(
        &*s,
        vec![a1.clone(), c9.clone(), a3.clone(), b2.clone(), b4.clone()],
    )
    .await?;
    let ids = |got: &[omniq_core::Claimed]| {
        let mut v: Vec<TaskId> = got.iter().map(|c| c.task.id).collect();
        v.sort();
        v
    };
    let sorted = |mut v: Vec<TaskId>| {
        v.sort();
        v
    };

    let none = claim_queues(&*s, &["a", "b"], 0, now).await?;
    ensure_eq!(ids(&none), Vec::<TaskId>::new(), "a claim with limit 0");

    let first = claim_queues(&*s, &["a", "b"], 1, now).await?;
    ensure_eq!(
        ids(&first),
        vec![b4.id],
        "limit 1 from [a, b]: the highest priority across both queues (c's is not asked for)"
    );
    let next = claim_queues(&*s, &["a", "b"], 2, now).await?;
    ensure_eq!(
        ids(&next),
        sorted(vec![a3.id, b2.id]),
        "limit 2 from [a, b]: the next two by priority"
    );
    let rest = claim_queues(&*s, &["a", "b"], 10, now).await?;
    ensure_eq!(
        ids(&rest),
        vec![a1.id],
        "limit 10 from [a, b]: only a and b's remaining task"
    );
    for c in first.iter().chain(&next).chain(&rest) {
        ensure!(
            c.task.queue == "a" || c.task.queue == "b",
            "a claim from [a, b] returned a task on queue {}",
            c.task.queue
        );
    }
    let untouched = get(&*s, c9.id).await?;
    ensure_eq!(
        (untouched.status, untouched.attempts),
        (TaskStatus::Pending, 0),
        "c's task is untouched by claims from [a, b] (status, attempts)"
    );
    let from_c = claim_queues(&*s, &["c"], 10, now).await?;
    ensure_eq!(ids(&from_c), vec![c9.id], "a claim from [c]");
    Ok(())
}

async fn created_at_without_eta_gates_claim(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let created = now + Duration::seconds(60);
    let mut t = task("m.future", created);
    t.schedule.eta = None;
    let id = enqueue_one(&*s, t).await?;
    claim_none(&*s, now, "created_at is a minute away and there is no eta").await?;
    claim_none(
        &*s,
        created - Duration::seconds(1),
        "created_at is a second away",
    )
    .await?;
    claim_one(&*s, id, created).await?;
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

async fn close_fails_every_operation(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.f", now)).await?;
    let c = claim_one(&*s, id, now).await?;
    let lease = c.lease_ref();
    s.close().await.ctx("close")?;

    ensure_kind!(
        s.enqueue(vec![task("m.g", now)]).await,
        Closed,
        "enqueue after close"
    );
    ensure_kind!(claim_req(&*s, now).await, Closed, "claim after close");
    ensure_kind!(
        s.heartbeat(&[lease], now + Duration::minutes(1)).await,
        Closed,
        "heartbeat after close"
    );
    ensure_kind!(
        s.complete(vec![Completion {
            lease,
            result: None,
            now,
            next_run: None,
        }])
        .await,
        Closed,
        "complete after close"
    );
    ensure_kind!(
        s.fail(vec![Failure {
            lease,
            error: at_second(TaskError::new(ErrorType::Runtime, "x"), now),
            action: FailAction::Fail,
            now,
        }])
        .await,
        Closed,
        "fail after close"
    );
    ensure_kind!(
        s.release(&[lease], now).await,
        Closed,
        "release after close"
    );
    ensure_kind!(s.get_task(&id).await, Closed, "get_task after close");
    ensure_kind!(
        s.reschedule(&id, now, now).await,
        Closed,
        "reschedule after close"
    );
    ensure_kind!(s.get_result(&id).await, Closed, "get_result after close");
    ensure_kind!(s.cancel(&id, now).await, Closed, "cancel after close");
    ensure_kind!(
        s.list_tasks(TaskFilter::default()).await,
        Closed,
        "list_tasks after close"
    );
    ensure_kind!(s.counts(None).await, Closed, "counts after close");
    ensure_kind!(
        s.next_due(&[omniq_core::DEFAULT_QUEUE.to_string()]).await,
        Closed,
        "next_due after close"
    );
    ensure_kind!(
        s.purge_results(now).await,
        Closed,
        "purge_results after close"
    );
    // Closing is idempotent: a second close may be Ok or Closed, so it is not asserted.
    let _ = s.close().await;
    Ok(())
}

async fn invalid_queue_name_is_config_error(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let bad = task_on("bad queue!", "m.f", now);
    let bad_id = bad.id;
    ensure_kind!(
        s.enqueue(vec![bad]).await,
        Config,
        "enqueue on queue \"bad queue!\""
    );
    ensure!(
        s.get_task(&bad_id).await.ctx("get_task")?.is_none(),
        "a task rejected for its queue name must not be stored"
    );
    ensure_kind!(
        s.claim(ClaimRequest {
            queues: vec!["bad queue!".to_string()],
            limit: 1,
            now,
            lease: LEASE,
        })
        .await,
        Config,
        "claim from queue \"bad queue!\""
    );
    Ok(())
}

async fn claim_sets_updated_at_and_last_attempt_at(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    // Created well before the claim, so a claim that leaves updated_at alone shows.
    let id = enqueue_one(&*s, task("m.f", now - Duration::minutes(10))).await?;
    let c = claim_one(&*s, id, now).await?;
    ensure_eq!(c.task.updated_at, now, "updated_at of the claimed task");
    ensure_eq!(
        c.task.last_attempt_at,
        Some(now),
        "last_attempt_at of the claimed task"
    );
    let stored = get(&*s, id).await?;
    ensure_eq!(stored.updated_at, now, "stored updated_at after the claim");
    ensure_eq!(
        stored.last_attempt_at,
        Some(now),
        "stored last_attempt_at after the claim"
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

async fn wake_on_release_and_retry(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let queue = "wake-r";
    let id = enqueue_one(&*s, task_on(queue, "m.f", now)).await?;
    // Subscribed after the enqueue, so the enqueue's own Work wake-up is not seen.
    let mut rx = some!(s.subscribe(), "subscribe() of a push_wakeup backend");
    let got = claim_from(&*s, queue, 1, now).await?;
    ensure_eq!(got.len(), 1, "claim of the enqueued task");
    drain_wakes(&mut rx);
    let out = s.release(&[got[0].lease_ref()], now).await.ctx("release")?;
    ensure_eq!(out, vec![Outcome::Ok], "release");
    wait_for_wake(
        &mut rx,
        &Wake::Work {
            queue: queue.into(),
        },
    )
    .await?;

    let again = claim_from(&*s, queue, 1, now).await?;
    ensure_eq!(again.len(), 1, "claim of the released task");
    drain_wakes(&mut rx);
    let out = fail_with(
        &*s,
        again[0].lease_ref(),
        FailAction::Retry { at: now },
        now,
        "retry me",
    )
    .await?;
    ensure_eq!(out, Outcome::Ok, "fail with Retry");
    wait_for_wake_where(
        &mut rx,
        &format!("Work {{ queue: {queue:?} }} or Finished {{ task_id: {id} }}"),
        |w| match w {
            Wake::Work { queue: q } => q == queue,
            Wake::Finished { task_id } => *task_id == id,
        },
    )
    .await
}
