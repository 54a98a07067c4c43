//! The fenced writes: heartbeat, start, complete, fail, release.
//!
//! Each item is checked against the fencing rule on its own ([`fence`]) and applied
//! in batch order, so one stale item never fails its neighbours and a batch naming a
//! task twice behaves like two calls.

use omniq_core::time::OffsetDateTime;
use omniq_core::{Completion, FailAction, Failure, Lease, LeaseRef, Outcome, TaskStatus, Wake};

use crate::MemoryStorage;
use crate::error::Error;
use crate::state::Space;

/// `None` when `lease` is the current lease of a Running task, else the item's outcome.
fn fence(space: &Space, lease: &LeaseRef) -> Option<Outcome> {
    match space.get(&lease.task_id) {
        None => Some(Outcome::NotFound),
        Some(e) if !e.holds(lease.token) => Some(Outcome::LeaseLost),
        Some(_) => None,
    }
}

impl MemoryStorage {
    /// Extends each held lease to `until`.
    pub(crate) fn extend_leases(
        &self,
        leases: &[LeaseRef],
        until: OffsetDateTime,
    ) -> Result<Vec<Outcome>, Error> {
        self.write(|space, _| {
            Ok(leases
                .iter()
                .map(|l| {
                    if let Some(stale) = fence(space, l) {
                        return stale;
                    }
                    let cancel = space.update(&l.task_id, |e| {
                        e.lease = Some(Lease {
                            token: l.token,
                            until,
                        });
                        e.cancel_requested
                    });
                    match cancel {
                        Some(true) => Outcome::CancelRequested,
                        _ => Outcome::Ok,
                    }
                })
                .collect())
        })
    }

    /// Counts a run for each held lease whose handler is starting.
    pub(crate) fn record_starts(&self, leases: &[LeaseRef]) -> Result<Vec<Outcome>, Error> {
        self.write(|space, _| {
            Ok(leases
                .iter()
                .map(|l| {
                    if let Some(stale) = fence(space, l) {
                        return stale;
                    }
                    space.update(&l.task_id, |e| e.task.runs = e.task.runs.saturating_add(1));
                    Outcome::Ok
                })
                .collect())
        })
    }

    /// Stores each successful run's result; Success, or Pending at the next slot.
    pub(crate) fn complete_runs(&self, items: Vec<Completion>) -> Result<Vec<Outcome>, Error> {
        self.write(|space, wakes| {
            Ok(items
                .into_iter()
                .map(|c| {
                    if let Some(stale) = fence(space, &c.lease) {
                        return stale;
                    }
                    let id = c.lease.task_id;
                    let now = c.now;
                    let (result, requeued) = space
                        .update(&id, |e| {
                            let result = e.result(TaskStatus::Success, c.result, None, now);
                            e.task.error = None;
                            e.task.updated_at = now;
                            e.lease = None;
                            let requeue = c.next_run.filter(|_| !e.cancel_requested);
                            e.cancel_requested = false;
                            match requeue {
                                Some(at) => {
                                    e.task.status = TaskStatus::Pending;
                                    e.task.schedule.eta = Some(at);
                                    e.task.attempts = 0;
                                    e.task.runs = 0;
                                    (result, Some(e.task.queue.clone()))
                                }
                                None => {
                                    e.task.status = TaskStatus::Success;
                                    (result, None)
                                }
                            }
                        })
                        .expect("fenced, so present");
                    space.results.insert(id, result);
                    wakes.push(Wake::Finished { task_id: id });
                    if let Some(queue) = requeued {
                        wakes.push(Wake::Work { queue });
                    }
                    Outcome::Ok
                })
                .collect())
        })
    }

    /// Stores each failed run's error and applies the runtime's decision.
    pub(crate) fn fail_runs(&self, items: Vec<Failure>) -> Result<Vec<Outcome>, Error> {
        self.write(|space, wakes| {
            Ok(items
                .into_iter()
                .map(|f| {
                    if let Some(stale) = fence(space, &f.lease) {
                        return stale;
                    }
                    let id = f.lease.task_id;
                    let now = f.now;
                    let (result, requeued) = space
                        .update(&id, |e| {
                            e.task.error = Some(f.error.clone());
                            e.task.updated_at = now;
                            e.lease = None;
                            if matches!(f.action, FailAction::Defer { .. }) {
                                // The run did not happen: its claim's attempt is not counted.
                                e.task.attempts = e.task.attempts.saturating_sub(1);
                            }
                            if e.cancel_requested {
                                return (Some(e.end_cancelled(now)), None);
                            }
                            let failed = |e: &crate::state::Entry| {
                                e.result(TaskStatus::Failed, None, Some(f.error.clone()), now)
                            };
                            match f.action {
                                FailAction::Retry { at } | FailAction::Defer { at } => {
                                    e.task.status = TaskStatus::Pending;
                                    e.task.schedule.eta = Some(at);
                                    (None, Some(e.task.queue.clone()))
                                }
                                FailAction::NextRun { at } => {
                                    let result = failed(e);
                                    e.task.status = TaskStatus::Pending;
                                    e.task.schedule.eta = Some(at);
                                    e.task.attempts = 0;
                                    e.task.runs = 0;
                                    (Some(result), Some(e.task.queue.clone()))
                                }
                                FailAction::Fail => {
                                    e.task.status = TaskStatus::Failed;
                                    (Some(failed(e)), None)
                                }
                            }
                        })
                        .expect("fenced, so present");
                    if let Some(result) = result {
                        space.results.insert(id, result);
                    }
                    wakes.push(Wake::Finished { task_id: id });
                    if let Some(queue) = requeued {
                        wakes.push(Wake::Work { queue });
                    }
                    Outcome::Ok
                })
                .collect())
        })
    }

    /// Hands back claims that never started: Pending again, the attempt not counted.
    pub(crate) fn release_claims(
        &self,
        leases: &[LeaseRef],
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>, Error> {
        self.write(|space, wakes| {
            Ok(leases
                .iter()
                .map(|l| {
                    if let Some(stale) = fence(space, l) {
                        return stale;
                    }
                    let id = l.task_id;
                    let cancelled = space
                        .update(&id, |e| {
                            e.lease = None;
                            e.task.attempts = e.task.attempts.saturating_sub(1);
                            e.task.updated_at = now;
                            if e.cancel_requested {
                                return Some(e.end_cancelled(now));
                            }
                            e.task.status = TaskStatus::Pending;
                            wakes.push(Wake::Work {
                                queue: e.task.queue.clone(),
                            });
                            None
                        })
                        .expect("fenced, so present");
                    if let Some(result) = cancelled {
                        space.results.insert(id, result);
                        wakes.push(Wake::Finished { task_id: id });
                    }
                    Outcome::Ok
                })
                .collect())
        })
    }
}
