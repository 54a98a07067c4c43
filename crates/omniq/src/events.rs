//! The runtime's log events, in one place (L6). Everything here only emits tracing
//! events; nothing installs a subscriber (L1).

use omniq_core::{StorageError, TaskError, TaskId};
use time::OffsetDateTime;

pub(crate) fn task_enqueued(id: &TaskId, func: &str) {
    tracing::info!(target: "omniq::queue", task_id = %id, func_path = func, operation = "enqueue", "Task enqueued: {id} -> {func}");
}

pub(crate) fn task_started(id: &TaskId, attempt: u32) {
    tracing::info!(target: "omniq::worker", task_id = %id, attempt, "Task started: {id} (attempt {attempt})");
}

pub(crate) fn task_completed(id: &TaskId, attempt: u32, duration_ms: f64) {
    tracing::info!(target: "omniq::worker", task_id = %id, attempt, duration_ms, "Task completed: {id} (attempt {attempt})");
}

pub(crate) fn task_failed(id: &TaskId, error: &TaskError, will_retry: bool) {
    if will_retry {
        tracing::warn!(target: "omniq::worker", task_id = %id, error_type = %error.error_type, will_retry, "Task failed: {id} - {} (will retry)", error.message);
    } else {
        tracing::error!(target: "omniq::worker", task_id = %id, error_type = %error.error_type, will_retry, "Task failed: {id} - {}", error.message);
    }
}

pub(crate) fn task_retry(id: &TaskId, attempt: u32, eta: OffsetDateTime) {
    tracing::info!(target: "omniq::worker", task_id = %id, attempt, eta = %eta, "Task retry scheduled: {id} (attempt {attempt}) at {eta}");
}

pub(crate) fn worker_started(worker: &str, concurrency: usize) {
    tracing::info!(target: "omniq::worker", worker, concurrency, "Worker started: {worker} (concurrency {concurrency})");
}

pub(crate) fn worker_stopped(worker: &str) {
    tracing::info!(target: "omniq::worker", worker, "Worker stopped: {worker}");
}

pub(crate) fn storage_error(operation: &str, error: &StorageError) {
    tracing::error!(target: "omniq::storage", operation, backend = error.backend(), kind = %error.kind(), "Storage error during {operation}: {error}");
}

pub(crate) fn serialization_error(id: &TaskId, error: &TaskError) {
    tracing::error!(target: "omniq::worker", task_id = %id, "Serialization error for task {id}: {}", error.message);
}
