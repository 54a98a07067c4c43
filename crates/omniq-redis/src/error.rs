//! The backend's private error type and the one place it becomes a [`StorageError`].
//!
//! Inner functions return [`Result`] and use `?` on fred and codec errors; each
//! `impl Storage` method converts once, naming its operation
//! (`omniq_core::OperationExt::operation`). The source chain is kept.

use fred::error::{Error as FredError, ErrorKind};
use omniq_core::{SerializationError, StorageError, StorageErrorKind, TaskId, TaskStatus};

/// The backend name every error carries.
pub(crate) const BACKEND: &str = "redis";

/// `Result` with this crate's [`Error`].
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong inside this backend.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A driver or server error; its kind is read from fred's error kind and the
    /// server's error prefix.
    #[error("{}", omniq_core::redact_credentials(&.0.to_string()))]
    Redis(#[from] FredError),
    /// A codec error on a stored record.
    #[error(transparent)]
    Codec(#[from] SerializationError),
    /// A stored value or a script reply that cannot be turned back into the model.
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
    /// An enqueued task id that is already stored.
    #[error("task {0} already exists; enqueue never overwrites a task")]
    Exists(String),
    /// Rescheduling would make a second live task hold one unique key.
    #[error(
        "task {id}'s unique key is held by another live task ({holder}); it cannot be rescheduled"
    )]
    KeyHeld {
        /// The task.
        id: TaskId,
        /// The live task holding its key.
        holder: String,
    },
}

/// The kind of a fred error: connection trouble, timeouts, cluster redirections and
/// the server's transient replies (`LOADING`, `BUSY`, `TRYAGAIN`, `CLUSTERDOWN`,
/// `MASTERDOWN`, `OOM`, `READONLY`) are `Unavailable`; bad URLs and credentials are
/// `Config`; the rest (script errors, wrong types) `Backend`.
fn fred_kind(err: &FredError) -> StorageErrorKind {
    let details = err.details();
    let transient = [
        "LOADING",
        "BUSY",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "MASTERDOWN",
        "OOM",
        "READONLY",
        "NOSCRIPT",
    ];
    if transient.iter().any(|p| details.starts_with(p)) {
        return StorageErrorKind::Unavailable;
    }
    match err.kind() {
        ErrorKind::IO
        | ErrorKind::Timeout
        | ErrorKind::Canceled
        | ErrorKind::Backpressure
        | ErrorKind::Cluster
        | ErrorKind::Routing
        | ErrorKind::Protocol => StorageErrorKind::Unavailable,
        ErrorKind::Config | ErrorKind::Url | ErrorKind::Auth => StorageErrorKind::Config,
        ErrorKind::Parse => StorageErrorKind::Serialization,
        _ => StorageErrorKind::Backend,
    }
}

impl Error {
    /// The storage error kind this error is reported as.
    pub(crate) fn kind(&self) -> StorageErrorKind {
        match self {
            Self::Redis(e) => fred_kind(e),
            Self::Codec(_) | Self::Corrupt(_) => StorageErrorKind::Serialization,
            Self::Config(_) => StorageErrorKind::Config,
            Self::Closed => StorageErrorKind::Closed,
            Self::NotFound(_) => StorageErrorKind::NotFound,
            Self::Finished { .. } | Self::Exists(_) | Self::KeyHeld { .. } => {
                StorageErrorKind::Conflict
            }
        }
    }
}

impl From<Error> for StorageError {
    fn from(err: Error) -> Self {
        let kind = err.kind();
        let message = err.to_string();
        match err {
            // fred's messages may quote a URL; the source is redacted through its message.
            Error::Redis(e) => StorageError::new(kind, BACKEND, message)
                .with_source(Redacted(omniq_core::redact_credentials(&e.to_string()))),
            Error::Codec(e) => StorageError::new(kind, BACKEND, message).with_source(e),
            _ => StorageError::new(kind, BACKEND, message),
        }
    }
}

/// A driver error reduced to its redacted text, so a source chain never carries a
/// password either.
#[derive(Debug)]
struct Redacted(String);

impl std::fmt::Display for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Redacted {}

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

    fn kind(e: FredError) -> StorageErrorKind {
        StorageError::from(Error::from(e)).kind()
    }

    #[test]
    fn connection_errors_are_temporary() {
        assert_eq!(
            kind(FredError::new(ErrorKind::IO, "connection refused")),
            StorageErrorKind::Unavailable
        );
        assert_eq!(
            kind(FredError::new(ErrorKind::Timeout, "timed out")),
            StorageErrorKind::Unavailable
        );
        assert_eq!(
            kind(FredError::new(
                ErrorKind::Unknown,
                "LOADING Redis is loading"
            )),
            StorageErrorKind::Unavailable
        );
    }

    #[test]
    fn config_and_script_errors_keep_their_kinds() {
        assert_eq!(
            kind(FredError::new(ErrorKind::Auth, "WRONGPASS")),
            StorageErrorKind::Config
        );
        assert_eq!(
            kind(FredError::new(
                ErrorKind::Unknown,
                "ERR user_script:1: boom"
            )),
            StorageErrorKind::Backend
        );
    }

    #[test]
    fn messages_never_show_a_password() {
        let e = StorageError::from(Error::from(FredError::new(
            ErrorKind::IO,
            "cannot reach redis://app:s3cret@db:6379",
        )));
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert!(source.is_some_and(|s| !s.contains("s3cret")));
    }
}
