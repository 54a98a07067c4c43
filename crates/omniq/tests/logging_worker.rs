//! Issue "logging, done when": a worker's task events, captured in PROD mode, are JSON
//! lines that each carry task_id and correlation_id; in DEV mode they follow the guide's
//! layout with the bound fields below. Runs a real worker over SQLite in memory on a
//! current-thread runtime, so the thread-local capture sees every event.

use omniq::logging::{LogConfig, LogMode};
use omniq::{AsyncTaskQueue, AsyncWorkerPool, Backoff, ErrorType, HandlerError, TaskError};
use std::io::{self, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// Enqueues a success, a fail-once-then-succeed and a final failure, runs them to the
/// end and returns everything logged.
async fn run_tasks(config: LogConfig) -> (String, Vec<String>) {
    let sink = Capture::default();
    let _guard = tracing::subscriber::set_default(config.build_subscriber(sink.clone()));
    let storage: Arc<dyn omniq::Storage> = Arc::new(
        omniq_sqlite::SqliteStorage::in_memory()
            .await
            .expect("sqlite"),
    );
    let queue = AsyncTaskQueue::new(storage);
    let mut pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .concurrency(2)
        .poll_interval(Duration::from_millis(20))
        .backoff(Backoff::Fixed(time::Duration::milliseconds(20)))
        .name("worker-1")
        .build()
        .expect("pool");
    pool.register("ok", |x: u32| async move { Ok::<_, HandlerError>(x) });
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    pool.register("flaky", move |_: ()| {
        let c = Arc::clone(&c);
        async move {
            if c.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(HandlerError::from(TaskError::new(
                    ErrorType::Network,
                    "reset",
                )));
            }
            Ok(())
        }
    });
    pool.register("bad", |_: ()| async move {
        Err::<(), _>(HandlerError::from(
            TaskError::new(ErrorType::Validation, "rejected").with_retryable(false),
        ))
    });
    pool.start().expect("start");
    let mut ids = Vec::new();
    for (func, args) in [
        ("ok", serde_json::json!(1)),
        ("flaky", serde_json::json!(null)),
        ("bad", serde_json::json!(null)),
    ] {
        let id = queue.enqueue(func, &args).await.expect("enqueue");
        queue
            .wait_result(&id, Duration::from_secs(20))
            .await
            .expect("result");
        ids.push(id.to_string());
    }
    pool.stop(Duration::from_secs(5)).await.expect("stop");
    let text = String::from_utf8(sink.0.lock().expect("lock").clone()).expect("utf8");
    (text, ids)
}

#[tokio::test]
async fn prod_mode_task_events_carry_task_id_and_correlation_id() {
    let (text, ids) = run_tasks(LogConfig::default().with_mode(LogMode::Prod)).await;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for id in &ids {
        let mine: Vec<_> = lines
            .iter()
            .filter(|l| l["task_id"] == id.as_str())
            .collect();
        for l in &mine {
            assert_eq!(
                l["correlation_id"],
                id.as_str(),
                "every task event is correlated: {l}"
            );
            for key in ["timestamp", "level", "logger", "message", "operation"] {
                assert!(l.get(key).is_some(), "{key} missing in {l}");
            }
        }
        let messages: Vec<&str> = mine.iter().filter_map(|l| l["message"].as_str()).collect();
        assert!(
            messages.iter().any(|m| m.starts_with("Task enqueued:")),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.starts_with("Task started:")),
            "{messages:?}"
        );
        let worker_lines = mine
            .iter()
            .filter(|l| l["logger"] == "omniq::worker")
            .count();
        assert!(worker_lines >= 2, "worker events for {id}: {messages:?}");
        assert!(
            mine.iter()
                .filter(|l| l["logger"] == "omniq::worker")
                .all(|l| l["worker"] == "worker-1")
        );
    }
    let by_msg = |prefix: &str| {
        lines
            .iter()
            .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
            .count()
    };
    assert_eq!(by_msg("Task completed:"), 2, "ok and flaky complete");
    assert!(by_msg("Task failed") >= 2, "flaky's first run and bad fail");
    assert!(by_msg("Task retry") >= 1, "flaky is retried");
    let warn = lines.iter().find(|l| {
        l["task_id"] == ids[1].as_str() && l["level"] == "WARNING"
            || l["task_id"] == ids[1].as_str() && l["level"] == "WARN"
    });
    assert!(warn.is_some(), "a failure that will retry is a warning");
    let final_fail = lines.iter().find(|l| {
        l["task_id"] == ids[2].as_str()
            && l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Task failed (final):"))
    });
    assert_eq!(
        final_fail.map(|l| l["level"].clone()),
        Some(serde_json::json!("ERROR"))
    );
    assert!(lines.iter().any(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.contains("worker-1 stopped"))
    }));
}

#[tokio::test]
async fn dev_mode_prints_the_guides_layout_with_fields_below() {
    let (text, ids) = run_tasks(
        LogConfig::default()
            .with_mode(LogMode::Dev)
            .with_ansi(Some(false)),
    )
    .await;
    let lines: Vec<&str> = text.lines().collect();
    let started = lines
        .iter()
        .position(|l| l.contains(&format!("Task started: {}", ids[0])))
        .expect("started line");
    let head = regex::Regex::new(
        r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \| INFO     \| omniq::worker:\d+ \| Task started: ",
    )
    .expect("regex");
    assert!(head.is_match(lines[started]), "{}", lines[started]);
    let below = lines[started + 1];
    assert!(below.starts_with("└── task_id: "), "{below}");
    assert!(
        below.contains("| worker: worker-1")
            && below.contains(&format!("correlation_id: {}", ids[0])),
        "{below}"
    );
}

/// Durability at stop: once `stop` returns, the lines of the pool's run are in the log
/// file, though the writer writes in batches and its guard is still alive.
#[tokio::test]
async fn stop_returns_with_the_runs_lines_in_the_log_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("omniq.log");
    let config = LogConfig::default()
        .with_mode(LogMode::Prod)
        .with_file(&file);
    let (writer, log_guard) = config.open_writer().expect("writer");
    let _subscriber = tracing::subscriber::set_default(config.build_subscriber(writer));
    let storage: Arc<dyn omniq::Storage> = Arc::new(
        omniq_sqlite::SqliteStorage::in_memory()
            .await
            .expect("sqlite"),
    );
    let queue = AsyncTaskQueue::new(storage);
    let mut pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .poll_interval(Duration::from_millis(20))
        .name("worker-durable")
        .build()
        .expect("pool");
    pool.register("ok", |x: u32| async move { Ok::<_, HandlerError>(x) });
    pool.start().expect("start");
    let id = queue.enqueue("ok", &7u32).await.expect("enqueue");
    queue
        .wait_result(&id, Duration::from_secs(20))
        .await
        .expect("result");
    pool.stop(Duration::from_secs(5)).await.expect("stop");

    let text = std::fs::read_to_string(&file).expect("log file");
    let completed = format!(r#""message":"Task completed: {id} after 1 attempt""#);
    assert!(text.contains(&completed), "{text}");
    assert!(
        text.contains(r#""message":"Worker worker-durable stopped""#),
        "{text}"
    );
    drop(log_guard);
}
