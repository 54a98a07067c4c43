//! The fenced lease writes: heartbeat, start, complete, fail and release. Each batch is one
//! transaction; each statement checks `status = 'running' AND lease_token = ?` in SQL,
//! so a stale worker changes nothing, and answers an [`Outcome`] per item.

use crate::convert::{encode_error, micros};
use crate::error::Result;
use crate::schema::{Query, SHAPES, shape_index, split_shapes};
use crate::storage::SqliteStorage;
use futures::TryStreamExt;
use omniq_core::{Completion, FailAction, Failure, LeaseRef, Outcome, TaskId, TaskStatus, Wake};
use sqlx::sqlite::SqliteRow;
use sqlx::{Either, Executor, Row, Sqlite, Transaction};
use std::collections::{HashMap, HashSet};
use time::OffsetDateTime;

impl SqliteStorage {
    pub(crate) async fn extend_leases(
        &self,
        leases: &[LeaseRef],
        until: OffsetDateTime,
    ) -> Result<Vec<Outcome>> {
        // RETURNING id, lease_token, cancel_requested
        let (out, _) = self
            .fenced_lease_write(
                &self.inner.sql.heartbeat,
                leases,
                micros(until),
                None,
                |row| {
                    let cancel: i64 = row.try_get(2)?;
                    Ok(if cancel != 0 {
                        Outcome::CancelRequested
                    } else {
                        Outcome::Ok
                    })
                },
            )
            .await?;
        Ok(out)
    }

    pub(crate) async fn record_starts(&self, leases: &[LeaseRef]) -> Result<Vec<Outcome>> {
        // RETURNING id, lease_token
        let (out, _) = self
            .fenced_lease_write(&self.inner.sql.start, leases, 1, None, |_| Ok(Outcome::Ok))
            .await?;
        Ok(out)
    }

