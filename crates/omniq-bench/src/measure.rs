//! The measurements: batch and single enqueue, enqueue→start latency, and the burn-down,
//! whose worker runs in a child process (this binary's `work` command) so that its peak
//! RSS is the worker's alone and logging can be switched on for it only.

use crate::site::Site;
use anyhow::{Context, Result, anyhow, bail};
use hdrhistogram::Histogram;
use omniq::logging::{LogConfig, LogLevel, LogMode};
use omniq::{AsyncTaskQueue, AsyncWorkerPool, HandlerError, Storage};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the worker pool of every measurement is set up.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct PoolShape {
    pub(crate) concurrency: usize,
    pub(crate) prefetch: usize,
}

impl PoolShape {
    fn pool(&self, queue: &AsyncTaskQueue) -> Result<AsyncWorkerPool> {
        Ok(AsyncWorkerPool::builder()
            .queue(queue.clone())
            .concurrency(self.concurrency)
            .prefetch(self.prefetch)
            .poll_interval(Duration::from_millis(100))
            .build()?)
    }
}

/// Enqueue→handler-start latency percentiles.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Latency {
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) samples: u64,
}

/// What a burn-down run measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Burn {
    pub(crate) enqueue_batch_per_s: f64,
    pub(crate) processed_per_s: f64,
    pub(crate) worker_peak_rss_mb: f64,
    /// CPU time (user + system, every thread) the worker process spent per task, in µs.
    pub(crate) worker_cpu_us_per_task: f64,
    /// CPU time the backend's server spent per task during the batch enqueue and during
    /// the burn-down, in µs, where the server reports it ([`Site::server_cpu_s`]).
    pub(crate) server_cpu_us_per_enqueued_task: Option<f64>,
    pub(crate) server_cpu_us_per_processed_task: Option<f64>,
}

