//! An idle worker listens for wake-up hints while it asks the storage when the next task
//! falls due: a task enqueued during that query starts without waiting for its answer.

use omniq::{
    AsyncTaskQueue, AsyncWorkerPool, HandlerError, Storage, StorageError, TaskStatus, async_trait,
};
use omniq_conformance::wrap::{Hooks, Wrapped};
use omniq_sqlite::SqliteStorage;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// How long every `next_due` takes.
const NEXT_DUE_TAKES: Duration = Duration::from_secs(20);

/// Passes every call to SQLite; `next_due` answers only after `NEXT_DUE_TAKES`.
#[derive(Debug)]
struct SlowDue(Arc<dyn Storage>);

#[async_trait]
impl Hooks for SlowDue {
    fn inner(&self) -> &Arc<dyn Storage> {
        &self.0
    }
    async fn on_next_due(&self, q: &[String]) -> Result<Option<OffsetDateTime>, StorageError> {
        // Far slower than anything below: a hint must not wait for it.
        tokio::time::sleep(NEXT_DUE_TAKES).await;
        self.0.next_due(q).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hint_during_next_due_starts_the_claim_at_once() {
    let sqlite = SqliteStorage::in_memory().await.expect("sqlite");
    let storage: Arc<dyn Storage> = Arc::new(Wrapped(SlowDue(Arc::new(sqlite))));
    assert!(
        storage.capabilities().push_wakeup,
        "the case needs push wake-ups"
    );
    let queue = AsyncTaskQueue::new(Arc::clone(&storage));
    let mut pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .poll_interval(Duration::from_secs(60))
        .build()
        .expect("pool");
    pool.register("work", |x: u32| async move { Ok::<_, HandlerError>(x) });
    pool.start().expect("start");
    // The first claim finds nothing: the fetcher is now waiting for `next_due`.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for x in 0..3u32 {
        let id = queue.enqueue("work", &x).await.expect("enqueue");
        // Well inside NEXT_DUE_TAKES: the task must not wait for the query's answer.
        let out = queue
            .wait_result(&id, NEXT_DUE_TAKES / 2)
            .await
            .expect("the hint starts the claim while next_due is still running");
        assert_eq!(out.status, TaskStatus::Success);
    }
    pool.stop(Duration::from_secs(5)).await.expect("stop");
}
