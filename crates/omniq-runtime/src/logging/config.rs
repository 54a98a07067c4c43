//! `LogConfig`, its parts, and how they are read from the environment.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tracing::Level;

use super::LoggingError;

/// Environment variable for the level (`DEBUG`, `INFO`, `WARNING`, `ERROR`, `CRITICAL`).
pub const ENV_LOG_LEVEL: &str = "OMNIQ_LOG_LEVEL";
/// Environment variable for the output mode (`DEV`, `PROD`).
pub const ENV_LOG_MODE: &str = "OMNIQ_LOG_MODE";
/// Environment variable for the PROD log file path.
pub const ENV_LOG_FILE: &str = "OMNIQ_LOG_FILE";
/// Environment variable for the rotation size (`"100 MB"`).
pub const ENV_LOG_ROTATION: &str = "OMNIQ_LOG_ROTATION";
/// Environment variable for the retention of rotated files (`"30 days"`).
pub const ENV_LOG_RETENTION: &str = "OMNIQ_LOG_RETENTION";

const LEVEL_EXPECTED: &str = "one of DEBUG, INFO, WARNING, ERROR, CRITICAL";
const MODE_EXPECTED: &str = "one of DEV, PROD";
const SIZE_EXPECTED: &str = "a size such as \"500 KB\", \"10 MB\", \"1 GB\" (or KiB/MiB/GiB), or a number of bytes, above 0";
const RETENTION_EXPECTED: &str = "a duration such as \"12 hours\", \"7 days\", \"1 week\", \"2 weeks\" \
     (units: seconds, minutes, hours, days, weeks, months), above 0";

/// The minimum level of events that are written, named as the migration guide names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LogLevel {
    /// `DEBUG`: everything but `TRACE`.
    Debug,
    /// `INFO` (the default).
    #[default]
    Info,
    /// `WARNING` (tracing's `WARN`).
    Warning,
    /// `ERROR`.
    Error,
    /// `CRITICAL`: tracing has no such level, so this filters at `ERROR`; the configuration keeps
    /// the distinction, and events marked with the [`CRITICAL_FIELD`](super::CRITICAL_FIELD)
    /// field are shown as `CRITICAL`.
    Critical,
}

impl LogLevel {
    /// The tracing level this filters at (`Critical` maps to `ERROR`).
    pub fn as_tracing_level(self) -> Level {
        match self {
            LogLevel::Debug => Level::DEBUG,
            LogLevel::Info => Level::INFO,
            LogLevel::Warning => Level::WARN,
            LogLevel::Error | LogLevel::Critical => Level::ERROR,
        }
    }

    /// The guide's name for this level (`WARNING`, `CRITICAL`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warning => "WARNING",
            LogLevel::Error => "ERROR",
            LogLevel::Critical => "CRITICAL",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogLevel {
    type Err = LoggingError;

    /// Case-insensitive; `WARN` is accepted as an alias of `WARNING`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_level(s, ENV_LOG_LEVEL)
    }
}

fn parse_level(s: &str, setting: &'static str) -> Result<LogLevel, LoggingError> {
    match s.trim().to_ascii_uppercase().as_str() {
        "DEBUG" => Ok(LogLevel::Debug),
        "INFO" => Ok(LogLevel::Info),
        "WARNING" | "WARN" => Ok(LogLevel::Warning),
        "ERROR" => Ok(LogLevel::Error),
        "CRITICAL" => Ok(LogLevel::Critical),
        _ => Err(invalid(setting, s, LEVEL_EXPECTED)),
    }
}

/// Where and how log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LogMode {
    /// Coloured human-readable lines on standard error (the default).
    #[default]
    Dev,
    /// JSON lines in a size-rotated, gzip-compressed file.
    Prod,
}

impl fmt::Display for LogMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogMode::Dev => "DEV",
            LogMode::Prod => "PROD",
        })
    }
}

impl FromStr for LogMode {
    type Err = LoggingError;

