//! `omniq migrate`: copy every task, with its id, status, attempts, schedule, error,
//! unique key and result, from one storage to another through the public
//! [`Storage`] trait — so it works between any two backends, a user's own included.
//!
//! Three passes over the source, in task-id order, one page (`batch`) at a time:
//!
//! 1. **results** — tasks that have a result are copied by replaying their last run on
//!    the target (see the `replay` module: the trait has no call that writes a result);
//! 2. **tasks** — every other task is enqueued as it is, in batches (`enqueue` keeps
//!    ids, statuses, attempts, errors and times);
//! 3. **verify** — counts per queue and status are compared, then every task and result
//!    is read back from both sides and compared field by field.
//!
//! Tasks already present in the target (same id) are skipped, so an interrupted run is
//! resumed by running it again. Stop the workers of both sides first: a task that runs
//! during the copy changes under it (verification then reports it).

mod replay;

use crate::cli::{Global, MigrateArgs};
use crate::connect::Target;
use crate::error::{CliError, CliResult, Exit};
use futures::{StreamExt, TryStreamExt, stream};
use omniq::backend::{ClaimRequest, Completion, Failure, LeaseRef, Outcome};
use omniq::{
    CancelOutcome, Cursor, Page, QueueCounts, Storage, StorageError, StorageErrorKind, Task,
    TaskFilter, TaskId, TaskResult, TaskStatus,
};
use replay::{Plan, Step, differing_fields, expected, norm_result, norm_task};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use time::OffsetDateTime;

/// How `migrate` reads and writes.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Tasks per page read from the source and per enqueue batch (capped by the target's
    /// `max_batch`).
    pub batch: usize,
    /// Reads in flight at once (existence checks, results, verification).
    pub concurrency: usize,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self {
            batch: 500,
            concurrency: 16,
        }
    }
}

/// Where `migrate` reports its progress (the CLI draws a progress bar).
pub trait Progress: Send + Sync {
    /// A pass starts: `name` is `results`, `tasks` or `verify`; `total` tasks to go through.
    fn phase(&self, name: &'static str, total: u64);
    /// `n` more tasks of the current pass are done.
    fn advance(&self, n: u64);
    /// The migration is over.
    fn finish(&self);
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn phase(&self, _: &'static str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// A task that could not be copied (or copied exactly), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The task id.
    pub id: String,
    /// Why, in words.
    pub reason: String,
}

impl Problem {
    fn new(id: &TaskId, reason: impl Into<String>) -> Self {
        Self {
            id: id.to_string(),
            reason: reason.into(),
        }
    }
}

/// The last pass: what the target holds compared with the source.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    /// Counts per queue and status are equal on both sides (a source task that was
    /// Running counts as Pending: that is how it is stored).
    pub counts_match: bool,
    /// `queue status: N in the source, M in the target`, for each difference.
    pub count_differences: Vec<String>,
    /// Source tasks read back from the target and compared.
    pub tasks_compared: u64,
    /// Source results compared with the target's.
    pub results_compared: u64,
    /// Tasks that differ (or are missing), with the differing fields — not counting the
    /// ones already listed in `tasks_not_copied` / `results_not_copied`.
    pub mismatches: Vec<Problem>,
}

/// What a migration did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MigrateReport {
    /// Tasks in the source when the copy began.
    pub source_tasks: u64,
    /// Tasks written to the target by this run.
    pub tasks_copied: u64,
    /// Of those, how many were copied with their result.
    pub results_copied: u64,
    /// Source tasks the target already held (an earlier, interrupted run), skipped.
    pub already_present: u64,
    /// Source tasks that were Running: stored Pending, as `enqueue` stores them.
    pub running_copied_as_pending: u64,
    /// Tasks not written, and why (a live task in the target holds their unique key).
    pub tasks_not_copied: Vec<Problem>,
    /// Tasks written without their result, and why.
    pub results_not_copied: Vec<Problem>,
    /// The verification pass.
    pub verification: Verification,
}

impl MigrateReport {
    /// True when the target holds every source task and result, field for field.
    pub fn is_complete(&self) -> bool {
        self.tasks_not_copied.is_empty()
            && self.results_not_copied.is_empty()
            && self.verification.counts_match
            && self.verification.mismatches.is_empty()
    }
}

