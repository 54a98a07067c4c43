//! S2 crash safety with a real killed process: a worker process is SIGKILLed mid-task;
//! the task is redelivered after its lease expires and finishes in another worker, with
//! the killed run counted as an attempt. Nothing is lost.
//!
//! The child worker is this same test binary, re-executed with `OMNIQ_CRASH_CHILD_DB` set
//! so that only `child_worker_entry` does anything.

use omniq::{AsyncTaskQueue, AsyncWorkerPool, HandlerError, Storage, TaskStatus};
use omniq_sqlite::SqliteStorage;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const CHILD_DB: &str = "OMNIQ_CRASH_CHILD_DB";
const CHILD_MARKER: &str = "OMNIQ_CRASH_CHILD_MARKER";

/// The child's body: run a worker whose handler signals it started, then hangs.
/// A no-op unless the parent set the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_worker_entry() {
    let (Some(db), Some(marker)) = (std::env::var_os(CHILD_DB), std::env::var_os(CHILD_MARKER))
    else {
        return;
    };
    let storage: Arc<dyn Storage> =
        Arc::new(SqliteStorage::open(PathBuf::from(db)).await.expect("open"));
    let mut pool = AsyncWorkerPool::builder()
        .queue(AsyncTaskQueue::new(storage))
        .concurrency(1)
        .lease(time::Duration::seconds(1))
        .heartbeat_interval(Duration::from_millis(200))
        .poll_interval(Duration::from_millis(20))
        .build()
        .expect("pool");
    let marker = PathBuf::from(marker);
    pool.register("report.build", move |_: u32| {
        let marker = marker.clone();
        async move {
            std::fs::write(&marker, b"started").map_err(HandlerError::from)?;
            std::future::pending::<()>().await;
            Ok::<u32, HandlerError>(0)
        }
    });
    pool.start().expect("start");
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_loses_nothing_and_its_task_is_redelivered_after_the_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("crash.db");
    let marker = dir.path().join("started");
    let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::open(&db).await.expect("open"));
    let queue = AsyncTaskQueue::new(Arc::clone(&storage));
    let id = queue
        .enqueue("report.build", &7u32)
        // No retries: a crash redelivery must not need a retry budget.
        .max_retries(0)
        .await
        .expect("enqueue");

    let exe = std::env::current_exe().expect("current exe");
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "child_worker_entry",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_DB, &db)
        .env(CHILD_MARKER, &marker)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn child worker");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !marker.exists() {
        if tokio::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("child worker never started the task");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGKILL: no graceful anything.
    child.kill().expect("kill child");
    child.wait().expect("reap child");

    let task = storage.get_task(&id).await.expect("get").expect("exists");
    assert_eq!(
        task.status,
        TaskStatus::Running,
        "the killed worker held the task"
    );
    assert_eq!(task.attempts, 1);

    // A fresh worker picks it up once the dead worker's lease has expired.
    let mut pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .poll_interval(Duration::from_millis(50))
        .build()
        .expect("pool");
    pool.register("report.build", |x: u32| async move {
        Ok::<u32, HandlerError>(x * 6)
    });
    pool.start().expect("start");
    let result = queue.wait_result(&id, Duration::from_secs(30)).await;
    pool.stop(Duration::from_secs(5)).await.expect("stop");
    let result = result.expect("redelivered task finishes");
    assert_eq!(result.status, TaskStatus::Success);
    assert_eq!(result.attempts, 2, "the killed run counts as an attempt");
    let value: u32 = result.output().expect("decode");
    assert_eq!(value, 42);
}
