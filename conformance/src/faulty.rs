//! Deliberately faulty backends: the suite's self-test.
//!
//! A conformance suite that cannot fail proves nothing. Each wrapper here sits around a
//! correct inner [`Storage`] and breaks exactly one rule; the crate's own test
//! (`tests/faulty.rs`) runs the cases aimed at that rule against the wrapper and checks
//! that they **fail**, and that the same cases pass on the unwrapped storage.
//!
//! | wrapper | breaks | caught by |
//! |---|---|---|
//! | [`ClaimsTwice`] | a claim re-returns tasks already handed out under a live lease | [`ClaimsTwice::TARGETS`] |
//! | [`IgnoresEta`] | claims as if every eta had passed | [`IgnoresEta::TARGETS`] |
//! | [`DropsErrorContext`] | stores failures without `TaskError::context` | [`DropsErrorContext::TARGETS`] |
//! | [`IgnoresFencing`] | reports stale-token writes as applied | [`IgnoresFencing::TARGETS`] |
//!
//! ```
//! use omniq_conformance::faulty::{FAULTS, FaultyFactory};
//! assert!(FAULTS.iter().all(|f| !f.targets.is_empty()));
//! # let _ = FaultyFactory::<omniq_conformance::faulty::NoFactory>::new;
//! ```
//!
//! These wrappers are for testing the suite only; never use them as storage.

use crate::StorageFactory;
use async_trait::async_trait;
use omniq_core::{
    CancelOutcome, Capabilities, ClaimRequest, Claimed, Completion, Failure, LeaseRef, Outcome,
    Page, QueueCounts, Storage, StorageError, Task, TaskFilter, TaskId, TaskResult, Wake,
};
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use time::{Duration, OffsetDateTime};

/// The overridable part of a faulty wrapper; everything else passes through.
#[async_trait]
trait Hooks: Send + Sync + fmt::Debug + 'static {
    fn inner(&self) -> &Arc<dyn Storage>;

    fn caps(&self) -> Capabilities {
        self.inner().capabilities()
    }

    async fn on_claim(&self, req: ClaimRequest) -> Result<Vec<Claimed>, StorageError> {
        self.inner().claim(req).await
    }

    async fn on_heartbeat(
        &self,
        leases: &[LeaseRef],
        until: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        self.inner().heartbeat(leases, until).await
    }

    async fn on_complete(&self, items: Vec<Completion>) -> Result<Vec<Outcome>, StorageError> {
        self.inner().complete(items).await
    }

    async fn on_fail(&self, items: Vec<Failure>) -> Result<Vec<Outcome>, StorageError> {
        self.inner().fail(items).await
    }
}

/// Implements [`Storage`] for a wrapper by passing through to its inner storage,
/// except for the four [`Hooks`].
macro_rules! faulty_storage {
    ($ty:ident) => {
        impl $ty {
            /// Wraps `inner`.
            pub fn wrap(inner: Arc<dyn Storage>) -> Arc<dyn Storage> {
                Arc::new(Self::new(inner))
            }
        }

        #[async_trait]
        impl Storage for $ty {
            fn backend_name(&self) -> &'static str {
                self.inner.backend_name()
            }
            fn capabilities(&self) -> Capabilities {
                Hooks::caps(self)
            }
            async fn enqueue(
                &self,
                tasks: Vec<Task>,
            ) -> Result<Vec<omniq_core::Enqueued>, StorageError> {
                self.inner.enqueue(tasks).await
            }
            async fn claim(&self, req: ClaimRequest) -> Result<Vec<Claimed>, StorageError> {
                Hooks::on_claim(self, req).await
            }
            async fn next_due(
                &self,
                queues: &[String],
            ) -> Result<Option<OffsetDateTime>, StorageError> {
                self.inner.next_due(queues).await
            }
            async fn heartbeat(
                &self,
                leases: &[LeaseRef],
                until: OffsetDateTime,
            ) -> Result<Vec<Outcome>, StorageError> {
                Hooks::on_heartbeat(self, leases, until).await
            }
            async fn complete(&self, items: Vec<Completion>) -> Result<Vec<Outcome>, StorageError> {
                Hooks::on_complete(self, items).await
            }
            async fn fail(&self, items: Vec<Failure>) -> Result<Vec<Outcome>, StorageError> {
                Hooks::on_fail(self, items).await
            }
            async fn release(
                &self,
                leases: &[LeaseRef],
                now: OffsetDateTime,
            ) -> Result<Vec<Outcome>, StorageError> {
                self.inner.release(leases, now).await
            }
            async fn get_task(&self, id: &TaskId) -> Result<Option<Task>, StorageError> {
                self.inner.get_task(id).await
            }
            async fn reschedule(
                &self,
                id: &TaskId,
                new_eta: OffsetDateTime,
                now: OffsetDateTime,
            ) -> Result<(), StorageError> {
                self.inner.reschedule(id, new_eta, now).await
            }
            async fn get_result(&self, id: &TaskId) -> Result<Option<TaskResult>, StorageError> {
                self.inner.get_result(id).await
            }
            async fn cancel(
                &self,
                id: &TaskId,
                now: OffsetDateTime,
            ) -> Result<CancelOutcome, StorageError> {
                self.inner.cancel(id, now).await
            }
            async fn list_tasks(&self, filter: TaskFilter) -> Result<Page<Task>, StorageError> {
                self.inner.list_tasks(filter).await
            }
            async fn counts(&self, queue: Option<&str>) -> Result<Vec<QueueCounts>, StorageError> {
                self.inner.counts(queue).await
            }
            async fn purge_results(&self, older_than: OffsetDateTime) -> Result<u64, StorageError> {
                self.inner.purge_results(older_than).await
            }
            async fn close(&self) -> Result<(), StorageError> {
                self.inner.close().await
            }
            fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<Wake>> {
                self.inner.subscribe()
            }
        }
    };
}

