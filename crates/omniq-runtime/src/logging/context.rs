//! Task-scoped spans: `task_context` (correlation id, start, completion or failure with
//! duration) and `bind_task` (arbitrary bound fields).

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

use tracing::field::Empty;
use tracing::{Instrument as _, Span};
use uuid::Uuid;

use super::bound::{BOUND_FIELD, encode_bound};

/// Target of the spans and events of this module.
pub const TASK_TARGET: &str = "omniq::task";

/// A running operation on one task: a span carrying `task_id`, `operation` and
/// `correlation_id`, plus its start time.
///
/// Created by [`task_context`], which logs `Task {operation} started`. It ends with
/// [`finish`](Self::finish) (`Task {operation} completed in 0.012s`, INFO) or
/// [`fail`](Self::fail) (`Task {operation} failed after 0.012s: {error}`, ERROR); both
/// carry a `duration_ms` field. Dropped without either, it logs completion — or failure
/// when the thread is panicking — so prefer [`record`](Self::record) or
/// [`run`](Self::run) where a `?` could leave the scope early.
///
/// Events are tagged only while the span is entered: use [`in_scope`](Self::in_scope) in
/// synchronous code and [`run`](Self::run) or `.instrument(ctx.span().clone())` across
/// `.await` (never hold `span().enter()` across an `.await`). The span also declares an
/// empty `worker` field: `ctx.span().record("worker", "worker-1")`.
#[derive(Debug)]
pub struct TaskContext {
    span: Span,
    task_id: String,
    operation: String,
    correlation_id: String,
    started: Instant,
    done: bool,
}

/// The span of a [`TaskContext`] without its start/finish lines: `task_id`, `operation`,
/// `correlation_id` and (when given) `worker` on every event inside it; `duration_ms` is
/// declared empty for the run to record before its last line.
///
/// The worker runs each task in one of these and logs the run with the event helpers
/// (`log_task_started`, `log_task_completed` with its duration, `log_task_failed`), so a
/// run costs two lines at INFO rather than four.
pub fn task_span(
    task_id: &dyn Display,
    operation: &dyn Display,
    correlation_id: &dyn Display,
    worker: Option<&dyn Display>,
) -> Span {
    tracing::info_span!(
        target: TASK_TARGET,
        "task",
        task_id = %task_id,
        operation = %operation,
        correlation_id = %correlation_id,
        worker = worker.map(tracing::field::display),
        duration_ms = Empty,
    )
}

/// Starts a [`TaskContext`] with a new (UUID v7) correlation id and logs its start.
pub fn task_context(task_id: impl Display, operation: impl Display) -> TaskContext {
    TaskContext::start(task_id.to_string(), operation.to_string(), None)
}

/// Starts a [`TaskContext`] with the given correlation id (to follow a task across
/// enqueue, runs and retries) and logs its start.
pub fn task_context_with_correlation(
    task_id: impl Display,
    operation: impl Display,
    correlation_id: impl Display,
) -> TaskContext {
    TaskContext::start(
        task_id.to_string(),
        operation.to_string(),
        Some(correlation_id.to_string()),
    )
}

impl TaskContext {
    fn start(task_id: String, operation: String, correlation_id: Option<String>) -> Self {
        let correlation_id = correlation_id.unwrap_or_else(|| Uuid::now_v7().to_string());
        let span = task_span(&task_id, &operation, &correlation_id, None);
        tracing::info!(target: TASK_TARGET, parent: &span, "Task {operation} started");
        TaskContext {
            span,
            task_id,
            operation,
            correlation_id,
            started: Instant::now(),
            done: false,
        }
    }

    /// The span; `.instrument(ctx.span().clone())` carries it across `.await`.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// The task id.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// The operation name.
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// The correlation id carried by every event in the span.
    pub fn correlation_id(&self) -> &str {
        &self.correlation_id
    }

    /// Time since the context started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Runs `f` inside the span.
    pub fn in_scope<T>(&self, f: impl FnOnce() -> T) -> T {
        self.span.in_scope(f)
    }

    /// Logs completion with the duration (INFO).
    pub fn finish(mut self) {
        self.log_completed();
    }

    /// Logs failure with the duration and the error (ERROR).
    pub fn fail(mut self, error: &dyn Display) {
        self.log_failed(error);
    }

