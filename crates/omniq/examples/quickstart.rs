//! OmniQ quickstart: enqueue a few typed tasks, run a worker pool, print each outcome.
//!
//! Runs on the embedded default (no server): `cargo run --example quickstart`.
//! Data goes to a fresh temporary directory unless `OMNIQ_BASE_DIR` is set. Only
//! warnings are logged unless you ask (`OMNIQ_LOG_LEVEL=INFO`, or
//! `OMNIQ_LOG_MODE=PROD OMNIQ_LOG_FILE=logs/omniq.log` for JSON lines in a file).

use omniq::logging::{LogConfig, LogLevel};
use omniq::{
    AsyncOmniQ, Backoff, ErrorType, HandlerError, Settings, TaskError, TaskStatus, TaskType,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[derive(serde::Serialize, serde::Deserialize)]
struct Email {
    to: String,
    subject: String,
}

// Each task type is declared once: its name, argument type and output type. Enqueueing
// with the wrong arguments, or registering a handler of the wrong shape, does not compile.
omniq::task_type!(Add = "math.add", (i64, i64) => i64);
omniq::task_type!(SendEmail = "emails.send", Email => String);
omniq::task_type!(Fetch = "http.fetch", String => String);
omniq::task_type!(Tick = "clock.tick", () => u32);
omniq::task_type!(Reject = "broken.job", serde_json::Value => ());

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Warnings only, unless OMNIQ_LOG_LEVEL says otherwise: the summary below is the point.
    let mut log = LogConfig::from_env()?;
    if std::env::var_os("OMNIQ_LOG_LEVEL").is_none() {
        log.level = LogLevel::Warning;
    }
    let _log_guard = omniq::logging::configure(log)?;

    let mut settings = Settings::from_env()?;
    let _tmp;
    if std::env::var_os("OMNIQ_BASE_DIR").is_none() {
        let dir = tempfile::tempdir()?;
        settings.base_dir = dir.path().to_path_buf();
        _tmp = dir;
    }
    let omniq = AsyncOmniQ::new(settings).await?;

    // A worker pool; retries wait 200 ms so the demo stays quick.
    let mut worker = omniq::AsyncWorkerPool::builder()
        .queue(omniq.queue().clone())
        .concurrency(4)
        .backoff(Backoff::Fixed(time::Duration::milliseconds(200)))
        .build()?;
    worker.handle::<Add>(|(a, b)| async move { Ok::<_, HandlerError>(a + b) });
    worker.handle::<SendEmail>(|e: Email| async move {
        Ok::<_, HandlerError>(format!("sent '{}' to {}", e.subject, e.to))
    });
    let fetches = Arc::new(AtomicU32::new(0));
    let calls = Arc::clone(&fetches);
    worker.handle::<Fetch>(move |url: String| {
        let calls = Arc::clone(&calls);
        async move {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                // The first attempt fails with a retryable network error; the retry works.
                Err(TaskError::new(
                    ErrorType::Network,
                    format!("connection reset fetching {url}"),
                )
                .with_context("url", &url))?;
            }
            Ok::<_, HandlerError>(format!("fetched {url}"))
        }
    });
    let ticks = Arc::new(AtomicU32::new(0));
    let t = Arc::clone(&ticks);
    worker.handle::<Tick>(move |()| {
        let t = Arc::clone(&t);
        async move { Ok::<_, HandlerError>(t.fetch_add(1, Ordering::SeqCst) + 1) }
    });
    worker.handle::<Reject>(|_input| async move {
        // Not retryable: fails for good on the first attempt.
        Err(TaskError::new(ErrorType::Validation, "input rejected").with_retryable(false))?;
        Ok::<_, HandlerError>(())
    });
    worker.start()?;

    let add = omniq.enqueue_typed::<Add>(&(2, 40)).await?;
    let email = Email {
        to: "ada@example.com".into(),
        subject: "Welcome".into(),
    };
    let email = omniq.enqueue_typed::<SendEmail>(&email).priority(5).await?;
    let fetch = omniq
        .enqueue_typed::<Fetch>(&"https://example.com/data".to_string())
        .max_retries(3)
        .await?;
    let reject = omniq
        .enqueue_typed::<Reject>(&serde_json::json!({"x": 1}))
        .await?;
    // A recurring task every 300 ms, one series however often the program starts: the
    // unique key makes a second enqueue return the live series' id.
    let tick = omniq
        .enqueue_typed::<Tick>(&())
        .interval(Duration::from_millis(300))
        .unique_key("clock.tick")
        .await?;

    let wait = Duration::from_secs(20);
    let sum = omniq.wait_output(&add, wait).await?;
    println!("{:<12} {}  -> {sum:?}", Add::NAME, *add);
    let sent = omniq.wait_output(&email, wait).await?;
    println!("{:<12} {}  -> {sent:?}", SendEmail::NAME, *email);
    let fetched = omniq.wait_output(&fetch, wait).await?;
    let runs = omniq.wait_result(&fetch, wait).await?.attempts;
    println!(
        "{:<12} {}  -> {fetched:?} (attempt {runs}: the first failed and was retried)",
        Fetch::NAME,
        *fetch
    );
    match omniq.wait_output(&reject, wait).await? {
        Ok(()) => println!(
            "{:<12} {}  -> unexpectedly succeeded",
            Reject::NAME,
            *reject
        ),
        Err(e) => println!(
            "{:<12} {}  -> failed for good: {}: {}",
            Reject::NAME,
            *reject,
            e.error_type,
            e.message
        ),
    }

    // Let the recurring task run a few times, then cancel the series.
    let deadline = tokio::time::Instant::now() + wait;
    while ticks.load(Ordering::SeqCst) < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    omniq.cancel(&tick).await?;
    let status = match omniq.get_task(&tick).await? {
        Some(t) if t.status == TaskStatus::Cancelled => "cancelled",
        Some(_) => "cancel requested (stops after its current run)",
        None => "gone",
    };
    println!(
        "{:<12} {}  -> ran {} times every 300 ms under one id, then {status}",
        Tick::NAME,
        *tick,
        ticks.load(Ordering::SeqCst),
    );

    let report = worker.stop(Duration::from_secs(5)).await?;
    println!(
        "worker stopped: {} drained, {} handed back, {} aborted",
        report.drained, report.handed_back, report.aborted
    );
    omniq.close().await?;
    Ok(())
}
