//! The one error type of `omniq_runtime::logging`.

use std::io;
use std::path::PathBuf;

/// Why logging could not be configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoggingError {
    /// A setting (usually an `OMNIQ_LOG_*` environment variable) has a value that cannot be used.
    #[error("invalid value {value:?} for {setting}: expected {expected}")]
    InvalidValue {
        /// The setting: the environment variable name (`OMNIQ_LOG_MODE`) when the value came
        /// from the environment.
        setting: &'static str,
        /// The value as it was given.
        value: String,
        /// The valid values, in words (`one of DEV, PROD`).
        expected: &'static str,
    },
    /// A global subscriber is already installed: `configure` may succeed once per process.
    #[error(
        "logging is already configured: a global tracing subscriber is installed \
         (omniq::logging::configure succeeds once per process)"
    )]
    AlreadyConfigured,
    /// The log file (or its directory) could not be created or opened.
    #[error("cannot open log file {}: {source}", path.display())]
    File {
        /// The log file path.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
}