    /// Case-insensitive `DEV` or `PROD`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "DEV" => Ok(LogMode::Dev),
            "PROD" => Ok(LogMode::Prod),
            _ => Err(invalid(ENV_LOG_MODE, s, MODE_EXPECTED)),
        }
    }
}

fn invalid(setting: &'static str, value: &str, expected: &'static str) -> LoggingError {
    LoggingError::InvalidValue {
        setting,
        value: value.to_owned(),
        expected,
    }
}

/// Parses a size such as `"100 MB"`, `"1 GB"`, `"500 KB"`, `"64 KiB"` or `"1048576"` (bytes).
///
/// `KB`/`MB`/`GB`/`TB` are powers of 1000 and `KiB`/`MiB`/`GiB`/`TiB` powers of 1024, as in
/// the guide's Loguru-style strings; units are case-insensitive and the number may have a
/// fraction (`"1.5 GB"`). Zero is rejected.
pub fn parse_size(s: &str) -> Result<u64, LoggingError> {
    parse_size_for(s, ENV_LOG_ROTATION)
}

fn parse_size_for(s: &str, setting: &'static str) -> Result<u64, LoggingError> {
    let err = || invalid(setting, s, SIZE_EXPECTED);
    let (number, unit) = split_number(s).ok_or_else(err)?;
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" | "byte" | "bytes" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "tb" | "t" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(err()),
    };
    let bytes = number * multiplier as f64;
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(err());
    }
    Ok(bytes as u64)
}

/// Parses a retention period such as `"30 days"`, `"1 week"`, `"12 hours"` or `"2 weeks"`.
///
/// Units (singular, plural or abbreviated): seconds (`s`, `sec`), minutes (`min`), hours (`h`),
/// days (`d`), weeks (`w`), months (30 days). Zero is rejected.
pub fn parse_retention(s: &str) -> Result<Duration, LoggingError> {
    parse_retention_for(s, ENV_LOG_RETENTION)
}

fn parse_retention_for(s: &str, setting: &'static str) -> Result<Duration, LoggingError> {
    let err = || invalid(setting, s, RETENTION_EXPECTED);
    let (number, unit) = split_number(s).ok_or_else(err)?;
    let seconds: f64 = match unit.to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600.0,
        "d" | "day" | "days" => 86_400.0,
        "w" | "week" | "weeks" => 604_800.0,
        "month" | "months" => 30.0 * 86_400.0,
        _ => return Err(err()),
    };
    Duration::try_from_secs_f64(number * seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(err)
}

/// Splits `"10 MB"` / `"10MB"` into `(10.0, "MB")`; `None` if there is no leading number.
fn split_number(s: &str) -> Option<(f64, &str)> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let number: f64 = s[..end].parse().ok()?;
    Some((number, s[end..].trim()))
}

/// Everything `configure` needs: level, mode, and the PROD file's rotation policy.
///
/// `LogConfig::default()` is the guide's defaults: `INFO`, `DEV`, `logs/omniq.log`,
/// rotation at 100 MB, 30 days retention, gzip on. Fields are public; the `with_*` methods
/// chain.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogConfig {
    /// Minimum level written.
    pub level: LogLevel,
    /// DEV (console) or PROD (JSON file).
    pub mode: LogMode,
    /// The PROD log file; rotated files sit beside it as `<file>.<timestamp>[.N][.gz]`.
    pub file: PathBuf,
    /// Rotate the PROD file once it holds more than this many bytes (whole lines are kept).
    pub rotation_bytes: u64,
    /// Delete rotated files whose rotation timestamp is older than this.
    pub retention: Duration,
    /// Gzip rotated files.
    pub compression: bool,
    /// ANSI colours in DEV mode: `None` = when standard error is a terminal and `NO_COLOR` is
    /// unset (for `configure`), off for a writer passed to [`LogConfig::layer`].
    pub ansi: Option<bool>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: LogLevel::Info,
            mode: LogMode::Dev,
            file: PathBuf::from("logs/omniq.log"),
            rotation_bytes: 100_000_000,
            retention: Duration::from_secs(30 * 86_400),
            compression: true,
            ansi: None,
        }
    }
}

