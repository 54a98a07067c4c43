//! Typed tasks and handler errors, as a user meets them (R1, R4, R6, M5): one declaration
//! per task type, typed enqueue / handler / output, and `?` on any error type.

use omniq::{AsyncTaskQueue, AsyncWorkerPool, ErrorType, HandlerError, TaskError, TaskStatus};
use omniq_sqlite::SqliteStorage;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Order {
    id: u32,
    items: Vec<String>,
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Receipt {
    order: u32,
    count: usize,
}

omniq::task_type!(Checkout = "shop.checkout", Order => Receipt);
omniq::task_type!(Fails = "shop.fails", String => ());
omniq::task_type!(Slow = "shop.slow", () => ());

/// A custom error with a source, as an application would define one.
#[derive(Debug, thiserror::Error)]
#[error("inventory check failed")]
struct InventoryError(#[source] std::io::Error);

async fn setup() -> (AsyncTaskQueue, AsyncWorkerPool) {
    let storage: Arc<dyn omniq::Storage> =
        Arc::new(SqliteStorage::in_memory().await.expect("sqlite"));
    let queue = AsyncTaskQueue::new(storage);
    let pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .concurrency(4)
        // Both duration types are accepted everywhere.
        .poll_interval(time::Duration::milliseconds(50))
        .lease(Duration::from_secs(30))
        .build()
        .expect("pool");
    (queue, pool)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_task_round_trips_its_arguments_and_output() {
    let (queue, mut pool) = setup().await;
    pool.handle::<Checkout>(|order: Order| async move {
        Ok::<_, HandlerError>(Receipt {
            order: order.id,
            count: order.items.len(),
        })
    });
    pool.start().expect("start");
    let order = Order {
        id: 7,
        items: vec!["tea".into(), "cake".into()],
    };
    let id = queue
        .enqueue_typed::<Checkout>(&order)
        .timeout(time::Duration::seconds(5))
        .await
        .expect("enqueue");
    let receipt = queue
        .wait_output(&id, Duration::from_secs(20))
        .await
        .expect("wait");
    assert_eq!(receipt, Ok(Receipt { order: 7, count: 2 }));
    // The untyped read API hands back values too.
    let outcome = queue
        .get_result(&id)
        .await
        .expect("get_result")
        .expect("finished");
    assert!(outcome.is_success());
    assert_eq!(
        outcome.value().expect("json"),
        serde_json::json!({"order": 7, "count": 2})
    );
    assert_eq!(queue.output(&id).await.expect("output"), Some(receipt));
    pool.stop(Duration::from_secs(5)).await.expect("stop");
}

/// What `?` records for each kind of error a handler may meet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_take_question_mark_on_any_error() {
    let (queue, mut pool) = setup().await;
    pool.handle::<Fails>(|kind: String| async move {
        match kind.as_str() {
            "io" => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file",
            ))?,
            "custom" => Err(InventoryError(std::io::Error::other("disk read")))?,
            "anyhow" => Err(anyhow::anyhow!("upstream said no").context("calling the API"))?,
            "boxed" => {
                let e: Box<dyn std::error::Error + Send + Sync> = "boxed failure".into();
                Err(e)?
            }
            "message" => Err("just a message")?,
            "parse" => {
                let _: u32 = "x".parse()?;
            }
            _ => Err(TaskError::new(ErrorType::Validation, "chosen").with_retryable(false))?,
        }
        Ok::<_, HandlerError>(())
    });
    pool.start().expect("start");
    let mut cases = Vec::new();
    for kind in [
        "io", "custom", "anyhow", "boxed", "message", "parse", "task",
    ] {
        let id = queue
            .enqueue_typed::<Fails>(&kind.to_string())
            .max_retries(0)
            .await
            .expect("enqueue");
        cases.push((kind, id));
    }
    for (kind, id) in cases {
        let err = queue
            .wait_output(&id, Duration::from_secs(20))
            .await
            .expect("wait")
            .expect_err("the run failed");
        let ty = err.exception_type.clone().unwrap_or_default();
        let tb = err.traceback.clone().unwrap_or_default();
        match kind {
            "io" => {
                assert_eq!(ty, "std::io::error::Error", "{err:?}");
                assert!(err.message.contains("no such file"));
            }
            "custom" => {
                assert!(ty.ends_with("InventoryError"), "{ty}");
                assert!(
                    tb.contains("caused by: disk read"),
                    "the source chain: {tb}"
                );
            }
            "anyhow" => {
                assert_eq!(ty, "anyhow::Error", "{err:?}");
                assert!(err.message.contains("calling the API"), "{err:?}");
                assert!(tb.contains("upstream said no"), "the context chain: {tb}");
            }
            "boxed" | "message" => {
                assert!(err.message.contains(if kind == "boxed" {
                    "boxed failure"
                } else {
                    "just a message"
                }));
            }
            "parse" => assert!(ty.ends_with("ParseIntError"), "{ty}"),
            _ => {
                assert_eq!(err.error_type, ErrorType::Validation);
                assert!(!err.is_retryable);
            }
        }
    }
    pool.stop(Duration::from_secs(5)).await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_task_outputs_a_cancellation_error() {
    let (queue, mut pool) = setup().await;
    pool.handle::<Slow>(|()| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, HandlerError>(())
    });
    let id = queue
        .enqueue_typed::<Slow>(&())
        .delay(Duration::from_secs(3600))
        .await
        .expect("enqueue");
    queue.cancel(&id).await.expect("cancel");
    let out = queue
        .wait_output(&id, Duration::from_secs(5))
        .await
        .expect("wait");
    let err = out.expect_err("cancelled");
    assert_eq!(err.error_type, ErrorType::User);
    assert_eq!(
        err.context.get("status"),
        Some(&serde_json::json!("cancelled"))
    );
    let outcome = queue.get_result(&id).await.expect("get").expect("finished");
    assert_eq!(outcome.status, TaskStatus::Cancelled);
    drop(pool);
}

