//! The fenced lease writes: heartbeat, start, complete, fail and release. Each item reads the
//! task's newest version, checks that it is Running under the presented token, and
//! creates the next version; a lost race re-reads and decides again, so a stale worker
//! changes nothing and every item gets its own [`Outcome`].

use crate::convert::{Record, StoredLease, Versioned};
use crate::error::{Error, Result};
use crate::storage::FileStorage;
use futures::StreamExt;
use omniq_core::{Completion, FailAction, Failure, LeaseRef, Outcome, TaskId, TaskStatus, Wake};
use std::collections::HashSet;
use time::OffsetDateTime;

/// Items of one batch written at once.
pub(crate) const PARALLEL_ITEMS: usize = 16;

/// How often one item re-reads after losing a race before giving up (`Unavailable`).
const MAX_RACES: usize = 32;

/// What an applied item changed, for the wake-ups sent after the batch.
struct Applied {
    outcome: Outcome,
    /// The task went back to Pending on this queue.
    requeued: Option<String>,
    /// The run ended (or its outcome was stored): waiters re-check.
    finished: Option<TaskId>,
}

impl Applied {
    fn only(outcome: Outcome) -> Self {
        Self {
            outcome,
            requeued: None,
            finished: None,
        }
    }
}

impl FileStorage {
    pub(crate) async fn extend_leases(
        &self,
        leases: &[LeaseRef],
        until: OffsetDateTime,
    ) -> Result<Vec<Outcome>> {
        let items: Vec<LeaseRef> = leases.to_vec();
        self.batch(
            Op::Heartbeat,
            items,
            |l| *l,
            |_, rec: &Record| {
                let mut next = rec.clone();
                next.lease = next.lease.map(|l| StoredLease { until, ..l });
                let outcome = if rec.cancel {
                    Outcome::CancelRequested
                } else {
                    Outcome::Ok
                };
                (next, Some(outcome))
            },
        )
        .await
    }

    pub(crate) async fn record_starts(&self, leases: &[LeaseRef]) -> Result<Vec<Outcome>> {
        let items: Vec<LeaseRef> = leases.to_vec();
        self.batch(
            Op::Start,
            items,
            |l| *l,
            |_, rec: &Record| {
                let mut next = rec.clone();
                next.task.runs = next.task.runs.saturating_add(1);
                (next, None)
            },
        )
        .await
    }

    pub(crate) async fn complete_runs(&self, items: Vec<Completion>) -> Result<Vec<Outcome>> {
        self.batch(
            Op::Complete,
            items,
            |c| c.lease,
            |c, rec: &Record| {
                let mut next = rec.clone();
                next.result =
                    Some(rec.run_result(TaskStatus::Success, c.result.clone(), None, c.now));
                next.task.error = None;
                next.task.updated_at = c.now;
                next.lease = None;
                match c.next_run {
                    // A cancel request ends an interval series: the run is the last.
                    Some(at) if !rec.cancel => {
                        next.task.status = TaskStatus::Pending;
                        next.task.schedule.eta = Some(at);
                        next.task.attempts = 0;
                        next.task.runs = 0;
                    }
                    _ => {
                        next.task.status = TaskStatus::Success;
                        next.cancel = false;
                    }
                }
                (next, None)
            },
        )
        .await
    }

    pub(crate) async fn fail_runs(&self, items: Vec<Failure>) -> Result<Vec<Outcome>> {
        self.batch(
            Op::Fail,
            items,
            |f| f.lease,
            |f, rec: &Record| {
                let mut next = rec.clone();
                next.task.error = Some(f.error.clone());
                next.task.updated_at = f.now;
                next.lease = None;
                if let FailAction::Defer { .. } = f.action {
                    // The run did not happen: its attempt is not counted, also when the
                    // task ends Cancelled below.
                    next.task.attempts = next.task.attempts.saturating_sub(1);
                }
                if rec.cancel {
                    next.end_cancelled(f.now);
                    return (next, None);
                }
                let failed =
                    || rec.run_result(TaskStatus::Failed, None, Some(f.error.clone()), f.now);
                match f.action {
                    FailAction::Retry { at } => {
                        next.task.status = TaskStatus::Pending;
                        next.task.schedule.eta = Some(at);
                    }
                    FailAction::NextRun { at } => {
                        next.result = Some(failed());
                        next.task.status = TaskStatus::Pending;
                        next.task.schedule.eta = Some(at);
                        next.task.attempts = 0;
                        next.task.runs = 0;
                    }
                    FailAction::Fail => {
                        next.result = Some(failed());
                        next.task.status = TaskStatus::Failed;
                    }
                    FailAction::Defer { at } => {
                        next.task.status = TaskStatus::Pending;
                        next.task.schedule.eta = Some(at);
                    }
                }
                (next, None)
            },
        )
        .await
    }

