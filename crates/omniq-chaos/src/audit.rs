//! The append-only audit log and what it proves.
//!
//! Every worker process and the orchestrator append lines to one file opened with
//! `O_APPEND`; each line is written with one `write` call, so lines of different
//! processes never interleave. Times are the machine's real clock in microseconds since
//! the Unix epoch; lease ends written by a worker whose clock is skewed are converted to
//! real time with that worker's offset.
//!
//! ```text
//! claim <ts> <pid> <task> <token> <attempt> <until>   a claim the storage granted
//! hb    <ts> <pid> <task> <token> <until>             a heartbeat the storage applied
//! start <ts> <pid> <task> <attempt>                   the handler began a run
//! end   <ts> <pid> <task> <attempt>                   the handler finished it
//! kill  <ts> <pid>                                    the orchestrator SIGKILLed pid
//! fault <ts> <pid> <op> <refused|ambiguous>           an injected storage fault
//! ```
//!
//! [`analyze`] turns the log into the figures of a run: runs, tasks run more than once,
//! and **double runs under a live lease** — two runs of one task that overlap while the
//! first run's lease (as the storage confirmed it at claim or heartbeat) had not yet
//! expired. A second run that starts after the first one's lease expired is the
//! at-least-once redelivery the contract allows, and is not counted.

use async_trait::async_trait;
use omniq_core::{
    CancelOutcome, Capabilities, ClaimRequest, Claimed, Completion, Enqueued, Failure, LeaseRef,
    Outcome, Page, QueueCounts, Storage, StorageError, Task, TaskFilter, TaskId, TaskResult, Wake,
};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use time::OffsetDateTime;

/// Microseconds since the Unix epoch, real time.
pub fn now_us() -> i64 {
    ts_us(OffsetDateTime::now_utc())
}

fn ts_us(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

/// One process's handle on the shared log.
#[derive(Debug)]
pub struct AuditLog {
    file: File,
    pid: u32,
}

impl AuditLog {
    /// Opens (creating) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            file,
            pid: std::process::id(),
        })
    }

    /// Appends one line (`kind ts pid rest`) in one write.
    pub fn line(&self, kind: &str, rest: std::fmt::Arguments<'_>) {
        let s = format!("{kind} {} {} {rest}\n", now_us(), self.pid);
        // One write of a short line to an O_APPEND file: atomic on local file systems.
        let _ = (&self.file).write_all(s.as_bytes());
    }

    /// Records a SIGKILL of `pid` (written by the orchestrator).
    pub fn kill(&self, pid: u32) {
        let s = format!("kill {} {pid}\n", now_us());
        let _ = (&self.file).write_all(s.as_bytes());
    }
}

/// A storage wrapper that logs every claim granted and heartbeat applied, with lease
/// ends converted to real time (`offset_us` is how far this process's clock is ahead).
#[derive(Debug)]
pub struct Recorded {
    inner: Arc<dyn Storage>,
    log: Arc<AuditLog>,
    offset_us: i64,
}

impl Recorded {
    /// Records the claims and heartbeats of `inner` into `log`.
    pub fn new(inner: Arc<dyn Storage>, log: Arc<AuditLog>, offset_us: i64) -> Self {
        Self {
            inner,
            log,
            offset_us,
        }
    }
}

