//! # omniq-sqlite
//!
//! The SQLite storage backend of OmniQ, on sqlx: a database file in WAL mode (or a
//! private in-memory database), embedded migrations, one `BEGIN IMMEDIATE` transaction
//! per batch, and claims with `UPDATE … RETURNING` driven by a partial index, so several
//! workers — in one process or many — never claim the same task twice.
//!
//! Tasks are stored relationally in `{namespace}_tasks` (args as the caller's encoded
//! bytes, times as unix microseconds), results in `{namespace}_results`; the namespace is
//! the table prefix, so several namespaces share one file without seeing each other.
//!
//! Commits are synced to disk by default ([`Durability::Full`]): an acknowledged enqueue
//! survives power loss. [`Durability::Normal`] trades that for speed (a crash of the
//! process still loses nothing). Expired results (`result_ttl`, default 7 days) stop being
//! returned at once and are deleted, with their finished tasks, by a sweep that runs at
//! most once a minute alongside completions.
//!
//! ```
//! use omniq_core::{ClaimRequest, Completion, Payload, Storage, StorageExt, Task};
//! use omniq_sqlite::SqliteStorage;
//! use time::{Duration, OffsetDateTime};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), omniq_core::StorageError> {
//! let storage = SqliteStorage::in_memory().await?; // or SqliteStorage::open("omniq.db")
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
//! The crate is the template the other backends copy, one concern per file:
//! `storage.rs` (the public type and the `Storage` impl, one line per method),
//! `config.rs` (configuration, URL parsing, builder), `connect.rs` (pools and
//! transactions), `claim.rs` (enqueue and claim), `lease.rs` (heartbeat, complete, fail,
//! release), `admin.rs` (reads, reschedule, cancel, purge), `schema.rs` (migrations and
//! SQL text), `convert.rs` (row decoding) and `error.rs` (the private error type).
#![forbid(unsafe_code)]

mod admin;
mod claim;
mod config;
mod connect;
mod convert;
mod error;
mod lease;
mod schema;
mod storage;

pub use config::{
    DEFAULT_BUSY_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_NAMESPACE, DEFAULT_RESULT_TTL,
    Durability, Location, SqliteConfig, SqliteStorageBuilder,
};
pub use storage::{MAX_BATCH, SqliteStorage};

const _: () = assert!(schema::SHAPES[0] * schema::INSERT_ARITY < 32_766);