fn storage_err(side: &str, doing: &str, e: &StorageError) -> CliError {
    CliError::storage(&format!("{side}: {doing}"), e)
}

async fn page(source: &dyn Storage, cursor: Option<Cursor>, batch: usize) -> CliResult<Page<Task>> {
    source
        .list_tasks(TaskFilter {
            status: None,
            queue: None,
            limit: batch,
            cursor,
        })
        .await
        .map_err(|e| storage_err("source", "listing tasks", &e))
}

/// Copies every task and result of `source` into `target`, then verifies; see the
/// module docs. An `Err` is a failure that stopped the copy (a storage error, or
/// something else writing to the target); what could not be copied exactly is in the
/// report.
pub async fn migrate(
    source: &dyn Storage,
    target: &dyn Storage,
    options: &MigrateOptions,
    progress: &dyn Progress,
) -> CliResult<MigrateReport> {
    let batch = options.batch.max(1);
    let conc = options.concurrency.max(1);
    let mut report = MigrateReport::default();
    let source_counts = source
        .counts(None)
        .await
        .map_err(|e| storage_err("source", "reading counts", &e))?;
    report.source_tasks = source_counts.iter().map(QueueCounts::total).sum();
    let total = report.source_tasks;

    // Pass 1: tasks with a result, replayed. A replayed claim takes the queue's first due
    // task, so it must be ours: `live` holds, per queue, when each live task of the
    // target becomes due (a Running one at once: its lease may have run out).
    let mut live = target_live_tasks(target, batch).await?;
    let mut replayed: HashSet<TaskId> = HashSet::new();
    let mut leave_live: Vec<(Task, Plan)> = Vec::new();
    progress.phase("results", total);
    let mut cursor = None;
    loop {
        let p = page(source, cursor.take(), batch).await?;
        let checks: Vec<(bool, Option<TaskResult>)> = stream::iter(p.items.iter())
            .map(|t| async move {
                let present = target
                    .get_task(&t.id)
                    .await
                    .map_err(|e| storage_err("target", "reading a task", &e))?
                    .is_some();
                let result = if present {
                    None
                } else {
                    source
                        .get_result(&t.id)
                        .await
                        .map_err(|e| storage_err("source", "reading a result", &e))?
                };
                Ok::<_, CliError>((present, result))
            })
            .buffered(conc)
            .try_collect()
            .await?;
        for (task, (present, result)) in p.items.iter().zip(checks) {
            let Some(result) = result.filter(|_| !present) else {
                continue;
            };
            let plan = match replay::plan(task, &result) {
                Ok(plan) => plan,
                Err(reason) => {
                    report
                        .results_not_copied
                        .push(Problem::new(&task.id, reason));
                    continue;
                }
            };
            if let Some(reason) = blocked(&live, &task.queue, &plan) {
                report
                    .results_not_copied
                    .push(Problem::new(&task.id, reason));
                continue;
            }
            let ends_live = replay::simulate(&plan)
                .map(|(t, _)| !t.status.is_finished())
                .unwrap_or(false);
            if ends_live {
                leave_live.push((task.clone(), plan));
                continue;
            }
            match execute(target, task, &plan).await {
                Ok(()) => {
                    replayed.insert(task.id);
                }
                Err(Replay::Skip(reason)) => report
                    .results_not_copied
                    .push(Problem::new(&task.id, reason)),
                Err(Replay::Fatal(e)) => return Err(e),
            }
        }
        progress.advance(p.items.len() as u64);
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    // Replays that leave a task Pending (interval tasks, retried ones) run last, latest
    // claim first: a task put back on its queue is then never due at a later claim.
    leave_live.sort_by_key(|(_, plan)| std::cmp::Reverse(plan.last_claim()));
    for (task, plan) in leave_live {
        if let Some(reason) = blocked(&live, &task.queue, &plan) {
            report
                .results_not_copied
                .push(Problem::new(&task.id, reason));
            continue;
        }
        match execute(target, &task, &plan).await {
            Ok(()) => {
                replayed.insert(task.id);
                live.entry(task.queue.clone())
                    .or_default()
                    .push(expected(&task).effective_eta());
            }
            Err(Replay::Skip(reason)) => report
                .results_not_copied
                .push(Problem::new(&task.id, reason)),
            Err(Replay::Fatal(e)) => return Err(e),
        }
    }
    report.tasks_copied += replayed.len() as u64;
    report.results_copied = replayed.len() as u64;

    // Pass 2: everything else, as it is.
    let max_batch = target.capabilities().max_batch.clamp(1, batch);
    progress.phase("tasks", total);
    let mut cursor = None;
    loop {
        let p = page(source, cursor.take(), batch).await?;
        let present: Vec<bool> = stream::iter(p.items.iter())
            .map(|t| async move {
                target
                    .get_task(&t.id)
                    .await
                    .map(|t| t.is_some())
                    .map_err(|e| storage_err("target", "reading a task", &e))
            })
            .buffered(conc)
            .try_collect()
            .await?;
        let mut missing = Vec::new();
        for (task, present) in p.items.iter().zip(present) {
            if replayed.contains(&task.id) {
                continue;
            }
            if present {
                report.already_present += 1;
            } else {
                missing.push(task.clone());
            }
        }
        for chunk in missing.chunks(max_batch) {
            enqueue_chunk(target, chunk, &mut report).await?;
        }
        progress.advance(p.items.len() as u64);
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }

    // Pass 3: verify.
    progress.phase("verify", total);
    report.verification = verify(source, target, batch, conc, &report, progress).await?;
    progress.finish();
    Ok(report)
}

/// When each Pending or Running task of the target becomes claimable, per queue.
async fn target_live_tasks(
    target: &dyn Storage,
    batch: usize,
) -> CliResult<HashMap<String, Vec<OffsetDateTime>>> {
    let mut live: HashMap<String, Vec<OffsetDateTime>> = HashMap::new();
    let counts = target
        .counts(None)
        .await
        .map_err(|e| storage_err("target", "reading counts", &e))?;
    for c in counts.iter().filter(|c| c.pending + c.running > 0) {
        for status in [TaskStatus::Pending, TaskStatus::Running] {
            let mut cursor = None;
            loop {
                let p = target
                    .list_tasks(TaskFilter {
                        status: Some(status),
                        queue: Some(c.queue.clone()),
                        limit: batch,
                        cursor: cursor.take(),
                    })
                    .await
                    .map_err(|e| storage_err("target", "listing live tasks", &e))?;
                live.entry(c.queue.clone())
                    .or_default()
                    .extend(p.items.iter().map(|t| {
                        if t.status == TaskStatus::Running {
                            OffsetDateTime::UNIX_EPOCH
                        } else {
                            t.effective_eta()
                        }
                    }));
                match p.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
    }
    Ok(live)
}

/// Why a plan's claims could take another task of the queue, or None.
fn blocked(
    live: &HashMap<String, Vec<OffsetDateTime>>,
    queue: &str,
    plan: &Plan,
) -> Option<String> {
    let etas = live.get(queue)?;
    let last = plan.last_claim()?;
    let due = etas.iter().filter(|eta| **eta <= last).count();
    (due > 0).then(|| {
        format!(
            "{due} other pending or running task(s) of queue {queue:?} in the target would be due when this task's \
             last run is replayed (at {}), and the replayed claim could take one of them; \
             migrate into a target whose queue holds no such tasks to copy the result",
            crate::view::rfc3339(last)
        )
    })
}

async fn enqueue_chunk(
    target: &dyn Storage,
    chunk: &[Task],
    report: &mut MigrateReport,
) -> CliResult<()> {
    let record = |report: &mut MigrateReport, task: &Task, e: &omniq::Enqueued| {
        if e.duplicate || e.id != task.id {
            report.tasks_not_copied.push(Problem::new(
                &task.id,
                format!(
                    "task {} of the target is live with the same queue and unique key {:?}",
                    e.id,
                    task.unique_key.as_deref().unwrap_or("")
                ),
            ));
        } else {
            report.tasks_copied += 1;
            if task.status == TaskStatus::Running {
                report.running_copied_as_pending += 1;
            }
        }
    };
    match target.enqueue(chunk.to_vec()).await {
        Ok(outcomes) => {
            for (task, e) in chunk.iter().zip(&outcomes) {
                record(report, task, e);
            }
            Ok(())
        }
        // Someone else wrote one of these ids meanwhile: go one by one.
        Err(e) if e.kind() == StorageErrorKind::Conflict => {
            for task in chunk {
                match target.enqueue(vec![task.clone()]).await {
                    Ok(outcomes) => {
                        if let Some(e) = outcomes.first() {
                            record(report, task, e);
                        }
                    }
                    Err(e) if e.kind() == StorageErrorKind::Conflict => report.already_present += 1,
                    Err(e) => return Err(storage_err("target", "enqueueing tasks", &e)),
                }
            }
            Ok(())
        }
        Err(e) => Err(storage_err("target", "enqueueing tasks", &e)),
    }
}

enum Replay {
    /// Nothing was written; copy the task without its result.
    Skip(String),
    /// The target did not answer as the contract says: stop.
    Fatal(CliError),
}

fn fatal(task: &Task, what: impl std::fmt::Display) -> Replay {
    Replay::Fatal(CliError::new(
        Exit::Failure,
        format!(
            "copying task {} with its result: {what}; the target now holds a partial copy of it. \
             Is something else (a worker) writing to the target? Stop it and run migrate again; \
             verification will list the task if it stays different",
            task.id
        ),
    ))
}

async fn execute(target: &dyn Storage, task: &Task, plan: &Plan) -> Result<(), Replay> {
    let mut lease: Option<LeaseRef> = None;
    for step in &plan.steps {
        match step {
            Step::Stage(staged) => match target.enqueue(vec![staged.as_ref().clone()]).await {
                Ok(outcomes) => match outcomes.first() {
                    Some(e) if !e.duplicate && e.id == staged.id => {}
                    Some(e) => {
                        return Err(Replay::Skip(format!(
                            "task {} of the target is live with the same queue and unique key, so its run cannot be replayed",
                            e.id
                        )));
                    }
                    None => return Err(fatal(task, "enqueue answered nothing")),
                },
                Err(e) if e.kind() == StorageErrorKind::Conflict => {
                    return Err(Replay::Skip(format!(
                        "the target refused the staged copy: {e}"
                    )));
                }
                Err(e) => return Err(Replay::Fatal(storage_err("target", "enqueueing", &e))),
            },
            Step::Claim { now } => {
                // The lease must outlive the replay whenever `now` is.
                let since = (OffsetDateTime::now_utc() - *now).max(time::Duration::ZERO);
                let req = ClaimRequest {
                    queues: vec![task.queue.clone()],
                    limit: 1,
                    now: *now,
                    lease: since + time::Duration::hours(1),
                };
                let claimed = target
                    .claim(req)
                    .await
                    .map_err(|e| Replay::Fatal(storage_err("target", "claiming", &e)))?;
                match claimed.first() {
                    Some(c) if c.task.id == task.id => lease = Some(c.lease_ref()),
                    Some(c) => {
                        return Err(fatal(
                            task,
                            format!("the replayed claim took task {} instead", c.task.id),
                        ));
                    }
                    None => return Err(fatal(task, "the replayed claim returned nothing")),
                }
            }
            Step::Complete {
                now,
                result,
                next_run,
            } => {
                let lease = lease.ok_or_else(|| fatal(task, "complete without a claim"))?;
                let out = target
                    .complete(vec![Completion {
                        lease,
                        result: result.clone(),
                        now: *now,
                        next_run: *next_run,
                    }])
                    .await
                    .map_err(|e| Replay::Fatal(storage_err("target", "completing", &e)))?;
                if out.first() != Some(&Outcome::Ok) {
                    return Err(fatal(task, format!("complete answered {out:?}")));
                }
            }
            Step::Fail { now, error, action } => {
                let lease = lease.ok_or_else(|| fatal(task, "fail without a claim"))?;
                let out = target
                    .fail(vec![Failure {
                        lease,
                        error: error.clone(),
                        action: *action,
                        now: *now,
                    }])
                    .await
                    .map_err(|e| Replay::Fatal(storage_err("target", "failing", &e)))?;
                if out.first() != Some(&Outcome::Ok) {
                    return Err(fatal(task, format!("fail answered {out:?}")));
                }
            }
            Step::Cancel { now } => {
                let out = target
                    .cancel(&task.id, *now)
                    .await
                    .map_err(|e| Replay::Fatal(storage_err("target", "cancelling", &e)))?;
                if out != CancelOutcome::Cancelled {
                    return Err(fatal(task, format!("cancel answered {out:?}")));
                }
            }
            Step::Reschedule { eta, now } => target
                .reschedule(&task.id, *eta, *now)
                .await
                .map_err(|e| Replay::Fatal(storage_err("target", "rescheduling", &e)))?,
        }
    }
    Ok(())
}

type CountKey = (String, TaskStatus);

fn count_map(counts: &[QueueCounts], running_as_pending: bool) -> BTreeMap<CountKey, u64> {
    let mut m = BTreeMap::new();
    for c in counts {
        for s in TaskStatus::ALL {
            let n = c.get(s);
            if n == 0 {
                continue;
            }
            let s = if running_as_pending && s == TaskStatus::Running {
                TaskStatus::Pending
            } else {
                s
            };
            *m.entry((c.queue.clone(), s)).or_insert(0) += n;
        }
    }
    m
}

async fn verify(
    source: &dyn Storage,
    target: &dyn Storage,
    batch: usize,
    conc: usize,
    report: &MigrateReport,
    progress: &dyn Progress,
) -> CliResult<Verification> {
    let mut v = Verification::default();
    let src = source
        .counts(None)
        .await
        .map_err(|e| storage_err("source", "reading counts", &e))?;
    let dst = target
        .counts(None)
        .await
        .map_err(|e| storage_err("target", "reading counts", &e))?;
    let (src, dst) = (count_map(&src, true), count_map(&dst, false));
    let keys: std::collections::BTreeSet<&CountKey> = src.keys().chain(dst.keys()).collect();
    for key in keys {
        let (a, b) = (
            src.get(key).copied().unwrap_or(0),
            dst.get(key).copied().unwrap_or(0),
        );
        if a != b {
            v.count_differences.push(format!(
                "queue {:?} {}: {a} in the source, {b} in the target",
                key.0, key.1
            ));
        }
    }
    v.counts_match = v.count_differences.is_empty();

    let known: HashSet<&str> = report
        .tasks_not_copied
        .iter()
        .chain(&report.results_not_copied)
        .map(|p| p.id.as_str())
        .collect();
    let mut cursor = None;
    loop {
        let p = page(source, cursor.take(), batch).await?;
        let reads: Vec<_> = stream::iter(p.items.iter())
            .map(|t| async move {
                let got = target.get_task(&t.id).await;
                let want_r = source.get_result(&t.id).await;
                let got_r = target.get_result(&t.id).await;
                match (got, want_r, got_r) {
                    (Ok(a), Ok(b), Ok(c)) => Ok((a, b, c)),
                    (Err(e), _, _) | (_, _, Err(e)) => {
                        Err(storage_err("target", "reading back", &e))
                    }
                    (_, Err(e), _) => Err(storage_err("source", "reading a result", &e)),
                }
            })
            .buffered(conc)
            .try_collect()
            .await?;
        for (task, (got, want_r, got_r)) in p.items.iter().zip(reads) {
            v.tasks_compared += 1;
            if want_r.is_some() {
                v.results_compared += 1;
            }
            if known.contains(task.id.to_string().as_str()) {
                continue;
            }
            let want = expected(task);
            let Some(got) = got else {
                v.mismatches
                    .push(Problem::new(&task.id, "missing in the target"));
                continue;
            };
            let same_task = norm_task(&got) == norm_task(&want);
            let same_result = want_r.as_ref().map(norm_result) == got_r.as_ref().map(norm_result);
            if !(same_task && same_result) {
                let fields = differing_fields(&got, &want, got_r.as_ref(), want_r.as_ref());
                v.mismatches.push(Problem::new(
                    &task.id,
                    format!("differs (target vs source): {}", fields.join("; ")),
                ));
            }
        }
        progress.advance(p.items.len() as u64);
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(v)
}

/// The progress bar on stderr (hidden when stderr is not a terminal).
struct Bar {
    bar: indicatif::ProgressBar,
    enabled: bool,
}

impl Bar {
    fn new(enabled: bool) -> Self {
        // Hidden until the first pass knows its length.
        let bar = indicatif::ProgressBar::hidden();
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{prefix:>8} [{bar:32}] {human_pos}/{human_len} tasks, {elapsed} ({eta} left)",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        Self { bar, enabled }
    }
}

impl Progress for Bar {
    fn phase(&self, name: &'static str, total: u64) {
        self.bar.set_position(0);
        self.bar.set_length(total);
        self.bar.set_prefix(name);
        if self.enabled && self.bar.is_hidden() {
            self.bar
                .set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
        self.bar.reset_eta();
    }
    fn advance(&self, n: u64) {
        self.bar.inc(n);
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn list_problems(s: &mut String, title: &str, problems: &[Problem]) {
    if problems.is_empty() {
        return;
    }
    let _ = writeln!(s, "{title}: {}", problems.len());
    for p in problems.iter().take(20) {
        let _ = writeln!(s, "  {}: {}", p.id, p.reason);
    }
    if problems.len() > 20 {
        let _ = writeln!(s, "  … and {} more (--json lists all)", problems.len() - 20);
    }
}

fn report_text(r: &MigrateReport, from: &Target, to: &Target) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "source: {} task(s) in {}",
        r.source_tasks,
        from.describe()
    );
    let _ = writeln!(
        s,
        "copied: {} task(s) to {} ({} with their result); {} already there",
        r.tasks_copied,
        to.describe(),
        r.results_copied,
        r.already_present
    );
    if r.running_copied_as_pending > 0 {
        let _ = writeln!(
            s,
            "note: {} running task(s) were copied as pending (they run again on the target)",
            r.running_copied_as_pending
        );
    }
    list_problems(&mut s, "not copied", &r.tasks_not_copied);
    list_problems(&mut s, "copied without their result", &r.results_not_copied);
    let v = &r.verification;
    if v.counts_match {
        s.push_str("verified: counts match per queue and status\n");
    } else {
        let _ = writeln!(s, "verification: counts differ");
        for d in &v.count_differences {
            let _ = writeln!(s, "  {d}");
        }
    }
    let _ = writeln!(
        s,
        "verified: {} task(s) and {} result(s) compared field by field: {}",
        v.tasks_compared,
        v.results_compared,
        if v.mismatches.is_empty() {
            "identical".to_string()
        } else {
            format!("{} differ", v.mismatches.len())
        }
    );
    list_problems(&mut s, "different in the target", &v.mismatches);
    s
}

pub(crate) async fn run(g: &Global, args: &MigrateArgs) -> CliResult<()> {
    let from_ns = args.from_namespace.as_deref().unwrap_or(&g.namespace);
    let to_ns = args.to_namespace.as_deref().unwrap_or(&g.namespace);
    let from = Target::flag("--from", &args.from, from_ns);
    let to = Target::flag("--to", &args.to, to_ns);
    if args.from.trim() == args.to.trim() && from_ns == to_ns {
        return Err(CliError::config(
            "--from and --to name the same storage and namespace; give another --to (or --to-namespace)",
        ));
    }
    let source = from.open().await?;
    let target = to.open().await?;
    let bar = Bar::new(!args.no_progress);
    let options = MigrateOptions {
        batch: args.batch as usize,
        ..MigrateOptions::default()
    };
    let outcome = migrate(source.as_ref(), target.as_ref(), &options, &bar).await;
    bar.finish();
    let closed = source
        .close()
        .await
        .map_err(|e| storage_err("source", "closing", &e))
        .and(
            target
                .close()
                .await
                .map_err(|e| storage_err("target", "closing", &e)),
        );
    let report = outcome?;
    closed?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({ "complete": report.is_complete(), "report": report })
        );
    } else {
        print!("{}", report_text(&report, &from, &to));
    }
    if report.is_complete() {
        Ok(())
    } else {
        Err(CliError::new(
            Exit::Verification,
            "the target does not hold everything the source holds (see above); \
             fix the cause and run migrate again: tasks already copied are skipped",
        ))
    }
}
