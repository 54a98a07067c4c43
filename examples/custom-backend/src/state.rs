//! One namespace's data and the ordered indexes that keep `claim` and `next_due` from
//! scanning: the in-memory counterpart of a schema.
//!
//! Every change to a stored task goes through [`Space::update`] (or `insert` /
//! `remove`), which takes the task out of every index, applies the change, and puts it
//! back where its new state belongs, so the indexes can never drift from the tasks.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use omniq_core::time::OffsetDateTime;
use omniq_core::{
    Cursor, Lease, LeaseToken, Page, Payload, QueueCounts, Task, TaskError, TaskFilter, TaskId,
    TaskResult, TaskStatus,
};

/// A stored task and what the contract keeps beside it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The task as `get_task` returns it.
    pub(crate) task: Task,
    /// Enqueue order within the namespace (the claim order's last tie-breaker).
    pub(crate) seq: u64,
    /// The current lease while Running.
    pub(crate) lease: Option<Lease>,
    /// `cancel` answered `Requested` for the current run.
    pub(crate) cancel_requested: bool,
}

impl Entry {
    /// Ends the task Cancelled now and returns its Cancelled result (no payload, the
    /// task's last error).
    pub(crate) fn end_cancelled(&mut self, now: OffsetDateTime) -> TaskResult {
        self.task.status = TaskStatus::Cancelled;
        self.task.updated_at = now;
        self.lease = None;
        self.cancel_requested = false;
        let error = self.task.error.clone();
        self.result(TaskStatus::Cancelled, None, error, now)
    }

    /// A result of this run with the task's attempts and `last_attempt_at`.
    pub(crate) fn result(
        &self,
        status: TaskStatus,
        result: Option<Payload>,
        error: Option<TaskError>,
        now: OffsetDateTime,
    ) -> TaskResult {
        TaskResult::of_run(&self.task, status, result, error, now)
    }

    /// Whether `token` is the current lease of a Running task (the fencing rule).
    pub(crate) fn holds(&self, token: LeaseToken) -> bool {
        self.task.status == TaskStatus::Running && self.lease.is_some_and(|l| l.token == token)
    }
}

/// Pending tasks of one priority, by (eta, enqueue order).
type Band = BTreeSet<(OffsetDateTime, u64, TaskId)>;

/// The ordered indexes of one queue.
#[derive(Debug, Default)]
struct QueueIndex {
    /// Pending tasks: highest priority first, then by eta and enqueue order.
    pending: BTreeMap<Reverse<i32>, Band>,
    /// Running tasks by lease expiry.
    leases: BTreeSet<(OffsetDateTime, u64, TaskId)>,
    /// Tasks by status.
    counts: QueueCounts,
}

/// A due task found by [`Space::due`], in claim order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Due {
    priority: Reverse<i32>,
    eta: OffsetDateTime,
    seq: u64,
    /// The task.
    pub(crate) id: TaskId,
}

/// One namespace: every task, result and index.
#[derive(Debug, Default)]
pub(crate) struct Space {
    tasks: BTreeMap<TaskId, Entry>,
    queues: BTreeMap<String, QueueIndex>,
    /// (queue, unique_key) → the live task that holds it.
    unique: HashMap<(String, String), TaskId>,
    /// The latest finished run's result per task.
    pub(crate) results: HashMap<TaskId, TaskResult>,
    next_seq: u64,
    last_token: i64,
}

impl Space {
    /// The entry with this id.
    pub(crate) fn get(&self, id: &TaskId) -> Option<&Entry> {
        self.tasks.get(id)
    }

    /// Whether a task with this id is stored.
    pub(crate) fn contains(&self, id: &TaskId) -> bool {
        self.tasks.contains_key(id)
    }

    /// The live task holding (queue, key), if any.
    pub(crate) fn unique_holder(&self, queue: &str, key: &str) -> Option<TaskId> {
        self.unique
            .get(&(queue.to_owned(), key.to_owned()))
            .copied()
    }

    /// Stores a new task (the caller checked that its id is free).
    pub(crate) fn insert(&mut self, task: Task) {
        self.next_seq += 1;
        let entry = Entry {
            task,
            seq: self.next_seq,
            lease: None,
            cancel_requested: false,
        };
        link(&mut self.queues, &mut self.unique, &entry);
        self.tasks.insert(entry.task.id, entry);
    }

    /// Applies `f` to the entry, keeping every index in step. `None` for an unknown id.
    pub(crate) fn update<R>(&mut self, id: &TaskId, f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
        let entry = self.tasks.get_mut(id)?;
        unlink(&mut self.queues, &mut self.unique, entry);
        let r = f(entry);
        link(&mut self.queues, &mut self.unique, entry);
        Some(r)
    }

    /// Removes a task from the store and every index.
    pub(crate) fn remove(&mut self, id: &TaskId) -> Option<Entry> {
        let entry = self.tasks.remove(id)?;
        unlink(&mut self.queues, &mut self.unique, &entry);
        Some(entry)
    }

    /// A fencing token greater than every token issued before in this namespace.
    pub(crate) fn next_token(&mut self) -> LeaseToken {
        self.last_token += 1;
        LeaseToken(self.last_token)
    }

