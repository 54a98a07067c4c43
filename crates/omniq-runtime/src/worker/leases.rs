//! [`LeaseTable`]: the leases a pool holds, from claim until the outcome is stored.
//!
//! It owns the one rule every actor relies on: a lease is identified by task **and
//! token**, so only the run that owns the current token may forget, extend or interrupt
//! it, and a newer claim of the same task (our lease lapsed and we got it back) interrupts
//! the older run.

use omniq_core::{Claimed, LeaseRef, LeaseToken, TaskId};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use time::OffsetDateTime;
use tokio::task::{AbortHandle, JoinHandle};

/// Why a run was interrupted from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Interrupt {
    /// Another claim owns the task now (lease expired, rescheduled, or gone).
    LeaseLost,
    /// Cancellation was requested.
    Cancelled,
}

/// One held lease.
struct Held {
    token: LeaseToken,
    /// When the lease ends unless a heartbeat extends it.
    until: OffsetDateTime,
    /// The handler's task, once started.
    abort: Option<AbortHandle>,
    interrupt: Option<Interrupt>,
}

/// The held leases, keyed by task; every method checks the token.
#[derive(Default)]
pub(super) struct LeaseTable {
    held: Mutex<HashMap<TaskId, Held>>,
}

impl LeaseTable {
    fn lock(&self) -> MutexGuard<'_, HashMap<TaskId, Held>> {
        // A panic while holding the lock leaves the map consistent (every write is one
        // insert/remove/field store), so a poisoned lock is used as is.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records new claims. A task already held under an older token was redelivered to
    /// us: that older run is stale, so its handler is aborted.
    pub(super) fn hold(&self, claimed: &[Claimed]) {
        let mut held = self.lock();
        for c in claimed {
            let fresh = Held {
                token: c.lease.token,
                until: c.lease.until,
                abort: None,
                interrupt: None,
            };
            if let Some(old) = held.insert(c.task.id, fresh) {
                if let Some(a) = old.abort {
                    a.abort();
                }
            }
        }
    }

    /// Forgets a lease, only if it is still the one held under its token.
    pub(super) fn forget(&self, lease: &LeaseRef) {
        let mut held = self.lock();
        if held
            .get(&lease.task_id)
            .is_some_and(|h| h.token == lease.token)
        {
            held.remove(&lease.task_id);
        }
    }

    /// Interrupts the run holding `lease` (once: the first reason wins) and aborts its
    /// handler; a lease that is no longer current is left alone.
    pub(super) fn interrupt(&self, lease: &LeaseRef, why: Interrupt) {
        let mut held = self.lock();
        if let Some(h) = held.get_mut(&lease.task_id) {
            if h.token == lease.token && h.interrupt.is_none() {
                h.interrupt = Some(why);
                if let Some(a) = &h.abort {
                    a.abort();
                }
            }
        }
    }

    /// Interrupts every lease of `leases` that ran out at `now` without being extended:
    /// another worker may hold the task by now.
    pub(super) fn interrupt_lapsed(&self, leases: &[LeaseRef], now: OffsetDateTime) {
        let lapsed: Vec<LeaseRef> = {
            let held = self.lock();
            leases
                .iter()
                .filter(|l| {
                    held.get(&l.task_id)
                        .is_some_and(|h| h.token == l.token && h.until <= now)
                })
                .copied()
                .collect()
        };
        for l in &lapsed {
            self.interrupt(l, Interrupt::LeaseLost);
        }
    }

    /// Why the run holding `lease` was interrupted; `LeaseLost` when the lease is no
    /// longer current (replaced by a newer claim, or gone).
    pub(super) fn interrupt_of(&self, lease: &LeaseRef) -> Option<Interrupt> {
        match self.lock().get(&lease.task_id) {
            Some(h) if h.token == lease.token => h.interrupt,
            _ => Some(Interrupt::LeaseLost),
        }
    }

    /// Records a heartbeat's extension of a current lease.
    pub(super) fn extended(&self, lease: &LeaseRef, until: OffsetDateTime) {
        if let Some(h) = self.lock().get_mut(&lease.task_id) {
            if h.token == lease.token {
                h.until = until;
            }
        }
    }