/// Breaks atomic claims: every task a claim hands out is handed out once more by a later claim,
/// as if leases did not exist.
#[derive(Debug)]
pub struct ClaimsTwice {
    inner: Arc<dyn Storage>,
    handed_out: Mutex<VecDeque<Claimed>>,
}

impl ClaimsTwice {
    /// The cases that must fail against this wrapper.
    pub const TARGETS: &'static [&'static str] = &[
        "atomic_claim_under_concurrent_claimers",
        "live_lease_is_not_redelivered",
    ];

    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self {
            inner,
            handed_out: Mutex::default(),
        }
    }
}

#[async_trait]
impl Hooks for ClaimsTwice {
    fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }

    async fn on_claim(&self, req: ClaimRequest) -> Result<Vec<Claimed>, StorageError> {
        let mut got = self.inner.claim(req.clone()).await?;
        let again: Vec<Claimed> = {
            let mut handed_out = self.handed_out.lock().unwrap_or_else(|p| p.into_inner());
            let again = handed_out
                .drain(..)
                .filter(|c| req.queues.contains(&c.task.queue))
                .collect();
            handed_out.extend(got.iter().cloned());
            again
        };
        got.extend(again);
        Ok(got)
    }
}

faulty_storage!(ClaimsTwice);

/// Breaks eta: claims as though it were a century later, so no eta is ever waited for.
#[derive(Debug)]
pub struct IgnoresEta {
    inner: Arc<dyn Storage>,
}

impl IgnoresEta {
    /// The cases that must fail against this wrapper.
    pub const TARGETS: &'static [&'static str] =
        &["eta_is_respected", "created_at_without_eta_gates_claim"];

    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl Hooks for IgnoresEta {
    fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }

    async fn on_claim(&self, mut req: ClaimRequest) -> Result<Vec<Claimed>, StorageError> {
        req.now += Duration::days(365 * 100);
        self.inner.claim(req).await
    }
}

faulty_storage!(IgnoresEta);

/// Breaks TaskError storage: a failure's `TaskError::context` is dropped before it is stored.
#[derive(Debug)]
pub struct DropsErrorContext {
    inner: Arc<dyn Storage>,
}

impl DropsErrorContext {
    /// The cases that must fail against this wrapper.
    pub const TARGETS: &'static [&'static str] = &[
        "task_error_context_persisted",
        "task_error_persisted_on_task_and_result",
    ];

    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl Hooks for DropsErrorContext {
    fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }

    async fn on_fail(&self, mut items: Vec<Failure>) -> Result<Vec<Outcome>, StorageError> {
        for item in &mut items {
            item.error.context.clear();
        }
        self.inner.fail(items).await
    }
}

faulty_storage!(DropsErrorContext);

/// Breaks fencing: heartbeat, complete and fail report `Ok` for a stale token
/// (the write a stale worker makes looks applied to it).
#[derive(Debug)]
pub struct IgnoresFencing {
    inner: Arc<dyn Storage>,
}

impl IgnoresFencing {
    /// The cases that must fail against this wrapper.
    pub const TARGETS: &'static [&'static str] = &[
        "fenced_complete_ignores_stale_worker",
        "fenced_fail_ignores_stale_worker",
        "fenced_heartbeat_ignores_stale_worker",
        "lease_expiry_redelivers",
        "batch_complete_reports_per_item_outcomes",
        "batch_fail_reports_per_item_outcomes",
        "reschedule_fences_running_task",
    ];

    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self { inner }
    }
}

