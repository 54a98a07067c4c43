//! The dashboard in a real browser: headless Chromium driven through chromedriver.
//!
//! One browser session runs every scenario, against the real `omniq dashboard` binary
//! serving a SQLite file that a worker in this process works on:
//! counts change while the worker runs, a failed task is retried by clicking, and a
//! `<script>` in a task's arguments is shown as text and never runs.
//!
//! Needs `chromium` and `chromedriver` (Debian's `chromium` and `chromium-driver`,
//! installed by `.ci/services/chromium.sh`; `OMNIQ_CHROMIUM` / `OMNIQ_CHROMEDRIVER`
//! override the paths). Without them the test is skipped with a message — or fails
//! when `OMNIQ_REQUIRE_SERVICES=1` or `CI=true`. `OMNIQ_SCREENSHOT=1` writes
//! `docs/img/dashboard.png`.

mod common;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use omniq::{Storage, TaskStatus};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed when dropped (only the ones this test started).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn required() -> bool {
    let on = |k: &str, v: &str| std::env::var(k).is_ok_and(|x| x.trim().eq_ignore_ascii_case(v));
    on("OMNIQ_REQUIRE_SERVICES", "1") || on("CI", "true")
}

fn find(var: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(var) {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .expect("text")
}

/// `text`, once the element exists: a form post's redirect may still be loading.
async fn text_when_there(c: &Client, css: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.find(Locator::Css(css)).await.is_err() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    text(c, css).await
}

async fn count(c: &Client, css: &str) -> u64 {
    text(c, css).await.trim().parse().expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let chromium = find(
        "OMNIQ_CHROMIUM",
        &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
    );
    let driver = find("OMNIQ_CHROMEDRIVER", &["/usr/bin/chromedriver"]);
    let (Some(chromium), Some(driver)) = (chromium, driver) else {
        let msg = "chromium and chromedriver not found (apt-get install chromium chromium-driver, or run .ci/services/chromium.sh)";
        if required() {
            panic!("{msg}; required because OMNIQ_REQUIRE_SERVICES=1 or CI=true");
        }
        eprintln!("SKIPPED dashboard_in_headless_chromium: {msg}");
        return;
    };

    let db = Db::new();
    let (omniq, storage) = db.open().await;

    // The real binary, on a free port it prints.
    let mut dash = omniq_cmd()
        .args([
            "dashboard",
            "--url",
            &db.url,
            "--bind",
            "127.0.0.1:0",
            "--sample-every",
            "1s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the dashboard");
    let mut line = String::new();
    BufReader::new(dash.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the listening line");
    let _dash = Proc(dash);
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim_end_matches('/')
        .to_string();

    let port = free_port();
    let _driver = Proc(
        Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    wait_for_port(port, "chromedriver");
    let profile = tempfile::tempdir().expect("profile dir");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a browser session");

    let outcome = scenarios(&c, &base, &omniq, storage.as_ref()).await;
    let _ = c.close().await;
    outcome.expect("browser scenarios");
}

async fn scenarios(
    c: &Client,
    base: &str,
    omniq: &omniq::AsyncOmniQ,
    storage: &dyn Storage,
) -> Result<(), String> {
    // 1. Counts change while a worker runs.
    for _ in 0..24 {
        omniq
            .enqueue("slow", &250u64)
            .queue("work")
            .await
            .expect("enq");
    }
    c.goto(&format!("{base}/"))
        .await
        .map_err(|e| e.to_string())?;
    let title = c.title().await.expect("title");
    let source = c.source().await.map_err(|e| e.to_string())?;
    assert_eq!(title, "Overview · OmniQ", "{source}");
    assert_eq!(count(c, "#count-work-pending").await, 24);
    assert_eq!(count(c, "#count-work-success").await, 0);
    let pool = worker(omniq, &["work"], 2);
    pool.start().expect("start");
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        c.refresh().await.map_err(|e| e.to_string())?;
        let done = count(c, "#count-work-success").await;
        seen.push(done);
        if done == 24 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never finished: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        seen.iter().any(|n| (1..24).contains(n)),
        "no page showed the run in progress: {seen:?}"
    );
    assert_eq!(count(c, "#count-work-pending").await, 0);
    assert_eq!(count(c, "#total-success").await, 24);

    // 2. A failed task, retried by clicking through from the nav.
    let failed = omniq
        .enqueue("boom", &())
        .queue("work")
        .max_retries(0)
        .await
        .expect("enq");
    wait_until(20, "the failure", || async {
        storage
            .get_task(&failed)
            .await
            .expect("get")
            .map(|t| t.status)
            == Some(TaskStatus::Failed)
    })
    .await;
    pool.stop(Duration::from_secs(10)).await.expect("stop");
    // A few more queues for the overview (and its screenshot).
    for (queue, n) in [("mail", 3), ("reports", 2)] {
        for _ in 0..n {
            omniq
                .enqueue("ok", &())
                .queue(queue)
                .delay(Duration::from_secs(3600))
                .await
                .expect("enq");
        }
    }
    c.goto(&format!("{base}/?refresh=off"))
        .await
        .map_err(|e| e.to_string())?;
    // Let the sampler add a few points to the chart, then the screenshot.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    c.refresh().await.map_err(|e| e.to_string())?;
    if std::env::var("OMNIQ_SCREENSHOT").is_ok_and(|v| v == "1") {
        let png = c.screenshot().await.map_err(|e| e.to_string())?;
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/img/dashboard.png");
        std::fs::create_dir_all(path.parent().expect("dir")).expect("docs/img");
        std::fs::write(&path, png).expect("write the screenshot");
        eprintln!("wrote {}", path.display());
    }
    c.find(Locator::LinkText("Failed"))
        .await
        .map_err(|e| e.to_string())?
        .click()
        .await
        .map_err(|e| e.to_string())?;
    c.find(Locator::LinkText(&failed.to_string()))
        .await
        .map_err(|e| e.to_string())?
        .click()
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(text(c, "#status").await, "failed");
    assert!(
        text(c, "#error")
            .await
            .contains("upstream refused the connection")
    );
    c.find(Locator::Css("#retry"))
        .await
        .map_err(|e| e.to_string())?
        .click()
        .await
        .map_err(|e| e.to_string())?;
    assert!(
        text_when_there(c, "p.flash")
            .await
            .contains("will run again")
    );
    assert_eq!(text(c, "#status").await, "pending");
    let t = storage.get_task(&failed).await.expect("get").expect("task");
    assert_eq!((t.status, t.attempts), (TaskStatus::Pending, 1));

    // 3. A <script> in the arguments is text, and nothing runs.
    let payload =
        "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">";
    let evil = omniq
        .enqueue("ok", &serde_json::json!({ "note": payload }))
        .queue("evil")
        .await
        .expect("enq");
    c.goto(&format!("{base}/tasks/{evil}"))
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        c.title().await.expect("title"),
        format!("Task {evil} · OmniQ")
    );
    let shown = text(c, "#args").await;
    assert!(
        shown.contains("<script>document.title='pwned'</script><img src=x"),
        "shown as text: {shown}"
    );
    let injected = c
        .execute(
            "return document.querySelectorAll('main script, main img').length",
            vec![],
        )
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(injected, serde_json::json!(0));
    Ok(())
}
