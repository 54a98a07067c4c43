//! Handlers: the code a worker runs for a task, registered by name with typed args.

use futures::future::BoxFuture;
use omniq_core::{ErrorType, Format, Payload, TaskError, TaskId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

/// An error returned by a handler; becomes the run's [`TaskError`] (`from_error`).
///
/// Any `std::error::Error + Send + Sync + 'static` converts into it (its type name,
/// message and source chain are captured); a [`TaskError`] converts as-is, so a handler
/// can choose the error type, retryability and context itself.
pub struct HandlerError(TaskError);

impl HandlerError {
    /// A runtime error with just a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self(TaskError::new(ErrorType::Runtime, message.to_string()))
    }

    /// From a boxed error (e.g. `anyhow::Error::into()`).
    pub fn from_boxed(err: Box<dyn std::error::Error + Send + Sync + 'static>) -> Self {
        Self(TaskError::from_error(&*err))
    }

    /// The TaskError it will be recorded as.
    pub fn into_task_error(self) -> TaskError {
        self.0
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(e: E) -> Self {
        Self(TaskError::from_typed(&e))
    }
}

/// What a running handler knows about its task.
#[derive(Debug, Clone)]
pub struct TaskCtx {
    /// The task.
    pub task_id: TaskId,
    /// The handler name.
    pub func_path: String,
    /// This run's attempt number (1-based).
    pub attempt: u32,
    /// The queue.
    pub queue: String,
    /// Correlation id of this run (appears on every log line of the run).
    pub correlation_id: String,
}

/// The trait form of a handler.
///
/// ```
/// use omniq::{HandlerError, TaskCtx, TaskHandler};
///
/// struct SendEmail;
///
/// #[derive(serde::Deserialize)]
/// struct Email { to: String }
///
/// impl TaskHandler for SendEmail {
///     const NAME: &'static str = "emails.send";
///     type Args = Email;
///     type Output = String;
///     async fn run(&self, args: Email, _ctx: TaskCtx) -> Result<String, HandlerError> {
///         Ok(format!("sent to {}", args.to))
///     }
/// }
/// ```
pub trait TaskHandler: Send + Sync + 'static {
    /// The name tasks are enqueued under.
    const NAME: &'static str;
    /// Decoded from the task's payload.
    type Args: DeserializeOwned + Send + 'static;
    /// Encoded into the result.
    type Output: Serialize + Send + 'static;
    /// Runs one task.
    fn run(
        &self,
        args: Self::Args,
        ctx: TaskCtx,
    ) -> impl Future<Output = Result<Self::Output, HandlerError>> + Send;
}

pub(crate) type ErasedFn = dyn Fn(Payload, Format, TaskCtx) -> BoxFuture<'static, Result<Option<Payload>, TaskError>>
    + Send
    + Sync;

/// Registered handlers by name.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    map: HashMap<String, Arc<ErasedFn>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.map.keys().collect();
        names.sort();
        f.debug_struct("Registry")
            .field("handlers", &names)
            .finish()
    }
}

pub(crate) fn decode_args<A: DeserializeOwned>(
    format: Format,
    payload: &Payload,
    func: &str,
) -> Result<A, TaskError> {
    format.decode(payload.as_bytes()).map_err(|e| {
        TaskError::new(
            ErrorType::Decode,
            format!(
                "cannot decode arguments for handler '{func}' as {}: {}",
                std::any::type_name::<A>(),
                e.message
            ),
        )
        .with_retryable(false)
        .with_context("payload_bytes", payload.len())
        .with_context("format", format.name())
    })
}

fn encode_output<R: Serialize>(format: Format, out: &R) -> Result<Option<Payload>, TaskError> {
    format.encode(out).map(|b| Some(Payload(b))).map_err(|e| {
        TaskError::new(
            ErrorType::Runtime,
            format!("cannot encode handler result: {e}"),
        )
        .with_retryable(false)
    })
}

impl Registry {
    pub(crate) fn get(&self, name: &str) -> Option<Arc<ErasedFn>> {
        self.map.get(name).cloned()
    }

    pub(crate) fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.map.keys().cloned().collect();
        v.sort();
        v
    }

    pub(crate) fn insert_fn<A, R, E, F, Fut>(&mut self, name: &str, f: F)
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        E: Into<HandlerError> + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
    {
        let f = Arc::new(f);
        let erased: Arc<ErasedFn> =
            Arc::new(move |payload: Payload, format: Format, ctx: TaskCtx| {
                let f = Arc::clone(&f);
                Box::pin(async move {
                    let args: A = decode_args(format, &payload, &ctx.func_path)?;
                    match f(args).await {
                        Ok(out) => encode_output(format, &out),
                        Err(e) => Err(e.into().into_task_error()),
                    }
                })
            });
        self.map.insert(name.to_string(), erased);
    }

    pub(crate) fn insert_handler<H: TaskHandler>(&mut self, h: H) {
        let h = Arc::new(h);
        let erased: Arc<ErasedFn> =
            Arc::new(move |payload: Payload, format: Format, ctx: TaskCtx| {
                let h = Arc::clone(&h);
                Box::pin(async move {
                    let args: H::Args = decode_args(format, &payload, &ctx.func_path)?;
                    match h.run(args, ctx).await {
                        Ok(out) => encode_output(format, &out),
                        Err(e) => Err(e.into_task_error()),
                    }
                })
            });
        self.map.insert(H::NAME.to_string(), erased);
    }
}
