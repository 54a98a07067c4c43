//! The backend's private error type and the one place it becomes a [`StorageError`].
//!
//! Inner functions return [`Result`] and use `?` on object-store and codec errors; each
//! `impl Storage` method converts once, naming its operation
//! (`omniq_core::OperationExt::operation`). The source chain is kept.

use omniq_core::{SerializationError, StorageError, StorageErrorKind, TaskId, TaskStatus};
use std::path::PathBuf;

/// The backend name every error carries.
pub(crate) const BACKEND: &str = "file";

/// `Result` with this crate's [`Error`].
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong inside this backend.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// An object-store error; its kind is read from the variant.
    #[error(transparent)]
    Store(#[from] object_store::Error),
    /// A codec error on a stored record.
    #[error(transparent)]
    Codec(#[from] SerializationError),
    /// A stored key or record that cannot be turned back into the model.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// An invalid builder value, URL, queue or namespace name.
    #[error("{0}")]
    Config(String),
    /// The store cannot give the guarantee claims rely on.
    #[error("{0}")]
    Unsupported(String),
    /// The data directory cannot be created or synced.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
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
    NotFound(TaskId),
    /// A finished task cannot be moved.
    #[error("task {id} is {status}; it cannot be rescheduled")]
    Finished {
        /// The task.
        id: TaskId,
        /// Its final status.
        status: TaskStatus,
    },
    /// Another live task holds the unique key a rescheduled task would take again.
    #[error("task {id} cannot be rescheduled: live task {holder} holds its unique key")]
    KeyHeld {
        /// The task.
        id: TaskId,
        /// The live task holding the key.
        holder: TaskId,
    },
    /// A task with this id already exists.
    #[error("task {0} already exists; enqueue never overwrites a task")]
    Exists(TaskId),
    /// An enqueue batch too slow to commit safely was rolled back.
    #[error(
        "the enqueue batch took longer than {0}s to write and was rolled back (nothing was \
         stored); try again"
    )]
    SlowBatch(u64),
    /// Too many concurrent writers changed one task while this call tried to.
    #[error("task {0} kept changing under this write; try again")]
    Contended(TaskId),
}

/// The kind of an object-store error: missing objects that reach the caller, internal
/// errors and anything unexpected → `Backend`; I/O and transport failures (`Generic`)
/// → `Unavailable`, so the runtime backs off and retries; conditional-write losses →
/// `Conflict`; missing features → `Unsupported`; bad paths and keys → `Config`.
fn store_kind(err: &object_store::Error) -> StorageErrorKind {
    use object_store::Error as E;
    match err {
        E::Generic { .. } => StorageErrorKind::Unavailable,
        E::AlreadyExists { .. } | E::Precondition { .. } => StorageErrorKind::Conflict,
        E::NotSupported { .. } | E::NotImplemented { .. } => StorageErrorKind::Unsupported,
        E::InvalidPath { .. } | E::UnknownConfigurationKey { .. } => StorageErrorKind::Config,
        _ => StorageErrorKind::Backend,
    }
}

impl Error {
    /// The storage error kind this error is reported as.
    pub(crate) fn kind(&self) -> StorageErrorKind {
        match self {
            Self::Store(e) => store_kind(e),
            Self::Codec(_) | Self::Corrupt(_) => StorageErrorKind::Serialization,
            Self::Config(_) => StorageErrorKind::Config,
            Self::Unsupported(_) => StorageErrorKind::Unsupported,
            Self::Io { .. } | Self::Contended(_) | Self::SlowBatch(_) => {
                StorageErrorKind::Unavailable
            }
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
        // Variants that wrap a cause keep it as the source; the others are the cause
        // themselves, fully described by the message.
        match err {
            Error::Store(e) => StorageError::new(kind, BACKEND, message).with_source(e),
            Error::Codec(e) => StorageError::new(kind, BACKEND, message).with_source(e),
            Error::Io { source, .. } => {
                StorageError::new(kind, BACKEND, message).with_source(source)
            }
            _ => StorageError::new(kind, BACKEND, message),
        }
    }
}

/// Shorthand for an [`Error::Config`].
pub(crate) fn config(message: impl Into<String>) -> Error {
    Error::Config(message.into())
}

/// Shorthand for an [`Error::Corrupt`].
pub(crate) fn corrupt(message: impl Into<String>) -> Error {
    Error::Corrupt(message.into())
}

/// True for the store's "no such object" answer.
pub(crate) fn is_not_found(err: &object_store::Error) -> bool {
    matches!(err, object_store::Error::NotFound { .. })
}

/// True for a lost conditional create.
pub(crate) fn is_already_exists(err: &object_store::Error) -> bool {
    matches!(
        err,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(e: object_store::Error) -> StorageErrorKind {
        StorageError::from(Error::from(e)).kind()
    }

    #[test]
    fn transport_errors_are_temporary_and_races_conflicts() {
        let generic = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: "disk gone".into(),
        };
        assert_eq!(kind(generic), StorageErrorKind::Unavailable);
        let exists = object_store::Error::AlreadyExists {
            path: "x".into(),
            source: "exists".into(),
        };
        assert_eq!(kind(exists), StorageErrorKind::Conflict);
        let missing = object_store::Error::NotFound {
            path: "x".into(),
            source: "missing".into(),
        };
        // A NotFound that reaches the caller is a failure, never the contract's NotFound.
        assert_eq!(kind(missing), StorageErrorKind::Backend);
    }

    #[test]
    fn conversion_keeps_the_source_chain() {
        let e = StorageError::from(Error::from(object_store::Error::Generic {
            store: "S3",
            source: "timeout".into(),
        }));
        assert_eq!(e.backend(), "file");
        assert!(std::error::Error::source(&e).is_some());
    }
}
