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
    CancelOutcome, Cursor, ErrorType, FailAction, Failure, Outcome, Payload, QueueCounts, Storage,
    TaskError, TaskFilter, TaskId, TaskStatus,
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
            case!(
                purge_removes_finished_tasks_without_results,
                "purge_results(older_than) also removes finished tasks that have no result, by their updated_at",
                ["T11"]
            ),
            case!(
                list_tasks_cursor_is_none_exactly_on_the_last_page,
                "list_tasks gives a cursor exactly when more items match: None after a full last page",
                ["T10"]
            ),
            case!(
                list_tasks_limit_zero_is_an_empty_last_page,
                "list_tasks with limit 0 returns an empty page with no cursor",
                ["T10"]
            ),
            case!(
                list_tasks_and_counts_reject_invalid_queue_names,
                "list_tasks and counts of an invalid queue name are Config errors",
                ["T10", "S5", "T15"]
            ),
            case!(
                counts_of_an_empty_queue_is_one_zero_entry,
                "counts(Some(queue)) of a queue without tasks is one entry of zeros",
                ["T10"]
            ),
            case!(
                counts_lists_only_queues_with_tasks,
                "counts(None) lists every queue holding a task, by name, and no queue whose tasks were all purged",
                ["T10", "T11"]
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

async fn purge_removes_finished_tasks_without_results(
    s: Arc<dyn Storage>,
) -> Result<(), CaseError> {
    let now = base_now();
    // Enqueued already finished (as a migration from another backend writes them): no
    // run, so no result.
    let finished = |func: &str, status: TaskStatus, at: OffsetDateTime| {
        let mut t = task(func, at);
        t.status = status;
        t
    };
    let old = enqueue(
        &*s,
        [
            TaskStatus::Success,
            TaskStatus::Failed,
            TaskStatus::Cancelled,
        ]
        .into_iter()
        .map(|status| finished("m.old", status, now))
        .collect(),
    )
    .await?;
    let recent = enqueue_one(
        &*s,
        finished("m.recent", TaskStatus::Success, now + Duration::minutes(10)),
    )
    .await?;
    let pending = enqueue_one(&*s, task("m.pending", now)).await?;

    let removed = s
        .purge_results(now + Duration::minutes(5))
        .await
        .ctx("purge_results")?;
    ensure_eq!(removed, 0, "results removed (none of these tasks has one)");
    for id in &old {
        ensure!(
            s.get_task(id).await.ctx("get_task")?.is_none(),
            "a finished task without a result, updated before the cutoff, is purged: {id}"
        );
    }
    ensure_eq!(
        get(&*s, recent).await?.status,
        TaskStatus::Success,
        "a finished task updated after the cutoff stays"
    );
    ensure_eq!(
        get(&*s, pending).await?.status,
        TaskStatus::Pending,
        "a pending task is untouched"
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

/// One call of `list_tasks` on queue `queue`.
async fn page(
    s: &dyn Storage,
    queue: &str,
    limit: usize,
    cursor: Option<Cursor>,
) -> Result<(Vec<TaskId>, Option<Cursor>), CaseError> {
    let p = s
        .list_tasks(TaskFilter {
            queue: Some(queue.into()),
            limit,
            cursor,
            ..TaskFilter::default()
        })
        .await
        .ctx("list_tasks")?;
    Ok((p.items.iter().map(|t| t.id).collect(), p.next_cursor))
}

async fn list_tasks_cursor_is_none_exactly_on_the_last_page(
    s: Arc<dyn Storage>,
) -> Result<(), CaseError> {
    let now = base_now();
    let mut ids = enqueue(
        &*s,
        (0..4)
            .map(|i| task_on("pages", &format!("m.p{i}"), now))
            .collect(),
    )
    .await?;
    ids.sort();
    // Tasks of another queue follow in the table: they must not count as "more".
    enqueue(
        &*s,
        (0..3)
            .map(|i| task_on("other", &format!("m.o{i}"), now))
            .collect(),
    )
    .await?;

    let (all, cursor) = page(&*s, "pages", 4, None).await?;
    ensure_eq!(all, ids, "one page of limit 4 over 4 tasks");
    ensure_eq!(
        cursor,
        None,
        "a full page with nothing after it has no cursor"
    );

    let (first, cursor) = page(&*s, "pages", 2, None).await?;
    ensure_eq!(first, ids[..2].to_vec(), "first page of 2");
    ensure_eq!(
        cursor,
        Some(Cursor(ids[1])),
        "a page with more after it: the cursor is its last item's id"
    );
    let (second, cursor) = page(&*s, "pages", 2, cursor).await?;
    ensure_eq!(second, ids[2..].to_vec(), "second page of 2");
    ensure_eq!(cursor, None, "the full last page has no cursor");

    let (first, cursor) = page(&*s, "pages", 3, None).await?;
    ensure_eq!(first, ids[..3].to_vec(), "first page of 3");
    ensure_eq!(
        cursor,
        Some(Cursor(ids[2])),
        "cursor after the first page of 3"
    );
    let (rest, cursor) = page(&*s, "pages", 3, cursor).await?;
    ensure_eq!(rest, ids[3..].to_vec(), "the short last page");
    ensure_eq!(cursor, None, "the short last page has no cursor");
    Ok(())
}

async fn list_tasks_limit_zero_is_an_empty_last_page(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let ids = enqueue(
        &*s,
        (0..3)
            .map(|i| task_on("zero", &format!("m.z{i}"), now))
            .collect(),
    )
    .await?;
    for queue in [None, Some("zero".to_string())] {
        let p = s
            .list_tasks(TaskFilter {
                queue: queue.clone(),
                limit: 0,
                ..TaskFilter::default()
            })
            .await
            .ctx("list_tasks")?;
        ensure!(
            p.items.is_empty() && p.next_cursor.is_none(),
            "limit 0 (queue {queue:?}) must return an empty page with no cursor, got {} items, cursor {:?}",
            p.items.len(),
            p.next_cursor
        );
    }
    let mut sorted = ids.clone();
    sorted.sort();
    let p = s
        .list_tasks(TaskFilter {
            limit: 0,
            cursor: Some(Cursor(sorted[0])),
            ..TaskFilter::default()
        })
        .await
        .ctx("list_tasks")?;
    ensure!(
        p.items.is_empty() && p.next_cursor.is_none(),
        "limit 0 with a cursor must return an empty page with no cursor, got {} items",
        p.items.len()
    );
    Ok(())
}

async fn list_tasks_and_counts_reject_invalid_queue_names(
    s: Arc<dyn Storage>,
) -> Result<(), CaseError> {
    enqueue_one(&*s, task("m.f", base_now())).await?;
    ensure_kind!(
        s.list_tasks(TaskFilter {
            queue: Some("bad queue!".into()),
            ..TaskFilter::default()
        })
        .await,
        Config,
        "list_tasks of queue \"bad queue!\""
    );
    ensure_kind!(
        s.counts(Some("bad queue!")).await,
        Config,
        "counts of queue \"bad queue!\""
    );
    Ok(())
}

async fn counts_of_an_empty_queue_is_one_zero_entry(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    enqueue_one(&*s, task_on("busy", "m.f", now)).await?;
    let zero = |queue: &str| QueueCounts {
        queue: queue.into(),
        ..QueueCounts::default()
    };
    ensure_eq!(
        s.counts(Some("idle")).await.ctx("counts(idle)")?,
        vec![zero("idle")],
        "counts of a queue that never held a task"
    );
    // A queue whose only task was purged.
    let id = enqueue_one(&*s, task_on("drained", "m.d", now)).await?;
    let c = claim_from(&*s, "drained", 1, now).await?;
    ensure_eq!(c.len(), 1, "claim from drained");
    ensure_eq!(
        complete(&*s, c[0].lease_ref(), now, None).await?,
        Outcome::Ok,
        "complete"
    );
    s.purge_results(now + Duration::seconds(1))
        .await
        .ctx("purge_results")?;
    ensure!(
        s.get_task(&id).await.ctx("get_task")?.is_none(),
        "the purge removed the finished task"
    );
    ensure_eq!(
        s.counts(Some("drained")).await.ctx("counts(drained)")?,
        vec![zero("drained")],
        "counts of a queue whose tasks were all purged"
    );
    Ok(())
}

async fn counts_lists_only_queues_with_tasks(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    // Enqueued out of name order: the listing is sorted by name.
    enqueue_one(&*s, task_on("q-c", "m.c", now)).await?;
    enqueue_one(&*s, task_on("q-a", "m.a", now)).await?;
    enqueue_one(&*s, task_on("q-b", "m.b", now)).await?;
    let gone = enqueue_one(&*s, task_on("q-gone", "m.g", now)).await?;
    let c = claim_from(&*s, "q-gone", 1, now).await?;
    ensure_eq!(
        c.iter().map(|c| c.task.id).collect::<Vec<_>>(),
        vec![gone],
        "claim from q-gone"
    );
    ensure_eq!(
        complete(&*s, c[0].lease_ref(), now, None).await?,
        Outcome::Ok,
        "complete"
    );
    s.purge_results(now + Duration::seconds(1))
        .await
        .ctx("purge_results")?;
    let all = s.counts(None).await.ctx("counts(None)")?;
    ensure_eq!(
        all.iter().map(|c| c.queue.as_str()).collect::<Vec<_>>(),
        vec!["q-a", "q-b", "q-c"],
        "counts(None): the queues holding tasks, sorted by name, without q-gone (all purged)"
    );
    for c in &all {
        ensure_eq!(
            (c.pending, c.total()),
            (1, 1),
            "counts of {} (pending, total)",
            c.queue
        );
    }
    Ok(())
}