    /// The tasks of `queues` that are due at `now`, in claim order, at most `limit` of
    /// them; and, separately, the cancel-requested tasks whose lease expired (they end
    /// Cancelled instead of being redelivered).
    ///
    /// Reads each queue's priority bands from the front, stopping at the first task not
    /// yet due, and the lease index up to the first live lease: no scan.
    pub(crate) fn due(
        &self,
        queues: &[&str],
        now: OffsetDateTime,
        limit: usize,
    ) -> (Vec<Due>, Vec<TaskId>) {
        let mut due = Vec::new();
        let mut expired_cancelled = Vec::new();
        for index in queues.iter().filter_map(|q| self.queues.get(*q)) {
            let mut taken = 0;
            'bands: for (priority, band) in &index.pending {
                for &(eta, seq, id) in band {
                    if taken == limit {
                        break 'bands;
                    }
                    if eta > now {
                        break;
                    }
                    due.push(Due {
                        priority: *priority,
                        eta,
                        seq,
                        id,
                    });
                    taken += 1;
                }
            }
            for &(until, seq, id) in &index.leases {
                if until > now {
                    break;
                }
                let Some(entry) = self.tasks.get(&id) else {
                    continue;
                };
                if entry.cancel_requested {
                    expired_cancelled.push(id);
                } else {
                    due.push(Due {
                        priority: Reverse(entry.task.priority),
                        eta: entry.task.effective_eta(),
                        seq,
                        id,
                    });
                }
            }
        }
        due.sort_unstable();
        due.truncate(limit);
        (due, expired_cancelled)
    }

    /// The earliest pending eta or lease expiry on `queues`.
    pub(crate) fn next_due(&self, queues: &[String]) -> Option<OffsetDateTime> {
        queues
            .iter()
            .filter_map(|q| self.queues.get(q))
            .flat_map(|index| {
                let etas = index
                    .pending
                    .values()
                    .filter_map(|b| b.first().map(|k| k.0));
                etas.chain(index.leases.first().map(|k| k.0))
            })
            .min()
    }

    /// Counts for one queue (zeros when it is empty) or for every queue holding a task.
    pub(crate) fn counts(&self, queue: Option<&str>) -> Vec<QueueCounts> {
        match queue {
            Some(q) => vec![self.queues.get(q).map_or_else(
                || QueueCounts {
                    queue: q.to_owned(),
                    ..QueueCounts::default()
                },
                |i| i.counts.clone(),
            )],
            None => self
                .queues
                .values()
                .filter(|i| i.counts.total() > 0)
                .map(|i| i.counts.clone())
                .collect(),
        }
    }

    /// One page of tasks in id order.
    pub(crate) fn list(&self, filter: &TaskFilter) -> Page<Task> {
        use std::ops::Bound::{Excluded, Unbounded};
        if filter.limit == 0 {
            return Page {
                items: Vec::new(),
                next_cursor: None,
            };
        }
        let start = filter.cursor.as_ref().map_or(Unbounded, |c| Excluded(c.0));
        let mut matching = self
            .tasks
            .range((start, Unbounded))
            .map(|(_, e)| &e.task)
            .filter(|t| filter.status.is_none_or(|s| t.status == s))
            .filter(|t| filter.queue.as_ref().is_none_or(|q| &t.queue == q));
        let items: Vec<Task> = matching.by_ref().take(filter.limit).cloned().collect();
        let next_cursor = match (matching.next(), items.last()) {
            (Some(_), Some(last)) => Some(Cursor(last.id)),
            _ => None,
        };
        Page { items, next_cursor }
    }

    /// Ids of finished tasks last changed before `cutoff` (purge's second half).
    pub(crate) fn finished_before(&self, cutoff: OffsetDateTime) -> Vec<TaskId> {
        self.tasks
            .values()
            .filter(|e| e.task.status.is_finished() && e.task.updated_at < cutoff)
            .map(|e| e.task.id)
            .collect()
    }
}

/// Puts an entry into the indexes its state belongs in.
fn link(
    queues: &mut BTreeMap<String, QueueIndex>,
    unique: &mut HashMap<(String, String), TaskId>,
    e: &Entry,
) {
    let t = &e.task;
    let index = queues.entry(t.queue.clone()).or_default();
    index.counts.queue.clone_from(&t.queue);
    index.counts.add(t.status, 1);
    match t.status {
        TaskStatus::Pending => {
            index
                .pending
                .entry(Reverse(t.priority))
                .or_default()
                .insert((t.effective_eta(), e.seq, t.id));
        }
        TaskStatus::Running => {
            if let Some(lease) = e.lease {
                index.leases.insert((lease.until, e.seq, t.id));
            }
        }
        _ => {}
    }
    if !t.status.is_finished() {
        if let Some(key) = &t.unique_key {
            unique.entry((t.queue.clone(), key.clone())).or_insert(t.id);
        }
    }
}

/// Takes an entry out of every index (the inverse of [`link`]).
fn unlink(
    queues: &mut BTreeMap<String, QueueIndex>,
    unique: &mut HashMap<(String, String), TaskId>,
    e: &Entry,
) {
    let t = &e.task;
    if let Some(index) = queues.get_mut(&t.queue) {
        let slot = index.counts.get_mut(t.status);
        *slot = slot.saturating_sub(1);
        if let Some(band) = index.pending.get_mut(&Reverse(t.priority)) {
            band.remove(&(t.effective_eta(), e.seq, t.id));
            if band.is_empty() {
                index.pending.remove(&Reverse(t.priority));
            }
        }
        if let Some(lease) = e.lease {
            index.leases.remove(&(lease.until, e.seq, t.id));
        }
    }
    if let Some(key) = &t.unique_key {
        let k = (t.queue.clone(), key.clone());
        if unique.get(&k) == Some(&t.id) {
            unique.remove(&k);
        }
    }
}
