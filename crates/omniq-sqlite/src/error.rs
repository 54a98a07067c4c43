//! The backend's private error type and the one place it becomes a [`StorageError`].
//!
//! Inner functions return [`Result`] and use `?` on sqlx and codec errors; each
//! `impl Storage` method converts once, naming its operation
//! (`omniq_core::OperationExt::operation`). The source chain is kept.

use omniq_core::{SerializationError, StorageError, StorageErrorKind, TaskId, TaskStatus};
use std::path::PathBuf;

/// The backend name every error carries.
pub(crate) const BACKEND: &str = "sqlite";

/// `Result` with this crate's [`Error`].
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong inside this backend.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A driver error; its kind is read from the SQLite result code.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// A codec error on a stored blob.
    #[error(transparent)]
    Codec(#[from] SerializationError),
    /// A stored value that cannot be turned back into the model (corrupt row).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// An invalid builder value, URL, queue or namespace name.
    #[error("{0}")]
    Config(String),
    /// The database file cannot be opened (bad path, permissions).
    #[error("cannot open SQLite database {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: sqlx::Error,
    },
    /// The database's directory cannot be created.
    #[error("cannot create directory {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `close()` was called.
    #[error("storage is closed; create a new instance to continue")]
    Closed,
    /// No task with this id.
    #[error("task {0} not found")]
    NotFound(String),
    /// A finished task cannot be moved.
    #[error("task {id} is {status}; it cannot be rescheduled")]
    Finished {
        /// The task.
        id: TaskId,
        /// Its final status.
        status: TaskStatus,
    },
    /// An insert that neither stored the task nor found the live duplicate holding its key.
    #[error("task {0} was not inserted and no live task holds its unique key")]
    NotInserted(String),
}

// Primary SQLite result codes (the low byte of an extended code).
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_NOMEM: i64 = 7;
const SQLITE_IOERR: i64 = 10;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;
const SQLITE_PROTOCOL: i64 = 15;

/// The primary SQLite result code of a database error.
pub(crate) fn sqlite_code(err: &sqlx::Error) -> Option<i64> {
    match err {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i64>().ok())
            .map(|c| c & 0xff),
        _ => None,
    }
}

/// True when opening failed because the file cannot be opened (a `Config` problem).
pub(crate) fn is_cant_open(err: &sqlx::Error) -> bool {
    sqlite_code(err) == Some(SQLITE_CANTOPEN)
}

/// The kind of a driver error: pool closed → `Closed`; pool timeout, I/O, crashed
/// worker and transient SQLite codes (`BUSY`, `LOCKED`, `FULL`, …) → `Unavailable`;
/// decode failures → `Serialization`; unique violations → `Conflict`; else `Backend`.
fn sqlx_kind(err: &sqlx::Error) -> StorageErrorKind {
    use sqlx::Error as E;
    match err {
        // The pool is only closed by `close()`: a call that raced it is Closed.
        E::PoolClosed => StorageErrorKind::Closed,
        E::PoolTimedOut | E::Io(_) | E::WorkerCrashed => StorageErrorKind::Unavailable,
        E::Decode(_) | E::ColumnDecode { .. } => StorageErrorKind::Serialization,
        E::Database(db) => match sqlite_code(err) {
            Some(
                SQLITE_BUSY | SQLITE_LOCKED | SQLITE_NOMEM | SQLITE_IOERR | SQLITE_FULL
                | SQLITE_CANTOPEN | SQLITE_PROTOCOL,
            ) => StorageErrorKind::Unavailable,
            _ if db.is_unique_violation() => StorageErrorKind::Conflict,
            _ => StorageErrorKind::Backend,
        },
        _ => StorageErrorKind::Backend,
    }
}

impl Error {
    /// The storage error kind this error is reported as.
    pub(crate) fn kind(&self) -> StorageErrorKind {
        match self {
            Self::Sqlx(e) => sqlx_kind(e),
            Self::Codec(_) | Self::Corrupt(_) => StorageErrorKind::Serialization,
            Self::Config(_) | Self::Open { .. } | Self::CreateDir { .. } => {
                StorageErrorKind::Config
            }
            Self::Closed => StorageErrorKind::Closed,
            Self::NotFound(_) => StorageErrorKind::NotFound,
            Self::Finished { .. } | Self::NotInserted(_) => StorageErrorKind::Conflict,
        }
    }
}

impl From<Error> for StorageError {
    fn from(err: Error) -> Self {
        let kind = err.kind();
        let message = err.to_string();
        // Variants that wrap a cause keep it as the source; the others are the cause
        // themselves, fully described by the message.
        match err {
            Error::Sqlx(e) | Error::Open { source: e, .. } => {
                StorageError::new(kind, BACKEND, message).with_source(e)
            }
            Error::Codec(e) => StorageError::new(kind, BACKEND, message).with_source(e),
            Error::CreateDir { source, .. } => {
                StorageError::new(kind, BACKEND, message).with_source(source)
            }
            _ => StorageError::new(kind, BACKEND, message),
        }
    }
}

/// Shorthand for a [`Error::Config`].
pub(crate) fn config(message: impl Into<String>) -> Error {
    Error::Config(message.into())
}

/// Shorthand for a [`Error::Corrupt`].
pub(crate) fn corrupt(message: impl Into<String>) -> Error {
    Error::Corrupt(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(e: sqlx::Error) -> StorageErrorKind {
        StorageError::from(Error::from(e)).kind()
    }

    #[test]
    fn pool_errors_are_temporary() {
        assert_eq!(
            kind(sqlx::Error::PoolTimedOut),
            StorageErrorKind::Unavailable
        );
        assert_eq!(kind(sqlx::Error::PoolClosed), StorageErrorKind::Closed);
        let io = std::io::Error::other("disk gone");
        assert_eq!(kind(sqlx::Error::Io(io)), StorageErrorKind::Unavailable);
    }

    #[test]
    fn decode_errors_are_serialization_and_others_backend() {
        assert_eq!(
            kind(sqlx::Error::Decode("bad".into())),
            StorageErrorKind::Serialization
        );
        assert_eq!(kind(sqlx::Error::RowNotFound), StorageErrorKind::Backend);
    }

    #[test]
    fn conversion_keeps_the_source_chain() {
        let e = StorageError::from(Error::from(sqlx::Error::PoolTimedOut));
        assert_eq!(e.backend(), "sqlite");
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(source, Some(sqlx::Error::PoolTimedOut.to_string()));
    }
}
