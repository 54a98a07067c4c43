//! # omniq-conformance
//!
//! The OmniQ backend conformance suite: every storage line of the migration guide's
//! validation checklists, plus the contract of the [`Storage`] trait (atomic claims,
//! eta, leases and fencing, batches, unique keys, namespaces, purge, listing, cancel,
//! close, wake-ups), as named cases any backend — ours or a third party's — runs in one
//! line.
//!
//! A backend supplies a [`StorageFactory`]: a fresh, isolated instance (its own
//! namespace) per case and, optionally, a broken instance whose calls fail, for the
//! "raises `StorageError`" items. Then either
//!
//! - **the runner** (a `harness = false` test target; prints a checklist report and,
//!   with `OMNIQ_CONFORMANCE_REPORT_DIR` set, writes `<dir>/<backend>.json`):
//!   `fn main() -> ExitCode { omniq_conformance::run(MyFactory) }`, or
//! - **the macro** (an ordinary test target; one `#[test]` per case):
//!   `omniq_conformance::conformance_tests!(MyFactory);`
//!
//! A whole `tests/conformance.rs` (compiled here; `no_run` only because running the
//! runner reads the process's arguments and environment):
//!
//! ```no_run
//! use std::sync::Arc;
//! use omniq_conformance::{StorageFactory, async_trait};
//! use omniq_core::{Storage, StorageError, StorageErrorKind};
//!
//! /// Hands out a fresh instance of "my" backend per case.
//! struct MyFactory;
//!
//! #[async_trait]
//! impl StorageFactory for MyFactory {
//!     fn backend(&self) -> &'static str {
//!         "mine"
//!     }
//!     async fn create(&self) -> Result<Arc<dyn Storage>, StorageError> {
//!         // A real factory connects here, in a namespace of its own.
//!         Err(StorageError::new(StorageErrorKind::Unavailable, "mine", "no server"))
//!     }
//! }
//!
//! // As an ordinary test target: one #[test] per case.
//! omniq_conformance::conformance_tests!(MyFactory);
//!
//! // Or, with `harness = false` in Cargo.toml, the runner with its checklist and
//! // JSON report (use one form or the other).
//! fn main() -> std::process::ExitCode {
//!     omniq_conformance::run(MyFactory)
//! }
//! ```
//!
//! Cases that need a [`Capabilities`](omniq_core::Capabilities) flag the backend does
//! not report are `skipped: requires <capability>`, never silently passed. The suite
//! proves it can fail: [`faulty`] holds deliberately broken wrappers, and this crate's
//! own tests check that each one fails the cases aimed at its fault.
//!
//! Environment:
//! - `OMNIQ_REQUIRE_SERVICES=1`: a backend whose service is unreachable fails every
//!   case instead of skipping them.
//! - `OMNIQ_CONFORMANCE_REPORT_DIR=DIR`: the runner writes `DIR/<backend>.json`.
//! - `OMNIQ_CONFORMANCE_URL=URL`: the deployment to check, for factories that take one
//!   (this workspace's all do: `cargo xtask conformance --backend postgres --url …`).
//!   Each case works in a namespace of its own, and the factory's
//!   [`cleanup`](StorageFactory::cleanup) removes them at the end.
#![forbid(unsafe_code)]

#[macro_use]
mod check;
mod cases;
pub mod faulty;
mod macros;
mod report;
mod runner;
pub mod wrap;

use std::sync::Arc;

pub use async_trait::async_trait;
pub use cases::{Capability, Case, cases, runtime};
pub use check::CaseError;
/// The libtest-mimic arguments [`run_with`] takes.
pub use libtest_mimic::Arguments;
pub use report::{CaseReport, CaseStatus, Report};
pub use runner::{CaseOutcome, RunOutput, RunSettings, run, run_case, run_case_on, run_with};

#[doc(hidden)]
pub use runner::__run_case;

use omniq_core::{Storage, StorageError};

/// How the suite gets storage instances for one backend.
///
/// ```
/// # use std::sync::Arc;
/// # use omniq_conformance::{StorageFactory, async_trait};
/// # use omniq_core::{Storage, StorageError};
/// struct Factory;
///
/// #[async_trait]
/// impl StorageFactory for Factory {
///     fn backend(&self) -> &'static str {
///         "mine"
///     }
///     async fn create(&self) -> Result<Arc<dyn Storage>, StorageError> {
///         Err(StorageError::config("mine", "not built yet"))
///     }
///     // `broken()` defaults to None: the "raises StorageError" cases are skipped.
/// }
/// ```
#[async_trait]
pub trait StorageFactory: Send + Sync + 'static {
    /// The backend's short name (`sqlite`); names the JSON report file.
    fn backend(&self) -> &'static str;

    /// A fresh instance in a namespace of its own: no tasks, isolated from every
    /// other instance this factory hands out. An error of kind
    /// [`Unavailable`](omniq_core::StorageErrorKind::Unavailable) on the first call means
    /// "the service is not running" (skip, or fail under `OMNIQ_REQUIRE_SERVICES=1`).
    async fn create(&self) -> Result<Arc<dyn Storage>, StorageError>;

    /// An instance whose operations fail with a [`StorageError`] (e.g. a closed pool, a
    /// server that went away, a read-only or corrupt file), for the guide's "raises
    /// `StorageError` on failure" items. `None` (the default) skips those cases with
    /// reason "requires broken instance".
    async fn broken(&self) -> Option<Arc<dyn Storage>> {
        None
    }

    /// Called once by the runner after every case has run: remove what this factory
    /// created (namespaces, schemas, key prefixes, files), so running the suite against a
    /// live deployment (`OMNIQ_CONFORMANCE_URL`) leaves nothing behind. The default does
    /// nothing; an error is reported, not fatal.
    async fn cleanup(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

#[async_trait]
impl<F: StorageFactory + ?Sized> StorageFactory for Arc<F> {
    fn backend(&self) -> &'static str {
        (**self).backend()
    }
    async fn create(&self) -> Result<Arc<dyn Storage>, StorageError> {
        (**self).create().await
    }
    async fn broken(&self) -> Option<Arc<dyn Storage>> {
        (**self).broken().await
    }
    async fn cleanup(&self) -> Result<(), StorageError> {
        (**self).cleanup().await
    }
}
