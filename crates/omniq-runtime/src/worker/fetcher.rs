//! The fetcher: claims as many tasks as it has free claim permits, one storage call per
//! batch, and hands each to an executor. When the queues run dry it sleeps until the
//! next task falls due, a wake-up hint arrives, or `poll_interval` passes.

use super::executor::{self, RunEnd};
use super::{Shared, log_storage_error};
use omniq_core::{ClaimRequest, Claimed, LeaseRef, StorageError, Wake};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

pub(super) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) -> JoinSet<RunEnd> {
    let capacity = shared.opts.concurrency + shared.opts.prefetch;
    let claim_permits = Arc::new(Semaphore::new(capacity));
    let storage = Arc::clone(&shared.queue.storage);
    let mut wake = if storage.capabilities().push_wakeup {
        storage.subscribe()
    } else {
        None
    };
    let mut set = JoinSet::new();
    let mut error_backoff = Duration::from_millis(50);
    let mut idle = IdleWait::default();
    // A `next_due` query a hint interrupted, still running.
    let mut in_flight: Option<JoinHandle<Result<Option<OffsetDateTime>, StorageError>>> = None;
    let max_batch = shared.max_batch();
    loop {
        if *stop.borrow() {
            break;
        }
        // Reap finished executors so the set does not grow without bound.
        while let Some(r) = set.try_join_next() {
            if let Err(e) = r {
                tracing::error!(target: "omniq::worker", "task runner failed: {e}");
            }
        }
        let first = tokio::select! {
            p = Arc::clone(&claim_permits).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.changed() => break,
        };
        let mut permits = vec![first];
        while permits.len() < max_batch {
            match Arc::clone(&claim_permits).try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        if let Some(rx) = wake.as_mut() {
            // Hints that arrived before this claim are answered by it.
            while rx.try_recv().is_ok() {}
        }
        let wanted = permits.len();
        let req = ClaimRequest {
            queues: shared.opts.queues.clone(),
            limit: wanted,
            now: shared.queue.clock.now(),
            lease: shared.opts.lease,
        };
        // Not raced against stop: a claim dropped mid-flight could commit and strand its
        // tasks until their leases expire.
        let mut claimed = match shared.call("claim", storage.claim(req)).await {
            Ok(c) => {
                error_backoff = Duration::from_millis(50);
                c
            }
            Err(e) => {
                log_storage_error(&e);
                drop(permits);
                // The server may come back: back off and try again.
                tokio::select! {
                    _ = tokio::time::sleep(error_backoff) => {}
                    _ = stop.changed() => break,
                }
                error_backoff = (error_backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if claimed.len() > wanted {
            // A backend returned more than asked: never hold more than we can start.
            let extra: Vec<LeaseRef> = claimed
                .split_off(wanted)
                .iter()
                .map(Claimed::lease_ref)
                .collect();
            let now = shared.queue.clock.now();
            if let Err(e) = shared.call("release", storage.release(&extra, now)).await {
                log_storage_error(&e);
            }
        }
        let got = claimed.len();
        if got > 0 {
            tracing::debug!(target: "omniq::worker", worker = %shared.opts.name, claimed = got, requested = wanted, "Claimed {got} task(s)");
        }
        shared.leases.hold(&claimed);
        for c in claimed {
            let Some(permit) = permits.pop() else { break };
            set.spawn(executor::run(Arc::clone(&shared), c, permit, stop.clone()));
        }
        drop(permits);
        if got == wanted {
            idle = IdleWait::default();
            continue;
        }
        // Short claim: the queues are drained for now.
        let sleep = match wake.as_mut() {
            Some(rx) => {
                if work_pending(rx, &shared.opts.queues) {
                    // Work announced while this claim ran: claim again at once.
                    continue;
                }
                // Ask when the next task falls due while listening for hints: a hint that
                // arrives meanwhile is answered at once instead of after the query. The
                // query runs in its own task, so it is never dropped mid-flight; a woken
                // fetcher leaves it running and waits for it before asking again, so at
                // most one is in flight (its answer, older than the latest claim, unused).
                if let Some(mut earlier) = in_flight.take() {
                    tokio::select! {
                        _ = wait_for_work(Some(&mut *rx), &shared.opts.queues) => {
                            in_flight = Some(earlier);
                            continue;
                        }
                        _ = &mut earlier => {}
                        _ = stop.changed() => break,
                    }
                }
                let asked = Arc::clone(&shared);
                let mut due = tokio::spawn(async move {
                    asked
                        .call("next_due", asked.storage().next_due(&asked.opts.queues))
                        .await
                });
                tokio::select! {
                    _ = wait_for_work(Some(&mut *rx), &shared.opts.queues) => {
                        in_flight = Some(due);
                        continue;
                    }
                    r = &mut due => match r {
                        Ok(answer) => idle.after(&shared, answer),
                        Err(_) => shared.opts.poll_interval,
                    },
                    _ = stop.changed() => break,
                }
            }
            None => {
                let answer = shared
                    .call("next_due", storage.next_due(&shared.opts.queues))
                    .await;
                idle.after(&shared, answer)
            }
        };
        tokio::select! {
            _ = wait_for_work(wake.as_mut(), &shared.opts.queues) => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = stop.changed() => break,
        }
    }
    set
}

/// How long an idle fetcher sleeps: until the next task falls due (asked of the storage),
/// never longer than `poll_interval`. When the storage says work is due but the claim
/// came back short (a race with another worker, or a record it cannot claim), the sleeps
/// grow from zero so such a record cannot make the fetcher spin.
#[derive(Default)]
struct IdleWait {
    overdue_streak: u32,
}

impl IdleWait {
    /// The sleep after `next_due` answered `answer`.
    fn after(
        &mut self,
        shared: &Shared,
        answer: Result<Option<OffsetDateTime>, StorageError>,
    ) -> Duration {
        let poll = shared.opts.poll_interval;
        let due = match answer {
            Ok(due) => due,
            Err(e) => {
                log_storage_error(&e);
                return poll;
            }
        };
        let Some(due) = due else {
            self.overdue_streak = 0;
            return poll;
        };
        let until = due - shared.queue.clock.now();
        if until.is_positive() {
            self.overdue_streak = 0;
            return until.unsigned_abs().min(poll);
        }
        let backoff = match self.overdue_streak {
            0 => Duration::ZERO,
            n => Duration::from_millis(1u64 << n.min(10)),
        };
        self.overdue_streak = self.overdue_streak.saturating_add(1);
        backoff.min(poll)
    }
}

/// Whether a `Work` hint for one of `queues` (or a lag, which may have hidden one) is
/// already waiting; takes the hints it looks at.
fn work_pending(rx: &mut broadcast::Receiver<Wake>, queues: &[String]) -> bool {
    loop {
        match rx.try_recv() {
            Ok(Wake::Work { queue }) if queues.contains(&queue) => return true,
            Ok(_) => continue,
            Err(TryRecvError::Lagged(_)) => return true,
            Err(TryRecvError::Empty | TryRecvError::Closed) => return false,
        }
    }
}

/// Resolves at the first `Work` hint for one of `queues` (or a lagged receiver, which
/// may have missed one); never, without a receiver.
async fn wait_for_work(rx: Option<&mut broadcast::Receiver<Wake>>, queues: &[String]) {
    let Some(rx) = rx else {
        return std::future::pending().await;
    };
    loop {
        match rx.recv().await {
            Ok(Wake::Work { queue }) if queues.contains(&queue) => return,
            Ok(_) => continue,
            Err(RecvError::Lagged(_)) => return,
            Err(RecvError::Closed) => return std::future::pending().await,
        }
    }
}
