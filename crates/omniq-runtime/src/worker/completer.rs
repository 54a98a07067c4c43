//! The completer: writes finished runs' outcomes to storage in batches. A claim permit
//! returns to the fetcher only after its outcome is stored, so a pool never holds more
//! than `concurrency + prefetch` claims.

use super::{Shared, deadline_after, log_storage_error};
use omniq_core::{
    Completion, ErrorType, FailAction, Failure, Outcome, Storage, StorageError, TaskError,
};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

/// A run's outcome to store.
pub(super) enum DoneKind {
    Complete(Completion),
    Fail(Failure),
}

/// An outcome and the claim permit it returns once stored.
pub(super) struct Done {
    pub(super) kind: DoneKind,
    pub(super) permit: OwnedSemaphorePermit,
}

/// What executors send the completer. (`Done` is large and `Shutdown` is sent once, so
/// boxing `Done` would only add an allocation per task.)
#[allow(clippy::large_enum_variant)]
pub(super) enum Msg {
    Done(Done),
    /// Every executor has ended: flush what is queued and stop.
    Shutdown,
}

pub(super) async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let max = shared.opts.completion_batch.min(shared.max_batch()).max(1);
    let mut shutting_down = false;
    while !shutting_down {
        let first = match rx.recv().await {
            Some(Msg::Done(d)) => d,
            Some(Msg::Shutdown) | None => break,
        };
        let mut batch = vec![first];
        // Take what is queued; give executors that are about to finish one scheduler turn
        // to join this batch (bigger batches, same latency when idle).
        let mut yielded = false;
        while batch.len() < max {
            match rx.try_recv() {
                Ok(Msg::Done(d)) => batch.push(d),
                Ok(Msg::Shutdown) => {
                    // Executors have all ended, so nothing can follow: flush and stop.
                    shutting_down = true;
                    while let Ok(Msg::Done(d)) = rx.try_recv() {
                        batch.push(d);
                    }
                    break;
                }
                Err(_) if !yielded => {
                    yielded = true;
                    tokio::task::yield_now().await;
                }
                Err(_) => break,
            }
        }
        while !batch.is_empty() {
            let rest = batch.split_off(batch.len().min(max));
            flush(&shared, std::mem::replace(&mut batch, rest)).await;
        }
    }
}

/// Stores one batch of outcomes, then forgets their leases and returns their claim
/// permits in one release (so the fetcher claims the freed capacity in one round trip).
async fn flush(shared: &Shared, batch: Vec<Done>) {
    let mut completes = Vec::new();
    let mut fails = Vec::new();
    let mut permits = Vec::with_capacity(batch.len());
    let mut leases = Vec::with_capacity(batch.len());
    for d in batch {
        match d.kind {
            DoneKind::Complete(c) => {
                leases.push(c.lease);
                completes.push(c);
            }
            DoneKind::Fail(f) => {
                leases.push(f.lease);
                fails.push(f);
            }
        }
        permits.push(d.permit);
    }
    // One retry budget for the whole flush: after a lease's worth of outage the tasks are
    // redelivered elsewhere anyway.
    let deadline = deadline_after(shared.opts.lease.unsigned_abs());
    if !completes.is_empty() {
        let rejected = write_items(shared, "complete", completes, deadline, |s, v| {
            Box::pin(s.complete(v))
        })
        .await;
        // A result the backend refuses for good (e.g. it cannot encode it) fails its task
        // with that reason instead of leaving it to be redelivered forever.
        for (c, e) in rejected {
            fails.push(Failure {
                lease: c.lease,
                error: TaskError::new(
                    ErrorType::Runtime,
                    format!("the task's result could not be stored: {e}"),
                )
                .with_retryable(false),
                // A recurring task keeps its series.
                action: c
                    .next_run
                    .map_or(FailAction::Fail, |at| FailAction::NextRun { at }),
                now: c.now,
            });
        }
    }
    if !fails.is_empty() {
        for (f, e) in write_items(shared, "fail", fails, deadline, |s, v| Box::pin(s.fail(v))).await
        {
            tracing::error!(target: "omniq::worker", task_id = %f.lease.task_id, "could not record the failure of task {}: {e}; it will be redelivered after its lease", f.lease.task_id);
        }
    }
    for l in &leases {
        shared.leases.forget(l);
    }
    let mut permits = permits.into_iter();
    if let Some(mut all) = permits.next() {
        for p in permits {
            all.merge(p);
        }
        drop(all);
    }
}

type WriteFut<'a> = futures::future::BoxFuture<'a, Result<Vec<Outcome>, StorageError>>;

/// Writes `items` as one batch; temporary errors are retried with back-off until
/// `deadline` (after that the leases have expired and the tasks are redelivered). A
/// permanent error splits the batch so one bad item cannot sink the others; returns the
/// items the backend refused for good, with the reason (shared, source chain intact).
async fn write_items<T: Clone>(
    shared: &Shared,
    op: &'static str,
    items: Vec<T>,
    deadline: tokio::time::Instant,
    f: impl for<'a> Fn(&'a dyn Storage, Vec<T>) -> WriteFut<'a> + Copy,
) -> Vec<(T, Arc<StorageError>)> {
    let storage = shared.storage();
    let mut refused = Vec::new();
    let mut pending = vec![items];
    while let Some(batch) = pending.pop() {
        let mut delay = std::time::Duration::from_millis(50);
        loop {
            match shared.call(op, f(storage, batch.clone())).await {
                Ok(outcomes) => {
                    let lost = outcomes
                        .iter()
                        .filter(|o| **o == Outcome::LeaseLost)
                        .count();
                    if lost > 0 {
                        tracing::warn!(target: "omniq::worker", "{op}: {lost} lease(s) lost, outcome(s) discarded (the tasks were redelivered)");
                    }
                    break;
                }
                Err(e) if e.is_temporary() && tokio::time::Instant::now() < deadline => {
                    log_storage_error(&e);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(5));
                }
                Err(e) if e.is_temporary() => {
                    // Still down after the lease: the tasks are redelivered elsewhere, so
                    // these outcomes would be fenced off anyway.
                    log_storage_error(&e);
                    tracing::warn!(target: "omniq::worker", "{op}: storage still unavailable, giving up on {} outcome(s); their tasks are redelivered after the lease", batch.len());
                    break;
                }
                Err(e) if batch.len() > 1 => {
                    log_storage_error(&e);
                    // Bisect: find the item(s) the backend refuses.
                    let mut left = batch;
                    let right = left.split_off(left.len() / 2);
                    pending.push(right);
                    pending.push(left);
                    break;
                }
                Err(e) => {
                    log_storage_error(&e);
                    let e = Arc::new(e);
                    refused.extend(batch.into_iter().map(|item| (item, Arc::clone(&e))));
                    break;
                }
            }
        }
    }
    refused
}
