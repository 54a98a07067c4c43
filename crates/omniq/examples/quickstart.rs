//! OmniQ quickstart: enqueue a few tasks, run a worker pool, print each outcome.
//!
//! Runs on the embedded default (no server): `cargo run --example quickstart`.
//! Data goes to a fresh temporary directory unless `OMNIQ_BASE_DIR` is set.
//! Logging follows `OMNIQ_LOG_*` (try `OMNIQ_LOG_MODE=PROD OMNIQ_LOG_FILE=logs/q.log`).

use omniq::{AsyncOmniQ, Backoff, ErrorType, HandlerError, Settings, TaskError, TaskStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[derive(serde::Serialize, serde::Deserialize)]
struct Email {
    to: String,
    subject: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _log_guard = omniq::logging::configure_from_env()?;

    let mut settings = Settings::from_env()?;
    let _tmp;
    if std::env::var_os("OMNIQ_BASE_DIR").is_none() {
        let dir = tempfile::tempdir()?;
        settings.base_dir = dir.path().to_path_buf();
        _tmp = dir;
    }
    let omniq = AsyncOmniQ::new(settings).await?;

    // A worker pool with three handlers; retries wait 200 ms so the demo stays quick.
    let mut worker = omniq::AsyncWorkerPool::builder()
        .queue(omniq.queue().clone())
        .concurrency(4)
        .backoff(Backoff::Fixed(time::Duration::milliseconds(200)))
        .build()?;
    worker.register("math.add", |(a, b): (i64, i64)| async move {
        Ok::<_, HandlerError>(a + b)
    });
    worker.register("emails.send", |e: Email| async move {
        Ok::<_, HandlerError>(format!("sent '{}' to {}", e.subject, e.to))
    });
    let flaky_calls = Arc::new(AtomicU32::new(0));
    let calls = Arc::clone(&flaky_calls);
    worker.register("flaky.fetch", move |url: String| {
        let calls = Arc::clone(&calls);
        async move {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                // First attempt fails with a retryable network error; the retry succeeds.
                return Err(HandlerError::from(
                    TaskError::new(
                        ErrorType::Network,
                        format!("connection reset fetching {url}"),
                    )
                    .with_context("url", &url),
                ));
            }
            Ok(format!("fetched {url}"))
        }
    });
    let ticks = Arc::new(AtomicU32::new(0));
    let t = Arc::clone(&ticks);
    worker.register("clock.tick", move |(): ()| {
        let t = Arc::clone(&t);
        async move { Ok::<_, HandlerError>(t.fetch_add(1, Ordering::SeqCst) + 1) }
    });
    worker.register("broken.job", |_: serde_json::Value| async move {
        Err::<(), _>(HandlerError::from(
            TaskError::new(ErrorType::Validation, "input rejected").with_retryable(false),
        ))
    });
    worker.start()?;

    let add = omniq.enqueue("math.add", &(2, 40)).await?;
    let email = omniq
        .enqueue(
            "emails.send",
            &Email {
                to: "ada@example.com".into(),
                subject: "Welcome".into(),
            },
        )
        .queue("default")
        .priority(5)
        .await?;
    let flaky = omniq
        .enqueue("flaky.fetch", &"https://example.com/data")
        .max_retries(3)
        .await?;
    let broken = omniq
        .enqueue("broken.job", &serde_json::json!({"x": 1}))
        .await?;
    // A recurring task every 300 ms (integer seconds work too: `.interval(3600)`).
    let tick = omniq
        .enqueue("clock.tick", &())
        .interval(Duration::from_millis(300))
        .await?;

    let wait = Duration::from_secs(20);
    let fmt = omniq.queue().format();
    for (name, id) in [
        ("math.add", add),
        ("emails.send", email),
        ("flaky.fetch", flaky),
        ("broken.job", broken),
    ] {
        let r = omniq.wait_result(&id, wait).await?;
        let task = omniq.get_task(&id).await?.ok_or("task vanished")?;
        match r.status {
            TaskStatus::Success => {
                let value: serde_json::Value =
                    fmt.decode(r.result.as_ref().map(|p| p.as_bytes()).unwrap_or(b"\xc0"))?;
                println!(
                    "{name:<12} {id}  success  attempts={}  result={value}",
                    task.attempts
                );
            }
            status => {
                let err = r
                    .error
                    .as_ref()
                    .map(|e| format!("{}: {}", e.error_type, e.message))
                    .unwrap_or_default();
                println!(
                    "{name:<12} {id}  {status}  attempts={}  error={err}",
                    task.attempts
                );
            }
        }
    }

    // Let the recurring task run a few times, then cancel the series.
    let deadline = tokio::time::Instant::now() + wait;
    while ticks.load(Ordering::SeqCst) < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    omniq.cancel(&tick).await?;
    let tick_task = omniq.get_task(&tick).await?.ok_or("task vanished")?;
    println!(
        "{:<12} {tick}  ran {} times every 300ms, same id; next slot {}; then cancelled",
        "clock.tick",
        ticks.load(Ordering::SeqCst),
        tick_task
            .schedule
            .eta
            .map(|e| e.to_string())
            .unwrap_or_default(),
    );

    let report = worker.stop(Duration::from_secs(5)).await?;
    println!("worker stopped: {report:?}");
    omniq.close().await?;
    Ok(())
}
