//! The crash-loop guard counts runs that really started, with real killed processes
//! (S2, issue: prefetched claims must not use up a task's allowance).
//!
//! Child workers are this same test binary re-executed with `OMNIQ_LOOP_CHILD_DB` set, so
//! only `loop_child_entry` does anything in them:
//! - mode `prefetch`: concurrency 1 and prefetch 8; the handler appends to the start log
//!   and then hangs, so the child holds one started run and eight claims it never
//!   started when the parent SIGKILLs it;
//! - mode `abort`: the handler appends to the start log and aborts the process, the way
//!   a handler that segfaults or runs out of memory takes its worker down.

use omniq::{AsyncTaskQueue, AsyncWorkerPool, ErrorType, HandlerError, Storage, TaskStatus};
use omniq_sqlite::SqliteStorage;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const CHILD_DB: &str = "OMNIQ_LOOP_CHILD_DB";
const CHILD_LOG: &str = "OMNIQ_LOOP_CHILD_LOG";
const CHILD_MODE: &str = "OMNIQ_LOOP_CHILD_MODE";
const LEASE_S: i64 = 1;

/// Appends `id` to the start log (one line per handler start).
fn log_start(log: &Path, id: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("start log");
    writeln!(f, "{id}").expect("write start log");
    f.sync_all().expect("sync start log");
}

fn starts(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_child_entry() {
    let (Some(db), Some(log), Ok(mode)) = (
        std::env::var_os(CHILD_DB),
        std::env::var_os(CHILD_LOG),
        std::env::var(CHILD_MODE),
    ) else {
        return;
    };
    let storage: Arc<dyn Storage> =
        Arc::new(SqliteStorage::open(PathBuf::from(db)).await.expect("open"));
    let mut builder = AsyncWorkerPool::builder()
        .queue(AsyncTaskQueue::new(storage))
        .lease(time::Duration::seconds(LEASE_S))
        .heartbeat_interval(Duration::from_millis(200))
        .poll_interval(Duration::from_millis(20))
        .max_redeliveries(1);
    if mode == "prefetch" {
        builder = builder.concurrency(1).prefetch(8).max_redeliveries(3);
    }
    let mut pool = builder.build().expect("pool");
    let log = PathBuf::from(log);
    pool.register("job.run", move |_: u32| {
        let log = log.clone();
        let abort = mode == "abort";
        async move {
            log_start(&log, "job");
            if abort {
                std::process::abort();
            }
            std::future::pending::<()>().await;
            Ok::<u32, HandlerError>(0)
        }
    });
    pool.start().expect("start");
    std::future::pending::<()>().await;
}

fn spawn_child(db: &Path, log: &Path, mode: &str) -> Child {
    let exe = std::env::current_exe().expect("current exe");
    Command::new(exe)
        .args([
            "--exact",
            "loop_child_entry",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_DB, db)
        .env(CHILD_LOG, log)
        .env(CHILD_MODE, mode)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child worker")
}

async fn running(storage: &Arc<dyn Storage>) -> u64 {
    storage
        .counts(None)
        .await
        .expect("counts")
        .iter()
        .map(|c| c.get(TaskStatus::Running))
        .sum()
}

/// Four workers in a row each claim all nine tasks (one started, eight prefetched) and
/// are SIGKILLed. Every task was claimed five times by the end, far past
/// `max_retries 0 + 1 + max_redeliveries 3`; but only the started runs count, so a fresh
/// worker runs every task to Success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_prefetched_by_killed_workers_do_not_count_as_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("loop.db");
    let log = dir.path().join("starts.log");
    let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::open(&db).await.expect("open"));
    let queue = AsyncTaskQueue::new(Arc::clone(&storage));
    let mut ids = Vec::new();
    for i in 0..9u32 {
        ids.push(
            queue
                .enqueue("job.run", &i)
                .max_retries(0)
                .await
                .expect("enqueue"),
        );
    }
    const ROUNDS: usize = 4;
    for round in 1..=ROUNDS {
        let mut child = spawn_child(&db, &log, "prefetch");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        // Held: one run started in this round and all nine claimed.
        while starts(&log).len() < round || running(&storage).await < 9 {
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("round {round}: the child never claimed all nine tasks");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child.kill().expect("kill child");
        child.wait().expect("reap child");
        // Let the dead worker's leases run out.
        tokio::time::sleep(Duration::from_millis(LEASE_S as u64 * 1000 + 200)).await;
    }
    assert_eq!(
        starts(&log).len(),
        ROUNDS,
        "one handler start per killed worker"
    );
    for id in &ids {
        let t = storage.get_task(id).await.expect("get").expect("exists");
        assert_eq!(t.attempts, ROUNDS as u32, "claimed once per round");
    }

    let mut pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .poll_interval(Duration::from_millis(50))
        .build()
        .expect("pool");
    pool.register(
        "job.run",
        |x: u32| async move { Ok::<u32, HandlerError>(x) },
    );
    pool.start().expect("start");
    for id in &ids {
        let r = queue
            .wait_result(id, Duration::from_secs(30))
            .await
            .expect("result");
        assert_eq!(
            r.status,
            TaskStatus::Success,
            "task {id}: {:?}",
            r.error.map(|e| e.message)
        );
        assert_eq!(
            r.attempts,
            ROUNDS as u32 + 1,
            "every claim is still an attempt"
        );
    }
    pool.stop(Duration::from_secs(5)).await.expect("stop");
}

/// A handler that takes its worker process down on every run is stopped by the guard:
/// with `max_retries 0` and `max_redeliveries 1` it runs three times (two allowed, plus
/// the unrecorded first), then the next worker fails it with a `system` error without
/// running it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_kills_its_worker_is_stopped_after_its_allowance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("abort.db");
    let log = dir.path().join("starts.log");
    let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::open(&db).await.expect("open"));
    let queue = AsyncTaskQueue::new(Arc::clone(&storage));
    let id = queue
        .enqueue("job.run", &1u32)
        .max_retries(0)
        .await
        .expect("enqueue");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut spawned = 0;
    loop {
        let t = storage.get_task(&id).await.expect("get").expect("exists");
        if t.status == TaskStatus::Failed {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline && spawned < 8,
            "the crash-looping task was never stopped ({spawned} workers, {} starts)",
            starts(&log).len()
        );
        let mut child = spawn_child(&db, &log, "abort");
        spawned += 1;
        // The child aborts when it runs the task, or stays up once the guard failed it.
        let until = tokio::time::Instant::now() + Duration::from_secs(LEASE_S as u64 + 10);
        loop {
            if child.try_wait().expect("try_wait").is_some() {
                break;
            }
            let t = storage.get_task(&id).await.expect("get").expect("exists");
            if t.status == TaskStatus::Failed || tokio::time::Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The aborted run's lease must run out before the next worker can take it.
        tokio::time::sleep(Duration::from_millis(LEASE_S as u64 * 1000 + 100)).await;
    }
    assert_eq!(
        starts(&log).len(),
        3,
        "handler starts before the guard stopped it"
    );
    let r = queue
        .wait_result(&id, Duration::from_secs(5))
        .await
        .expect("result");
    assert_eq!(r.status, TaskStatus::Failed);
    let err = r.error.expect("the guard's error");
    assert_eq!(err.error_type, ErrorType::System, "{}", err.message);
    assert!(!err.is_retryable);
    assert!(err.message.contains("started 3 times"), "{}", err.message);
}