/// A rolling deploy: the first worker up does not know the task yet. It hands the task
/// back without counting an attempt; the worker that knows it runs it on attempt 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_no_worker_knows_yet_waits_for_one_that_does() {
    let storage: Arc<dyn omniq::Storage> =
        Arc::new(SqliteStorage::in_memory().await.expect("sqlite"));
    let queue = AsyncTaskQueue::new(Arc::clone(&storage));
    let old = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .poll_interval(Duration::from_millis(20))
        .unknown_handler_delay(Duration::from_millis(50))
        .build()
        .expect("old pool");
    old.start().expect("start the old worker");
    let id = queue
        .enqueue_typed::<Checkout>(&Order {
            id: 1,
            items: vec!["tea".into()],
        })
        .await
        .expect("enqueue");
    // Let the old worker see (and hand back) it a few times.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let t = queue.get_task(&id).await.expect("get").expect("task");
        let seen = t
            .error
            .as_ref()
            .is_some_and(|e| e.context.contains_key("unhandled_since"));
        if seen && t.status == TaskStatus::Pending {
            assert_eq!(t.attempts, 0, "a hand-back is not an attempt");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never handed back: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut new = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .poll_interval(Duration::from_millis(20))
        .build()
        .expect("new pool");
    new.handle::<Checkout>(|o: Order| async move {
        Ok::<_, HandlerError>(Receipt {
            order: o.id,
            count: o.items.len(),
        })
    });
    new.start().expect("start the new worker");
    let out = queue
        .wait_result(&id, Duration::from_secs(20))
        .await
        .expect("wait");
    old.stop(Duration::from_secs(5)).await.expect("stop");
    new.stop(Duration::from_secs(5)).await.expect("stop");
    assert_eq!(out.status, TaskStatus::Success, "{:?}", out.error);
    assert_eq!(out.attempts, 1, "only the real run counts");
}
