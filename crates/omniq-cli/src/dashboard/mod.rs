//! `omniq dashboard`: a server-rendered web UI over any [`Storage`].
//!
//! Pages: the overview (counts per queue and status, counts over time from an
//! in-memory ring of samples, retry-all-failed and purge), the task list (filters by
//! status and queue, paging by cursor), and the task page (arguments decoded, the
//! TaskError with category, context and traceback, attempts, the result; retry and
//! cancel). `/metrics` serves the Prometheus text of the process's
//! `metrics-exporter-prometheus` recorder.
//!
//! The security model is in the `security` module's docs and `docs/cli.md`. An
//! application can embed the dashboard in its own process (so `/metrics` also shows
//! its workers' metrics) with [`Dashboard::router`]:
//!
//! ```no_run
//! # async fn demo(storage: std::sync::Arc<dyn omniq::Storage>) -> Result<(), Box<dyn std::error::Error>> {
//! use omniq_cli::dashboard::{Dashboard, DashboardOptions};
//!
//! // The process's Prometheus recorder; the runtime's metrics are on from here.
//! let handle = omniq_cli::dashboard::install_prometheus()?;
//! let dashboard = Dashboard::new(storage, DashboardOptions::default())?.with_metrics(handle);
//! dashboard.spawn_sampler();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, dashboard.router()).await?;
//! # Ok(()) }
//! ```

mod pages;
mod samples;
mod security;

use crate::cli::DashboardArgs;
use crate::commands::{cancel_words, cutoff, retry_failed, retry_one};
use crate::connect::Target;
use crate::error::{CliError, CliResult, Exit};
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::Markup;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use omniq::{CancelOutcome, Cursor, Format, Storage, TaskFilter, TaskId, TaskStatus};
use pages::Frame;
use samples::{Sample, Samples};
use security::Security;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

/// How a dashboard is set up.
#[derive(Debug, Clone)]
pub struct DashboardOptions {
    /// The address it is served on: a non-loopback address requires `token`, a loopback
    /// one restricts the `Host` header to that address.
    pub bind: SocketAddr,
    /// `OMNIQ_DASHBOARD_TOKEN`: when set, every page and action requires it.
    pub token: Option<String>,
    /// How often counts are sampled for the charts (also the overview's refresh).
    pub sample_every: Duration,
    /// How many samples the charts keep.
    pub history: usize,
    /// The serializer payloads were encoded with (for decoding arguments and results).
    pub format: Format,
    /// Names the storage in the page header (no credentials).
    pub label: String,
}

impl Default for DashboardOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            sample_every: Duration::from_secs(5),
            history: 360,
            format: Format::default(),
            label: String::new(),
        }
    }
}

/// The dashboard: cheap to clone, shared by its routes and its sampler.
#[derive(Clone)]
pub struct Dashboard {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Arc<dyn Storage>,
    options: DashboardOptions,
    security: Arc<Security>,
    samples: Mutex<Samples>,
    metrics: Option<PrometheusHandle>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("storage", &self.inner.storage)
            .field("bind", &self.inner.options.bind)
            .field("token", &self.inner.security.has_token())
            .finish()
    }
}

