//! Everything off the hot path: reads (`get_task`, `get_result`, `list_tasks`,
//! `counts`), single-task changes (`reschedule`, `cancel`) and cleanup (`purge_results`
//! and the periodic sweep of expired results), deleting in bounded batches so no
//! statement holds many row locks for long.

use crate::convert::{self, PgTime, wall_clock};
use crate::error::{BACKEND, Error, Result};
use crate::storage::{PostgresStorage, validate_queue};
use omniq_core::{
    CancelOutcome, Cursor, Page, QueueCounts, Task, TaskFilter, TaskId, TaskResult, TaskStatus,
    Wake,
};
use sqlx::{PgConnection, Row};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use time::OffsetDateTime;

impl PostgresStorage {
    pub(crate) async fn read_task(&self, id: &TaskId) -> Result<Option<Task>> {
        let row = self
            .query(&self.inner.sql.get_task)
            .bind(id.0)
            .fetch_optional(self.db()?)
            .await?;
        row.map(|r| convert::task_from_row(&r, self.inner.format).map(|t| t.task))
            .transpose()
    }

    pub(crate) async fn move_task(
        &self,
        id: &TaskId,
        new_eta: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<()> {
        let sql = &self.inner.sql;
        let mut tx = self.db()?.begin().await?;
        let (status, queue, _) = self.lock_task(&mut tx, id, now).await?;
        if status.is_terminal() {
            return Err(Error::Finished { id: *id, status });
        }
        self.query(&sql.reschedule)
            .bind(id.0)
            .bind(PgTime::of(new_eta))
            .bind(PgTime::of(now))
            .execute(&mut *tx)
            .await?;
        self.notify(&mut tx, &format!("w {queue}")).await?;
        tx.commit().await?;
        self.wake(Wake::Work { queue });
        Ok(())
    }

    pub(crate) async fn read_result(&self, id: &TaskId) -> Result<Option<TaskResult>> {
        // TTL bookkeeping may read the wall clock (never scheduling decisions).
        let cutoff = wall_clock() - self.inner.result_ttl;
        let row = self
            .query(&self.inner.sql.get_result)
            .bind(id.0)
            .bind(PgTime::of(cutoff))
            .fetch_optional(self.db()?)
            .await?;
        row.map(|r| convert::result_from_row(&r, self.inner.format))
            .transpose()
    }

    pub(crate) async fn cancel_task(
        &self,
        id: &TaskId,
        now: OffsetDateTime,
    ) -> Result<CancelOutcome> {
        let sql = &self.inner.sql;
        let mut tx = self.db()?.begin().await?;
        let (status, _, expired) = self.lock_task(&mut tx, id, now).await?;
        let outcome = match status {
            TaskStatus::Pending | TaskStatus::Failed => CancelOutcome::Cancelled,
            // A Running task whose lease expired has no worker left to act on a request.
            TaskStatus::Running if expired => CancelOutcome::Cancelled,
            TaskStatus::Running => CancelOutcome::Requested,
            finished => CancelOutcome::AlreadyFinished(finished),
        };
        let statements: &[&String] = match outcome {
            // The result first: it copies the task's error and attempts.
            CancelOutcome::Cancelled => &[&sql.cancel_result, &sql.cancel_task],
            CancelOutcome::Requested => &[&sql.request_cancel],
            CancelOutcome::AlreadyFinished(_) => &[],
        };
        for text in statements {
            self.query(text)
                .bind(id.0)
                .bind(PgTime::of(now))
                .execute(&mut *tx)
                .await?;
        }
        if outcome == CancelOutcome::Cancelled {
            self.notify(&mut tx, &format!("f {}", id.0.simple()))
                .await?;
        }
        tx.commit().await?;
        if outcome == CancelOutcome::Cancelled {
            self.wake(Wake::Finished { task_id: *id });
        }
        Ok(outcome)
    }

    /// Queues a NOTIFY (`kind data`, with this storage's origin) in `conn`'s
    /// transaction.
    async fn notify(&self, conn: &mut PgConnection, hint: &str) -> Result<()> {
        let n = &self.inner.notifier;
        self.query("SELECT pg_notify($1, $2)")
            .bind(&n.channel)
            .bind(format!("{} {hint}", n.origin))
            .execute(conn)
            .await?;
        Ok(())
    }

    pub(crate) async fn list_page(&self, filter: TaskFilter) -> Result<Page<Task>> {
        self.check_open()?;
        if let Some(q) = &filter.queue {
            validate_queue(q)?;
        }
        let pool = self.db()?;
        if filter.limit == 0 {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            });
        }
        let text = self.inner.sql.list(
            filter.status.is_some(),
            filter.queue.is_some(),
            filter.cursor.is_some(),
        );
        let fetch = i64::try_from(filter.limit)
            .unwrap_or(i64::MAX - 1)
            .saturating_add(1);
        let rows = self
            .query(&text)
            .bind(filter.cursor.as_ref().map(|c| c.0.0))
            .bind(filter.status.map(TaskStatus::as_str))
            .bind(filter.queue.as_deref())
            .bind(fetch)
            .fetch_all(pool)
            .await?;
        let more = rows.len() > filter.limit;
        let items = rows
            .iter()
            .take(filter.limit)
            .map(|r| convert::task_from_row(r, self.inner.format).map(|t| t.task))
            .collect::<Result<Vec<_>>>()?;
        let next_cursor = if more {
            items.last().map(|t| Cursor(t.id))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    pub(crate) async fn count_tasks(&self, queue: Option<&str>) -> Result<Vec<QueueCounts>> {
        self.check_open()?;
        if let Some(q) = queue {
            validate_queue(q)?;
        }
        let text = self.inner.sql.counts(queue.is_some());
        let rows = self.query(&text).bind(queue).fetch_all(self.db()?).await?;
        let mut by_queue: BTreeMap<String, QueueCounts> = BTreeMap::new();
        if let Some(q) = queue {
            // One entry for the queue asked about, zeros when it has no tasks.
            by_queue.insert(
                q.to_string(),
                QueueCounts {
                    queue: q.to_string(),
                    ..QueueCounts::default()
                },
            );
        }
        for row in &rows {
            let name: String = row.try_get(0)?;
            let status = convert::status(row.try_get(1)?)?;
            let n: i64 = row.try_get(2)?;
            by_queue
                .entry(name.clone())
                .or_insert_with(|| QueueCounts {
                    queue: name,
                    ..QueueCounts::default()
                })
                .add(status, u64::try_from(n).unwrap_or(0));
        }
        Ok(by_queue.into_values().collect())
    }

    pub(crate) async fn purge(&self, older_than: OffsetDateTime) -> Result<u64> {
        let sql = &self.inner.sql;
        let pool = self.db()?;
        let cutoff = PgTime::of(older_than);
        let batch = self.inner.sweep_batch.load(Ordering::Relaxed);
        let mut removed = 0;
        for (text, count) in [(&sql.purge_results, true), (&sql.purge_tasks, false)] {
            loop {
                let n = self
                    .query(text)
                    .bind(cutoff)
                    .bind(batch)
                    .execute(pool)
                    .await?
                    .rows_affected();
                if count {
                    removed += n;
                }
                if n < u64::try_from(batch).unwrap_or(0) {
                    break;
                }
            }
        }
        Ok(removed)
    }

    /// Starts a sweep of expired results when the last one is older than the sweep
    /// interval. Runs in the background: the completion that triggered it does not wait.
    pub(crate) fn sweep_if_due(&self) {
        let now = now_millis();
        let every = i64::try_from(self.inner.sweep_every.as_millis()).unwrap_or(i64::MAX);
        let last = self.inner.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) < every
            || self
                .inner
                .last_sweep
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            match this.sweep_expired().await {
                Ok(_) | Err(Error::Closed) => {}
                Err(Error::Sqlx(sqlx::Error::PoolClosed)) => {}
                Err(e) => {
                    tracing::warn!(target: "omniq::storage", backend = BACKEND, "expired-result sweep failed: {e}");
                }
            }
        });
    }

    /// Deletes results past their TTL and the finished tasks last changed before that,
    /// at most `sweep_batch` rows per statement, skipping rows another process holds.
    pub(crate) async fn sweep_expired(&self) -> Result<u64> {
        let sql = &self.inner.sql;
        let cutoff = PgTime::of(wall_clock() - self.inner.result_ttl);
        let batch = self.inner.sweep_batch.load(Ordering::Relaxed);
        let mut removed = 0;
        for text in [&sql.sweep_results, &sql.sweep_tasks] {
            loop {
                let n = self
                    .query(text)
                    .bind(cutoff)
                    .bind(batch)
                    .execute(self.db()?)
                    .await?
                    .rows_affected();
                removed += n;
                if n < u64::try_from(batch).unwrap_or(0) {
                    break;
                }
            }
        }
        Ok(removed)
    }
}