fn lost_is_ok(outcomes: Vec<Outcome>) -> Vec<Outcome> {
    outcomes
        .into_iter()
        .map(|o| match o {
            Outcome::LeaseLost => Outcome::Ok,
            other => other,
        })
        .collect()
}

#[async_trait]
impl Hooks for IgnoresFencing {
    fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }

    async fn on_heartbeat(
        &self,
        leases: &[LeaseRef],
        until: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        self.inner.heartbeat(leases, until).await.map(lost_is_ok)
    }

    async fn on_complete(&self, items: Vec<Completion>) -> Result<Vec<Outcome>, StorageError> {
        self.inner.complete(items).await.map(lost_is_ok)
    }

    async fn on_fail(&self, items: Vec<Failure>) -> Result<Vec<Outcome>, StorageError> {
        self.inner.fail(items).await.map(lost_is_ok)
    }
}

faulty_storage!(IgnoresFencing);

/// Not a fault: reports the given [`Capabilities`] instead of the inner storage's, to
/// check that the suite skips (`requires <capability>`) what a backend does not claim.
#[derive(Debug)]
pub struct WithCapabilities {
    inner: Arc<dyn Storage>,
    caps: Capabilities,
}

impl WithCapabilities {
    /// Wraps `inner`, reporting `caps`.
    pub fn with(inner: Arc<dyn Storage>, caps: Capabilities) -> Self {
        Self { inner, caps }
    }

    /// Wraps `inner`, reporting the defaults (no unique keys, no wake-ups).
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self::with(inner, Capabilities::default())
    }
}

#[async_trait]
impl Hooks for WithCapabilities {
    fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }

    fn caps(&self) -> Capabilities {
        self.caps
    }
}

faulty_storage!(WithCapabilities);

/// One faulty wrapper, described for table-driven tests.
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    /// The wrapper's name (`ClaimsTwice`).
    pub name: &'static str,
    /// Wraps a correct storage in this fault.
    pub wrap: fn(Arc<dyn Storage>) -> Arc<dyn Storage>,
    /// The case ids that must fail against it.
    pub targets: &'static [&'static str],
}

/// Every faulty wrapper.
pub const FAULTS: &[Fault] = &[
    Fault {
        name: "ClaimsTwice",
        wrap: ClaimsTwice::wrap,
        targets: ClaimsTwice::TARGETS,
    },
    Fault {
        name: "IgnoresEta",
        wrap: IgnoresEta::wrap,
        targets: IgnoresEta::TARGETS,
    },
    Fault {
        name: "DropsErrorContext",
        wrap: DropsErrorContext::wrap,
        targets: DropsErrorContext::TARGETS,
    },
    Fault {
        name: "IgnoresFencing",
        wrap: IgnoresFencing::wrap,
        targets: IgnoresFencing::TARGETS,
    },
];

/// A factory whose instances are the inner factory's, wrapped in a fault.
pub struct FaultyFactory<F> {
    inner: F,
    wrap: fn(Arc<dyn Storage>) -> Arc<dyn Storage>,
}

impl<F: StorageFactory> FaultyFactory<F> {
    /// Wraps every instance `inner` creates with `wrap` (e.g. [`ClaimsTwice::wrap`]).
    /// The broken instance is passed through as it is.
    pub fn new(inner: F, wrap: fn(Arc<dyn Storage>) -> Arc<dyn Storage>) -> Self {
        Self { inner, wrap }
    }
}

impl<F> fmt::Debug for FaultyFactory<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyFactory").finish_non_exhaustive()
    }
}

#[async_trait]
impl<F: StorageFactory> StorageFactory for FaultyFactory<F> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn create(&self) -> Result<Arc<dyn Storage>, StorageError> {
        self.inner.create().await.map(self.wrap)
    }
    async fn broken(&self) -> Option<Arc<dyn Storage>> {
        self.inner.broken().await
    }
}

/// A factory with no service behind it (every `create()` is `Unavailable`); for docs
/// and for checking the runner's skip path.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFactory;

#[async_trait]
impl StorageFactory for NoFactory {
    fn backend(&self) -> &'static str {
        "none"
    }
    async fn create(&self) -> Result<Arc<dyn Storage>, StorageError> {
        Err(StorageError::new(
            omniq_core::StorageErrorKind::Unavailable,
            "none",
            "no backend behind this factory",
        ))
    }
}
