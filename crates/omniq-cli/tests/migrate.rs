//! `omniq migrate`: a round trip through every backend this build has keeps every field
//! of every task and result; runs resume; a target that cannot take a result exactly
//! is reported (exit 7), never silently.

mod common;

use common::*;
use omniq::{Storage, Task, TaskResult, TaskStatus};
use std::collections::BTreeMap;
use std::sync::Arc;

fn micros(t: time::OffsetDateTime) -> time::OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .expect("ns")
}

/// A task as every backend must give it back (microseconds; Running is stored Pending).
fn norm_task(t: &Task) -> Task {
    let mut t = t.clone();
    t.created_at = micros(t.created_at);
    t.updated_at = micros(t.updated_at);
    t.last_attempt_at = t.last_attempt_at.map(micros);
    t.schedule.eta = t.schedule.eta.map(micros);
    if let Some(e) = t.error.as_mut() {
        e.timestamp = micros(e.timestamp);
    }
    if t.status == TaskStatus::Running {
        t.status = TaskStatus::Pending;
    }
    t
}

fn norm_result(r: &TaskResult) -> TaskResult {
    let mut r = r.clone();
    r.finished_at = micros(r.finished_at);
    r.last_attempt_at = r.last_attempt_at.map(micros);
    if let Some(e) = r.error.as_mut() {
        e.timestamp = micros(e.timestamp);
    }
    r
}

async fn snapshot(storage: &dyn Storage) -> BTreeMap<omniq::TaskId, (Task, Option<TaskResult>)> {
    let mut out = BTreeMap::new();
    for (id, t) in all_tasks(storage).await {
        let r = storage.get_result(&id).await.expect("result");
        out.insert(id, (norm_task(&t), r.as_ref().map(norm_result)));
    }
    out
}