    pub(crate) async fn release_leases(
        &self,
        leases: &[LeaseRef],
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>> {
        // RETURNING id, lease_token, queue, status. A released task whose cancellation
        // was requested ends Cancelled, with its Cancelled result stored in the same
        // transaction.
        let (out, rows) = self
            .fenced_lease_write(
                &self.inner.sql.release,
                leases,
                micros(now),
                Some(&self.inner.sql.released_cancel_result),
                |_| Ok(Outcome::Ok),
            )
            .await?;
        let mut queues = Vec::new();
        for row in &rows {
            let status: String = row.try_get(3)?;
            if status == TaskStatus::Cancelled.as_str() {
                let id: String = row.try_get(0)?;
                if let Ok(task_id) = id.parse::<TaskId>() {
                    self.wake(Wake::Finished { task_id });
                }
            } else {
                queues.push(row.try_get::<String, _>(2)?);
            }
        }
        self.wake_work(queues.iter().map(String::as_str));
        Ok(out)
    }

    pub(crate) async fn complete_runs(&self, items: Vec<Completion>) -> Result<Vec<Outcome>> {
        self.check_open()?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let sql = &self.inner.sql;
        let ids: Vec<String> = items.iter().map(|c| c.lease.task_id.to_string()).collect();
        let dup = has_duplicate_ids(items.iter().map(|c| &c.lease.task_id));
        let mut out = Vec::with_capacity(items.len());
        let mut wakes = Vec::new();
        let mut tx = self.begin().await?;
        let mut offset = 0;
        for (rows, shape) in padded_chunks(items.len(), dup) {
            let range = offset..offset + rows;
            offset += rows;
            let (part, part_ids) = (&items[range.clone()], &ids[range]);
            let pad = shape - rows;
            // check: (id, token, next_run); results and tasks: (id, token, result, now, next_run)
            let mut q = sqlx::query(&sql.complete[shape_index(shape)]);
            for (c, id) in part.iter().zip(part_ids) {
                q = q
                    .bind(id.as_str())
                    .bind(c.lease.token.0)
                    .bind(c.next_run.map(micros));
            }
            q = bind_padding(q, pad * 3);
            for _ in 0..2 {
                q = bind_completions(q, part, part_ids);
                q = bind_padding(q, pad * 5);
            }
            let checked = run_checked(&mut tx, q).await?;
            for (c, id) in part.iter().zip(part_ids) {
                out.push(applied(&checked, id, c.lease.task_id, &mut wakes));
            }
        }
        tx.commit().await?;
        self.send_finished(wakes);
        self.sweep_expired().await;
        Ok(out)
    }

    pub(crate) async fn fail_runs(&self, items: Vec<Failure>) -> Result<Vec<Outcome>> {
        self.check_open()?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let sql = &self.inner.sql;
        let format = self.inner.format;
        let ids: Vec<String> = items.iter().map(|f| f.lease.task_id.to_string()).collect();
        let errors = items
            .iter()
            .map(|f| encode_error(format, &f.error))
            .collect::<Result<Vec<_>>>()?;
        let actions: Vec<(i64, Option<i64>)> = items
            .iter()
            .map(|f| match f.action {
                FailAction::Retry { at } => (0, Some(micros(at))),
                FailAction::NextRun { at } => (1, Some(micros(at))),
                FailAction::Fail => (2, None),
                FailAction::Defer { at } => (3, Some(micros(at))),
            })
            .collect();
        let dup = has_duplicate_ids(items.iter().map(|f| &f.lease.task_id));
        let mut out = Vec::with_capacity(items.len());
        let mut wakes = Vec::new();
        let mut tx = self.begin().await?;
        let mut offset = 0;
        for (rows, shape) in padded_chunks(items.len(), dup) {
            let range = offset..offset + rows;
            offset += rows;
            let part = (
                &items[range.clone()],
                &ids[range.clone()],
                &errors[range.clone()],
                &actions[range.clone()],
            );
            let pad = shape - rows;
            // check: (id, token, action); results and tasks: (id, token, error, now, action, at)
            let mut q = sqlx::query(&sql.fail[shape_index(shape)]);
            for ((f, id), (action, _)) in part.0.iter().zip(part.1).zip(part.3) {
                q = q.bind(id.as_str()).bind(f.lease.token.0).bind(*action);
            }
            q = bind_padding(q, pad * 3);
            for _ in 0..2 {
                q = bind_failures(q, part);
                q = bind_padding(q, pad * 6);
            }
            let checked = run_checked(&mut tx, q).await?;
            for i in range {
                out.push(applied(
                    &checked,
                    &ids[i],
                    items[i].lease.task_id,
                    &mut wakes,
                ));
            }
        }
        tx.commit().await?;
        self.send_finished(wakes);
        Ok(out)
    }

    /// Runs a fenced per-lease UPDATE (`sql[shape]`: one leading bind, then `(id, token)`
    /// rows; `RETURNING id, lease_token, …`) over `leases` in one transaction. Returns an
    /// outcome per lease — `hit(row)` for rows the token matched, NotFound/LeaseLost for
    /// the rest — and the returned rows. Keyed by (id, token): a batch naming one task
    /// twice with different tokens never reports the stale one as applied.
    async fn fenced_lease_write(
        &self,
        sql: &[String],
        leases: &[LeaseRef],
        first_bind: i64,
        follow_up: Option<&str>,
        hit: impl Fn(&SqliteRow) -> Result<Outcome>,
    ) -> Result<(Vec<Outcome>, Vec<SqliteRow>)> {
        self.check_open()?;
        if leases.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let ids: Vec<String> = leases.iter().map(|l| l.task_id.to_string()).collect();
        let mut out = Vec::with_capacity(leases.len());
        let mut all_rows = Vec::new();
        let mut tx = self.begin().await?;
        let mut offset = 0;
        // A batch naming one task twice goes one item at a time, so the second write
        // sees the first (release twice = Ok, then LeaseLost).
        let duplicates = has_duplicate_ids(leases.iter().map(|l| &l.task_id));
        for size in lease_chunks(leases.len(), duplicates) {
            let range = offset..offset + size;
            offset += size;
            let mut q = sqlx::query(&sql[shape_index(size)]).bind(first_bind);
            for (l, id) in leases[range.clone()].iter().zip(&ids[range.clone()]) {
                q = q.bind(id.as_str()).bind(l.token.0);
            }
            let rows = q.fetch_all(&mut *tx).await?;
            let mut applied = HashMap::with_capacity(rows.len());
            for row in &rows {
                let id: String = row.try_get(0)?;
                let token: i64 = row.try_get(1)?;
                if let Some(follow_up) = follow_up {
                    sqlx::query(follow_up)
                        .bind(id.as_str())
                        .bind(first_bind)
                        .execute(&mut *tx)
                        .await?;
                }
                applied.insert((id, token), hit(row)?);
            }
            for (l, id) in leases[range.clone()].iter().zip(&ids[range]) {
                out.push(match applied.get(&(id.clone(), l.token.0)) {
                    Some(o) => *o,
                    None => self.miss_outcome(&mut tx, id).await?,
                });
            }
            all_rows.extend(rows);
        }
        tx.commit().await?;
        Ok((out, all_rows))
    }

    /// NotFound vs LeaseLost for a lease write that matched nothing.
    async fn miss_outcome(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        id: &str,
    ) -> Result<Outcome> {
        let exists = sqlx::query(&self.inner.sql.task_exists)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(if exists.is_some() {
            Outcome::LeaseLost
        } else {
            Outcome::NotFound
        })
    }

    fn send_finished(&self, wakes: Vec<(TaskId, Option<String>)>) {
        let mut requeued = Vec::new();
        for (task_id, queue) in wakes {
            self.wake(Wake::Finished { task_id });
            if let Some(q) = queue {
                requeued.push(q);
            }
        }
        self.wake_work(requeued.iter().map(String::as_str));
    }
}

/// Binds `(id, token, result, now, next_run)` per completion.
fn bind_completions<'q>(mut q: Query<'q>, items: &'q [Completion], ids: &'q [String]) -> Query<'q> {
    for (c, id) in items.iter().zip(ids) {
        q = q
            .bind(id.as_str())
            .bind(c.lease.token.0)
            .bind(c.result.as_ref().map(|p| p.as_bytes()))
            .bind(micros(c.now))
            .bind(c.next_run.map(micros));
    }
    q
}

