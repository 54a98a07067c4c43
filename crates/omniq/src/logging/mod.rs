//! Logging for OmniQ, on [`tracing`] (requirements L1–L7).
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
//! 2025-12-01 10:30:45 | INFO     | omniq::worker:123 | Task execution started
//! └── task_id: abc-123 | operation: process_task | worker: worker-1
//! ```
//!
//! PROD (one JSON object per line in the log file; `timestamp` is RFC 3339 UTC with
//! milliseconds; `logger` is the event's target):
//!
//! ```text
//! {"timestamp":"2025-12-01T10:30:45.123Z","level":"INFO","logger":"omniq::worker","message":"Task execution started","task_id":"abc-123","operation":"process_task","worker":"worker-1","correlation_id":"0193…"}
//! ```
//!
//! The fields shown are the event's own and those of every span it is in (inner values
//! override outer ones): `task_id`, `operation`, `worker`, `correlation_id` first, then the
//! rest in the order they were bound. A field named like one of the line's own keys
//! (`timestamp`, `level`, `logger`, `message`) is written as `field_<name>`.
//!
//! In PROD the file is rotated when it passes the rotation size, rotated files are gzipped
//! and deleted once older than the retention ([`RotatingFileWriter`]); all writing happens on
//! a background thread ([`LogConfig::open_writer`]), so keep the [`LogGuard`] alive until
//! the program exits.
//!
//! # Example
//!
//! ```
//! use omniq::logging::{self, LogConfig, bind_task, log_task_started, task_context};
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

