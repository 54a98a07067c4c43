//! Blocking wrappers for programs without an async runtime: [`OmniQ`] and
//! [`WorkerPool`] own a tokio runtime and block on the async API.

use crate::error::{Error, Result};
use crate::handler::{HandlerError, TaskHandler};
use crate::omniq::AsyncOmniQ;
use crate::queue::{AsyncTaskQueue, TaskSpec};
use crate::settings::Settings;
use crate::worker::{AsyncWorkerPool, StopReport};
use omniq_core::{CancelOutcome, Enqueued, Storage, Task, TaskId, TaskResult};
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

fn block_on<F: Future>(rt: &Runtime, f: F) -> Result<F::Output> {
    not_in_async()?;
    Ok(rt.block_on(f))
}

fn runtime() -> Result<Arc<Runtime>> {
    not_in_async()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("omniq")
        .build()
        .map(Arc::new)
        .map_err(|e| Error::Worker(format!("cannot start the tokio runtime: {e}")))
}

/// Blocking [`AsyncOmniQ`].
///
/// ```no_run
/// use omniq::{HandlerError, OmniQ, Settings};
///
/// let omniq = OmniQ::new(Settings::default())?;
/// let mut worker = omniq.worker(2)?;
/// worker.register("double", |x: i64| async move { Ok::<_, HandlerError>(x * 2) });
/// worker.start()?;
/// let id = omniq.enqueue(omniq.task("double", &21))?.id;
/// let res = omniq.wait_result(&id, std::time::Duration::from_secs(5))?;
/// worker.stop(std::time::Duration::from_secs(5))?;
/// # let _ = res; Ok::<(), omniq::Error>(())
/// ```
#[derive(Debug)]
pub struct OmniQ {
    rt: Arc<Runtime>,
    inner: AsyncOmniQ,
}

impl OmniQ {
    /// Builds storage and queue from settings on a private runtime.
    pub fn new(settings: Settings) -> Result<Self> {
        let rt = runtime()?;
        let inner = rt.block_on(AsyncOmniQ::new(settings))?;
        Ok(Self { rt, inner })
    }

    /// The async facade underneath.
    pub fn inner(&self) -> &AsyncOmniQ {
        &self.inner
    }

    /// A task spec with this queue's payload format.
    pub fn task<A: Serialize + ?Sized>(&self, func: &str, args: &A) -> TaskSpec {
        self.inner.queue().task(func, args)
    }

    /// Enqueues one task.
    pub fn enqueue(&self, spec: TaskSpec) -> Result<Enqueued> {
        let mut v = self.enqueue_many(vec![spec])?;
        v.pop()
            .ok_or_else(|| Error::Worker("storage returned no enqueue outcome".into()))
    }

    /// Enqueues a batch.
    pub fn enqueue_many(&self, specs: Vec<TaskSpec>) -> Result<Vec<Enqueued>> {
        block_on(&self.rt, self.inner.queue().enqueue_many(specs))?
    }

    /// The task, or None.
    pub fn get_task(&self, id: &TaskId) -> Result<Option<Task>> {
        block_on(&self.rt, self.inner.get_task(id))?
    }

    /// The latest final result, or None.
    pub fn get_result(&self, id: &TaskId) -> Result<Option<TaskResult>> {
        block_on(&self.rt, self.inner.get_result(id))?
    }

    /// Waits for the final result.
    pub fn wait_result(&self, id: &TaskId, timeout: std::time::Duration) -> Result<TaskResult> {
        block_on(&self.rt, self.inner.wait_result(id, timeout))?
    }

    /// Cancels a task.
    pub fn cancel(&self, id: &TaskId) -> Result<CancelOutcome> {
        block_on(&self.rt, self.inner.cancel(id))?
    }

    /// A blocking worker pool sharing this runtime.
    pub fn worker(&self, concurrency: usize) -> Result<WorkerPool> {
        Ok(WorkerPool {
            rt: Arc::clone(&self.rt),
            pool: self.inner.worker(concurrency)?,
        })
    }
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
            rt: runtime()?,
            pool,
        })
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
    pub fn stop(&self, timeout: std::time::Duration) -> Result<StopReport> {
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