async fn open(url: &str) -> std::sync::Arc<dyn Storage> {
    omniq::build_storage(
        &omniq_cli::Target::flag("--url", url, "omniq")
            .settings()
            .expect("settings"),
    )
    .await
    .expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_trip_through_every_backend_keeps_every_field() {
    let db = Db::new();
    let (omniq, source) = db.open().await;
    let seeded = seed(&omniq).await;
    let original = snapshot(source.as_ref()).await;
    let results = original.values().filter(|(_, r)| r.is_some()).count();
    assert_eq!(original.len(), seeded.ids.len());
    assert!(
        results >= 7,
        "the fixture has results of every kind: {results}"
    );
    let statuses: std::collections::BTreeSet<TaskStatus> =
        original.values().map(|(t, _)| t.status).collect();
    assert_eq!(
        statuses.len(),
        4,
        "pending, success, failed, cancelled (+ running, stored pending)"
    );

    let file_dir = tempfile::tempdir().expect("dir");
    let last = Db::new();
    let hops = [
        db.url.clone(),
        format!("file://{}", file_dir.path().display()),
        last.url.clone(),
    ];
    for pair in hops.windows(2) {
        let o = cli(&[
            "migrate", "--from", &pair[0], "--to", &pair[1], "--batch", "3", "--json",
        ]);
        assert_eq!(
            code(&o),
            0,
            "{} -> {}: {}\n{}",
            pair[0],
            pair[1],
            stdout(&o),
            stderr(&o)
        );
        let v = json(&o);
        assert_eq!(v["complete"], true, "{v:#}");
        let r = &v["report"];
        assert_eq!(r["source_tasks"], original.len());
        assert_eq!(r["tasks_copied"], original.len());
        assert_eq!(r["results_copied"], results);
        assert_eq!(r["verification"]["tasks_compared"], original.len());
        assert_eq!(r["verification"]["counts_match"], true);
    }
    let back = snapshot(open(&last.url).await.as_ref()).await;
    assert_eq!(back.len(), original.len());
    for (id, (task, result)) in &original {
        let (t, r) = &back[id];
        assert_eq!(t, task, "task {id}");
        assert_eq!(r, result, "result of {id}");
    }
    // Spot checks of the shapes that need a replay, in case both sides agreed on a loss.
    let (t, r) = &back[&seeded.id("retried_by_hand")];
    assert_eq!(
        (t.status, r.as_ref().map(|r| r.status)),
        (TaskStatus::Pending, Some(TaskStatus::Failed))
    );
    let (t, r) = &back[&seeded.id("interval")];
    assert!(t.schedule.interval.is_some() && r.as_ref().is_some_and(TaskResult::is_success));
    let (t, _) = &back[&seeded.id("unique_delayed")];
    assert_eq!(t.unique_key.as_deref(), Some("nightly-report"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_migration_resumes_and_a_busy_target_is_reported() {
    let db = Db::new();
    let (omniq, source) = db.open().await;
    let seeded = seed(&omniq).await;
    let total = seeded.ids.len();

    // A target that already holds two of the tasks (as an interrupted run leaves it);
    // they are due in an hour, so they cannot get in the way of the replayed runs.
    let target_db = Db::new();
    let target = open(&target_db.url).await;
    for role in ["unique_delayed", "options"] {
        let t = source
            .get_task(&seeded.id(role))
            .await
            .expect("get")
            .expect("task");
        target.enqueue(vec![t]).await.expect("pre-copy");
    }
    let o = cli(&["migrate", "--from", &db.url, "--to", &target_db.url]);
    assert_eq!(code(&o), 0, "{}\n{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(&format!("copied: {} task(s)", total - 2)),
        "{out}"
    );
    assert!(out.contains("2 already there"), "{out}");
    assert!(
        out.contains("verified: counts match per queue and status"),
        "{out}"
    );
    assert!(out.contains(&format!("verified: {total} task(s)")), "{out}");
    assert!(out.contains("identical"), "{out}");

    // Again: nothing to do, still verified.
    let v = json(&cli(&[
        "migrate",
        "--from",
        &db.url,
        "--to",
        &target_db.url,
        "--json",
    ]));
    assert_eq!(
        (
            v["complete"].as_bool(),
            v["report"]["tasks_copied"].as_u64()
        ),
        (Some(true), Some(0))
    );
    assert_eq!(v["report"]["already_present"], total);

    // A target whose default queue holds work due long ago: a replayed claim could take
    // it, so results there are not replayed (and the verification says so).
    let busy_db = Db::new();
    let busy = open(&busy_db.url).await;
    let mut other = omniq::Task::new("unrelated", omniq::Payload::default());
    other.created_at = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(365 * 30);
    other.updated_at = other.created_at;
    busy.enqueue(vec![other]).await.expect("enq");
    let o = cli(&["migrate", "--from", &db.url, "--to", &busy_db.url, "--json"]);
    assert_eq!(code(&o), 7, "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["complete"], false);
    let skipped = v["report"]["results_not_copied"].as_array().expect("list");
    assert!(
        skipped
            .iter()
            .any(|p| p["id"] == seeded.id("success").to_string()),
        "{v:#}"
    );
    assert!(
        skipped.iter().all(|p| p["reason"]
            .as_str()
            .unwrap_or("")
            .contains("other pending or running task(s) of queue \"default\"")),
        "{v:#}"
    );
    assert!(
        !skipped
            .iter()
            .any(|p| p["id"] == seeded.id("mail").to_string()),
        "other queues are replayed"
    );
    assert_eq!(v["report"]["verification"]["counts_match"], false);
    assert!(
        stderr(&o).contains("does not hold everything"),
        "{}",
        stderr(&o)
    );
}

/// Whether a test must fail (not skip) when a service is missing.
fn services_required() -> bool {
    std::env::var("OMNIQ_REQUIRE_SERVICES").is_ok_and(|v| v.trim() == "1")
}

/// Deletes every key of a Redis namespace.
async fn drop_namespace(url: &str, namespace: &str) {
    use omniq_redis::fred::prelude::*;
    let client = Builder::from_config(Config::from_url(url).expect("url"))
        .build()
        .expect("client");
    client.init().await.expect("connect");
    use futures::TryStreamExt;
    let keys: Vec<Key> = client
        .scan_buffered(format!("omniq:*{namespace}*"), Some(1000), None)
        .try_collect()
        .await
        .expect("scan");
    for k in keys {
        let _: i64 = client.del(k).await.expect("del");
    }
    let _ = client.quit().await;
}

/// A Postgres schema dropped (and a Redis namespace deleted) when the test ends.
struct Servers {
    pg_url: String,
    redis_url: String,
    namespace: String,
}

impl Servers {
    async fn postgres(&self) -> Option<Arc<dyn Storage>> {
        let built = omniq_postgres::PostgresStorage::builder()
            .url(&self.pg_url)
            .namespace(&self.namespace)
            .build()
            .await;
        available(
            "Postgres",
            &self.pg_url,
            built.map(|s| Arc::new(s) as Arc<dyn Storage>),
        )
    }

    async fn redis(&self) -> Option<Arc<dyn Storage>> {
        let built = omniq_redis::RedisStorage::builder()
            .url(&self.redis_url)
            .namespace(&self.namespace)
            .build()
            .await;
        available(
            "Redis",
            &self.redis_url,
            built.map(|s| Arc::new(s) as Arc<dyn Storage>),
        )
    }

    async fn clean(&self) {
        if let Ok(pool) = sqlx::PgPool::connect(&self.pg_url).await {
            let _ = sqlx::query(&format!(
                r#"DROP SCHEMA IF EXISTS "{}" CASCADE"#,
                self.namespace
            ))
            .execute(&pool)
            .await;
            pool.close().await;
        }
        drop_namespace(&self.redis_url, &self.namespace).await;
    }
}

fn available(
    what: &str,
    url: &str,
    built: Result<Arc<dyn Storage>, omniq::StorageError>,
) -> Option<Arc<dyn Storage>> {
    match built {
        Ok(s) => Some(s),
        Err(e) if !services_required() => {
            eprintln!("SKIPPED the {what} hop of the round trip: {url}: {e}");
            None
        }
        Err(e) => panic!("{what} at {url} (OMNIQ_REQUIRE_SERVICES=1): {e}"),
    }
}

// The issue's round trip sqlite -> postgres -> redis -> file -> sqlite, through the
// library (`migrate(&dyn Storage, &dyn Storage)`, what `omniq migrate` runs) until the
// facade builds postgres:// and redis:// URLs; then the CLI test above takes these hops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_trip_sqlite_postgres_redis_file_sqlite_keeps_every_field() {
    use omniq_cli::migrate::{MigrateOptions, NoProgress, migrate};
    let servers = Servers {
        pg_url: std::env::var("OMNIQ_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
        redis_url: std::env::var("OMNIQ_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        namespace: format!(
            "omniq_cli_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ),
    };
    let db = Db::new();
    let (omniq, source) = db.open().await;
    seed(&omniq).await;
    let original = snapshot(source.as_ref()).await;

    let file_dir = tempfile::tempdir().expect("dir");
    let last = Db::new();
    let mut hops: Vec<(String, Arc<dyn Storage>)> = vec![("sqlite".into(), source)];
    if let Some(pg) = servers.postgres().await {
        hops.push(("postgres".into(), pg));
    }
    if let Some(redis) = servers.redis().await {
        hops.push(("redis".into(), redis));
    }
    hops.push((
        "file".into(),
        open(&format!("file://{}", file_dir.path().display())).await,
    ));
    hops.push(("sqlite".into(), open(&last.url).await));

    let options = MigrateOptions {
        batch: 4,
        ..MigrateOptions::default()
    };
    let mut failures = Vec::new();
    for pair in hops.windows(2) {
        let ((from_name, from), (to_name, to)) = (&pair[0], &pair[1]);
        match migrate(from.as_ref(), to.as_ref(), &options, &NoProgress).await {
            Ok(report) if report.is_complete() && report.results_copied > 0 => {}
            other => failures.push(format!("{from_name} -> {to_name}: {other:#?}")),
        }
        let held = snapshot(to.as_ref()).await;
        if held != original {
            let differ: Vec<_> = original
                .keys()
                .filter(|id| held.get(id) != original.get(id))
                .collect();
            failures.push(format!(
                "{to_name} holds different tasks or results: {differ:?}"
            ));
        }
    }
    servers.clean().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(hops.len() >= 3);
}
