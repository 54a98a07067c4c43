//! The heartbeater: extends every held lease in one batch call per interval, and stops
//! runs whose lease was lost or whose cancellation was requested.

use super::leases::Interrupt;
use super::{Shared, log_storage_error};
use omniq_core::Outcome;
use std::sync::Arc;
use tokio::sync::watch;

pub(super) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let storage = Arc::clone(&shared.queue.storage);
    let mut tick = tokio::time::interval(shared.opts.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            // Keep extending leases while draining after stop; shutdown aborts us at the end.
            changed = stop.changed(), if !*stop.borrow() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        }
        if stop.has_changed().is_err() {
            // The pool is gone without a shutdown: its leases will expire.
            return;
        }
        let leases = shared.leases.leases();
        crate::metrics::held_leases(&shared.opts.name, leases.len());
        let now = shared.queue.clock.now();
        let until = now.checked_add(shared.opts.lease).unwrap_or(now);
        for chunk in leases.chunks(shared.max_batch()) {
            match shared
                .call("heartbeat", storage.heartbeat(chunk, until))
                .await
            {
                Ok(outcomes) if outcomes.len() == chunk.len() => {
                    for (lease, outcome) in chunk.iter().zip(outcomes) {
                        match outcome {
                            Outcome::Ok => shared.leases.extended(lease, until),
                            Outcome::CancelRequested => {
                                shared.leases.extended(lease, until);
                                shared.leases.interrupt(lease, Interrupt::Cancelled);
                            }
                            Outcome::LeaseLost | Outcome::NotFound => {
                                shared.leases.interrupt(lease, Interrupt::LeaseLost);
                            }
                        }
                    }
                }
                Ok(outcomes) => {
                    tracing::error!(target: "omniq::worker", "heartbeat returned {} outcomes for {} leases", outcomes.len(), chunk.len());
                }
                Err(e) => {
                    log_storage_error(&e);
                    // Leases we could not extend and that have run out are lost: another
                    // worker may hold the task now, so stop our run of it.
                    shared.leases.interrupt_lapsed(chunk, now);
                }
            }
        }
    }
}
