//! Claims: atomicity under concurrency, order, eta, lease expiry and redelivery, `next_due`.
//!
//! Each case's rule is written in the `# Behavior` section of the method it checks
//! (`crates/omniq-core/src/storage.rs`), which names the case.

use super::{
    Case, LEASE, base_now, case, claim, claim_from, claim_none, claim_one, claimed_and_flagged,
    complete, enqueue, enqueue_one, fail_with, get, grouped, task, task_on,
};
use crate::check::{CaseError, Ctx};
use omniq_core::{
    ClaimRequest, Completion, FailAction, Outcome, Payload, Storage, TaskId, TaskStatus,
};
use std::collections::HashSet;
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

/// The group these cases are reported under.
pub(super) const GROUP: &str = "Contract: claim";

pub(super) fn cases() -> Vec<Case> {
    grouped(
        GROUP,
        vec![
            case!(
                atomic_claim_under_concurrent_claimers,
                "16 concurrent claimers over 512 tasks claim every task exactly once",
                ["T2", "S1"]
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
                claim_from_several_queues,
                "A claim from several queues takes only from those, by priority across them, at most `limit`",
                ["T2"]
            ),
            case!(
                claim_sets_updated_at_and_last_attempt_at,
                "A claim sets updated_at and last_attempt_at to the claim's now",
                ["T2"]
            ),
            case!(
                boundaries_are_inclusive,
                "eta == now is due, a lease ending exactly at now has expired, a result finished exactly at the purge cutoff stays",
                ["T1", "T2", "T11"]
            ),
            case!(
                next_due_reports_earliest_eta_and_lease_expiry,
                "next_due() is the earliest pending eta or lease expiry of the given queues, None when nothing is pending or running",
                ["T2", "R1"]
            ),
            case!(
                expired_lease_of_cancel_requested_task_is_not_redelivered,
                "A flagged task whose lease expires is not redelivered: it ends Cancelled, with a Cancelled result",
                ["T2", "T9", "S2"]
            ),
            case!(
                claim_with_duplicate_queue_names_returns_each_task_once,
                "A claim naming a queue twice counts it once: each task is returned once, under one token",
                ["T2", "S1"]
            ),
            case!(
                claim_order_keeps_enqueue_order_after_requeue,
                "A task that goes back to Pending (release, retry, reschedule, interval re-arm, expired lease) keeps its place in enqueue order",
                ["T2", "T5", "T7", "R5", "R6"]
            ),
            case!(
                next_due_rejects_invalid_queue_names,
                "next_due() of an invalid queue name is a Config error",
                ["S5", "T15", "R1"]
            ),
        ],
    )
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
    // Without an eta, a task is due at its created_at.
    let mut d = task_on("created", "m.d", now + Duration::seconds(3));
    d.schedule.eta = None;
    enqueue_one(&*s, d).await?;
    ensure_eq!(
        s.next_due(&["created".to_string()]).await.ctx("next_due")?,
        Some(now + Duration::seconds(3)),
        "a task without an eta counts with its created_at"
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

async fn expired_lease_of_cancel_requested_task_is_not_redelivered(
    s: Arc<dyn Storage>,
) -> Result<(), CaseError> {
    let now = base_now();
    let (id, _c) = claimed_and_flagged(&*s, task("m.stuck", now), now).await?;
    // The worker died without stopping the task: its lease runs out.
    let later = now + LEASE + Duration::seconds(1);
    claim_none(
        &*s,
        later,
        "a flagged task whose lease expired is not redelivered",
    )
    .await?;
    let t = get(&*s, id).await?;
    ensure_eq!(
        t.status,
        TaskStatus::Cancelled,
        "a flagged task whose lease expired ends Cancelled"
    );
    ensure_eq!(t.updated_at, later, "updated_at = the ending claim's now");
    let r = some!(
        s.get_result(&id).await.ctx("get_result")?,
        "the result of a flagged task whose lease expired"
    );
    ensure_eq!(r.status, TaskStatus::Cancelled, "result status");
    ensure_eq!(
        (r.result, r.finished_at, r.attempts),
        (None, later, 1),
        "the Cancelled result (payload, finished_at = the claim's now, the expired run's attempts)"
    );
    claim_none(
        &*s,
        now + Duration::hours(1),
        "a cancelled task is never claimed",
    )
    .await?;
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
    let none = claim_queues(&*s, &[], 10, now).await?;
    ensure_eq!(ids(&none), Vec::<TaskId>::new(), "a claim from no queue");

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

async fn claim_with_duplicate_queue_names_returns_each_task_once(
    s: Arc<dyn Storage>,
) -> Result<(), CaseError> {
    let now = base_now();
    let a1 = enqueue_one(&*s, task_on("dup-a", "m.a1", now)).await?;
    let a2 = enqueue_one(&*s, task_on("dup-a", "m.a2", now)).await?;
    let b1 = enqueue_one(&*s, task_on("dup-b", "m.b1", now)).await?;
    let sorted = |mut v: Vec<TaskId>| {
        v.sort();
        v
    };
    let first = claim_queues(&*s, &["dup-a", "dup-a"], 2, now).await?;
    ensure_eq!(
        sorted(first.iter().map(|c| c.task.id).collect()),
        sorted(vec![a1, a2]),
        "limit 2 from [dup-a, dup-a]: both of dup-a's tasks, each once"
    );
    let second = claim_queues(&*s, &["dup-b", "dup-a", "dup-b", "dup-b"], 10, now).await?;
    ensure_eq!(
        second.iter().map(|c| c.task.id).collect::<Vec<_>>(),
        vec![b1],
        "a claim naming dup-b three times returns its one task once"
    );
    for c in first.iter().chain(&second) {
        ensure_eq!(
            c.task.attempts,
            1,
            "attempts of {} (claimed once)",
            c.task.id
        );
    }
    Ok(())
}

async fn claim_order_keeps_enqueue_order_after_requeue(
    s: Arc<dyn Storage>,
) -> Result<(), CaseError> {
    let now = base_now();
    let eta = now - Duration::seconds(10);
    // Same priority and eta, ids running against enqueue order (see
    // claim_orders_priority_then_eta_then_fifo): only enqueue order tells them apart.
    let mut ids = [TaskId::new(), TaskId::new(), TaskId::new()];
    ids.sort();
    let [third, second, first] = ids;
    for (id, func) in [(first, "m.first"), (second, "m.second"), (third, "m.third")] {
        let mut t = task(func, now - Duration::minutes(1));
        t.id = id;
        t.schedule.eta = Some(eta);
        t.schedule.interval = Some(Duration::hours(1));
        enqueue_one(&*s, t).await?;
    }
    let head = |what: &'static str| {
        let s = Arc::clone(&s);
        async move {
            let got = claim(&*s, 1, now).await?;
            ensure_eq!(
                got.iter().map(|c| c.task.id).collect::<Vec<_>>(),
                vec![first],
                "the first-enqueued task is still claimed first after {what}"
            );
            Ok::<_, CaseError>(got.into_iter().next().map(|c| c.lease_ref()))
        }
    };
    let lease = some!(head("enqueue").await?, "first claim");
    ensure_eq!(
        s.release(&[lease], now).await.ctx("release")?,
        vec![Outcome::Ok],
        "release"
    );
    let lease = some!(head("a release").await?, "claim");
    ensure_eq!(
        fail_with(&*s, lease, FailAction::Retry { at: eta }, now, "again").await?,
        Outcome::Ok,
        "fail with Retry at the same eta"
    );
    let lease = some!(head("a retry").await?, "claim");
    s.reschedule(&lease.task_id, eta, now)
        .await
        .ctx("reschedule to the same eta")?;
    let lease = some!(head("a reschedule").await?, "claim");
    let out = s
        .complete(vec![Completion {
            lease,
            result: Some(Payload(b"run".to_vec())),
            now,
            next_run: Some(eta),
        }])
        .await
        .ctx("complete with next_run")?;
    ensure_eq!(out, vec![Outcome::Ok], "interval re-arm at the same eta");
    let lease = some!(head("an interval re-arm").await?, "claim");
    // Its lease expires: redelivered ahead of the others, which are due as well.
    let expired = now + LEASE;
    let again = claim(&*s, 1, expired).await?;
    ensure_eq!(
        again.iter().map(|c| c.task.id).collect::<Vec<_>>(),
        vec![first],
        "the first-enqueued task is claimed first when its lease expired"
    );
    ensure!(
        again[0].lease.token > lease.token,
        "the redelivery carries a greater token"
    );
    ensure_eq!(
        complete(&*s, again[0].lease_ref(), expired, None).await?,
        Outcome::Ok,
        "complete of the first task"
    );
    for (want, name) in [(second, "second"), (third, "third")] {
        let got = claim(&*s, 1, expired).await?;
        ensure_eq!(
            got.iter().map(|c| c.task.id).collect::<Vec<_>>(),
            vec![want],
            "then the {name}-enqueued task"
        );
    }
    Ok(())
}

async fn next_due_rejects_invalid_queue_names(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    ensure_kind!(
        s.next_due(&["bad queue!".to_string()]).await,
        Config,
        "next_due of queue \"bad queue!\""
    );
    ensure_kind!(
        s.next_due(&[
            omniq_core::DEFAULT_QUEUE.to_string(),
            "bad queue!".to_string()
        ])
        .await,
        Config,
        "next_due of [default, \"bad queue!\"]"
    );
    Ok(())
}
