//! `omniq migrate`: a round trip through every backend this build has keeps every field
//! of every task and result; runs resume; a target that cannot take a result exactly
//! is reported (exit 7), never silently.

mod common;

use common::*;
use omniq::{Storage, Task, TaskResult, TaskStatus};
use std::collections::BTreeMap;

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

    // sqlite -> postgres -> redis -> file -> sqlite, each hop by the real command.
    let servers = ServerNamespace::new();
    let file_dir = tempfile::tempdir().expect("dir");
    let last = Db::new();
    let mut hops: Vec<(String, String)> = vec![(db.url.clone(), "omniq".into())];
    for url in [pg_url(), redis_url()] {
        if reachable(&url, &servers.name).await {
            hops.push((url, servers.name.clone()));
        }
    }
    hops.push((
        format!("file://{}", file_dir.path().display()),
        "omniq".into(),
    ));
    hops.push((last.url.clone(), "omniq".into()));
    for pair in hops.windows(2) {
        let ((from, from_ns), (to, to_ns)) = (&pair[0], &pair[1]);
        let o = cli(&[
            "migrate",
            "--from",
            from,
            "--from-namespace",
            from_ns,
            "--to",
            to,
            "--to-namespace",
            to_ns,
            "--batch",
            "3",
            "--json",
        ]);
        assert_eq!(
            code(&o),
            0,
            "{from} -> {to}: {}\n{}",
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
        // And independently of migrate's own verification:
        let held = snapshot(
            omniq_cli::Target::flag("--url", to, to_ns)
                .open()
                .await
                .expect("open")
                .as_ref(),
        )
        .await;
        assert_eq!(held, original, "{to} holds what the source holds");
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
