//! The hot paths in: enqueue and claim.

use std::collections::{HashMap, HashSet};

use omniq_core::{ClaimRequest, Claimed, Enqueued, Lease, Task, TaskStatus, Wake, validate_name};

use crate::MemoryStorage;
use crate::error::Error;

/// Checks a queue name (`Config` error when it fails [`validate_name`]).
pub(crate) fn check_queue(name: &str) -> Result<(), Error> {
    validate_name("queue", name).map_err(Error::InvalidName)
}

/// What enqueue decided for one input, before anything is written.
enum Plan {
    Insert(Box<Task>),
    Duplicate(Enqueued),
}

impl MemoryStorage {
    /// Stores a batch all-or-nothing: every check runs before the first write.
    pub(crate) fn enqueue_tasks(&self, tasks: Vec<Task>) -> Result<Vec<Enqueued>, Error> {
        self.check_open()?;
        for task in &tasks {
            check_queue(&task.queue)?;
        }
        self.write(|space, wakes| {
            // Pass 1: decide every item; a conflict leaves the namespace untouched.
            let mut ids = HashSet::new();
            let mut keys = HashMap::new();
            let mut plan = Vec::with_capacity(tasks.len());
            for mut task in tasks {
                // Only a live (Pending or Running) input is checked against the key's
                // holder; a finished input is stored as given and holds no key.
                if let (Some(key), false) = (&task.unique_key, task.status.is_finished()) {
                    let holder = space
                        .unique_holder(&task.queue, key)
                        .or_else(|| keys.get(&(task.queue.clone(), key.clone())).copied());
                    if let Some(id) = holder {
                        plan.push(Plan::Duplicate(Enqueued {
                            id,
                            duplicate: true,
                        }));
                        continue;
                    }
                }
                if space.contains(&task.id) || !ids.insert(task.id) {
                    return Err(Error::IdExists(task.id));
                }
                if task.status == TaskStatus::Running {
                    // A task is only Running under a lease.
                    task.status = TaskStatus::Pending;
                }
                if let (Some(key), false) = (&task.unique_key, task.status.is_finished()) {
                    keys.insert((task.queue.clone(), key.clone()), task.id);
                }
                plan.push(Plan::Insert(Box::new(task)));
            }
            // Pass 2: write.
            let mut queues = Vec::new();
            let out = plan
                .into_iter()
                .map(|p| match p {
                    Plan::Duplicate(e) => e,
                    Plan::Insert(task) => {
                        let id = task.id;
                        if !queues.contains(&task.queue) {
                            queues.push(task.queue.clone());
                        }
                        space.insert(*task);
                        Enqueued {
                            id,
                            duplicate: false,
                        }
                    }
                })
                .collect();
            wakes.extend(queues.into_iter().map(|queue| Wake::Work { queue }));
            Ok(out)
        })
    }

    /// Claims up to `limit` due tasks in priority, eta, enqueue order.
    pub(crate) fn claim_tasks(&self, req: &ClaimRequest) -> Result<Vec<Claimed>, Error> {
        self.check_open()?;
        let mut queues: Vec<&str> = Vec::with_capacity(req.queues.len());
        for q in &req.queues {
            check_queue(q)?;
            if !queues.contains(&q.as_str()) {
                queues.push(q);
            }
        }
        let now = req.now;
        self.write(|space, wakes| {
            let (due, expired_cancelled) = space.due(&queues, now, req.limit);
            // A cancel-requested task whose worker is gone ends Cancelled.
            for id in expired_cancelled {
                if let Some(result) = space.update(&id, |e| e.end_cancelled(now)) {
                    space.results.insert(id, result);
                    wakes.push(Wake::Finished { task_id: id });
                }
            }
            let mut claimed = Vec::with_capacity(due.len());
            for d in due {
                let token = space.next_token();
                let lease = Lease {
                    token,
                    until: now + req.lease,
                };
                let task = space.update(&d.id, |e| {
                    e.task.status = TaskStatus::Running;
                    e.task.attempts = e.task.attempts.saturating_add(1);
                    e.task.last_attempt_at = Some(now);
                    e.task.updated_at = now;
                    e.lease = Some(lease);
                    e.task.clone()
                });
                if let Some(task) = task {
                    claimed.push(Claimed { task, lease });
                }
            }
            Ok(claimed)
        })
    }
}
