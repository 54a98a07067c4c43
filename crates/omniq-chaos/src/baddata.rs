//! Scenario 5, bad data: records that do not decode (garbage written straight into the backend's
//! table, key or file), payloads that do not match the handler's type, payloads over the
//! worker's limit and a large valid one, among good tasks. Each bad task must end Failed
//! with a clear error (a corrupt record: with a `decode` error), every good one Success,
//! and nothing may panic.

use crate::backend::Target;
use crate::scenarios::{Row, Size, enqueue};
use crate::worker::{Work, WorkArgs};
use anyhow::{Context, Result, bail};
use omniq::{
    AsyncTaskQueue, AsyncWorkerPool, Backend, Format, HandlerError, Payload, Storage, Task, TaskId,
    TaskStatus,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Garbage bytes: not MessagePack, not JSON.
const GARBAGE: &[u8] = b"\xc1\xff\x00garbage\xde\xad\xbe\xef";

/// Corrupts the stored record of `ids[i]` in a backend-specific way; returns how.
async fn corrupt(target: &Target, ids: &[TaskId]) -> Result<Vec<String>> {
    let mut how = Vec::new();
    match target.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", target.location)).await?;
            let table = format!("\"{}_tasks\"", target.namespace);
            let stmts = [
                format!("UPDATE {table} SET id = 'not-a-uuid-0' WHERE id = ?"),
                format!("UPDATE {table} SET created_at = 9223372036854775807 WHERE id = ?"),
                format!("UPDATE {table} SET attempts = -7 WHERE id = ?"),
            ];
            for (sql, id) in stmts.iter().zip(ids) {
                let r = sqlx::query(sql).bind(id.to_string()).execute(&pool).await?;
                if r.rows_affected() != 1 {
                    bail!("sqlite: {sql} changed {} rows", r.rows_affected());
                }
                how.push(sql.clone());
            }
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&target.location).await?;
            let table = format!("\"{}\".tasks", target.namespace);
            let stmts = [
                format!("UPDATE {table} SET created_at = 'infinity' WHERE id = $1"),
                format!("UPDATE {table} SET attempts = -7 WHERE id = $1"),
                format!("UPDATE {table} SET interval_us = -1, eta = '-infinity' WHERE id = $1"),
            ];
            for (sql, id) in stmts.iter().zip(ids) {
                let r = sqlx::query(sql).bind(id.0).execute(&pool).await?;
                if r.rows_affected() != 1 {
                    bail!("postgres: {sql} changed {} rows", r.rows_affected());
                }
                how.push(sql.clone());
            }
            pool.close().await;
        }
        Backend::Redis => {
            use omniq::redis::fred::prelude::*;
            let client = crate::raw::redis_client(&target.location).await?;
            for (i, id) in ids.iter().take(3).enumerate() {
                let key = format!(
                    "omniq:{{{}:{}}}:t:{id}",
                    target.namespace,
                    omniq::DEFAULT_QUEUE
                );
                // The record `d` twice, and once the state string `m`.
                let (field, value): (&str, &[u8]) = match i {
                    0 => ("d", GARBAGE),
                    1 => ("d", b""),
                    _ => ("m", b"pending|1|\xc1|garbage"),
                };
                let n: i64 = client.hset(&key, (field, value)).await?;
                let exists: bool = client.exists(&key).await?;
                if !exists || n != 0 {
                    bail!("redis: {key} was not an existing task record");
                }
                how.push(format!("HSET {key} {field} <{} bytes>", value.len()));
            }
            let _ = client.quit().await;
        }
        Backend::File => {
            for (i, id) in ids.iter().take(3).enumerate() {
                let dir = std::path::Path::new(&target.location)
                    .join(&target.namespace)
                    .join("t")
                    .join(id.to_string());
                let newest = std::fs::read_dir(&dir)
                    .with_context(|| format!("{}", dir.display()))?
                    .flatten()
                    .map(|e| e.path())
                    .max()
                    .context("no version")?;
                let value: &[u8] = match i {
                    0 => GARBAGE,
                    1 => b"",
                    _ => b"{\"id\": 42}",
                };
                std::fs::write(&newest, value)?;
                how.push(format!("overwrote {}", newest.display()));
            }
        }
    }
    Ok(how)
}

