//! The decisions about a run, made once, here: whether a task may start, and what a
//! failed run becomes (retry with back-off, the interval's next slot, or final failure).

use super::Shared;
use omniq_core::{
    Backoff, ErrorType, FailAction, Failure, LeaseRef, Task, TaskError, next_interval_slot,
};
use time::{Duration, OffsetDateTime};

/// Whether a claim must record its run's start before the handler runs: every claim
/// after a task's first (a retry or a redelivery). A first run is not recorded, which
/// keeps a storage write off the common path; the crash-loop guard allows for it.
pub(super) fn records_start(task: &Task) -> bool {
    task.attempts > 1
}

/// Tasks that must not start: crash-looping ones and oversized payloads.
pub(super) fn refuse(shared: &Shared, task: &Task) -> Option<TaskError> {
    // A task whose handler started more often than its retries and redeliveries allow
    // keeps killing workers (or outliving its leases): stop it instead of crash-looping.
    // `runs` counts the starts recorded before this claim — every run after the first —
    // so claims that never started a handler (prefetched by a worker that died) cost
    // nothing, and the unrecorded first run is the one extra the guard allows.
    let limit = task
        .max_retries
        .saturating_add(1)
        .saturating_add(shared.opts.max_redeliveries);
    if records_start(task) && task.runs >= limit {
        return Some(
            TaskError::new(
                ErrorType::System,
                format!(
                    "task started {} times, all that max_retries {} and max_redeliveries {} allow; the runs that never reported back crashed their worker or outlived their lease",
                    u64::from(task.runs) + 1,
                    task.max_retries,
                    shared.opts.max_redeliveries
                ),
            )
            .with_retryable(false)
            .with_context("runs", u64::from(task.runs) + 1),
        );
    }
    if task.args.len() > shared.opts.max_payload_bytes {
        return Some(
            TaskError::new(
                ErrorType::Validation,
                format!(
                    "payload of {} bytes exceeds the worker's max_payload_bytes ({})",
                    task.args.len(),
                    shared.opts.max_payload_bytes
                ),
            )
            .with_retryable(false)
            .with_context("payload_bytes", task.args.len()),
        );
    }
    None
}

pub(super) fn timeout_error(limit: Duration) -> TaskError {
    TaskError::new(
        ErrorType::Timeout,
        format!("Task exceeded {} second limit", limit.as_seconds_f64()),
    )
    .with_retryable(true)
    .with_context("timeout_seconds", limit.as_seconds_f64())
}

/// The anchor of an interval task's slot lattice: kept in the error context across
/// retries so a retried run does not shift later slots.
const SLOT_KEY: &str = "interval_slot";

pub(super) fn slot_anchor(task: &Task) -> OffsetDateTime {
    task.error
        .as_ref()
        .and_then(|e| e.context.get(SLOT_KEY))
        .and_then(|v| v.as_str())
        .and_then(|s| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| task.effective_eta())
}

/// The task's own back-off, else its handler's, else its queue's, else the pool's.
fn backoff_for(shared: &Shared, task: &Task) -> Backoff {
    task.backoff
        .or_else(|| shared.opts.handler_backoff.get(&task.func_path).copied())
        .or_else(|| shared.opts.queue_backoff.get(&task.queue).copied())
        .unwrap_or(shared.opts.backoff)
}

/// A recurring task's next slot after a run that ends at `now`: for an interval, the
/// first `anchor + k·interval` after now; for a cron schedule, the first match of the
/// expression after now (so missed slots run once, never in a burst). `None` for a
/// one-off task, or a cron expression that never matches again; an error for a stored
/// cron schedule that no longer parses.
pub(super) fn next_slot(
    task: &Task,
    now: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, TaskError> {
    if let Some(interval) = task.schedule.interval {
        return Ok(Some(next_interval_slot(slot_anchor(task), interval, now)));
    }
    let Some(schedule) = &task.schedule.cron else {
        return Ok(None);
    };
    cron_next(schedule, now)
}

#[cfg(feature = "cron")]
fn cron_next(
    schedule: &omniq_core::CronSchedule,
    now: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, TaskError> {
    crate::cron::Cron::of(schedule)
        .map(|c| c.next_after(now))
        .map_err(|e| {
            TaskError::new(
                ErrorType::Validation,
                format!("the task's cron schedule: {e}"),
            )
            .with_retryable(false)
        })
}

#[cfg(not(feature = "cron"))]
fn cron_next(
    _schedule: &omniq_core::CronSchedule,
    _now: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, TaskError> {
    Err(TaskError::new(
        ErrorType::Validation,
        "a cron task reached a worker built without omniq's `cron` feature",
    )
    .with_retryable(false))
}

/// Decides retry / next run / fail for a failed run; also says whether it will retry.
pub(super) fn failure_for(
    shared: &Shared,
    task: &Task,
    mut error: TaskError,
    lease: LeaseRef,
) -> (Failure, bool) {
    let now = shared.queue.clock.now();
    error.retry_count = task.attempts.saturating_sub(1);
    error.max_retries = task.max_retries;
    let anchor = slot_anchor(task);
    let action = if error.can_retry() {
        let delay = backoff_for(shared, task)
            .delay(task.attempts, random_unit())
            .min(omniq_core::MAX_BACKOFF);
        if task.schedule.interval.is_some() {
            if let Ok(s) = anchor.format(&time::format_description::well_known::Rfc3339) {
                error
                    .context
                    .insert(SLOT_KEY.into(), serde_json::Value::String(s));
            }
        }
        FailAction::Retry {
            at: now.checked_add(delay).unwrap_or(now),
        }
    } else {
        match next_slot(task, now) {
            Ok(Some(at)) => FailAction::NextRun { at },
            Ok(None) => FailAction::Fail,
            Err(why) => {
                error = error.with_context("next_slot_error", why.message.as_str());
                FailAction::Fail
            }
        }
    };
    let will_retry = matches!(action, FailAction::Retry { .. });
    (
        Failure {
            lease,
            error,
            action,
            now,
        },
        will_retry,
    )
}

/// A uniform random number in [0, 1) for back-off jitter.
fn random_unit() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u64;
    (bits >> 11) as f64 / (1u64 << 53) as f64
}
