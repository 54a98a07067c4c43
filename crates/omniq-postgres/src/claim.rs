//! The two hot paths that put tasks in and take them out: batch enqueue (one `INSERT …
//! SELECT FROM unnest(…)` per batch, unique keys through a partial unique index) and
//! batch claim (one `FOR UPDATE SKIP LOCKED` statement, expired leases included).

use crate::convert::{self, PgTime, TaskRow, duration_micros, encode_backoff, encode_error};
use crate::copy::CopyBuf;
use crate::error::{Error, Result};
use crate::storage::{MAX_BATCH, PostgresStorage, distinct_queues, validate_queue};
use omniq_core::{
    ClaimRequest, Claimed, Enqueued, ErrorType, FailAction, Failure, Lease, LeaseRef, LeaseToken,
    Task, TaskError, TaskId, TaskStatus, Wake,
};
use sqlx::{PgConnection, Postgres, Row, Transaction};
use std::collections::{HashMap, HashSet};
use time::OffsetDateTime;
use uuid::Uuid;

impl PostgresStorage {
    pub(crate) async fn enqueue_tasks(&self, tasks: Vec<Task>) -> Result<Vec<Enqueued>> {
        self.check_open()?;
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let columns = Columns::of(&tasks, self.inner.format)?;
        let origin = &self.inner.notifier.origin;
        let single = tasks.len() < COPY_MIN && tasks.iter().all(|t| t.unique_key.is_none());
        let out = if single {
            // One plain INSERT, committed on its own.
            let mut conn = self.db()?.acquire().await?;
            self.insert(&mut conn, &tasks, &columns, origin).await?
        } else {
            // A COPY and its wake-ups, several chunks, or duplicates to look up: one
            // transaction.
            let mut tx = self.db()?.begin().await?;
            let out = self.insert(&mut tx, &tasks, &columns, origin).await?;
            tx.commit().await?;
            out
        };
        self.wake_work(
            tasks
                .iter()
                .zip(&out)
                .filter(|(_, e)| !e.duplicate)
                .map(|(t, _)| t.queue.as_str()),
        );
        Ok(out)
    }

    /// `enqueue` inside the caller's transaction. No local wake-up: only the caller
    /// knows when it commits, so the NOTIFY (empty origin) wakes this process too.
    pub(crate) async fn enqueue_in(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        tasks: Vec<Task>,
    ) -> Result<Vec<Enqueued>> {
        self.check_open()?;
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let columns = Columns::of(&tasks, self.inner.format)?;
        self.insert(tx, &tasks, &columns, "").await
    }

