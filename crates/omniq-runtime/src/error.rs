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

impl Error {
    /// True when the task (or result) asked about does not exist — from any call.
    ///
    /// ```
    /// # async fn demo(queue: &omniq_runtime::AsyncTaskQueue) -> omniq_runtime::Result<()> {
    /// match queue.cancel(&omniq_core::TaskId::new()).await {
    ///     Err(e) if e.is_not_found() => println!("no such task"),
    ///     other => { other?; }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::Storage(e) => e.is_not_found(),
            Self::PartiallyEnqueued { source, .. } => source.is_not_found(),
            _ => false,
        }
    }

    /// True when retrying the call later may succeed (the storage was unavailable).
    pub fn is_temporary(&self) -> bool {
        match self {
            Self::Storage(e) => e.is_temporary(),
            _ => false,
        }
    }
}

/// `Result<T, omniq_runtime::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
