//! # omniq-redis
//!
//! The Redis storage backend of OmniQ, on [fred]: for the lowest latency, on one Redis
//! server or a Redis Cluster. Every change that touches more than one key is one Lua
//! script, loaded once and called by SHA (loaded again after `NOSCRIPT`, e.g. after a
//! server restart); claim, heartbeat, complete, fail, release, reschedule and cancel
//! are atomic, and a batch claim or completion is one script call.
//!
//! **Sharding.** All keys of one queue share the hash tag `{namespace:queue}`, so every
//! script call touches one cluster slot and queues spread over a cluster's masters.
//! Calls that name a task only by id find its queue through a small locator key
//! (`omniq:<ns>:loc:<id>`, no hash tag). On one server the scripts read and write the
//! locators themselves, so every call is one round trip and a batch enqueue is
//! all-or-nothing; on a cluster the client resolves locators first (one pipelined
//! round trip) and each queue's part of a batch is its own script call. A locator
//! without its task means "no such task".
//!
//! **Order and bounds.** Pending tasks wait in a per-queue `sched` sorted set by eta;
//! each claim promotes at most 1000 due tasks (and redelivers at most 1000 expired
//! leases) into a `ready` set whose members sort as priority, eta, enqueue order — so a
//! claim's work is bounded whatever the backlog, and claims come out in exact order.
//! Leases live in a sorted set by expiry; every lease write checks the task's fencing
//! token (strictly increasing per task) inside its script.
//!
//! **Memory.** Finished tasks and results expire `result_ttl` (default 7 days) after
//! they finished, by Redis TTL; their index entries are trimmed by later calls.
//!
//! ```no_run
//! use omniq_core::{ClaimRequest, Completion, Payload, Storage, StorageExt, Task};
//! use omniq_redis::RedisStorage;
//! use time::{Duration, OffsetDateTime};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), omniq_core::StorageError> {
//! let storage = RedisStorage::connect_url("redis://127.0.0.1:6379").await?;
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
//! As every backend crate: `storage.rs` (the public type and the `Storage` impl),
//! `config.rs` (configuration, URL parsing, builder), `connect.rs` (connections,
//! scripts by SHA, wake-up subscriber), `claim.rs` (enqueue, claim), `lease.rs`
//! (heartbeat, complete, fail, release), `admin.rs` (reads, reschedule, cancel, purge),
//! `scripts.rs` (key layout and the Lua scripts in `src/lua/`), `convert.rs` (decoding)
//! and `error.rs` (the private error type).
#![forbid(unsafe_code)]

mod admin;
mod claim;
mod config;
mod connect;
mod convert;
mod error;
mod lease;
mod scripts;
mod storage;

pub use config::{
    DEFAULT_COMMAND_TIMEOUT, DEFAULT_NAMESPACE, DEFAULT_POOL_SIZE, DEFAULT_RESULT_TTL, RedisConfig,
    RedisStorageBuilder, Topology,
};
pub use storage::{MAX_BATCH, RedisStorage};

/// The fred crate this backend is built on, for [`RedisStorageBuilder::client`].
pub use fred;