    /// Inserts `tasks` in chunks of at most [`MAX_BATCH`] and resolves unique-key
    /// duplicates to the live holders (seen by the same connection, so a duplicate of
    /// an earlier task of this batch resolves to it).
    async fn insert(
        &self,
        conn: &mut PgConnection,
        tasks: &[Task],
        columns: &Columns<'_>,
        origin: &str,
    ) -> Result<Vec<Enqueued>> {
        let sql = &self.inner.sql;
        // `inserted[i]`: whether tasks[i] was stored (not a duplicate of a live key).
        let mut inserted = vec![false; tasks.len()];
        let mut start = 0;
        while start < tasks.len() {
            let end = (start + MAX_BATCH).min(tasks.len());
            let c = columns.slice(start..end);
            let keyed = c.unique_key.iter().any(Option::is_some);
            if !keyed && end - start >= COPY_MIN {
                self.copy_chunk(conn, &c, origin).await?;
                inserted[start..end].fill(true);
                start = end;
                continue;
            }
            let query = if keyed {
                &sql.insert
            } else {
                &sql.insert_plain
            };
            let q = self
                .query(query)
                .bind(c.id)
                .bind(c.func_path)
                .bind(c.args)
                .bind(c.queue)
                .bind(c.priority)
                .bind(c.status)
                .bind(c.eta)
                .bind(c.run_at)
                .bind(c.interval_us)
                .bind(c.max_retries)
                .bind(c.timeout_us)
                .bind(c.attempts)
                .bind(c.created_at)
                .bind(c.updated_at)
                .bind(c.last_attempt_at)
                .bind(c.error)
                .bind(c.unique_key)
                .bind(c.backoff)
                .bind(c.cron)
                .bind(c.runs)
                .bind(&self.inner.notifier.channel)
                .bind(origin);
            if keyed {
                let rows = q.fetch_all(&mut *conn).await?;
                let mut stored: HashSet<Uuid> = HashSet::with_capacity(rows.len());
                for row in &rows {
                    stored.insert(row.try_get::<Uuid, _>(0)?);
                }
                for (i, t) in tasks.iter().enumerate().take(end).skip(start) {
                    inserted[i] = stored.contains(&t.id.0);
                }
            } else {
                // No key, no conflict to arbitrate: every row is stored, or the
                // statement fails (an existing id is a unique violation).
                q.bind(distinct(c.queue)).execute(&mut *conn).await?;
                inserted[start..end].fill(true);
            }
            start = end;
        }
        let missing: Vec<usize> = (0..tasks.len()).filter(|i| !inserted[*i]).collect();
        let mut holders: HashMap<usize, TaskId> = HashMap::with_capacity(missing.len());
        if !missing.is_empty() {
            // Not inserted: a live task holds its (queue, unique_key).
            let mut queues = Vec::with_capacity(missing.len());
            let mut keys = Vec::with_capacity(missing.len());
            for i in &missing {
                let t = &tasks[*i];
                let key = t.unique_key.as_deref().ok_or(Error::NotInserted(t.id))?;
                queues.push(t.queue.as_str());
                keys.push(key);
            }
            let rows = self
                .query(&sql.find_unique)
                .bind(&queues)
                .bind(&keys)
                .fetch_all(&mut *conn)
                .await?;
            for row in &rows {
                let ord: i64 = row.try_get(0)?;
                let id: Uuid = row.try_get(1)?;
                if let Some(i) = usize::try_from(ord - 1).ok().and_then(|o| missing.get(o)) {
                    holders.insert(*i, TaskId(id));
                }
            }
        }
        tasks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if inserted[i] {
                    Ok(Enqueued {
                        id: t.id,
                        duplicate: false,
                    })
                } else {
                    holders
                        .get(&i)
                        .map(|id| Enqueued {
                            id: *id,
                            duplicate: true,
                        })
                        .ok_or(Error::NotInserted(t.id))
                }
            })
            .collect()
    }

    /// Stores a chunk without unique keys with binary `COPY` (the caller holds a
    /// transaction), then sends its wake-ups. The rows are encoded before the `COPY`
    /// starts, so an encoding error leaves nothing half sent.
    async fn copy_chunk(
        &self,
        conn: &mut PgConnection,
        c: &ColumnSlice<'_, '_>,
        origin: &str,
    ) -> Result<()> {
        let n = c.id.len();
        let mut b = CopyBuf::with_header(n * 192);
        c.encode_rows(&mut b, 0..n)?;
        b.trailer();
        let mut copy = conn.copy_in_raw(&self.inner.sql.copy_in).await?;
        for piece in b.buf.chunks(COPY_PIECE_BYTES) {
            copy.send(piece).await?;
        }
        let stored = copy.finish().await?;
        if stored != n as u64 {
            return Err(Error::Unexpected(format!(
                "COPY stored {stored} of {n} tasks"
            )));
        }
        let notifier = &self.inner.notifier;
        self.query(&self.inner.sql.notify_work)
            .bind(&notifier.channel)
            .bind(origin)
            .bind(distinct(c.queue))
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    pub(crate) async fn claim_tasks(&self, req: ClaimRequest) -> Result<Vec<Claimed>> {
        self.check_open()?;
        let queues = distinct_queues(&req.queues)?;
        if req.limit == 0 || queues.is_empty() {
            return Ok(Vec::new());
        }
        let notifier = &self.inner.notifier;
        notifier.note_queues(&queues);
        let limit = i64::try_from(req.limit.min(MAX_BATCH)).unwrap_or(1);
        let until = req.now + req.lease;
        let rows = self
            .query(&self.inner.sql.claim)
            .bind(&queues)
            .bind(PgTime::of(req.now))
            .bind(limit)
            .bind(PgTime::of(until))
            .bind(&notifier.channel)
            .bind(&notifier.origin)
            .fetch_all(self.db()?)
            .await?;

        let mut claimed: Vec<TaskRow> = Vec::with_capacity(rows.len());
        let mut unreadable = Vec::new();
        for row in &rows {
            let status: &str = row.try_get(5)?;
            if status == TaskStatus::Cancelled.as_str() {
                // An expired lease whose cancellation was requested: it ended here.
                let id: Uuid = row.try_get(0)?;
                self.wake(Wake::Finished {
                    task_id: TaskId(id),
                });
                continue;
            }
            match convert::task_from_row(row, self.inner.format) {
                Ok(r) => claimed.push(r),
                Err(e @ (Error::Corrupt(_) | Error::Codec(_))) => {
                    let (id, token) = convert::row_identity(row)?;
                    unreadable.push((id, token, e.to_string()));
                }
                Err(e @ Error::Sqlx(sqlx::Error::ColumnDecode { .. })) => {
                    let (id, token) = convert::row_identity(row)?;
                    unreadable.push((id, token, e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        if !unreadable.is_empty() {
            self.fail_unreadable(unreadable, req.now).await?;
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
                    until,
                },
            })
            .collect())
    }

    /// A claimed row that cannot be read back (tampered with) fails its task at once,
    /// with a `decode` TaskError saying why, instead of being redelivered forever.
    async fn fail_unreadable(
        &self,
        rows: Vec<(TaskId, i64, String)>,
        now: OffsetDateTime,
    ) -> Result<()> {
        let failures = rows
            .into_iter()
            .map(|(task_id, token, why)| {
                tracing::error!(target: "omniq::storage", backend = "postgres", %task_id, "claimed task cannot be read, failing it: {why}");
                Failure {
                    lease: LeaseRef {
                        task_id,
                        token: LeaseToken(token),
                    },
                    error: TaskError::new(
                        ErrorType::Decode,
                        format!("the stored task could not be read: {why}"),
                    )
                    .with_retryable(false),
                    action: FailAction::Fail,
                    now,
                }
            })
            .collect();
        self.fail_runs(failures).await.map(drop)
    }

    pub(crate) async fn earliest_due(&self, queues: &[String]) -> Result<Option<OffsetDateTime>> {
        self.check_open()?;
        let queues = distinct_queues(queues)?;
        if queues.is_empty() {
            return Ok(None);
        }
        self.inner.notifier.note_queues(&queues);
        let at: Option<PgTime> = self
            .query_scalar(&self.inner.sql.next_due)
            .bind(&queues)
            .fetch_one(self.db()?)
            .await?;
        at.map(PgTime::to_datetime).transpose()
    }
}

/// Batches without unique keys of at least this many tasks are stored with `COPY`;
/// smaller ones with one plain `INSERT` (fewer round trips).
pub(crate) const COPY_MIN: usize = 128;

/// Bytes per `COPY` message: the server stores one piece while the next arrives.
const COPY_PIECE_BYTES: usize = 128 * 1024;

/// The distinct queue names of a chunk, in order of first appearance.
fn distinct<'a>(queues: &[&'a str]) -> Vec<&'a str> {
    let mut seen: HashSet<&str> = HashSet::new();
    queues.iter().copied().filter(|q| seen.insert(q)).collect()
}

