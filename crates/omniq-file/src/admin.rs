//! Reads and administrative writes: get_task, get_result, reschedule, cancel,
//! list_tasks, counts and purge_results.
//!
//! Listing, counting and purging walk the task directories (`{ns}/t/`, one per task,
//! listed in id order) and read each task's newest version: they cost two requests per
//! task and are meant for dashboards and maintenance, not for hot paths.

use crate::claim::{UniqueHold, to_time};
use crate::connect::Op;
use crate::convert::Versioned;
use crate::error::{Error, Result};
use crate::lease::PARALLEL_ITEMS;
use crate::schema::file_name;
use crate::storage::{FileStorage, validate_queue};
use futures::StreamExt;
use omniq_core::{
    CancelOutcome, Cursor, Page, QueueCounts, Task, TaskFilter, TaskId, TaskResult, TaskStatus,
    Wake,
};
use std::collections::{BTreeMap, HashSet};
use time::OffsetDateTime;

/// What purging one task did.
#[derive(Default)]
struct Purged {
    /// Results removed.
    results: u64,
    /// The enqueue batch whose marker the task still needs.
    batch: Option<String>,
}

/// How often a write re-reads after losing a race before giving up (`Unavailable`).
const MAX_RACES: usize = 32;

/// Leftovers older than this are swept by `purge_results`: the records of an enqueue
/// batch that never committed, the marker of a batch whose tasks all moved on, the
/// generations of a unique key whose holder is finished or gone. An enqueue that has not
/// committed within [`crate::claim::COMMIT_DEADLINE`] (half of this) gives up, so an
/// enqueue in flight is never swept.
pub(crate) const SWEEP_AGE: time::Duration = time::Duration::minutes(10);

impl FileStorage {
    pub(crate) async fn read_task(&self, id: &TaskId) -> Result<Option<Task>> {
        self.check_open()?;
        Ok(self.latest(id).await?.map(|v| v.record.task))
    }

    pub(crate) async fn read_result(&self, id: &TaskId) -> Result<Option<TaskResult>> {
        self.check_open()?;
        let Some(v) = self.latest(id).await? else {
            return Ok(None);
        };
        // The TTL is bookkeeping: the configured (wall) clock decides it.
        let cutoff = self.now() - self.inner.result_ttl;
        Ok(v.record.result.filter(|r| r.finished_at >= cutoff))
    }

