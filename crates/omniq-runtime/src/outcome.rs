//! Results as values: [`TaskOutcome`] (a finished run with its output decodable) and
//! [`TypedTaskId`] (the id of a task of a known [`TaskType`], so its output comes back as
//! that type).

use crate::error::{Error, Result};
use crate::handler::TaskType;
use omniq_core::{ErrorType, Format, Payload, TaskError, TaskId, TaskResult, TaskStatus};
use serde::de::DeserializeOwned;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use time::OffsetDateTime;

/// A task's latest finished run, as values: its status, error, timing and its output,
/// decodable as the handler's return type or as a JSON value.
///
/// ```
/// # async fn demo(queue: &omniq_runtime::AsyncTaskQueue, id: omniq_core::TaskId) -> omniq_runtime::Result<()> {
/// let outcome = queue.wait_result(&id, std::time::Duration::from_secs(5)).await?;
/// if outcome.is_success() {
///     let sum: i64 = outcome.output()?;                // typed
///     let any: serde_json::Value = outcome.value()?;   // or as a JSON value
/// } else if let Some(error) = &outcome.error {
///     eprintln!("failed: {} ({})", error.message, error.error_type);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TaskOutcome {
    /// The task.
    pub task_id: TaskId,
    /// Success, Failed or Cancelled (or, for a recurring task, its latest run's status).
    pub status: TaskStatus,
    /// Why the run failed (or the last error of a cancelled task).
    pub error: Option<TaskError>,
    /// When the run finished.
    pub finished_at: OffsetDateTime,
    /// Runs so far.
    pub attempts: u32,
    /// When the last run started.
    pub last_attempt_at: Option<OffsetDateTime>,
    output: Option<Payload>,
    format: Format,
}

impl TaskOutcome {
    pub(crate) fn new(result: TaskResult, format: Format) -> Self {
        Self {
            task_id: result.task_id,
            status: result.status,
            error: result.error,
            finished_at: result.finished_at,
            attempts: result.attempts,
            last_attempt_at: result.last_attempt_at,
            output: result.result,
            format,
        }
    }

    /// True when the run succeeded.
    pub fn is_success(&self) -> bool {
        self.status == TaskStatus::Success
    }

    /// True when the task failed for good.
    pub fn is_failed(&self) -> bool {
        self.status == TaskStatus::Failed
    }

    /// The run's output decoded as `T`. A run without output (it failed or was
    /// cancelled, or the handler returned nothing) decodes from `null`, so `T` may be
    /// `()` or an `Option`.
    pub fn output<T: DeserializeOwned>(&self) -> Result<T> {
        match &self.output {
            Some(p) => Ok(self.format.decode(p.as_bytes())?),
            None => Ok(
                serde_json::from_value(serde_json::Value::Null).map_err(|e| {
                    Error::Serialization(omniq_core::SerializationError {
                        format: "json",
                        op: "decode",
                        message: format!(
                            "task {} has no output (status {}): {e}",
                            self.task_id, self.status
                        ),
                    })
                })?,
            ),
        }
    }

    /// The run's output as a JSON value (`Null` when there is none), whatever the
    /// payload format.
    pub fn value(&self) -> Result<serde_json::Value> {
        self.output()
    }

    /// The output's encoded bytes, as stored.
    pub fn raw_output(&self) -> Option<&Payload> {
        self.output.as_ref()
    }

    /// `Ok(output)` for a successful run, else the run's [`TaskError`] (a cancelled task
    /// gives a `user` error saying so, carrying its last error's message if it had one).
    pub fn into_output<T: DeserializeOwned>(self) -> Result<std::result::Result<T, TaskError>> {
        match self.status {
            TaskStatus::Success => Ok(Ok(self.output()?)),
            TaskStatus::Cancelled => Ok(Err(cancelled_error(&self))),
            _ => Ok(Err(self.error.clone().unwrap_or_else(|| {
                TaskError::new(
                    ErrorType::Unknown,
                    format!("task {} failed without a recorded error", self.task_id),
                )
            }))),
        }
    }
}

impl From<TaskOutcome> for TaskResult {
    fn from(o: TaskOutcome) -> Self {
        TaskResult {
            task_id: o.task_id,
            status: o.status,
            result: o.output,
            error: o.error,
            finished_at: o.finished_at,
            attempts: o.attempts,
            last_attempt_at: o.last_attempt_at,
        }
    }
}

fn cancelled_error(r: &TaskOutcome) -> TaskError {
    let mut e = TaskError::new(
        ErrorType::User,
        match &r.error {
            Some(last) => format!(
                "task {} was cancelled (last error: {})",
                r.task_id, last.message
            ),
            None => format!("task {} was cancelled", r.task_id),
        },
    )
    .with_retryable(false);
    e.context.insert(
        "status".into(),
        serde_json::Value::String("cancelled".into()),
    );
    e
}

/// The id of a task of type `T`, from
/// [`AsyncTaskQueue::enqueue_typed`](crate::AsyncTaskQueue::enqueue_typed); its output
/// comes back as `T::Output` from
/// [`AsyncTaskQueue::wait_output`](crate::AsyncTaskQueue::wait_output). Derefs to the
/// plain [`TaskId`].
pub struct TypedTaskId<T> {
    id: TaskId,
    _task: PhantomData<fn() -> T>,
}

impl<T: TaskType> TypedTaskId<T> {
    /// Claims that `id` is a task of type `T` (e.g. an id read back from your database).
    pub fn new(id: TaskId) -> Self {
        Self {
            id,
            _task: PhantomData,
        }
    }

    /// The plain id.
    pub fn id(&self) -> TaskId {
        self.id
    }
}

impl<T> Deref for TypedTaskId<T> {
    type Target = TaskId;
    fn deref(&self) -> &TaskId {
        &self.id
    }
}

impl<T> Clone for TypedTaskId<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for TypedTaskId<T> {}

impl<T> PartialEq for TypedTaskId<T> {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl<T> Eq for TypedTaskId<T> {}

impl<T> fmt::Debug for TypedTaskId<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TypedTaskId<{}>({})",
            std::any::type_name::<T>(),
            self.id
        )
    }
}

impl<T> fmt::Display for TypedTaskId<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.id, f)
    }
}
