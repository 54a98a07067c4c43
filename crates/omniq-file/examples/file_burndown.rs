//! Burn-down probe for the file backend: batch-enqueue N no-op tasks into a directory,
//! run an `omniq_runtime::AsyncWorkerPool` until all are done, and print the enqueue rate, the
//! processing rate and the enqueue→start latency of tasks sent one by one at a low rate.
//!
//! ```text
//! cargo run --release -p omniq-file --example file_burndown -- --tasks 20000
//! cargo run --release -p omniq-file --example file_burndown -- --tasks 20000 --relaxed
//! cargo run --release -p omniq-file --example file_burndown -- --tasks 20000 --memory
//! ```
//!
//! A probe, not the benchmark: `cargo xtask bench` is where figures are reported.

use omniq_core::Storage;
use omniq_file::{Durability, FileStorage};
use omniq_runtime::{AsyncTaskQueue, AsyncWorkerPool, HandlerError};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The floor probe: plain file creates per second (create, write 300 bytes, close) in
/// the same directory right now, so the figures read as ratios on a shared machine.
fn create_floor(dir: &std::path::Path) -> std::io::Result<f64> {
    let probe = dir.join("floor-probe");
    std::fs::create_dir_all(&probe)?;
    let n = 2000;
    let t = Instant::now();
    for i in 0..n {
        std::fs::write(probe.join(format!("f{i}")), [0u8; 300])?;
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&probe)?;
    Ok(rate)
}

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
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
        .unwrap_or(32);
    let dir = tempfile::tempdir()?;
    let durability = if flag("--relaxed") {
        Durability::Relaxed
    } else {
        Durability::Full
    };
    let storage = if flag("--memory") {
        FileStorage::in_memory().await?
    } else {
        FileStorage::builder()
            .dir(dir.path())
            .durability(durability)
            .build()
            .await?
    };
    let floor = if flag("--memory") {
        f64::NAN
    } else {
        create_floor(dir.path())?
    };
    let storage: Arc<dyn Storage> = Arc::new(storage);
    let queue = AsyncTaskQueue::new(Arc::clone(&storage));

    let specs: Vec<_> = (0..tasks)
        .map(|i| queue.task("noop", &(i as u64)))
        .collect();
    let t0 = Instant::now();
    queue.enqueue_many(specs).await?;
    let enqueue = t0.elapsed();

    let done = Arc::new(AtomicUsize::new(0));
    let mut pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .concurrency(concurrency)
        .prefetch(concurrency * 8)
        .poll_interval(Duration::from_millis(50))
        .build()?;
    let d = Arc::clone(&done);
    pool.register("noop", move |_: u64| {
        let d = Arc::clone(&d);
        async move {
            d.fetch_add(1, Ordering::Relaxed);
            Ok::<_, HandlerError>(())
        }
    });
    let started = Arc::new(std::sync::Mutex::new(Vec::<Duration>::new()));
    let s2 = Arc::clone(&started);
    pool.register("probe", move |sent_us: i64| {
        let s2 = Arc::clone(&s2);
        async move {
            let now_us = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64;
            let lat = Duration::from_micros(u64::try_from(now_us - sent_us).unwrap_or(0));
            s2.lock().map(|mut v| v.push(lat)).ok();
            Ok::<_, HandlerError>(())
        }
    });
    let t1 = Instant::now();
    pool.start()?;
    while done.load(Ordering::Relaxed) < tasks {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let burn = t1.elapsed();

    // Latency: one task at a time, 20 per second, enqueue→handler start.
    let samples = arg("--latency-samples")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(100usize);
    for _ in 0..samples {
        let sent_us = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64;
        queue.enqueue("probe", &sent_us).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    pool.stop(Duration::from_secs(10)).await?;
    let mut lat = started.lock().map(|v| v.clone()).unwrap_or_default();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    };
    println!(
        "store={} tasks={tasks} concurrency={concurrency} batch_enqueue={:.0}/s processed={:.0}/s latency_p50={:.1}ms p99={:.1}ms (n={}) floor_file_creates={floor:.0}/s",
        if flag("--memory") {
            "memory".to_string()
        } else {
            format!("dir/{durability:?}")
        },
        tasks as f64 / enqueue.as_secs_f64(),
        tasks as f64 / burn.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        lat.len(),
    );
    Ok(())
}
