//! The scenarios. Each runs against one backend in a namespace of its own, is bounded
//! in time, and ends with an audit: the tasks' final states from the storage, and the
//! run log (see [`crate::audit`]).

use crate::audit::{self, AuditLog, Facts};
use crate::backend::Target;
use crate::procs::Workers;
use crate::worker::{Work, WorkArgs};
use anyhow::{Context, Result};
use omniq::{AsyncTaskQueue, Backend, Storage, TaskFilter, TaskId, TaskStatus};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One line of the report: a scenario on a backend.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Row {
    /// The backend.
    pub backend: String,
    /// The scenario.
    pub scenario: String,
    /// Tasks enqueued.
    pub tasks: u64,
    /// Faults injected (kills, server restarts, storage faults, hangs, bad records).
    pub faults: u64,
    /// Tasks not in their expected final state at the end.
    pub lost: u64,
    /// Runs of one task overlapping under a live lease.
    pub double: u64,
    /// Panics in any process.
    pub panics: u64,
    /// Handler runs (more than `tasks` when tasks were redelivered).
    pub runs: u64,
    /// Wall time of the scenario.
    pub seconds: f64,
    /// Anything else worth knowing (peak RSS, stop times, examples of violations).
    pub note: String,
}

impl Row {
    /// Whether the scenario kept every promise.
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.double == 0 && self.panics == 0
    }
}

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// Tasks of the worker-kill scenario.
    pub tasks: u64,
    /// The CI-sized variant.
    pub small: bool,
}

impl Size {
    pub(crate) fn pick(&self, full: u64, small: u64) -> u64 {
        if self.small { small } else { full }
    }
}

/// Where a scenario keeps its audit log and worker logs.
#[derive(Debug)]
pub struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    /// A fresh directory (kept when `OMNIQ_CHAOS_KEEP` is set, for inspection).
    pub fn new(name: &str) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("omniq-chaos-{name}-"))
            .tempdir()?;
        Ok(Self { dir })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The audit log's path.
    pub fn audit(&self) -> PathBuf {
        self.dir.path().join("audit.log")
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if std::env::var_os("OMNIQ_CHAOS_KEEP").is_some() {
            eprintln!("chaos: kept {}", self.dir.path().display());
            self.dir.disable_cleanup(true);
        }
    }
}

/// Enqueues `n` work tasks of `ms` milliseconds each, in batches.
pub async fn enqueue(storage: &Arc<dyn Storage>, n: u64, ms: u64) -> Result<Vec<TaskId>> {
    let queue = AsyncTaskQueue::new(Arc::clone(storage));
    let mut ids = Vec::with_capacity(n as usize);
    let mut next = 0;
    while next < n {
        let end = (next + 1000).min(n);
        let specs = (next..end)
            .map(|i| queue.task_typed::<Work>(&WorkArgs { n: i, ms }))
            .collect();
        let done = queue.enqueue_many(specs).await.context("enqueue")?;
        ids.extend(done.into_iter().map(|e| e.id));
        next = end;
    }
    Ok(ids)
}