impl Dashboard {
    /// A dashboard over `storage`. Refuses (a configuration error) a non-loopback
    /// `bind` without a token, and a token shorter than 16 characters.
    pub fn new(storage: Arc<dyn Storage>, options: DashboardOptions) -> CliResult<Self> {
        let security =
            Security::new(options.bind, options.token.clone()).map_err(CliError::config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                storage,
                samples: Mutex::new(Samples::new(options.history)),
                options,
                security: Arc::new(security),
                metrics: None,
            }),
        })
    }

    /// Serves `handle`'s rendering at `/metrics` (without one, `/metrics` is 404).
    pub fn with_metrics(self, handle: PrometheusHandle) -> Self {
        let inner = match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.metrics = Some(handle);
                inner
            }
            Err(shared) => Inner {
                storage: shared.storage.clone(),
                options: shared.options.clone(),
                security: shared.security.clone(),
                samples: Mutex::new(Samples::new(shared.options.history)),
                metrics: Some(handle),
            },
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Reads counts now, adds them to the charts and publishes them as gauges.
    pub async fn sample(&self) {
        match self.inner.storage.counts(None).await {
            Ok(counts) => {
                let sample = Sample {
                    at: OffsetDateTime::now_utc(),
                    counts,
                };
                samples::publish(&sample);
                self.samples().push(sample);
            }
            Err(e) => self.samples().last_error = Some(e.to_string()),
        }
        if let Some(h) = &self.inner.metrics {
            h.run_upkeep();
        }
    }

    /// Samples every `sample_every` in a background task until the process ends (or the
    /// handle is aborted).
    pub fn spawn_sampler(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(me.inner.options.sample_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.sample().await;
            }
        })
    }

    fn samples(&self) -> std::sync::MutexGuard<'_, Samples> {
        // A panic while holding the lock cannot leave the ring inconsistent.
        self.inner
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The routes, behind the security guard.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(overview))
            .route("/tasks", get(task_list))
            .route("/tasks/{id}", get(task_page))
            .route("/tasks/{id}/retry", post(retry_task))
            .route("/tasks/{id}/cancel", post(cancel_task))
            .route("/retry-failed", post(retry_all_failed))
            .route("/purge", post(purge))
            .route("/login", get(login_page).post(login))
            .route("/logout", post(logout))
            .route("/metrics", get(metrics_text))
            .route("/healthz", get(|| async { "ok" }))
            .route("/static/style.css", get(style))
            .with_state(self.clone())
            .layer(axum::middleware::from_fn_with_state(
                self.inner.security.clone(),
                security::guard,
            ))
    }

    fn frame<'a>(&'a self, title: &'a str, headers: &HeaderMap) -> Frame<'a> {
        Frame {
            title,
            label: &self.inner.options.label,
            flash: None,
            refresh_secs: None,
            signed_in_with_token: self.inner.security.has_token()
                && security::cookie(headers, security::SESSION_COOKIE).is_some(),
            csrf: self.inner.security.csrf(),
        }
    }

    fn page(&self, frame: &Frame<'_>, body: Markup) -> Response {
        Html(pages::layout(frame, body).into_string()).into_response()
    }

    fn error(&self, status: StatusCode, headers: &HeaderMap, message: &str) -> Response {
        let frame = self.frame("Error", headers);
        let mut resp = self.page(&frame, pages::error_body(message));
        *resp.status_mut() = status;
        resp
    }

    fn refused_csrf(&self, headers: &HeaderMap) -> Response {
        self.error(
            StatusCode::FORBIDDEN,
            headers,
            "This form has expired or did not come from this dashboard (the CSRF token does not match). Reload the page and try again.",
        )
    }

    fn storage_error(&self, headers: &HeaderMap, doing: &str, e: &CliError) -> Response {
        let status = match e.exit {
            Exit::NotFound => StatusCode::NOT_FOUND,
            Exit::Conflict => StatusCode::CONFLICT,
            Exit::Config | Exit::Usage => StatusCode::BAD_REQUEST,
            Exit::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        self.error(status, headers, &format!("{doing}: {}", e.message))
    }
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

#[derive(Debug, Deserialize)]
struct OverviewQuery {
    refresh: Option<String>,
    done: Option<String>,
    n: Option<u64>,
}

fn flash(done: Option<&str>, n: Option<u64>) -> Option<String> {
    let n = n.unwrap_or(0);
    Some(match done? {
        "retried" => "The task will run again: it is pending now.".to_string(),
        "cancelled" => "The task was cancelled.".to_string(),
        "requested" => {
            "The task is running: cancellation was requested, and its worker will stop it."
                .to_string()
        }
        "retried-all" => format!("{n} failed task(s) will run again."),
        "purged" => format!("Purged {n} result(s), with the finished tasks they belonged to."),
        _ => return None,
    })
}

async fn overview(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Query(q): Query<OverviewQuery>,
) -> Response {
    if d.samples().len() == 0 {
        d.sample().await;
    }
    let counts = d
        .inner
        .storage
        .counts(None)
        .await
        .map_err(|e| e.to_string());
    let refresh = match q.refresh.as_deref() {
        Some("off") => None,
        _ => Some(d.inner.options.sample_every.as_secs().max(2)),
    };
    let body = {
        let samples = d.samples();
        let list: Vec<&Sample> = samples.iter().collect();
        pages::overview(
            counts.as_deref().map_err(String::as_str),
            &list,
            samples.last_error.as_deref(),
            d.inner.security.csrf(),
            refresh,
        )
    };
    let mut frame = d.frame("Overview", &headers);
    frame.refresh_secs = refresh;
    frame.flash = flash(q.done.as_deref(), q.n);
    d.page(&frame, body)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    queue: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

async fn task_list(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let bad = |msg: String| d.error(StatusCode::BAD_REQUEST, &headers, &msg);
    let status = match nonempty(q.status).map(|s| s.parse::<TaskStatus>()) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => return bad(e),
    };
    let limit = match nonempty(q.limit).map(|s| s.parse::<usize>()) {
        None => 50,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => return bad("limit must be a whole number from 1 to 1000".into()),
    };
    let cursor_text = nonempty(q.cursor);
    let cursor = match cursor_text.as_deref().map(str::parse::<TaskId>) {
        None => None,
        Some(Ok(id)) => Some(Cursor(id)),
        Some(Err(_)) => return bad("cursor is not a task id".into()),
    };
    let queue = nonempty(q.queue);
    let filter = TaskFilter {
        status,
        queue: queue.clone(),
        limit,
        cursor,
    };
    let page = match d.inner.storage.list_tasks(filter).await {
        Ok(p) => p,
        Err(e) => {
            return d.storage_error(&headers, "listing tasks", &CliError::storage("list", &e));
        }
    };
    let params = pages::ListParams {
        status,
        queue: queue.as_deref(),
        limit,
        cursor: cursor_text.as_deref(),
    };
    let frame = d.frame("Tasks", &headers);
    d.page(&frame, pages::task_list(&page, &params))
}

#[derive(Debug, Deserialize)]
struct TaskQuery {
    done: Option<String>,
}

async fn load_task(d: &Dashboard, headers: &HeaderMap, id: &str) -> Result<omniq::Task, Response> {
    let Ok(id) = id.parse::<TaskId>() else {
        return Err(d.error(StatusCode::NOT_FOUND, headers, "That is not a task id."));
    };
    match d.inner.storage.get_task(&id).await {
        Ok(Some(t)) => Ok(t),
        Ok(None) => Err(d.error(
            StatusCode::NOT_FOUND,
            headers,
            &format!("Task {id} does not exist (it may have been purged)."),
        )),
        Err(e) => Err(d.storage_error(
            headers,
            "reading the task",
            &CliError::storage("get_task", &e),
        )),
    }
}

async fn task_page(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<TaskQuery>,
) -> Response {
    let task = match load_task(&d, &headers, &id).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let result = match d.inner.storage.get_result(&task.id).await {
        Ok(r) => r,
        Err(e) => {
            return d.storage_error(
                &headers,
                "reading the result",
                &CliError::storage("get_result", &e),
            );
        }
    };
    let title = format!("Task {}", task.id);
    let mut frame = d.frame(&title, &headers);
    frame.flash = flash(q.done.as_deref(), None);
    d.page(
        &frame,
        pages::task_page(
            &task,
            result.as_ref(),
            d.inner.options.format,
            d.inner.security.csrf(),
        ),
    )
}

#[derive(Debug, Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
}