    /// Starts the handler of `lease` (through `spawn`) under the lock, unless the run
    /// was interrupted or its lease ran out while it waited: a cancelled or lost task
    /// never starts its handler, and neither does one whose lease expired (heartbeats
    /// failing during an outage).
    pub(super) fn start<T>(
        &self,
        lease: &LeaseRef,
        now: OffsetDateTime,
        spawn: impl FnOnce() -> JoinHandle<T>,
    ) -> Result<JoinHandle<T>, Interrupt> {
        let mut held = self.lock();
        match held.get_mut(&lease.task_id) {
            Some(h) if h.token == lease.token => {
                if let Some(i) = h.interrupt {
                    return Err(i);
                }
                if h.until <= now {
                    h.interrupt = Some(Interrupt::LeaseLost);
                    return Err(Interrupt::LeaseLost);
                }
                let handle = spawn();
                h.abort = Some(handle.abort_handle());
                Ok(handle)
            }
            _ => Err(Interrupt::LeaseLost),
        }
    }

    /// Every held lease.
    pub(super) fn leases(&self) -> Vec<LeaseRef> {
        self.lock()
            .iter()
            .map(|(id, h)| LeaseRef {
                task_id: *id,
                token: h.token,
            })
            .collect()
    }

    /// Aborts every started handler.
    pub(super) fn abort_all(&self) {
        for h in self.lock().values() {
            if let Some(a) = &h.abort {
                a.abort();
            }
        }
    }

    /// Takes every lease whose handler is not running (never started, or ended), for
    /// hand-back; leaves the others, whose handlers have not stopped yet, to expire.
    /// Returns the taken leases and how many were left.
    pub(super) fn take_idle(&self) -> (Vec<LeaseRef>, usize) {
        let mut held = self.lock();
        let idle: Vec<LeaseRef> = held
            .iter()
            .filter(|(_, h)| h.abort.as_ref().is_none_or(AbortHandle::is_finished))
            .map(|(id, h)| LeaseRef {
                task_id: *id,
                token: h.token,
            })
            .collect();
        for l in &idle {
            held.remove(&l.task_id);
        }
        (idle, held.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omniq_core::{Lease, Payload, Task};

    fn claimed(task: &Task, token: i64) -> Claimed {
        Claimed {
            task: task.clone(),
            lease: Lease {
                token: LeaseToken(token),
                until: OffsetDateTime::now_utc() + time::Duration::seconds(30),
            },
        }
    }

    #[test]
    fn only_the_current_token_may_forget_or_interrupt() {
        let table = LeaseTable::default();
        let task = Task::new("f", Payload(vec![]));
        let old = claimed(&task, 1);
        let new = claimed(&task, 2);
        table.hold(std::slice::from_ref(&old));
        table.hold(std::slice::from_ref(&new));
        // The stale run sees its lease lost and cannot touch the new one.
        assert_eq!(
            table.interrupt_of(&old.lease_ref()),
            Some(Interrupt::LeaseLost)
        );
        table.interrupt(&old.lease_ref(), Interrupt::Cancelled);
        table.forget(&old.lease_ref());
        assert_eq!(table.interrupt_of(&new.lease_ref()), None);
        assert_eq!(table.leases(), vec![new.lease_ref()]);
        // The first interrupt wins.
        table.interrupt(&new.lease_ref(), Interrupt::Cancelled);
        table.interrupt(&new.lease_ref(), Interrupt::LeaseLost);
        assert_eq!(
            table.interrupt_of(&new.lease_ref()),
            Some(Interrupt::Cancelled)
        );
        table.forget(&new.lease_ref());
        assert!(table.leases().is_empty());
    }

    #[test]
    fn a_lapsed_lease_is_interrupted_and_never_started() {
        let table = LeaseTable::default();
        let task = Task::new("f", Payload(vec![]));
        let c = claimed(&task, 1);
        table.hold(std::slice::from_ref(&c));
        table.interrupt_lapsed(&[c.lease_ref()], c.lease.until);
        assert_eq!(
            table.interrupt_of(&c.lease_ref()),
            Some(Interrupt::LeaseLost)
        );
    }
}
