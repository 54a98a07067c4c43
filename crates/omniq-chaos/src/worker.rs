//! The worker process the orchestrator spawns (`omniq-chaos worker …`): a real
//! `AsyncWorkerPool` whose handler appends `start` / `end` lines to the audit log, over
//! the backend (optionally behind [`FaultyStorage`] and with a skewed clock). It runs
//! until its standard input closes, then stops gracefully.

use crate::audit::{AuditLog, Recorded};
use crate::backend::Target;
use crate::faulty::FaultyStorage;
use anyhow::{Context, Result};
use omniq::{
    AsyncTaskQueue, AsyncWorkerPool, Backend, Clock, HandlerError, Storage, TaskCtx, TaskHandler,
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// The handler every chaos task runs.
pub const WORK: &str = "chaos.work";

/// A chaos task's arguments: a number to return and how long to take.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkArgs {
    /// Returned as the result.
    pub n: u64,
    /// Milliseconds the run takes.
    pub ms: u64,
}

omniq::task_type!(
    /// The chaos task type: [`WorkArgs`] in, the number out.
    pub Work = "chaos.work", WorkArgs => u64
);

/// The handler: logs the run's start and end around a sleep.
struct Audited {
    log: Arc<AuditLog>,
}

impl TaskHandler for Audited {
    type Task = Work;
    async fn run(&self, args: WorkArgs, ctx: TaskCtx) -> Result<u64, HandlerError> {
        self.log
            .line("start", format_args!("{} {}", ctx.task_id, ctx.attempt));
        if args.ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.ms)).await;
        }
        self.log
            .line("end", format_args!("{} {}", ctx.task_id, ctx.attempt));
        Ok(args.n)
    }
}

/// The real clock moved by a fixed offset.
#[derive(Debug)]
pub struct OffsetClock(pub time::Duration);

impl Clock for OffsetClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + self.0
    }
}

/// How a worker process runs.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// file, sqlite, postgres or redis.
    #[arg(long)]
    pub backend: Backend,
    /// Server URL, SQLite path or base directory.
    #[arg(long)]
    pub location: String,
    /// The namespace.
    #[arg(long)]
    pub namespace: String,
    /// The audit log to append to.
    #[arg(long)]
    pub audit: PathBuf,
    /// Lease length in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub lease_ms: u64,
    /// Runs at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Fraction of storage calls that fail (0 = none).
    #[arg(long, default_value_t = 0.0)]
    pub fault_p: f64,
    /// This process's clock offset in milliseconds (positive: ahead).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub clock_offset_ms: i64,
    /// Log no runs (a large backlog whose memory is the figure).
    #[arg(long)]
    pub quiet: bool,
    /// The deadline of each storage call, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub storage_timeout_ms: u64,
}

/// Runs a worker until standard input closes.
pub async fn run(args: WorkerArgs) -> Result<()> {
    let target = Target::existing(args.backend, args.location.clone(), args.namespace.clone());
    let log = Arc::new(AuditLog::open(&args.audit).context("audit log")?);
    // A server being restarted may refuse the first connection: keep trying for a while.
    let mut storage = None;
    for _ in 0..60 {
        match target.open().await {
            Ok(s) => {
                storage = Some(s);
                break;
            }
            Err(e) => {
                eprintln!("worker: {e:#}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    let mut storage = storage.context("the backend never answered")?;
    if args.fault_p > 0.0 {
        let hook_log = Arc::clone(&log);
        let faulty = FaultyStorage::new(storage, args.fault_p, u64::from(std::process::id()))
            .with_hook(Box::new(move |op, fault| {
                hook_log.line("fault", format_args!("{op} {}", fault.as_str()));
            }));
        storage = Arc::new(faulty);
    }
    let offset = time::Duration::milliseconds(args.clock_offset_ms);
    let recorded: Arc<dyn Storage> = if args.quiet {
        storage
    } else {
        Arc::new(Recorded::new(
            storage,
            Arc::clone(&log),
            args.clock_offset_ms * 1000,
        ))
    };
    let queue = AsyncTaskQueue::new(recorded).with_clock(Arc::new(OffsetClock(offset)));
    let lease = Duration::from_millis(args.lease_ms);
    let mut pool = AsyncWorkerPool::builder()
        .queue(queue)
        .concurrency(args.concurrency)
        .lease(lease)
        .heartbeat_interval(lease / 4)
        .poll_interval(Duration::from_millis(100))
        // Kills and injected faults redeliver tasks many times; none is a crash loop.
        .max_redeliveries(1000)
        .storage_timeout(Duration::from_millis(args.storage_timeout_ms))
        .build()?;
    if args.quiet {
        pool.handle::<Work>(|a: WorkArgs| async move {
            if a.ms > 0 {
                tokio::time::sleep(Duration::from_millis(a.ms)).await;
            }
            Ok::<_, HandlerError>(a.n)
        });
    } else {
        pool.register_handler(Audited { log });
    }
    pool.start()?;
    // Stop when the orchestrator closes our standard input.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        let _ = tx.send(());
    });
    let _ = rx.await;
    pool.stop(Duration::from_secs(10)).await?;
    Ok(())
}
