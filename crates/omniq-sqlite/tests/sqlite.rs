//! SQLite-specific behaviour: file and memory modes, WAL, migrations, namespaces on one
//! file, concurrent claimers across connections, fencing, TTL and error kinds.

use omniq_core::{
    ClaimRequest, Claimed, Completion, ErrorType, FailAction, Failure, Outcome, Payload, Storage,
    StorageErrorKind, StorageExt, Task, TaskError, TaskId, TaskStatus,
};
use omniq_sqlite::SqliteStorage;
use sqlx::Connection;
use std::collections::HashSet;
use std::path::Path;
use time::{Duration, OffsetDateTime};

const LEASE: Duration = Duration::seconds(30);

fn now() -> OffsetDateTime {
    let n = OffsetDateTime::now_utc();
    n.replace_nanosecond(0).unwrap_or(n)
}

fn task(queue: &str, created: OffsetDateTime) -> Task {
    let mut t = Task::new("tests.f", Payload(b"[1]".to_vec()));
    t.queue = queue.to_string();
    t.created_at = created;
    t.updated_at = created;
    t
}

async fn claim(s: &SqliteStorage, queue: &str, limit: usize, at: OffsetDateTime) -> Vec<Claimed> {
    s.claim(ClaimRequest {
        queues: vec![queue.to_string()],
        limit,
        now: at,
        lease: LEASE,
    })
    .await
    .expect("claim")
}

async fn raw_connection(path: &Path) -> sqlx::SqliteConnection {
    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("raw connection")
}

async fn lifecycle(s: &SqliteStorage) {
    let t0 = now();
    let id = s
        .enqueue_one(task("default", t0))
        .await
        .expect("enqueue")
        .id;
    let got = s.get_task(&id).await.expect("get_task").expect("stored");
    assert_eq!(got.status, TaskStatus::Pending);
    assert_eq!(got.args, Payload(b"[1]".to_vec()));
    let c = claim(s, "default", 10, t0).await;
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].task.attempts, 1);
    let done = Completion {
        lease: c[0].lease_ref(),
        result: Some(Payload(b"42".to_vec())),
        now: t0,
        next_run: None,
    };
    s.complete_one(done).await.expect("complete");
    let r = s
        .get_result(&id)
        .await
        .expect("get_result")
        .expect("result");
    assert_eq!(r.status, TaskStatus::Success);
    assert_eq!(r.result, Some(Payload(b"42".to_vec())));
    assert_eq!(r.attempts, 1);
}

#[tokio::test]
async fn file_and_memory_modes_both_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = SqliteStorage::open(dir.path().join("nested/dir/q.db"))
        .await
        .expect("file storage");
    lifecycle(&file).await;
    assert!(file.capabilities().multi_process);
    assert!(dir.path().join("nested/dir/q.db").exists());

    let mem = SqliteStorage::in_memory().await.expect("memory storage");
    lifecycle(&mem).await;
    assert!(!mem.capabilities().multi_process);
    // Other clones share the same in-memory database.
    let other = mem.clone();
    assert_eq!(
        other
            .list_tasks(Default::default())
            .await
            .expect("list")
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn file_database_is_in_wal_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wal.db");
    let _s = SqliteStorage::open(&path).await.expect("open");
    let mut conn = raw_connection(&path).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .expect("pragma");
    assert_eq!(mode.to_ascii_lowercase(), "wal");
}

#[tokio::test]
async fn migrations_are_idempotent_and_race_safely() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.db");
    // Eight instances racing to create and migrate one fresh file.
    let builds = (0..8).map(|_| {
        let path = path.clone();
        tokio::spawn(async move { SqliteStorage::open(&path).await })
    });
    let mut storages = Vec::new();
    for b in builds {
        storages.push(b.await.expect("join").expect("racing build"));
    }
    let id = storages[0]
        .enqueue_one(task("default", now()))
        .await
        .expect("enqueue")
        .id;
    // Building again on the same file keeps the data and applies nothing twice.
    let again = SqliteStorage::open(&path).await.expect("second build");
    assert!(again.get_task(&id).await.expect("get").is_some());
    let mut conn = raw_connection(&path).await;
    let versions: Vec<i64> = sqlx::query_scalar(r#"SELECT version FROM "omniq_schema_version""#)
        .fetch_all(&mut conn)
        .await
        .expect("versions");
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6]);
}