type FailurePart<'q> = (
    &'q [Failure],
    &'q [String],
    &'q [Vec<u8>],
    &'q [(i64, Option<i64>)],
);

/// Binds `(id, token, error, now, action, at)` per failure.
fn bind_failures<'q>(
    mut q: Query<'q>,
    (items, ids, errors, actions): FailurePart<'q>,
) -> Query<'q> {
    for (((f, id), error), (action, at)) in items.iter().zip(ids).zip(errors).zip(actions) {
        q = q
            .bind(id.as_str())
            .bind(f.lease.token.0)
            .bind(error.as_slice())
            .bind(micros(f.now))
            .bind(*action)
            .bind(*at);
    }
    q
}

/// What the check of a complete/fail chunk said about one item (items it does not
/// name apply and stay finished).
enum Checked {
    /// The item will not apply: `LeaseLost`, or `NotFound` when the task does not exist.
    Miss(Outcome),
    /// The item applies and its task goes back to Pending on this queue.
    Requeued(String),
}

/// Runs one complete/fail command (check, results, tasks) and reads the check's rows:
/// `(id, queue, hit)`, where `hit` is 1 (applies, re-arms), 0 (stale lease) or NULL (no
/// such task). The two writes answer only their row counts.
async fn run_checked(
    tx: &mut Transaction<'static, Sqlite>,
    q: Query<'_>,
) -> Result<HashMap<String, Checked>> {
    let mut checked = HashMap::new();
    let mut stream = (&mut **tx).fetch_many(q);
    while let Some(step) = stream.try_next().await? {
        let Either::Right(row) = step else { continue };
        let id: String = row.try_get(0)?;
        let queue: Option<String> = row.try_get(1)?;
        let hit: Option<i64> = row.try_get(2)?;
        let c = match (hit, queue) {
            (Some(1), Some(queue)) => Checked::Requeued(queue),
            (None, _) => Checked::Miss(Outcome::NotFound),
            _ => Checked::Miss(Outcome::LeaseLost),
        };
        checked.insert(id, c);
    }
    Ok(checked)
}

/// The outcome of one complete/fail item; records the wake-ups an applied item owes (its
/// queue when it went back to Pending).
fn applied(
    checked: &HashMap<String, Checked>,
    id: &str,
    task_id: TaskId,
    wakes: &mut Vec<(TaskId, Option<String>)>,
) -> Outcome {
    match checked.get(id) {
        Some(Checked::Miss(o)) => *o,
        Some(Checked::Requeued(queue)) => {
            wakes.push((task_id, Some(queue.clone())));
            Outcome::Ok
        }
        None => {
            wakes.push((task_id, None));
            Outcome::Ok
        }
    }
}

/// Binds `n` NULLs: padding rows of a chunk, which match no task.
fn bind_padding(mut q: Query<'_>, n: usize) -> Query<'_> {
    for _ in 0..n {
        q = q.bind(None::<i64>);
    }
    q
}

/// `(rows, shape)` chunks of a complete/fail batch: up to 256 items each, padded to the
/// next cached shape so a batch is one command per 256 items; one by one when a task
/// appears twice (so the second write sees the first one's effect, like sequential calls).
fn padded_chunks(mut n: usize, duplicates: bool) -> Vec<(usize, usize)> {
    if duplicates {
        return vec![(1, 1); n];
    }
    let mut out = Vec::new();
    while n > 0 {
        let rows = n.min(SHAPES[0]);
        let shape = SHAPES
            .iter()
            .rev()
            .copied()
            .find(|s| *s >= rows)
            .unwrap_or(SHAPES[0]);
        out.push((rows, shape));
        n -= rows;
    }
    out
}

fn has_duplicate_ids<'a>(ids: impl Iterator<Item = &'a TaskId>) -> bool {
    let mut seen = HashSet::new();
    ids.into_iter().any(|id| !seen.insert(*id))
}

/// Chunk sizes for a lease batch: cached shapes, or one by one when a task appears twice
/// (so the second write sees the first one's effect, like sequential calls).
fn lease_chunks(n: usize, duplicates: bool) -> Vec<usize> {
    if duplicates {
        vec![1; n]
    } else {
        split_shapes(n)
    }
}
