//! Shared by the CLI's integration tests: run the real `omniq` binary, open the same
//! storage in-process, and seed tasks in every shape a real worker leaves them.
#![allow(dead_code, unreachable_pub)]

use omniq::backend::ClaimRequest;
use omniq::{
    AsyncOmniQ, AsyncWorkerPool, Backend, Backoff, ErrorType, Settings, Storage, TaskError,
    TaskFilter, TaskId, TaskStatus,
};
use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

/// The `omniq` binary with no `OMNIQ_*` variable inherited.
pub fn omniq_cmd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_omniq"));
    for (k, _) in std::env::vars() {
        if k.starts_with("OMNIQ_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs `omniq ARGS` and returns its output.
pub fn cli(args: &[&str]) -> Output {
    omniq_cmd().args(args).output().expect("run omniq")
}

/// Stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The exit code (panics on a signal).
pub fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

/// Stdout parsed as JSON.
pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            stdout(o),
            stderr(o)
        )
    })
}

/// A SQLite database in a fresh directory.
pub struct Db {
    pub dir: tempfile::TempDir,
    pub url: String,
}

impl Db {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("omniq.db").display());
        Self { dir, url }
    }

    pub fn settings(&self) -> Settings {
        Settings {
            backend: Backend::Sqlite,
            url: Some(self.url.clone()),
            ..Settings::default()
        }
    }

    pub async fn open(&self) -> (AsyncOmniQ, Arc<dyn Storage>) {
        let omniq = AsyncOmniQ::new(self.settings()).await.expect("open sqlite");
        let storage = omniq.storage().clone();
        (omniq, storage)
    }
}

/// A worker pool on `queues` with the test handlers:
/// `ok` (returns its args), `boom` (a network TaskError with context and a traceback),
/// `slow` (sleeps its args' milliseconds), `math.add` (adds two integers).
pub fn worker(omniq: &AsyncOmniQ, queues: &[&str], concurrency: usize) -> AsyncWorkerPool {
    let mut pool = AsyncWorkerPool::builder()
        .queue(omniq.queue().clone())
        .concurrency(concurrency)
        .poll_interval(Duration::from_millis(50))
        .queues(queues.iter().map(|q| q.to_string()))
        .build()
        .expect("pool");
    pool.register(
        "ok",
        |v: serde_json::Value| async move { Ok::<_, TaskError>(v) },
    );
    pool.register("boom", |_: serde_json::Value| async move {
        let mut e = TaskError::new(ErrorType::Network, "upstream refused the connection")
            .with_context("host", "api.example")
            .with_context("status", 503);
        e.traceback = Some("connect failed\n  0: caused by: connection refused".into());
        Err::<(), _>(e)
    });
    pool.register("slow", |ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, TaskError>(ms)
    });
    pool.register("math.add", |(a, b): (i64, i64)| async move {
        Ok::<_, TaskError>(a + b)
    });
    pool
}