#[tokio::test]
async fn namespaces_on_one_file_do_not_see_each_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ns.db");
    let a = SqliteStorage::builder()
        .path(&path)
        .namespace("app-a")
        .build()
        .await
        .expect("a");
    let b = SqliteStorage::builder()
        .path(&path)
        .namespace("app.b")
        .build()
        .await
        .expect("b");
    let t0 = now();
    let id = a
        .enqueue_one(task("default", t0))
        .await
        .expect("enqueue")
        .id;
    assert!(b.get_task(&id).await.expect("get").is_none());
    assert!(claim(&b, "default", 10, t0).await.is_empty());
    assert!(b.counts(None).await.expect("counts").is_empty());
    assert_eq!(claim(&a, "default", 10, t0).await.len(), 1);
}

#[tokio::test]
async fn invalid_names_are_config_errors() {
    let err = SqliteStorage::builder()
        .in_memory()
        .namespace("x\"; DROP TABLE t; --")
        .build()
        .await
        .expect_err("bad namespace");
    assert_eq!(err.kind(), StorageErrorKind::Config);

    let s = SqliteStorage::in_memory().await.expect("storage");
    let err = s
        .enqueue(vec![task("bad queue!", now())])
        .await
        .expect_err("bad queue");
    assert_eq!(err.kind(), StorageErrorKind::Config);
    assert!(err.message().contains("bad queue!"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_claimers_never_double_claim() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("race.db");
    // Two instances on one file stand in for two processes: each has its own writer
    // connection, so they contend on SQLite's lock, not only on the in-process pool.
    let a = SqliteStorage::open(&path).await.expect("a");
    let b = SqliteStorage::open(&path).await.expect("b");
    let t0 = now();
    let tasks: Vec<Task> = (0..500).map(|_| task("default", t0)).collect();
    let want: HashSet<TaskId> = tasks.iter().map(|t| t.id).collect();
    a.enqueue(tasks).await.expect("enqueue");

    let mut handles = Vec::new();
    for i in 0..16 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = claim(&s, "default", 7, t0).await;
                if got.is_empty() {
                    break;
                }
                mine.extend(got.into_iter().map(|c| c.task.id));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("join"));
    }
    let unique: HashSet<TaskId> = all.iter().copied().collect();
    assert_eq!(all.len(), unique.len(), "a task was claimed twice");
    assert_eq!(unique, want, "every task is claimed");
}