/// Waits until nothing is pending or running in the default queue.
async fn drained(storage: &dyn Storage, limit: Duration) -> Result<()> {
    let queues = vec![omniq::DEFAULT_QUEUE.to_string()];
    let t = Instant::now();
    while storage.next_due(&queues).await?.is_some() {
        if t.elapsed() > limit {
            bail!("tasks still pending or running after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// `n` single enqueues, one await each (at most `budget` long); returns tasks/s. The tasks
/// are `noop`s that [`latency`]'s pool drains before it measures.
pub(crate) async fn enqueue_single(
    queue: &AsyncTaskQueue,
    n: usize,
    budget: Duration,
) -> Result<f64> {
    let t = Instant::now();
    let mut done = 0usize;
    while done < n.max(1) {
        queue.enqueue("noop", &(done as u64)).await?;
        done += 1;
        if t.elapsed() >= budget {
            break;
        }
    }
    Ok(done as f64 / t.elapsed().as_secs_f64())
}

/// Starts a pool, drains what is queued, then enqueues `n` tasks at `rate` per second (each
/// enqueue in its own task, so a slow one does not slow the rate) and records when each
/// handler starts, measured from just before its enqueue call.
pub(crate) async fn latency(
    queue: &AsyncTaskQueue,
    shape: PoolShape,
    n: usize,
    rate: f64,
) -> Result<Latency> {
    let base = Instant::now();
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1,
        600_000_000,
        3,
    )?));
    let seen = Arc::new(AtomicUsize::new(0));
    let mut pool = shape.pool(queue)?;
    pool.register("noop", |_: u64| async move { Ok::<_, HandlerError>(()) });
    let (h, s) = (Arc::clone(&hist), Arc::clone(&seen));
    pool.register("probe", move |sent_us: u64| {
        let (h, s) = (Arc::clone(&h), Arc::clone(&s));
        async move {
            let now_us = base.elapsed().as_micros() as u64;
            if let Ok(mut h) = h.lock() {
                h.saturating_record(now_us.saturating_sub(sent_us).max(1));
            }
            s.fetch_add(1, Ordering::Relaxed);
            Ok::<_, HandlerError>(())
        }
    });
    pool.start()?;
    let result = async {
        drained(queue.storage().as_ref(), Duration::from_secs(120)).await?;
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1.0)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sends = Vec::with_capacity(n);
        for _ in 0..n {
            tick.tick().await;
            let q = queue.clone();
            sends.push(tokio::spawn(async move {
                let sent = base.elapsed().as_micros() as u64;
                q.enqueue("probe", &sent).await.map(|_| ())
            }));
        }
        for s in sends {
            s.await??;
        }
        let t = Instant::now();
        while seen.load(Ordering::Relaxed) < n {
            if t.elapsed() > Duration::from_secs(60) {
                bail!(
                    "only {} of {n} latency probes started within 60 s",
                    seen.load(Ordering::Relaxed)
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
    .await;
    pool.stop(Duration::from_secs(10)).await?;
    result?;
    let h = hist
        .lock()
        .map_err(|_| anyhow!("histogram lock poisoned"))?;
    let ms = |us: u64| us as f64 / 1000.0;
    Ok(Latency {
        p50_ms: ms(h.value_at_quantile(0.50)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        max_ms: ms(h.max()),
        samples: h.len(),
    })
}

/// One burn-down: batch-enqueue `tasks` no-op tasks into namespace `ns` (timed), then run
/// this binary's `work` command on them in a child process. The namespace is deleted
/// afterwards.
pub(crate) async fn burn(
    site: &Site,
    ns: &str,
    tasks: usize,
    shape: PoolShape,
    log_file: Option<&Path>,
) -> Result<Burn> {
    let result = async {
        let storage = site.open(ns).await?;
        let queue = AsyncTaskQueue::new(Arc::clone(&storage));
        let specs: Vec<_> = (0..tasks)
            .map(|i| queue.task("noop", &(i as u64)))
            .collect();
        let server_start = site.server_cpu_s().await?;
        let t = Instant::now();
        queue.enqueue_many(specs).await?;
        let enqueue = t.elapsed();
        let server_enqueued = site.server_cpu_s().await?;
        storage.close().await?;
        drop(queue);
        drop(storage);

        let exe = std::env::current_exe().context("finding this program to run the worker")?;
        let mut cmd = std::process::Command::new(exe);
        cmd.args([
            "work",
            "--backend",
            site.backend.name(),
            "--location",
            &site.location,
            "--namespace",
            ns,
            "--tasks",
            &tasks.to_string(),
            "--concurrency",
            &shape.concurrency.to_string(),
            "--prefetch",
            &shape.prefetch.to_string(),
        ]);
        if let Some(f) = log_file {
            cmd.arg("--log-file").arg(f);
        }
        let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "the worker process failed ({}): {}{}",
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .ok_or_else(|| anyhow!("the worker printed no result: {stdout}"))?;
        let v: serde_json::Value = serde_json::from_str(line)?;
        let num = |k: &str| {
            v[k].as_f64()
                .ok_or_else(|| anyhow!("the worker's result has no {k}: {line}"))
        };
        let server_processed = site.server_cpu_s().await?;
        let per_task = |a: Option<f64>, b: Option<f64>| Some((b? - a?) * 1e6 / tasks as f64);
        Ok(Burn {
            enqueue_batch_per_s: tasks as f64 / enqueue.as_secs_f64(),
            processed_per_s: num("processed_per_s")?,
            worker_peak_rss_mb: num("peak_rss_mb")?,
            worker_cpu_us_per_task: num("cpu_s")? * 1e6 / tasks as f64,
            server_cpu_us_per_enqueued_task: per_task(server_start, server_enqueued),
            server_cpu_us_per_processed_task: per_task(server_enqueued, server_processed),
        })
    }
    .await;
    let cleaned = site.cleanup(ns).await;
    let burn = result?;
    cleaned?;
    Ok(burn)
}

/// The `work` command: runs a pool over namespace `ns` until `tasks` no-op tasks are done
/// and nothing is left pending or running, then prints one JSON line.
pub(crate) async fn work(
    site: &Site,
    ns: &str,
    tasks: usize,
    shape: PoolShape,
    log_file: Option<&Path>,
) -> Result<()> {
    let _guard = match log_file {
        Some(f) => Some(omniq::logging::configure(
            LogConfig::default()
                .with_mode(LogMode::Prod)
                .with_level(LogLevel::Info)
                .with_file(f),
        )?),
        None => None,
    };
    let storage = site.open(ns).await?;
    let queue = AsyncTaskQueue::new(Arc::clone(&storage));
    let done = Arc::new(AtomicUsize::new(0));
    let mut pool = shape.pool(&queue)?;
    let d = Arc::clone(&done);
    pool.register("noop", move |_: u64| {
        let d = Arc::clone(&d);
        async move {
            d.fetch_add(1, Ordering::Relaxed);
            Ok::<_, HandlerError>(())
        }
    });
    let t = Instant::now();
    pool.start()?;
    let result = async {
        // Stalled: no task started for 60 s.
        let (mut last, mut since) = (0, Instant::now());
        loop {
            let now = done.load(Ordering::Relaxed);
            if now >= tasks {
                break;
            }
            if now != last {
                (last, since) = (now, Instant::now());
            } else if since.elapsed() > Duration::from_secs(60) {
                bail!("stalled: {now} of {tasks} tasks ran, none in the last 60 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        drained(storage.as_ref(), Duration::from_secs(120)).await
    }
    .await;
    let elapsed = t.elapsed();
    pool.stop(Duration::from_secs(10)).await?;
    result?;
    storage.close().await?;
    println!(
        "{}",
        serde_json::json!({
            "tasks": tasks,
            "processed_per_s": tasks as f64 / elapsed.as_secs_f64(),
            "peak_rss_mb": peak_rss_mb(),
            "cpu_s": cpu_s(),
        })
    );
    Ok(())
}

/// This process's peak resident set (VmHWM) in MiB; NaN where /proc is not there.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU time this process has used so far (user + system, all threads), in seconds, from
/// /proc (in clock ticks of 1/100 s); NaN where /proc is not there.
fn cpu_s() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // The fields after the command name, which is in parentheses and may hold spaces.
            let rest = &s[s.rfind(')')? + 1..];
            let mut fields = rest.split_whitespace();
            // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
            let utime: f64 = fields.nth(11)?.parse().ok()?;
            let stime: f64 = fields.next()?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(f64::NAN)
}
