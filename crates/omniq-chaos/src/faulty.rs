//! [`FaultyStorage`]: a [`Storage`] around another that fails a fraction of its calls,
//! and can hang every call until released.
//!
//! A failed write is one of two faults, chosen at random with equal odds:
//!
//! - **refused**: the call fails before reaching the backend (nothing happened);
//! - **ambiguous commit**: the call reaches the backend and is applied, and the caller
//!   gets an error anyway (a connection that dropped after the commit).
//!
//! Reads are only ever refused. Every fault is an `Unavailable` storage error, which is
//! what a network or server failure looks like to the runtime.

use async_trait::async_trait;
use omniq_core::{
    CancelOutcome, Capabilities, ClaimRequest, Claimed, Completion, Enqueued, Failure, LeaseRef,
    Outcome, Page, QueueCounts, Storage, StorageError, TaskFilter, Wake,
};
use omniq_core::{Task, TaskId, TaskResult};
use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use time::OffsetDateTime;
use tokio::sync::Notify;

/// Which fault a call got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Failed before reaching the backend.
    Refused,
    /// Applied by the backend, reported as failed.
    Ambiguous,
}

impl Fault {
    /// `refused` or `ambiguous`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Ambiguous => "ambiguous",
        }
    }
}

/// Called for every injected fault with the operation's name.
pub type FaultHook = Box<dyn Fn(&'static str, Fault) + Send + Sync>;

/// Fails a fraction of the calls of the storage it wraps (see the [module docs](self)).
pub struct FaultyStorage {
    inner: Arc<dyn Storage>,
    /// Per-mille chance of a fault per call.
    p_milli: AtomicU64,
    rng: Mutex<u64>,
    faults: AtomicU64,
    hung: AtomicBool,
    released: Notify,
    hook: Option<FaultHook>,
}

impl fmt::Debug for FaultyStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStorage")
            .field("inner", &self.inner)
            .field("p", &self.probability())
            .field("faults", &self.faults())
            .field("hung", &self.hung.load(Ordering::SeqCst))
            .finish()
    }
}

impl FaultyStorage {
    /// Wraps `inner`, failing each call with probability `p` (0.0 ..= 1.0), with the
    /// random choices drawn from `seed`.
    pub fn new(inner: Arc<dyn Storage>, p: f64, seed: u64) -> Self {
        Self {
            inner,
            p_milli: AtomicU64::new(to_milli(p)),
            rng: Mutex::new(seed ^ 0x9E37_79B9_7F4A_7C15),
            faults: AtomicU64::new(0),
            hung: AtomicBool::new(false),
            released: Notify::new(),
            hook: None,
        }
    }

