//! # omniq-core
//!
//! The concepts every OmniQ crate shares: the task model ([`Task`], [`TaskStatus`],
//! [`Schedule`], [`TaskError`], [`TaskResult`]), the serializers ([`MsgPackSerializer`],
//! [`JsonSerializer`]), the batch-first [`Storage`] trait with [`StorageError`] and
//! [`Capabilities`], and the pure scheduling rules ([`Backoff`], [`next_interval_slot`]).
//!
//! This crate does no I/O and depends on no backend; backends depend only on it.
//!
//! ```
//! use omniq_core::{IntoInterval, MsgPackSerializer, Payload, Serializer, Task, TaskStatus};
//!
//! let mut task = Task::new("reports.build", Payload(b"[1,2]".to_vec()));
//! task.schedule.interval = Some(3600.into_interval().unwrap());
//! assert_eq!(task.status, TaskStatus::Pending);
//!
//! let bytes = MsgPackSerializer.encode_task(&task).unwrap();
//! assert_eq!(MsgPackSerializer.decode_task(&bytes).unwrap(), task);
//! ```
#![forbid(unsafe_code)]

mod clock;
pub mod compat;
mod error;
pub mod interval;
mod policy;
mod serializer;
mod storage;
mod storage_error;
mod task;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{ErrorCategory, ErrorType, Severity, TaskError};
pub use interval::{IntervalError, IntoInterval};
pub use policy::{Backoff, MAX_BACKOFF, next_interval_slot};
pub use serializer::{Format, JsonSerializer, MsgPackSerializer, SerializationError, Serializer};
pub use storage::{
    CancelOutcome, Capabilities, ClaimRequest, Claimed, Completion, Cursor, Enqueued, FailAction,
    Failure, Lease, LeaseRef, LeaseToken, Outcome, Page, QueueCounts, Storage, StorageExt,
    TaskFilter, Wake, validate_name,
};
pub use storage_error::{OperationExt, StorageError, StorageErrorKind, redact_credentials};
pub use task::{
    CronSchedule, DEFAULT_QUEUE, Payload, Schedule, Task, TaskId, TaskResult, TaskStatus,
    TransitionError,
};

/// Re-exported so a backend depends only on omniq-core (plus its driver) and agrees on
/// one version of what the trait's signatures use: `#[async_trait]`, the `time` types,
/// and tokio's broadcast channel (what [`Storage::subscribe`] returns).
pub use async_trait::async_trait;
pub use time;
/// tokio's broadcast channel, for [`Storage::subscribe`].
pub use tokio::sync::broadcast;
