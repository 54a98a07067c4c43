//! The executor: one per claimed task. Waits for a run slot, starts the handler in its
//! own tokio task, enforces the timeout, and turns what happened into the outcome the
//! completer stores — the retry / next-run / fail decision is made here, once.

use super::completer::{Done, DoneKind, Msg};
use super::decide::{failure_for, next_slot, records_start, refuse, timeout_error};
use super::leases::Interrupt;
use super::panics;
use super::{Shared, log_storage_error};
use crate::handler::TaskCtx;
use crate::logging as events;
use crate::metrics::{self, RunEnd as MetricEnd};
use crate::middleware::{Next, RunOutput};
use futures::FutureExt;
use futures::future::BoxFuture;
use omniq_core::{
    Claimed, Completion, ErrorType, FailAction, Failure, LeaseRef, Outcome, Payload, Task,
    TaskError,
};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Instant;
use tokio::sync::oneshot;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tracing::Instrument;

/// How an executor ended (counted by shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RunEnd {
    /// The handler ran and its outcome went to the completer.
    Finished,
    /// The pool stopped before the task started: the claim was handed back.
    HandedBack,
    /// Another claim owns the task now; nothing was recorded.
    Interrupted,
}

/// What one run of a handler produced.
enum RunOutcome {
    Ok(Option<Payload>),
    Err(TaskError),
    Interrupted(Interrupt),
    /// This worker cannot run it (no handler): hand it back uncounted until `at`.
    Defer(TaskError, time::OffsetDateTime),
}

/// Forgets a run's lease if the executor panics before handing its outcome to the
/// completer, so the lease is not heartbeated forever. (An aborted executor keeps its
/// lease on purpose: shutdown hands those back.)
struct LeaseGuard<'a> {
    shared: &'a Shared,
    lease: LeaseRef,
    armed: bool,
}

impl Drop for LeaseGuard<'_> {
    fn drop(&mut self) {
        if self.armed && std::thread::panicking() {
            self.shared.leases.forget(&self.lease);
        }
    }
}

pub(super) async fn run(
    shared: Arc<Shared>,
    claimed: Claimed,
    permit: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) -> RunEnd {
    let lease = claimed.lease_ref();
    let task = claimed.task;
    let mut guard = LeaseGuard {
        shared: &shared,
        lease,
        armed: true,
    };
    // Wait for a run slot, unless the pool is stopping: then hand the claim back.
    let slot = tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => None,
        s = Arc::clone(&shared.run_slots).acquire_owned() => s.ok(),
    };
    let Some(slot) = slot else {
        let now = shared.queue.clock.now();
        match shared
            .call("release", shared.storage().release(&[lease], now))
            .await
        {
            Ok(_) => shared.leases.forget(&lease),
            Err(e) => log_storage_error(&e),
        }
        guard.armed = false;
        drop(permit);
        return RunEnd::HandedBack;
    };
    // Every line of this run carries task_id, operation, worker and correlation_id (the
    // task id: one id follows a task from enqueue through every run and retry). The run
    // logs two lines at INFO: started; completed with its duration, or failed.
    // The id is formatted once, here, for the span's two fields and both lines of the run.
    let mut id_buf = uuid::Uuid::encode_buffer();
    let id: &str = task.id.0.hyphenated().encode_lower(&mut id_buf);
    let span = events::task_span(&id, &"process_task", &id, Some(&shared.opts.name));
    let end = async {
        let started = Instant::now();
        events::log_task_started(id, task.attempts);
        if metrics::is_enabled() {
            let late = shared.queue.clock.now() - task.effective_eta();
            metrics::started(&task.queue, &task.func_path, late.unsigned_abs());
        }
        let outcome = execute(&shared, &task, id, &lease, slot).await;
        let elapsed = started.elapsed();
        // The failure lines carry the run's duration too (the completion line has its own).
        if !matches!(outcome, RunOutcome::Ok(_)) {
            tracing::Span::current().record("duration_ms", events::duration_ms(elapsed));
        }
        let kind = match outcome {
            RunOutcome::Interrupted(Interrupt::LeaseLost) => {
                tracing::warn!(target: "omniq::worker", task_id = %id, "Task lease lost: {} (another worker owns it now; result discarded)", id);
                shared.leases.forget(&lease);
                return RunEnd::Interrupted;
            }
            RunOutcome::Interrupted(Interrupt::Cancelled) => {
                let err = TaskError::new(ErrorType::User, "Task cancelled while running")
                    .with_retryable(false);
                events::log_task_failed(id, &err, false);
                DoneKind::Fail(Failure {
                    lease,
                    error: err,
                    action: FailAction::Fail,
                    now: shared.queue.clock.now(),
                })
            }
            RunOutcome::Defer(error, at) => {
                tracing::info!(target: "omniq::worker", task_id = %id, func_path = %task.func_path, "Task handed back: no handler for '{}' here; offered again at {at}", task.func_path);
                DoneKind::Fail(Failure {
                    lease,
                    error,
                    action: FailAction::Defer { at },
                    now: shared.queue.clock.now(),
                })
            }
            RunOutcome::Ok(result) => {
                events::log_task_completed(id, task.attempts, elapsed);
                metrics::finished(&task.queue, &task.func_path, MetricEnd::Succeeded, elapsed);
                let now = shared.queue.clock.now();
                match next_slot(&task, now) {
                    Ok(next_run) => DoneKind::Complete(Completion {
                        lease,
                        result,
                        now,
                        next_run,
                    }),
                    // The run worked but its series cannot continue: end it, saying why.
                    Err(error) => DoneKind::Fail(Failure {
                        lease,
                        error,
                        action: FailAction::Fail,
                        now,
                    }),
                }
            }
            RunOutcome::Err(err) => {
                if err.error_type == ErrorType::Decode {
                    events::log_serialization_error(id, &err);
                }
                if err.error_type == ErrorType::Timeout {
                    metrics::finished(&task.queue, &task.func_path, MetricEnd::TimedOut, elapsed);
                }
                let (failure, will_retry) = failure_for(&shared, &task, err, lease);
                events::log_task_failed(id, &failure.error, will_retry);
                let end = if will_retry {
                    MetricEnd::Retried
                } else {
                    MetricEnd::Failed
                };
                metrics::finished(&task.queue, &task.func_path, end, elapsed);
                if let FailAction::Retry { at } = failure.action {
                    events::log_task_retry(id, task.attempts.saturating_add(1), at);
                }
                DoneKind::Fail(failure)
            }
        };
        if shared.done_tx.send(Msg::Done(Done { kind, permit })).is_err() {
            // Stop heartbeating it, so the lease expires and the task is redelivered.
            shared.leases.forget(&lease);
            tracing::error!(target: "omniq::worker", task_id = %id, "completion channel closed; outcome left to lease expiry");
        }
        RunEnd::Finished
    }
    .instrument(span)
    .await;
    guard.armed = false;
    end
}