/// Tasks of the namespace by final status, read with `list_tasks`.
pub async fn statuses(storage: &Arc<dyn Storage>) -> Result<HashMap<TaskId, TaskStatus>> {
    let mut out = HashMap::new();
    let mut cursor = None;
    loop {
        let page = storage
            .list_tasks(TaskFilter {
                limit: 1000,
                cursor,
                ..TaskFilter::default()
            })
            .await?;
        for t in page.items {
            out.insert(t.id, t.status);
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// Finished tasks (any final status) in the namespace.
async fn finished(storage: &Arc<dyn Storage>) -> Result<u64> {
    let counts = storage.counts(None).await?;
    Ok(counts
        .iter()
        .map(|c| c.success + c.failed + c.cancelled)
        .sum())
}

/// The audit at the end of a multi-process scenario: every id Success and run to its
/// end at least once.
async fn audit_success(
    storage: &Arc<dyn Storage>,
    ids: &[TaskId],
    facts: &Facts,
) -> Result<(u64, Vec<String>)> {
    let st = statuses(storage).await?;
    let mut lost = 0;
    let mut examples = Vec::new();
    for id in ids {
        let s = st.get(id).copied();
        let ran = facts.finished.contains_key(&id.to_string());
        if s != Some(TaskStatus::Success) || !ran {
            lost += 1;
            if examples.len() < 5 {
                examples.push(format!(
                    "task {id}: status {s:?}, finished run logged: {ran}"
                ));
            }
        }
    }
    Ok((lost, examples))
}

/// What a multi-process scenario does besides running workers.
pub enum Chaos<'a> {
    /// Nothing: the workers run undisturbed (their own arguments carry the fault).
    None,
    /// SIGKILL one worker (round robin) every `every`, at most `max` times, and start a
    /// new one in its place.
    Kills {
        /// Interval between kills.
        every: Duration,
        /// Most kills.
        max: u64,
    },
    /// Restart the server `times` times, `every` apart.
    Restarts {
        /// The private server.
        server: &'a mut dyn crate::servers::Restartable,
        /// Interval between restarts.
        every: Duration,
        /// Number of restarts.
        times: u64,
    },
}

/// A scenario with worker processes.
pub struct ProcessRun<'a> {
    /// Scenario name (report).
    pub name: &'static str,
    /// Tasks.
    pub tasks: u64,
    /// Milliseconds each task takes.
    pub task_ms: u64,
    /// Arguments of every worker.
    pub common: Vec<String>,
    /// One entry per worker: its own arguments.
    pub workers: Vec<Vec<String>>,
    /// What to do to them.
    pub chaos: Chaos<'a>,
    /// The bound on the whole run.
    pub deadline: Duration,
}

impl ProcessRun<'_> {
    /// Runs it on `target` and audits.
    pub async fn run(self, target: &Target) -> Result<Row> {
        let started = Instant::now();
        let work = Workdir::new(self.name)?;
        let audit_path = work.audit();
        let log = AuditLog::open(&audit_path)?;
        let storage = target.open().await?;
        let ids = enqueue(&storage, self.tasks, self.task_ms).await?;
        let mut workers = Workers::start(
            target,
            &audit_path,
            work.path(),
            &self.common,
            &self.workers,
        )?;
        let deadline = started + self.deadline;
        let stop = AtomicBool::new(false);
        let chaos_done = AtomicBool::new(!matches!(self.chaos, Chaos::Restarts { .. }));
        let mut chaos = self.chaos;
        let n = self.tasks;
        // Watches progress while the chaos runs at its own pace, in the same task.
        let waiter = async {
            let done = loop {
                // A storage error here (a server restarting) is not the end of the scenario.
                if let Ok(fin) = finished(&storage).await {
                    if fin >= n && chaos_done.load(Ordering::SeqCst) {
                        break true;
                    }
                }
                if Instant::now() >= deadline {
                    break false;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            };
            stop.store(true, Ordering::SeqCst);
            done
        };
        let workers_ref = &mut workers;
        let log_ref = &log;
        let chaos_ref = &mut chaos;
        let agent = async {
            let mut count = 0u64;
            match chaos_ref {
                Chaos::None => {}
                Chaos::Kills { every, max } => {
                    while count < *max {
                        tokio::time::sleep(*every).await;
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let i = (count as usize) % workers_ref.len();
                        workers_ref.kill_and_restart(i, log_ref)?;
                        count += 1;
                    }
                }
                Chaos::Restarts {
                    server,
                    every,
                    times,
                } => {
                    while count < *times && !stop.load(Ordering::SeqCst) {
                        tokio::time::sleep(*every).await;
                        server.restart().context("server restart")?;
                        count += 1;
                    }
                    chaos_done.store(true, Ordering::SeqCst);
                }
            }
            anyhow::Ok(count)
        };
        let (done, chaos_count) = tokio::join!(waiter, agent);
        let chaos_count = chaos_count?;
        let bad_exits = workers.stop(Duration::from_secs(20));
        let (panics, panic_lines) = workers.panics();
        let facts = audit::analyze(&audit_path)?;
        let (lost, lost_examples) = audit_success(&storage, &ids, &facts).await?;
        let _ = storage.close().await;
        let mut note = Vec::new();
        if !done {
            note.push(format!("not all finished within {:?}", self.deadline));
        }
        note.push(format!("{} tasks rerun", facts.rerun_tasks));
        note.extend(bad_exits);
        note.extend(panic_lines);
        note.extend(lost_examples);
        note.extend(facts.examples.iter().cloned());
        let faults = match &chaos {
            Chaos::None => facts.faults,
            Chaos::Kills { .. } => facts.kills,
            Chaos::Restarts { .. } => chaos_count,
        };
        Ok(Row {
            backend: target.backend.as_str().into(),
            scenario: self.name.into(),
            tasks: self.tasks,
            faults,
            lost,
            double: facts.double_live,
            panics,
            runs: facts.runs,
            seconds: started.elapsed().as_secs_f64(),
            note: note.join("; "),
        })
    }
}

fn ms(d: u64) -> String {
    d.to_string()
}

/// How long each task takes so that `workers` processes of `concurrency` 4 need about
/// `secs` for `tasks`: the chaos must happen while there is work.
pub(crate) fn task_ms(tasks: u64, workers: u64, secs: u64) -> u64 {
    (workers * 4 * secs * 1000 / tasks.max(1)).clamp(1, 2000)
}

/// Scenario 1, worker kills: three workers, one SIGKILLed about every second and restarted.
pub async fn worker_kills(target: &Target, size: Size) -> Result<Row> {
    let tasks = size.tasks;
    ProcessRun {
        name: "worker-kills",
        tasks,
        task_ms: task_ms(tasks, 3, size.pick(50, 6)),
        common: vec![
            "--lease-ms".into(),
            ms(2000),
            "--concurrency".into(),
            "4".into(),
        ],
        workers: vec![vec![]; 3],
        chaos: Chaos::Kills {
            every: Duration::from_secs(1),
            max: size.pick(50, 6),
        },
        deadline: Duration::from_secs(size.pick(600, 120)),
    }
    .run(target)
    .await
}

/// Scenario 3, storage faults: two workers whose storage fails a fraction `p` of calls, half of
/// the failed writes applied anyway (ambiguous commits).
pub async fn storage_faults(target: &Target, size: Size, p: f64) -> Result<Row> {
    let name = match (p * 100.0).round() as u32 {
        1 => "faults-p0.01",
        10 => "faults-p0.1",
        _ => "faults-p0.3",
    };
    ProcessRun {
        name,
        tasks: size.pick(2000, 200),
        task_ms: 5,
        common: vec![
            "--lease-ms".into(),
            ms(2000),
            "--fault-p".into(),
            p.to_string(),
            "--storage-timeout-ms".into(),
            ms(5000),
        ],
        workers: vec![vec![]; 2],
        chaos: Chaos::None,
        deadline: Duration::from_secs(size.pick(300, 90)),
    }
    .run(target)
    .await
}

/// Scenario 6, clock jumps: one worker 2 s ahead, one 2 s behind, one on time, with kills so that
/// leases are redelivered between skewed clocks. The lease (10 s, heartbeat every 2.5 s)
/// keeps the skew within the documented tolerance.
pub async fn clock_skew(target: &Target, size: Size) -> Result<Row> {
    ProcessRun {
        name: "clock-skew",
        tasks: size.pick(3000, 300),
        task_ms: task_ms(size.pick(3000, 300), 3, size.pick(30, 6)),
        common: vec![
            "--lease-ms".into(),
            ms(10_000),
            "--concurrency".into(),
            "4".into(),
        ],
        workers: vec![
            vec!["--clock-offset-ms".into(), "2000".into()],
            vec!["--clock-offset-ms".into(), "-2000".into()],
            vec![],
        ],
        chaos: Chaos::Kills {
            every: Duration::from_secs(size.pick(3, 2)),
            max: size.pick(10, 2),
        },
        deadline: Duration::from_secs(size.pick(300, 120)),
    }
    .run(target)
    .await
}

/// The scenarios by name, in run order.
pub const NAMES: [&str; 7] = [
    "worker-kills",
    "server-restarts",
    "storage-faults",
    "hang",
    "bad-data",
    "clock-skew",
    "load",
];

/// Runs the named scenario on `backend`; a scenario that does not apply to the backend
/// returns no rows.
pub async fn run(name: &str, backend: Backend, size: Size) -> Result<Vec<Row>> {
    let target = || Target::new(backend, &name.replace('-', "_"), None);
    let mut rows = Vec::new();
    match name {
        "worker-kills" => {
            let t = target()?;
            let r = worker_kills(&t, size).await;
            cleanup(&t).await;
            rows.push(r?);
        }
        "storage-faults" => {
            for p in [0.01, 0.1, 0.3] {
                let t = target()?;
                let r = storage_faults(&t, size, p).await;
                cleanup(&t).await;
                rows.push(r?);
            }
        }
        "clock-skew" => {
            let t = target()?;
            let r = clock_skew(&t, size).await;
            cleanup(&t).await;
            rows.push(r?);
        }
        "hang" => {
            let t = target()?;
            let r = crate::inproc::hang(&t, size).await;
            cleanup(&t).await;
            rows.push(r?);
        }
        "server-restarts" => {
            if let Some(r) = crate::servers::server_restarts(backend, size).await? {
                rows.push(r);
            }
        }
        "bad-data" => {
            let t = target()?;
            let r = crate::inproc::bad_data(&t, size).await;
            cleanup(&t).await;
            rows.push(r?);
        }
        "load" => {
            let t = target()?;
            let r = crate::inproc::load(&t, size).await;
            cleanup(&t).await;
            rows.extend(r?);
        }
        other => anyhow::bail!(
            "unknown scenario {other:?} (valid values: {}, all)",
            NAMES.join(", ")
        ),
    }
    Ok(rows)
}

/// Deletes a scenario's namespace; a failure is reported, not fatal.
pub(crate) async fn cleanup(t: &Target) {
    if let Err(e) = t.cleanup().await {
        eprintln!(
            "chaos: could not delete namespace {} on {}: {e:#}",
            t.namespace,
            t.backend.as_str()
        );
    }
}
