//! # OmniQ
//!
//! A background task queue with pluggable storage backends. Push work off your request
//! path with [`AsyncTaskQueue`], run it with [`AsyncWorkerPool`] (retries with back-off,
//! timeouts, caught panics, recurring tasks, graceful shutdown), and pick a backend crate
//! for storage. [`AsyncOmniQ`] builds everything from [`Settings`]; [`OmniQ`] and
//! [`WorkerPool`] are the blocking wrappers.
//!
//! ```
//! use omniq::{AsyncOmniQ, HandlerError, Settings};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "multi_thread")]
//! # async fn main() -> omniq::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let settings = Settings { base_dir: dir.path().into(), ..Settings::default() };
//! let omniq = AsyncOmniQ::new(settings).await?;
//!
//! let mut worker = omniq.worker(4)?;
//! worker.register("math.add", |(a, b): (i64, i64)| async move { Ok::<_, HandlerError>(a + b) });
//! worker.start()?;
//!
//! let id = omniq.enqueue("math.add", &(2, 3)).max_retries(2).await?;
//! let result = omniq.wait_result(&id, Duration::from_secs(10)).await?;
//! assert!(result.is_success());
//! worker.stop(Duration::from_secs(5)).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod blocking;
mod omniq;

pub use blocking::OmniQ;
pub use omniq::{AsyncOmniQ, build_storage};
pub use omniq_runtime::{
    AsyncTaskQueue, AsyncWorkerPool, Backend, BoxError, DEFAULT_MAX_PAYLOAD_BYTES, EnqueueBuilder,
    Error, HandlerError, IntoDuration, LEGACY_STORAGE_WARNING, MAX_CONCURRENCY, QueueDefaults,
    Result, Settings, StopReport, TaskCtx, TaskFn, TaskHandler, TaskOutcome, TaskSpec, TaskType,
    TypedEnqueueBuilder, TypedTaskId, WorkerOptions, WorkerPool, WorkerPoolBuilder,
    is_object_store_url, logging, metrics, middleware, task_type,
};

/// Cron schedules: parsing an expression in a time zone and its next slot (feature `cron`,
/// on by default).
#[cfg(feature = "cron")]
pub use omniq_runtime::cron;

/// The task model and the storage handle, as users meet them.
pub use omniq_core::{
    Backoff, CancelOutcome, Capabilities, Clock, CronSchedule, Cursor, DEFAULT_QUEUE, Enqueued,
    ErrorCategory, ErrorType, Format, IntervalError, IntoInterval, ManualClock, Page, Payload,
    QueueCounts, Schedule, SerializationError, Severity, Storage, StorageError, StorageErrorKind,
    SystemClock, Task, TaskError, TaskFilter, TaskId, TaskResult, TaskStatus, Wake, async_trait,
    time,
};

/// Everything of `omniq-core`, including what backend authors implement
/// [`Storage`] with (claims, leases, per-item outcomes) and the migration guide's
/// compatibility helpers (`backend::compat`).
pub use omniq_core as backend;

/// The README's Rust snippets, compiled as doc-tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// The file backend, the embedded default (feature `file`, on by default).
#[cfg(feature = "file")]
pub use omniq_file as file;

/// The SQLite backend (feature `sqlite`).
#[cfg(feature = "sqlite")]
pub use omniq_sqlite as sqlite;

/// The PostgreSQL backend (feature `postgres`).
#[cfg(feature = "postgres")]
pub use omniq_postgres as postgres;

/// The Redis backend, standalone and Cluster (feature `redis`).
#[cfg(feature = "redis")]
pub use omniq_redis as redis;
