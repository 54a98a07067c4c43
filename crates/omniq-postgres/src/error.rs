//! The backend's private error type and the one place it becomes a [`StorageError`].
//!
//! Inner functions return [`Result`] and use `?` on sqlx and codec errors; each
//! `impl Storage` method converts once, naming its operation
//! (`omniq_core::OperationExt::operation`). The source chain is kept; no message ever
//! carries a password (the connection target is printed from its parts, and every
//! message goes through `omniq_core::redact_credentials`).

use omniq_core::{SerializationError, StorageError, StorageErrorKind, TaskId, TaskStatus};

/// The backend name every error carries.
pub(crate) const BACKEND: &str = "postgres";

/// `Result` with this crate's [`Error`].
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong inside this backend.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A driver error; its kind is read from the SQLSTATE or the error variant.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// Connecting to the server failed; `target` names host, port, database and user.
    #[error("cannot connect to PostgreSQL at {target}: {source}")]
    Connect {
        /// `host:port/database as user` (never the password).
        target: String,
        /// Why.
        source: sqlx::Error,
    },
    /// A codec error on a stored blob.
    #[error(transparent)]
    Codec(#[from] SerializationError),
    /// A stored value that cannot be turned back into the model (corrupt row).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// An invalid builder value, URL, queue or namespace name.
    #[error("{0}")]
    Config(String),
    /// `close()` was called.
    #[error("storage is closed; create a new instance to continue")]
    Closed,
    /// No task with this id.
    #[error("task {0} not found")]
    NotFound(TaskId),
    /// A finished task cannot be moved.
    #[error("task {id} is {status}; it cannot be rescheduled")]
    Finished {
        /// The task.
        id: TaskId,
        /// Its final status.
        status: TaskStatus,
    },
    /// The server answered something the statement cannot produce.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    /// An insert that neither stored the task nor found the live duplicate holding its key.
    #[error("task {0} was not inserted and no live task holds its unique key")]
    NotInserted(TaskId),
}

/// The kind of a SQLSTATE: connection loss, shutdown, overload, lock and serialization
/// conflicts are `Unavailable` (retrying may help); a unique violation is `Conflict`;
/// bad credentials or a missing database are `Config`; text that PostgreSQL cannot store
/// (a NUL byte) is `Serialization`; everything else — a dropped schema included — is
/// `Backend`.
fn sqlstate_kind(code: &str) -> StorageErrorKind {
    match code {
        // unique_violation
        "23505" => StorageErrorKind::Conflict,
        // serialization_failure, deadlock_detected, lock_not_available, query_canceled
        // (statement timeout), admin/crash shutdown, cannot_connect_now,
        // idle_session_timeout
        "40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P02" | "57P03" | "57P05" => {
            StorageErrorKind::Unavailable
        }
        // invalid_password, invalid_authorization_specification, invalid_catalog_name
        // (no such database)
        "28P01" | "28000" | "3D000" => StorageErrorKind::Config,
        // character_not_in_repertoire (NUL in text), untranslatable_character
        "22021" | "22P05" => StorageErrorKind::Serialization,
        // connection_exception (08…), insufficient_resources (53…: too many connections,
        // disk full, out of memory), operator_intervention (57…), system_error (58…)
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("58") => {
            StorageErrorKind::Unavailable
        }
        _ => StorageErrorKind::Backend,
    }
}

/// The kind of a driver error.
fn sqlx_kind(err: &sqlx::Error) -> StorageErrorKind {
    use sqlx::Error as E;
    match err {
        // The pools are only closed by `close()`: a call that raced it is Closed.
        E::PoolClosed => StorageErrorKind::Closed,
        E::PoolTimedOut | E::Io(_) | E::WorkerCrashed | E::Protocol(_) => {
            StorageErrorKind::Unavailable
        }
        E::Configuration(_) | E::Tls(_) => StorageErrorKind::Config,
        E::Decode(_) | E::ColumnDecode { .. } => StorageErrorKind::Serialization,
        E::Database(db) => db
            .code()
            .map(|c| sqlstate_kind(&c))
            .unwrap_or(StorageErrorKind::Backend),
        _ => StorageErrorKind::Backend,
    }
}

impl Error {
    /// The storage error kind this error is reported as.
    pub(crate) fn kind(&self) -> StorageErrorKind {
        match self {
            Self::Sqlx(e) | Self::Connect { source: e, .. } => sqlx_kind(e),
            Self::Codec(_) | Self::Corrupt(_) => StorageErrorKind::Serialization,
            Self::Config(_) => StorageErrorKind::Config,
            Self::Closed => StorageErrorKind::Closed,
            Self::Unexpected(_) => StorageErrorKind::Backend,
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
            Error::Sqlx(e) | Error::Connect { source: e, .. } => {
                StorageError::new(kind, BACKEND, message).with_source(e)
            }
            Error::Codec(e) => StorageError::new(kind, BACKEND, message).with_source(e),
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
    fn pool_and_io_errors_are_temporary() {
        assert_eq!(
            kind(sqlx::Error::PoolTimedOut),
            StorageErrorKind::Unavailable
        );
        assert_eq!(kind(sqlx::Error::PoolClosed), StorageErrorKind::Closed);
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(kind(sqlx::Error::Io(io)), StorageErrorKind::Unavailable);
    }

    #[test]
    fn sqlstates_map_to_kinds() {
        for (code, want) in [
            ("23505", StorageErrorKind::Conflict),
            ("40001", StorageErrorKind::Unavailable),
            ("40P01", StorageErrorKind::Unavailable),
            ("57P01", StorageErrorKind::Unavailable),
            ("08006", StorageErrorKind::Unavailable),
            ("53300", StorageErrorKind::Unavailable),
            ("28P01", StorageErrorKind::Config),
            ("3D000", StorageErrorKind::Config),
            ("22021", StorageErrorKind::Serialization),
            // A dropped schema or table is a backend failure, never NotFound.
            ("3F000", StorageErrorKind::Backend),
            ("42P01", StorageErrorKind::Backend),
        ] {
            assert_eq!(sqlstate_kind(code), want, "SQLSTATE {code}");
        }
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
    fn connect_errors_name_the_target_and_keep_the_source() {
        let e = StorageError::from(Error::Connect {
            target: "db.example:5432/app as app".into(),
            source: sqlx::Error::PoolTimedOut,
        });
        assert_eq!(e.kind(), StorageErrorKind::Unavailable);
        assert!(e.message().contains("db.example:5432/app"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }
}
