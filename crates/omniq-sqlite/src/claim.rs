//! The two hot paths that put tasks in and take them out: batch enqueue (with unique
//! keys) and batch claim (with redelivery of expired leases).

use crate::convert::{self, TaskRow, duration_micros, encode_error, micros};
use crate::error::{Error, Result, corrupt};
use crate::schema::{Query, shape_index, split_shapes};
use crate::storage::{SqliteStorage, validate_queue};
use omniq_core::{
    ClaimRequest, Claimed, Enqueued, Lease, LeaseToken, Task, TaskId, TaskStatus, Wake,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};
use std::collections::HashSet;
use time::OffsetDateTime;

impl SqliteStorage {
    pub(crate) async fn enqueue_tasks(&self, tasks: Vec<Task>) -> Result<Vec<Enqueued>> {
        self.check_open()?;
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let format = self.inner.format;
        let mut errors = Vec::with_capacity(tasks.len());
        for t in &tasks {
            validate_queue(&t.queue)?;
            errors.push(
                t.error
                    .as_ref()
                    .map(|e| encode_error(format, e))
                    .transpose()?,
            );
        }
        let sql = &self.inner.sql;
        let mut out = Vec::with_capacity(tasks.len());
        let mut tx = self.begin().await?;
        let mut offset = 0;
        let mut errors = errors.into_iter();
        for size in split_shapes(tasks.len()) {
            let chunk = &tasks[offset..offset + size];
            offset += size;
            let unique = chunk.iter().any(|t| t.unique_key.is_some());
            let lean = !unique && is_lean_chunk(chunk);
            let idx = shape_index(size);
            let text = if unique {
                &sql.insert_returning[idx]
            } else if lean {
                &sql.insert_lean[idx]
            } else {
                &sql.insert[idx]
            };
            let mut q = sqlx::query(text);
            if lean {
                q = q
                    .bind(chunk[0].func_path.as_str())
                    .bind(chunk[0].queue.as_str());
            }
            for t in chunk {
                let error = errors.next().flatten();
                q = if lean {
                    bind_lean_task(q, t)
                } else {
                    bind_task(q, t, error)?
                };
            }
            if !unique {
                q.execute(&mut *tx).await?;
                out.extend(chunk.iter().map(|t| Enqueued {
                    id: t.id,
                    duplicate: false,
                }));
                continue;
            }
            let rows = q.fetch_all(&mut *tx).await?;
            let mut inserted = HashSet::with_capacity(rows.len());
            for row in &rows {
                let id: String = row.try_get(0)?;
                inserted.insert(id);
            }
            for t in chunk {
                let id = t.id.to_string();
                if inserted.remove(&id) {
                    out.push(Enqueued {
                        id: t.id,
                        duplicate: false,
                    });
                    continue;
                }
                // Not inserted: a live task holds its (queue, unique_key).
                let key = t
                    .unique_key
                    .as_deref()
                    .ok_or_else(|| Error::NotInserted(id.clone()))?;
                let existing: Option<String> = sqlx::query_scalar(&sql.find_unique)
                    .bind(t.queue.as_str())
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
                let existing = existing
                    .ok_or(Error::NotInserted(id))?
                    .parse::<TaskId>()
                    .map_err(|e| corrupt(format!("stored task id: {e}")))?;
                out.push(Enqueued {
                    id: existing,
                    duplicate: true,
                });
            }
        }
        tx.commit().await?;
        self.wake_work(
            tasks
                .iter()
                .zip(&out)
                .filter(|(_, e)| !e.duplicate)
                .map(|(t, _)| t.queue.as_str()),
        );
        Ok(out)
    }