/// Waits until `check` holds (or panics after `secs`).
pub async fn wait_until<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every task of a storage, by id.
pub async fn all_tasks(storage: &dyn Storage) -> BTreeMap<TaskId, omniq::Task> {
    let mut out = BTreeMap::new();
    let mut cursor = None;
    loop {
        let page = storage
            .list_tasks(TaskFilter {
                limit: 200,
                cursor,
                ..TaskFilter::default()
            })
            .await
            .expect("list");
        for t in page.items {
            out.insert(t.id, t);
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// The tasks `seed` made, by role.
pub struct Seeded {
    pub ids: BTreeMap<&'static str, TaskId>,
}

impl Seeded {
    pub fn id(&self, role: &str) -> TaskId {
        self.ids[role]
    }
}

/// Seeds one task in each shape the runtime leaves: succeeded, failed (TaskError with
/// context and traceback), failed then retried by hand, an interval task re-armed
/// after a run, cancelled while pending, cancelled after failing, waiting for a retry,
/// delayed with a unique key, with its own options, running under a lease, and one on
/// another queue.
pub async fn seed(omniq: &AsyncOmniQ) -> Seeded {
    let storage = omniq.storage().clone();
    let mut ids = BTreeMap::new();
    let one_hour = time::Duration::hours(1);
    ids.insert(
        "success",
        omniq
            .enqueue("ok", &serde_json::json!({"n": 1, "s": "ünïcode"}))
            .await
            .expect("enq"),
    );
    ids.insert(
        "mail",
        omniq
            .enqueue("ok", &[1, 2, 3])
            .queue("mail")
            .await
            .expect("enq"),
    );
    ids.insert(
        "failed",
        omniq
            .enqueue("boom", &())
            .max_retries(0)
            .await
            .expect("enq"),
    );
    ids.insert(
        "retried_by_hand",
        omniq
            .enqueue("boom", &())
            .max_retries(0)
            .await
            .expect("enq"),
    );
    ids.insert(
        "cancelled_after_failing",
        omniq
            .enqueue("boom", &())
            .max_retries(0)
            .await
            .expect("enq"),
    );
    ids.insert(
        "interval",
        omniq
            .enqueue("ok", &"tick")
            .interval(3600)
            .await
            .expect("enq"),
    );
    ids.insert(
        "waiting_retry",
        omniq
            .enqueue("boom", &())
            .max_retries(5)
            .backoff(Backoff::Fixed(one_hour))
            .await
            .expect("enq"),
    );
    let pool = worker(omniq, &["default", "mail"], 4);
    pool.start().expect("start");
    let s = storage.clone();
    let watch = [
        ids["success"],
        ids["mail"],
        ids["failed"],
        ids["retried_by_hand"],
        ids["cancelled_after_failing"],
        ids["interval"],
        ids["waiting_retry"],
    ];
    wait_until(30, "the seeded runs", || {
        let s = s.clone();
        async move {
            for id in watch {
                let t = s.get_task(&id).await.expect("get").expect("task");
                let done = match t.status {
                    TaskStatus::Success | TaskStatus::Failed => true,
                    // interval re-armed, or waiting for its retry
                    TaskStatus::Pending => {
                        t.attempts > 0
                            || t.schedule.interval.is_some()
                                && s.get_result(&id).await.expect("r").is_some()
                    }
                    _ => false,
                };
                if !done {
                    return false;
                }
            }
            true
        }
    })
    .await;
    pool.stop(Duration::from_secs(10)).await.expect("stop");

    let now = time::OffsetDateTime::now_utc();
    storage
        .reschedule(&ids["retried_by_hand"], now + one_hour, now)
        .await
        .expect("reschedule");
    storage
        .cancel(&ids["cancelled_after_failing"], now)
        .await
        .expect("cancel");
    let cancelled = omniq
        .enqueue("ok", &"never")
        .delay(one_hour)
        .await
        .expect("enq");
    storage.cancel(&cancelled, now).await.expect("cancel");
    ids.insert("cancelled_pending", cancelled);
    ids.insert(
        "unique_delayed",
        omniq
            .enqueue("ok", &"later")
            .unique_key("nightly-report")
            .delay(one_hour)
            .await
            .expect("enq"),
    );
    ids.insert(
        "options",
        omniq
            .enqueue(
                "ok",
                &serde_json::json!({"deep": {"list": [1.5, null, true]}}),
            )
            .priority(7)
            .timeout(Duration::from_secs(90))
            .max_retries(9)
            .backoff(Backoff::Exponential {
                base: time::Duration::seconds(2),
                cap: time::Duration::minutes(5),
                jitter: 0.25,
            })
            .delay(one_hour)
            .await
            .expect("enq"),
    );
    let held = omniq
        .enqueue("ok", &"held")
        .queue("held")
        .await
        .expect("enq");
    let claimed = storage
        .claim(ClaimRequest {
            queues: vec!["held".into()],
            limit: 1,
            now: time::OffsetDateTime::now_utc(),
            lease: time::Duration::minutes(10),
        })
        .await
        .expect("claim");
    assert_eq!(claimed.first().map(|c| c.task.id), Some(held));
    ids.insert("running", held);
    Seeded { ids }
}

/// `OMNIQ_TEST_POSTGRES_URL`, default the local server.
pub fn pg_url() -> String {
    std::env::var("OMNIQ_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `OMNIQ_TEST_REDIS_URL`, default the local server.
pub fn redis_url() -> String {
    std::env::var("OMNIQ_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Whether a missing service fails the test instead of skipping it.
pub fn services_required() -> bool {
    std::env::var("OMNIQ_REQUIRE_SERVICES").is_ok_and(|v| v.trim() == "1")
}

/// A namespace of its own on the shared servers, removed from both when dropped (also
/// when the test panics): the Postgres schema and the Redis keys.
pub struct ServerNamespace {
    pub name: String,
}

impl ServerNamespace {
    pub fn new() -> Self {
        Self {
            name: format!(
                "omniq_cli_{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ),
        }
    }
}

impl Drop for ServerNamespace {
    fn drop(&mut self) {
        let ns = self.name.clone();
        // Its own runtime: this may run inside (or after) the test's.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&pg_url()).await {
                    let _ = sqlx::query(&format!(r#"DROP SCHEMA IF EXISTS "{ns}" CASCADE"#))
                        .execute(&pool)
                        .await;
                    pool.close().await;
                }
                use futures::TryStreamExt;
                use omniq::redis::fred::prelude::*;
                let Ok(config) = Config::from_url(&redis_url()) else {
                    return;
                };
                let Ok(client) = Builder::from_config(config).build() else {
                    return;
                };
                if client.init().await.is_err() {
                    return;
                }
                let keys: Vec<Key> = client
                    .scan_buffered(format!("omniq:*{ns}*"), Some(1000), None)
                    .try_collect()
                    .await
                    .unwrap_or_default();
                for k in keys {
                    let _: Result<i64, _> = client.del(k).await;
                }
                let _ = client.quit().await;
            });
        })
        .join();
    }
}

/// Whether `url` opens in `namespace`; a server that is down is a visible skip (None),
/// or a failure under `OMNIQ_REQUIRE_SERVICES=1`.
pub async fn reachable(url: &str, namespace: &str) -> bool {
    let target = omniq_cli::Target::flag("--url", url, namespace);
    match target.open().await {
        Ok(s) => {
            let _ = s.close().await;
            true
        }
        Err(e) if services_required() => panic!("{url} (OMNIQ_REQUIRE_SERVICES=1): {}", e.message),
        Err(e) => {
            eprintln!("SKIPPED {url}: {}", e.message);
            false
        }
    }
}