async fn retry_task(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    if !d.inner.security.csrf_ok(&form.csrf) {
        return d.refused_csrf(&headers);
    }
    let task = match load_task(&d, &headers, &id).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    match retry_one(d.inner.storage.as_ref(), &task).await {
        Ok(()) => {
            metrics::counter!("omniq_dashboard_actions_total", "action" => "retry").increment(1);
            Redirect::to(&format!("/tasks/{}?done=retried", task.id)).into_response()
        }
        Err(e) => d.storage_error(&headers, "Could not retry", &e),
    }
}

async fn cancel_task(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    if !d.inner.security.csrf_ok(&form.csrf) {
        return d.refused_csrf(&headers);
    }
    let task = match load_task(&d, &headers, &id).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let outcome = match d
        .inner
        .storage
        .cancel(&task.id, OffsetDateTime::now_utc())
        .await
    {
        Ok(o) => o,
        Err(e) => {
            return d.storage_error(
                &headers,
                "Could not cancel",
                &CliError::storage("cancel", &e),
            );
        }
    };
    if let Err(e) = cancel_words(&task.id, outcome) {
        return d.storage_error(&headers, "Could not cancel", &e);
    }
    metrics::counter!("omniq_dashboard_actions_total", "action" => "cancel").increment(1);
    let done = if outcome == CancelOutcome::Requested {
        "requested"
    } else {
        "cancelled"
    };
    Redirect::to(&format!("/tasks/{}?done={done}", task.id)).into_response()
}

#[derive(Debug, Deserialize)]
struct RetryAllForm {
    #[serde(default)]
    csrf: String,
    queue: Option<String>,
}

async fn retry_all_failed(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Form(form): Form<RetryAllForm>,
) -> Response {
    if !d.inner.security.csrf_ok(&form.csrf) {
        return d.refused_csrf(&headers);
    }
    let queue = nonempty(form.queue);
    match retry_failed(d.inner.storage.as_ref(), queue.as_deref()).await {
        Ok((done, failed)) => {
            metrics::counter!("omniq_dashboard_actions_total", "action" => "retry_failed")
                .increment(1);
            if let Some(first) = failed.first() {
                return d.storage_error(
                    &headers,
                    &format!("Retried {} task(s), but not all", done.len()),
                    first,
                );
            }
            Redirect::to(&format!("/?done=retried-all&n={}", done.len())).into_response()
        }
        Err(e) => d.storage_error(&headers, "Could not retry the failed tasks", &e),
    }
}

