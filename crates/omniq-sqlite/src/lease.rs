//! The fenced lease writes: heartbeat, start, complete, fail and release. Each batch is one
//! transaction; each statement checks `status = 'running' AND lease_token = ?` in SQL,
//! so a stale worker changes nothing, and answers an [`Outcome`] per item.

use crate::convert::{encode_error, micros};
use crate::error::Result;
use crate::schema::{Query, shape_index, split_shapes};
use crate::storage::SqliteStorage;
use omniq_core::{Completion, FailAction, Failure, LeaseRef, Outcome, TaskId, TaskStatus, Wake};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};
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
        for size in lease_chunks(items.len(), dup) {
            let range = offset..offset + size;
            offset += size;
            let idx = shape_index(size);
            let (part, part_ids) = (&items[range.clone()], &ids[range.clone()]);
            bind_completions(sqlx::query(&sql.complete_results[idx]), part, part_ids)
                .execute(&mut *tx)
                .await?;
            let rows = bind_completions(sqlx::query(&sql.complete_tasks[idx]), part, part_ids)
                .fetch_all(&mut *tx)
                .await?;
            let hit = returned_rows(&rows)?;
            for (c, id) in part.iter().zip(part_ids) {
                out.push(
                    self.applied(&mut tx, &hit, id, c.lease.task_id, &mut wakes)
                        .await?,
                );
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
        for size in lease_chunks(items.len(), dup) {
            let range = offset..offset + size;
            offset += size;
            let idx = shape_index(size);
            let part = (
                &items[range.clone()],
                &ids[range.clone()],
                &errors[range.clone()],
                &actions[range.clone()],
            );
            bind_failures(sqlx::query(&sql.fail_results[idx]), part)
                .execute(&mut *tx)
                .await?;
            let rows = bind_failures(sqlx::query(&sql.fail_tasks[idx]), part)
                .fetch_all(&mut *tx)
                .await?;
            let hit = returned_rows(&rows)?;
            for i in range {
                let task_id = items[i].lease.task_id;
                out.push(
                    self.applied(&mut tx, &hit, &ids[i], task_id, &mut wakes)
                        .await?,
                );
            }
        }
        tx.commit().await?;
        self.send_finished(wakes);
        Ok(out)
    }

    /// The outcome of one complete/fail item from the statement's returned rows; records
    /// the wake-ups an applied item owes (its queue when it went back to Pending).
    async fn applied(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        hit: &HashMap<String, (String, String)>,
        id: &str,
        task_id: TaskId,
        wakes: &mut Vec<(TaskId, Option<String>)>,
    ) -> Result<Outcome> {
        match hit.get(id) {
            Some((queue, status)) => {
                let requeued = (status == TaskStatus::Pending.as_str()).then(|| queue.clone());
                wakes.push((task_id, requeued));
                Ok(Outcome::Ok)
            }
            None => self.miss_outcome(tx, id).await,
        }
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

/// `id → (queue, status)` from a lease write's `RETURNING id, queue, status`.
fn returned_rows(rows: &[SqliteRow]) -> Result<HashMap<String, (String, String)>> {
    let mut hit = HashMap::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get(0)?;
        let queue: String = row.try_get(1)?;
        let status: String = row.try_get(2)?;
        hit.insert(id, (queue, status));
    }
    Ok(hit)
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
