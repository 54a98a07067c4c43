//! What a command can fail with, and the exit code each failure maps to.

use omniq::{StorageError, StorageErrorKind};
use std::fmt;

/// The process exit codes of `omniq`, one per kind of outcome (see `docs/cli.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Exit {
    /// 0: the command did what was asked.
    Ok,
    /// 1: the storage (or something else) failed for a reason not listed below.
    Failure,
    /// 2: the command line is wrong: an unknown flag, a missing argument, a bad value.
    Usage,
    /// 3: the configuration is wrong: a URL, an `OMNIQ_*` variable, a dashboard bind
    /// without a token.
    Config,
    /// 4: the task does not exist.
    NotFound,
    /// 5: the task's status does not allow the change (retrying a task that succeeded,
    /// cancelling a finished one).
    Conflict,
    /// 6: the backend is unreachable or busy; trying again later may work.
    Unavailable,
    /// 7: `migrate` finished but the target does not hold what the source holds.
    Verification,
}

impl Exit {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Failure => 1,
            Self::Usage => 2,
            Self::Config => 3,
            Self::NotFound => 4,
            Self::Conflict => 5,
            Self::Unavailable => 6,
            Self::Verification => 7,
        }
    }

    /// The exit code a storage error of this kind maps to.
    pub fn of_storage(kind: StorageErrorKind) -> Self {
        match kind {
            StorageErrorKind::NotFound => Self::NotFound,
            StorageErrorKind::Conflict => Self::Conflict,
            StorageErrorKind::Unavailable => Self::Unavailable,
            StorageErrorKind::Config => Self::Config,
            _ => Self::Failure,
        }
    }
}

/// The table of exit codes, as `omniq --help` prints it.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  the storage failed (or another error not listed here)
  2  usage: unknown flag, missing argument, invalid value
  3  configuration: bad --url, OMNIQ_* variable or dashboard settings
  4  the task does not exist
  5  the task's status does not allow this (retry a task that succeeded, cancel a finished one)
  6  the backend is unreachable or busy (try again later)
  7  migrate: the target does not match the source after copying";

/// A failed command: the exit code and the message printed to stderr.
#[derive(Debug)]
pub struct CliError {
    /// What kind of failure, as the process exit code.
    pub exit: Exit,
    /// One or more lines for the operator.
    pub message: String,
}

impl CliError {
    /// A failure of kind `exit`.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }

    /// A configuration error (exit 3).
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(Exit::Config, message)
    }

    /// A storage error, described with what was being done.
    pub fn storage(doing: &str, e: &StorageError) -> Self {
        Self::new(Exit::of_storage(e.kind()), format!("{doing}: {e}"))
    }

    /// A runtime error (from the queue or the facade), described with what was being done.
    pub fn runtime(doing: &str, e: &omniq::Error) -> Self {
        let exit = match e {
            omniq::Error::Storage(s) => Exit::of_storage(s.kind()),
            omniq::Error::Config(_) | omniq::Error::Interval(_) => Exit::Config,
            _ => Exit::Failure,
        };
        Self::new(exit, format!("{doing}: {e}"))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// `Result<T, CliError>`.
pub type CliResult<T> = Result<T, CliError>;
