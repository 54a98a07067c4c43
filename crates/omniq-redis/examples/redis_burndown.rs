//! Burn-down probe for the Redis backend: batch-enqueue N no-op tasks, run an
//! `AsyncWorkerPool` until all are done, then measure enqueue→start latency at
//! a steady low rate. Prints rates and p50/p99.
//!
//! ```text
//! cargo run --release -p omniq-redis --example redis_burndown -- --tasks 100000
//! cargo run --release -p omniq-redis --example redis_burndown -- --url redis-cluster://127.0.0.1:7000
//! cargo run --release -p omniq-redis --example redis_burndown -- --tasks 100000 --enqueue-only
//! ```
//!
//! A probe, not the benchmark: `cargo xtask bench` is where figures are reported.

use omniq_core::{Storage, TaskStatus};
use omniq_redis::RedisStorage;
use omniq_runtime::{AsyncTaskQueue, AsyncWorkerPool, HandlerError};
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
        .unwrap_or(50_000);
    let concurrency: usize = arg("--concurrency")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(64);
    let url = arg("--url").unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let namespace = format!("bench{}", std::process::id());
    let storage = RedisStorage::builder()
        .url(&url)
        .namespace(&namespace)
        .build()
        .await?;
    let storage: Arc<dyn Storage> = Arc::new(storage);
    let queue = AsyncTaskQueue::new(Arc::clone(&storage));

    // Batch enqueue: the runtime splits into max_batch (1000) calls; several batches
    // in flight at once, as concurrent producers would.
    let specs: Vec<_> = (0..tasks)
        .map(|i| queue.task("noop", &(i as u64)))
        .collect();
    let mut chunks = Vec::new();
    let mut rest = specs;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(10_000));
        chunks.push(rest);
        rest = tail;
    }
    let t0 = Instant::now();
    let producers = chunks.into_iter().map(|c| {
        let q = queue.clone();
        tokio::spawn(async move { q.enqueue_many(c).await })
    });
    for p in futures::future::join_all(producers).await {
        p??;
    }
    let enqueue = t0.elapsed();
    if std::env::args().any(|a| a == "--enqueue-only") {
        // For memory figures: the tasks stay (namespace printed) for INFO memory.
        println!(
            "namespace={namespace} enqueued={tasks} batch_enqueue={:.0}/s",
            tasks as f64 / enqueue.as_secs_f64()
        );
        return Ok(());
    }

    let mut pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .concurrency(concurrency)
        .prefetch(concurrency * 8)
        .poll_interval(Duration::from_millis(50))
        .build()?;
    pool.register("noop", |_: u64| async move { Ok::<_, HandlerError>(()) });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    pool.register("ping", move |_: ()| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(Instant::now());
            Ok::<_, HandlerError>(())
        }
    });
    let t1 = Instant::now();
    pool.start()?;
    loop {
        let done: u64 = storage
            .counts(Some("default"))
            .await?
            .iter()
            .map(|c| c.get(TaskStatus::Success))
            .sum();
        if done as usize >= tasks {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let burn = t1.elapsed();

    // Latency: one task at a time, 200 per second, enqueue → handler start.
    let mut lat = Vec::new();
    for _ in 0..400 {
        let before = Instant::now();
        queue.enqueue("ping", &()).await?;
        let started = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await?
            .ok_or("the pool stopped")?;
        lat.push(started.duration_since(before));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    pool.stop(Duration::from_secs(10)).await?;
    let purged = storage
        .purge_results(time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .await?;
    storage.close().await?;
    println!(
        "backend={} tasks={tasks} concurrency={concurrency} batch_enqueue={:.0}/s processed={:.0}/s latency_p50={:.2?} latency_p99={:.2?} (purged {purged})",
        storage.backend_name(),
        tasks as f64 / enqueue.as_secs_f64(),
        tasks as f64 / burn.as_secs_f64(),
        pct(0.5),
        pct(0.99),
    );
    Ok(())
}
