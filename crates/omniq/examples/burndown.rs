//! Burn-down probe: batch-enqueue N no-op tasks on SQLite, run a worker pool until all
//! are done, print enqueue and processing rates. The switch for the logging-overhead
//! figure: `--log-file PATH` runs the same burn-down with PROD logging at INFO to a file.
//!
//! ```text
//! cargo run --release --example burndown -- --tasks 20000
//! cargo run --release --example burndown -- --tasks 20000 --log-file /tmp/omniq-bench.log
//! ```
//!
//! A probe, not the benchmark: `cargo xtask bench` is where figures are reported.

use omniq::logging::{LogConfig, LogLevel, LogMode};
use omniq::{AsyncTaskQueue, AsyncWorkerPool, HandlerError, Storage, TaskStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tasks: usize = arg("--tasks")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(20_000);
    let concurrency: usize = arg("--concurrency")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(16);
    let _guard = match arg("--log-file") {
        Some(path) => Some(omniq::logging::configure(
            LogConfig::default()
                .with_mode(LogMode::Prod)
                .with_level(LogLevel::Info)
                .with_file(path),
        )?),
        None => None,
    };
    let dir = tempfile::tempdir()?;
    let storage: Arc<dyn Storage> =
        Arc::new(omniq_sqlite::SqliteStorage::open(dir.path().join("bench.db")).await?);
    let queue = AsyncTaskQueue::new(Arc::clone(&storage));

    let specs: Vec<_> = (0..tasks)
        .map(|i| queue.task("noop", &(i as u64)))
        .collect();
    let t0 = Instant::now();
    queue.enqueue_many(specs).await?;
    let enqueue = t0.elapsed();

    let mut pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .concurrency(concurrency)
        .prefetch(concurrency * 8)
        .poll_interval(Duration::from_millis(50))
        .build()?;
    pool.register("noop", |_: u64| async move { Ok::<_, HandlerError>(()) });
    let t1 = Instant::now();
    pool.start()?;
    loop {
        let done: u64 = storage
            .counts(None)
            .await?
            .iter()
            .map(|c| c.get(TaskStatus::Success))
            .sum();
        if done as usize >= tasks {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let burn = t1.elapsed();
    pool.stop(Duration::from_secs(10)).await?;
    println!(
        "tasks={tasks} concurrency={concurrency} logging={} batch_enqueue={:.0}/s processed={:.0}/s",
        if arg("--log-file").is_some() {
            "prod-info-file"
        } else {
            "off"
        },
        tasks as f64 / enqueue.as_secs_f64(),
        tasks as f64 / burn.as_secs_f64(),
    );
    Ok(())
}
