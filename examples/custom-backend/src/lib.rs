//! # omniq-example-memory
//!
//! An in-memory [`Storage`](omniq_core::Storage) backend for OmniQ, written from the
//! contract alone (the trait's `# Behavior` docs and `docs/implementing-a-backend.md`)
//! as the walk-through of implementing a backend. Its `tests/conformance.rs` runs the
//! whole conformance suite in one line.
//!
//! A [`MemoryServer`] holds namespaces; a [`MemoryStorage`] is a handle on one of them.
//! Everything lives in process memory: good for tests, demos and single-process tools.
//!
//! ```
//! use omniq_core::time::{Duration, OffsetDateTime};
//! use omniq_core::{ClaimRequest, Completion, Payload, Storage, StorageExt, Task, TaskStatus};
//! use omniq_example_memory::{MemoryConfig, MemoryServer};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let server = MemoryServer::new();
//! let storage = server.connect(MemoryConfig::new("example")?)?;
//!
//! let task = Task::new("emails.send", Payload(b"\"ada@example.com\"".to_vec()));
//! let id = storage.enqueue_one(task).await?.id;
//!
//! let now = OffsetDateTime::now_utc();
//! let claimed = storage
//!     .claim(ClaimRequest {
//!         queues: vec!["default".into()],
//!         limit: 10,
//!         now,
//!         lease: Duration::seconds(30),
//!     })
//!     .await?;
//! assert_eq!(claimed.len(), 1);
//!
//! storage
//!     .complete_one(Completion {
//!         lease: claimed[0].lease_ref(),
//!         result: Some(Payload(b"\"sent\"".to_vec())),
//!         now,
//!         next_run: None,
//!     })
//!     .await?;
//! assert_eq!(storage.get_task(&id).await?.unwrap().status, TaskStatus::Success);
//! assert!(storage.get_result(&id).await?.unwrap().is_success());
//! # Ok::<(), omniq_core::StorageError>(())
//! # }).unwrap();
//! ```
#![forbid(unsafe_code)]

mod admin;
mod claim;
mod config;
mod connect;
mod error;
mod lease;
mod state;
mod storage;

pub use config::MemoryConfig;
pub use connect::MemoryServer;
pub use storage::MemoryStorage;

/// The backend's short name, in errors and reports.
pub const BACKEND: &str = "memory";
