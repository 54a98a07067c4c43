//! Logging for OmniQ, on [`tracing`].
//!
//! The event helpers and task spans are always there; installing a subscriber
//! ([`configure`], the formats, the rotating file writer) needs the `logging` cargo
//! feature, on by default.
//!
//! The library only *emits* tracing events and spans; nothing is installed globally unless
//! the application calls [`configure`] (or [`configure_from_env`]) once, early in `main`.
//! Applications that already have a tracing subscriber keep it and, if they want OmniQ's
//! formats, add [`LogConfig::layer`] to it.
//!
//! There is no `get_logger()`: the tracing macros (`tracing::info!`, `warn!`, …) are the
//! logger, and spans ([`task_context`], [`bind_task`]) take the place of bound loggers.
//!
//! # Configuration (`OMNIQ_LOG_*`)
//!
//! | Variable | Default | Valid values |
//! |---|---|---|
//! | `OMNIQ_LOG_LEVEL` | `INFO` | `DEBUG`, `INFO`, `WARNING`, `ERROR`, `CRITICAL` (case-insensitive) |
//! | `OMNIQ_LOG_MODE` | `DEV` | `DEV` (coloured console), `PROD` (JSON file) |
//! | `OMNIQ_LOG_FILE` | `logs/omniq.log` | a file path (PROD) |
//! | `OMNIQ_LOG_ROTATION` | `100 MB` | `500 KB`, `10 MB`, `1 GB`, `64 MiB`, a number of bytes |
//! | `OMNIQ_LOG_RETENTION` | `30 days` | `12 hours`, `7 days`, `1 week`, `2 weeks` |
//!
//! An invalid value is a [`LoggingError::InvalidValue`] naming the variable, the value and the
//! valid values. `CRITICAL` filters at tracing's `ERROR`; an error event with a
//! `critical = true` field ([`CRITICAL_FIELD`]) is shown with the level `CRITICAL`.
//!
//! # Output
//!
//! DEV (standard error, coloured when it is a terminal):
//!
//! ```text
//! 2025-12-01 10:30:45 | INFO     | omniq_runtime::worker:123 | Task execution started
//! └── task_id: abc-123 | operation: process_task | worker: worker-1
//! ```
//!
//! PROD (one JSON object per line in the log file; `timestamp` is RFC 3339 UTC with
//! milliseconds; `logger` is the event's target):
//!
//! ```text
//! {"timestamp":"2025-12-01T10:30:45.123Z","level":"INFO","logger":"omniq_runtime::worker","message":"Task execution started","task_id":"abc-123","operation":"process_task","worker":"worker-1","correlation_id":"0193…"}
//! ```
//!
//! The fields shown are the event's own and those of every span it is in (inner values
//! override outer ones): `task_id`, `operation`, `worker`, `correlation_id` first, then the
//! rest in the order they were bound. A field named like one of the line's own keys
//! (`timestamp`, `level`, `logger`, `message`) is written as `field_<name>`.
//!
//! In PROD the file is rotated when it passes the rotation size, rotated files are gzipped
//! and deleted once older than the retention ([`RotatingFileWriter`]); all writing happens on
//! a background thread, in batches ([`LogWriter`]), so keep the [`LogGuard`] alive until
//! the program exits: dropping it writes every queued line.
//!
//! # Example
//!
//! ```
//! use omniq_runtime::logging::{self, LogConfig, bind_task, log_task_started, task_context};
//! use tracing::Instrument as _;
//!
//! # fn main() -> Result<(), logging::LoggingError> {
//! // In main: configure once (here DEV defaults; usually `configure_from_env()`), keep the guard.
//! let _guard = logging::configure(LogConfig::default().with_ansi(Some(false)))?;
//!
//! // A worker-wide binding; its fields appear on every event inside it.
//! let worker = bind_task(None, &[("worker", &"worker-1")]);
//! let _entered = worker.enter();
//!
//! // One task run: logs "Task process started", then completion with duration_ms.
//! let ctx = task_context("task-123", "process");
//! ctx.in_scope(|| {
//!     log_task_started("task-123", 1);
//!     tracing::info!(records = 10, "Processing data");
//! });
//! ctx.finish();
//!
//! // Across .await: `ctx.run(future)` or `future.instrument(ctx.span().clone())`.
//! let ctx = task_context("task-124", "process");
//! let _pending = async { Ok::<_, std::io::Error>(()) }.instrument(ctx.span().clone());
//! # Ok(())
//! # }
//! ```

mod bound;
#[cfg(feature = "logging")]
mod config;
mod context;
#[cfg(feature = "logging")]
mod error;
mod events;
#[cfg(feature = "logging")]
mod fields;
#[cfg(feature = "logging")]
mod format;
#[cfg(feature = "logging")]
mod install;
#[cfg(feature = "logging")]
mod writer;

#[cfg(feature = "logging")]
pub use config::{
    ENV_LOG_FILE, ENV_LOG_LEVEL, ENV_LOG_MODE, ENV_LOG_RETENTION, ENV_LOG_ROTATION, LogConfig,
    LogLevel, LogMode, parse_retention, parse_size,
};
pub(crate) use context::duration_ms;
pub use context::{
    TASK_TARGET, TaskContext, bind_task, task_context, task_context_with_correlation, task_span,
};
#[cfg(feature = "logging")]
pub use error::LoggingError;
pub use events::{
    QUEUE_TARGET, SERIALIZATION_TARGET, STORAGE_TARGET, WORKER_TARGET, log_serialization_error,
    log_storage_error, log_task_completed, log_task_enqueued, log_task_failed, log_task_retry,
    log_task_started, log_worker_started, log_worker_stopped,
};
#[cfg(feature = "logging")]
pub use install::{CRITICAL_FIELD, configure, configure_from_env};
#[cfg(feature = "logging")]
pub use writer::{
    LOG_FLUSH_INTERVAL, LOG_QUEUE_BYTES, LogGuard, LogWriter, ROTATED_SUFFIX_FORMAT,
    RotatingFileWriter,
};

/// Waits until every open [`LogWriter`] has written and flushed what is queued, on a
/// blocking thread, until `deadline` at the latest. The worker pool calls it at the end
/// of `stop`, so the lines of a stopped pool are in their files.
pub(crate) async fn flush_writers(deadline: tokio::time::Instant) {
    #[cfg(feature = "logging")]
    if writer::any_open() {
        let limit = deadline.saturating_duration_since(tokio::time::Instant::now());
        let _ = tokio::task::spawn_blocking(move || writer::flush_all(limit)).await;
    }
    #[cfg(not(feature = "logging"))]
    let _ = deadline;
}
