//! Handlers: the code a worker runs for a task, registered by name with typed args.

use futures::future::BoxFuture;
use omniq_core::{ErrorType, Format, Payload, TaskError, TaskId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

/// What a boxed error looks like: any error, from any library.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error returned by a handler; becomes the run's [`TaskError`].
///
/// `?` works on anything that converts into a boxed error: every
/// `std::error::Error + Send + Sync + 'static` (`std::io::Error`, your own types),
/// `Box<dyn Error + Send + Sync>`, `anyhow::Error`, and plain `&str` / `String`
/// messages. Its type name, message and source chain are recorded; a [`TaskError`]
/// (anywhere in the chain) is recorded as-is, so a handler can choose the error type,
/// retryability and context itself.
///
/// ```
/// use omniq_runtime::{HandlerError}; use omniq_core::{TaskError, ErrorType};
///
/// fn parse(s: &str) -> Result<u32, HandlerError> {
///     let n: u32 = s.parse()?;                       // std::num::ParseIntError
///     if n == 0 {
///         return Err("zero is not allowed".into());   // a message
///     }
///     if n > 100 {
///         // A TaskError decides everything: type, retryability, context.
///         Err(TaskError::new(ErrorType::Validation, "too big").with_retryable(false))?;
///     }
///     Ok(n)
/// }
/// assert!(parse("7").is_ok());
/// let e = parse("x").unwrap_err().into_task_error();
/// assert_eq!(e.exception_type.as_deref(), Some("core::num::error::ParseIntError"));
/// assert!(!parse("500").unwrap_err().into_task_error().is_retryable);
/// ```
pub struct HandlerError(TaskError);

impl HandlerError {
    /// A runtime error with just a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self(TaskError::new(ErrorType::Runtime, message.to_string()))
    }

    /// From a boxed error.
    pub fn from_boxed(err: BoxError) -> Self {
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

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl<E: Into<BoxError>> From<E> for HandlerError {
    fn from(e: E) -> Self {
        let type_name = std::any::type_name::<E>();
        let boxed: BoxError = e.into();
        // A message or an already boxed error has no useful type of its own: keep what
        // the chain says (io::Error, …); otherwise record the concrete type.
        let opaque = type_name.starts_with("alloc::boxed::Box<")
            || matches!(type_name, "&str" | "alloc::string::String");
        Self(if opaque {
            TaskError::from_error(&*boxed)
        } else {
            TaskError::from_error_named(&*boxed, type_name)
        })
    }
}

/// A task type, declared once and shared by the code that enqueues it and the workers
/// that run it: its name, argument type and output type. With it, enqueue only compiles
/// with the right arguments ([`AsyncTaskQueue::enqueue_typed`](crate::AsyncTaskQueue::enqueue_typed)),
/// a handler only registers with the right signature
/// ([`AsyncWorkerPool::handle`](crate::AsyncWorkerPool::handle)), and results come back
/// decoded ([`AsyncTaskQueue::wait_output`](crate::AsyncTaskQueue::wait_output)).
///
/// Declare one with [`task_type!`](crate::task_type) or by hand:
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// pub struct Email { pub to: String }
///
/// pub struct SendEmail;
/// impl omniq_runtime::TaskType for SendEmail {
///     const NAME: &'static str = "emails.send";
///     type Args = Email;
///     type Output = String;
/// }
/// ```
pub trait TaskType: Send + Sync + 'static {
    /// The handler name tasks of this type are enqueued under.
    const NAME: &'static str;
    /// The arguments, encoded into the task's payload.
    type Args: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What a successful run returns, stored as the task's result.
    type Output: Serialize + DeserializeOwned + Send + 'static;
}

/// Declares a [`TaskType`]: `task_type!(pub Name = "handler.name", Args => Output);`.
///
/// ```
/// omniq_runtime::task_type!(pub Add = "math.add", (i64, i64) => i64);
/// assert_eq!(<Add as omniq_runtime::TaskType>::NAME, "math.add");
/// ```
#[macro_export]
macro_rules! task_type {
    ($(#[$meta:meta])* $vis:vis $name:ident = $func:literal, $args:ty => $output:ty $(,)?) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default)]
        $vis struct $name;
        impl $crate::TaskType for $name {
            const NAME: &'static str = $func;
            type Args = $args;
            type Output = $output;
        }
    };
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

/// A function that runs tasks of type `T`: any `Fn(T::Args) -> impl Future<Output =
/// Result<T::Output, E>>` where `E` converts into a [`HandlerError`] (so `?` works on
/// any error). Implemented for every such closure or fn; you never implement it.
pub trait TaskFn<T: TaskType>: Send + Sync + 'static {
    /// Runs one task.
    fn call(&self, args: T::Args) -> BoxFuture<'static, Result<T::Output, HandlerError>>;
}

impl<T, F, Fut, E> TaskFn<T> for F
where
    T: TaskType,
    F: Fn(T::Args) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T::Output, E>> + Send + 'static,
    E: Into<HandlerError> + Send + 'static,
{
    fn call(&self, args: T::Args) -> BoxFuture<'static, Result<T::Output, HandlerError>> {
        let fut = self(args);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

/// A handler with state, for a [`TaskType`] (register it with
/// [`AsyncWorkerPool::register_handler`](crate::AsyncWorkerPool::register_handler)).
///
/// ```
/// use omniq_runtime::{HandlerError, TaskCtx, TaskHandler};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Email { to: String }
/// omniq_runtime::task_type!(SendEmail = "emails.send", Email => String);
///
/// struct Mailer { from: String }
///
/// impl TaskHandler for Mailer {
///     type Task = SendEmail;
///     async fn run(&self, args: Email, _ctx: TaskCtx) -> Result<String, HandlerError> {
///         Ok(format!("sent to {} from {}", args.to, self.from))
///     }
/// }
/// ```
pub trait TaskHandler: Send + Sync + 'static {
    /// The task type it runs.
    type Task: TaskType;
    /// Runs one task.
    fn run(
        &self,
        args: <Self::Task as TaskType>::Args,
        ctx: TaskCtx,
    ) -> impl Future<Output = Result<<Self::Task as TaskType>::Output, HandlerError>> + Send;
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

    pub(crate) fn insert_task_fn<T: TaskType, F: TaskFn<T>>(&mut self, f: F) {
        let f = Arc::new(f);
        let erased: Arc<ErasedFn> =
            Arc::new(move |payload: Payload, format: Format, ctx: TaskCtx| {
                let f = Arc::clone(&f);
                Box::pin(async move {
                    let args: T::Args = decode_args(format, &payload, &ctx.func_path)?;
                    match f.call(args).await {
                        Ok(out) => encode_output(format, &out),
                        Err(e) => Err(e.into_task_error()),
                    }
                })
            });
        self.map.insert(T::NAME.to_string(), erased);
    }

    pub(crate) fn insert_handler<H: TaskHandler>(&mut self, h: H) {
        let h = Arc::new(h);
        let erased: Arc<ErasedFn> =
            Arc::new(move |payload: Payload, format: Format, ctx: TaskCtx| {
                let h = Arc::clone(&h);
                Box::pin(async move {
                    let args: <H::Task as TaskType>::Args =
                        decode_args(format, &payload, &ctx.func_path)?;
                    match h.run(args, ctx).await {
                        Ok(out) => encode_output(format, &out),
                        Err(e) => Err(e.into_task_error()),
                    }
                })
            });
        self.map
            .insert(<H::Task as TaskType>::NAME.to_string(), erased);
    }
}
