//! The pool and queue emit through the `metrics` facade once enabled (its own test
//! binary: the recorder is process-global).

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use omniq::{AsyncTaskQueue, AsyncWorkerPool, HandlerError};
use omniq_sqlite::SqliteStorage;
use std::sync::Arc;
use std::time::Duration;

omniq::task_type!(Job = "job", u32 => u32);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_and_queue_emit_counters_histograms_and_gauges() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("install the recorder");
    omniq::metrics::enable();

    let storage: Arc<dyn omniq::Storage> =
        Arc::new(SqliteStorage::in_memory().await.expect("sqlite"));
    let queue = AsyncTaskQueue::new(storage);
    let mut pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .concurrency(2)
        .poll_interval(Duration::from_millis(50))
        .heartbeat_interval(Duration::from_millis(20))
        .lease(Duration::from_millis(100))
        .build()
        .expect("pool");
    pool.handle::<Job>(|x| async move {
        match x {
            0 => Err(HandlerError::msg("zero fails")),
            1 => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(1)
            }
            x => Ok(x),
        }
    });
    pool.start().expect("start");
    let ok = queue.enqueue_typed::<Job>(&5).await.expect("enqueue");
    let fails = queue
        .enqueue_typed::<Job>(&0)
        .max_retries(1)
        .backoff(omniq::Backoff::Fixed(time::Duration::milliseconds(10)))
        .await
        .expect("enqueue");
    let slow = queue
        .enqueue_typed::<Job>(&1)
        .timeout(Duration::from_millis(50))
        .max_retries(0)
        .await
        .expect("enqueue");
    for id in [ok, fails, slow] {
        let _outcome = queue
            .wait_output(&id, Duration::from_secs(20))
            .await
            .expect("wait");
    }
    pool.stop(Duration::from_secs(5)).await.expect("stop");

    let counters: std::collections::HashMap<String, u64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) => Some((key.key().name().to_string(), n)),
            _ => None,
        })
        .fold(Default::default(), |mut m, (k, n)| {
            *m.entry(k).or_default() += n;
            m
        });
    let get = |name: &str| counters.get(name).copied().unwrap_or(0);
    assert_eq!(get("omniq_tasks_enqueued_total"), 3, "{counters:?}");
    assert_eq!(
        get("omniq_tasks_started_total"),
        4,
        "3 tasks, one retried: {counters:?}"
    );
    assert_eq!(get("omniq_tasks_succeeded_total"), 1, "{counters:?}");
    assert_eq!(get("omniq_tasks_retried_total"), 1, "{counters:?}");
    assert_eq!(
        get("omniq_tasks_failed_total"),
        2,
        "the retried one, the slow one: {counters:?}"
    );
    assert_eq!(get("omniq_tasks_timed_out_total"), 1, "{counters:?}");
}