    pub(crate) async fn claim_tasks(&self, req: ClaimRequest) -> Result<Vec<Claimed>> {
        self.check_open()?;
        let mut queues: Vec<&str> = Vec::with_capacity(req.queues.len());
        for q in &req.queues {
            validate_queue(q)?;
            if !queues.contains(&q.as_str()) {
                queues.push(q);
            }
        }
        if req.limit == 0 || queues.is_empty() {
            return Ok(Vec::new());
        }
        let format = self.inner.format;
        let now = micros(req.now);
        let until_t = req.now + req.lease;
        let until = micros(until_t);
        let limit = i64::try_from(req.limit).unwrap_or(i64::MAX);
        let expire_sql = self.inner.sql.expire(queues.len());
        let claim_sql = self.inner.sql.claim(queues.len());

        let mut tx = self.begin().await?;
        // Expired leases first: back to Pending (claimable below), or Cancelled when
        // their cancellation was requested (their worker is gone; nobody would act on it).
        let mut q = sqlx::query(&expire_sql).bind(now);
        for queue in &queues {
            q = q.bind(*queue);
        }
        let expired = q.fetch_all(&mut *tx).await?;
        let mut finished = Vec::new();
        for row in &expired {
            let status: &str = row.try_get(2)?;
            if status == TaskStatus::Cancelled.as_str() {
                let id: String = row.try_get(0)?;
                sqlx::query(&self.inner.sql.cancel_result)
                    .bind(id.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                finished.push(id);
            }
        }
        let mut q = sqlx::query(&claim_sql).bind(until).bind(now).bind(limit);
        for queue in &queues {
            q = q.bind(*queue);
        }
        let rows = q.fetch_all(&mut *tx).await?;
        let mut claimed: Vec<TaskRow> = Vec::with_capacity(rows.len());
        // Rows that set a column the claim does not return: read whole below.
        let mut whole = Vec::new();
        for row in &rows {
            match convert::task_from_claim_row(row, now) {
                Ok(Some(r)) => claimed.push(r),
                Ok(None) => whole.push(row.try_get::<i64, _>(12)?),
                Err(e) => {
                    self.claimed_unreadable(&mut tx, row, e, now, &mut finished)
                        .await?
                }
            }
        }
        drop(rows);
        if !whole.is_empty() {
            let seqs = whole
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let rows = sqlx::query(&self.inner.sql.claimed_rows)
                .bind(format!("[{seqs}]"))
                .fetch_all(&mut *tx)
                .await?;
            for row in &rows {
                match convert::task_from_row(row, format) {
                    Ok(r) => claimed.push(r),
                    Err(e) => {
                        self.claimed_unreadable(&mut tx, row, e, now, &mut finished)
                            .await?
                    }
                }
            }
        }
        tx.commit().await?;

        for id in finished {
            if let Ok(task_id) = id.parse::<TaskId>() {
                self.wake(Wake::Finished { task_id });
            }
        }
        if expired.len() > claimed.len() {
            // Some redelivered tasks did not fit this claim: tell other workers.
            self.wake_work(queues.iter().copied());
        }
        // RETURNING gives no order: restore the claim order.
        claimed.sort_by(|a, b| {
            b.task
                .priority
                .cmp(&a.task.priority)
                .then(a.run_at.cmp(&b.run_at))
                .then(a.seq.cmp(&b.seq))
        });
        Ok(claimed
            .into_iter()
            .map(|r| Claimed {
                task: r.task,
                lease: Lease {
                    token: LeaseToken(r.lease_token),
                    until: until_t,
                },
            })
            .collect())
    }
}

impl SqliteStorage {
    /// A claimed row that cannot be decoded (tampered with) must not fail every claim of
    /// its queue: it fails at once, with a decode error saying why, and its id joins
    /// `finished`. Any other error is returned.
    async fn claimed_unreadable(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        row: &SqliteRow,
        e: Error,
        now: i64,
        finished: &mut Vec<String>,
    ) -> Result<()> {
        if !matches!(
            e,
            Error::Corrupt(_) | Error::Codec(_) | Error::Sqlx(sqlx::Error::ColumnDecode { .. })
        ) {
            return Err(e);
        }
        let id: String = row.try_get(0)?;
        tracing::error!(target: "omniq::storage", backend = "sqlite", task_id = %id, "claimed task cannot be read, failing it: {e}");
        let error = omniq_core::TaskError::new(
            omniq_core::ErrorType::Decode,
            format!("the stored task cannot be read: {e}"),
        )
        .with_retryable(false);
        let error = encode_error(self.inner.format, &error)?;
        sqlx::query(&self.inner.sql.unreadable_result)
            .bind(id.as_str())
            .bind(&error)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        sqlx::query(&self.inner.sql.unreadable_task)
            .bind(id.as_str())
            .bind(&error)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        finished.push(id);
        Ok(())
    }