/// The status of each task, by `get_task` (a listing may trip over a corrupt record).
async fn by_id(
    storage: &Arc<dyn Storage>,
    ids: impl Iterator<Item = &TaskId>,
) -> Vec<Option<TaskStatus>> {
    let mut out = Vec::new();
    for id in ids {
        out.push(storage.get_task(id).await.ok().flatten().map(|t| t.status));
    }
    out
}

/// The stored status of each corrupted record: read with SQL where the backend has a
/// status column (the model cannot read those rows), else from the task's result,
/// which must carry a decode error (Redis keeps the undecodable record beside it; the
/// file backend wrote a fresh Failed version over it).
async fn raw_statuses(
    target: &Target,
    storage: &Arc<dyn Storage>,
    ids: &[TaskId],
) -> Result<Vec<String>> {
    Ok(match target.backend {
        Backend::Redis | Backend::File => {
            let mut out = Vec::new();
            for id in ids {
                out.push(match storage.get_result(id).await {
                    Ok(Some(r)) => match r.error.map(|e| e.error_type) {
                        Some(omniq::ErrorType::Decode) => r.status.as_str().to_string(),
                        other => format!("{} ({other:?} error)", r.status.as_str()),
                    },
                    Ok(None) => "no result".into(),
                    Err(e) => format!("unreadable result: {e}"),
                });
            }
            out
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", target.location)).await?;
            let mut out = Vec::new();
            for (i, id) in ids.iter().enumerate() {
                let key = if i == 0 {
                    "not-a-uuid-0".to_string()
                } else {
                    id.to_string()
                };
                let st: Option<String> = sqlx::query_scalar(&format!(
                    "SELECT status FROM \"{}_tasks\" WHERE id = ?",
                    target.namespace
                ))
                .bind(key)
                .fetch_optional(&pool)
                .await?;
                out.push(st.unwrap_or_else(|| "missing".into()));
            }
            pool.close().await;
            out
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&target.location).await?;
            let mut out = Vec::new();
            for id in ids {
                let st: Option<String> = sqlx::query_scalar(&format!(
                    "SELECT status FROM \"{}\".tasks WHERE id = $1",
                    target.namespace
                ))
                .bind(id.0)
                .fetch_optional(&pool)
                .await?;
                out.push(st.unwrap_or_else(|| "missing".into()));
            }
            pool.close().await;
            out
        }
    })
}

