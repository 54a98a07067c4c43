//! PostgreSQL-specific behaviour against the real server: several independent storages
//! on one queue, killed connections, transactional enqueue, cross-process wake-ups,
//! result TTL, migrations racing, connection errors, corrupt rows and the quickstart
//! path through the worker pool. Each test runs in a schema of its own, dropped after.

mod common;

use common::{Namespace, claim, now, task, url, url_with};
use omniq_core::{
    ClaimRequest, Completion, ErrorType, FailAction, Failure, Outcome, Payload, Storage,
    StorageErrorKind, StorageExt, Task, TaskId, TaskStatus, Wake,
};
use omniq_postgres::{MAX_BATCH, PostgresConfig, PostgresStorage, PostgresStorageBuilder};
use std::collections::HashSet;
use std::sync::Arc;
use time::Duration;
use tokio::sync::broadcast;

/// Waits (bounded) for a wake-up `matches` accepts.
async fn wait_for(
    rx: &mut broadcast::Receiver<Wake>,
    within: std::time::Duration,
    matches: impl Fn(&Wake) -> bool,
) -> bool {
    tokio::time::timeout(within, async {
        loop {
            match rx.recv().await {
                Ok(w) if matches(&w) => return true,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return false,
            }
        }
    })
    .await
    .unwrap_or(false)
}

fn is_work(queue: &str) -> impl Fn(&Wake) -> bool + '_ {
    move |w| matches!(w, Wake::Work { queue: q } if q == queue)
}

/// S1/T2: two independent storages (as two processes would be) with four claimers
/// each drain one queue of 20k tasks: every task is claimed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_storages_claim_20k_tasks_without_double_or_lost_claims() {
    let ns = Namespace::new("twenty_k");
    let a = Arc::new(ns.storage().await);
    let b = Arc::new(ns.storage().await);
    let t0 = now();
    let mut ids = HashSet::new();
    let mut rest: Vec<Task> = (0..20_000).map(|_| task("shared", t0)).collect();
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(MAX_BATCH));
        ids.extend(rest.iter().map(|t| t.id));
        a.enqueue(rest).await.expect("enqueue");
        rest = tail;
    }
    let mut claimers = Vec::new();
    for (n, s) in [&a, &b, &a, &b, &a, &b, &a, &b].into_iter().enumerate() {
        let s = Arc::clone(s);
        claimers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = s
                    .claim(ClaimRequest {
                        queues: vec!["shared".into()],
                        limit: 50 + n * 37,
                        now: t0,
                        lease: Duration::minutes(10),
                    })
                    .await
                    .expect("claim");
                if got.is_empty() {
                    return mine;
                }
                let done = got
                    .iter()
                    .map(|c| Completion {
                        lease: c.lease_ref(),
                        result: None,
                        now: t0,
                        next_run: None,
                    })
                    .collect();
                let outcomes = s.complete(done).await.expect("complete");
                assert!(outcomes.iter().all(|o| *o == Outcome::Ok), "{outcomes:?}");
                mine.extend(got.into_iter().map(|c| (c.task.id, c.task.attempts)));
            }
        }));
    }
    let mut seen = HashSet::new();
    let mut doubles = 0;
    for c in claimers {
        for (id, attempts) in c.await.expect("claimer") {
            if !seen.insert(id) || attempts != 1 {
                doubles += 1;
            }
        }
    }
    assert_eq!(doubles, 0, "tasks claimed twice");
    assert_eq!(seen.len(), 20_000, "tasks claimed");
    assert_eq!(seen, ids, "every enqueued task was claimed");
    let counts = a.counts(Some("shared")).await.expect("counts");
    assert_eq!(counts[0].success, 20_000);
    assert_eq!(counts[0].total(), 20_000);
}

