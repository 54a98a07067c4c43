//! [`RedisStorage`]: the public type, its shared state, and the `Storage` impl — each
//! method one line over the inner function in `claim.rs`, `lease.rs` or `admin.rs`.

use crate::config::Topology;
use crate::convert::{self, arg, micros};
use crate::error::{BACKEND, Error, Result, config};
use crate::scripts::{Keys, Scripts};
use fred::clients::{Pool, SubscriberClient};
use fred::prelude::Options;
use fred::types::Value;
use omniq_core::{
    CancelOutcome, Capabilities, ClaimRequest, Claimed, Completion, Enqueued, Failure, Format,
    LeaseRef, OperationExt, Outcome, Page, QueueCounts, Storage, StorageError, Task, TaskFilter,
    TaskId, TaskResult, Wake, async_trait, validate_name,
};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use time::OffsetDateTime;
use tokio::sync::broadcast;

/// Largest batch one call accepts (see [`Capabilities::max_batch`]). Every script's
/// work is bounded by its batch, never by the backlog.
pub const MAX_BATCH: usize = 1000;

/// Most held tasks whose queue an instance remembers.
const HELD_LIMIT: usize = 100_000;

/// The Redis [`Storage`]. Cheap to clone (clones share the connections); `Debug`
/// shows the namespace and topology, never a password.
#[derive(Clone)]
pub struct RedisStorage {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: Pool,
    /// Closed by `close()` only when the storage made the pool (not a caller's client).
    pub(crate) owns_pool: bool,
    pub(crate) topology: Topology,
    pub(crate) options: Options,
    pub(crate) keys: Keys,
    pub(crate) scripts: Scripts,
    pub(crate) namespace: String,
    pub(crate) format: Format,
    pub(crate) result_ttl_us: i64,
    /// Tags this instance's wake-up messages, so its subscriber skips them (they are
    /// delivered locally at once).
    pub(crate) instance: String,
    pub(crate) closed: AtomicBool,
    /// The queue of each task this instance holds a lease on (from its claim), so lease
    /// writes skip the locator read. A task's queue never changes while it is leased.
    pub(crate) held: std::sync::Mutex<std::collections::HashMap<TaskId, Arc<str>>>,
    pub(crate) wake: broadcast::Sender<Wake>,
    pub(crate) subscriber: SubscriberClient,
    pub(crate) listener: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStorage")
            .field("namespace", &self.inner.namespace)
            .field("topology", &self.inner.topology)
            .field("serializer", &self.inner.format)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RedisStorage {
    /// A builder: `.url(…)` or `.client(…)`, then `.build().await`.
    pub fn builder() -> crate::RedisStorageBuilder {
        crate::RedisStorageBuilder::new()
    }

    /// Connects to the server a URL names, with the defaults.
    pub async fn connect_url(url: &str) -> Result<Self, StorageError> {
        Self::builder().url(url).build().await
    }

    /// The namespace (key prefix).
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// One server or a cluster.
    pub fn topology(&self) -> Topology {
        self.inner.topology
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    pub(crate) fn cluster(&self) -> bool {
        self.inner.topology == Topology::Cluster
    }

    /// The seven arguments every script starts with (see `lua/common.lua`).
    pub(crate) fn common_args(&self, capacity: usize) -> Vec<Value> {
        let k = &self.inner.keys;
        let mut args = Vec::with_capacity(7 + capacity);
        args.extend([
            arg(k.queue_base.as_str()),
            arg(k.loc.as_str()),
            arg(if self.cluster() { "0" } else { "1" }),
            arg(self.inner.result_ttl_us.to_string()),
            arg(convert::now_micros().to_string()),
            arg(self.inner.instance.as_str()),
            arg(k.channel.as_str()),
        ]);
        args
    }

    pub(crate) fn wake(&self, wake: Wake) {
        // No receivers is fine: wake-ups are hints.
        let _ = self.inner.wake.send(wake);
    }

    /// Remembers the queues of claimed tasks (bounded: a full map is dropped, it only
    /// saves locator reads).
    pub(crate) fn remember(&self, claimed: &[(TaskId, Arc<str>)]) {
        if let Ok(mut held) = self.inner.held.lock() {
            if held.len() + claimed.len() > HELD_LIMIT {
                held.clear();
            }
            held.extend(claimed.iter().cloned());
        }
    }

    /// The remembered queue of a held task.
    pub(crate) fn held_queue(&self, id: &TaskId) -> Option<Arc<str>> {
        self.inner.held.lock().ok()?.get(id).cloned()
    }

    /// Forgets tasks whose lease was written for the last time.
    pub(crate) fn forget(&self, ids: &[TaskId]) {
        if let Ok(mut held) = self.inner.held.lock() {
            for id in ids {
                held.remove(id);
            }
        }
    }

    pub(crate) fn format(&self) -> Format {
        self.inner.format
    }
}

/// A queue name checked like every other name: a `Config` error otherwise.
pub(crate) fn validate_queue(queue: &str) -> Result<()> {
    validate_name("queue", queue).map_err(config)
}

/// Distinct, validated queue names, in first-seen order.
pub(crate) fn distinct_queues(queues: &[String]) -> Result<Vec<&str>> {
    let mut out: Vec<&str> = Vec::with_capacity(queues.len());
    for q in queues {
        validate_queue(q)?;
        if !out.contains(&q.as_str()) {
            out.push(q);
        }
    }
    Ok(out)
}

/// Unix microseconds of a time, as a script argument.
pub(crate) fn us_arg(t: OffsetDateTime) -> Value {
    arg(micros(t).to_string())
}

#[async_trait]
impl Storage for RedisStorage {
    fn backend_name(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            unique_keys: true,
            push_wakeup: true,
            // One script stores the whole batch on one server; a cluster stores each
            // queue's part with its own script (see the crate docs).
            transactional_enqueue: !self.cluster(),
            multi_process: true,
            max_batch: MAX_BATCH,
        }
    }

    // Not `async`: the batch is checked and encoded when the future is created (no
    // I/O), and sent when it is first polled, so the runtime's next batch is encoded
    // while the previous one is in flight.
    fn enqueue<'life0, 'async_trait>(
        &'life0 self,
        tasks: Vec<Task>,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<Vec<Enqueued>, StorageError>>
                + Send
                + 'async_trait,
        >,
    >
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let prepared = self.prepare_enqueue(tasks);
        Box::pin(async move {
            match prepared {
                Ok(p) => self.enqueue_prepared(p).await,
                Err(e) => Err(e),
            }
            .operation("enqueue")
        })
    }

    async fn claim(&self, req: ClaimRequest) -> Result<Vec<Claimed>, StorageError> {
        self.claim_tasks(req).await.operation("claim")
    }

    async fn next_due(&self, queues: &[String]) -> Result<Option<OffsetDateTime>, StorageError> {
        self.earliest_due(queues).await.operation("next_due")
    }

    async fn heartbeat(
        &self,
        leases: &[LeaseRef],
        until: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        self.extend_leases(leases, until)
            .await
            .operation("heartbeat")
    }

    async fn start(&self, leases: &[LeaseRef]) -> Result<Vec<Outcome>, StorageError> {
        self.record_starts(leases).await.operation("start")
    }

    async fn complete(&self, items: Vec<Completion>) -> Result<Vec<Outcome>, StorageError> {
        self.complete_runs(items).await.operation("complete")
    }

    async fn fail(&self, items: Vec<Failure>) -> Result<Vec<Outcome>, StorageError> {
        self.fail_runs(items).await.operation("fail")
    }

    async fn release(
        &self,
        leases: &[LeaseRef],
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>, StorageError> {
        self.release_leases(leases, now).await.operation("release")
    }

    async fn get_task(&self, id: &TaskId) -> Result<Option<Task>, StorageError> {
        self.read_task(id).await.operation("get_task")
    }

    async fn reschedule(
        &self,
        id: &TaskId,
        new_eta: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        self.move_task(id, new_eta, now)
            .await
            .operation("reschedule")
    }

    async fn get_result(&self, id: &TaskId) -> Result<Option<TaskResult>, StorageError> {
        self.read_result(id).await.operation("get_result")
    }

    async fn cancel(
        &self,
        id: &TaskId,
        now: OffsetDateTime,
    ) -> Result<CancelOutcome, StorageError> {
        self.cancel_task(id, now).await.operation("cancel")
    }

    async fn list_tasks(&self, filter: TaskFilter) -> Result<Page<Task>, StorageError> {
        self.list_page(filter).await.operation("list_tasks")
    }

    async fn counts(&self, queue: Option<&str>) -> Result<Vec<QueueCounts>, StorageError> {
        self.count_tasks(queue).await.operation("counts")
    }

    async fn purge_results(&self, older_than: OffsetDateTime) -> Result<u64, StorageError> {
        self.purge(older_than).await.operation("purge_results")
    }

    async fn close(&self) -> Result<(), StorageError> {
        self.shutdown().await.operation("close")
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<Wake>> {
        Some(self.inner.wake.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: T) {}

    #[test]
    fn build_future_is_send() {
        assert_send(RedisStorage::connect_url("redis://127.0.0.1:1"));
    }
}
