//! Installing OmniQ's subscriber: [`configure`], [`configure_from_env`] and the layer
//! behind them (the `logging` feature).

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{Metadata, Subscriber};

use super::format;
use super::{LogConfig, LogGuard, LogLevel, LogMode, LoggingError};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{self, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

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
        self.unfiltered_layer(writer)
            .with_filter(LevelAndContextFilter::new(self.level))
    }

    fn unfiltered_layer<W>(&self, writer: W) -> format::OmniqLayer<W> {
        format::OmniqLayer {
            mode: self.mode,
            ansi: self.mode == LogMode::Dev && self.ansi.unwrap_or(false),
            writer,
        }
    }

    /// A complete subscriber (registry + [`LogConfig::layer`]) that is *not* installed:
    /// use it with `tracing::subscriber::with_default` (tests, scoped capture) or
    /// `set_global_default`.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use omniq_runtime::logging::{LogConfig, LogMode};
    ///
    /// let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
    /// let sink = buffer.clone();
    /// let make_writer = move || SharedVec(sink.clone());
    /// let subscriber = LogConfig::default().with_mode(LogMode::Prod).build_subscriber(make_writer);
    /// tracing::subscriber::with_default(subscriber, || tracing::info!(target: "omniq_runtime::demo", "hello"));
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
        // The level filter is global here (the layer is the subscriber's only one): a
        // disabled callsite is never called again, and entering or leaving a span costs
        // no per-layer filter bookkeeping.
        tracing_subscriber::registry()
            .with(self.unfiltered_layer(writer))
            .with(LevelAndContextFilter::new(self.level))
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

    fn allows(&self, meta: &Metadata<'_>) -> bool {
        if meta.is_span() && meta.target().starts_with("omniq") {
            meta.level() <= &self.spans
        } else {
            meta.level() <= &self.events
        }
    }

    fn interest(&self, meta: &Metadata<'_>) -> tracing::subscriber::Interest {
        if self.allows(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }
}

/// As a per-layer filter: [`LogConfig::layer`].
impl<S> layer::Filter<S> for LevelAndContextFilter {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &layer::Context<'_, S>) -> bool {
        self.allows(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        self.interest(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.spans)
    }
}

/// As a global filter: [`LogConfig::build_subscriber`].
impl<S: Subscriber> Layer<S> for LevelAndContextFilter {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        self.interest(meta)
    }

    fn enabled(&self, meta: &Metadata<'_>, _cx: layer::Context<'_, S>) -> bool {
        self.allows(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.spans)
    }
}
