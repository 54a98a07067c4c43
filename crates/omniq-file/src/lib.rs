//! # omniq-file
//!
//! The file storage backend of OmniQ, on [`object_store`]: tasks are files in a local
//! directory (the default), in memory, or objects in any store that supports
//! conditional creates (AWS, GCS or Azure with conditional writes). Several processes may
//! share one directory: every claim and every state change is a conditional create
//! (`PutMode::Create`) of the task's next version, never a read-then-write, so of two
//! racing processes exactly one wins.
//!
//! Each task is a directory of versions `{ns}/t/{id}/{n}`; the newest is the task. A
//! claim creates version `n + 1` (Running) and that number is the lease's fencing token;
//! a worker's later write checks the token on the newest version and creates the next
//! one, so a stale worker can never overwrite a newer run. Ready and lease index files
//! (one per call, in directories by priority and minute) let a claim list only due tasks —
//! finished and future tasks cost it nothing — and one listing serves many claims.
//! Records are staged and renamed
//! into place: a reader never sees a torn record. With [`Durability::Full`] (the default)
//! every call that stores an enqueue or an outcome flushes the file system once before it
//! returns. Nothing is kept forever: a task keeps its newest three versions, dead
//! unique-key holders and the leftovers of failed batch enqueues are deleted.
//!
//! The `cloud` cargo feature opens `s3://`, `gs://` and `az://` URLs with
//! [`FileStorage::from_url`], with options from the `AWS_*`, `GOOGLE_*` and `AZURE_*`
//! environment variables.
//!
//! ```
//! use omniq_core::{ClaimRequest, Completion, Payload, Storage, StorageExt, Task};
//! use omniq_file::FileStorage;
//! use time::{Duration, OffsetDateTime};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), omniq_core::StorageError> {
//! # let dir = tempfile::tempdir().map_err(|e| omniq_core::StorageError::config("file", e.to_string()))?;
//! let storage = FileStorage::open(dir.path()).await?; // or FileStorage::in_memory()
//! let task = Task::new("emails.send", Payload(b"{\"to\":\"a@b\"}".to_vec()));
//! let id = storage.enqueue_one(task).await?.id;
//!
//! let now = OffsetDateTime::now_utc() + Duration::seconds(1);
//! let claimed = storage
//!     .claim(ClaimRequest { queues: vec!["default".into()], limit: 10, now, lease: Duration::seconds(30) })
//!     .await?;
//! assert_eq!(claimed.len(), 1);
//!
//! let done = Completion { lease: claimed[0].lease_ref(), result: None, now, next_run: None };
//! storage.complete_one(done).await?; // a stale lease would be a LeaseLost error
//! assert!(storage.get_result(&id).await?.is_some_and(|r| r.is_success()));
//! storage.close().await?;
//! # Ok(()) }
//! ```
//!
//! ## Layout
//!
//! Like every backend crate, one concern per file: `storage.rs` (the public type and the
//! `Storage` impl, one line per method), `config.rs` (configuration, URL parsing,
//! builder), `connect.rs` (opening the store, flushing, the versioned-record write),
//! `claim.rs` (enqueue, claim, next_due), `lease.rs` (heartbeat, complete, fail,
//! release), `admin.rs` (reads, reschedule, cancel, listing, purge), `schema.rs` (the
//! key layout), `convert.rs` (the stored record) and `error.rs` (the private error type).
#![forbid(unsafe_code)]

mod admin;
mod cache;
mod claim;
mod config;
mod connect;
mod convert;
mod error;
mod lease;
mod schema;
mod storage;

pub use config::{
    DEFAULT_NAMESPACE, DEFAULT_RESULT_TTL, Durability, FileConfig, FileStorageBuilder, Location,
};
pub use object_store;
pub use storage::{FileStorage, MAX_BATCH};