impl LogConfig {
    /// Reads the `OMNIQ_LOG_*` environment variables; unset or empty ones take their defaults.
    ///
    /// # Errors
    ///
    /// [`LoggingError::InvalidValue`] naming the variable, its value and the valid values.
    pub fn from_env() -> Result<Self, LoggingError> {
        Self::from_env_with(|name| std::env::var_os(name))
    }

    /// Like [`LogConfig::from_env`], reading variables through `lookup` (for tests and for
    /// settings loaded from elsewhere).
    ///
    /// # Errors
    ///
    /// [`LoggingError::InvalidValue`] naming the variable, its value and the valid values.
    pub fn from_env_with<F>(mut lookup: F) -> Result<Self, LoggingError>
    where
        F: FnMut(&str) -> Option<OsString>,
    {
        let mut config = LogConfig::default();
        let mut get = |name: &'static str| -> Option<OsString> {
            lookup(name).filter(|v| !v.to_string_lossy().trim().is_empty())
        };
        let text = |name: &'static str, value: OsString, expected: &'static str| {
            value
                .into_string()
                .map_err(|raw| invalid(name, &raw.to_string_lossy(), expected))
        };

        if let Some(v) = get(ENV_LOG_LEVEL) {
            config.level = parse_level(&text(ENV_LOG_LEVEL, v, LEVEL_EXPECTED)?, ENV_LOG_LEVEL)?;
        }
        if let Some(v) = get(ENV_LOG_MODE) {
            config.mode = text(ENV_LOG_MODE, v, MODE_EXPECTED)?.parse()?;
        }
        if let Some(v) = get(ENV_LOG_FILE) {
            config.file = PathBuf::from(v);
        }
        if let Some(v) = get(ENV_LOG_ROTATION) {
            let v = text(ENV_LOG_ROTATION, v, SIZE_EXPECTED)?;
            config.rotation_bytes = parse_size_for(&v, ENV_LOG_ROTATION)?;
        }
        if let Some(v) = get(ENV_LOG_RETENTION) {
            let v = text(ENV_LOG_RETENTION, v, RETENTION_EXPECTED)?;
            config.retention = parse_retention_for(&v, ENV_LOG_RETENTION)?;
        }
        Ok(config)
    }

    /// Sets the level.
    pub fn with_level(mut self, level: LogLevel) -> Self {
        self.level = level;
        self
    }

    /// Sets the mode.
    pub fn with_mode(mut self, mode: LogMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the PROD log file.
    pub fn with_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = file.into();
        self
    }

    /// Sets the rotation size in bytes (see [`parse_size`] for strings).
    pub fn with_rotation_bytes(mut self, bytes: u64) -> Self {
        self.rotation_bytes = bytes;
        self
    }

    /// Sets the retention of rotated files (see [`parse_retention`] for strings).
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Turns gzip of rotated files on or off.
    pub fn with_compression(mut self, compression: bool) -> Self {
        self.compression = compression;
        self
    }

    /// Forces ANSI colours on or off (`None` = detect).
    pub fn with_ansi(mut self, ansi: Option<bool>) -> Self {
        self.ansi = ansi;
        self
    }

    /// Checks the values a struct literal or a `with_*` call could have set out of range.
    pub(crate) fn validate(&self) -> Result<(), LoggingError> {
        if self.rotation_bytes == 0 || usize::try_from(self.rotation_bytes).is_err() {
            return Err(invalid(
                "rotation_bytes",
                &self.rotation_bytes.to_string(),
                SIZE_EXPECTED,
            ));
        }
        if self.retention.is_zero() {
            return Err(invalid(
                "retention",
                &format!("{:?}", self.retention),
                RETENTION_EXPECTED,
            ));
        }
        if self.mode == LogMode::Prod && self.file.file_name().is_none() {
            return Err(invalid(
                ENV_LOG_FILE,
                &self.file.to_string_lossy(),
                "a file path such as logs/omniq.log",
            ));
        }
        Ok(())
    }
}
