//! Timing promises of the worker (R1, R3, R4, R5, R6): timeouts hold however the handler
//! and the runtime behave, due work starts without waiting for the poll, panics say
//! where they happened, and `StopReport` counts what it says. Runs on SQLite in memory.
//!
//! No test here asserts a duration: the bounds are tens of times larger than what they
//! check (a 60 s poll interval against a task due in 200 ms), so a slow machine cannot
//! make them fail and a regression (waiting for the poll) always does.

use omniq::{
    AsyncTaskQueue, AsyncWorkerPool, ErrorType, HandlerError, Storage, TaskId, TaskStatus,
};
use omniq_sqlite::SqliteStorage;
use std::sync::Arc;
use std::time::Duration;

const RUNS: usize = 100;

async fn queue() -> AsyncTaskQueue {
    let storage: Arc<dyn Storage> =
        Arc::new(SqliteStorage::in_memory().await.expect("sqlite in memory"));
    AsyncTaskQueue::new(storage)
}

/// A pool whose idle poll is a minute: anything that starts sooner was woken for it.
fn pool(queue: &AsyncTaskQueue, concurrency: usize) -> AsyncWorkerPool {
    AsyncWorkerPool::builder()
        .queue(queue.clone())
        .concurrency(concurrency)
        .poll_interval(Duration::from_secs(60))
        .build()
        .expect("pool")
}

/// Enqueues `RUNS` tasks of a handler that blocks its thread for 60 ms under a 10 ms
/// timeout, and checks every one is recorded as timed out — none as a success.
async fn every_blocking_run_times_out(concurrency: usize) {
    let queue = queue().await;
    let mut pool = pool(&queue, concurrency);
    pool.register("blocks", |_: u32| async move {
        // Deliberately blocks the runtime thread (what the bug needed to show).
        std::thread::sleep(Duration::from_millis(60));
        Ok::<_, HandlerError>(())
    });
    pool.start().expect("start");
    let mut ids = Vec::new();
    for i in 0..RUNS {
        let id = queue
            .enqueue("blocks", &(i as u32))
            .timeout(time::Duration::milliseconds(10))
            .max_retries(0)
            .await
            .expect("enqueue");
        ids.push(id);
    }
    let mut outcomes = Vec::new();
    for id in &ids {
        let r = queue
            .wait_result(id, Duration::from_secs(120))
            .await
            .expect("result");
        outcomes.push((r.status, r.error.map(|e| e.error_type)));
    }
    pool.stop(Duration::from_secs(5)).await.expect("stop");
    let wrong: Vec<_> = outcomes
        .iter()
        .filter(|o| **o != (TaskStatus::Failed, Some(ErrorType::Timeout)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {RUNS} runs past their timeout were not recorded as timed out: {wrong:?}",
        wrong.len()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_run_past_its_timeout_is_timed_out_on_a_current_thread_runtime() {
    every_blocking_run_times_out(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_timeout_is_timed_out_on_a_starved_multi_thread_runtime() {
    // Eight blocking handlers on two threads: every thread is blocked most of the time.
    every_blocking_run_times_out(8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_within_their_timeout_succeed() {
    let queue = queue().await;
    let mut pool = pool(&queue, 4);
    pool.register("quick", |x: u32| async move {
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok::<_, HandlerError>(x)
    });
    pool.start().expect("start");
    let mut ids = Vec::new();
    for i in 0..20u32 {
        ids.push(
            queue
                .enqueue("quick", &i)
                .timeout(time::Duration::seconds(5))
                .await
                .expect("enqueue"),
        );
    }
    for id in &ids {
        let r = queue
            .wait_result(id, Duration::from_secs(30))
            .await
            .expect("result");
        assert_eq!(r.status, TaskStatus::Success, "{r:?}");
    }
    pool.stop(Duration::from_secs(5)).await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_tasks_and_retries_start_without_waiting_for_the_poll() {
    let queue = queue().await;
    let mut pool = pool(&queue, 2);
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let c = Arc::clone(&calls);
    pool.register("flaky", move |_: ()| {
        let c = Arc::clone(&c);
        async move {
            if c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                return Err(HandlerError::msg("first run fails"));
            }
            Ok(())
        }
    });
    pool.register("later", |_: ()| async move { Ok::<_, HandlerError>(()) });
    pool.start().expect("start");
    // Let the pool go idle first: its next claim would be a minute away.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let delayed = queue
        .enqueue("later", &())
        .delay(time::Duration::milliseconds(200))
        .await
        .expect("enqueue");
    let retried = queue
        .enqueue("flaky", &())
        .backoff(omniq::Backoff::Fixed(time::Duration::milliseconds(100)))
        .await
        .expect("enqueue");
    // Far less than the 60 s poll interval, far more than 200 ms.
    for id in [delayed, retried] {
        let r = queue
            .wait_result(&id, Duration::from_secs(20))
            .await
            .expect("started and finished long before the next poll");
        assert_eq!(r.status, TaskStatus::Success, "{r:?}");
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    pool.stop(Duration::from_secs(5)).await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_records_where_it_happened() {
    let queue = queue().await;
    let mut pool = pool(&queue, 1);
    pool.register("boom", |_: ()| async move {
        if true {
            panic!("boom (expected: this test checks the recorded panic location)");
        }
        Ok::<_, HandlerError>(())
    });
    pool.start().expect("start");
    let id: TaskId = queue
        .enqueue("boom", &())
        .max_retries(0)
        .await
        .expect("enqueue");
    let r = queue
        .wait_result(&id, Duration::from_secs(20))
        .await
        .expect("result");
    pool.stop(Duration::from_secs(5)).await.expect("stop");
    let err = r.error.expect("a TaskError");
    assert_eq!(err.error_type, ErrorType::Panic);
    let location = err
        .context
        .get("panic_location")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    assert!(location.contains("timing.rs:"), "location: {location:?}");
    let traceback = err.traceback.unwrap_or_default();
    assert!(
        traceback.contains("boom (expected") && traceback.contains("timing.rs:"),
        "{traceback}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_report_counts_only_runs_in_flight_at_stop() {
    let queue = queue().await;
    let mut pool = pool(&queue, 4);
    pool.register("quick", |_: u32| async move { Ok::<_, HandlerError>(()) });
    pool.start().expect("start");
    let mut ids = Vec::new();
    for i in 0..32u32 {
        ids.push(queue.enqueue("quick", &i).await.expect("enqueue"));
    }
    for id in &ids {
        queue
            .wait_result(id, Duration::from_secs(20))
            .await
            .expect("result");
    }
    let report = pool.stop(Duration::from_secs(5)).await.expect("stop");
    assert_eq!(
        (report.drained, report.handed_back, report.aborted),
        (0, 0, 0),
        "every task was done before stop: {report:?}"
    );
}