/// Runs one claimed task. `slot` is its run slot: it moves into the handler's task and
/// is freed only when that task really ends, even past a timeout or an abort, so
/// `concurrency` is never exceeded.
async fn execute(
    shared: &Arc<Shared>,
    task: &Task,
    id: &str,
    lease: &LeaseRef,
    slot: OwnedSemaphorePermit,
) -> RunOutcome {
    if let Some(err) = refuse(shared, task) {
        return RunOutcome::Err(err);
    }
    let Some(handler) = shared.registry.get(&task.func_path) else {
        return unknown_handler(shared, task);
    };
    if records_start(task) {
        if let Some(interrupt) = record_start(shared, lease).await {
            return RunOutcome::Interrupted(interrupt);
        }
    }
    let ctx = TaskCtx {
        task_id: task.id,
        func_path: task.func_path.clone(),
        attempt: task.attempts,
        queue: task.queue.clone(),
        correlation_id: id.to_owned(),
    };
    let args = task.args.clone();
    let format = shared.queue.format;
    // The run's clock starts when the handler itself starts (after the middleware in
    // front of it, which may wait for a limit).
    let handler_started = Arc::new(OnceLock::<Instant>::new());
    let (started_tx, started_rx) = oneshot::channel::<Instant>();
    let started_at = Arc::clone(&handler_started);
    let handler_ctx = ctx.clone();
    let inner = Box::new(move || -> BoxFuture<'static, RunOutput> {
        let at = Instant::now();
        let _ = started_at.set(at);
        let _ = started_tx.send(at);
        Box::pin(async move { RunOutput(handler(args, format, handler_ctx).await) })
    });
    let next = Next {
        chain: Arc::clone(&shared.middleware),
        index: 0,
        ctx,
        handler: inner,
    };
    let started = shared.leases.start(lease, shared.queue.clock.now(), || {
        tokio::spawn(
            async move {
                let _slot = slot;
                let result = AssertUnwindSafe(next.run())
                    .catch_unwind()
                    .await
                    .map(|out| out.0)
                    // Read the hook's note here, on the thread that panicked.
                    .map_err(|payload| panics::task_error(&*payload, panics::take()));
                (result, Instant::now())
            }
            .in_current_span(),
        )
    });
    let mut handle = match started {
        Ok(handle) => handle,
        Err(interrupt) => return RunOutcome::Interrupted(interrupt),
    };
    // The deadline is enforced here, outside the handler's task, so a handler that never
    // yields is still recorded as timed out (and aborted at its next yield).
    let joined = match task.timeout {
        Some(limit) => {
            let deadline = async move {
                match started_rx.await {
                    Ok(at) => tokio::time::sleep_until((at + limit.unsigned_abs()).into()).await,
                    // The chain answered without calling the handler: no deadline.
                    Err(_) => std::future::pending().await,
                }
            };
            tokio::select! {
                r = &mut handle => Some(r),
                _ = deadline => None,
            }
        }
        None => Some((&mut handle).await),
    };
    let timed_out = |ended: Instant| {
        let started = handler_started.get().copied();
        task.timeout.zip(started).is_some_and(|(limit, started)| {
            ended.saturating_duration_since(started) > limit.unsigned_abs()
        })
    };
    match joined {
        // Decided by when the handler really ended, not by which branch won the race: a
        // handler that blocked its thread past the limit finishes "first" once the thread
        // returns, and must still be recorded as timed out.
        Some(Ok((_, ended))) if timed_out(ended) => timeout_outcome(shared, task, lease),
        Some(Ok((Ok(Ok(result)), _))) => RunOutcome::Ok(result),
        Some(Ok((Ok(Err(e)), _))) => RunOutcome::Err(e),
        Some(Ok((Err(panic), _))) => RunOutcome::Err(panic),
        None => {
            handle.abort();
            timeout_outcome(shared, task, lease)
        }
        Some(Err(_)) => RunOutcome::Interrupted(
            shared
                .leases
                .interrupt_of(lease)
                .unwrap_or(Interrupt::LeaseLost),
        ),
    }
}

