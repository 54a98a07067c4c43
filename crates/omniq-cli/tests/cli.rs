//! The `omniq` commands against a real SQLite database, through the real binary.

mod common;

use common::*;
use omniq::{Format, Payload, TaskStatus};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_prints_counts_per_queue_and_status() {
    let db = Db::new();
    let (omniq, storage) = db.open().await;
    for _ in 0..3 {
        omniq.enqueue("ok", &1).await.expect("enq");
    }
    omniq.enqueue("ok", &1).queue("mail").await.expect("enq");
    let failed = omniq.enqueue("ok", &1).queue("mail").await.expect("enq");
    storage
        .cancel(&failed, time::OffsetDateTime::now_utc())
        .await
        .expect("cancel");

    let o = cli(&["stats", "--url", &db.url]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "QUEUE    PENDING  RUNNING  SUCCESS  FAILED  CANCELLED  TOTAL\n\
         default        3        0        0       0          0      3\n\
         mail           1        0        0       0          1      2\n\
         TOTAL          4        0        0       0          1      5\n"
    );

    let o = cli(&["stats", "--url", &db.url, "--queue", "mail", "--json"]);
    let v = json(&o);
    assert_eq!(v["queues"][0]["queue"], "mail");
    assert_eq!(v["queues"][0]["cancelled"], 1);
    assert_eq!(v["total"]["total"], 2);

    let o = cli(&[
        "stats",
        "--url",
        &db.url,
        "--watch",
        "--interval",
        "100ms",
        "--iterations",
        "3",
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("ndjson"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l["total"]["pending"] == 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_and_pages_show_and_json() {
    let db = Db::new();
    let (omniq, _) = db.open().await;
    let seeded = seed(&omniq).await;

    // Pages of 4 in id order, cursor to cursor, cover every task once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut args = vec!["list", "--url", &db.url, "--limit", "4", "--json"];
        if let Some(c) = &cursor {
            args.extend(["--cursor", c.as_str()]);
        }
        let v = json(&cli(&args));
        let tasks = v["tasks"].as_array().expect("tasks").clone();
        assert!(tasks.len() <= 4);
        seen.extend(
            tasks
                .iter()
                .map(|t| t["id"].as_str().expect("id").to_string()),
        );
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut expected: Vec<String> = seeded.ids.values().map(|i| i.to_string()).collect();
    expected.sort();
    assert_eq!(seen, expected, "every task once, in id order");

    // Filters; the table names the next page.
    let o = cli(&["list", "--url", &db.url, "--status", "failed"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("ID "), "{out}");
    assert!(out.contains(&seeded.id("failed").to_string()), "{out}");
    assert!(
        out.contains("network: upstream refused the connection"),
        "{out}"
    );
    assert!(!out.contains(&seeded.id("success").to_string()), "{out}");
    let o = cli(&[
        "list", "--url", &db.url, "--limit", "1", "--queue", "default",
    ]);
    assert!(stdout(&o).contains("more: add --cursor "), "{}", stdout(&o));
    let v = json(&cli(&[
        "list", "--url", &db.url, "--queue", "mail", "--json",
    ]));
    assert_eq!(v["tasks"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["tasks"][0]["args"], serde_json::json!([1, 2, 3]));
    assert_eq!(v["tasks"][0]["args_encoding"], "msgpack");

    // show: the TaskError with category, context and traceback, and the result.
    let id = seeded.id("failed").to_string();
    let o = cli(&["show", "--url", &db.url, &id]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    for needle in [
        "status        failed",
        "category      external",
        "message       upstream refused the connection",
        "\"host\": \"api.example\"",
        "\"status\": 503",
        "traceback\n    connect failed\n      0: caused by: connection refused",
        "Result\n  status        failed",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    let v = json(&cli(&[
        "show",
        "--url",
        &db.url,
        "--json",
        &seeded.id("success").to_string(),
    ]));
    assert_eq!(v["task"]["status"], "success");
    assert_eq!(
        v["task"]["args"],
        serde_json::json!({"n": 1, "s": "ünïcode"})
    );
    assert_eq!(
        v["result"]["value"],
        serde_json::json!({"n": 1, "s": "ünïcode"})
    );
    let v = json(&cli(&["show", "--url", &db.url, "--json", &id]));
    assert_eq!(v["task"]["error"]["category"], "external");
    assert_eq!(v["task"]["error"]["context"]["status"], 503);
    assert_eq!(
        v["result"]["error"]["message"],
        "upstream refused the connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_encodes_json_args_with_the_storage_serializer_for_a_worker() {
    for serializer in ["msgpack", "json"] {
        let db = Db::new();
        let o = omniq_cmd()
            .env("OMNIQ_SERIALIZER", serializer)
            .args([
                "enqueue",
                "math.add",
                "--url",
                &db.url,
                "--args",
                "[2, 3]",
                "--queue",
                "math",
                "--delay",
                "1s",
                "--priority",
                "-2",
                "--max-retries",
                "1",
                "--unique-key",
                "k1",
                "--timeout",
                "30s",
            ])
            .output()
            .expect("run");
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let id: omniq::TaskId = stdout(&o).trim().parse().expect("prints the id");

        let mut settings = db.settings();
        settings.serializer = serializer.parse().expect("format");
        let omniq = omniq::AsyncOmniQ::new(settings).await.expect("open");
        let task = omniq.get_task(&id).await.expect("get").expect("task");
        let format: Format = serializer.parse().expect("format");
        assert_eq!(task.args, Payload(format.encode(&(2, 3)).expect("encode")));
        assert_eq!(
            (task.queue.as_str(), task.priority, task.max_retries),
            ("math", -2, 1)
        );
        assert_eq!(task.unique_key.as_deref(), Some("k1"));
        assert_eq!(task.timeout, Some(time::Duration::seconds(30)));
        let delay = task.schedule.eta.expect("eta") - task.created_at;
        assert!(
            (time::Duration::milliseconds(900)..time::Duration::milliseconds(1100))
                .contains(&delay),
            "{delay}"
        );

        // A duplicate unique key prints the live task's id.
        let o = omniq_cmd()
            .env("OMNIQ_SERIALIZER", serializer)
            .args([
                "enqueue",
                "math.add",
                "--url",
                &db.url,
                "--args",
                "[2, 3]",
                "--queue",
                "math",
                "--unique-key",
                "k1",
                "--json",
            ])
            .output()
            .expect("run");
        let v = json(&o);
        assert_eq!(
            (v["id"].as_str(), v["duplicate"].as_bool()),
            (Some(id.to_string().as_str()), Some(true))
        );

        // A worker decodes the arguments and runs the handler.
        let pool = worker(&omniq, &["math"], 1);
        pool.start().expect("start");
        let outcome = omniq
            .wait_result(&id, Duration::from_secs(20))
            .await
            .expect("result");
        pool.stop(Duration::from_secs(5)).await.expect("stop");
        assert!(outcome.is_success(), "{outcome:?}");
        let r = omniq
            .storage()
            .get_result(&id)
            .await
            .expect("r")
            .expect("result");
        assert_eq!(r.result, Some(Payload(format.encode(&5).expect("encode"))));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_cancel_purge_change_the_tasks_and_refuse_what_their_status_forbids() {
    let db = Db::new();
    let (omniq, storage) = db.open().await;
    let seeded = seed(&omniq).await;
    let failed = seeded.id("failed").to_string();

    let o = cli(&["retry", "--url", &db.url, &failed]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("will run again"), "{}", stdout(&o));
    let t = storage
        .get_task(&seeded.id("failed"))
        .await
        .expect("get")
        .expect("task");
    assert_eq!((t.status, t.attempts), (TaskStatus::Pending, 1));
    assert!(t.error.is_some(), "a manual retry keeps the last error");

    let o = cli(&["retry", "--url", &db.url, &failed]);
    assert_eq!(code(&o), 5, "pending now: {}", stderr(&o));
    assert!(
        stderr(&o).contains("only failed tasks are retried"),
        "{}",
        stderr(&o)
    );
    let o = cli(&["retry", "--url", &db.url, &seeded.id("success").to_string()]);
    assert_eq!(code(&o), 5);

    // --failed retries every failed task: put two back first.
    let o = cli(&[
        "retry",
        "--url",
        &db.url,
        &seeded.id("cancelled_after_failing").to_string(),
    ]);
    assert_eq!(code(&o), 5, "cancelled is final");
    let extra = omniq
        .enqueue("boom", &())
        .max_retries(0)
        .queue("mail")
        .await
        .expect("enq");
    let pool = worker(&omniq, &["mail"], 1);
    pool.start().expect("start");
    let s = storage.clone();
    wait_until(20, "the extra failure", || {
        let s = s.clone();
        async move {
            s.get_task(&extra).await.expect("get").map(|t| t.status) == Some(TaskStatus::Failed)
        }
    })
    .await;
    pool.stop(Duration::from_secs(5)).await.expect("stop");
    let v = json(&cli(&[
        "retry", "--url", &db.url, "--failed", "--queue", "mail", "--json",
    ]));
    assert_eq!(v["count"], 1);
    assert_eq!(v["retried"][0], extra.to_string());
    let o = cli(&["retry", "--url", &db.url, "--failed"]);
    assert_eq!(code(&o), 0);
    assert_eq!(stdout(&o), "retried 0 failed task(s)\n");

    // cancel: pending → cancelled; again → already finished (5); unknown → 4.
    let o = cli(&["cancel", "--url", &db.url, &failed]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("task {failed} cancelled\n"));
    let o = cli(&["cancel", "--url", &db.url, &failed]);
    assert_eq!(code(&o), 5);
    assert!(
        stderr(&o).contains("already finished (cancelled)"),
        "{}",
        stderr(&o)
    );
    let running = seeded.id("running").to_string();
    let v = json(&cli(&["cancel", "--url", &db.url, "--json", &running]));
    assert_eq!(v["outcome"], "requested");
    let missing = omniq::TaskId::new().to_string();
    for cmd in ["cancel", "show", "retry"] {
        let o = cli(&[cmd, "--url", &db.url, &missing]);
        assert_eq!(code(&o), 4, "{cmd}: {}", stderr(&o));
        assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
    }

    // purge: nothing is 7 days old; everything finished is older than 1ms.
    let before = all_tasks(storage.as_ref()).await;
    let v = json(&cli(&[
        "purge",
        "--url",
        &db.url,
        "--older-than",
        "7d",
        "--json",
    ]));
    assert_eq!(v["purged_results"], 0);
    assert_eq!(all_tasks(storage.as_ref()).await.len(), before.len());
    let mut with_results = 0;
    for id in before.keys() {
        if storage.get_result(id).await.expect("r").is_some() {
            with_results += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let o = cli(&["purge", "--url", &db.url, "--older-than", "10ms"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with(&format!("purged {with_results} result(s)")),
        "{}",
        stdout(&o)
    );
    let after = all_tasks(storage.as_ref()).await;
    assert!(
        after.values().all(|t| !t.status.is_finished()),
        "finished tasks purged too"
    );
    assert!(
        after.contains_key(&seeded.id("unique_delayed")),
        "pending tasks stay"
    );
}

#[test]
fn errors_name_the_flag_or_variable_and_the_valid_values_with_distinct_exit_codes() {
    let db = Db::new();
    // (arguments, environment, exit code, what stderr must say)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, i32, Vec<&'a str>);
    let cases: Vec<Case<'_>> = vec![
        (
            vec!["stats", "--url", "mongo://u:hunter2@db/x"],
            vec![],
            3,
            vec!["--url", "unknown scheme", "sqlite://PATH", "postgres://"],
        ),
        (
            vec!["stats", "--url", "sqlite:///tmp/x.db?mode=ro"],
            vec![],
            3,
            vec!["--url", "without query parameters"],
        ),
        (
            vec![
                "stats",
                "--url",
                "postgres://postgres:hunter2@127.0.0.1:1/x",
            ],
            vec![],
            6,
            vec!["--url postgres://postgres:***@127.0.0.1:1/x", "unavailable"],
        ),
        (
            vec!["stats", "--url", "redis://:hunter2@127.0.0.1:1"],
            vec![],
            6,
            vec!["--url redis://:***@127.0.0.1:1", "unavailable"],
        ),
        (
            vec!["stats"],
            vec![("OMNIQ_SERIALIZER", "xml")],
            3,
            vec!["OMNIQ_SERIALIZER", "msgpack, json"],
        ),
        (
            vec!["stats"],
            vec![("OMNIQ_BACKEND", "postgres")],
            3,
            vec!["OMNIQ_URL"],
        ),
        (
            vec!["stats", "--url", &db.url, "--queue", "no spaces"],
            vec![],
            3,
            vec!["invalid queue"],
        ),
        (
            vec!["list", "--url", &db.url, "--status", "done"],
            vec![],
            2,
            vec!["--status", "pending, running, success, failed, cancelled"],
        ),
        (
            vec!["show", "--url", &db.url, "not-an-id"],
            vec![],
            2,
            vec!["not a task id"],
        ),
        (
            vec!["enqueue", "f", "--url", &db.url, "--args", "{"],
            vec![],
            2,
            vec!["--args is not valid JSON"],
        ),
        (
            vec!["purge", "--url", &db.url, "--older-than", "7 fortnights"],
            vec![],
            2,
            vec!["--older-than", "7d"],
        ),
        (
            vec!["purge", "--url", &db.url],
            vec![],
            2,
            vec!["--older-than"],
        ),
        (vec!["retry", "--url", &db.url], vec![], 2, vec!["--failed"]),
        (
            vec!["retry", "--url", &db.url, "--queue", "q"],
            vec![],
            2,
            vec!["--failed"],
        ),
        (
            vec!["dashboard", "--url", &db.url, "--bind", "0.0.0.0:0"],
            vec![],
            3,
            vec!["OMNIQ_DASHBOARD_TOKEN", "127.0.0.1"],
        ),
        (
            vec!["dashboard", "--url", &db.url, "--bind", "0.0.0.0:0"],
            vec![("OMNIQ_DASHBOARD_TOKEN", "short")],
            3,
            vec!["too short"],
        ),
        (
            vec!["migrate", "--from", &db.url, "--to", &db.url],
            vec![],
            3,
            vec!["same storage"],
        ),
    ];
    for (args, env, want, needles) in cases {
        let mut cmd = omniq_cmd();
        cmd.args(&args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let o = cmd.output().expect("run");
        let err = stderr(&o);
        assert_eq!(code(&o), want, "{args:?}: {err}");
        for n in needles {
            assert!(err.contains(n), "{args:?}: missing {n:?} in {err}");
        }
        assert!(!err.contains("hunter2"), "password printed: {err}");
    }
    let o = cli(&["--help"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("Exit codes:"), "{}", stdout(&o));
}