/// Runs the scenario.
pub async fn run(target: &Target, size: Size) -> Result<Row> {
    let started = Instant::now();
    let storage = target.open().await?;
    let queue = AsyncTaskQueue::new(Arc::clone(&storage));
    let good_n = size.pick(1000, 100);
    let good = enqueue(&storage, good_n, 1).await?;
    // Records to corrupt.
    let victims = enqueue(&storage, 3, 1).await?;
    // A payload that is not the handler's type, and one that is not even its format.
    let mismatch = vec![
        queue
            .enqueue(crate::worker::WORK, &"a string, not WorkArgs")
            .send()
            .await?
            .id,
        storage
            .enqueue(vec![Task::new(
                crate::worker::WORK,
                Payload(GARBAGE.to_vec()),
            )])
            .await?[0]
            .id,
    ];
    // Over the worker's payload limit (written straight to the storage, since the queue
    // refuses it at enqueue), and a large one under it that must succeed.
    #[derive(serde::Serialize)]
    struct Padded {
        n: u64,
        ms: u64,
        #[serde(with = "serde_bytes_compat")]
        pad: Vec<u8>,
    }
    let huge = Task::new(
        crate::worker::WORK,
        Payload(Format::MessagePack.encode(&Padded {
            n: 1,
            ms: 0,
            pad: vec![7; 17 * 1024 * 1024],
        })?),
    );
    let huge_id = storage.enqueue(vec![huge]).await?[0].id;
    let large = Task::new(
        crate::worker::WORK,
        Payload(Format::MessagePack.encode(&Padded {
            n: 2,
            ms: 0,
            pad: vec![7; 2 * 1024 * 1024],
        })?),
    );
    let large_id = storage.enqueue(vec![large]).await?[0].id;
    let how = corrupt(target, &victims).await?;

    let mut pool = AsyncWorkerPool::builder()
        .queue(queue.clone())
        .concurrency(8)
        .lease(Duration::from_secs(5))
        .poll_interval(Duration::from_millis(100))
        .build()?;
    pool.handle::<Work>(|a: WorkArgs| async move {
        tokio::time::sleep(Duration::from_millis(a.ms)).await;
        Ok::<_, HandlerError>(a.n)
    });
    pool.start()?;
    // Every good task, the large one and the bad ones must settle.
    let expect_finished = good_n + 1 + 2 + 1;
    let deadline = Instant::now() + Duration::from_secs(size.pick(300, 90));
    let mut notes = Vec::new();
    loop {
        let st = by_id(
            &storage,
            good.iter().chain(&mismatch).chain([&huge_id, &large_id]),
        )
        .await;
        let fin = st
            .iter()
            .filter(|s| s.is_some_and(|s| s.is_finished()))
            .count() as u64;
        if fin >= expect_finished || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Give the corrupt records a moment more to be claimed and failed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    pool.stop(Duration::from_secs(5)).await?;

    let mut lost = 0u64;
    let mut bad_examples = Vec::new();
    let st = by_id(&storage, good.iter()).await;
    for (id, s) in good.iter().zip(st) {
        if s != Some(TaskStatus::Success) {
            lost += 1;
            if bad_examples.len() < 5 {
                bad_examples.push(format!("good task {id}: {s:?}"));
            }
        }
    }
    let mut check = |id: &TaskId, task: Option<Task>, want: TaskStatus, what: &str| {
        let got = task.as_ref().map(|t| t.status);
        if got != Some(want) {
            lost += 1;
            if bad_examples.len() < 5 {
                bad_examples.push(format!("{what} {id}: {got:?}, expected {want:?}"));
            }
        }
    };
    let large_task = storage.get_task(&large_id).await?;
    check(&large_id, large_task, TaskStatus::Success, "2 MiB payload");
    for (id, what) in mismatch
        .iter()
        .map(|i| (i, "mismatched payload"))
        .chain([(&huge_id, "17 MiB payload")])
    {
        let t = storage.get_task(id).await?;
        if let Some(e) = t.as_ref().and_then(|t| t.error.as_ref()) {
            if notes.len() < 3 {
                notes.push(format!("{what}: {}", e.message));
            }
        }
        check(id, t, TaskStatus::Failed, what);
    }
    // Corrupt records: each must be Failed with a decode error, and block nothing
    // (every good task above finished).
    let st = raw_statuses(target, &storage, &victims).await?;
    let failed = st.iter().filter(|s| *s == "failed").count();
    if failed != st.len() {
        lost += (st.len() - failed) as u64;
        bad_examples.push(format!("corrupt records left as {st:?}"));
    }
    notes.push(format!(
        "3 corrupt records: {failed} failed with a decode error"
    ));
    notes.extend(how);
    notes.extend(bad_examples);
    let _ = storage.close().await;
    Ok(Row {
        backend: target.backend.as_str().into(),
        scenario: "bad-data".into(),
        tasks: good_n + 3 + 2 + 2,
        faults: 3 + 2 + 1,
        lost,
        double: 0,
        panics: 0,
        runs: 0,
        seconds: started.elapsed().as_secs_f64(),
        note: notes.join("; "),
    })
}

/// Bytes as a MessagePack binary (not an array of numbers), without a serde_bytes
/// dependency.
mod serde_bytes_compat {
    pub(super) fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
}
