//! The one place this backend's failures become [`StorageError`] kinds.
//!
//! Inner functions return `Result<_, Error>` and use plain `?`; each `impl Storage`
//! method converts and names its operation with [`omniq_core::OperationExt`].

use omniq_core::{StorageError, StorageErrorKind, TaskId, TaskStatus};

use crate::BACKEND;

/// Everything that can go wrong inside the in-memory backend.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// `close()` was called on this instance.
    #[error("storage is closed")]
    Closed,
    /// The [`MemoryServer`](crate::MemoryServer) was stopped: the in-memory analogue of
    /// a database server that went away.
    #[error("the memory server was stopped")]
    ServerStopped,
    /// A thread panicked while it held the namespace's lock, so its state may be torn.
    #[error("the namespace's lock is poisoned (a thread panicked while holding it)")]
    Poisoned,
    /// A queue or namespace name that fails `validate_name`.
    #[error("{0}")]
    InvalidName(String),
    /// `enqueue` of an id that is already stored.
    #[error("task {0} already exists")]
    IdExists(TaskId),
    /// No task with this id.
    #[error("task {0} not found")]
    NotFound(TaskId),
    /// A Failed task cannot come back: another live task holds its unique key now.
    #[error("task {id} cannot be rescheduled: task {holder} holds its unique key {key:?}")]
    KeyHeld {
        /// The task.
        id: TaskId,
        /// Its unique key.
        key: String,
        /// The live task holding the key.
        holder: TaskId,
    },
    /// The operation is not allowed in the task's current status.
    #[error("task {id} is {status}; it cannot be rescheduled")]
    Finished {
        /// The task.
        id: TaskId,
        /// Its (terminal) status.
        status: TaskStatus,
    },
}

impl From<Error> for StorageError {
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::Closed => return StorageError::closed(BACKEND),
            Error::ServerStopped => StorageErrorKind::Unavailable,
            Error::Poisoned => StorageErrorKind::Backend,
            Error::InvalidName(_) => StorageErrorKind::Config,
            Error::IdExists(_) | Error::Finished { .. } | Error::KeyHeld { .. } => {
                StorageErrorKind::Conflict
            }
            Error::NotFound(_) => StorageErrorKind::NotFound,
        };
        StorageError::new(kind, BACKEND, e.to_string())
    }
}
