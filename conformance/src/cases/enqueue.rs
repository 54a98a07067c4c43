//! Enqueue: batches, ids, unique keys and names.
//!
//! Each case's rule is written in the `# Behavior` section of the method it checks
//! (`crates/omniq-core/src/storage.rs`), which names the case.

use super::{
    Case, LEASE, base_now, case, claim_none, claim_one, complete, enqueue_one, fail_with, get,
    grouped, task, task_on,
};
use crate::check::{CaseError, Ctx};
use omniq_core::{ClaimRequest, Enqueued, FailAction, Outcome, Storage, TaskId, TaskStatus};
use std::sync::Arc;
use time::Duration;

/// The group these cases are reported under.
pub(super) const GROUP: &str = "Contract: enqueue";

pub(super) fn cases() -> Vec<Case> {
    grouped(
        GROUP,
        vec![
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
            case!(
                batch_enqueue_is_all_or_nothing,
                "A batch enqueue with one invalid task fails with a Config error and stores none of the batch",
                ["T1", "T13"],
                TransactionalEnqueue
            ),
            case!(
                enqueue_existing_id_is_conflict,
                "Enqueueing a task whose id exists is a Conflict error and never overwrites the stored task",
                ["T1", "T15"]
            ),
            case!(
                invalid_queue_name_is_config_error,
                "Enqueueing to or claiming from an invalid queue name is a Config error",
                ["S5", "T15"]
            ),
            case!(
                created_at_without_eta_gates_claim,
                "A task without an eta is not claimable before its created_at",
                ["T1"]
            ),
            case!(
                enqueue_same_id_twice_in_a_batch_is_conflict,
                "A batch naming one id twice is a Conflict error; the second task never overwrites the first",
                ["T1", "T15"]
            ),
            case!(
                enqueue_running_input_is_stored_pending,
                "A task enqueued with status Running is stored Pending and is claimable",
                ["T1", "M2"]
            ),
            case!(
                unique_key_ignores_finished_inputs,
                "An enqueued Success, Failed or Cancelled task is stored as given: never a duplicate of a live holder, and it holds no key",
                ["T1"],
                UniqueKeys
            ),
            case!(
                reschedule_into_a_held_unique_key_is_conflict,
                "Rescheduling a Failed task whose unique key another live task holds now is a Conflict error and changes nothing",
                ["T1", "T7", "T15"],
                UniqueKeys
            ),
            case!(
                enqueue_over_max_batch_is_whole_or_config,
                "A batch larger than max_batch is stored whole, or rejected with a Config error storing nothing",
                ["T1", "T13"]
            ),
        ],
    )
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

async fn enqueue_same_id_twice_in_a_batch_is_conflict(
    s: Arc<dyn Storage>,
) -> Result<(), CaseError> {
    let now = base_now();
    let first = task("m.first", now);
    let mut second = task("m.second", now);
    second.id = first.id;
    let id = first.id;
    ensure_kind!(
        s.enqueue(vec![first, second]).await,
        Conflict,
        "a batch naming one id twice"
    );
    let stored = s.get_task(&id).await.ctx("get_task")?;
    if s.capabilities().transactional_enqueue {
        ensure!(
            stored.is_none(),
            "an all-or-nothing batch that failed must store none of its tasks"
        );
    } else if let Some(t) = stored {
        ensure_eq!(
            t.func_path.as_str(),
            "m.first",
            "the first task with the id is kept: the second never overwrites it"
        );
    }
    Ok(())
}

async fn enqueue_running_input_is_stored_pending(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let mut t = task("m.running", now);
    t.status = TaskStatus::Running;
    let id = enqueue_one(&*s, t).await?;
    ensure_eq!(
        get(&*s, id).await?.status,
        TaskStatus::Pending,
        "a Running input is stored Pending (a task is only Running under a lease)"
    );
    let c = claim_one(&*s, id, now).await?;
    ensure_eq!(c.task.attempts, 1, "attempts of its first claim");
    Ok(())
}

async fn unique_key_ignores_finished_inputs(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let keyed = |func: &str, key: &str, status: TaskStatus| {
        let mut t = task(func, now);
        t.unique_key = Some(key.into());
        t.status = status;
        t
    };
    // A live holder of "k"; a finished input with the same key is stored, not deduplicated.
    let holder = enqueue_one(&*s, keyed("m.live", "k", TaskStatus::Pending)).await?;
    for status in [
        TaskStatus::Success,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ] {
        let done = keyed("m.done", "k", status);
        let done_id = done.id;
        let out = s
            .enqueue(vec![done])
            .await
            .ctx("enqueue of a finished input")?;
        ensure_eq!(
            out,
            vec![Enqueued {
                id: done_id,
                duplicate: false
            }],
            "a {status} input with the live holder's key is stored as given"
        );
        ensure_eq!(
            get(&*s, done_id).await?.status,
            status,
            "status of the stored {status} input"
        );
    }
    let out = s
        .enqueue(vec![keyed("m.again", "k", TaskStatus::Pending)])
        .await
        .ctx("enqueue")?;
    ensure!(
        out.len() == 1 && out[0].id == holder && out[0].duplicate,
        "the live holder still holds \"k\": expected a duplicate of {holder}, got {out:?}"
    );

    // A finished input holds no key: a Pending input with its key is inserted, in
    // separate calls and later in the same batch.
    let failed = keyed("m.failed", "k2", TaskStatus::Failed);
    enqueue_one(&*s, failed).await?;
    let fresh = keyed("m.fresh", "k2", TaskStatus::Pending);
    let fresh_id = fresh.id;
    let out = s.enqueue(vec![fresh]).await.ctx("enqueue")?;
    ensure_eq!(
        out,
        vec![Enqueued {
            id: fresh_id,
            duplicate: false
        }],
        "a Pending input whose key only a Failed task carries is a new task"
    );
    let cancelled = keyed("m.cancelled", "k3", TaskStatus::Cancelled);
    let pending = keyed("m.pending", "k3", TaskStatus::Pending);
    let want = vec![
        Enqueued {
            id: cancelled.id,
            duplicate: false,
        },
        Enqueued {
            id: pending.id,
            duplicate: false,
        },
    ];
    let out = s
        .enqueue(vec![cancelled, pending])
        .await
        .ctx("enqueue of a batch")?;
    ensure_eq!(
        out,
        want,
        "[Cancelled with key k3, Pending with key k3] in one batch: both are stored"
    );
    Ok(())
}

async fn reschedule_into_a_held_unique_key_is_conflict(
    s: Arc<dyn Storage>,
) -> Result<(), CaseError> {
    let now = base_now();
    let keyed = |func: &str| {
        let mut t = task(func, now);
        t.unique_key = Some("nightly".into());
        t
    };
    let a = enqueue_one(&*s, keyed("m.a")).await?;
    let c = claim_one(&*s, a, now).await?;
    ensure_eq!(
        fail_with(&*s, c.lease_ref(), FailAction::Fail, now, "boom").await?,
        Outcome::Ok,
        "final fail"
    );
    // A's key is free now: B takes it.
    let b = enqueue_one(&*s, keyed("m.b")).await?;
    let before = get(&*s, a).await?;
    let later = now + Duration::minutes(1);
    ensure_kind!(
        s.reschedule(&a, later, now + Duration::seconds(1)).await,
        Conflict,
        "rescheduling a Failed task whose unique key another live task holds"
    );
    ensure_eq!(
        get(&*s, a).await?,
        before,
        "the Failed task after the refused reschedule"
    );
    // Once B finishes, A can come back and holds the key again.
    let cb = claim_one(&*s, b, now).await?;
    ensure_eq!(
        complete(&*s, cb.lease_ref(), now, None).await?,
        Outcome::Ok,
        "complete B"
    );
    s.reschedule(&a, later, now + Duration::seconds(2))
        .await
        .ctx("reschedule once the key is free")?;
    let out = s.enqueue(vec![keyed("m.c")]).await.ctx("enqueue")?;
    ensure!(
        out.len() == 1 && out[0].id == a && out[0].duplicate,
        "the rescheduled task holds its key again: expected a duplicate of {a}, got {out:?}"
    );
    Ok(())
}

async fn enqueue_over_max_batch_is_whole_or_config(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let max = s.capabilities().max_batch;
    // A backend with a huge max_batch: a batch over it is too large to build here.
    if max >= 10_000 {
        return Ok(());
    }
    let now = base_now();
    let n = max + 1;
    let tasks: Vec<_> = (0..n).map(|i| task(&format!("m.f{i}"), now)).collect();
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
    let stored = match s.enqueue(tasks).await {
        Ok(out) => {
            let got: Vec<TaskId> = out.iter().map(|e| e.id).collect();
            ensure_eq!(
                got,
                ids,
                "an accepted batch of max_batch + 1 = {n} tasks: one outcome per task, in order"
            );
            n as u64
        }
        Err(e) if e.kind() == omniq_core::StorageErrorKind::Config => 0,
        Err(e) => {
            return Err(CaseError::new(format!(
                "a batch of max_batch + 1 = {n} tasks must be stored whole or rejected with a \
                 Config error, got kind {}: {e}",
                e.kind()
            )));
        }
    };
    let counts = s
        .counts(Some(omniq_core::DEFAULT_QUEUE))
        .await
        .ctx("counts")?;
    let total: u64 = counts.iter().map(|c| c.total()).sum();
    ensure_eq!(
        total,
        stored,
        "tasks stored by the batch of max_batch + 1 (all of them, or none after a Config error)"
    );
    Ok(())
}
