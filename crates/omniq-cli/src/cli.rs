//! The command line, as clap parses it.

use crate::error::EXIT_CODES_HELP;
use clap::{ArgGroup, Args, Parser, Subcommand};
use omniq::{TaskId, TaskStatus};
use std::net::SocketAddr;
use std::time::Duration;

/// Inspect and steer OmniQ queues on any backend.
#[derive(Debug, Parser)]
#[command(
    name = "omniq",
    version,
    about = "Inspect and steer OmniQ queues: counts, tasks, retries, cancels, purges, migrations and a web dashboard",
    after_help = EXIT_CODES_HELP
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The storage: file://DIR, sqlite://PATH, postgres://…, redis://… [default: the
    /// OMNIQ_* settings: OMNIQ_BACKEND, OMNIQ_URL, OMNIQ_BASE_DIR, …]
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) url: Option<String>,

    /// The storage namespace (table or key prefix) the application uses.
    #[arg(long, global = true, default_value = "omniq", value_name = "NAME")]
    pub(crate) namespace: String,

    /// Print machine-readable JSON instead of tables and sentences.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Task counts per queue and status, as a table.
    Stats(StatsArgs),
    /// List tasks, oldest first, one page at a time.
    List(ListArgs),
    /// Show one task: its fields, arguments, error (category, context, traceback) and result.
    Show(ShowArgs),
    /// Run a failed task again (now), or every failed task with --failed.
    Retry(RetryArgs),
    /// Cancel a task (a running one is asked to stop).
    Cancel(CancelArgs),
    /// Delete results, and the finished tasks they belong to, older than a duration.
    Purge(PurgeArgs),
    /// Enqueue a task with JSON arguments (encoded with the storage's serializer).
    Enqueue(EnqueueArgs),
    /// Copy every task and result from one backend to another (resumable, verified).
    Migrate(MigrateArgs),
    /// Serve the web dashboard (and Prometheus metrics at /metrics).
    Dashboard(DashboardArgs),
}

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Only this queue.
    #[arg(long)]
    pub(crate) queue: Option<String>,
    /// Refresh the table until interrupted (Ctrl-C).
    #[arg(long)]
    pub(crate) watch: bool,
    /// Time between refreshes with --watch (e.g. 500ms, 2s, 1m).
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) interval: Duration,
    /// With --watch: stop after this many tables.
    #[arg(long, requires = "watch", value_name = "N")]
    pub(crate) iterations: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only this queue.
    #[arg(long)]
    pub(crate) queue: Option<String>,
    /// Only this status: pending, running, success, failed or cancelled.
    #[arg(long, value_parser = parse_status)]
    pub(crate) status: Option<TaskStatus>,
    /// Page size.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) limit: u32,
    /// Continue after this task id (the previous page's `next` cursor).
    #[arg(long, value_parser = parse_task_id, value_name = "ID")]
    pub(crate) cursor: Option<TaskId>,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The task id.
    #[arg(value_parser = parse_task_id)]
    pub(crate) id: TaskId,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["id", "failed"])))]
pub(crate) struct RetryArgs {
    /// The failed task to run again.
    #[arg(value_parser = parse_task_id)]
    pub(crate) id: Option<TaskId>,
    /// Retry every failed task (of --queue, or of every queue).
    #[arg(long, conflicts_with = "id")]
    pub(crate) failed: bool,
    /// With --failed: only this queue.
    #[arg(long, requires = "failed")]
    pub(crate) queue: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    /// The task id.
    #[arg(value_parser = parse_task_id)]
    pub(crate) id: TaskId,
}

#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    /// Age of what is deleted: results that finished, and finished tasks last changed,
    /// longer ago than this (e.g. 7d, 12h, 30m).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) older_than: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct EnqueueArgs {
    /// The handler name workers dispatch on (e.g. emails.send).
    pub(crate) name: String,
    /// The handler's arguments as JSON (e.g. '[2, 3]' or '{"to": "a@example.com"}').
    #[arg(long, default_value = "null", value_name = "JSON")]
    pub(crate) args: String,
    /// Queue name [default: default].
    #[arg(long)]
    pub(crate) queue: Option<String>,
    /// Run no earlier than this from now (e.g. 10s, 5m, 1h).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) delay: Option<Duration>,
    /// Retries after the first attempt [default: OMNIQ_DEFAULT_MAX_RETRIES or 3].
    #[arg(long, value_name = "N")]
    pub(crate) max_retries: Option<u32>,
    /// Higher runs first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub(crate) priority: i32,
    /// At most one live task per (queue, key): a duplicate returns the live task's id.
    #[arg(long, value_name = "KEY")]
    pub(crate) unique_key: Option<String>,
    /// Per-run timeout (e.g. 30s) [default: OMNIQ_DEFAULT_TIMEOUT or none].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) timeout: Option<Duration>,
}

#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    /// The backend to copy from (file://, sqlite://, postgres://, redis:// URL).
    #[arg(long, value_name = "URL")]
    pub(crate) from: String,
    /// The backend to copy to.
    #[arg(long, value_name = "URL")]
    pub(crate) to: String,
    /// Namespace of the source [default: --namespace].
    #[arg(long, value_name = "NAME")]
    pub(crate) from_namespace: Option<String>,
    /// Namespace of the target [default: --namespace].
    #[arg(long, value_name = "NAME")]
    pub(crate) to_namespace: Option<String>,
    /// Tasks read and written per batch.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) batch: u32,
    /// Do not draw the progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub(crate) no_progress: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DashboardArgs {
    /// Address to listen on. Anything but a loopback address needs OMNIQ_DASHBOARD_TOKEN.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    pub(crate) bind: SocketAddr,
    /// How often queue counts are sampled for the charts (and the page refreshes).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) sample_every: Duration,
    /// How many samples the charts keep.
    #[arg(long, default_value_t = 360, value_parser = clap::value_parser!(u32).range(2..=100_000))]
    pub(crate) history: u32,
}

/// A humantime duration: `500ms`, `10s`, `5m`, `7d`, `1h 30m`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e} (write a duration such as 500ms, 10s, 5m, 12h or 7d)"))?;
    if d.is_zero() {
        return Err("the duration must be longer than zero (e.g. 10s)".into());
    }
    Ok(d)
}

/// A task status name.
pub(crate) fn parse_status(s: &str) -> Result<TaskStatus, String> {
    s.parse()
}

/// A task id (a UUID).
pub(crate) fn parse_task_id(s: &str) -> Result<TaskId, String> {
    s.trim().parse().map_err(|_| {
        format!("{s:?} is not a task id (a UUID such as 0192f0c1-7a4e-7d2b-9c1a-1f2e3d4c5b6a)")
    })
}
