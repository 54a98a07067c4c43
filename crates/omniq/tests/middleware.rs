//! Middleware around every run (R6): a layer sees every run and its outcome, can answer
//! without running the handler, and the built-in limits hold — without eating into the
//! run's timeout.

use omniq::middleware::{ConcurrencyLimit, Middleware, Next, RunOutput};
use omniq::{
    AsyncTaskQueue, AsyncWorkerPool, ErrorType, HandlerError, TaskCtx, TaskError, TaskStatus,
    async_trait,
};
use omniq_sqlite::SqliteStorage;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

omniq::task_type!(Work = "work", u32 => u32);
omniq::task_type!(Secret = "secret", () => ());

async fn setup(concurrency: usize) -> (AsyncTaskQueue, AsyncWorkerPool) {
    let storage: Arc<dyn omniq::Storage> =
        Arc::new(SqliteStorage::in_memory().await.expect("sqlite"));
    let queue = AsyncTaskQueue::new(storage);
    let pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .concurrency(concurrency)
        .poll_interval(Duration::from_millis(50))
        .build()
        .expect("pool");
    (queue, pool)
}

/// Counts runs and failures, and refuses the `secret` handler.
#[derive(Default)]
struct Audit {
    runs: AtomicUsize,
    failures: AtomicUsize,
}

#[async_trait]
impl Middleware for Audit {
    async fn around(&self, ctx: &TaskCtx, next: Next) -> RunOutput {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if ctx.func_path == "secret" {
            return RunOutput::failed(
                TaskError::new(ErrorType::User, "not allowed").with_retryable(false),
            );
        }
        let out = next.run().await;
        if !out.is_ok() {
            self.failures.fetch_add(1, Ordering::SeqCst);
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_sees_every_run_and_may_answer_instead_of_the_handler() {
    let (queue, mut pool) = setup(4).await;
    let audit = Arc::new(Audit::default());
    let secret_ran = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&secret_ran);
    pool.layer(Arc::clone(&audit));
    pool.handle::<Work>(|x| async move {
        if x == 3 {
            return Err(HandlerError::msg("three fails"));
        }
        Ok(x * 10)
    });
    pool.handle::<Secret>(move |()| {
        let s = Arc::clone(&s);
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            Ok::<_, HandlerError>(())
        }
    });
    pool.start().expect("start");
    let mut ids = Vec::new();
    for x in 1..=4u32 {
        ids.push(
            queue
                .enqueue_typed::<Work>(&x)
                .max_retries(0)
                .await
                .expect("enqueue"),
        );
    }
    let secret = queue
        .enqueue_typed::<Secret>(&())
        .max_retries(0)
        .await
        .expect("enqueue");
    for id in &ids {
        let _outcome = queue
            .wait_output(id, Duration::from_secs(20))
            .await
            .expect("wait");
    }
    let denied = queue
        .wait_output(&secret, Duration::from_secs(20))
        .await
        .expect("wait")
        .expect_err("refused by the layer");
    pool.stop(Duration::from_secs(5)).await.expect("stop");
    assert_eq!(denied.message, "not allowed");
    assert_eq!(
        secret_ran.load(Ordering::SeqCst),
        0,
        "the handler never ran"
    );
    assert_eq!(audit.runs.load(Ordering::SeqCst), 5);
    assert_eq!(audit.failures.load(Ordering::SeqCst), 1, "x = 3 failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_limit_holds_and_waiting_for_it_does_not_count_against_the_timeout() {
    let (queue, mut pool) = setup(8).await;
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (Arc::clone(&running), Arc::clone(&peak));
    pool.layer(ConcurrencyLimit::new().handler("work", 2));
    pool.handle::<Work>(move |x| {
        let (r, p) = (Arc::clone(&r), Arc::clone(&p));
        async move {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            r.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, HandlerError>(x)
        }
    });
    pool.start().expect("start");
    let mut ids = Vec::new();
    for x in 0..8u32 {
        // Each run takes 100 ms under a 250 ms timeout. Eight runs two at a time: the
        // last pair waits 300 ms for its permits first — longer than the timeout, which
        // only starts when the handler does.
        ids.push(
            queue
                .enqueue_typed::<Work>(&x)
                .timeout(Duration::from_millis(250))
                .max_retries(0)
                .await
                .expect("enqueue"),
        );
    }
    for id in &ids {
        let out = queue
            .wait_result(id, Duration::from_secs(30))
            .await
            .expect("wait");
        assert_eq!(out.status, TaskStatus::Success, "{:?}", out.error);
    }
    pool.stop(Duration::from_secs(5)).await.expect("stop");
    assert_eq!(peak.load(Ordering::SeqCst), 2, "at most two runs at once");
}
