//! Reads and administration: get_result, reschedule, cancel, list_tasks, counts, purge.

use omniq_core::time::OffsetDateTime;
use omniq_core::{
    CancelOutcome, Page, QueueCounts, Task, TaskFilter, TaskId, TaskResult, TaskStatus, Wake,
};

use crate::MemoryStorage;
use crate::claim::check_queue;
use crate::error::Error;

impl MemoryStorage {
    /// The latest result, unless it outlived the result TTL (by the wall clock).
    pub(crate) fn read_result(&self, id: &TaskId) -> Result<Option<TaskResult>, Error> {
        let result = self.read(|s| s.results.get(id).cloned())?;
        let expired = |r: &TaskResult| {
            self.config
                .ttl()
                .is_some_and(|ttl| r.finished_at < OffsetDateTime::now_utc() - ttl)
        };
        Ok(result.filter(|r| !expired(r)))
    }

    /// Moves a task to `new_eta` as Pending (also a manual retry of a Failed task).
    pub(crate) fn reschedule_task(
        &self,
        id: &TaskId,
        new_eta: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), Error> {
        self.write(|space, wakes| {
            let task = &space.get(id).ok_or(Error::NotFound(*id))?.task;
            let status = task.status;
            if status.is_terminal() {
                return Err(Error::Finished { id: *id, status });
            }
            // A Failed task coming back takes its unique key again: refused while another
            // live task holds it.
            if let (TaskStatus::Failed, Some(key)) = (status, &task.unique_key) {
                if let Some(holder) = space.unique_holder(&task.queue, key) {
                    return Err(Error::KeyHeld {
                        id: *id,
                        key: key.clone(),
                        holder,
                    });
                }
            }
            let queue = space
                .update(id, |e| {
                    e.task.schedule.eta = Some(new_eta);
                    e.task.status = TaskStatus::Pending;
                    e.task.updated_at = now;
                    e.task.runs = 0;
                    e.lease = None;
                    e.cancel_requested = false;
                    e.task.queue.clone()
                })
                .ok_or(Error::NotFound(*id))?;
            wakes.push(Wake::Work { queue });
            Ok(())
        })
    }

    /// Cancels at once, or flags a run in progress.
    pub(crate) fn cancel_task(
        &self,
        id: &TaskId,
        now: OffsetDateTime,
    ) -> Result<CancelOutcome, Error> {
        self.write(|space, wakes| {
            let entry = space.get(id).ok_or(Error::NotFound(*id))?;
            let live_lease = entry.lease.is_some_and(|l| l.until > now);
            match entry.task.status {
                s @ (TaskStatus::Success | TaskStatus::Cancelled) => {
                    Ok(CancelOutcome::AlreadyFinished(s))
                }
                TaskStatus::Running if live_lease => {
                    space.update(id, |e| {
                        e.cancel_requested = true;
                        e.task.updated_at = now;
                    });
                    Ok(CancelOutcome::Requested)
                }
                // Pending, Failed, or Running under an expired lease (its worker is gone).
                _ => {
                    let result = space
                        .update(id, |e| e.end_cancelled(now))
                        .ok_or(Error::NotFound(*id))?;
                    space.results.insert(*id, result);
                    wakes.push(Wake::Finished { task_id: *id });
                    Ok(CancelOutcome::Cancelled)
                }
            }
        })
    }

    /// The earliest pending eta or lease expiry of `queues`.
    pub(crate) fn earliest_due(&self, queues: &[String]) -> Result<Option<OffsetDateTime>, Error> {
        self.check_open()?;
        for q in queues {
            check_queue(q)?;
        }
        self.read(|s| s.next_due(queues))
    }

    /// One page of tasks.
    pub(crate) fn list(&self, filter: &TaskFilter) -> Result<Page<Task>, Error> {
        self.check_open()?;
        if let Some(q) = &filter.queue {
            check_queue(q)?;
        }
        self.read(|s| s.list(filter))
    }

    /// Counts by status.
    pub(crate) fn count(&self, queue: Option<&str>) -> Result<Vec<QueueCounts>, Error> {
        self.check_open()?;
        if let Some(q) = queue {
            check_queue(q)?;
        }
        self.read(|s| s.counts(queue))
    }

    /// Removes results finished before `older_than` and finished tasks last changed
    /// before it; returns how many results went.
    pub(crate) fn purge(&self, older_than: OffsetDateTime) -> Result<u64, Error> {
        self.write(|space, _| {
            let before = space.results.len();
            space.results.retain(|_, r| r.finished_at >= older_than);
            let removed = before - space.results.len();
            for id in space.finished_before(older_than) {
                space.remove(&id);
            }
            Ok(removed as u64)
        })
    }
}