    pub(crate) async fn release_leases(
        &self,
        leases: &[LeaseRef],
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>> {
        let items: Vec<LeaseRef> = leases.to_vec();
        self.batch(
            Op::Release,
            items,
            |l| *l,
            |_, rec: &Record| {
                let mut next = rec.clone();
                if rec.cancel {
                    // The claim's attempt is given back here too, on the task and on its
                    // Cancelled result.
                    next.task.attempts = next.task.attempts.saturating_sub(1);
                    next.end_cancelled(now);
                } else {
                    // It was due when claimed: claimable again at once, its attempt uncounted.
                    next.task.status = TaskStatus::Pending;
                    next.task.attempts = next.task.attempts.saturating_sub(1);
                    next.task.updated_at = now;
                    next.lease = None;
                }
                (next, None)
            },
        )
        .await
    }

    /// Applies `apply` to every item under the fencing rule, concurrently (one item at a
    /// time when the batch names a task twice, so later items see earlier ones), then
    /// flushes once and sends the wake-ups.
    ///
    /// `apply` turns the current record into the next one and, for heartbeats, the
    /// outcome to report (else `Ok`).
    async fn batch<T, L, F>(
        &self,
        op: Op,
        items: Vec<T>,
        lease_of: L,
        apply: F,
    ) -> Result<Vec<Outcome>>
    where
        T: Send + Sync,
        L: Fn(&T) -> LeaseRef + Send + Sync,
        F: Fn(&T, &Record) -> (Record, Option<Outcome>) + Send + Sync,
    {
        self.check_open()?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut seen = HashSet::new();
        let duplicates = !items.iter().all(|i| seen.insert(lease_of(i).task_id));
        // Fast path: items whose lease this process holds are written from the version
        // it remembers, all in one batch; the others (and lost races) go one by one.
        let mut results: Vec<Option<Result<Applied>>> = items.iter().map(|_| None).collect();
        if !duplicates {
            let mut pairs = Vec::new();
            let mut slots = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let lease = lease_of(item);
                let Some(cur) = self
                    .inner
                    .held
                    .get(&lease.task_id)
                    .filter(|v| v.record.holds(lease.token))
                else {
                    continue;
                };
                let (next, outcome) = apply(item, &cur.record);
                pairs.push((cur, next));
                slots.push((i, outcome));
            }
            let done = self.transitions(pairs).await?;
            for ((i, outcome), done) in slots.into_iter().zip(done) {
                if let Some(done) = done {
                    results[i] = Some(Ok(applied(op, &done, outcome.unwrap_or(Outcome::Ok))));
                }
            }
        }
        let width = if duplicates { 1 } else { PARALLEL_ITEMS };
        // Futures collected first: a stream holding a borrowing closure would not be
        // `Send` for every lifetime (rust-lang/rust#102211).
        let futures: Vec<_> = items
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_none())
            .map(|(item, _)| self.fenced(op, item, &lease_of, &apply))
            .collect();
        let slow: Vec<Result<Applied>> = futures::stream::iter(futures)
            .buffered(width)
            .collect()
            .await;
        let mut slow = slow.into_iter();
        let results: Vec<Result<Applied>> = results
            .into_iter()
            .zip(&items)
            .map(|(r, item)| {
                r.or_else(|| slow.next())
                    .unwrap_or(Err(Error::Contended(lease_of(item).task_id)))
            })
            .collect();
        let mut out = Vec::with_capacity(results.len());
        let mut applied = Vec::new();
        for r in results {
            let a = r?;
            out.push(a.outcome);
            applied.push(a);
        }
        // Outcomes are flushed before they are acknowledged; a heartbeat lost to a power
        // cut only shortens a lease, and a start lost to one only gives a crash-looping
        // task one more run, so those are not.
        if !matches!(op, Op::Heartbeat | Op::Start)
            && applied
                .iter()
                .any(|a| matches!(a.outcome, Outcome::Ok | Outcome::CancelRequested))
        {
            self.sync().await?;
        }
        for a in &applied {
            if let Some(task_id) = a.finished {
                self.wake(Wake::Finished { task_id });
            }
        }
        self.wake_work(applied.iter().filter_map(|a| a.requeued.as_deref()));
        Ok(out)
    }

    /// One fenced item: read, check the token, write the next version; on a lost race
    /// read again.
    async fn fenced<T, L, F>(&self, op: Op, item: &T, lease_of: &L, apply: &F) -> Result<Applied>
    where
        T: Send + Sync,
        L: Fn(&T) -> LeaseRef + Send + Sync,
        F: Fn(&T, &Record) -> (Record, Option<Outcome>) + Send + Sync,
    {
        let lease = lease_of(item);
        for _ in 0..MAX_RACES {
            let Some(cur) = self.latest(&lease.task_id).await? else {
                return Ok(Applied::only(Outcome::NotFound));
            };
            if !cur.record.holds(lease.token) {
                return Ok(Applied::only(Outcome::LeaseLost));
            }
            let (next, outcome) = apply(item, &cur.record);
            if let Some(done) = self.transition(&cur, next).await? {
                return Ok(applied(op, &done, outcome.unwrap_or(Outcome::Ok)));
            }
        }
        Err(Error::Contended(lease.task_id))
    }
}

/// Which write a batch is, for the wake-ups it owes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Heartbeat,
    Start,
    Complete,
    Fail,
    Release,
}

/// The wake-ups a transition owes: `Finished` per stored run outcome (complete, fail —
/// a retry too, so waiters re-check — and a release that ended Cancelled), `Work` when
/// the task went back to Pending.
fn applied(op: Op, done: &Versioned, outcome: Outcome) -> Applied {
    let after = &done.record.task;
    let finished = match op {
        Op::Heartbeat | Op::Start => false,
        Op::Complete | Op::Fail => true,
        Op::Release => after.status == TaskStatus::Cancelled,
    };
    Applied {
        outcome,
        requeued: (after.status == TaskStatus::Pending).then(|| after.queue.clone()),
        finished: finished.then_some(after.id),
    }
}
