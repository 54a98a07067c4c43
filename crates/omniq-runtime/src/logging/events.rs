//! The guide's event helpers: fixed messages and levels, structured fields.
//!
//! Each helper emits one tracing event with a `omniq::…` target. Called inside a
//! [`task_context`](super::task_context) or [`bind_task`](super::bind_task) span, the event
//! also carries that span's fields.

use std::fmt::Display;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Target of queue events (`log_task_enqueued`).
pub const QUEUE_TARGET: &str = "omniq::queue";
/// Target of worker and task-run events.
pub const WORKER_TARGET: &str = "omniq::worker";
/// Target of storage events.
pub const STORAGE_TARGET: &str = "omniq::storage";
/// Target of serialization events.
pub const SERIALIZATION_TARGET: &str = "omniq::serialization";

/// INFO `Task enqueued: {task_id} -> {func_path}`; fields `task_id`, `func_path`,
/// `operation = "enqueue"` and `correlation_id` (the task id: the worker uses the same
/// correlation id for every run of the task, so one id follows it from enqueue on).
pub fn log_task_enqueued(task_id: impl Display, func_path: impl Display) {
    tracing::info!(
        target: QUEUE_TARGET,
        task_id = %task_id,
        operation = "enqueue",
        correlation_id = %task_id,
        func_path = %func_path,
        "Task enqueued: {task_id} -> {func_path}"
    );
}

/// INFO `Task started: {task_id} (attempt {attempt})`; fields `task_id`, `attempt`
/// (1 for the first run).
pub fn log_task_started(task_id: impl Display, attempt: u32) {
    tracing::info!(
        target: WORKER_TARGET,
        task_id = %task_id,
        attempt,
        "Task started: {task_id} (attempt {attempt})"
    );
}

/// INFO `Task completed: {task_id} after {attempts} attempt(s)`; fields `task_id`,
/// `attempts`, `duration_ms` (the successful run's duration).
pub fn log_task_completed(task_id: impl Display, attempts: u32, duration: Duration) {
    let plural = if attempts == 1 { "" } else { "s" };
    tracing::info!(
        target: WORKER_TARGET,
        task_id = %task_id,
        attempts,
        duration_ms = super::context::duration_ms(duration),
        "Task completed: {task_id} after {attempts} attempt{plural}"
    );
}

/// WARN `Task failed (will retry): {task_id} - {error}` when `will_retry`, else ERROR
/// `Task failed (final): {task_id} - {error}`; fields `task_id`, `error`, `will_retry`.
pub fn log_task_failed(task_id: impl Display, error: impl Display, will_retry: bool) {
    if will_retry {
        tracing::warn!(
            target: WORKER_TARGET,
            task_id = %task_id,
            error = %error,
            will_retry,
            "Task failed (will retry): {task_id} - {error}"
        );
    } else {
        tracing::error!(
            target: WORKER_TARGET,
            task_id = %task_id,
            error = %error,
            will_retry,
            "Task failed (final): {task_id} - {error}"
        );
    }
}

/// INFO `Task retry scheduled: {task_id} (attempt {attempt}) at {eta}` (eta in RFC 3339);
/// fields `task_id`, `attempt` (the attempt that will run), `eta`.
pub fn log_task_retry(task_id: impl Display, attempt: u32, eta: OffsetDateTime) {
    let eta = eta.format(&Rfc3339).unwrap_or_else(|_| eta.to_string());
    tracing::info!(
        target: WORKER_TARGET,
        task_id = %task_id,
        attempt,
        eta = %eta,
        "Task retry scheduled: {task_id} (attempt {attempt}) at {eta}"
    );
}

/// INFO `Worker {worker} started with concurrency: {concurrency}`; fields `worker`,
/// `concurrency`.
pub fn log_worker_started(worker: impl Display, concurrency: usize) {
    tracing::info!(
        target: WORKER_TARGET,
        worker = %worker,
        concurrency,
        "Worker {worker} started with concurrency: {concurrency}"
    );
}

/// INFO `Worker {worker} stopped`; field `worker`.
pub fn log_worker_stopped(worker: impl Display) {
    tracing::info!(target: WORKER_TARGET, worker = %worker, "Worker {worker} stopped");
}

/// ERROR `Storage error during {operation}: {error}`; fields `operation`, `error`.
pub fn log_storage_error(operation: impl Display, error: impl Display) {
    tracing::error!(
        target: STORAGE_TARGET,
        operation = %operation,
        error = %error,
        "Storage error during {operation}: {error}"
    );
}

/// ERROR `Serialization error for task {task_id}: {error}`; fields `task_id`, `error`.
pub fn log_serialization_error(task_id: impl Display, error: impl Display) {
    tracing::error!(
        target: SERIALIZATION_TARGET,
        task_id = %task_id,
        error = %error,
        "Serialization error for task {task_id}: {error}"
    );
}