#[tokio::test]
async fn fenced_complete_ignores_stale_worker() {
    let s = SqliteStorage::in_memory().await.expect("storage");
    let t0 = now();
    let id = s
        .enqueue_one(task("default", t0))
        .await
        .expect("enqueue")
        .id;
    let first = claim(&s, "default", 1, t0).await.remove(0);
    // The lease expires and another worker claims the task again.
    let later = t0 + LEASE + Duration::seconds(1);
    let second = claim(&s, "default", 1, later).await.remove(0);
    assert!(second.lease.token > first.lease.token);
    assert_eq!(second.task.attempts, 2);

    let stale = Completion {
        lease: first.lease_ref(),
        result: Some(Payload(b"stale".to_vec())),
        now: later,
        next_run: None,
    };
    // The single-item helpers report a stale token as a LeaseLost error.
    let err = s.complete_one(stale).await.expect_err("stale complete");
    assert_eq!(err.kind(), omniq_core::StorageErrorKind::LeaseLost, "{err}");
    assert_eq!(err.operation(), Some("complete"));
    let stale_fail = Failure {
        lease: first.lease_ref(),
        error: TaskError::new(ErrorType::Runtime, "late"),
        action: FailAction::Fail,
        now: later,
    };
    let err = s.fail_one(stale_fail).await.expect_err("stale fail");
    assert_eq!(err.kind(), omniq_core::StorageErrorKind::LeaseLost, "{err}");
    let hb = s
        .heartbeat(&[first.lease_ref()], later + LEASE)
        .await
        .expect("hb");
    assert_eq!(hb, vec![Outcome::LeaseLost]);

    let t = s.get_task(&id).await.expect("get").expect("task");
    assert_eq!(t.status, TaskStatus::Running);
    assert_eq!(t.attempts, 2);
    assert!(t.error.is_none());
    assert!(s.get_result(&id).await.expect("result").is_none());

    let ok = Completion {
        lease: second.lease_ref(),
        result: None,
        now: later,
        next_run: None,
    };
    s.complete_one(ok).await.expect("complete");
    let missing = Completion {
        lease: omniq_core::LeaseRef {
            task_id: TaskId::new(),
            token: second.lease.token,
        },
        result: None,
        now: later,
        next_run: None,
    };
    let err = s.complete_one(missing).await.expect_err("missing task");
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn large_batches_keep_order_and_resolve_unique_keys_to_the_first() {
    let s = SqliteStorage::in_memory().await.expect("storage");
    let t0 = now();
    let mut tasks: Vec<Task> = (0..1000).map(|_| task("bulk", t0)).collect();
    tasks[10].unique_key = Some("k".into());
    tasks[500].unique_key = Some("k".into());
    tasks[999].unique_key = Some("other".into());
    let out = s.enqueue(tasks.clone()).await.expect("enqueue");
    assert_eq!(out.len(), 1000);
    for (i, (t, e)) in tasks.iter().zip(&out).enumerate() {
        if i == 500 {
            assert!(e.duplicate);
            assert_eq!(e.id, tasks[10].id);
        } else {
            assert!(!e.duplicate, "task {i}");
            assert_eq!(e.id, t.id);
        }
    }
    let counts = s.counts(Some("bulk")).await.expect("counts");
    assert_eq!(counts[0].pending, 999);

    // A second batch with a live key returns the existing id.
    let mut dup = task("bulk", t0);
    dup.unique_key = Some("other".into());
    let again = s.enqueue_one(dup).await.expect("enqueue");
    assert_eq!((again.id, again.duplicate), (tasks[999].id, true));

    // Claims over several queues still follow priority, eta, then enqueue order.
    let mut hi = task("other-q", t0);
    hi.priority = 5;
    let hi_id = s.enqueue_one(hi).await.expect("enqueue").id;
    let got = s
        .claim(ClaimRequest {
            queues: vec!["bulk".into(), "other-q".into()],
            limit: 3,
            now: t0,
            lease: LEASE,
        })
        .await
        .expect("claim");
    let ids: Vec<TaskId> = got.iter().map(|c| c.task.id).collect();
    assert_eq!(ids, vec![hi_id, tasks[0].id, tasks[1].id]);
}

#[tokio::test]
async fn expired_results_are_not_returned() {
    let s = SqliteStorage::builder()
        .in_memory()
        .result_ttl(Duration::minutes(1))
        .build()
        .await
        .expect("storage");
    let long_ago = now() - Duration::hours(1);
    let id = s
        .enqueue_one(task("default", long_ago))
        .await
        .expect("enqueue")
        .id;
    let c = claim(&s, "default", 1, long_ago).await.remove(0);
    let done = Completion {
        lease: c.lease_ref(),
        result: None,
        now: long_ago,
        next_run: None,
    };
    s.complete_one(done).await.expect("complete");
    assert!(s.get_result(&id).await.expect("get_result").is_none());
    assert_eq!(s.purge_results(now()).await.expect("purge"), 1);
    assert!(
        s.get_task(&id).await.expect("get").is_none(),
        "finished task purged"
    );
}

/// Purge removes every finished task by its `updated_at`, also one enqueued finished
/// without a result (as `omniq migrate` writes them), one cancelled before any claim,
/// and one whose run finished; a recurring task back to Pending keeps its row, and the
/// result of its last run goes by `finished_at`.
#[tokio::test]
async fn purge_removes_finished_tasks_with_and_without_results() {
    let s = SqliteStorage::in_memory().await.expect("storage");
    let old = now() - Duration::hours(2);
    let mut ids = Vec::new();
    for status in [
        TaskStatus::Success,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ] {
        let mut t = task("default", old);
        t.status = status;
        ids.push(s.enqueue_one(t).await.expect("enqueue finished").id);
    }
    let cancelled = s
        .enqueue_one(task("default", old))
        .await
        .expect("enqueue")
        .id;
    s.cancel(&cancelled, old).await.expect("cancel");
    let done = s
        .enqueue_one(task("default", old))
        .await
        .expect("enqueue")
        .id;
    let recurring = s
        .enqueue_one(task("default", old))
        .await
        .expect("enqueue")
        .id;
    let fresh = s
        .enqueue_one(task("default", old))
        .await
        .expect("enqueue")
        .id;
    for c in claim(&s, "default", 3, old).await {
        let id = c.task.id;
        let next_run = (id == recurring).then(|| now() + Duration::hours(1));
        let at = if id == fresh { now() } else { old };
        s.complete_one(Completion {
            lease: c.lease_ref(),
            result: Some(Payload(b"1".to_vec())),
            now: at,
            next_run,
        })
        .await
        .expect("complete");
    }
    // Results: the cancelled one's, the completed one's, the recurring run's (old) and
    // the fresh one's (now).
    let cutoff = now() - Duration::hours(1);
    assert_eq!(s.purge_results(cutoff).await.expect("purge"), 3);
    for id in ids.iter().chain([&cancelled, &done]) {
        assert!(s.get_task(id).await.expect("get").is_none(), "{id} purged");
    }
    let kept = s.get_task(&recurring).await.expect("get").expect("kept");
    assert_eq!(kept.status, TaskStatus::Pending);
    assert!(s.get_result(&recurring).await.expect("result").is_none());
    assert!(s.get_result(&fresh).await.expect("result").is_some());
    assert_eq!(
        s.get_task(&fresh).await.expect("get").map(|t| t.status),
        Some(TaskStatus::Success)
    );
    assert_eq!(s.purge_results(cutoff).await.expect("purge"), 0);
    assert_eq!(
        s.purge_results(now() + Duration::seconds(1))
            .await
            .expect("purge"),
        1
    );
    assert!(s.get_task(&fresh).await.expect("get").is_none());
    assert!(s.get_task(&recurring).await.expect("get").is_some());
}

#[tokio::test]
async fn closed_storage_fails_with_closed() {
    let s = SqliteStorage::in_memory().await.expect("storage");
    s.close().await.expect("close");
    let err = s.get_task(&TaskId::new()).await.expect_err("closed");
    assert_eq!(err.kind(), StorageErrorKind::Closed);
    let err = s
        .enqueue(vec![task("default", now())])
        .await
        .expect_err("closed");
    assert_eq!(err.kind(), StorageErrorKind::Closed);
}

#[tokio::test]
async fn dropped_tables_surface_as_backend_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broken.db");
    let s = SqliteStorage::open(&path).await.expect("open");
    let mut conn = raw_connection(&path).await;
    sqlx::query(r#"DROP TABLE "omniq_tasks""#)
        .execute(&mut conn)
        .await
        .expect("drop");
    let err = s.get_task(&TaskId::new()).await.expect_err("broken");
    assert_eq!(err.kind(), StorageErrorKind::Backend);
    assert_eq!(err.backend(), "sqlite");
    let err = s
        .claim(ClaimRequest {
            queues: vec!["default".into()],
            limit: 1,
            now: now(),
            lease: LEASE,
        })
        .await
        .expect_err("broken");
    assert_eq!(err.kind(), StorageErrorKind::Backend);
}

/// Throughput smoke check (not a timed assertion; `cargo xtask bench` is the benchmark):
/// `cargo test -p omniq-sqlite --release --test sqlite -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "throughput report; run explicitly in release mode"]
async fn throughput_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = SqliteStorage::open(dir.path().join("bench.db"))
        .await
        .expect("open");
    let n = 100_000;
    let t0 = now();
    let tasks: Vec<Task> = (0..n).map(|_| task("default", t0)).collect();
    let start = std::time::Instant::now();
    for chunk in tasks.chunks(1000) {
        s.enqueue(chunk.to_vec()).await.expect("enqueue");
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!("batch enqueue: {:.0} tasks/s", n as f64 / secs);

    let start = std::time::Instant::now();
    let mut done = 0;
    loop {
        let got = claim(&s, "default", 100, t0).await;
        if got.is_empty() {
            break;
        }
        let items = got
            .iter()
            .map(|c| Completion {
                lease: c.lease_ref(),
                result: None,
                now: t0,
                next_run: None,
            })
            .collect();
        let out = s.complete(items).await.expect("complete");
        assert!(out.iter().all(|o| *o == Outcome::Ok));
        done += out.len();
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(done, n);
    eprintln!(
        "claim+complete (batches of 100): {:.0} tasks/s",
        n as f64 / secs
    );

    let start = std::time::Instant::now();
    for _ in 0..2000 {
        s.enqueue_one(task("single", t0)).await.expect("enqueue");
    }
    eprintln!(
        "single enqueue: {:.0} tasks/s",
        2000.0 / start.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn namespaces_differing_only_in_case_are_rejected() {
    let err = SqliteStorage::builder()
        .in_memory()
        .namespace("Jobs")
        .build()
        .await
        .expect_err("upper case");
    assert_eq!(err.kind(), StorageErrorKind::Config);
    assert!(err.to_string().contains("lowercase"), "{err}");
    let err = SqliteStorage::builder()
        .in_memory()
        .namespace("sqlite_jobs")
        .build()
        .await
        .expect_err("reserved");
    assert_eq!(err.kind(), StorageErrorKind::Config);
}

/// S4: a stored error blob that decodes with neither serializer must not block the queue:
/// the task is still claimed (its error reads as a `decode` TaskError), and the tasks
/// behind it keep moving.
#[tokio::test]
async fn a_corrupt_stored_error_does_not_block_claims() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("corrupt.db");
    let s = SqliteStorage::open(&path).await.expect("open");
    let t0 = now();
    let mut first = task("default", t0);
    first.priority = 10;
    let first = s.enqueue_one(first).await.expect("enqueue").id;
    let second = s
        .enqueue_one(task("default", t0))
        .await
        .expect("enqueue")
        .id;
    let mut conn = raw_connection(&path).await;
    sqlx::query(r#"UPDATE "omniq_tasks" SET error = x'c1ffee00' WHERE id = ?1"#)
        .bind(first.to_string())
        .execute(&mut conn)
        .await
        .expect("corrupt the blob");
    let got = s.get_task(&first).await.expect("get_task").expect("exists");
    assert_eq!(
        got.error.as_ref().map(|e| e.error_type),
        Some(ErrorType::Decode)
    );
    let claimed = claim(&s, "default", 10, t0).await;
    let ids: Vec<TaskId> = claimed.iter().map(|c| c.task.id).collect();
    assert_eq!(ids, vec![first, second], "both claimed, priority first");
}

/// S4: a row that cannot be decoded at all (an id that is not a UUID, a timestamp out
/// of range, a negative attempt count) used to fail every claim of its queue, so nothing
/// behind it ever ran. Now the claim fails each unreadable row with a `decode` error and
/// returns the others.
#[tokio::test]
async fn an_undecodable_row_fails_alone_and_does_not_block_claims() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("garbage.db");
    let s = SqliteStorage::open(&path).await.expect("open");
    let t0 = now();
    let mut ids = Vec::new();
    for i in 0..6 {
        let mut t = task("default", t0);
        t.priority = 10 - i;
        ids.push(s.enqueue_one(t).await.expect("enqueue").id);
    }
    let mut conn = raw_connection(&path).await;
    for (sql, id) in [
        (
            r#"UPDATE "omniq_tasks" SET id = 'not-a-uuid' WHERE id = ?1"#,
            ids[0],
        ),
        (
            r#"UPDATE "omniq_tasks" SET created_at = 9223372036854775807 WHERE id = ?1"#,
            ids[2],
        ),
        (
            r#"UPDATE "omniq_tasks" SET attempts = -7 WHERE id = ?1"#,
            ids[4],
        ),
    ] {
        sqlx::query(sql)
            .bind(id.to_string())
            .execute(&mut conn)
            .await
            .expect("corrupt the row");
    }
    let claimed = claim(&s, "default", 10, t0).await;
    let got: Vec<TaskId> = claimed.iter().map(|c| c.task.id).collect();
    assert_eq!(
        got,
        vec![ids[1], ids[3], ids[5]],
        "the readable rows, in order"
    );
    // The unreadable ones are Failed with the reason, not Running or Pending.
    let rows: Vec<(String, String, Option<Vec<u8>>)> = sqlx::query_as(
        r#"SELECT id, status, error FROM "omniq_tasks" WHERE id IN ('not-a-uuid', ?1, ?2)"#,
    )
    .bind(ids[2].to_string())
    .bind(ids[4].to_string())
    .fetch_all(&mut conn)
    .await
    .expect("read back");
    assert_eq!(rows.len(), 3);
    for (id, status, error) in rows {
        assert_eq!(status, "failed", "{id}");
        let e: omniq_core::TaskError = omniq_core::Format::MessagePack
            .decode(&error.expect("an error"))
            .expect("decodes");
        assert_eq!(e.error_type, ErrorType::Decode, "{id}");
        assert!(e.message.contains("cannot be read"), "{}", e.message);
        assert!(!e.is_retryable);
    }
    // Nothing is left to claim, and a second claim does not trip over them again.
    assert!(claim(&s, "default", 10, t0).await.is_empty());
}

/// A stored error written with the other serializer (the app switched
/// OMNIQ_SERIALIZER) still decodes.
#[tokio::test]
async fn errors_written_with_the_other_serializer_still_decode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("switch.db");
    let t0 = now();
    let json = SqliteStorage::builder()
        .path(&path)
        .serializer(omniq_core::Format::Json)
        .build()
        .await
        .expect("json storage");
    let id = json
        .enqueue_one(task("default", t0))
        .await
        .expect("enqueue")
        .id;
    let c = claim(&json, "default", 1, t0).await;
    let error = TaskError::new(ErrorType::Network, "reset").with_context("host", "db1");
    json.fail_one(Failure {
        lease: c[0].lease_ref(),
        error: error.clone(),
        action: FailAction::Retry { at: t0 },
        now: t0,
    })
    .await
    .expect("fail");
    json.close().await.expect("close");
    let msgpack = SqliteStorage::open(&path).await.expect("msgpack storage");
    let got = msgpack.get_task(&id).await.expect("get").expect("exists");
    let e = got.error.expect("error kept");
    assert_eq!(
        (e.error_type, e.context.get("host").cloned()),
        (ErrorType::Network, Some(serde_json::json!("db1")))
    );
}

#[tokio::test]
async fn an_unopenable_file_is_a_config_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A directory where the database file should be.
    let path = dir.path().join("is-a-dir.db");
    std::fs::create_dir(&path).expect("mkdir");
    let err = SqliteStorage::open(&path)
        .await
        .expect_err("cannot open a directory");
    assert_eq!(err.kind(), StorageErrorKind::Config, "{err}");
    assert!(err.to_string().contains("is-a-dir.db"), "{err}");
}

/// Plain tasks go in through a shorter insert than tasks with retries, schedules, keys
/// or errors; either way every field reads back as it was enqueued, alone or in batches
/// that mix both kinds.
#[tokio::test]
async fn every_kind_of_task_reads_back_as_enqueued() {
    let s = SqliteStorage::in_memory().await.expect("storage");
    let t0 = now();
    let plain = task("default", t0);
    let mut scheduled = task("other", t0);
    scheduled.priority = -7;
    scheduled.max_retries = 9;
    scheduled.timeout = Some(Duration::milliseconds(1500));
    scheduled.schedule.eta = Some(t0 + Duration::seconds(90));
    let mut repeating = task("default", t0);
    repeating.schedule.interval = Some(Duration::seconds(5));
    let mut cron = task("default", t0);
    cron.schedule.cron = Some(omniq_core::CronSchedule {
        expr: "*/5 * * * *".into(),
        tz: "Europe/Berlin".into(),
    });
    let mut retried = task("default", t0);
    retried.attempts = 2;
    retried.runs = 1;
    retried.updated_at = t0 + Duration::seconds(3);
    retried.last_attempt_at = Some(t0 + Duration::seconds(2));
    retried.error = Some(TaskError::new(ErrorType::Timeout, "slow"));
    retried.backoff = Some(omniq_core::Backoff::Fixed(Duration::seconds(4)));
    let mut keyed = task("default", t0);
    keyed.unique_key = Some("k".into());
    let kinds = vec![plain, scheduled, repeating, cron, retried, keyed];
    // One at a time, then every kind in one batch with plain tasks around it.
    for t in &kinds {
        s.enqueue(vec![t.clone()]).await.expect("enqueue one");
    }
    let mut batch: Vec<Task> = Vec::new();
    for t in &kinds {
        for _ in 0..37 {
            batch.push(task("default", t0));
        }
        let mut again = t.clone();
        again.id = TaskId::new();
        again.unique_key = t.unique_key.as_ref().map(|k| format!("{k}2"));
        batch.push(again);
    }
    // Plain tasks of one handler and queue, some with an eta, a timeout or a priority.
    let plain: Vec<Task> = (0..300)
        .map(|i| {
            let mut t = task("default", t0);
            if i % 3 == 1 {
                t.schedule.eta = Some(t0 + Duration::seconds(i));
                t.timeout = Some(Duration::seconds(7));
            }
            if i % 3 == 2 {
                t.priority = 3;
                t.max_retries = 0;
            }
            t
        })
        .collect();
    for b in [&batch, &plain] {
        let enqueued = s.enqueue(b.clone()).await.expect("enqueue batch");
        assert!(enqueued.iter().all(|e| !e.duplicate));
        let ids: Vec<TaskId> = enqueued.iter().map(|e| e.id).collect();
        assert_eq!(ids, b.iter().map(|t| t.id).collect::<Vec<_>>());
    }
    for t in kinds.iter().chain(&batch).chain(&plain) {
        let got = s.get_task(&t.id).await.expect("get_task").expect("stored");
        assert_eq!(&got, t, "task {} reads back as enqueued", t.id);
    }
    // A batch keeps its order: equal tasks are claimed in the order they were enqueued.
    let fifo: Vec<Task> = (0..300).map(|_| task("fifo", t0)).collect();
    s.enqueue(fifo.clone()).await.expect("enqueue fifo");
    let got: Vec<TaskId> = claim(&s, "fifo", 300, t0)
        .await
        .iter()
        .map(|c| c.task.id)
        .collect();
    assert_eq!(got, fifo.iter().map(|t| t.id).collect::<Vec<_>>());
}

/// The claim returns fewer columns than a task has: the ones it writes come from the
/// request, and a task that sets an interval, cron, unique key, back-off or error is read
/// whole in the same transaction. Either way a claimed task is exactly the stored row, in
/// claim order, and an unreadable row of either kind fails alone.
#[tokio::test]
async fn claimed_tasks_are_the_stored_rows_of_every_kind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("claim-kinds.db");
    let s = SqliteStorage::open(&path).await.expect("open");
    let t0 = now();
    let at = t0 + Duration::seconds(100) + Duration::microseconds(123_456);
    let mut kinds = Vec::new();
    let mut plain = task("default", t0);
    plain.priority = 2;
    plain.timeout = Some(Duration::milliseconds(1500));
    plain.schedule.eta = Some(t0 + Duration::seconds(50));
    kinds.push(plain);
    let mut repeating = task("default", t0);
    repeating.schedule.interval = Some(Duration::seconds(5));
    kinds.push(repeating);
    let mut cron = task("default", t0);
    cron.schedule.cron = Some(omniq_core::CronSchedule {
        expr: "*/5 * * * *".into(),
        tz: "Europe/Berlin".into(),
    });
    kinds.push(cron);
    let mut retried = task("default", t0);
    retried.attempts = 2;
    retried.runs = 1;
    retried.max_retries = 7;
    retried.last_attempt_at = Some(t0 + Duration::seconds(2));
    retried.error = Some(TaskError::new(ErrorType::Timeout, "slow"));
    kinds.push(retried);
    let mut backoff = task("default", t0);
    backoff.backoff = Some(omniq_core::Backoff::Fixed(Duration::seconds(4)));
    kinds.push(backoff);
    let mut keyed = task("default", t0);
    keyed.unique_key = Some("k".into());
    kinds.push(keyed);
    // Each kind between plain tasks, priorities falling so the claim order is known.
    let mut batch = Vec::new();
    for k in &kinds {
        for _ in 0..3 {
            batch.push(task("default", t0));
        }
        batch.push(k.clone());
    }
    for (i, t) in batch.iter_mut().enumerate() {
        t.priority = 1000 - i32::try_from(i).expect("small");
    }
    // Two unreadable rows: one plain, one read whole (it has a unique key).
    let mut broken_plain = task("default", t0);
    broken_plain.priority = 5000;
    let mut broken_keyed = task("default", t0);
    broken_keyed.priority = 4000;
    broken_keyed.unique_key = Some("b".into());
    batch.push(broken_plain.clone());
    batch.push(broken_keyed.clone());
    s.enqueue(batch.clone()).await.expect("enqueue");
    let mut conn = raw_connection(&path).await;
    for t in [&broken_plain, &broken_keyed] {
        sqlx::query(r#"UPDATE "omniq_tasks" SET attempts = -3 WHERE id = ?1"#)
            .bind(t.id.to_string())
            .execute(&mut conn)
            .await
            .expect("corrupt the row");
    }
    let claimed = claim(&s, "default", 100, at).await;
    let got: Vec<TaskId> = claimed.iter().map(|c| c.task.id).collect();
    let readable: Vec<&Task> = batch[..batch.len() - 2].iter().collect();
    assert_eq!(
        got,
        readable.iter().map(|t| t.id).collect::<Vec<_>>(),
        "every readable task, in claim order; the broken ones fail alone"
    );
    for (c, t) in claimed.iter().zip(&readable) {
        let stored = s.get_task(&t.id).await.expect("get_task").expect("stored");
        assert_eq!(c.task, stored, "claimed task {} is the stored row", t.id);
        let mut want = (*t).clone();
        want.status = TaskStatus::Running;
        want.attempts += 1;
        want.updated_at = at;
        want.last_attempt_at = Some(at);
        assert_eq!(
            c.task, want,
            "claimed task {} is the enqueued one, claimed",
            t.id
        );
    }
    for t in [&broken_plain, &broken_keyed] {
        let (status,): (String,) =
            sqlx::query_as(r#"SELECT status FROM "omniq_tasks" WHERE id = ?1"#)
                .bind(t.id.to_string())
                .fetch_one(&mut conn)
                .await
                .expect("read back");
        assert_eq!(status, "failed", "{}", t.id);
    }
}