    /// Calls `hook` for every fault injected (to log it).
    pub fn with_hook(mut self, hook: FaultHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// The fault probability now.
    pub fn probability(&self) -> f64 {
        self.p_milli.load(Ordering::SeqCst) as f64 / 1000.0
    }

    /// Changes the fault probability.
    pub fn set_probability(&self, p: f64) {
        self.p_milli.store(to_milli(p), Ordering::SeqCst);
    }

    /// Faults injected so far.
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::SeqCst)
    }

    /// From now on every call (but `close`) waits until [`FaultyStorage::release`].
    pub fn hang(&self) {
        self.hung.store(true, Ordering::SeqCst);
    }

    /// Lets hung and later calls through.
    pub fn release(&self) {
        self.hung.store(false, Ordering::SeqCst);
        self.released.notify_waiters();
    }

    async fn gate(&self) {
        loop {
            let released = self.released.notified();
            if !self.hung.load(Ordering::SeqCst) {
                return;
            }
            released.await;
        }
    }

    /// Rolls the dice for one call: None (no fault) or the fault to inject. Reads are
    /// only ever refused.
    fn roll(&self, op: &'static str, write: bool) -> Option<Fault> {
        let p = self.p_milli.load(Ordering::SeqCst);
        if p == 0 {
            return None;
        }
        let r = {
            let mut s = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            splitmix(&mut s)
        };
        if r % 1000 >= p {
            return None;
        }
        let fault = if write && (r >> 32) % 2 == 0 {
            Fault::Ambiguous
        } else {
            Fault::Refused
        };
        self.faults.fetch_add(1, Ordering::SeqCst);
        if let Some(hook) = &self.hook {
            hook(op, fault);
        }
        Some(fault)
    }

    fn error(&self, op: &'static str, fault: Fault) -> StorageError {
        StorageError::unavailable(
            self.inner.backend_name(),
            format!("injected fault ({}) in {op}", fault.as_str()),
        )
        .with_operation(op)
    }

    /// Runs one write under the fault model.
    async fn write<T, F>(&self, op: &'static str, call: F) -> Result<T, StorageError>
    where
        F: Future<Output = Result<T, StorageError>>,
    {
        self.gate().await;
        match self.roll(op, true) {
            None => call.await,
            Some(Fault::Refused) => Err(self.error(op, Fault::Refused)),
            Some(Fault::Ambiguous) => {
                // Applied (or failed on its own), and reported as failed either way.
                let _ = call.await;
                Err(self.error(op, Fault::Ambiguous))
            }
        }
    }

    /// Runs one read under the fault model.
    async fn read<T, F>(&self, op: &'static str, call: F) -> Result<T, StorageError>
    where
        F: Future<Output = Result<T, StorageError>>,
    {
        self.gate().await;
        match self.roll(op, false) {
            None => call.await,
            Some(fault) => Err(self.error(op, fault)),
        }
    }
}

fn to_milli(p: f64) -> u64 {
    (p.clamp(0.0, 1.0) * 1000.0).round() as u64
}

/// SplitMix64: a small, good-enough generator for choosing faults.
pub(crate) fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[async_trait]
impl Storage for FaultyStorage {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<Wake>> {
        self.inner.subscribe()
    }
    async fn enqueue(&self, t: Vec<Task>) -> Result<Vec<Enqueued>, StorageError> {
        self.write("enqueue", self.inner.enqueue(t)).await
    }
    async fn claim(&self, r: ClaimRequest) -> Result<Vec<Claimed>, StorageError> {
        self.write("claim", self.inner.claim(r)).await
    }
    async fn next_due(&self, q: &[String]) -> Result<Option<OffsetDateTime>, StorageError> {
        self.read("next_due", self.inner.next_due(q)).await
    }
    async fn heartbeat(
        &self,
        l: &[LeaseRef],
        until: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        self.write("heartbeat", self.inner.heartbeat(l, until))
            .await
    }
    async fn start(&self, l: &[LeaseRef]) -> Result<Vec<Outcome>, StorageError> {
        self.write("start", self.inner.start(l)).await
    }
    async fn complete(&self, c: Vec<Completion>) -> Result<Vec<Outcome>, StorageError> {
        self.write("complete", self.inner.complete(c)).await
    }
    async fn fail(&self, f: Vec<Failure>) -> Result<Vec<Outcome>, StorageError> {
        self.write("fail", self.inner.fail(f)).await
    }
    async fn release(
        &self,
        l: &[LeaseRef],
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        self.write("release", self.inner.release(l, now)).await
    }
    async fn get_task(&self, id: &TaskId) -> Result<Option<Task>, StorageError> {
        self.read("get_task", self.inner.get_task(id)).await
    }
    async fn reschedule(
        &self,
        id: &TaskId,
        eta: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        self.write("reschedule", self.inner.reschedule(id, eta, now))
            .await
    }
    async fn get_result(&self, id: &TaskId) -> Result<Option<TaskResult>, StorageError> {
        self.read("get_result", self.inner.get_result(id)).await
    }
    async fn cancel(
        &self,
        id: &TaskId,
        now: OffsetDateTime,
    ) -> Result<CancelOutcome, StorageError> {
        self.write("cancel", self.inner.cancel(id, now)).await
    }
    async fn list_tasks(&self, f: TaskFilter) -> Result<Page<Task>, StorageError> {
        self.read("list_tasks", self.inner.list_tasks(f)).await
    }
    async fn counts(&self, q: Option<&str>) -> Result<Vec<QueueCounts>, StorageError> {
        self.read("counts", self.inner.counts(q)).await
    }
    async fn purge_results(&self, older: OffsetDateTime) -> Result<u64, StorageError> {
        self.write("purge_results", self.inner.purge_results(older))
            .await
    }
    async fn close(&self) -> Result<(), StorageError> {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fault_rate_is_close_to_p() {
        let s = FaultyStorage::new(Arc::new(NoStorage), 0.1, 7);
        let n = 100_000;
        let faults = (0..n).filter(|_| s.roll("claim", true).is_some()).count();
        assert!((9_000..11_000).contains(&faults), "{faults}");
        assert_eq!(s.faults(), faults as u64);
    }

    /// Never called: the dice tests do not reach the backend.
    #[derive(Debug)]
    struct NoStorage;

    #[async_trait]
    impl Storage for NoStorage {
        fn backend_name(&self) -> &'static str {
            "none"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }
        fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<Wake>> {
            None
        }
        async fn enqueue(&self, _: Vec<Task>) -> Result<Vec<Enqueued>, StorageError> {
            unreachable!()
        }
        async fn claim(&self, _: ClaimRequest) -> Result<Vec<Claimed>, StorageError> {
            unreachable!()
        }
        async fn next_due(&self, _: &[String]) -> Result<Option<OffsetDateTime>, StorageError> {
            unreachable!()
        }
        async fn heartbeat(
            &self,
            _: &[LeaseRef],
            _: OffsetDateTime,
        ) -> Result<Vec<Outcome>, StorageError> {
            unreachable!()
        }
        async fn start(&self, _: &[LeaseRef]) -> Result<Vec<Outcome>, StorageError> {
            unreachable!()
        }
        async fn complete(&self, _: Vec<Completion>) -> Result<Vec<Outcome>, StorageError> {
            unreachable!()
        }
        async fn fail(&self, _: Vec<Failure>) -> Result<Vec<Outcome>, StorageError> {
            unreachable!()
        }
        async fn release(
            &self,
            _: &[LeaseRef],
            _: OffsetDateTime,
        ) -> Result<Vec<Outcome>, StorageError> {
            unreachable!()
        }
        async fn get_task(&self, _: &TaskId) -> Result<Option<Task>, StorageError> {
            unreachable!()
        }
        async fn reschedule(
            &self,
            _: &TaskId,
            _: OffsetDateTime,
            _: OffsetDateTime,
        ) -> Result<(), StorageError> {
            unreachable!()
        }
        async fn get_result(&self, _: &TaskId) -> Result<Option<TaskResult>, StorageError> {
            unreachable!()
        }
        async fn cancel(
            &self,
            _: &TaskId,
            _: OffsetDateTime,
        ) -> Result<CancelOutcome, StorageError> {
            unreachable!()
        }
        async fn list_tasks(&self, _: TaskFilter) -> Result<Page<Task>, StorageError> {
            unreachable!()
        }
        async fn counts(&self, _: Option<&str>) -> Result<Vec<QueueCounts>, StorageError> {
            unreachable!()
        }
        async fn purge_results(&self, _: OffsetDateTime) -> Result<u64, StorageError> {
            unreachable!()
        }
        async fn close(&self) -> Result<(), StorageError> {
            Ok(())
        }
    }
}
