//! The two hot paths that put tasks in and take them out: batch enqueue (with unique
//! keys) and batch claim (with redelivery of expired leases), plus `next_due`.

use crate::convert::{self, arg, array, bytes, int, micros, opt_bytes, opt_int, text};
use crate::error::{Error, Result, corrupt};
use crate::storage::{MAX_BATCH, RedisStorage, distinct_queues, us_arg, validate_queue};
use fred::prelude::{ClientLike, KeysInterface, SetsInterface};
use fred::types::{ClusterHash, CustomCommand, SetOptions, Value};
use omniq_core::{
    ClaimRequest, Claimed, Enqueued, ErrorType, FailAction, Failure, Lease, LeaseToken, Task,
    TaskError, TaskId, TaskStatus,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use time::OffsetDateTime;

/// How many expired leases and due tasks one claim moves into the ready set, per
/// queue: the claim's work is bounded whatever the backlog.
const PROMOTE: usize = 1000;

/// Values per task in the enqueue script's arguments (the queues and the extras — unique
/// key, error, a finished status and its updated_at — follow the rows).
const ENQUEUE_ARITY: usize = 5;

/// A task's schedule member (`rkey` in `lua/common.lua`, built here so the script
/// formats nothing per task): `<2147483647-priority:10><due µs:17><seq:17>:<id>`, due
/// and seq clamped to `0..=9e15`, so lexicographic order is claim order.
pub(crate) fn schedule_member(priority: i32, due: i64, seq: i64, id: &str) -> String {
    const MAX: i64 = 9_000_000_000_000_000;
    format!(
        "{:010}{:017}{:017}:{id}",
        2_147_483_647_i64 - i64::from(priority),
        due.clamp(0, MAX),
        seq.clamp(0, MAX)
    )
}

/// The enqueue sequence: unix microseconds, strictly increasing within the process, so
/// tasks enqueued one after the other (in one batch or not) keep their order, and
/// across processes enqueue order is the clocks' order.
fn next_seq() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = convert::now_micros();
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// A task's stored state `m` at enqueue (see `lua/common.lua`):
/// `status|token|attempts|updated_at|last_attempt_at|lease_until|cancel|due|priority|seq|eta|runs`,
/// token 0, no lease, no cancellation.
fn state_string(status: TaskStatus, t: &Task, due: i64, seq: i64, updated: i64) -> String {
    use std::fmt::Write;
    let mut m = String::with_capacity(96);
    let _ = write!(m, "{}|0|{}|{updated}|", status.as_str(), t.attempts);
    if let Some(la) = t.last_attempt_at {
        let _ = write!(m, "{}", micros(la));
    }
    let _ = write!(m, "|||{due}|{}|{seq}|", t.priority);
    if let Some(eta) = t.schedule.eta {
        let _ = write!(m, "{}", micros(eta));
    }
    let _ = write!(m, "|{}", t.runs);
    m
}

/// A batch checked and encoded for the enqueue script, not yet sent.
pub(crate) struct PreparedEnqueue {
    tasks: Vec<Task>,
    rows: Vec<Row>,
}

/// One task's enqueue values: its row, and the flags and values of its extras.
struct Row {
    values: [Value; ENQUEUE_ARITY],
    extra: Option<(String, Vec<Value>)>,
}

impl RedisStorage {
    /// The enqueue script's values for one task (see `lua/enqueue.lua`): the stored
    /// state `m` and the schedule member are built here, so the script formats nothing.
    fn enqueue_row(&self, t: &Task) -> Result<Row> {
        let format = self.format();
        // A task is only Running under a lease: it starts Pending.
        let status = match t.status {
            TaskStatus::Running => TaskStatus::Pending,
            s => s,
        };
        let error = t.error.as_ref().map(|e| format.encode(e)).transpose()?;
        let id = t.id.to_string();
        let seq = next_seq();
        let due = micros(t.effective_eta());
        let member = schedule_member(t.priority, due, seq, &id);
        let updated = micros(t.updated_at);
        let state = state_string(status, t, due, seq, updated);
        let unique = t.unique_key.as_deref().filter(|k| !k.is_empty());
        let finished = status != TaskStatus::Pending;
        let values = [
            arg(id),
            Value::Bytes(fred::bytes::Bytes::from(format.encode(t)?)),
            arg(state),
            arg(member),
            arg(due.to_string()),
        ];
        if unique.is_none() && error.is_none() && !finished {
            return Ok(Row {
                values,
                extra: None,
            });
        }
        let mut flags = String::new();
        let mut extra = Vec::new();
        if let Some(k) = unique {
            flags.push('u');
            extra.push(arg(k));
        }
        if let Some(e) = error {
            flags.push('e');
            extra.push(Value::Bytes(fred::bytes::Bytes::from(e)));
        }
        if finished {
            flags.push_str("st");
            extra.push(arg(status.as_str()));
            extra.push(arg(updated.to_string()));
        }
        Ok(Row {
            values,
            extra: Some((flags, extra)),
        })
    }

    /// The enqueue script's arguments for `rows` (in input order), with their queues.
    fn enqueue_args<'q>(&self, rows: impl ExactSizeIterator<Item = (&'q str, Row)>) -> Vec<Value> {
        let n = rows.len();
        let mut args = self.common_args(ENQUEUE_ARITY * n + 4);
        args.push(arg(n.to_string()));
        let mut runs: Vec<(&str, usize)> = Vec::new();
        let mut extras = Vec::new();
        let mut with_extras = 0usize;
        for (i, (q, row)) in rows.enumerate() {
            args.extend(row.values);
            match runs.last_mut() {
                Some((last, len)) if *last == q => *len += 1,
                _ => runs.push((q, 1)),
            }
            if let Some((flags, values)) = row.extra {
                with_extras += 1;
                extras.push(arg((i + 1).to_string()));
                extras.push(arg(flags));
                extras.extend(values);
            }
        }
        args.push(arg(runs.len().to_string()));
        for (q, len) in runs {
            args.push(arg(q));
            args.push(arg(len.to_string()));
        }
        args.push(arg(with_extras.to_string()));
        args.extend(extras);
        args
    }

    /// Checks and encodes a batch (no I/O): the half of an enqueue that runs when its
    /// future is created, so the runtime overlaps it with the previous batch's round
    /// trip (see `Storage::enqueue`).
    pub(crate) fn prepare_enqueue(&self, tasks: Vec<Task>) -> Result<PreparedEnqueue> {
        self.check_open()?;
        for t in &tasks {
            validate_queue(&t.queue)?;
        }
        // Every value is encoded before anything is written.
        let rows = tasks
            .iter()
            .map(|t| self.enqueue_row(t))
            .collect::<Result<Vec<Row>>>()?;
        Ok(PreparedEnqueue { tasks, rows })
    }

    /// Stores a prepared batch: one script call on one server.
    pub(crate) async fn enqueue_prepared(
        &self,
        prepared: PreparedEnqueue,
    ) -> Result<Vec<Enqueued>> {
        let PreparedEnqueue { tasks, rows } = prepared;
        self.check_open()?;
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let mut queues: Vec<&str> = Vec::new();
        for t in &tasks {
            if !queues.contains(&t.queue.as_str()) {
                queues.push(&t.queue);
            }
        }
        let results = if self.cluster() {
            self.client()?
                .sadd::<(), _, _>(self.inner.keys.queues.as_str(), queues.clone())
                .await?;
            self.enqueue_on_cluster(&tasks, rows, &queues).await?
        } else {
            // The script registers the queues itself (one round trip).
            let key = self.inner.keys.queues.clone();
            let args = self.enqueue_args(tasks.iter().map(|t| t.queue.as_str()).zip(rows));
            self.enqueue_call(key, args, tasks.len()).await?
        };
        let out: Vec<Enqueued> = tasks
            .iter()
            .zip(&results)
            .map(|(t, r)| match r {
                None => Ok(Enqueued {
                    id: t.id,
                    duplicate: false,
                }),
                Some(existing) => convert::task_id(existing).map(|id| Enqueued {
                    id,
                    duplicate: true,
                }),
            })
            .collect::<Result<_>>()?;
        Ok(out)
    }

    /// One enqueue script call; per task `None` (stored) or the live holder's id.
    async fn enqueue_call(
        &self,
        key: String,
        args: Vec<Value>,
        n: usize,
    ) -> Result<Vec<Option<String>>> {
        let reply = array(self.eval(&self.inner.scripts.enqueue, key, args).await?);
        let mut it = reply.into_iter();
        match it.next().map(|v| text(&v)).as_deref() {
            Some("ok") => {}
            Some("conflict") => {
                return Err(Error::Exists(
                    it.next().map(|v| text(&v)).unwrap_or_default(),
                ));
            }
            other => return Err(corrupt(format!("enqueue script replied {other:?}"))),
        }
        let wake = it.next().map(|v| text(&v)).unwrap_or_default();
        let ended = ended_pairs(it.next().map(array).unwrap_or_default())?;
        self.expire_locators(&ended).await;
        let out: Vec<Option<String>> = it
            .map(|v| Some(text(&v)).filter(|s| !s.is_empty()))
            .collect();
        if out.len() != n {
            return Err(corrupt(format!(
                "enqueue script answered {} of {n} tasks",
                out.len()
            )));
        }
        self.deliver(&wake);
        Ok(out)
    }

    /// On a cluster: locators first (`SET NX`: an id stored anywhere is a conflict),
    /// then one script per queue.
    async fn enqueue_on_cluster(
        &self,
        tasks: &[Task],
        rows: Vec<Row>,
        queues: &[&str],
    ) -> Result<Vec<Option<String>>> {
        let client = self.client()?;
        let keys = &self.inner.keys;
        let ids: Vec<String> = tasks.iter().map(|t| t.id.to_string()).collect();
        let sets = ids.iter().zip(tasks).map(|(id, t)| {
            client.set::<Option<String>, _, _>(
                keys.locator(id),
                t.queue.as_str(),
                None,
                Some(SetOptions::NX),
                false,
            )
        });
        let set = futures::future::try_join_all(sets).await?;
        let mut ours: Vec<&str> = Vec::with_capacity(ids.len());
        let mut conflict = None;
        for ((id, t), ok) in ids.iter().zip(tasks).zip(&set) {
            if ok.is_some() || self.reclaim_locator(id, &t.queue).await? {
                ours.push(id);
            } else {
                conflict.get_or_insert_with(|| id.clone());
            }
        }
        if let Some(id) = conflict {
            self.drop_locators(&ours).await;
            return Err(Error::Exists(id));
        }
        // Group the rows by queue, keeping each task's position.
        let mut groups: BTreeMap<&str, (Vec<usize>, Vec<Row>)> = BTreeMap::new();
        for (i, (t, row)) in tasks.iter().zip(rows).enumerate() {
            let g = groups.entry(t.queue.as_str()).or_default();
            g.0.push(i);
            g.1.push(row);
        }
        debug_assert_eq!(groups.len(), queues.len());
        let calls = groups.into_iter().map(|(q, (positions, rows))| async move {
            let n = positions.len();
            let args = self.enqueue_args(rows.into_iter().map(|r| (q, r)));
            let r = self.enqueue_call(keys.of(q, "ready"), args, n).await;
            (positions, r)
        });
        let mut out = vec![None; tasks.len()];
        let mut first_err = None;
        for (positions, r) in futures::future::join_all(calls).await {
            match r {
                Ok(results) => {
                    for (p, r) in positions.into_iter().zip(results) {
                        out[p] = r;
                    }
                }
                Err(e) => {
                    let failed: Vec<&str> = positions.iter().map(|p| ids[*p].as_str()).collect();
                    if matches!(e, Error::Exists(_)) {
                        self.drop_locators(&failed).await;
                    }
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        // Duplicates were not stored: their locators go.
        let dups: Vec<&str> = ids
            .iter()
            .zip(&out)
            .filter(|(_, r)| r.is_some())
            .map(|(id, _)| id.as_str())
            .collect();
        self.drop_locators(&dups).await;
        Ok(out)
    }

    /// A locator whose task does not exist (left by an enqueue that failed half-way)
    /// is free: take it for `queue`. False when the task exists.
    async fn reclaim_locator(&self, id: &str, queue: &str) -> Result<bool> {
        let client = self.client()?;
        let keys = &self.inner.keys;
        let current: Option<String> = client.get(keys.locator(id)).await?;
        if let Some(q) = current {
            let exists: i64 = client.exists(keys.of(&q, &format!("t:{id}"))).await?;
            if exists == 1 {
                return Ok(false);
            }
        }
        client
            .set::<(), _, _>(keys.locator(id), queue, None, None, false)
            .await?;
        Ok(true)
    }

    async fn drop_locators(&self, ids: &[&str]) {
        if ids.is_empty() {
            return;
        }
        let Ok(client) = self.client() else { return };
        let keys = &self.inner.keys;
        let dels = ids.iter().map(|id| client.del::<(), _>(keys.locator(id)));
        if let Err(e) = futures::future::try_join_all(dels).await {
            tracing::warn!(target: "omniq::storage", backend = "redis", "removing locators failed: {}", Error::from(e));
        }
    }

    /// Delivers a script's wake-up message to this instance's subscribers.
    pub(crate) fn deliver(&self, message: &str) {
        if message.is_empty() {
            return;
        }
        for w in crate::connect::parse_wake(message, "") {
            self.wake(w);
        }
    }

    pub(crate) async fn claim_tasks(&self, req: ClaimRequest) -> Result<Vec<Claimed>> {
        self.check_open()?;
        let queues = distinct_queues(&req.queues)?;
        if req.limit == 0 || queues.is_empty() {
            return Ok(Vec::new());
        }
        let limit = req.limit.min(MAX_BATCH);
        let until = req.now + req.lease;
        let rows = if self.cluster() && queues.len() > 1 {
            // Each queue is its own slot: peek at every queue's best ready tasks, merge,
            // then claim from each queue its share of the global best `limit`.
            let peeks = queues
                .iter()
                .map(|q| async move { self.claim_call(&[q], req.now, until, limit, true).await });
            let mut members: Vec<(String, &str)> = Vec::new();
            for r in futures::future::try_join_all(peeks).await? {
                for (queue, member) in r.peeked {
                    if let Some(q) = queues.iter().find(|q| **q == queue) {
                        members.push((member, q));
                    }
                }
            }
            members.sort();
            let mut share: HashMap<&str, usize> = HashMap::new();
            for (_, q) in members.iter().take(limit) {
                *share.entry(q).or_default() += 1;
            }
            let claims = share
                .into_iter()
                .map(|(q, n)| async move { self.claim_call(&[q], req.now, until, n, false).await });
            let mut rows = Vec::new();
            for r in futures::future::try_join_all(claims).await? {
                rows.extend(r.claimed);
            }
            rows
        } else {
            self.claim_call(&queues, req.now, until, limit, false)
                .await?
                .claimed
        };
        self.finish_claim(rows, req.now, until).await
    }

    /// One claim script call over `queues` (all in one slot on a cluster).
    async fn claim_call(
        &self,
        queues: &[&str],
        now: OffsetDateTime,
        until: OffsetDateTime,
        limit: usize,
        peek: bool,
    ) -> Result<ClaimReply> {
        // What a task whose stored state does not parse fails with (the script fails
        // it alone, so it blocks nothing).
        let broken = self.format().encode(
            &TaskError::new(
                ErrorType::Decode,
                "the stored state of the task cannot be read",
            )
            .with_retryable(false),
        )?;
        let mut args = self.common_args(7 + queues.len());
        args.extend([
            us_arg(now),
            us_arg(until),
            arg(limit.to_string()),
            arg(PROMOTE.to_string()),
            arg(if peek { "peek" } else { "claim" }),
            bytes(&broken),
            arg(queues.len().to_string()),
        ]);
        args.extend(queues.iter().map(|q| arg(*q)));
        let key = match queues {
            [one] => self.inner.keys.of(one, "ready"),
            _ => self.inner.keys.queues.clone(),
        };
        let reply = array(self.eval(&self.inner.scripts.claim, key, args).await?);
        let [claimed, ended, peeked, wake] = <[Value; 4]>::try_from(reply)
            .map_err(|r| corrupt(format!("claim script replied {} values", r.len())))?;
        let mut out = ClaimReply::default();
        for row in array(claimed) {
            out.claimed.push(ClaimedRow::parse(array(row))?);
        }
        for group in array(peeked) {
            let mut it = array(group).into_iter();
            let queue = it.next().map(|v| text(&v)).unwrap_or_default();
            out.peeked.extend(it.map(|m| (queue.clone(), text(&m))));
        }
        self.expire_locators(&ended_pairs(array(ended))?).await;
        self.deliver(&text(&wake));
        Ok(out)
    }

    /// Decodes claimed rows; a record that no longer decodes fails its task with a
    /// decode TaskError instead of blocking the queue.
    async fn finish_claim(
        &self,
        rows: Vec<ClaimedRow>,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<Vec<Claimed>> {
        let format = self.format();
        let mut out = Vec::with_capacity(rows.len());
        let mut corrupt_tasks = Vec::new();
        for row in rows {
            let decoded = row
                .record
                .as_deref()
                .ok_or_else(|| corrupt("the task record is missing"))
                .and_then(|r| convert::decode_record(format, r));
            let lease = Lease {
                token: LeaseToken(row.token),
                until,
            };
            let task = match decoded {
                Ok(task) => task,
                Err(e) => {
                    corrupt_tasks.push((row.id, lease.token, e.to_string()));
                    continue;
                }
            };
            let overlay = convert::Overlay {
                status: TaskStatus::Running,
                eta: row.eta,
                attempts: row.attempts,
                runs: Some(row.runs),
                updated_at: micros(now),
                last_attempt_at: Some(micros(now)),
                error: row.error.as_deref(),
            };
            match convert::apply(task, overlay, format) {
                Ok(task) => out.push(Claimed { task, lease }),
                Err(e) => corrupt_tasks.push((row.id, lease.token, e.to_string())),
            }
        }
        let held: Vec<(TaskId, std::sync::Arc<str>)> = out
            .iter()
            .map(|c| (c.task.id, std::sync::Arc::from(c.task.queue.as_str())))
            .collect();
        self.remember(&held);
        // Claim order (several queues on a cluster are claimed separately); stable, so
        // enqueue order among equals stays.
        out.sort_by_key(|c| (std::cmp::Reverse(c.task.priority), c.task.effective_eta()));
        if !corrupt_tasks.is_empty() {
            let failures = corrupt_tasks
                .into_iter()
                .map(|(id, token, why)| Failure {
                    lease: omniq_core::LeaseRef { task_id: id, token },
                    error: TaskError::new(
                        ErrorType::Decode,
                        format!("the stored task could not be decoded: {why}"),
                    )
                    .with_retryable(false),
                    action: FailAction::Fail,
                    now,
                })
                .collect();
            self.fail_runs(failures).await?;
        }
        Ok(out)
    }

    pub(crate) async fn earliest_due(&self, queues: &[String]) -> Result<Option<OffsetDateTime>> {
        self.check_open()?;
        let queues = distinct_queues(queues)?;
        let client = self.client()?;
        let keys = &self.inner.keys;
        let zrange = CustomCommand::new_static("ZRANGE", ClusterHash::FirstKey, false);
        let mut heads = Vec::with_capacity(queues.len() * 3);
        for q in &queues {
            for set in ["sched", "leases", "ready"] {
                let args: Vec<Value> =
                    vec![arg(keys.of(q, set)), arg("0"), arg("0"), arg("WITHSCORES")];
                heads.push(client.custom::<Value, _>(zrange.clone(), args));
            }
        }
        let mut best: Option<i64> = None;
        for (i, reply) in futures::future::try_join_all(heads)
            .await?
            .into_iter()
            .enumerate()
        {
            let pair = array(reply);
            let (Some(member), Some(score)) = (pair.first(), pair.get(1)) else {
                continue;
            };
            let at = if i % 3 == 2 {
                // A ready member carries its eta: `<priority><eta><seq>:<id>`.
                text(member)
                    .get(10..27)
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| corrupt("ready member without an eta"))?
            } else {
                score_micros(score)?
            };
            best = Some(best.map_or(at, |b| b.min(at)));
        }
        best.map(convert::from_micros).transpose()
    }
}

fn score_micros(v: &Value) -> Result<i64> {
    match v {
        Value::Double(d) => Ok(*d as i64),
        Value::Integer(i) => Ok(*i),
        other => text(other)
            .parse::<f64>()
            .map(|d| d as i64)
            .map_err(|_| corrupt(format!("score {other:?}"))),
    }
}

/// `{id, expire_ms, …}` from a script.
pub(crate) fn ended_pairs(flat: Vec<Value>) -> Result<Vec<(String, i64)>> {
    flat.chunks(2)
        .map(|p| match p {
            [id, ms] => Ok((text(id), int(ms, "expiry")?)),
            _ => Err(corrupt("odd ended list")),
        })
        .collect()
}

#[derive(Default)]
struct ClaimReply {
    claimed: Vec<ClaimedRow>,
    peeked: Vec<(String, String)>,
}

/// One claimed task as the script returns it.
struct ClaimedRow {
    id: TaskId,
    token: i64,
    attempts: i64,
    runs: i64,
    record: Option<Vec<u8>>,
    eta: Option<i64>,
    error: Option<Vec<u8>>,
}

impl ClaimedRow {
    fn parse(v: Vec<Value>) -> Result<Self> {
        let [id, token, attempts, record, eta, error, runs] = <[Value; 7]>::try_from(v)
            .map_err(|r| corrupt(format!("claimed row of {} values", r.len())))?;
        let id = convert::task_id(&text(&id))?;
        Ok(Self {
            id,
            token: int(&token, "token")?,
            attempts: int(&attempts, "attempts")?,
            runs: int(&runs, "runs")?,
            record: opt_bytes(&record).map(<[u8]>::to_vec),
            eta: opt_int(&eta, "eta")?,
            error: convert::opt_field(&error).map(<[u8]>::to_vec),
        })
    }
}