    /// [`finish`](Self::finish) on `Ok`, [`fail`](Self::fail) on `Err`.
    pub fn record<T, E: Display>(self, result: &Result<T, E>) {
        match result {
            Ok(_) => self.finish(),
            Err(error) => self.fail(error),
        }
    }

    /// Runs `future` inside the span and records its outcome; returns its output.
    pub async fn run<F, T, E>(self, future: F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
        E: Display,
    {
        let result = future.instrument(self.span.clone()).await;
        self.record(&result);
        result
    }

    fn log_completed(&mut self) {
        self.done = true;
        let elapsed = self.elapsed();
        let operation = &self.operation;
        tracing::info!(
            target: TASK_TARGET,
            parent: &self.span,
            duration_ms = duration_ms(elapsed),
            "Task {operation} completed in {:.3}s",
            elapsed.as_secs_f64(),
        );
    }

    fn log_failed(&mut self, error: &dyn Display) {
        self.done = true;
        let elapsed = self.elapsed();
        let operation = &self.operation;
        tracing::error!(
            target: TASK_TARGET,
            parent: &self.span,
            duration_ms = duration_ms(elapsed),
            error = %error,
            "Task {operation} failed after {:.3}s: {error}",
            elapsed.as_secs_f64(),
        );
    }
}

impl Drop for TaskContext {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if std::thread::panicking() {
            self.log_failed(&"panicked");
        } else {
            self.log_completed();
        }
    }
}

/// Milliseconds with microsecond precision (`0.068`, never `0.06804099999999999`).
pub(crate) fn duration_ms(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 1_000_000.0).round() / 1_000.0
}

/// A span that binds `task_id`, a `correlation_id` and any other fields to every event
/// logged inside it — the guide's `bind_task(task_id, worker=..., user_id=...)`.
///
/// `correlation_id` is taken from `fields` when given there, otherwise a new UUID v7 when
/// `task_id` is given, otherwise absent (a worker-wide binding). `task_id`, `correlation_id`,
/// `operation` and `worker` are real span fields. Any other field goes into the span's one
/// `bound` field as a JSON object (tracing spans declare their field names up front, so
/// arbitrary names cannot be span fields); the DEV and PROD formats of this module unpack
/// it, so `user_id` and `session` show up as ordinary top-level keys. Another subscriber
/// shows `bound={"user_id":"u-1",...}`.
///
/// Enter it with `span.in_scope(..)` / `let _e = span.enter();` in synchronous code, or
/// `.instrument(span)` across `.await`.
///
/// ```
/// let span = omniq_runtime::logging::bind_task(Some("task-456"), &[("worker", &"worker-1"), ("user_id", &42)]);
/// span.in_scope(|| tracing::info!("Task enqueued with context"));
/// ```
pub fn bind_task(task_id: Option<&str>, fields: &[(&str, &dyn Display)]) -> Span {
    let span = tracing::info_span!(
        target: TASK_TARGET,
        "bound",
        task_id = Empty,
        correlation_id = Empty,
        operation = Empty,
        worker = Empty,
        bound = Empty,
    );
    if span.is_disabled() {
        return span;
    }
    let mut correlation_id = None;
    let mut task = task_id.map(str::to_owned);
    let mut extra: Vec<(&str, String)> = Vec::new();
    for (name, value) in fields {
        match *name {
            "correlation_id" => correlation_id = Some(value.to_string()),
            "task_id" => task = Some(value.to_string()),
            "operation" | "worker" => {
                span.record(*name, tracing::field::display(value));
            }
            _ => {
                let value = value.to_string();
                if let Some(slot) = extra.iter_mut().find(|(n, _)| n == name) {
                    slot.1 = value;
                } else {
                    extra.push((name, value));
                }
            }
        }
    }
    if let Some(task) = &task {
        span.record("task_id", task.as_str());
    }
    if correlation_id.is_none() && task.is_some() {
        correlation_id = Some(Uuid::now_v7().to_string());
    }
    if let Some(correlation_id) = &correlation_id {
        span.record("correlation_id", correlation_id.as_str());
    }
    if !extra.is_empty() {
        span.record(BOUND_FIELD, encode_bound(&extra).as_str());
    }
    span
}
