//! The runtime's error type.

use omniq_core::{IntervalError, SerializationError, StorageError, TaskId};

/// Everything the runtime API can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The storage backend failed; see [`StorageError::kind`].
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Arguments or results could not be encoded/decoded.
    #[error(transparent)]
    Serialization(#[from] SerializationError),
    /// An interval was zero or negative.
    #[error(transparent)]
    Interval(#[from] IntervalError),
    /// Invalid configuration: the message names the setting and the valid values.
    #[error("configuration error: {0}")]
    Config(String),
    /// No task with this id.
    #[error("task {0} not found")]
    NotFound(TaskId),
    /// Waiting for a result timed out.
    #[error("timed out waiting for task {0}")]
    Timeout(TaskId),
    /// A multi-batch enqueue failed part-way: `enqueued` lists the tasks of the batches
    /// that were stored before `source` stopped it (retrying the rest will not duplicate
    /// them).
    #[error("enqueue stopped after {} task(s) were stored: {source}", enqueued.len())]
    PartiallyEnqueued {
        /// Outcomes of the batches stored before the failure, in input order.
        enqueued: Vec<omniq_core::Enqueued>,
        /// Why the next batch failed.
        source: Box<Error>,
    },
    /// The worker pool is not in a state that allows this call.
    #[error("worker pool: {0}")]
    Worker(String),
}

/// `Result<T, omniq::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
