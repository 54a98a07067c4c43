//! Everything off the hot path: reads (`get_task`, `get_result`, `list_tasks`,
//! `counts`), single-task changes (`reschedule`, `cancel`) and cleanup (`purge_results`
//! and the periodic sweep of expired results).

use crate::convert::{self, micros, now_micros};
use crate::error::{BACKEND, Error, Result};
use crate::schema::Sql;
use crate::storage::{SqliteStorage, validate_queue};
use omniq_core::{
    CancelOutcome, Cursor, Page, QueueCounts, Task, TaskFilter, TaskId, TaskResult, TaskStatus,
    Wake,
};
use sqlx::{Row, Sqlite, Transaction};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use time::OffsetDateTime;

/// How often completions also delete expired results and finished tasks.
const SWEEP_EVERY_US: i64 = 60 * 1_000_000;

impl SqliteStorage {
    pub(crate) async fn read_task(&self, id: &TaskId) -> Result<Option<Task>> {
        let row = sqlx::query(&self.inner.sql.get_task)
            .bind(id.to_string())
            .fetch_optional(self.reader()?)
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
        let key = id.to_string();
        let mut tx = self.begin().await?;
        let (status, queue) = current_status(&mut tx, sql, &key).await?;
        if status.is_terminal() {
            return Err(Error::Finished { id: *id, status });
        }
        sqlx::query(&sql.reschedule)
            .bind(key.as_str())
            .bind(micros(new_eta))
            .bind(micros(now))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.wake(Wake::Work { queue });
        Ok(())
    }

    pub(crate) async fn read_result(&self, id: &TaskId) -> Result<Option<TaskResult>> {
        // TTL bookkeeping may read the wall clock (never scheduling decisions).
        let cutoff = now_micros().saturating_sub(self.inner.result_ttl_us);
        let row = sqlx::query(&self.inner.sql.get_result)
            .bind(id.to_string())
            .bind(cutoff)
            .fetch_optional(self.reader()?)
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
        let key = id.to_string();
        let now = micros(now);
        let mut tx = self.begin().await?;
        let (status, _) = current_status(&mut tx, sql, &key).await?;
        let running_but_gone =
            status == TaskStatus::Running && lease_expired(&mut tx, sql, &key, now).await?;
        let outcome = match status {
            // A Running task whose lease expired has no worker left to act on a request.
            TaskStatus::Pending | TaskStatus::Failed => CancelOutcome::Cancelled,
            TaskStatus::Running if running_but_gone => CancelOutcome::Cancelled,
            TaskStatus::Running => CancelOutcome::Requested,
            finished => CancelOutcome::AlreadyFinished(finished),
        };
        let statements: &[&String] = match outcome {
            CancelOutcome::Cancelled => &[&sql.cancel_result, &sql.cancel_task],
            CancelOutcome::Requested => &[&sql.request_cancel],
            CancelOutcome::AlreadyFinished(_) => &[],
        };
        for text in statements {
            sqlx::query(text)
                .bind(key.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        if outcome == CancelOutcome::Cancelled {
            self.wake(Wake::Finished { task_id: *id });
        }
        Ok(outcome)
    }

    pub(crate) async fn list_page(&self, filter: TaskFilter) -> Result<Page<Task>> {
        // Closed comes first, whatever the arguments.
        self.check_open()?;
        if let Some(q) = &filter.queue {
            validate_queue(q)?;
        }
        let pool = self.reader()?;
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
        let fetch = i64::try_from(filter.limit).unwrap_or(i64::MAX - 1) + 1;
        let rows = sqlx::query(&text)
            .bind(filter.cursor.as_ref().map(|c| c.0.to_string()))
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
        let rows = sqlx::query(&text)
            .bind(queue)
            .fetch_all(self.reader()?)
            .await?;
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
        let cutoff = micros(older_than);
        let sql = &self.inner.sql;
        let mut tx = self.begin().await?;
        // A finished task is found by its result (every finish of a claimed task stores
        // one with `finished_at = updated_at`), so the tasks go before the results; one
        // that may have no result (never claimed: enqueued finished) by its own index.
        for text in [&sql.purge_bare_tasks, &sql.purge_tasks_with_results] {
            sqlx::query(text).bind(cutoff).execute(&mut *tx).await?;
        }
        let removed = sqlx::query(&sql.purge_results)
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(removed)
    }

    /// At most once a minute, piggy-backed on completions, delete results past their TTL
    /// and the finished tasks they belong to, so storage does not grow without bound.
    pub(crate) async fn sweep_expired(&self) {
        let now = now_micros();
        let last = self.inner.last_sweep_us.load(Ordering::Relaxed);
        if now - last < SWEEP_EVERY_US
            || self
                .inner
                .last_sweep_us
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let cutoff = now - self.inner.result_ttl_us;
        if let Ok(cutoff) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(cutoff) * 1000) {
            if let Err(e) = self.purge(cutoff).await {
                tracing::warn!(target: "omniq::storage", backend = BACKEND, "expired-result sweep failed: {e}");
            }
        }
    }
}

/// The status and queue of a task inside a write transaction; `NotFound` if missing.
async fn current_status(
    tx: &mut Transaction<'static, Sqlite>,
    sql: &Sql,
    id: &str,
) -> Result<(TaskStatus, String)> {
    let row = sqlx::query(&sql.status_of)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| Error::NotFound(id.to_string()))?;
    let status = convert::status(row.try_get(0)?)?;
    let queue: String = row.try_get(1)?;
    Ok((status, queue))
}

async fn lease_expired(
    tx: &mut Transaction<'static, Sqlite>,
    sql: &Sql,
    id: &str,
    now: i64,
) -> Result<bool> {
    Ok(sqlx::query(&sql.lease_expired)
        .bind(id)
        .bind(now)
        .fetch_optional(&mut **tx)
        .await?
        .is_some())
}