/// The wall clock in unix milliseconds (sweep bookkeeping).
pub(crate) fn now_millis() -> i64 {
    i64::try_from(wall_clock().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

impl PostgresStorage {
    /// Locks a task row for a single-task change: its status, queue, and whether it is
    /// Running under an expired lease; `NotFound` if missing.
    async fn lock_task(
        &self,
        conn: &mut PgConnection,
        id: &TaskId,
        now: OffsetDateTime,
    ) -> Result<(TaskStatus, String, bool)> {
        let row = self
            .query(&self.inner.sql.lock_task)
            .bind(id.0)
            .bind(PgTime::of(now))
            .fetch_optional(conn)
            .await?
            .ok_or(Error::NotFound(*id))?;
        let status = convert::status(row.try_get(0)?)?;
        let queue: String = row.try_get(1)?;
        let expired: Option<bool> = row.try_get(2)?;
        Ok((status, queue, expired == Some(true)))
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::Fresh;
    use omniq_core::{ClaimRequest, Completion, Payload, Storage, Task};
    use std::sync::atomic::Ordering;
    use time::Duration;

    /// The sweep deletes in statements of at most `sweep_batch` rows, until none is left.
    #[tokio::test]
    async fn the_sweep_deletes_in_bounded_batches() {
        let fresh = Fresh::new("sweep").await;
        let s = &fresh.storage;
        s.inner.sweep_batch.store(100, Ordering::Relaxed);
        let long_ago = crate::convert::wall_clock() - Duration::days(30);
        let tasks: Vec<Task> = (0..250)
            .map(|_| {
                let mut t = Task::new("f", Payload(b"0".to_vec()));
                t.created_at = long_ago;
                t
            })
            .collect();
        s.enqueue(tasks).await.expect("enqueue");
        let claimed = s
            .claim(ClaimRequest {
                queues: vec!["default".into()],
                limit: 250,
                now: long_ago,
                lease: Duration::seconds(30),
            })
            .await
            .expect("claim");
        let done = claimed
            .iter()
            .map(|c| Completion {
                lease: c.lease_ref(),
                result: None,
                now: long_ago,
                next_run: None,
            })
            .collect();
        s.complete(done).await.expect("complete");
        // 250 results and 250 finished tasks, 100 rows per statement.
        assert_eq!(s.sweep_expired().await.expect("sweep"), 500);
        assert_eq!(s.sweep_expired().await.expect("sweep"), 0);
        let left: i64 = sqlx::query_scalar(&format!(
            r#"SELECT (SELECT count(*) FROM "{0}".tasks) + (SELECT count(*) FROM "{0}".results)"#,
            fresh.ns
        ))
        .fetch_one(s.pool())
        .await
        .expect("count");
        assert_eq!(left, 0);
        // purge_results answers the results it removed, also in bounded statements.
        assert_eq!(
            s.purge_results(crate::convert::wall_clock())
                .await
                .expect("purge"),
            0
        );
    }
}