#[async_trait]
impl Storage for Recorded {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<Wake>> {
        self.inner.subscribe()
    }
    async fn enqueue(&self, t: Vec<Task>) -> Result<Vec<Enqueued>, StorageError> {
        self.inner.enqueue(t).await
    }
    async fn claim(&self, r: ClaimRequest) -> Result<Vec<Claimed>, StorageError> {
        let claimed = self.inner.claim(r).await?;
        for c in &claimed {
            self.log.line(
                "claim",
                format_args!(
                    "{} {} {} {}",
                    c.task.id,
                    c.lease.token.0,
                    c.task.attempts,
                    ts_us(c.lease.until) - self.offset_us
                ),
            );
        }
        Ok(claimed)
    }
    async fn next_due(&self, q: &[String]) -> Result<Option<OffsetDateTime>, StorageError> {
        self.inner.next_due(q).await
    }
    async fn heartbeat(
        &self,
        l: &[LeaseRef],
        until: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        let out = self.inner.heartbeat(l, until).await?;
        for (lease, o) in l.iter().zip(&out) {
            if matches!(o, Outcome::Ok | Outcome::CancelRequested) {
                self.log.line(
                    "hb",
                    format_args!(
                        "{} {} {}",
                        lease.task_id,
                        lease.token.0,
                        ts_us(until) - self.offset_us
                    ),
                );
            }
        }
        Ok(out)
    }
    async fn start(&self, l: &[LeaseRef]) -> Result<Vec<Outcome>, StorageError> {
        self.inner.start(l).await
    }
    async fn complete(&self, c: Vec<Completion>) -> Result<Vec<Outcome>, StorageError> {
        self.inner.complete(c).await
    }
    async fn fail(&self, f: Vec<Failure>) -> Result<Vec<Outcome>, StorageError> {
        self.inner.fail(f).await
    }
    async fn release(
        &self,
        l: &[LeaseRef],
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        self.inner.release(l, now).await
    }
    async fn get_task(&self, id: &TaskId) -> Result<Option<Task>, StorageError> {
        self.inner.get_task(id).await
    }
    async fn reschedule(
        &self,
        id: &TaskId,
        eta: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        self.inner.reschedule(id, eta, now).await
    }
    async fn get_result(&self, id: &TaskId) -> Result<Option<TaskResult>, StorageError> {
        self.inner.get_result(id).await
    }
    async fn cancel(
        &self,
        id: &TaskId,
        now: OffsetDateTime,
    ) -> Result<CancelOutcome, StorageError> {
        self.inner.cancel(id, now).await
    }
    async fn list_tasks(&self, f: TaskFilter) -> Result<Page<Task>, StorageError> {
        self.inner.list_tasks(f).await
    }
    async fn counts(&self, q: Option<&str>) -> Result<Vec<QueueCounts>, StorageError> {
        self.inner.counts(q).await
    }
    async fn purge_results(&self, older: OffsetDateTime) -> Result<u64, StorageError> {
        self.inner.purge_results(older).await
    }
    async fn close(&self) -> Result<(), StorageError> {
        self.inner.close().await
    }
}

/// What a log says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Handler runs started.
    pub runs: u64,
    /// Handler runs finished.
    pub finished_runs: u64,
    /// Tasks whose handler started more than once (redeliveries after a kill or a lost lease).
    pub rerun_tasks: u64,
    /// Pairs of overlapping runs of one task where the later one started before the
    /// earlier one's lease expired.
    pub double_live: u64,
    /// Processes SIGKILLed.
    pub kills: u64,
    /// Faults injected.
    pub faults: u64,
    /// Tasks with at least one finished run, by id.
    pub finished: HashMap<String, u64>,
    /// Up to 10 examples of double runs, for the report.
    pub examples: Vec<String>,
}

#[derive(Debug, Clone)]
struct Run {
    pid: u32,
    attempt: u32,
    start: i64,
    end: Option<i64>,
}

/// Reads the log at `path`.
pub fn analyze(path: &Path) -> std::io::Result<Facts> {
    let text = std::fs::read_to_string(path)?;
    Ok(analyze_text(&text))
}