    pub(crate) async fn move_task(
        &self,
        id: &TaskId,
        new_eta: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<()> {
        self.check_open()?;
        for _ in 0..MAX_RACES {
            let cur = self.latest(id).await?.ok_or(Error::NotFound(*id))?;
            let status = cur.record.task.status;
            if matches!(status, TaskStatus::Success | TaskStatus::Cancelled) {
                return Err(Error::Finished { id: *id, status });
            }
            // A Failed task brought back takes its unique key again, unless another live
            // task holds it now.
            if status == TaskStatus::Failed {
                if let Some(key) = cur.record.task.unique_key.as_deref() {
                    let queue = &cur.record.task.queue;
                    if let UniqueHold::Duplicate(holder) = self.hold_unique(queue, key, *id).await?
                    {
                        if holder != *id {
                            return Err(Error::KeyHeld { id: *id, holder });
                        }
                    }
                }
            }
            let mut next = cur.record.clone();
            next.task.schedule.eta = Some(new_eta);
            next.task.status = TaskStatus::Pending;
            next.task.updated_at = now;
            next.task.runs = 0;
            // A Running task loses its lease (its worker is fenced off) and an explicit
            // reschedule supersedes a cancel request.
            next.lease = None;
            next.cancel = false;
            if let Some(done) = self.transition(&cur, next).await? {
                self.sync().await?;
                self.wake_work([done.record.task.queue.as_str()]);
                return Ok(());
            }
        }
        Err(Error::Contended(*id))
    }

    pub(crate) async fn cancel_task(
        &self,
        id: &TaskId,
        now: OffsetDateTime,
    ) -> Result<CancelOutcome> {
        self.check_open()?;
        for _ in 0..MAX_RACES {
            let cur = self.latest(id).await?.ok_or(Error::NotFound(*id))?;
            let mut next = cur.record.clone();
            let outcome = match cur.record.task.status {
                TaskStatus::Success | TaskStatus::Cancelled => {
                    return Ok(CancelOutcome::AlreadyFinished(cur.record.task.status));
                }
                TaskStatus::Running if cur.record.lease.is_some_and(|l| l.until > now) => {
                    if cur.record.cancel {
                        return Ok(CancelOutcome::Requested);
                    }
                    next.cancel = true;
                    next.task.updated_at = now;
                    CancelOutcome::Requested
                }
                // Pending, Failed, or Running under an expired lease (its worker is gone).
                _ => {
                    next.end_cancelled(now);
                    CancelOutcome::Cancelled
                }
            };
            if self.transition(&cur, next).await?.is_some() {
                self.sync().await?;
                if outcome == CancelOutcome::Cancelled {
                    self.wake(Wake::Finished { task_id: *id });
                }
                return Ok(outcome);
            }
        }
        Err(Error::Contended(*id))
    }

    /// Every task id, ascending.
    async fn task_ids(&self) -> Result<Vec<TaskId>> {
        let listing = self.list_dir(&self.inner.keys.tasks()).await?;
        let mut ids: Vec<TaskId> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| file_name(p).and_then(|n| n.parse().ok()))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The newest version of each task, in the order given (missing ones skipped).
    async fn read_all(&self, ids: &[TaskId]) -> Result<Vec<Versioned>> {
        let futures: Vec<_> = ids.iter().map(|id| self.latest(id)).collect();
        let results: Vec<Result<Option<Versioned>>> = futures::stream::iter(futures)
            .buffered(PARALLEL_ITEMS)
            .collect()
            .await;
        let mut out = Vec::with_capacity(results.len());
        for (id, r) in ids.iter().zip(results) {
            match r {
                Ok(Some(v)) => out.push(v),
                Ok(None) => {}
                // One corrupt record must not hide every other task from a listing.
                Err(e) if e.kind() == omniq_core::StorageErrorKind::Serialization => {
                    tracing::warn!(task_id = %id, error = %e, "skipping a corrupt task record");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    pub(crate) async fn list_page(&self, filter: TaskFilter) -> Result<Page<Task>> {
        self.check_open()?;
        if let Some(q) = &filter.queue {
            validate_queue(q)?;
        }
        if filter.limit == 0 {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            });
        }
        let mut ids = self.task_ids().await?;
        if let Some(Cursor(after)) = &filter.cursor {
            ids.retain(|id| id > after);
        }
        let mut items = Vec::new();
        let mut offset = 0;
        while offset < ids.len() {
            let chunk = &ids[offset..(offset + PARALLEL_ITEMS).min(ids.len())];
            offset += chunk.len();
            for v in self.read_all(chunk).await? {
                let t = v.record.task;
                if filter.status.is_some_and(|s| s != t.status)
                    || filter.queue.as_ref().is_some_and(|q| *q != t.queue)
                {
                    continue;
                }
                if items.len() == filter.limit {
                    // One more match after a full page: there is a next page.
                    let last = items.last().map(|t: &Task| t.id);
                    return Ok(Page {
                        next_cursor: last.map(Cursor),
                        items,
                    });
                }
                items.push(t);
            }
        }
        Ok(Page {
            items,
            next_cursor: None,
        })
    }

    pub(crate) async fn count_tasks(&self, queue: Option<&str>) -> Result<Vec<QueueCounts>> {
        self.check_open()?;
        if let Some(q) = queue {
            validate_queue(q)?;
        }
        let mut by_queue: BTreeMap<String, QueueCounts> = BTreeMap::new();
        if let Some(q) = queue {
            by_queue.insert(
                q.to_string(),
                QueueCounts {
                    queue: q.to_string(),
                    ..QueueCounts::default()
                },
            );
        }
        let ids = self.task_ids().await?;
        for chunk in ids.chunks(PARALLEL_ITEMS * 4) {
            for v in self.read_all(chunk).await? {
                let t = &v.record.task;
                if queue.is_some_and(|q| q != t.queue) {
                    continue;
                }
                by_queue
                    .entry(t.queue.clone())
                    .or_insert_with(|| QueueCounts {
                        queue: t.queue.clone(),
                        ..QueueCounts::default()
                    })
                    .add(t.status, 1);
            }
        }
        Ok(by_queue.into_values().collect())
    }

    pub(crate) async fn purge(&self, older_than: OffsetDateTime) -> Result<u64> {
        self.check_open()?;
        let started = self.now();
        let ids = self.task_ids().await?;
        let mut removed = 0;
        // Enqueue batches whose commit marker a task still needs (its newest version is
        // its first).
        let mut needed = HashSet::new();
        for chunk in ids.chunks(PARALLEL_ITEMS * 4) {
            let futures: Vec<_> = chunk
                .iter()
                .map(|id| self.purge_one(id, older_than))
                .collect();
            let results: Vec<Result<Purged>> = futures::stream::iter(futures)
                .buffered(PARALLEL_ITEMS)
                .collect()
                .await;
            for (id, r) in chunk.iter().zip(results) {
                match r {
                    Ok(p) => {
                        removed += p.results;
                        needed.extend(p.batch);
                    }
                    Err(e) if e.kind() == omniq_core::StorageErrorKind::Serialization => {
                        tracing::warn!(task_id = %id, error = %e, "purge skips a corrupt task record");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        self.sweep_batch_markers(&needed, started).await?;
        self.sweep_unique_keys().await?;
        self.sync().await?;
        Ok(removed)
    }

    /// Purges one task: deletes it when it is finished and older than the cutoff, else
    /// drops its result when that is older. A task that is not visible may be the
    /// leftover of an enqueue batch that never committed: swept once old enough.
    async fn purge_one(&self, id: &TaskId, older_than: OffsetDateTime) -> Result<Purged> {
        for _ in 0..MAX_RACES {
            let Some(cur) = self.latest(id).await? else {
                self.sweep_uncommitted(id).await?;
                return Ok(Purged::default());
            };
            let batch = cur.record.batch.clone().filter(|_| cur.version == 1);
            let old_result = cur
                .record
                .result
                .as_ref()
                .is_some_and(|r| r.finished_at < older_than);
            let t = &cur.record.task;
            if t.status.is_finished() && t.updated_at < older_than {
                self.delete_task(id).await?;
                return Ok(Purged {
                    results: u64::from(old_result),
                    batch: None,
                });
            }
            if !old_result {
                return Ok(Purged { results: 0, batch });
            }
            let mut next = cur.record.clone();
            next.result = None;
            if self.transition(&cur, next).await?.is_some() {
                return Ok(Purged {
                    results: 1,
                    batch: None,
                });
            }
        }
        Err(Error::Contended(*id))
    }

    /// Deletes the first version of a task whose enqueue batch never committed, once it
    /// is [`SWEEP_AGE`] old (an enqueue still in flight gives up long before).
    async fn sweep_uncommitted(&self, id: &TaskId) -> Result<()> {
        let dir = self.inner.keys.task_dir(id);
        let listing = self.list_dir(&dir).await?;
        let [only] = listing.objects.as_slice() else {
            return Ok(());
        };
        let first = self.inner.keys.version(id, 1);
        if only.location != first || self.age(to_time(only.last_modified)) < SWEEP_AGE {
            return Ok(());
        }
        let Some(record) = self.read_version(id, 1).await? else {
            return Ok(());
        };
        let Some(batch) = record.batch.as_deref() else {
            return Ok(());
        };
        let marker = self.inner.keys.batch_marker(batch);
        if self.read(&marker).await?.is_none() {
            tracing::info!(task_id = %id, batch, "sweeping a task of an enqueue batch that never committed");
            self.delete_quiet(&first).await?;
            self.remove_empty_dir(&dir).await;
        }
        Ok(())
    }

    /// Deletes the commit markers no task needs any more: those of batches whose tasks
    /// all moved past their first version (or were purged), created [`SWEEP_AGE`] before
    /// this purge began (so every task of theirs was in its listing).
    async fn sweep_batch_markers(
        &self,
        needed: &HashSet<String>,
        started: OffsetDateTime,
    ) -> Result<()> {
        let listing = self.list_dir(&self.inner.keys.batch_root()).await?;
        let dead: Vec<Op> = listing
            .objects
            .into_iter()
            .filter(|o| {
                file_name(&o.location).is_some_and(|b| !needed.contains(b))
                    && started - to_time(o.last_modified) >= SWEEP_AGE
            })
            .map(|o| Op::Delete(o.location))
            .collect();
        if !dead.is_empty() {
            self.run(dead).await?;
        }
        Ok(())
    }

    /// Deletes the unique keys nobody holds: every generation of a key whose newest
    /// holder is finished or gone and that was taken at least [`SWEEP_AGE`] ago (a holder
    /// whose task is still being written is younger), and the dead generations of the
    /// others. Oldest first, so a taker that is checking its new generation finds its
    /// predecessor gone and starts over.
    async fn sweep_unique_keys(&self) -> Result<()> {
        let root = self.inner.keys.unique_root();
        for queue_dir in self.list_dir(&root).await?.common_prefixes {
            for key_dir in self.list_dir(&queue_dir).await?.common_prefixes {
                self.sweep_unique_key(&key_dir).await?;
            }
        }
        Ok(())
    }

    async fn sweep_unique_key(&self, dir: &object_store::path::Path) -> Result<()> {
        let gens = self.generations(dir).await?;
        let Some(&(newest, modified)) = gens.last() else {
            self.remove_empty_dir(dir).await;
            return Ok(());
        };
        let path = dir.clone().join(format!("{newest:010}"));
        let holder: Option<TaskId> = self
            .read(&path)
            .await?
            .and_then(|b| std::str::from_utf8(&b).ok()?.trim().parse().ok());
        let held = match holder {
            Some(holder) => match self.latest(&holder).await {
                Ok(Some(v)) => matches!(
                    v.record.task.status,
                    TaskStatus::Pending | TaskStatus::Running
                ),
                Ok(None) => false,
                // Unreadable: leave the key alone.
                Err(e) if e.kind() == omniq_core::StorageErrorKind::Serialization => true,
                Err(e) => return Err(e),
            },
            None => false,
        };
        let free = !held && self.age(modified) >= SWEEP_AGE;
        let dead: Vec<Op> = gens
            .iter()
            .filter(|(g, _)| free || *g + 1 < newest)
            .map(|(g, _)| Op::Delete(dir.clone().join(format!("{g:010}"))))
            .collect();
        if !dead.is_empty() {
            self.run(dead).await?;
        }
        if free {
            self.remove_empty_dir(dir).await;
        }
        Ok(())
    }

    /// Deletes every version of a finished task (it has no index entries).
    async fn delete_task(&self, id: &TaskId) -> Result<()> {
        let dir = self.inner.keys.task_dir(id);
        let listing = self.list_dir(&dir).await?;
        for o in listing.objects {
            self.delete_quiet(&o.location).await?;
        }
        self.remove_empty_dir(&dir).await;
        Ok(())
    }
}
