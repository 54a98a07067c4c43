//! # omniq-postgres
//!
//! The PostgreSQL storage backend of OmniQ, on sqlx: any number of worker processes on
//! any number of hosts share one database. Each namespace is a PostgreSQL schema with
//! embedded migrations (safe when several processes start at once); every batch is one
//! statement: enqueue is an `INSERT … SELECT FROM unnest(…)` (a large batch without
//! unique keys a binary `COPY`), a claim is a
//! `FOR UPDATE SKIP LOCKED` walk of a partial index shaped like the claim order (which
//! also redelivers expired leases), and heartbeat, complete, fail and release are one
//! fenced `UPDATE … FROM unnest(…)` each, with an outcome per item.
//!
//! Wake-ups travel by `NOTIFY`, sent inside the statements' transactions, so they fire
//! on commit; one LISTEN connection per storage feeds [`subscribe`](omniq_core::Storage::subscribe)
//! and reconnects by itself (workers poll meanwhile).
//! [`PostgresStorage::enqueue_tx`] enqueues inside the application's own transaction.
//! Expired results (`result_ttl`, default 7 days) are never returned and are deleted,
//! with their finished tasks, in batches of at most 10,000 rows.
//!
//! ```no_run
//! use omniq_core::{ClaimRequest, Completion, Payload, Storage, StorageExt, Task};
//! use omniq_postgres::PostgresStorage;
//! use time::{Duration, OffsetDateTime};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), omniq_core::StorageError> {
//! let storage = PostgresStorage::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
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
//! Like every backend crate, one concern per file: `storage.rs` (the public type and
//! the `Storage` impl, one line per method), `config.rs` (configuration, URL parsing,
//! builder), `connect.rs` (first connection, pool), `notify.rs` (NOTIFY payloads and
//! the LISTEN connection), `claim.rs` (enqueue and claim), `copy.rs` (binary `COPY`
//! rows), `lease.rs` (heartbeat, complete, fail, release), `admin.rs` (reads,
//! reschedule, cancel, purge, sweep), `schema.rs` (migrations and SQL text),
//! `convert.rs` (values and row decoding) and `error.rs` (the private error type).
#![forbid(unsafe_code)]

mod admin;
mod claim;
mod config;
mod connect;
mod convert;
mod copy;
mod error;
mod lease;
mod notify;
mod schema;
mod storage;
#[cfg(test)]
mod test_support;

pub use config::{
    Connection, DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_NAMESPACE,
    DEFAULT_RESULT_TTL, DEFAULT_SWEEP_INTERVAL, PostgresConfig, PostgresStorageBuilder,
};
pub use storage::{MAX_BATCH, PostgresStorage};
