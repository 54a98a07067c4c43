//! # omniq-runtime
//!
//! The runtime of OmniQ over any [`Storage`](omniq_core::Storage): [`AsyncTaskQueue`]
//! (enqueue, wait for results, cancel), [`AsyncWorkerPool`] (claims in batches, runs
//! handlers with retries, timeouts and caught panics, records outcomes in batches,
//! recurring tasks, graceful shutdown), the blocking [`WorkerPool`], [`Settings`] and
//! [`logging`]. It depends on no backend.
//!
//! Applications use it through the [`omniq`](https://docs.rs/omniq) crate, which
//! re-exports all of this next to the backends; the conformance suite uses it directly to
//! drive a real worker pool over the backend under test.
//!
//! ```
//! use omniq_runtime::{AsyncTaskQueue, AsyncWorkerPool, HandlerError};
//!
//! # async fn demo(storage: std::sync::Arc<dyn omniq_core::Storage>) -> omniq_runtime::Result<()> {
//! let queue = AsyncTaskQueue::new(storage);
//! let mut pool = AsyncWorkerPool::builder().queue(queue.clone()).concurrency(4).build()?;
//! pool.register("math.add", |(a, b): (i64, i64)| async move { Ok::<_, HandlerError>(a + b) });
//! pool.start()?;
//! let id = queue.enqueue("math.add", &(2, 3)).await?;
//! let result = queue.wait_result(&id, std::time::Duration::from_secs(5)).await?;
//! pool.stop(std::time::Duration::from_secs(5)).await?;
//! # let _ = result; Ok(()) }
//! ```
#![forbid(unsafe_code)]

/// Re-exported for implementing [`middleware::Middleware`].
pub use omniq_core::async_trait;

pub mod blocking;
#[cfg(feature = "cron")]
pub mod cron;
mod duration;
mod error;
mod handler;
pub mod logging;
pub mod metrics;
pub mod middleware;
mod outcome;
mod queue;
mod settings;
mod worker;

pub use blocking::WorkerPool;
pub use duration::IntoDuration;
pub use error::{Error, Result};
pub use handler::{BoxError, HandlerError, TaskCtx, TaskFn, TaskHandler, TaskType};
pub use outcome::{TaskOutcome, TypedTaskId};
pub use queue::{
    AsyncTaskQueue, DEFAULT_QUEUE_STORAGE_TIMEOUT, EnqueueBuilder, QueueDefaults, TaskSpec,
    TypedEnqueueBuilder,
};
pub use settings::{Backend, Settings, is_object_store_url};
pub use worker::{
    AsyncWorkerPool, DEFAULT_MAX_PAYLOAD_BYTES, LEGACY_STORAGE_WARNING, MAX_CONCURRENCY,
    StopReport, WorkerOptions, WorkerPoolBuilder,
};
