//! Periodic series registered at startup (R5): idempotent across restarts and across
//! processes — exactly one live series per name — and a bad expression is an error at
//! registration.

use omniq::{AsyncTaskQueue, AsyncWorkerPool, HandlerError, TaskFilter, TaskStatus};
use omniq_sqlite::SqliteStorage;
use std::sync::Arc;
use std::time::Duration;

fn pool(queue: &AsyncTaskQueue) -> AsyncWorkerPool {
    let mut p = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .poll_interval(Duration::from_millis(20))
        .build()
        .expect("pool");
    p.register("reports.yearly", |(): ()| async move {
        Ok::<_, HandlerError>(())
    });
    p.periodic("reports.yearly", "0 0 1 1 *", "Europe/Berlin")
        .expect("a valid expression");
    p
}

async fn live_series(queue: &AsyncTaskQueue) -> Vec<omniq::Task> {
    queue
        .list(TaskFilter {
            status: Some(TaskStatus::Pending),
            ..TaskFilter::default()
        })
        .await
        .expect("list")
        .items
        .into_iter()
        .filter(|t| t.func_path == "reports.yearly")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_pools_and_restarts_keep_one_live_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("q.db");
    // Two "processes": two storages on one file, each with its own pool.
    let s1: Arc<dyn omniq::Storage> = Arc::new(SqliteStorage::open(&path).await.expect("open"));
    let s2: Arc<dyn omniq::Storage> = Arc::new(SqliteStorage::open(&path).await.expect("open"));
    let (q1, q2) = (AsyncTaskQueue::new(s1), AsyncTaskQueue::new(s2));
    for round in 0..3 {
        let (a, b) = (pool(&q1), pool(&q2));
        a.start().expect("start a");
        b.start().expect("start b");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while live_series(&q1).await.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no series registered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Give the second registration time to land too.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let series = live_series(&q2).await;
        assert_eq!(series.len(), 1, "round {round}: {series:?}");
        let cron = series[0].schedule.cron.clone().expect("a cron schedule");
        assert_eq!(
            (cron.expr.as_str(), cron.tz.as_str()),
            ("0 0 1 1 *", "Europe/Berlin")
        );
        a.stop(Duration::from_secs(5)).await.expect("stop");
        b.stop(Duration::from_secs(5)).await.expect("stop");
    }
}

#[tokio::test]
async fn a_bad_expression_or_zone_is_an_error_when_registered_or_enqueued() {
    let storage: Arc<dyn omniq::Storage> =
        Arc::new(SqliteStorage::in_memory().await.expect("sqlite"));
    let queue = AsyncTaskQueue::new(storage);
    let mut p = AsyncWorkerPool::new(queue.clone());
    let e = p
        .periodic("x", "61 * * * *", "UTC")
        .expect_err("bad minute");
    assert!(e.to_string().contains("cron expression"), "{e}");
    let e = queue
        .enqueue("x", &())
        .cron("0 9 * * *", "Mars/Olympus")
        .await
        .expect_err("bad zone");
    assert!(e.to_string().contains("IANA"), "{e}");
    let e = queue
        .enqueue("x", &())
        .cron("0 9 * * *", "UTC")
        .interval(60)
        .await
        .expect_err("both");
    assert!(e.to_string().contains("not both"), "{e}");
}
