//! Scenarios that run inside the orchestrator: hangs, bad data and load.

use crate::backend::Target;
use crate::faulty::FaultyStorage;
use crate::procs::{Workers, peak_rss_kib};
use crate::scenarios::{Row, Size, Workdir, enqueue, statuses};
use crate::worker::{Work, WorkArgs};
use anyhow::{Context, Result};
use omniq::backend::{ClaimRequest, Completion, LeaseRef};
use omniq::{AsyncTaskQueue, AsyncWorkerPool, Backend, HandlerError, Storage, TaskId, TaskStatus};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn wait_count(
    storage: &Arc<dyn Storage>,
    status: TaskStatus,
    n: u64,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(c) = storage.counts(None).await {
            if c.iter().map(|q| q.get(status)).sum::<u64>() >= n {
                return true;
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pool(storage: &Arc<dyn Storage>, storage_timeout: Duration) -> Result<AsyncWorkerPool> {
    let mut p = AsyncWorkerPool::builder()
        .queue(AsyncTaskQueue::new(Arc::clone(storage)))
        .concurrency(8)
        .lease(Duration::from_secs(5))
        .heartbeat_interval(Duration::from_millis(500))
        .poll_interval(Duration::from_millis(100))
        .storage_timeout(storage_timeout)
        .build()?;
    p.handle::<Work>(|a: WorkArgs| async move {
        tokio::time::sleep(Duration::from_millis(a.ms)).await;
        Ok::<_, HandlerError>(a.n)
    });
    Ok(p)
}

/// Scenario 4, hangs: every storage call hangs for a while under a running pool, which recovers
/// when they return; then the backend hangs again and `stop` must return within its
/// timeout plus the storage deadline; a new pool finishes the rest.
pub async fn hang(target: &Target, size: Size) -> Result<Row> {
    let started = Instant::now();
    let inner = target.open().await?;
    let faulty = Arc::new(FaultyStorage::new(Arc::clone(&inner), 0.0, 1));
    let storage: Arc<dyn Storage> = faulty.clone();
    let n = size.pick(2000, 300);
    let ids = enqueue(&inner, n, 10).await?;
    let storage_timeout = Duration::from_secs(1);
    let mut notes = Vec::new();
    let p = pool(&storage, storage_timeout)?;
    p.start()?;
    wait_count(&inner, TaskStatus::Success, n / 4, Duration::from_secs(60)).await;
    // Hang one: the pool must recover by itself.
    let hang_for = Duration::from_secs(size.pick(3, 2));
    faulty.hang();
    tokio::time::sleep(hang_for).await;
    faulty.release();
    let before = count_success(&inner).await;
    let recovered = wait_count(
        &inner,
        TaskStatus::Success,
        before + n / 10,
        Duration::from_secs(30),
    )
    .await;
    notes.push(format!(
        "pool recovered after a {} s hang: {recovered}",
        hang_for.as_secs()
    ));
    // Hang two: stop must not wait for the backend.
    faulty.hang();
    let t = Instant::now();
    let stop = p.stop(Duration::from_secs(1)).await;
    let stop_took = t.elapsed();
    faulty.release();
    notes.push(format!(
        "stop(1 s) on a hung backend returned in {:.1} s ({})",
        stop_took.as_secs_f64(),
        if stop.is_ok() { "ok" } else { "error" }
    ));
    // max(1 s, storage_timeout 1 s) + storage_timeout, a quarter second of grace, slack.
    let stop_ok = stop_took < Duration::from_secs(3);
    let p = pool(&storage, storage_timeout)?;
    p.start()?;
    let all = wait_count(&inner, TaskStatus::Success, n, Duration::from_secs(120)).await;
    p.stop(Duration::from_secs(5)).await?;
    let st = statuses(&inner).await?;
    let mut lost = ids
        .iter()
        .filter(|id| st.get(id) != Some(&TaskStatus::Success))
        .count() as u64;
    if !stop_ok || !recovered {
        // Reported as lost work: a pool that does not stop or recover stalls every task.
        lost += 1;
        notes.push("FAILED: stop or recovery out of bounds".into());
    }
    if !all {
        notes.push("not all tasks finished within 120 s".into());
    }
    let _ = inner.close().await;
    Ok(Row {
        backend: target.backend.as_str().into(),
        scenario: "hang".into(),
        tasks: n,
        faults: 2,
        lost,
        double: 0,
        panics: 0,
        runs: n,
        seconds: started.elapsed().as_secs_f64(),
        note: notes.join("; "),
    })
}

async fn count_success(storage: &Arc<dyn Storage>) -> u64 {
    storage
        .counts(None)
        .await
        .map(|c| c.iter().map(|q| q.success).sum())
        .unwrap_or(0)
}

/// Scenario 7a, concurrent claimers: 64 tasks of this process claim and complete batches straight
/// through the storage; no task may be claimed twice (leases are far longer than the run).
pub async fn claimers(target: &Target, size: Size) -> Result<Row> {
    let started = Instant::now();
    let storage = target.open().await?;
    let n = size.pick(100_000, 5_000);
    enqueue(&storage, n, 0).await?;
    let enqueued_in = started.elapsed();
    let claimed: Arc<Mutex<HashMap<TaskId, u32>>> = Arc::default();
    let done = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let deadline = t + Duration::from_secs(size.pick(900, 120));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let storage = Arc::clone(&storage);
        let claimed = Arc::clone(&claimed);
        let done = Arc::clone(&done);
        set.spawn(async move {
            let mut empty = 0;
            while Instant::now() < deadline && done.load(Ordering::SeqCst) < n {
                let now = time::OffsetDateTime::now_utc();
                let got = match storage
                    .claim(ClaimRequest {
                        queues: vec![omniq::DEFAULT_QUEUE.into()],
                        limit: 10,
                        now,
                        lease: time::Duration::minutes(30),
                    })
                    .await
                {
                    Ok(g) => g,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                if got.is_empty() {
                    empty += 1;
                    if empty > 50 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                {
                    let mut m = claimed.lock().unwrap_or_else(|e| e.into_inner());
                    for c in &got {
                        *m.entry(c.task.id).or_default() += 1;
                    }
                }
                let items: Vec<Completion> = got
                    .iter()
                    .map(|c| Completion {
                        lease: LeaseRef {
                            task_id: c.task.id,
                            token: c.lease.token,
                        },
                        result: None,
                        now,
                        next_run: None,
                    })
                    .collect();
                let k = items.len() as u64;
                if storage.complete(items).await.is_ok() {
                    done.fetch_add(k, Ordering::SeqCst);
                }
            }
        });
    }
    let mut panics = 0;
    while let Some(r) = set.join_next().await {
        if r.is_err() {
            panics += 1;
        }
    }
    let took = t.elapsed();
    let m = claimed.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let double = m.values().filter(|c| **c > 1).count() as u64;
    let success = count_success(&storage).await;
    let _ = storage.close().await;
    Ok(Row {
        backend: target.backend.as_str().into(),
        scenario: "load-64-claimers".into(),
        tasks: n,
        faults: 0,
        lost: n.saturating_sub(success),
        double,
        panics,
        runs: m.values().map(|c| u64::from(*c)).sum(),
        seconds: started.elapsed().as_secs_f64(),
        note: format!(
            "enqueue {:.0}/s, claim+complete {:.0}/s",
            n as f64 / enqueued_in.as_secs_f64(),
            n as f64 / took.as_secs_f64()
        ),
    })
}

/// Scenario 7b: A large backlog processed by one worker process; its peak RSS is the figure
/// (the file backend is not part of it: see docs/reliability.md).
pub async fn backlog(target: &Target, size: Size) -> Result<Option<Row>> {
    if target.backend == Backend::File {
        return Ok(None);
    }
    let started = Instant::now();
    let storage = target.open().await?;
    let n = size.pick(1_000_000, 20_000);
    enqueue(&storage, n, 0).await?;
    let enqueued_in = started.elapsed();
    let work = Workdir::new("backlog")?;
    let t = Instant::now();
    let mut workers = Workers::start(
        target,
        &work.audit(),
        work.path(),
        &[
            "--concurrency".into(),
            "32".into(),
            "--lease-ms".into(),
            "30000".into(),
            "--quiet".into(),
        ],
        &[vec![]],
    )?;
    let deadline = t + Duration::from_secs(size.pick(1200, 120));
    let mut peak = 0;
    let mut samples = Vec::new();
    loop {
        for pid in workers.pids() {
            if let Some(kib) = peak_rss_kib(pid) {
                peak = peak.max(kib);
            }
        }
        let s = count_success(&storage).await;
        if samples.last().is_none_or(|(_, k)| *k != peak) {
            samples.push((s, peak));
        }
        if s >= n || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let took = t.elapsed();
    let bad = workers.stop(Duration::from_secs(20));
    let (panics, _) = workers.panics();
    let success = count_success(&storage).await;
    let _ = storage.close().await;
    let rss_at: Vec<String> = samples
        .iter()
        .rev()
        .take(3)
        .map(|(s, k)| format!("{} MiB after {s} tasks", k / 1024))
        .collect();
    let mut note = vec![
        format!("peak RSS {} MiB", peak / 1024),
        format!(
            "enqueue {:.0}/s, processed {:.0}/s",
            n as f64 / enqueued_in.as_secs_f64(),
            success as f64 / took.as_secs_f64()
        ),
        format!("RSS grew last: {}", rss_at.join(", ")),
    ];
    note.extend(bad);
    Ok(Some(Row {
        backend: target.backend.as_str().into(),
        scenario: "load-backlog".into(),
        tasks: n,
        faults: 0,
        lost: n.saturating_sub(success),
        double: 0,
        panics,
        runs: success,
        seconds: started.elapsed().as_secs_f64(),
        note: note.join("; "),
    }))
}

/// Scenario 7, load: the concurrent claimers, then the backlog.
pub async fn load(target: &Target, size: Size) -> Result<Vec<Row>> {
    let mut rows = vec![claimers(target, size).await.context("claimers")?];
    let t2 = Target::new(target.backend, "backlog", None)?;
    let r = backlog(&t2, size).await;
    crate::scenarios::cleanup(&t2).await;
    rows.extend(r.context("backlog")?);
    Ok(rows)
}

/// Scenario 5, bad data: see [`crate::baddata`].
pub async fn bad_data(target: &Target, size: Size) -> Result<Row> {
    crate::baddata::run(target, size).await
}
