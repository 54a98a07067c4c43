//! Reads and cleanup: `get_result`, `list_tasks`, `counts`, `purge_results`.
//!
//! Each case's rule is written in the `# Behavior` section of the method it checks
//! (`crates/omniq-core/src/storage.rs`), which names the case.

use super::{
    Case, at_second, base_now, case, claim_from, claim_one, complete, enqueue, enqueue_one,
    fail_item, get, grouped, task, task_on,
};
use crate::check::{CaseError, Ctx};
use omniq_core::{
    CancelOutcome, ErrorType, FailAction, Failure, Outcome, Payload, Storage, TaskError,
    TaskFilter, TaskId, TaskStatus,
};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

/// The group these cases are reported under.
pub(super) const GROUP: &str = "Contract: results, listing and purge";

pub(super) fn cases() -> Vec<Case> {
    grouped(
        GROUP,
        vec![
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
                purge_results_removes_old_results,
                "purge_results(older_than) removes older results and returns how many",
                ["T11"]
            ),
        ],
    )
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