/// A batch of tasks as the insert statement's column arrays.
struct Columns<'a> {
    id: Vec<Uuid>,
    func_path: Vec<&'a str>,
    args: Vec<&'a [u8]>,
    queue: Vec<&'a str>,
    priority: Vec<i32>,
    status: Vec<&'static str>,
    eta: Vec<Option<PgTime>>,
    run_at: Vec<PgTime>,
    interval_us: Vec<Option<i64>>,
    max_retries: Vec<i64>,
    timeout_us: Vec<Option<i64>>,
    attempts: Vec<i64>,
    created_at: Vec<PgTime>,
    updated_at: Vec<PgTime>,
    last_attempt_at: Vec<Option<PgTime>>,
    error: Vec<Option<Vec<u8>>>,
    unique_key: Vec<Option<&'a str>>,
    backoff: Vec<Option<String>>,
    cron: Vec<Option<String>>,
    runs: Vec<i64>,
}

/// One chunk of [`Columns`], borrowed.
struct ColumnSlice<'c, 'a> {
    id: &'c [Uuid],
    func_path: &'c [&'a str],
    args: &'c [&'a [u8]],
    queue: &'c [&'a str],
    priority: &'c [i32],
    status: &'c [&'static str],
    eta: &'c [Option<PgTime>],
    run_at: &'c [PgTime],
    interval_us: &'c [Option<i64>],
    max_retries: &'c [i64],
    timeout_us: &'c [Option<i64>],
    attempts: &'c [i64],
    created_at: &'c [PgTime],
    updated_at: &'c [PgTime],
    last_attempt_at: &'c [Option<PgTime>],
    error: &'c [Option<Vec<u8>>],
    unique_key: &'c [Option<&'a str>],
    backoff: &'c [Option<String>],
    cron: &'c [Option<String>],
    runs: &'c [i64],
}

