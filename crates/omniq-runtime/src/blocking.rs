//! Blocking use for programs without an async runtime: [`WorkerPool`] owns (or shares)
//! a tokio runtime and blocks on [`AsyncWorkerPool`]; [`new_runtime`] and [`block_on`]
//! are the pieces the blocking facades are built from.

use crate::error::{Error, Result};
use crate::handler::{HandlerError, TaskHandler};
use crate::queue::AsyncTaskQueue;
use crate::worker::{AsyncWorkerPool, StopReport};
use omniq_core::Storage;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::Arc;
use tokio::runtime::Runtime;

/// Blocking on a runtime from inside another (a handler, an async fn) would panic; say why
/// instead.
fn not_in_async() -> Result<()> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::Config(
            "the blocking OmniQ/WorkerPool cannot be used inside an async runtime (including \
             inside task handlers); use AsyncOmniQ / AsyncWorkerPool there"
                .into(),
        ));
    }
    Ok(())
}

/// Runs `f` to completion on `rt`; an error instead of a panic when called from async code.
pub fn block_on<F: Future>(rt: &Runtime, f: F) -> Result<F::Output> {
    not_in_async()?;
    Ok(rt.block_on(f))
}

/// A multi-threaded tokio runtime for blocking facades (threads named `omniq`).
pub fn new_runtime() -> Result<Arc<Runtime>> {
    not_in_async()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("omniq")
        .build()
        .map(Arc::new)
        .map_err(|e| Error::Worker(format!("cannot start the tokio runtime: {e}")))
}

/// Blocking [`AsyncWorkerPool`].
#[derive(Debug)]
pub struct WorkerPool {
    rt: Arc<Runtime>,
    pool: AsyncWorkerPool,
}

impl WorkerPool {
    /// Wraps a configured async pool on a private runtime.
    pub fn from_pool(pool: AsyncWorkerPool) -> Result<Self> {
        Ok(Self {
            rt: new_runtime()?,
            pool,
        })
    }

    /// Wraps a configured async pool on a runtime the caller already owns (the blocking
    /// `OmniQ` facade shares its own this way).
    pub fn on_runtime(rt: Arc<Runtime>, pool: AsyncWorkerPool) -> Self {
        Self { rt, pool }
    }

    /// A pool over `queue` with `concurrency` (the new interface).
    pub fn new(queue: AsyncTaskQueue, concurrency: usize) -> Result<Self> {
        Self::from_pool(
            AsyncWorkerPool::builder()
                .queue(queue)
                .concurrency(concurrency)
                .build()?,
        )
    }

    /// The legacy interface (deprecated, warns once like [`AsyncWorkerPool::from_storage`]).
    #[deprecated(
        note = "Passing 'storage' to WorkerPool is deprecated. Use WorkerPool::new(AsyncTaskQueue::new(storage), n) instead"
    )]
    pub fn from_storage(storage: Arc<dyn Storage>, concurrency: usize) -> Result<Self> {
        #[allow(deprecated)]
        let pool = AsyncWorkerPool::builder()
            .storage(storage)
            .concurrency(concurrency)
            .build()?;
        Self::from_pool(pool)
    }

    /// Registers a closure handler.
    pub fn register<A, R, E, F, Fut>(&mut self, name: &str, f: F) -> &mut Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        E: Into<HandlerError> + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<R, E>> + Send + 'static,
    {
        self.pool.register(name, f);
        self
    }

    /// Registers a function for a declared task type (see [`AsyncWorkerPool::handle`]).
    pub fn handle<T: crate::TaskType>(&mut self, f: impl crate::handler::TaskFn<T>) -> &mut Self {
        self.pool.handle::<T>(f);
        self
    }

    /// Wraps every run in `middleware` (see [`AsyncWorkerPool::layer`]).
    pub fn layer(&mut self, middleware: impl crate::middleware::Middleware) -> &mut Self {
        self.pool.layer(middleware);
        self
    }

    /// Registers a trait handler.
    pub fn register_handler<H: TaskHandler>(&mut self, h: H) -> &mut Self {
        self.pool.register_handler(h);
        self
    }

    /// Starts the pool in the background.
    pub fn start(&self) -> Result<()> {
        not_in_async()?;
        let _guard = self.rt.enter();
        self.pool.start()
    }

    /// Graceful stop; see [`AsyncWorkerPool::stop`].
    pub fn stop(&self, timeout: impl crate::IntoDuration) -> Result<StopReport> {
        block_on(&self.rt, self.pool.stop(timeout))?
    }

    /// The async pool underneath.
    pub fn inner(&self) -> &AsyncWorkerPool {
        &self.pool
    }
}

impl Drop for WorkerPool {
    /// A pool dropped while running is stopped without draining (`stop(0)`): running
    /// handlers are aborted and their tasks handed back.
    fn drop(&mut self) {
        if self.pool.is_running() && not_in_async().is_ok() {
            let _ = self.rt.block_on(self.pool.stop(std::time::Duration::ZERO));
        }
    }
}
