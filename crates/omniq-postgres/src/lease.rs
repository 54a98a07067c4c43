//! The fenced lease writes: heartbeat, start, complete, fail and release. Each batch is one
//! `UPDATE … FROM unnest(…)` statement that checks `status = 'running' AND lease_token =
//! token` in SQL, so a stale worker changes nothing, writes the results in the same
//! statement, and answers an [`Outcome`] per item (a miss is looked up in the same
//! statement: LeaseLost when the task exists, NotFound when it does not).
//!
//! A batch naming one task twice is split into segments without repeats, run in order
//! in one transaction, so the second item sees the first one's effect like a second
//! call would.

use crate::convert::{PgTime, encode_error};
use crate::error::{Error, Result};
use crate::storage::{MAX_BATCH, PostgresStorage};
use omniq_core::{Completion, FailAction, Failure, LeaseRef, Outcome, TaskId, TaskStatus, Wake};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use std::collections::HashSet;
use std::ops::Range;
use time::OffsetDateTime;
use uuid::Uuid;

/// Runs `$body` (with `$conn: &mut PgConnection` and `$range`) once per segment of
/// `$segments`: on a pooled connection when there is one segment, else in one
/// transaction. Collects the bodies' `Vec`s.
macro_rules! per_segment {
    ($storage:expr, $segments:expr, |$conn:ident, $range:ident| $body:expr) => {{
        let segments: Vec<Range<usize>> = $segments;
        let mut pooled = $storage.db()?.acquire().await?;
        let mut out = Vec::new();
        if let [only] = segments.as_slice() {
            let $conn: &mut PgConnection = &mut pooled;
            let $range = only.clone();
            out.extend($body);
        } else {
            let mut tx = sqlx::Connection::begin(&mut *pooled).await?;
            for $range in segments {
                let $conn: &mut PgConnection = &mut tx;
                out.extend($body);
            }
            tx.commit().await?;
        }
        out
    }};
}

/// Consecutive ranges of at most [`MAX_BATCH`] items in which no task appears twice.
fn segments(ids: impl Iterator<Item = TaskId>) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut start = 0;
    let mut i = 0;
    for id in ids {
        if i - start == MAX_BATCH || !seen.insert(id) {
            out.push(start..i);
            start = i;
            seen.clear();
            seen.insert(id);
        }
        i += 1;
    }
    if i > start {
        out.push(start..i);
    }
    out
}

/// The outcome of an item the statement did not apply: LeaseLost when the task exists.
fn missed(known: Option<bool>) -> Outcome {
    if known == Some(true) {
        Outcome::LeaseLost
    } else {
        Outcome::NotFound
    }
}

/// One item of a finishing write: its outcome, and for an applied item the task id,
/// the status it now has, and its queue.
struct Applied {
    outcome: Outcome,
    now: Option<(TaskId, String, String)>,
}

/// Checks a statement answered one row per item.
fn one_row_each(rows: &[PgRow], items: usize) -> Result<()> {
    if rows.len() == items {
        Ok(())
    } else {
        Err(Error::Unexpected(format!(
            "a lease write answered {} rows for {items} items",
            rows.len()
        )))
    }
}

/// Reads `ord, status, queue, known, …` rows of complete, fail and release.
fn applied_rows(rows: &[PgRow], ids: &[TaskId]) -> Result<Vec<Applied>> {
    one_row_each(rows, ids.len())?;
    let mut out = Vec::with_capacity(rows.len());
    for (row, id) in rows.iter().zip(ids) {
        let status: Option<String> = row.try_get(1)?;
        let queue: Option<String> = row.try_get(2)?;
        let known: Option<bool> = row.try_get(3)?;
        out.push(match (status, queue) {
            (Some(status), Some(queue)) => Applied {
                outcome: Outcome::Ok,
                now: Some((*id, status, queue)),
            },
            _ => Applied {
                outcome: missed(known),
                now: None,
            },
        });
    }
    Ok(out)
}