/// S3: a storage whose connections are killed by the server (`pg_terminate_backend`,
/// as a restart or a DBA would) recovers by itself: calls after the kill succeed, and
/// the LISTEN connection comes back (a wake-up sent by another process arrives).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_are_replaced_and_listen_reconnects() {
    let ns = Namespace::new("killed");
    let app = format!("omniq_kill_{}", std::process::id());
    let victim = PostgresStorage::builder()
        .url(&url_with(&format!("application_name={app}")))
        .namespace(&ns.name)
        .max_connections(3)
        .build()
        .await
        .expect("victim");
    let other = ns.storage().await;
    let t0 = now();
    let id = victim.enqueue_one(task("k", t0)).await.expect("enqueue").id;
    assert!(victim.get_task(&id).await.expect("get").is_some());

    let admin = sqlx::PgPool::connect(&url()).await.expect("admin");
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&app)
    .fetch_all(&admin)
    .await
    .expect("terminate");
    assert!(
        killed.len() >= 2,
        "the pool's and the listener's connections: {killed:?}"
    );

    // Calls succeed again (a call racing the kill may be Unavailable, never anything else).
    let mut ok = false;
    for _ in 0..20 {
        match victim.get_task(&id).await {
            Ok(t) => {
                assert!(t.is_some());
                ok = true;
                break;
            }
            Err(e) => {
                assert_eq!(e.kind(), StorageErrorKind::Unavailable, "{e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    assert!(ok, "the storage recovered");
    let c = claim(&victim, "k", 10, t0).await;
    assert_eq!(c.len(), 1);

    // LISTEN is back: another process's enqueue wakes this one.
    let mut rx = victim.subscribe().expect("subscribe");
    let mut woke = false;
    for _ in 0..50 {
        other
            .enqueue_one(task("after-kill", t0))
            .await
            .expect("enqueue");
        if wait_for(
            &mut rx,
            std::time::Duration::from_millis(200),
            is_work("after-kill"),
        )
        .await
        {
            woke = true;
            break;
        }
    }
    assert!(
        woke,
        "a wake-up from another storage arrives after the kill"
    );
    victim.close().await.expect("close");
    admin.close().await;
}

/// The transactional enqueue: the task exists exactly when the caller commits.
#[tokio::test]
async fn enqueue_tx_commit_stores_and_rollback_does_not() {
    let ns = Namespace::new("tx");
    let s = ns.storage().await;
    let other = ns.storage().await;
    let mut rx = other.subscribe().expect("subscribe");
    let mut own_rx = s.subscribe().expect("subscribe");
    let t0 = now();

    // Commit: the application's own write and the task exist together.
    sqlx::query(&format!(r#"CREATE TABLE "{}".accounts (id int)"#, ns.name))
        .execute(s.pool())
        .await
        .expect("app table");
    let mut tx = s.pool().begin().await.expect("begin");
    sqlx::query(&format!(r#"INSERT INTO "{}".accounts VALUES (1)"#, ns.name))
        .execute(&mut *tx)
        .await
        .expect("app write");
    let committed = task("txq", t0);
    let out = s
        .enqueue_tx(&mut tx, vec![committed.clone()])
        .await
        .expect("enqueue_tx");
    assert_eq!(out[0].id, committed.id);
    assert!(
        other.get_task(&committed.id).await.expect("get").is_none(),
        "invisible before the commit"
    );
    tx.commit().await.expect("commit");
    assert!(other.get_task(&committed.id).await.expect("get").is_some());
    assert!(
        wait_for(&mut rx, std::time::Duration::from_secs(5), is_work("txq")).await,
        "other processes are woken on commit"
    );
    assert!(
        wait_for(
            &mut own_rx,
            std::time::Duration::from_secs(5),
            is_work("txq")
        )
        .await,
        "so is the enqueuing process (through its own LISTEN)"
    );
    let c = claim(&other, "txq", 10, t0).await;
    assert_eq!(c.len(), 1, "a committed task is claimable");

    // Rollback: no task.
    let mut tx = s.pool().begin().await.expect("begin");
    let rolled = task("txq", t0);
    s.enqueue_tx(&mut tx, vec![rolled.clone()])
        .await
        .expect("enqueue_tx");
    tx.rollback().await.expect("rollback");
    assert!(s.get_task(&rolled.id).await.expect("get").is_none());
    assert!(claim(&s, "txq", 10, t0).await.is_empty());

    // Invalid input fails like enqueue does, before anything is written.
    let mut tx = s.pool().begin().await.expect("begin");
    let err = s
        .enqueue_tx(&mut tx, vec![task("bad queue", t0)])
        .await
        .expect_err("invalid queue");
    assert_eq!(err.kind(), StorageErrorKind::Config);
}

/// Wake-ups cross processes: one storage's enqueue and completion wake another's
/// subscribers (NOTIFY on commit, LISTEN per storage).
#[tokio::test]
async fn notify_wakes_other_storages_on_enqueue_and_finish() {
    let ns = Namespace::new("notify");
    let producer = ns.storage().await;
    let watcher = ns.storage().await;
    let mut rx = watcher.subscribe().expect("subscribe");
    let t0 = now();
    let id = producer
        .enqueue_one(task("jobs", t0))
        .await
        .expect("enqueue")
        .id;
    assert!(wait_for(&mut rx, std::time::Duration::from_secs(5), is_work("jobs")).await);
    let c = claim(&producer, "jobs", 1, t0).await;
    producer
        .complete_one(Completion {
            lease: c[0].lease_ref(),
            result: Some(Payload(b"1".to_vec())),
            now: t0,
            next_run: None,
        })
        .await
        .expect("complete");
    assert!(
        wait_for(&mut rx, std::time::Duration::from_secs(5), |w| {
            *w == Wake::Finished { task_id: id }
        })
        .await,
        "Finished reaches other processes (their wait_result)"
    );
    // A large batch splits its Finished ids over several notifications.
    let many: Vec<Task> = (0..450).map(|_| task("bulk", t0)).collect();
    let want: HashSet<TaskId> = many.iter().map(|t| t.id).collect();
    producer.enqueue(many).await.expect("enqueue");
    let c = claim(&producer, "bulk", 450, t0).await;
    let done = c
        .iter()
        .map(|c| Completion {
            lease: c.lease_ref(),
            result: None,
            now: t0,
            next_run: None,
        })
        .collect();
    producer.complete(done).await.expect("complete");
    let mut got = HashSet::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while got.len() < want.len() {
            if let Ok(Wake::Finished { task_id }) = rx.recv().await {
                if want.contains(&task_id) {
                    got.insert(task_id);
                }
            }
        }
    })
    .await;
    assert_eq!(got.len(), want.len(), "every Finished id arrives");
}

/// Result TTL: an expired result is never returned, and the sweep deletes it and its
/// finished task by itself, piggy-backed on completions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_results_are_hidden_then_swept() {
    let ns = Namespace::new("ttl");
    let s = ns
        .builder()
        .result_ttl(Duration::minutes(1))
        .sweep_interval(std::time::Duration::from_millis(1))
        .build()
        .await
        .expect("storage");
    let long_ago = now() - Duration::hours(2);
    let old: Vec<Task> = (0..30).map(|_| task("ttl", long_ago)).collect();
    s.enqueue(old).await.expect("enqueue");
    let c = claim(&s, "ttl", 30, long_ago).await;
    let first = c[0].task.id;
    let done = c
        .iter()
        .map(|c| Completion {
            lease: c.lease_ref(),
            result: Some(Payload(b"r".to_vec())),
            now: long_ago,
            next_run: None,
        })
        .collect();
    s.complete(done).await.expect("complete");
    assert!(
        s.get_result(&first).await.expect("get_result").is_none(),
        "a result older than the TTL is never returned"
    );
    // A fresh completion triggers the background sweep.
    let fresh = s.enqueue_one(task("ttl", now())).await.expect("enqueue").id;
    let c = claim(&s, "ttl", 1, now()).await;
    s.complete_one(Completion {
        lease: c[0].lease_ref(),
        result: None,
        now: now(),
        next_run: None,
    })
    .await
    .expect("complete");
    let count = |table: &'static str| {
        let sql = format!(r#"SELECT count(*) FROM "{}".{table}"#, ns.name);
        let pool = s.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>(&sql)
                .fetch_one(&pool)
                .await
                .expect("count")
        }
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while count("results").await > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(count("results").await, 1, "only the fresh result is left");
    while count("tasks").await > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        count("tasks").await,
        1,
        "the expired finished tasks are gone"
    );
    assert!(s.get_result(&fresh).await.expect("get_result").is_some());
}

/// Migrations are safe when several processes start at once on a fresh namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_race_safely() {
    let ns = Namespace::new("race");
    let builds = (0..8).map(|_| {
        let b = ns.builder().max_connections(2);
        tokio::spawn(async move { b.build().await })
    });
    let mut storages = Vec::new();
    for b in builds {
        storages.push(b.await.expect("join").expect("racing build"));
    }
    let (rows, distinct): (i64, i64) = sqlx::query_as(&format!(
        r#"SELECT count(*), count(DISTINCT version) FROM "{}".schema_version"#,
        ns.name
    ))
    .fetch_one(storages[0].pool())
    .await
    .expect("versions");
    assert!(rows >= 2, "every migration is recorded: {rows}");
    assert_eq!(rows, distinct, "each migration ran once");
    let id = storages[3]
        .enqueue_one(task("m", now()))
        .await
        .expect("enqueue")
        .id;
    assert!(storages[5].get_task(&id).await.expect("get").is_some());
    // Building again on a migrated namespace is a no-op.
    ns.storage().await;
}

/// A wrong URL, an unreachable server, an unknown database or user: clear errors that
/// name the server, never the password.
#[tokio::test]
async fn connection_errors_name_the_server_and_hide_the_password() {
    let unreachable = PostgresStorage::builder()
        .url("postgres://app:topsecret@127.0.0.1:1/jobs")
        .acquire_timeout(std::time::Duration::from_secs(2))
        .build()
        .await
        .expect_err("nothing listens on port 1");
    assert_eq!(
        unreachable.kind(),
        StorageErrorKind::Unavailable,
        "{unreachable}"
    );
    let shown = format!("{unreachable} {unreachable:?}");
    assert!(shown.contains("127.0.0.1:1/jobs"), "{shown}");
    assert!(!shown.contains("topsecret"), "{shown}");

    let no_db = PostgresStorage::builder()
        .url(&url().replace("/postgres", "/omniq_no_such_database"))
        .build()
        .await
        .expect_err("no such database");
    assert_eq!(no_db.kind(), StorageErrorKind::Config, "{no_db}");
    assert!(
        no_db.to_string().contains("omniq_no_such_database"),
        "{no_db}"
    );

    let no_user = PostgresStorage::builder()
        .url(&url().replace("postgres@", "omniq_no_such_role:topsecret@"))
        .build()
        .await
        .expect_err("no such role");
    assert_eq!(no_user.kind(), StorageErrorKind::Config, "{no_user}");
    assert!(!format!("{no_user:?}").contains("topsecret"));

    let bad =
        PostgresConfig::from_url("postgresql://u:topsecret@host:port/db").expect_err("bad port");
    assert_eq!(bad.kind(), StorageErrorKind::Config);
    assert!(!bad.to_string().contains("topsecret"), "{bad}");
}

/// Debug output shows the namespace and server, never the password.
#[tokio::test]
async fn debug_output_never_shows_the_password() {
    let ns = Namespace::new("debug");
    let s = ns.storage().await;
    let shown = format!("{s:?}");
    assert!(
        shown.contains(&ns.name) && shown.contains("5432"),
        "{shown}"
    );
    let cfg =
        PostgresConfig::from_url("postgres://app:topsecret@db.internal:5432/jobs").expect("config");
    let shown = format!(
        "{cfg:?} {:?}",
        PostgresStorageBuilder::from_config(cfg.clone())
    );
    assert!(shown.contains("db.internal:5432/jobs as app"), "{shown}");
    assert!(!shown.contains("topsecret"), "{shown}");
}

/// A row tampered with behind the backend's back fails its task with a decode error
/// when claimed; its neighbours are claimed as usual (a bad record never blocks a queue).
#[tokio::test]
async fn corrupt_rows_fail_their_task_instead_of_blocking_the_queue() {
    let ns = Namespace::new("corrupt");
    let s = ns.storage().await;
    let t0 = now();
    let bad = s.enqueue_one(task("c", t0)).await.expect("enqueue").id;
    let garbled = s.enqueue_one(task("c", t0)).await.expect("enqueue").id;
    let good = s.enqueue_one(task("c", t0)).await.expect("enqueue").id;
    let tasks = format!(r#""{}".tasks"#, ns.name);
    sqlx::query(&format!(
        "UPDATE {tasks} SET max_retries = -1 WHERE id = $1"
    ))
    .bind(bad.0)
    .execute(s.pool())
    .await
    .expect("tamper");
    sqlx::query(&format!(
        "UPDATE {tasks} SET error = '\\xdeadbeef' WHERE id = $1"
    ))
    .bind(garbled.0)
    .execute(s.pool())
    .await
    .expect("tamper");
    let got: HashSet<TaskId> = claim(&s, "c", 10, t0)
        .await
        .into_iter()
        .map(|c| c.task.id)
        .collect();
    assert_eq!(
        got,
        HashSet::from([garbled, good]),
        "the readable tasks are claimed"
    );
    let failed = s.get_task(&bad).await;
    // The row itself stays unreadable; its result says why it failed.
    assert!(
        failed.is_err(),
        "reading the corrupt row is an error, not a panic"
    );
    assert_eq!(
        failed.err().map(|e| e.kind()),
        Some(StorageErrorKind::Serialization)
    );
    let r = s.get_result(&bad).await.expect("result").expect("a result");
    assert_eq!(r.status, TaskStatus::Failed);
    let e = r.error.expect("the error");
    assert_eq!(e.error_type, ErrorType::Decode);
    assert!(claim(&s, "c", 10, t0).await.is_empty(), "never redelivered");
    // A garbled stored error decodes to a Decode TaskError instead of failing reads.
    let g = s.get_task(&garbled).await.expect("get").expect("task");
    assert_eq!(g.error.map(|e| e.error_type), Some(ErrorType::Decode));
}

/// The facade's path (`OMNIQ_BACKEND=postgres`, `OMNIQ_URL`): a storage from
/// `PostgresConfig::from_url`, a queue and a worker pool; a waiter on another storage
/// (another process) gets the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quickstart_path_through_the_worker_pool() {
    let ns = Namespace::new("quickstart");
    let cfg = PostgresConfig::from_url(&url()).expect("OMNIQ_URL");
    let build = || {
        PostgresStorageBuilder::from_config(cfg.clone())
            .namespace(&ns.name)
            .serializer(omniq_core::Format::Json)
            .result_ttl(Duration::days(1))
            .build()
    };
    let worker_side: Arc<dyn Storage> = Arc::new(build().await.expect("worker storage"));
    let client_side: Arc<dyn Storage> = Arc::new(build().await.expect("client storage"));
    let queue = omniq_runtime::AsyncTaskQueue::new(Arc::clone(&client_side));
    let mut pool = omniq_runtime::AsyncWorkerPool::builder()
        .queue(omniq_runtime::AsyncTaskQueue::new(Arc::clone(&worker_side)))
        .concurrency(4)
        .poll_interval(std::time::Duration::from_secs(5))
        .build()
        .expect("pool");
    pool.register("math.add", |(a, b): (i64, i64)| async move {
        Ok::<_, omniq_runtime::HandlerError>(a + b)
    });
    pool.start().expect("start");
    let id = queue.enqueue("math.add", &(2, 40)).await.expect("enqueue");
    let started = std::time::Instant::now();
    let r = queue
        .wait_result(&id, std::time::Duration::from_secs(20))
        .await
        .expect("result");
    pool.stop(std::time::Duration::from_secs(10))
        .await
        .expect("stop");
    assert_eq!(r.status, TaskStatus::Success);
    let value: i64 = r.output().expect("decode");
    assert_eq!(value, 42);
    // Pushed wake-ups, not the 5 s poll, moved this along.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

/// An application's pool: the storage runs on it (no prepared statements kept there),
/// and close() leaves it open for the application.
#[tokio::test]
async fn from_pool_shares_the_application_pool_and_leaves_it_open() {
    let ns = Namespace::new("from_pool");
    let app_pool = sqlx::PgPool::connect(&url()).await.expect("pool");
    let s = PostgresStorage::builder()
        .pool(app_pool.clone())
        .namespace(&ns.name)
        .build()
        .await
        .expect("storage");
    let t0 = now();
    let id = s.enqueue_one(task("p", t0)).await.expect("enqueue").id;
    let c = claim(&s, "p", 1, t0).await;
    assert_eq!(c[0].task.id, id);
    s.close().await.expect("close");
    assert_eq!(
        s.get_task(&id).await.err().map(|e| e.kind()),
        Some(StorageErrorKind::Closed)
    );
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&app_pool)
        .await
        .expect("the application's pool still works");
    assert_eq!(one, 1);
    app_pool.close().await;
}

/// The own pool's connections make a plan per execution: a generic plan cached while
/// the table was empty would scan it once it is large.
#[tokio::test]
async fn own_pool_plans_every_execution() {
    let ns = Namespace::new("plans");
    let s = ns.storage().await;
    let mode: String = sqlx::query_scalar("SHOW plan_cache_mode")
        .fetch_one(s.pool())
        .await
        .expect("show");
    assert_eq!(mode, "force_custom_plan");
    let app: String = sqlx::query_scalar("SHOW application_name")
        .fetch_one(s.pool())
        .await
        .expect("show");
    assert_eq!(app, "omniq");
}

/// Batches larger than MAX_BATCH are one transaction: a bad task at the end stores none.
#[tokio::test]
async fn oversized_batches_are_all_or_nothing() {
    let ns = Namespace::new("big");
    let s = ns.storage().await;
    let t0 = now();
    let mut tasks: Vec<Task> = (0..MAX_BATCH + 10).map(|_| task("big", t0)).collect();
    let mut dup = task("big", t0);
    dup.id = tasks[0].id;
    tasks.push(dup);
    let err = s.enqueue(tasks).await.expect_err("duplicate id");
    assert_eq!(err.kind(), StorageErrorKind::Conflict, "{err}");
    assert!(s.counts(Some("big")).await.expect("counts")[0].total() == 0);

    // Unique keys resolve to the first holder across chunk boundaries.
    let mut tasks: Vec<Task> = (0..MAX_BATCH + 2).map(|_| task("big", t0)).collect();
    tasks[1].unique_key = Some("k".into());
    tasks[MAX_BATCH + 1].unique_key = Some("k".into());
    let first = tasks[1].id;
    let out = s.enqueue(tasks).await.expect("enqueue");
    assert_eq!(out[MAX_BATCH + 1].id, first);
    assert!(out[MAX_BATCH + 1].duplicate);
    assert_eq!(out.iter().filter(|e| e.duplicate).count(), 1);
}

/// Without LISTEN (behind a transaction-mode pooler) the storage works and still wakes
/// its own subscribers.
#[tokio::test]
async fn listen_off_still_wakes_local_subscribers() {
    let ns = Namespace::new("nolisten");
    let s = ns.builder().listen(false).build().await.expect("storage");
    let mut rx = s.subscribe().expect("subscribe");
    s.enqueue_one(task("local", now())).await.expect("enqueue");
    assert!(wait_for(&mut rx, std::time::Duration::from_secs(2), is_work("local")).await);
}

/// A fail carrying a cancel-requested task ends it Cancelled; the sequence of every
/// lease write on one batch naming a task twice behaves like separate calls.
#[tokio::test]
async fn batches_naming_a_task_twice_behave_like_separate_calls() {
    let ns = Namespace::new("twice");
    let s = ns.storage().await;
    let t0 = now();
    s.enqueue(vec![task("d", t0), task("d", t0)])
        .await
        .expect("enqueue");
    let c = claim(&s, "d", 2, t0).await;
    let (a, b) = (c[0].lease_ref(), c[1].lease_ref());
    let done = |lease| Completion {
        lease,
        result: None,
        now: t0,
        next_run: None,
    };
    let out = s
        .complete(vec![done(a), done(b), done(a)])
        .await
        .expect("complete");
    assert_eq!(out, vec![Outcome::Ok, Outcome::Ok, Outcome::LeaseLost]);
    let out = s
        .heartbeat(&[a, a], t0 + Duration::minutes(1))
        .await
        .expect("heartbeat");
    assert_eq!(out, vec![Outcome::LeaseLost, Outcome::LeaseLost]);
    let missing = omniq_core::LeaseRef {
        task_id: TaskId::new(),
        token: a.token,
    };
    let out = s
        .fail(vec![Failure {
            lease: missing,
            error: omniq_core::TaskError::new(ErrorType::Runtime, "x"),
            action: FailAction::Fail,
            now: t0,
        }])
        .await
        .expect("fail");
    assert_eq!(out, vec![Outcome::NotFound]);
}

/// Invalid namespaces are Config errors naming the rule.
#[tokio::test]
async fn invalid_namespaces_are_config_errors() {
    for bad in ["pg_mine", "has space", "quote\"d", ""] {
        let err = PostgresStorage::builder()
            .url(&url())
            .namespace(bad)
            .build()
            .await
            .expect_err(bad);
        assert_eq!(err.kind(), StorageErrorKind::Config, "{bad}: {err}");
    }
}

/// The claim's `now` decides, not the server clock: a task due in the request's
/// future is claimable when the request says so.
#[tokio::test]
async fn time_is_passed_in() {
    let ns = Namespace::new("clock");
    let s = ns.storage().await;
    let far = now() + Duration::days(365);
    let mut t = task("future", now());
    t.schedule.eta = Some(far);
    s.enqueue_one(t).await.expect("enqueue");
    assert!(
        claim(&s, "future", 1, far - Duration::seconds(1))
            .await
            .is_empty()
    );
    assert_eq!(claim(&s, "future", 1, far).await.len(), 1);
    assert_eq!(
        s.next_due(&["future".into()]).await.expect("next_due"),
        Some(far + Duration::seconds(30)),
        "the lease expiry is next"
    );
}

/// S3 through the runtime: a worker pool whose connections are all killed in the middle
/// of a run backs off, reconnects and finishes every task.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_pool_survives_its_connections_being_killed() {
    let ns = Namespace::new("pool_kill");
    let app = format!("omniq_pool_kill_{}", std::process::id());
    let storage: Arc<dyn Storage> = Arc::new(
        PostgresStorage::builder()
            .url(&url_with(&format!("application_name={app}")))
            .namespace(&ns.name)
            .build()
            .await
            .expect("storage"),
    );
    let queue = omniq_runtime::AsyncTaskQueue::new(Arc::clone(&storage));
    let specs: Vec<_> = (0..3000).map(|i| queue.task("slowish", &i)).collect();
    queue.enqueue_many(specs).await.expect("enqueue");
    let mut pool = omniq_runtime::AsyncWorkerPool::builder()
        .queue(queue.clone())
        .concurrency(16)
        .poll_interval(std::time::Duration::from_millis(100))
        .build()
        .expect("pool");
    pool.register("slowish", |_: u32| async move {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        Ok::<_, omniq_runtime::HandlerError>(())
    });
    pool.start().expect("start");
    let success = |s: Arc<dyn Storage>| async move {
        s.counts(Some("default"))
            .await
            .map(|c| c[0].success)
            .unwrap_or(0)
    };
    while success(Arc::clone(&storage)).await < 500 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let admin = sqlx::PgPool::connect(&url()).await.expect("admin");
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&app)
    .fetch_all(&admin)
    .await
    .expect("terminate");
    assert!(!killed.is_empty());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while success(Arc::clone(&storage)).await < 3000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pool did not finish after its connections were killed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    pool.stop(std::time::Duration::from_secs(10))
        .await
        .expect("stop");
    let counts = storage.counts(Some("default")).await.expect("counts");
    assert_eq!(counts[0].success, 3000, "{counts:?}");
    assert_eq!(
        counts[0].total(),
        3000,
        "nothing lost, nothing failed: {counts:?}"
    );
    admin.close().await;
}