    pub(crate) async fn earliest_due(&self, queues: &[String]) -> Result<Option<OffsetDateTime>> {
        // Closed comes first, whatever the arguments.
        self.check_open()?;
        let mut distinct: Vec<&str> = Vec::with_capacity(queues.len());
        for q in queues {
            validate_queue(q)?;
            if !distinct.contains(&q.as_str()) {
                distinct.push(q);
            }
        }
        if distinct.is_empty() {
            return Ok(None);
        }
        let text = self.inner.sql.next_due(distinct.len());
        let mut q = sqlx::query_scalar::<_, Option<i64>>(&text);
        for queue in &distinct {
            q = q.bind(*queue);
        }
        let min = q.fetch_one(self.reader()?).await?;
        min.map(convert::from_micros).transpose()
    }
}

fn status_text(status: TaskStatus) -> &'static str {
    // A task cannot be stored Running without a lease; it starts Pending.
    match status {
        TaskStatus::Running => TaskStatus::Pending.as_str(),
        s => s.as_str(),
    }
}

/// Fresh Pending tasks of one handler and queue, whose rows the lean insert describes
/// fully: every column it leaves out would be stored as its default (NULL, or 0 for the
/// counters).
fn is_lean_chunk(chunk: &[Task]) -> bool {
    let Some(first) = chunk.first() else {
        return false;
    };
    chunk
        .iter()
        .all(|t| t.func_path == first.func_path && t.queue == first.queue && is_lean(t))
}

fn is_lean(t: &Task) -> bool {
    status_text(t.status) == TaskStatus::Pending.as_str()
        && t.schedule.interval.is_none()
        && t.schedule.cron.is_none()
        && t.attempts == 0
        && t.runs == 0
        && t.last_attempt_at.is_none()
        && t.error.is_none()
        && t.unique_key.is_none()
        && t.backoff.is_none()
}

/// Binds one row of [`crate::schema::LEAN_INSERT_ARITY`] values (see [`is_lean_chunk`]).
fn bind_lean_task<'q>(q: Query<'q>, t: &'q Task) -> Query<'q> {
    q.bind(t.id.to_string())
        .bind(t.args.as_bytes())
        .bind(i64::from(t.priority))
        .bind(t.schedule.eta.map(micros))
        .bind(micros(t.effective_eta()))
        .bind(i64::from(t.max_retries))
        .bind(t.timeout.map(duration_micros))
        .bind(micros(t.created_at))
        .bind(micros(t.updated_at))
}

/// Binds one row of [`crate::schema::INSERT_ARITY`] values.
fn bind_task<'q>(q: Query<'q>, t: &'q Task, error: Option<Vec<u8>>) -> Result<Query<'q>> {
    Ok(q.bind(t.id.to_string())
        .bind(t.func_path.as_str())
        .bind(t.args.as_bytes())
        .bind(t.queue.as_str())
        .bind(i64::from(t.priority))
        .bind(status_text(t.status))
        .bind(t.schedule.eta.map(micros))
        .bind(micros(t.effective_eta()))
        .bind(t.schedule.interval.map(duration_micros))
        .bind(i64::from(t.max_retries))
        .bind(t.timeout.map(duration_micros))
        .bind(i64::from(t.attempts))
        .bind(micros(t.created_at))
        .bind(micros(t.updated_at))
        .bind(t.last_attempt_at.map(micros))
        .bind(error)
        .bind(t.unique_key.as_deref())
        .bind(convert::encode_backoff(t.backoff.as_ref())?)
        .bind(t.schedule.cron.as_ref().map(|c| c.expr.as_str()))
        .bind(t.schedule.cron.as_ref().map(|c| c.tz.as_str()))
        .bind(i64::from(t.runs)))
}