fn lease_columns(leases: &[LeaseRef]) -> (Vec<Uuid>, Vec<i64>) {
    leases.iter().map(|l| (l.task_id.0, l.token.0)).unzip()
}

impl PostgresStorage {
    pub(crate) async fn extend_leases(
        &self,
        leases: &[LeaseRef],
        until: OffsetDateTime,
    ) -> Result<Vec<Outcome>> {
        self.check_open()?;
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let until = PgTime::of(until);
        let sql = &self.inner.sql.heartbeat;
        Ok(per_segment!(
            self,
            segments(leases.iter().map(|l| l.task_id)),
            |conn, range| {
                let (ids, tokens) = lease_columns(&leases[range]);
                let rows = self
                    .query(sql)
                    .bind(&ids)
                    .bind(&tokens)
                    .bind(until)
                    .fetch_all(conn)
                    .await?;
                one_row_each(&rows, ids.len())?;
                rows.iter()
                    .map(|row| {
                        let cancel: Option<bool> = row.try_get(1)?;
                        let known: Option<bool> = row.try_get(2)?;
                        Ok(match cancel {
                            Some(true) => Outcome::CancelRequested,
                            Some(false) => Outcome::Ok,
                            None => missed(known),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?
            }
        ))
    }

    pub(crate) async fn record_starts(&self, leases: &[LeaseRef]) -> Result<Vec<Outcome>> {
        self.check_open()?;
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let sql = &self.inner.sql.start;
        Ok(per_segment!(
            self,
            segments(leases.iter().map(|l| l.task_id)),
            |conn, range| {
                let (ids, tokens) = lease_columns(&leases[range]);
                let rows = self
                    .query(sql)
                    .bind(&ids)
                    .bind(&tokens)
                    .fetch_all(conn)
                    .await?;
                one_row_each(&rows, ids.len())?;
                rows.iter()
                    .map(|row| {
                        let applied: bool = row.try_get(1)?;
                        let known: Option<bool> = row.try_get(2)?;
                        Ok(if applied { Outcome::Ok } else { missed(known) })
                    })
                    .collect::<Result<Vec<_>>>()?
            }
        ))
    }

    pub(crate) async fn complete_runs(&self, items: Vec<Completion>) -> Result<Vec<Outcome>> {
        self.check_open()?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let n = &self.inner.notifier;
        let sql = &self.inner.sql.complete;
        let applied = per_segment!(
            self,
            segments(items.iter().map(|c| c.lease.task_id)),
            |conn, range| {
                let part = &items[range];
                let (ids, tokens) =
                    lease_columns(&part.iter().map(|c| c.lease).collect::<Vec<_>>());
                let results: Vec<Option<&[u8]>> = part
                    .iter()
                    .map(|c| c.result.as_ref().map(|p| p.as_bytes()))
                    .collect();
                let nows: Vec<PgTime> = part.iter().map(|c| PgTime::of(c.now)).collect();
                let next: Vec<Option<PgTime>> =
                    part.iter().map(|c| c.next_run.map(PgTime::of)).collect();
                let rows = self
                    .query(sql)
                    .bind(&ids)
                    .bind(&tokens)
                    .bind(&results)
                    .bind(&nows)
                    .bind(&next)
                    .bind(&n.channel)
                    .bind(&n.origin)
                    .fetch_all(conn)
                    .await?;
                let task_ids: Vec<TaskId> = part.iter().map(|c| c.lease.task_id).collect();
                applied_rows(&rows, &task_ids)?
            }
        );
        self.finished(&applied);
        self.sweep_if_due();
        Ok(applied.into_iter().map(|a| a.outcome).collect())
    }

    pub(crate) async fn fail_runs(&self, items: Vec<Failure>) -> Result<Vec<Outcome>> {
        self.check_open()?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let format = self.inner.format;
        let errors = items
            .iter()
            .map(|f| encode_error(format, &f.error))
            .collect::<Result<Vec<_>>>()?;
        let n = &self.inner.notifier;
        let sql = &self.inner.sql.fail;
        let applied = per_segment!(
            self,
            segments(items.iter().map(|f| f.lease.task_id)),
            |conn, range| {
                let part = &items[range.clone()];
                let (ids, tokens) =
                    lease_columns(&part.iter().map(|f| f.lease).collect::<Vec<_>>());
                let errs: Vec<&[u8]> = errors[range].iter().map(Vec::as_slice).collect();
                let nows: Vec<PgTime> = part.iter().map(|f| PgTime::of(f.now)).collect();
                let (actions, ats): (Vec<i16>, Vec<Option<PgTime>>) = part
                    .iter()
                    .map(|f| match f.action {
                        FailAction::Retry { at } => (0, Some(PgTime::of(at))),
                        FailAction::NextRun { at } => (1, Some(PgTime::of(at))),
                        FailAction::Fail => (2, None),
                        FailAction::Defer { at } => (3, Some(PgTime::of(at))),
                    })
                    .unzip();
                let rows = self
                    .query(sql)
                    .bind(&ids)
                    .bind(&tokens)
                    .bind(&errs)
                    .bind(&nows)
                    .bind(&actions)
                    .bind(&ats)
                    .bind(&n.channel)
                    .bind(&n.origin)
                    .fetch_all(conn)
                    .await?;
                let task_ids: Vec<TaskId> = part.iter().map(|f| f.lease.task_id).collect();
                applied_rows(&rows, &task_ids)?
            }
        );
        self.finished(&applied);
        self.sweep_if_due();
        Ok(applied.into_iter().map(|a| a.outcome).collect())
    }

    pub(crate) async fn release_leases(
        &self,
        leases: &[LeaseRef],
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>> {
        self.check_open()?;
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let now = PgTime::of(now);
        let n = &self.inner.notifier;
        let sql = &self.inner.sql.release;
        let applied = per_segment!(
            self,
            segments(leases.iter().map(|l| l.task_id)),
            |conn, range| {
                let part = &leases[range];
                let (ids, tokens) = lease_columns(part);
                let rows = self
                    .query(sql)
                    .bind(&ids)
                    .bind(&tokens)
                    .bind(now)
                    .bind(&n.channel)
                    .bind(&n.origin)
                    .fetch_all(conn)
                    .await?;
                let task_ids: Vec<TaskId> = part.iter().map(|l| l.task_id).collect();
                applied_rows(&rows, &task_ids)?
            }
        );
        // Released tasks are Pending again (work for someone), or ended Cancelled.
        let mut queues = Vec::new();
        for a in &applied {
            if let Some((task_id, status, queue)) = &a.now {
                if status == TaskStatus::Cancelled.as_str() {
                    self.wake(Wake::Finished { task_id: *task_id });
                } else {
                    queues.push(queue.as_str());
                }
            }
        }
        self.wake_work(queues);
        Ok(applied.into_iter().map(|a| a.outcome).collect())
    }

    /// The local hints after a complete or fail: `Finished` per applied item, and
    /// `Work` for the queue of each task that went back to Pending.
    fn finished(&self, applied: &[Applied]) {
        let mut queues = Vec::new();
        for a in applied {
            if let Some((task_id, status, queue)) = &a.now {
                self.wake(Wake::Finished { task_id: *task_id });
                if status == TaskStatus::Pending.as_str() {
                    queues.push(queue.as_str());
                }
            }
        }
        self.wake_work(queues);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_split_at_repeats_and_at_the_batch_limit() {
        let a = TaskId::new();
        let b = TaskId::new();
        assert_eq!(segments([a, b].into_iter()), vec![0..2]);
        assert_eq!(segments([a, a].into_iter()), vec![0..1, 1..2]);
        assert_eq!(segments([a, b, a, b].into_iter()), vec![0..2, 2..4]);
        assert_eq!(segments(std::iter::empty()), Vec::<Range<usize>>::new());
        let many: Vec<TaskId> = (0..MAX_BATCH + 1).map(|_| TaskId::new()).collect();
        assert_eq!(
            segments(many.into_iter()),
            vec![0..MAX_BATCH, MAX_BATCH..MAX_BATCH + 1]
        );
    }
}
