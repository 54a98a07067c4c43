//! [`OmniQ`]: the blocking [`AsyncOmniQ`], for programs without an async runtime.

use crate::omniq::AsyncOmniQ;
use omniq_core::{CancelOutcome, Enqueued, Task, TaskId};
use omniq_runtime::blocking::{block_on, new_runtime};
use omniq_runtime::{Error, IntoDuration, Result, Settings, TaskOutcome, TaskSpec, WorkerPool};
use serde::Serialize;
use std::sync::Arc;
use tokio::runtime::Runtime;

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
        let rt = new_runtime()?;
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
    pub fn get_result(&self, id: &TaskId) -> Result<Option<TaskOutcome>> {
        block_on(&self.rt, self.inner.get_result(id))?
    }

    /// Waits for the final result.
    pub fn wait_result(&self, id: &TaskId, timeout: impl IntoDuration) -> Result<TaskOutcome> {
        block_on(&self.rt, self.inner.wait_result(id, timeout))?
    }

    /// Cancels a task.
    pub fn cancel(&self, id: &TaskId) -> Result<CancelOutcome> {
        block_on(&self.rt, self.inner.cancel(id))?
    }

    /// A blocking worker pool sharing this runtime.
    pub fn worker(&self, concurrency: usize) -> Result<WorkerPool> {
        Ok(WorkerPool::on_runtime(
            Arc::clone(&self.rt),
            self.inner.worker(concurrency)?,
        ))
    }
}
