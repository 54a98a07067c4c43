//! Assertions for cases: they return a [`CaseError`] naming the failed expectation and
//! the values involved instead of panicking, so the runner can report them.

use omniq_core::StorageError;
use std::fmt;
use std::panic::Location;

/// Why a case failed: the expectation that did not hold, with the values seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseError {
    message: String,
    location: Option<(&'static str, u32)>,
}

impl CaseError {
    /// A failure with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            location: None,
        }
    }

    /// A failure with this message, raised at `file:line` of the suite's source.
    pub fn at(message: impl Into<String>, file: &'static str, line: u32) -> Self {
        Self {
            message: message.into(),
            location: Some((file, line)),
        }
    }

    /// The failed expectation.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some((file, line)) = self.location {
            write!(f, " (at {file}:{line})")?;
        }
        Ok(())
    }
}

impl std::error::Error for CaseError {}

/// Turns a storage call's error into a [`CaseError`] that names the call.
pub(crate) trait Ctx<T> {
    /// `Err(e)` becomes "`what` failed: e".
    fn ctx(self, what: &str) -> Result<T, CaseError>;
}

impl<T> Ctx<T> for Result<T, StorageError> {
    #[track_caller]
    fn ctx(self, what: &str) -> Result<T, CaseError> {
        let loc = Location::caller();
        self.map_err(|e| {
            CaseError::at(
                format!("{what} failed unexpectedly: {e} (kind {})", e.kind()),
                loc.file(),
                loc.line(),
            )
        })
    }
}

/// `ensure!(cond, "format", args…)`: fail the case unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::check::CaseError::at(format!($($arg)+), file!(), line!()));
        }
    };
}

/// `ensure_eq!(actual, expected, "what", args…)`: fail with both values unless equal.
macro_rules! ensure_eq {
    ($actual:expr, $expected:expr, $($arg:tt)+) => {
        match (&$actual, &$expected) {
            (actual, expected) => {
                if actual != expected {
                    return Err($crate::check::CaseError::at(
                        format!(
                            "{}: expected {:?}, got {:?}",
                            format_args!($($arg)+),
                            expected,
                            actual
                        ),
                        file!(),
                        line!(),
                    ));
                }
            }
        }
    };
}

/// `some!(option, "what", args…)`: the value, or fail saying it was missing.
macro_rules! some {
    ($opt:expr, $($arg:tt)+) => {
        match $opt {
            Some(v) => v,
            None => {
                return Err($crate::check::CaseError::at(
                    format!("{}: expected Some(..), got None", format_args!($($arg)+)),
                    file!(),
                    line!(),
                ))
            }
        }
    };
}

/// `ensure_kind!(result, Kind, "what", args…)`: the call must fail with this
/// [`StorageErrorKind`](omniq_core::StorageErrorKind); evaluates to the error.
macro_rules! ensure_kind {
    ($result:expr, $kind:ident, $($arg:tt)+) => {
        match $result {
            Err(e) if e.kind() == omniq_core::StorageErrorKind::$kind => e,
            Err(e) => {
                return Err($crate::check::CaseError::at(
                    format!(
                        "{}: expected a {} error, got kind {}: {}",
                        format_args!($($arg)+),
                        omniq_core::StorageErrorKind::$kind,
                        e.kind(),
                        e
                    ),
                    file!(),
                    line!(),
                ))
            }
            Ok(v) => {
                return Err($crate::check::CaseError::at(
                    format!(
                        "{}: expected a {} error, got Ok({:?})",
                        format_args!($($arg)+),
                        omniq_core::StorageErrorKind::$kind,
                        v
                    ),
                    file!(),
                    line!(),
                ))
            }
        }
    };
}
