//! Shutdown, in a fixed order: stop claiming; hand back unstarted claims; drain (or abort
//! at the deadline); flush every outcome while heartbeats still run; stop heartbeats;
//! release what is still held.
//!
//! It is bounded even when the backend hangs: the fetcher gets until `timeout` (at
//! least one `storage_timeout`) to end, the drain until `timeout`, and the final flush
//! and hand-back share one more `storage_timeout`; what is cut short is redelivered
//! after its lease, as after a crash.

use super::executor::RunEnd;
use super::{Running, StopReport, deadline_after, log_storage_error};
use crate::logging as events;
use std::time::Duration;
use tokio::task::JoinSet;

/// How long aborted handlers get to reach their next await point and end.
const ABORT_GRACE: Duration = Duration::from_millis(250);

pub(super) async fn run(running: Running, timeout: Duration, name: String) -> StopReport {
    let _ = running.stop_tx.send(true);
    let shared = running.shared;
    let storage_timeout = shared.opts.storage_timeout;
    let deadline = deadline_after(timeout);
    // The fetcher ends after its claim in flight and its hand-back of unstarted claims,
    // each bounded by storage_timeout; past that the backend hangs, and it is cut off.
    let mut fetcher = running.fetcher;
    let fetcher_deadline = deadline.max(deadline_after(storage_timeout));
    let fetched = match tokio::time::timeout_at(fetcher_deadline, &mut fetcher).await {
        Ok(r) => r,
        Err(_) => {
            fetcher.abort();
            tracing::warn!(target: "omniq::worker", worker = %name, "the fetcher did not stop within {:?}; its claims are redelivered when their leases expire", timeout.max(storage_timeout));
            shared.leases.abort_all();
            Ok(JoinSet::new())
        }
    };
    let mut set = match fetched {
        Ok(set) => set,
        Err(e) => {
            // Its executors were dropped with it; their handlers may still be going.
            tracing::error!(target: "omniq::worker", worker = %name, "fetcher task failed: {e}");
            shared.leases.abort_all();
            JoinSet::new()
        }
    };
    // Runs that had already ended before stop are not "drained" by it.
    while set.try_join_next().is_some() {}
    let mut report = StopReport::default();
    loop {
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(Some(Ok(RunEnd::Finished))) => report.drained += 1,
            Ok(Some(Ok(RunEnd::HandedBack))) => report.handed_back += 1,
            Ok(Some(Ok(RunEnd::Interrupted))) => {}
            Ok(Some(Err(e))) => {
                tracing::error!(target: "omniq::worker", worker = %name, "task runner failed: {e}");
            }
            Ok(None) => break,
            Err(_) => {
                // Timed out: abort the executors first (so none of them sees its handler
                // end and gives up its lease), then the handler tasks themselves. Their
                // leases are handed back below.
                report.aborted = set.len();
                set.abort_all();
                while set.join_next().await.is_some() {}
                shared.leases.abort_all();
                break;
            }
        }
    }
    // Every executor has ended: let the completer flush what is queued, while heartbeats
    // keep the leases alive, then stop heartbeats. The flush and the final hand-back
    // share one storage_timeout, so a hung backend cannot hold stop up.
    let cap = deadline_after(storage_timeout);
    let _ = shared.done_tx.send(super::Msg::Shutdown);
    let mut completer = running.completer;
    if tokio::time::timeout_at(cap, &mut completer).await.is_err() {
        completer.abort();
        let _ = completer.await;
        tracing::warn!(target: "omniq::worker", worker = %name, "outcomes not stored within {storage_timeout:?} (storage_timeout) at stop; their tasks are redelivered");
    }
    running.heartbeater.abort();
    let _ = running.heartbeater.await;
    // Aborted handlers end at their next await; each holds its run slot until it really
    // has. Wait (briefly) until every slot is free again.
    let all_slots = u32::try_from(shared.opts.concurrency).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(ABORT_GRACE, shared.run_slots.acquire_many(all_slots)).await;
    // What is still held never got an outcome stored: hand it back — unless its handler
    // has not actually ended: that lease is left to expire, so the task cannot run twice
    // at once.
    let (idle, busy) = shared.leases.take_idle();
    if busy > 0 {
        tracing::warn!(target: "omniq::worker", worker = %name, "{busy} handler(s) did not stop in time; their tasks are redelivered when their leases expire");
    }
    if !idle.is_empty() {
        let now = shared.queue.clock.now();
        for chunk in idle.chunks(shared.max_batch()) {
            let release = shared.call("release", shared.storage().release(chunk, now));
            match tokio::time::timeout_at(cap, release).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => log_storage_error(&e),
                Err(_) => {
                    tracing::warn!(target: "omniq::worker", worker = %name, "could not hand back {} task(s) within storage_timeout at stop; they are redelivered when their leases expire", idle.len());
                    break;
                }
            }
        }
    }
    events::log_worker_stopped(&name);
    // The log lines of this run are in their files when stop returns (within the same
    // storage_timeout as the final flush and hand-back).
    events::flush_writers(cap).await;
    report
}