/// Records that this claim's handler is starting, before it runs, so the crash-loop
/// guard counts runs that really started. A stale lease interrupts the run; a storage
/// error is logged and the run goes ahead (the guard then counts one run less, which
/// only matters for a task that also crashes its workers).
async fn record_start(shared: &Shared, lease: &LeaseRef) -> Option<Interrupt> {
    match shared
        .call("start", shared.storage().start(std::slice::from_ref(lease)))
        .await
    {
        Ok(out) => match out.first() {
            Some(Outcome::LeaseLost | Outcome::NotFound) => Some(Interrupt::LeaseLost),
            _ => None,
        },
        Err(e) => {
            log_storage_error(&e);
            None
        }
    }
}

/// The context key holding when a task was first found without a handler.
const UNHANDLED_SINCE: &str = "unhandled_since";

/// A task whose handler this worker does not have: handed back (its attempt not counted)
/// while the grace period since it was first seen unhandled lasts — another worker, or
/// this one after a deploy, may know it — and failed for good after that.
fn unknown_handler(shared: &Shared, task: &Task) -> RunOutcome {
    let now = shared.queue.clock.now();
    let rfc = &time::format_description::well_known::Rfc3339;
    let since = task
        .error
        .as_ref()
        .and_then(|e| e.context.get(UNHANDLED_SINCE))
        .and_then(|v| v.as_str())
        .and_then(|s| time::OffsetDateTime::parse(s, rfc).ok())
        .unwrap_or(now);
    let grace = shared.opts.unknown_handler_grace;
    let registered = shared.registry.names().join(", ");
    if (now - since).unsigned_abs() >= grace {
        return RunOutcome::Err(
            TaskError::new(
                ErrorType::Validation,
                format!(
                    "no worker ran '{}' within {grace:?} (this worker has: {registered})",
                    task.func_path
                ),
            )
            .with_retryable(false)
            .with_context("func_path", &task.func_path),
        );
    }
    let mut error = TaskError::new(
        ErrorType::Validation,
        format!(
            "worker {} has no handler for '{}' (it has: {registered}); handed back",
            shared.opts.name, task.func_path
        ),
    )
    .with_context("func_path", &task.func_path);
    if let Ok(s) = since.format(rfc) {
        error
            .context
            .insert(UNHANDLED_SINCE.into(), serde_json::Value::String(s));
    }
    let delay = time::Duration::try_from(shared.opts.unknown_handler_delay)
        .unwrap_or(time::Duration::seconds(2));
    RunOutcome::Defer(error, now.checked_add(delay).unwrap_or(now))
}

/// A run past its timeout: timed out, unless it was interrupted meanwhile.
fn timeout_outcome(shared: &Shared, task: &Task, lease: &LeaseRef) -> RunOutcome {
    match shared.leases.interrupt_of(lease) {
        Some(i) => RunOutcome::Interrupted(i),
        None => RunOutcome::Err(timeout_error(task.timeout.unwrap_or_default())),
    }
}