#[derive(Debug, Deserialize)]
struct PurgeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    older_than: String,
}

async fn purge(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Form(form): Form<PurgeForm>,
) -> Response {
    if !d.inner.security.csrf_ok(&form.csrf) {
        return d.refused_csrf(&headers);
    }
    let cutoff = match crate::cli::parse_duration(&form.older_than)
        .map_err(|e| CliError::new(Exit::Usage, e))
        .and_then(cutoff)
    {
        Ok(c) => c,
        Err(e) => return d.storage_error(&headers, "Older than", &e),
    };
    match d.inner.storage.purge_results(cutoff).await {
        Ok(n) => {
            metrics::counter!("omniq_dashboard_actions_total", "action" => "purge").increment(1);
            Redirect::to(&format!("/?done=purged&n={n}")).into_response()
        }
        Err(e) => d.storage_error(&headers, "Could not purge", &CliError::storage("purge", &e)),
    }
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

async fn login_page(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    if !d.inner.security.has_token() {
        return Redirect::to("/").into_response();
    }
    let next = security::safe_next(q.next.as_deref());
    let frame = d.frame("Sign in", &headers);
    d.page(&frame, pages::login(d.inner.security.csrf(), &next, false))
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    next: Option<String>,
}

async fn login(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !d.inner.security.csrf_ok(&form.csrf) {
        return d.refused_csrf(&headers);
    }
    let next = security::safe_next(form.next.as_deref());
    if !d.inner.security.token_ok(&form.token) {
        let frame = d.frame("Sign in", &headers);
        let mut resp = d.page(&frame, pages::login(d.inner.security.csrf(), &next, true));
        *resp.status_mut() = StatusCode::UNAUTHORIZED;
        return resp;
    }
    let mut resp = Redirect::to(&next).into_response();
    if let Ok(v) = d.inner.security.session_cookie().parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn logout(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    if !d.inner.security.csrf_ok(&form.csrf) {
        return d.refused_csrf(&headers);
    }
    let mut resp = Redirect::to("/login").into_response();
    let expired = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        security::SESSION_COOKIE
    );
    if let Ok(v) = expired.parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn metrics_text(State(d): State<Dashboard>) -> Response {
    match &d.inner.metrics {
        Some(h) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            h.render(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no metrics recorder is installed in this process",
        )
            .into_response(),
    }
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        pages::STYLE,
    )
        .into_response()
}

/// Installs the Prometheus recorder as the process's `metrics` recorder, turns on the
/// runtime's metrics (`omniq::metrics::enable`: the queue and any worker pool in this
/// process emit from then on) and describes the dashboard's own series. Call once per
/// process.
pub fn install_prometheus() -> CliResult<PrometheusHandle> {
    let handle = PrometheusBuilder::new().install_recorder().map_err(|e| {
        CliError::new(
            Exit::Failure,
            format!("cannot install the Prometheus metrics recorder: {e}"),
        )
    })?;
    omniq::metrics::enable();
    metrics::describe_gauge!(
        "omniq_queue_tasks",
        "Tasks per queue and status, as the dashboard last sampled them"
    );
    metrics::describe_counter!(
        "omniq_dashboard_actions_total",
        "Retry, cancel and purge actions taken in the dashboard"
    );
    Ok(handle)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub(crate) async fn run(target: Target, args: &DashboardArgs) -> CliResult<()> {
    let settings = target.settings()?;
    let token = std::env::var("OMNIQ_DASHBOARD_TOKEN").ok();
    // Check the bind and token before connecting anywhere.
    Security::new(args.bind, token.clone()).map_err(CliError::config)?;
    let storage = target.open().await?;
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|e| CliError::config(format!("--bind {}: cannot listen: {e}", args.bind)))?;
    // The bound address (port 0 picks one): the Host check needs the real port.
    let local = listener
        .local_addr()
        .map_err(|e| CliError::config(format!("--bind {}: {e}", args.bind)))?;
    let options = DashboardOptions {
        bind: local,
        token,
        sample_every: args.sample_every,
        history: args.history as usize,
        format: settings.serializer,
        label: target.describe(),
    };
    let handle = install_prometheus()?;
    let dashboard = Dashboard::new(storage.clone(), options)?.with_metrics(handle);
    let sampler = dashboard.spawn_sampler();
    println!(
        "omniq dashboard listening on http://{local}/ ({})",
        target.describe()
    );
    let served = axum::serve(listener, dashboard.router())
        .with_graceful_shutdown(shutdown_signal())
        .await;
    sampler.abort();
    let closed = storage.close().await;
    served.map_err(|e| CliError::new(Exit::Failure, format!("serving the dashboard: {e}")))?;
    closed.map_err(|e| CliError::storage("closing the storage", &e))
}
