//! Metrics through the [`metrics`](https://docs.rs/metrics) facade: install any recorder
//! (e.g. `metrics-exporter-prometheus`; `omniq dashboard` serves one at `/metrics`), then
//! call [`enable`]. Until then nothing is computed or allocated: every emission is behind
//! one relaxed atomic load.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `omniq_tasks_enqueued_total` | counter | `queue`, `handler` |
//! | `omniq_tasks_started_total` | counter | `queue`, `handler` |
//! | `omniq_tasks_succeeded_total` | counter | `queue`, `handler` |
//! | `omniq_tasks_failed_total` | counter (final failures) | `queue`, `handler` |
//! | `omniq_tasks_retried_total` | counter (failures that will retry) | `queue`, `handler` |
//! | `omniq_tasks_timed_out_total` | counter | `queue`, `handler` |
//! | `omniq_task_run_seconds` | histogram (handler run time) | `queue`, `handler` |
//! | `omniq_task_start_delay_seconds` | histogram (due → start) | `queue`, `handler` |
//! | `omniq_worker_held_leases` | gauge | `worker` |
//! | `omniq_storage_errors_total` | counter | `operation`, `kind` |
//!
//! ```
//! // After installing a recorder:
//! omniq_runtime::metrics::enable();
//! assert!(omniq_runtime::metrics::is_enabled());
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Starts emitting (call once a recorder is installed).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether [`enable`] was called.
pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// How a run ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunEnd {
    Succeeded,
    Failed,
    Retried,
    TimedOut,
}

pub(crate) fn enqueued(queue: &str, handler: &str, n: u64) {
    if is_enabled() && n > 0 {
        metrics::counter!("omniq_tasks_enqueued_total", "queue" => queue.to_string(), "handler" => handler.to_string())
            .increment(n);
    }
}

pub(crate) fn started(queue: &str, handler: &str, start_delay: Duration) {
    if is_enabled() {
        let labels = [
            ("queue", queue.to_string()),
            ("handler", handler.to_string()),
        ];
        metrics::counter!("omniq_tasks_started_total", &labels).increment(1);
        metrics::histogram!("omniq_task_start_delay_seconds", &labels)
            .record(start_delay.as_secs_f64());
    }
}

pub(crate) fn finished(queue: &str, handler: &str, end: RunEnd, run_time: Duration) {
    if is_enabled() {
        let labels = [
            ("queue", queue.to_string()),
            ("handler", handler.to_string()),
        ];
        let name = match end {
            RunEnd::Succeeded => "omniq_tasks_succeeded_total",
            RunEnd::Failed => "omniq_tasks_failed_total",
            RunEnd::Retried => "omniq_tasks_retried_total",
            RunEnd::TimedOut => "omniq_tasks_timed_out_total",
        };
        metrics::counter!(name, &labels).increment(1);
        if end == RunEnd::TimedOut {
            // A timed-out run also ends failed or retried; counted there by the caller.
            return;
        }
        metrics::histogram!("omniq_task_run_seconds", &labels).record(run_time.as_secs_f64());
    }
}

pub(crate) fn held_leases(worker: &str, n: usize) {
    if is_enabled() {
        metrics::gauge!("omniq_worker_held_leases", "worker" => worker.to_string()).set(n as f64);
    }
}

pub(crate) fn storage_error(operation: &str, kind: &str) {
    if is_enabled() {
        metrics::counter!("omniq_storage_errors_total", "operation" => operation.to_string(), "kind" => kind.to_string())
            .increment(1);
    }
}
