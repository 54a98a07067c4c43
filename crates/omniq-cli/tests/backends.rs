//! The same commands on every backend this build's facade can open: `file://`,
//! `sqlite://`, and `postgres://` / `redis://` when the facade builds them (a backend it
//! does not build yet, or whose server is down, is skipped with a message — or fails
//! under `OMNIQ_REQUIRE_SERVICES=1` when the server is down).

mod common;

use common::*;
use omniq::{AsyncOmniQ, TaskStatus};
use std::time::Duration;

/// Opens `url` in `namespace`, or says why this backend is skipped.
async fn open(url: &str, namespace: &str) -> Result<AsyncOmniQ, String> {
    let settings = omniq_cli::Target::flag("--url", url, namespace)
        .settings()
        .map_err(|e| e.message)?;
    match AsyncOmniQ::new(settings).await {
        Ok(o) => Ok(o),
        Err(e) if e.to_string().contains("not available in this build") => Err(format!(
            "the omniq facade in this build does not build it yet ({e})"
        )),
        Err(e) if services_required() => panic!("{url} (OMNIQ_REQUIRE_SERVICES=1): {e}"),
        Err(e) => Err(format!("unreachable: {e}")),
    }
}

/// enqueue, stats, list, show, cancel, retry --failed and purge on one backend.
async fn exercise(url: &str, namespace: &str) {
    let omniq = match open(url, namespace).await {
        Ok(o) => o,
        Err(why) => {
            eprintln!("SKIPPED {url}: {why}");
            return;
        }
    };
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--url", url, "--namespace", namespace]);
        cli(&all)
    };
    let id = |o: &std::process::Output| -> String {
        assert_eq!(code(o), 0, "{url}: {}", stderr(o));
        stdout(o).trim().to_string()
    };
    let now = id(&run(&[
        "enqueue",
        "ok",
        "--args",
        r#"{"x": [1, 2]}"#,
        "--queue",
        "mail",
    ]));
    let later = id(&run(&[
        "enqueue",
        "ok",
        "--args",
        "7",
        "--delay",
        "1h",
        "--unique-key",
        "k",
    ]));
    let boom = id(&run(&[
        "enqueue",
        "boom",
        "--args",
        "null",
        "--queue",
        "mail",
        "--max-retries",
        "0",
    ]));

    let v = json(&run(&["stats", "--json"]));
    assert_eq!(v["total"]["pending"], 3, "{url}: {v}");
    let v = json(&run(&["list", "--json", "--queue", "mail"]));
    let listed: Vec<&str> = v["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(listed, vec![now.as_str(), boom.as_str()], "{url}");
    let v = json(&run(&["show", "--json", &now]));
    assert_eq!(v["task"]["args"], serde_json::json!({"x": [1, 2]}), "{url}");

    // A worker runs the mail queue: one success, one failure.
    let pool = worker(&omniq, &["mail"], 2);
    pool.start().expect("start");
    let s = omniq.storage().clone();
    let boom_id: omniq::TaskId = boom.parse().expect("id");
    wait_until(30, "the mail queue", || {
        let s = s.clone();
        async move {
            s.get_task(&boom_id).await.ok().flatten().map(|t| t.status) == Some(TaskStatus::Failed)
        }
    })
    .await;
    pool.stop(Duration::from_secs(10)).await.expect("stop");
    let o = run(&["show", &boom]);
    assert!(
        stdout(&o).contains("category      external"),
        "{url}: {}",
        stdout(&o)
    );

    let o = run(&["cancel", &later]);
    assert_eq!(code(&o), 0, "{url}: {}", stderr(&o));
    assert_eq!(code(&run(&["cancel", &later])), 5, "{url}");
    let v = json(&run(&["retry", "--failed", "--json"]));
    assert_eq!(v["retried"], serde_json::json!([boom]), "{url}");
    let o = run(&["cancel", &boom]);
    assert_eq!(code(&o), 0, "{url}: {}", stderr(&o));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let v = json(&run(&["purge", "--older-than", "10ms", "--json"]));
    assert_eq!(
        v["purged_results"], 3,
        "{url}: success, cancelled, cancelled: {v}"
    );
    let v = json(&run(&["stats", "--json"]));
    assert_eq!(v["total"]["total"], 0, "{url}: {v}");
    let _ = omniq.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_work_on_every_backend_the_facade_builds() {
    let ns = format!("cli{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let sqlite = Db::new();
    let dir = tempfile::tempdir().expect("dir");
    let pg = std::env::var("OMNIQ_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let redis =
        std::env::var("OMNIQ_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    for url in [
        sqlite.url.clone(),
        format!("file://{}", dir.path().display()),
        pg,
        redis,
    ] {
        exercise(&url, &ns).await;
    }
}
