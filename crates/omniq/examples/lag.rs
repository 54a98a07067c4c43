//! Start lag probe: how late due work starts, on the backend `OMNIQ_BACKEND` selects.
//!
//! ```sh
//! cargo run --release --example lag -- [retry_tasks] [interval_seconds]
//! OMNIQ_BACKEND=postgres OMNIQ_URL=postgres://… cargo run --release --example lag -- 200 300
//! ```
//!
//! 1. Retries: `retry_tasks` tasks (default 200), one at a time, each failing its first run
//!    with a fixed 50 ms back-off; lag = second start − (first failure + 50 ms).
//! 2. Interval: one task every 1 s for `interval_seconds` (default 300); lag = start −
//!    its slot (`eta + k·1 s`); a slot without a run is missed.
//!
//! Prints min / p50 / p99 / max lag in milliseconds, the slots missed and the slots run
//! twice, as one JSON line per measurement. The worker's idle poll is 60 s, so any prompt start was woken for it.

use omniq::{AsyncOmniQ, AsyncWorkerPool, Backoff, HandlerError, Settings};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn report(what: &str, mut lags_ms: Vec<f64>, extra: &str) {
    lags_ms.sort_by(f64::total_cmp);
    println!(
        "{{\"measure\":\"{what}\",\"n\":{},\"min_ms\":{:.2},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"max_ms\":{:.2}{extra}}}",
        lags_ms.len(),
        lags_ms.first().copied().unwrap_or(f64::NAN),
        percentile(&lags_ms, 50.0),
        percentile(&lags_ms, 99.0),
        lags_ms.last().copied().unwrap_or(f64::NAN),
    );
}

/// Each run notes (task, attempt, started, ended).
type Log = Arc<Mutex<Vec<(omniq::TaskId, u32, OffsetDateTime, OffsetDateTime)>>>;

/// Fails its first run, succeeds on the retry.
struct Flaky(Log);

omniq::task_type!(FlakyTask = "flaky", () => ());
omniq::task_type!(TickTask = "tick", () => ());

impl omniq::TaskHandler for Flaky {
    type Task = FlakyTask;
    async fn run(&self, _: (), ctx: omniq::TaskCtx) -> Result<(), HandlerError> {
        let now = OffsetDateTime::now_utc();
        if let Ok(mut v) = self.0.lock() {
            v.push((ctx.task_id, ctx.attempt, now, OffsetDateTime::now_utc()));
        }
        if ctx.attempt == 1 {
            return Err(HandlerError::msg("first run fails"));
        }
        Ok(())
    }
}

/// Notes when each run of the interval task starts.
struct Tick(Log);

impl omniq::TaskHandler for Tick {
    type Task = TickTask;
    async fn run(&self, _: (), ctx: omniq::TaskCtx) -> Result<(), HandlerError> {
        let now = OffsetDateTime::now_utc();
        if let Ok(mut v) = self.0.lock() {
            v.push((ctx.task_id, ctx.attempt, now, now));
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let retry_tasks: usize = args.next().map_or(Ok(200), |a| a.parse())?;
    let interval_secs: u64 = args.next().map_or(Ok(300), |a| a.parse())?;

    let dir = tempfile::tempdir()?;
    let mut settings = Settings::from_env()?;
    if std::env::var_os("OMNIQ_BASE_DIR").is_none() {
        settings.base_dir = dir.path().into();
    }
    settings.namespace = format!("lag{}", std::process::id());
    let omniq = AsyncOmniQ::new(settings).await?;
    let queue = omniq.queue().clone();

    let log: Log = Arc::default();
    let mut pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .concurrency(4)
        .poll_interval(Duration::from_secs(60))
        .build()?;
    pool.register_handler(Flaky(Arc::clone(&log)));
    pool.register_handler(Tick(Arc::clone(&log)));
    pool.start()?;

    // 1. Retries, one at a time so each measures an idle worker's wake-up.
    let mut lags = Vec::new();
    for _ in 0..retry_tasks {
        let id = queue
            .enqueue("flaky", &())
            .backoff(Backoff::Fixed(time::Duration::milliseconds(50)))
            .await?;
        queue.wait_result(&id, Duration::from_secs(30)).await?;
        let v = log.lock().map(|v| v.clone()).unwrap_or_default();
        let first = v.iter().find(|r| r.0 == id && r.1 == 1);
        let second = v.iter().find(|r| r.0 == id && r.1 == 2);
        if let (Some(f), Some(s)) = (first, second) {
            let lag = s.2 - (f.3 + time::Duration::milliseconds(50));
            lags.push(lag.as_seconds_f64() * 1000.0);
        }
    }
    report("retry_50ms_backoff_start_lag", lags, "");

    // 2. An interval task every second.
    // Its first slot is a second away, so the stored eta read below is still slot 0's:
    // reading it after a first run had re-armed the task would shift every slot by one.
    let id = queue
        .enqueue("tick", &())
        .interval(1)
        .delay(Duration::from_secs(1))
        .await?;
    let anchor = queue
        .get_task(&id)
        .await?
        .and_then(|t| t.schedule.eta)
        .ok_or("the interval task has no eta")?;
    tokio::time::sleep(Duration::from_secs(interval_secs + 1) + Duration::from_millis(500)).await;
    queue.cancel(&id).await?;
    let v = log.lock().map(|v| v.clone()).unwrap_or_default();
    let starts: Vec<OffsetDateTime> = v.iter().filter(|r| r.0 == id).map(|r| r.2).collect();
    let mut lags = Vec::new();
    let mut slots = std::collections::BTreeMap::<i64, u32>::new();
    for s in &starts {
        // The slot this run belongs to: the latest lattice point at or before its start.
        // A run before the anchor would be a bug; keep it visible as a negative lag.
        let k = ((*s - anchor).as_seconds_f64()).floor().max(0.0) as i64;
        *slots.entry(k).or_default() += 1;
        lags.push((*s - (anchor + time::Duration::seconds(k))).as_seconds_f64() * 1000.0);
    }
    let expected = interval_secs as i64 + 1;
    let missed = (0..expected).filter(|k| !slots.contains_key(k)).count();
    let doubled = slots.values().filter(|&&n| n > 1).count();
    report(
        "interval_1s_start_lag",
        lags,
        &format!(
            ",\"runs\":{},\"slots\":{expected},\"missed\":{missed},\"doubled\":{doubled}",
            starts.len()
        ),
    );
    pool.stop(Duration::from_secs(5)).await?;
    omniq.close().await?;
    Ok(())
}
