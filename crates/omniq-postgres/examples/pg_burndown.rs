//! Burn-down probe for the PostgreSQL backend: measure enqueue→start latency at a steady
//! low rate on an idle pool, then batch-enqueue N no-op tasks and run the pool until all
//! are done.
//! Prints enqueue and processing rates and latency percentiles. Runs in a schema of its
//! own, dropped at the end.
//!
//! ```text
//! cargo run --release -p omniq-postgres --example pg_burndown -- --tasks 50000
//! OMNIQ_TEST_POSTGRES_URL=postgres://… cargo run --release -p omniq-postgres --example pg_burndown
//! ```
//!
//! A probe, not the benchmark: `cargo xtask bench` is where figures are reported.

use omniq_core::Storage;
use omniq_postgres::PostgresStorage;
use omniq_runtime::{AsyncTaskQueue, AsyncWorkerPool, HandlerError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn num(name: &str, default: usize) -> Result<usize, Box<dyn std::error::Error>> {
    Ok(arg(name).map(|v| v.parse()).transpose()?.unwrap_or(default))
}

fn unix_micros() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// Waits until nothing is pending or running (an index probe, unlike counts()).
async fn drained(storage: &dyn Storage) -> Result<(), Box<dyn std::error::Error>> {
    let queues = vec!["default".to_string()];
    while storage.next_due(&queues).await?.is_some() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tasks = num("--tasks", 50_000)?;
    let concurrency = num("--concurrency", 64)?;
    let prefetch = num("--prefetch", 512)?;
    let connections = u32::try_from(num("--connections", 10)?)?;
    let latency_tasks = num("--latency-tasks", 500)?;
    let completion_batch = num("--completion-batch", 1000)?;
    let url = std::env::var("OMNIQ_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let ns = format!("omniq_bench_{}", std::process::id());
    let pg = PostgresStorage::builder()
        .url(&url)
        .namespace(&ns)
        .max_connections(connections)
        .build()
        .await?;
    let admin = pg.pool().clone();
    let storage: Arc<dyn Storage> = Arc::new(pg);
    let result = run(
        &storage,
        tasks,
        concurrency,
        prefetch,
        completion_batch,
        latency_tasks,
    )
    .await;
    storage.close().await?;
    sqlx::query(&format!(r#"DROP SCHEMA "{ns}" CASCADE"#))
        .execute(&sqlx::PgPool::connect(&url).await?)
        .await?;
    drop(admin);
    result
}

async fn run(
    storage: &Arc<dyn Storage>,
    tasks: usize,
    concurrency: usize,
    prefetch: usize,
    completion_batch: usize,
    latency_tasks: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let queue = AsyncTaskQueue::new(Arc::clone(storage));

    // Worker pools with a no-op handler; latency samples carry their enqueue time.
    let starts: Arc<Mutex<Vec<i64>>> = Arc::default();
    let make_pool = || -> Result<AsyncWorkerPool, Box<dyn std::error::Error>> {
        let mut pool = AsyncWorkerPool::builder()
            .queue(queue.clone())
            .concurrency(concurrency)
            .prefetch(prefetch)
            .completion_batch(completion_batch)
            .poll_interval(Duration::from_millis(200))
            .build()?;
        let seen = Arc::clone(&starts);
        pool.register("noop", move |enqueued_us: i64| {
            let seen = Arc::clone(&seen);
            async move {
                if enqueued_us > 0 {
                    let lag = unix_micros() - enqueued_us;
                    seen.lock().unwrap_or_else(|p| p.into_inner()).push(lag);
                }
                Ok::<_, HandlerError>(())
            }
        });
        Ok(pool)
    };

    // 1. Latency: single enqueues at a steady ~200/s on an idle pool.
    let pool = make_pool()?;
    pool.start()?;
    for _ in 0..latency_tasks {
        queue.enqueue("noop", &unix_micros()).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drained(storage.as_ref()).await?;
    pool.stop(Duration::from_secs(10)).await?;

    // 2. Batch enqueue.
    let specs: Vec<_> = (0..tasks).map(|_| queue.task("noop", &0_i64)).collect();
    let t0 = Instant::now();
    queue.enqueue_many(specs).await?;
    let enqueue = t0.elapsed();

    // 3. Burn-down.
    let pool = make_pool()?;
    let t1 = Instant::now();
    pool.start()?;
    drained(storage.as_ref()).await?;
    let burn = t1.elapsed();
    pool.stop(Duration::from_secs(10)).await?;

    let mut lags = starts.lock().unwrap_or_else(|p| p.into_inner()).clone();
    lags.sort_unstable();
    let pct = |p: f64| {
        let i = ((lags.len() as f64 - 1.0) * p).round() as usize;
        lags.get(i).map_or(f64::NAN, |us| *us as f64 / 1000.0)
    };
    println!(
        "postgres tasks={tasks} concurrency={concurrency} prefetch={prefetch} \
         completion_batch={completion_batch} \
         batch_enqueue={:.0}/s processed={:.0}/s latency_p50={:.2}ms latency_p99={:.2}ms (n={})",
        tasks as f64 / enqueue.as_secs_f64(),
        tasks as f64 / burn.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        lags.len(),
    );
    Ok(())
}
