//! Enqueue: batches, ids, unique keys and names.
//!
//! Each case's rule is written in the `# Behavior` section of the method it checks
//! (`crates/omniq-core/src/storage.rs`), which names the case.

use super::{
    Case, LEASE, base_now, case, claim_none, claim_one, complete, enqueue_one, get, grouped, task,
    task_on,
};
use crate::check::{CaseError, Ctx};
use omniq_core::{ClaimRequest, Outcome, Storage, TaskId};
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
