//! The dashboard's routes in-process: pages render what storage holds (escaped),
//! actions change tasks, and the security rules refuse what they should.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use http_body_util::BodyExt;
use omniq::{Storage, TaskStatus};
use omniq_cli::dashboard::{Dashboard, DashboardOptions};
use std::sync::Arc;
use tower::ServiceExt;

const HOST: &str = "127.0.0.1:8080";

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn send(d: &Dashboard, req: Request<Body>) -> Resp {
    let resp = d.router().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header(header::HOST, HOST)
        .body(Body::empty())
        .expect("req")
}

fn post(path: &str, form: &str) -> Request<Body> {
    Request::post(path)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_string()))
        .expect("req")
}

/// The CSRF token the pages embed.
fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a csrf field")
        + 19;
    page[at..at + 64].to_string()
}

fn dashboard(storage: Arc<dyn Storage>, token: Option<&str>, bind: &str) -> Dashboard {
    Dashboard::new(
        storage,
        DashboardOptions {
            bind: bind.parse().expect("addr"),
            token: token.map(str::to_string),
            label: "test".into(),
            ..DashboardOptions::default()
        },
    )
    .expect("dashboard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_render_storage_escaped_and_actions_need_the_csrf_token() {
    let db = Db::new();
    let (omniq, storage) = db.open().await;
    let seeded = seed(&omniq).await;
    let evil = omniq
        .enqueue(
            "ok",
            &serde_json::json!({"note": "<script>document.title='pwned'</script>"}),
        )
        .queue("evil")
        .await
        .expect("enq");
    let d = dashboard(storage.clone(), None, HOST);

    let r = send(&d, get("/")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("id=\"count-default-failed\""), "{}", r.body);
    let csp = r.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("csp");
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(r.body.contains("http-equiv=\"refresh\""), "live by default");
    assert!(
        !send(&d, get("/?refresh=off"))
            .await
            .body
            .contains("http-equiv=\"refresh\"")
    );

    let r = send(&d, get("/tasks?status=failed")).await;
    assert!(r.body.contains(&seeded.id("failed").to_string()));
    assert!(!r.body.contains(&seeded.id("success").to_string()));
    let r = send(&d, get("/tasks?limit=2")).await;
    let next = r
        .body
        .split("id=\"next-page\" href=\"")
        .nth(1)
        .expect("a next link");
    let next = next.split('"').next().expect("href").replace("&amp;", "&");
    assert!(next.starts_with("/tasks?limit=2&cursor="), "{next}");
    assert_eq!(send(&d, get(&next)).await.status, StatusCode::OK);
    assert_eq!(
        send(&d, get("/tasks?status=bogus")).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(&d, get("/tasks?queue=bad%20name")).await.status,
        StatusCode::BAD_REQUEST
    );

    let r = send(&d, get(&format!("/tasks/{evil}"))).await;
    assert!(
        r.body
            .contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;")
            || r.body
                .contains("&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("<script"), "unescaped: {}", r.body);

    let failed = seeded.id("failed");
    let r = send(&d, get(&format!("/tasks/{failed}"))).await;
    for needle in [
        "external",
        "upstream refused the connection",
        "api.example",
        "caused by: connection refused",
        "id=\"retry\"",
    ] {
        assert!(r.body.contains(needle), "missing {needle}");
    }
    let csrf = csrf_of(&r.body);

    // No token, a wrong one, or another site's Origin: refused, nothing changes.
    let path = format!("/tasks/{failed}/retry");
    assert_eq!(
        send(&d, post(&path, "")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&d, post(&path, &format!("csrf={}", "0".repeat(64))))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let mut cross = post(&path, &format!("csrf={csrf}"));
    cross
        .headers_mut()
        .insert(header::ORIGIN, "http://evil.example".parse().expect("hv"));
    assert_eq!(send(&d, cross).await.status, StatusCode::FORBIDDEN);
    let mut rebound = get("/");
    rebound
        .headers_mut()
        .insert(header::HOST, "evil.example:8080".parse().expect("hv"));
    assert_eq!(
        send(&d, rebound).await.status,
        StatusCode::MISDIRECTED_REQUEST
    );
    let t = storage.get_task(&failed).await.expect("get").expect("task");
    assert_eq!(t.status, TaskStatus::Failed);

    // The real form: retried.
    let mut ok = post(&path, &format!("csrf={csrf}"));
    ok.headers_mut().insert(
        header::ORIGIN,
        format!("http://{HOST}").parse().expect("hv"),
    );
    let r = send(&d, ok).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers[header::LOCATION],
        format!("/tasks/{failed}?done=retried")
    );
    let t = storage.get_task(&failed).await.expect("get").expect("task");
    assert_eq!(t.status, TaskStatus::Pending);
    // Retrying it again is a conflict, shown as a page.
    assert_eq!(
        send(&d, post(&path, &format!("csrf={csrf}"))).await.status,
        StatusCode::CONFLICT
    );

    // Cancel and purge.
    let r = send(
        &d,
        post(&format!("/tasks/{failed}/cancel"), &format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(
        r.headers[header::LOCATION],
        format!("/tasks/{failed}?done=cancelled")
    );
    let r = send(&d, post("/purge", &format!("csrf={csrf}&older_than=bogus"))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = send(&d, post("/purge", &format!("csrf={csrf}&older_than=7d"))).await;
    assert_eq!(r.headers[header::LOCATION], "/?done=purged&n=0");
    assert!(
        send(&d, get("/?done=purged&n=0"))
            .await
            .body
            .contains("Purged 0 result(s)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_every_page_and_a_public_bind_needs_one() {
    let db = Db::new();
    let (_, storage) = db.open().await;
    let err = Dashboard::new(
        storage.clone(),
        DashboardOptions {
            bind: "0.0.0.0:8080".parse().expect("addr"),
            ..DashboardOptions::default()
        },
    )
    .expect_err("no token");
    assert!(
        err.message.contains("OMNIQ_DASHBOARD_TOKEN"),
        "{}",
        err.message
    );
    assert_eq!(err.exit, omniq_cli::Exit::Config);

    let token = "correct-horse-battery-staple";
    let d = dashboard(storage, Some(token), "0.0.0.0:8080");
    let mut req = get("/tasks");
    req.headers_mut()
        .insert(header::HOST, "queue.example.com".parse().expect("hv"));
    let r = send(&d, req).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers[header::LOCATION], "/login?next=%2Ftasks");
    assert_eq!(
        send(&d, post("/purge", "older_than=1s")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&d, get("/metrics")).await.status,
        StatusCode::SEE_OTHER
    );

    let mut bearer = get("/tasks");
    bearer.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("hv"),
    );
    assert_eq!(send(&d, bearer).await.status, StatusCode::OK);

    let page = send(&d, get("/login?next=/tasks")).await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = csrf_of(&page.body);
    let wrong = send(
        &d,
        post("/login", &format!("csrf={csrf}&token=nope&next=%2Ftasks")),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.headers.get(header::SET_COOKIE).is_none());
    let right = send(
        &d,
        post(
            "/login",
            &format!("csrf={csrf}&token={token}&next=%2F%2Fevil.example"),
        ),
    )
    .await;
    assert_eq!(right.status, StatusCode::SEE_OTHER);
    assert_eq!(right.headers[header::LOCATION], "/", "no open redirect");
    let cookie = right.headers[header::SET_COOKIE]
        .to_str()
        .expect("cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().expect("pair").to_string();
    let mut with_cookie = get("/");
    with_cookie
        .headers_mut()
        .insert(header::COOKIE, session.parse().expect("hv"));
    assert_eq!(send(&d, with_cookie).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_in_prometheus_text() {
    let db = Db::new();
    let (omniq, storage) = db.open().await;
    let handle = omniq_cli::dashboard::install_prometheus().expect("recorder");
    let id = omniq.enqueue("ok", &1).queue("reports").await.expect("enq");
    omniq
        .enqueue("ok", &2)
        .queue("later")
        .delay(std::time::Duration::from_secs(3600))
        .await
        .expect("enq");
    let d = dashboard(storage, None, HOST).with_metrics(handle);
    // The runtime's own metrics, from a worker in this process.
    let pool = worker(&omniq, &["reports"], 1);
    pool.start().expect("start");
    omniq
        .wait_result(&id, std::time::Duration::from_secs(20))
        .await
        .expect("run");
    pool.stop(std::time::Duration::from_secs(5))
        .await
        .expect("stop");
    d.sample().await;
    let r = send(&d, get("/metrics")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .expect("ct")
            .starts_with("text/plain")
    );
    for line in [
        "# HELP omniq_queue_tasks",
        "omniq_queue_tasks{queue=\"later\",status=\"pending\"} 1",
        "omniq_queue_tasks{queue=\"reports\",status=\"success\"} 1",
        "omniq_tasks_enqueued_total{queue=\"reports\",handler=\"ok\"} 1",
        "omniq_tasks_succeeded_total{queue=\"reports\",handler=\"ok\"} 1",
    ] {
        assert!(r.body.contains(line), "missing {line} in:\n{}", r.body);
    }
}