mod config;
mod context;
mod error;
mod events;
mod fields;
mod format;
mod writer;

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{Metadata, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::layer::{self, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

pub use config::{
    ENV_LOG_FILE, ENV_LOG_LEVEL, ENV_LOG_MODE, ENV_LOG_RETENTION, ENV_LOG_ROTATION, LogConfig,
    LogLevel, LogMode, parse_retention, parse_size,
};
pub use context::{
    TASK_TARGET, TaskContext, bind_task, task_context, task_context_with_correlation, task_span,
};
pub use error::LoggingError;
pub use events::{
    QUEUE_TARGET, SERIALIZATION_TARGET, STORAGE_TARGET, WORKER_TARGET, log_serialization_error,
    log_storage_error, log_task_completed, log_task_enqueued, log_task_failed, log_task_retry,
    log_task_started, log_worker_started, log_worker_stopped,
};
pub use writer::{LogGuard, ROTATED_SUFFIX_FORMAT, RotatingFileWriter};

/// Field that marks an `ERROR` event as critical: `tracing::error!(critical = true, "...")`
/// is shown with the level `CRITICAL`.
pub const CRITICAL_FIELD: &str = "critical";

/// Set once `configure` has been called successfully (or is in progress).
static CONFIGURED: AtomicBool = AtomicBool::new(false);

/// Installs OmniQ's subscriber as the process-wide default, configured by `config`.
///
/// DEV writes coloured lines to standard error (ANSI when it is a terminal and `NO_COLOR` is
/// unset, unless [`LogConfig::ansi`] says otherwise); PROD writes JSON lines to
/// [`LogConfig::file`], rotated, compressed and pruned. Keep the returned [`LogGuard`] alive
/// until the program exits: dropping it flushes and stops the writer thread.
///
/// # Errors
///
/// [`LoggingError::AlreadyConfigured`] if called a second time or if another global
/// subscriber is installed; [`LoggingError::File`] if the PROD file cannot be opened;
/// [`LoggingError::InvalidValue`] for a zero rotation size or retention.
pub fn configure(config: LogConfig) -> Result<LogGuard, LoggingError> {
    if CONFIGURED.swap(true, Ordering::SeqCst) {
        return Err(LoggingError::AlreadyConfigured);
    }
    let mut config = config;
    if config.ansi.is_none() {
        config.ansi = Some(
            config.mode == LogMode::Dev
                && std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none(),
        );
    }
    let (writer, guard) = match config.open_writer() {
        Ok(opened) => opened,
        Err(error) => {
            // Nothing was installed: let the application fix the setting and try again.
            CONFIGURED.store(false, Ordering::SeqCst);
            return Err(error);
        }
    };
    tracing::subscriber::set_global_default(config.build_subscriber(writer))
        .map_err(|_| LoggingError::AlreadyConfigured)?;
    Ok(guard)
}

/// [`configure`] with [`LogConfig::from_env`].
///
/// # Errors
///
/// As [`LogConfig::from_env`] and [`configure`].
pub fn configure_from_env() -> Result<LogGuard, LoggingError> {
    configure(LogConfig::from_env()?)
}

impl LogConfig {
    /// OmniQ's formatting layer for this configuration, writing to `writer`, with its level
    /// filter attached (a per-layer filter, so other layers are not affected).
    ///
    /// The format follows [`LogConfig::mode`]; ANSI colours are used in DEV mode only when
    /// [`LogConfig::ansi`] is `Some(true)`. Use it to add OmniQ's format to an existing
    /// subscriber, or through [`LogConfig::build_subscriber`].
    pub fn layer<S, W>(&self, writer: W) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        let ansi = self.mode == LogMode::Dev && self.ansi.unwrap_or(false);
        let fmt = tracing_subscriber::fmt::layer()
            .event_format(format::OmniqFormat { mode: self.mode })
            .fmt_fields(NoSpanText)
            .with_ansi(ansi)
            .with_writer(writer);
        fields::SpanFieldsLayer
            .and_then(fmt)
            .with_filter(LevelAndContextFilter::new(self.level))
    }

    /// A complete subscriber (registry + [`LogConfig::layer`]) that is *not* installed:
    /// use it with `tracing::subscriber::with_default` (tests, scoped capture) or
    /// `set_global_default`.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use omniq::logging::{LogConfig, LogMode};
    ///
    /// let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
    /// let sink = buffer.clone();
    /// let make_writer = move || SharedVec(sink.clone());
    /// let subscriber = LogConfig::default().with_mode(LogMode::Prod).build_subscriber(make_writer);
    /// tracing::subscriber::with_default(subscriber, || tracing::info!(target: "omniq::demo", "hello"));
    /// let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
    /// assert!(text.contains(r#""message":"hello""#));
    ///
    /// struct SharedVec(Arc<Mutex<Vec<u8>>>);
    /// impl std::io::Write for SharedVec {
    ///     fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
    ///         self.0.lock().unwrap().extend_from_slice(buf);
    ///         Ok(buf.len())
    ///     }
    ///     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
    /// }
    /// ```
    pub fn build_subscriber<W>(
        &self,
        writer: W,
    ) -> impl Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        tracing_subscriber::registry().with(self.layer(writer))
    }
}

/// Field formatter that skips the fmt layer's own text copy of span fields: the formatters
/// read the structured copy kept by `SpanFieldsLayer` instead.
struct NoSpanText;

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for NoSpanText {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        _writer: Writer<'w>,
        _fields: R,
    ) -> std::fmt::Result {
        Ok(())
    }
}

/// Events at or above the configured level; OmniQ's own spans (target `omniq…`) at INFO and
/// above regardless, so that a WARN or ERROR event still carries its task's fields when the
/// level is WARNING or higher.
struct LevelAndContextFilter {
    events: LevelFilter,
    spans: LevelFilter,
}

impl LevelAndContextFilter {
    fn new(level: LogLevel) -> Self {
        let events = LevelFilter::from_level(level.as_tracing_level());
        LevelAndContextFilter {
            events,
            spans: events.max(LevelFilter::INFO),
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        if meta.is_span() && meta.target().starts_with("omniq") {
            meta.level() <= &self.spans
        } else {
            meta.level() <= &self.events
        }
    }
}

impl<S> layer::Filter<S> for LevelAndContextFilter {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &layer::Context<'_, S>) -> bool {
        LevelAndContextFilter::enabled(self, meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        if LevelAndContextFilter::enabled(self, meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.spans)
    }
}