impl ColumnSlice<'_, '_> {
    /// Rows `r` in binary `COPY` format, fields in the order of `Sql::copy_in`.
    fn encode_rows(&self, b: &mut CopyBuf, r: std::ops::Range<usize>) -> Result<()> {
        for i in r {
            b.row();
            b.uuid(&self.id[i]);
            b.text(self.func_path[i])?;
            b.bytes(self.args[i])?;
            b.text(self.queue[i])?;
            b.int4(self.priority[i]);
            b.text(self.status[i])?;
            b.opt_time(self.eta[i])?;
            b.time(self.run_at[i])?;
            b.opt_int8(self.interval_us[i]);
            b.int8(self.max_retries[i]);
            b.opt_int8(self.timeout_us[i]);
            b.int8(self.attempts[i]);
            b.time(self.created_at[i])?;
            b.time(self.updated_at[i])?;
            b.opt_time(self.last_attempt_at[i])?;
            b.opt_bytes(self.error[i].as_deref())?;
            b.opt_text(self.unique_key[i])?;
            b.opt_text(self.backoff[i].as_deref())?;
            b.opt_text(self.cron[i].as_deref())?;
            b.int8(self.runs[i]);
        }
        Ok(())
    }
}

impl<'a> Columns<'a> {
    /// Checks every queue name first (nothing is written when one is invalid) and
    /// encodes what needs encoding.
    fn of(tasks: &'a [Task], format: omniq_core::Format) -> Result<Self> {
        for t in tasks {
            validate_queue(&t.queue)?;
        }
        let n = tasks.len();
        let mut c = Columns {
            id: Vec::with_capacity(n),
            func_path: Vec::with_capacity(n),
            args: Vec::with_capacity(n),
            queue: Vec::with_capacity(n),
            priority: Vec::with_capacity(n),
            status: Vec::with_capacity(n),
            eta: Vec::with_capacity(n),
            run_at: Vec::with_capacity(n),
            interval_us: Vec::with_capacity(n),
            max_retries: Vec::with_capacity(n),
            timeout_us: Vec::with_capacity(n),
            attempts: Vec::with_capacity(n),
            created_at: Vec::with_capacity(n),
            updated_at: Vec::with_capacity(n),
            last_attempt_at: Vec::with_capacity(n),
            error: Vec::with_capacity(n),
            unique_key: Vec::with_capacity(n),
            backoff: Vec::with_capacity(n),
            cron: Vec::with_capacity(n),
            runs: Vec::with_capacity(n),
        };
        for t in tasks {
            c.id.push(t.id.0);
            c.func_path.push(&t.func_path);
            c.args.push(t.args.as_bytes());
            c.queue.push(&t.queue);
            c.priority.push(t.priority);
            c.status.push(convert::stored_status(t.status));
            c.eta.push(t.schedule.eta.map(PgTime::of));
            c.run_at.push(PgTime::of(t.effective_eta()));
            c.interval_us.push(t.schedule.interval.map(duration_micros));
            c.max_retries.push(i64::from(t.max_retries));
            c.timeout_us.push(t.timeout.map(duration_micros));
            c.attempts.push(i64::from(t.attempts));
            c.created_at.push(PgTime::of(t.created_at));
            c.updated_at.push(PgTime::of(t.updated_at));
            c.last_attempt_at.push(t.last_attempt_at.map(PgTime::of));
            c.error.push(
                t.error
                    .as_ref()
                    .map(|e| encode_error(format, e))
                    .transpose()?,
            );
            c.unique_key.push(t.unique_key.as_deref());
            c.backoff.push(encode_backoff(t.backoff.as_ref())?);
            c.cron.push(convert::encode_cron(t.schedule.cron.as_ref())?);
            c.runs.push(i64::from(t.runs));
        }
        Ok(c)
    }

    fn slice(&self, r: std::ops::Range<usize>) -> ColumnSlice<'_, 'a> {
        ColumnSlice {
            id: &self.id[r.clone()],
            func_path: &self.func_path[r.clone()],
            args: &self.args[r.clone()],
            queue: &self.queue[r.clone()],
            priority: &self.priority[r.clone()],
            status: &self.status[r.clone()],
            eta: &self.eta[r.clone()],
            run_at: &self.run_at[r.clone()],
            interval_us: &self.interval_us[r.clone()],
            max_retries: &self.max_retries[r.clone()],
            timeout_us: &self.timeout_us[r.clone()],
            attempts: &self.attempts[r.clone()],
            created_at: &self.created_at[r.clone()],
            updated_at: &self.updated_at[r.clone()],
            last_attempt_at: &self.last_attempt_at[r.clone()],
            error: &self.error[r.clone()],
            unique_key: &self.unique_key[r.clone()],
            backoff: &self.backoff[r.clone()],
            cron: &self.cron[r.clone()],
            runs: &self.runs[r],
        }
    }
}