/// Reads a log's text (see the [module docs](self) for the lines).
pub fn analyze_text(text: &str) -> Facts {
    let mut facts = Facts::default();
    // (pid, task, attempt) -> token of the latest claim.
    let mut token_of: HashMap<(u32, &str, u32), i64> = HashMap::new();
    // (task, token) -> latest lease end confirmed.
    let mut until_of: HashMap<(&str, i64), i64> = HashMap::new();
    let mut runs: HashMap<&str, Vec<Run>> = HashMap::new();
    // (pid, task, attempt) -> index into runs[task] of the open run.
    let mut open: HashMap<(u32, &str, u32), usize> = HashMap::new();
    let mut killed: HashMap<u32, i64> = HashMap::new();
    let mut run_tokens: HashMap<(&str, usize), i64> = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| f.get(i).and_then(|s| s.parse::<i64>().ok());
        let (Some(kind), Some(ts)) = (f.first(), num(1)) else {
            continue;
        };
        let pid = num(2).unwrap_or(0) as u32;
        match *kind {
            "kill" => {
                facts.kills += 1;
                killed.insert(pid, ts);
            }
            "fault" => facts.faults += 1,
            "claim" => {
                let (Some(task), Some(token), Some(attempt), Some(until)) =
                    (f.get(3), num(4), num(5), num(6))
                else {
                    continue;
                };
                token_of.insert((pid, task, attempt as u32), token);
                let e = until_of.entry((task, token)).or_insert(until);
                *e = (*e).max(until);
            }
            "hb" => {
                let (Some(task), Some(token), Some(until)) = (f.get(3), num(4), num(5)) else {
                    continue;
                };
                let e = until_of.entry((task, token)).or_insert(until);
                *e = (*e).max(until);
            }
            "start" => {
                let (Some(task), Some(attempt)) = (f.get(3), num(4)) else {
                    continue;
                };
                let attempt = attempt as u32;
                facts.runs += 1;
                let list = runs.entry(task).or_default();
                list.push(Run {
                    pid,
                    attempt,
                    start: ts,
                    end: None,
                });
                let idx = list.len() - 1;
                open.insert((pid, task, attempt), idx);
                if let Some(t) = token_of.get(&(pid, task, attempt)) {
                    run_tokens.insert((task, idx), *t);
                }
            }
            "end" => {
                let (Some(task), Some(attempt)) = (f.get(3), num(4)) else {
                    continue;
                };
                if let Some(idx) = open.remove(&(pid, *task, attempt as u32)) {
                    if let Some(r) = runs.get_mut(task).and_then(|l| l.get_mut(idx)) {
                        r.end = Some(ts);
                        facts.finished_runs += 1;
                        *facts.finished.entry(task.to_string()).or_default() += 1;
                    }
                }
            }
            _ => {}
        }
    }
    for (task, list) in &runs {
        if list.len() > 1 {
            facts.rerun_tasks += 1;
        }
        for (i, a) in list.iter().enumerate() {
            // The first run ends when its handler returned or its process was killed.
            let a_end = a
                .end
                .or_else(|| killed.get(&a.pid).copied().filter(|k| *k >= a.start))
                .unwrap_or(i64::MAX);
            let Some(a_until) = run_tokens
                .get(&(*task, i))
                .and_then(|t| until_of.get(&(*task, *t)))
            else {
                continue;
            };
            for b in list.iter().skip(i + 1) {
                let overlap = b.start < a_end;
                if overlap && b.start < *a_until {
                    facts.double_live += 1;
                    if facts.examples.len() < 10 {
                        facts.examples.push(format!(
                            "task {task}: run (pid {}, attempt {}) started {} ms before the lease of run (pid {}, attempt {}) ended",
                            b.pid,
                            b.attempt,
                            (a_until - b.start) / 1000,
                            a.pid,
                            a.attempt
                        ));
                    }
                }
            }
        }
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redelivery_after_the_lease_expired_is_not_a_double_run() {
        let log = "\
claim 1000 1 t 1 1 3000000
start 1001 1 t 1
kill 2000000 1
claim 3000001 2 t 2 2 6000000
start 3000002 2 t 2
end 3100000 2 t 2
";
        let f = analyze_text(log);
        assert_eq!((f.runs, f.finished_runs, f.rerun_tasks), (2, 1, 1));
        assert_eq!(f.double_live, 0);
        assert_eq!(f.kills, 1);
    }

    #[test]
    fn a_second_run_inside_a_heartbeated_lease_is_a_double_run() {
        let log = "\
claim 1000 1 t 1 1 3000000
start 1001 1 t 1
hb 1000000 1 t 1 4000000
claim 3500000 2 t 2 2 6000000
start 3500001 2 t 2
end 3600000 2 t 2
end 3700000 1 t 1
";
        let f = analyze_text(log);
        assert_eq!(f.double_live, 1, "{f:?}");
        assert_eq!(f.examples.len(), 1);
    }

    #[test]
    fn runs_that_do_not_overlap_are_fine_even_inside_the_old_lease() {
        // The first run finished (and its outcome was lost): a later run is a redelivery.
        let log = "\
claim 1000 1 t 1 1 3000000
start 1001 1 t 1
end 2000 1 t 1
claim 2500 2 t 2 2 6000000
start 2501 2 t 2
end 2600 2 t 2
";
        assert_eq!(analyze_text(log).double_live, 0);
    }
}