/// Large batches without unique keys travel as binary COPY rows, smaller ones as one
/// INSERT: both store every field exactly as given (what `get_task` reads back equals
/// the input), keep the batch order for the claim, wake other processes, and are
/// all-or-nothing (an existing id is a Conflict, a NUL byte in text a Serialization
/// error, and nothing of the batch is stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_without_keys_store_every_field_as_given() {
    let ns = Namespace::new("copy");
    let s = ns.storage().await;
    let watcher = ns.storage().await;
    let mut rx = watcher.subscribe().expect("subscribe");
    let t0 = now();
    let full = |i: usize, queue: &str| {
        let mut t = task(queue, t0);
        t.func_path = format!("mod.f{}", i % 7);
        t.args = Payload(vec![0x92, 0x00, (i % 256) as u8, 0xff]);
        t.priority = 5;
        match i % 4 {
            0 => {}
            1 => {
                t.schedule.eta = Some(t0 - Duration::seconds(1));
                t.schedule.interval = Some(Duration::minutes(90));
                t.timeout = Some(Duration::milliseconds(1500));
                t.max_retries = 9;
            }
            2 => {
                t.status = TaskStatus::Failed;
                t.attempts = 3;
                t.runs = 2;
                t.last_attempt_at = Some(t0 - Duration::seconds(3));
                t.error = Some(omniq_core::TaskError::new(ErrorType::User, "boom"));
                t.backoff = Some(omniq_core::Backoff::Fixed(Duration::seconds(2)));
            }
            _ => {
                t.schedule.cron = Some(omniq_core::CronSchedule {
                    expr: "*/5 * * * *".into(),
                    tz: "Europe/Berlin".into(),
                });
                t.updated_at = t0 + Duration::microseconds(7);
            }
        }
        t
    };
    for n in [300, 127] {
        let queue = format!("copy{n}");
        let tasks: Vec<Task> = (0..n).map(|i| full(i, &queue)).collect();
        let out = s.enqueue(tasks.clone()).await.expect("enqueue");
        let ids: Vec<TaskId> = out.iter().map(|e| e.id).collect();
        assert_eq!(ids, tasks.iter().map(|t| t.id).collect::<Vec<_>>());
        assert!(out.iter().all(|e| !e.duplicate));
        for t in &tasks {
            let got = s.get_task(&t.id).await.expect("get").expect("stored");
            assert_eq!(&got, t, "batch of {n}: the task reads back as given");
        }
        assert!(
            wait_for(&mut rx, std::time::Duration::from_secs(5), is_work(&queue)).await,
            "batch of {n}: other processes are woken"
        );
        // Same priority, same run_at for the Pending ones without an eta: the claim
        // takes them in batch order.
        let claimed = claim(&s, &queue, n, t0).await;
        let want: Vec<TaskId> = tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Pending)
            .map(|t| t.id)
            .collect();
        let mut got: Vec<TaskId> = claimed.iter().map(|c| c.task.id).collect();
        // The ones with an eta a second earlier come first; compare the rest's order.
        let early: HashSet<TaskId> = tasks
            .iter()
            .filter(|t| t.schedule.eta.is_some() && t.status == TaskStatus::Pending)
            .map(|t| t.id)
            .collect();
        let first: Vec<TaskId> = got.iter().copied().take(early.len()).collect();
        assert!(first.iter().all(|id| early.contains(id)), "eta order");
        got.retain(|id| !early.contains(id));
        let rest: Vec<TaskId> = want.into_iter().filter(|id| !early.contains(id)).collect();
        assert_eq!(got, rest, "batch of {n}: claim order is batch order");

        // An existing id: Conflict, nothing of the batch stored.
        let queue = format!("conflict{n}");
        let mut tasks: Vec<Task> = (0..n).map(|i| full(i, &queue)).collect();
        tasks[n - 1].id = ids[0];
        let err = s.enqueue(tasks).await.expect_err("existing id");
        assert_eq!(err.kind(), StorageErrorKind::Conflict, "{err}");
        assert_eq!(s.counts(Some(&queue)).await.expect("counts")[0].total(), 0);

        // A NUL byte in a text column: Serialization, nothing stored.
        let queue = format!("nul{n}");
        let mut tasks: Vec<Task> = (0..n).map(|i| full(i, &queue)).collect();
        tasks[n / 2].func_path = "bad\0name".into();
        let err = s.enqueue(tasks).await.expect_err("NUL byte");
        assert_eq!(err.kind(), StorageErrorKind::Serialization, "{err}");
        assert_eq!(s.counts(Some(&queue)).await.expect("counts")[0].total(), 0);

        // Inside the application's transaction: nothing after a rollback.
        let queue = format!("tx{n}");
        let tasks: Vec<Task> = (0..n).map(|i| full(i, &queue)).collect();
        let mut tx = s.pool().begin().await.expect("begin");
        s.enqueue_tx(&mut tx, tasks).await.expect("enqueue_tx");
        tx.rollback().await.expect("rollback");
        assert_eq!(s.counts(Some(&queue)).await.expect("counts")[0].total(), 0);
        // The connection is usable afterwards.
        assert!(s.get_task(&ids[0]).await.expect("get").is_some());
    }
}
