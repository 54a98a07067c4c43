//! The dashboard's HTML, written with maud: every `(value)` is HTML-escaped; nothing
//! from storage is ever inserted unescaped.

use super::samples::{Sample, polyline};
use crate::commands::serde_plain;
use crate::view::{Decoded, decode_payload, ellipsize, human_duration, rfc3339, short_time};
use maud::{DOCTYPE, Markup, html};
use omniq::{Format, Page, QueueCounts, Task, TaskError, TaskResult, TaskStatus};

/// What every page needs besides its body.
pub(crate) struct Frame<'a> {
    pub(crate) title: &'a str,
    pub(crate) label: &'a str,
    pub(crate) flash: Option<String>,
    pub(crate) refresh_secs: Option<u64>,
    pub(crate) signed_in_with_token: bool,
    pub(crate) csrf: &'a str,
}

pub(crate) fn layout(frame: &Frame<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(secs) = frame.refresh_secs {
                    meta http-equiv="refresh" content=(secs);
                }
                title { (frame.title) " · OmniQ" }
                link rel="stylesheet" href="/static/style.css";
            }
            body {
                header {
                    a.brand href="/" { "OmniQ" }
                    nav {
                        a href="/" { "Overview" }
                        a href="/tasks" { "Tasks" }
                        a href="/tasks?status=failed" { "Failed" }
                        a href="/metrics" { "Metrics" }
                    }
                    span.backend title="storage" { (frame.label) }
                    @if frame.signed_in_with_token {
                        form.inline method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(frame.csrf);
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    @if let Some(flash) = &frame.flash {
                        p.flash role="status" { (flash) }
                    }
                    (body)
                }
            }
        }
    }
}

/// An error page body.
pub(crate) fn error_body(message: &str) -> Markup {
    html! {
        h1 { "Something went wrong" }
        p.error { (message) }
        p { a href="/" { "Back to the overview" } }
    }
}

const STATUS_CLASSES: [(&str, TaskStatus); 5] = [
    ("pending", TaskStatus::Pending),
    ("running", TaskStatus::Running),
    ("success", TaskStatus::Success),
    ("failed", TaskStatus::Failed),
    ("cancelled", TaskStatus::Cancelled),
];

fn counts_table(counts: &[QueueCounts]) -> Markup {
    let mut total = QueueCounts {
        queue: "all queues".into(),
        ..QueueCounts::default()
    };
    for c in counts {
        for s in TaskStatus::ALL {
            total.add(s, c.get(s));
        }
    }
    html! {
        table #counts {
            thead { tr {
                th { "Queue" }
                @for (name, _) in STATUS_CLASSES { th.num { (name) } }
                th.num { "total" }
            } }
            tbody {
                @for c in counts {
                    tr {
                        th { a href=(format!("/tasks?queue={}", c.queue)) { (c.queue) } }
                        @for (name, s) in STATUS_CLASSES {
                            td.num id=(format!("count-{}-{name}", c.queue)) {
                                a href=(format!("/tasks?queue={}&status={name}", c.queue)) { (c.get(s)) }
                            }
                        }
                        td.num { (c.total()) }
                    }
                }
                @if counts.is_empty() {
                    tr { td colspan="7" { "No tasks yet." } }
                }
            }
            tfoot { tr {
                th { "all queues" }
                @for (name, s) in STATUS_CLASSES {
                    td.num id=(format!("total-{name}")) { (total.get(s)) }
                }
                td.num id="total-all" { (total.total()) }
            } }
        }
    }
}

fn chart(samples: &[&Sample]) -> Markup {
    const W: f64 = 600.0;
    const H: f64 = 140.0;
    let series: Vec<(&str, Vec<u64>)> = STATUS_CLASSES
        .iter()
        .map(|(name, s)| (*name, samples.iter().map(|x| x.total(*s)).collect()))
        .collect();
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .max()
        .unwrap_or(0);
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {W} {H}")) width="600" height="140" role="img"
                aria-label="Tasks by status over time" {
                line.axis x1="0" y1=(H) x2=(W) y2=(H) {}
                @for (name, values) in &series {
                    polyline class=(format!("series {name}")) fill="none" stroke-width="2"
                        points=(polyline(values, max, W, H)) {}
                }
            }
            figcaption {
                @if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
                    (samples.len()) " samples from " (short_time(first.at)) " to " (short_time(last.at)) " UTC, peak " (max) ". "
                } @else {
                    "No samples yet. "
                }
                @for (name, _) in STATUS_CLASSES {
                    span class=(format!("key {name}")) { (name) } " "
                }
            }
        }
    }
}

pub(crate) fn overview(
    counts: Result<&[QueueCounts], &str>,
    samples: &[&Sample],
    sampling_error: Option<&str>,
    csrf: &str,
    refresh: Option<u64>,
) -> Markup {
    let recent: Vec<&&Sample> = samples.iter().rev().take(12).collect();
    html! {
        h1 { "Queues" }
        @match counts {
            Ok(counts) => (counts_table(counts)),
            Err(e) => p.error { "Could not read counts: " (e) },
        }
        p.muted {
            @match refresh {
                Some(secs) => { "This page refreshes every " (secs) " s. " a href="/?refresh=off" { "Pause" } }
                None => { "Auto-refresh paused. " a href="/" { "Resume" } }
            }
        }
        h2 { "Over time" }
        @if let Some(e) = sampling_error { p.error { "Sampling failed: " (e) } }
        (chart(samples))
        @if !recent.is_empty() {
            table #samples {
                thead { tr { th { "time (UTC)" } @for (name, _) in STATUS_CLASSES { th.num { (name) } } } }
                tbody {
                    @for s in recent {
                        tr {
                            td { (short_time(s.at)) }
                            @for (_, st) in STATUS_CLASSES { td.num { (s.total(st)) } }
                        }
                    }
                }
            }
        }
        h2 { "Actions" }
        div.actions {
            form method="post" action="/retry-failed" {
                input type="hidden" name="csrf" value=(csrf);
                label { "Queue (empty: all) " input type="text" name="queue" size="12"; }
                " "
                button #retry-failed type="submit" { "Retry every failed task" }
            }
            form method="post" action="/purge" {
                input type="hidden" name="csrf" value=(csrf);
                label { "Delete results and finished tasks older than " input #older-than type="text" name="older_than" value="7d" size="6"; }
                " "
                button #purge type="submit" { "Purge" }
            }
        }
    }
}

/// The task list's filters as they were asked for.
pub(crate) struct ListParams<'a> {
    pub(crate) status: Option<TaskStatus>,
    pub(crate) queue: Option<&'a str>,
    pub(crate) limit: usize,
    pub(crate) cursor: Option<&'a str>,
}

impl ListParams<'_> {
    fn href(&self, cursor: Option<&str>) -> String {
        let mut q = vec![format!("limit={}", self.limit)];
        if let Some(s) = self.status {
            q.push(format!("status={s}"));
        }
        if let Some(queue) = self.queue {
            q.push(format!(
                "queue={}",
                super::security::encode_component(queue)
            ));
        }
        if let Some(c) = cursor {
            q.push(format!("cursor={c}"));
        }
        format!("/tasks?{}", q.join("&"))
    }
}

pub(crate) fn task_list(page: &Page<Task>, params: &ListParams<'_>) -> Markup {
    html! {
        h1 { "Tasks" }
        form.filters method="get" action="/tasks" {
            label { "Status "
                select name="status" {
                    option value="" selected[params.status.is_none()] { "any" }
                    @for (name, s) in STATUS_CLASSES {
                        option value=(name) selected[params.status == Some(s)] { (name) }
                    }
                }
            }
            " "
            label { "Queue " input type="text" name="queue" size="12" value=(params.queue.unwrap_or("")); }
            " "
            label { "Per page " input type="number" name="limit" min="1" max="1000" value=(params.limit); }
            " "
            button type="submit" { "Filter" }
        }
        table #tasks {
            thead { tr {
                th { "id" } th { "queue" } th { "name" } th { "status" } th.num { "runs" }
                th { "updated (UTC)" } th { "error" }
            } }
            tbody {
                @for t in &page.items {
                    tr {
                        td.id { a href=(format!("/tasks/{}", t.id)) { (t.id) } }
                        td { (t.queue) }
                        td { (ellipsize(&t.func_path, 40)) }
                        td { span class=(format!("status {}", t.status)) { (t.status) } }
                        td.num { (t.attempts) "/" (u64::from(t.max_retries) + 1) }
                        td.nowrap { (short_time(t.updated_at)) }
                        td { @if let Some(e) = &t.error { (ellipsize(&format!("{}: {}", e.error_type, e.message), 60)) } }
                    }
                }
                @if page.items.is_empty() {
                    tr { td colspan="7" { "No tasks match." } }
                }
            }
        }
        nav.pager {
            @if params.cursor.is_some() {
                a #first-page href=(params.href(None)) { "First page" }
                " "
            }
            @if let Some(next) = &page.next_cursor {
                a #next-page href=(params.href(Some(&next.0.to_string()))) { "Next page" }
            }
        }
    }
}

fn payload_block(id: &str, decoded: &Decoded) -> Markup {
    html! {
        p.muted { "encoding: " (decoded.encoding()) }
        pre id=(id) { (decoded.pretty()) }
    }
}

fn error_block(id: &str, e: &TaskError) -> Markup {
    html! {
        dl.fields id=(id) {
            dt { "type" } dd { (e.error_type) }
            dt { "category" } dd.category { (serde_plain(&e.category)) }
            dt { "severity" } dd { (serde_plain(&e.severity)) }
            dt { "message" } dd.message { (e.message) }
            dt { "at" } dd { (rfc3339(e.timestamp)) }
            dt { "retryable" } dd {
                (if e.is_retryable { "yes" } else { "no" })
                " (retry " (e.retry_count) " of " (e.max_retries) ")"
            }
            @if let Some(x) = &e.exception_type { dt { "exception" } dd { (x) } }
        }
        @if !e.context.is_empty() {
            h3 { "Context" }
            pre.context { (serde_json::to_string_pretty(&e.context).unwrap_or_default()) }
        }
        @if let Some(tb) = &e.traceback {
            h3 { "Traceback" }
            pre.traceback { (tb) }
        }
    }
}

pub(crate) fn task_page(
    task: &Task,
    result: Option<&TaskResult>,
    format: Format,
    csrf: &str,
) -> Markup {
    let opt = |t: Option<time::OffsetDateTime>| t.map(rfc3339).unwrap_or_else(|| "—".into());
    let can_retry = task.status == TaskStatus::Failed;
    let can_cancel = !task.status.is_terminal();
    html! {
        h1 { "Task " span.id { (task.id) } }
        p { span #status class=(format!("status {}", task.status)) { (task.status) } }
        div.actions {
            @if can_retry {
                form method="post" action=(format!("/tasks/{}/retry", task.id)) {
                    input type="hidden" name="csrf" value=(csrf);
                    button #retry type="submit" { "Retry now" }
                }
            }
            @if can_cancel {
                form method="post" action=(format!("/tasks/{}/cancel", task.id)) {
                    input type="hidden" name="csrf" value=(csrf);
                    button #cancel type="submit" { "Cancel" }
                }
            }
        }
        dl.fields {
            dt { "name" } dd #name { (task.func_path) }
            dt { "queue" } dd { a href=(format!("/tasks?queue={}", task.queue)) { (task.queue) } }
            dt { "priority" } dd { (task.priority) }
            dt { "attempts" } dd #attempts { (task.attempts) " (max retries " (task.max_retries) ")" }
            dt { "created" } dd { (rfc3339(task.created_at)) }
            dt { "updated" } dd { (rfc3339(task.updated_at)) }
            dt { "eta" } dd { (opt(task.schedule.eta)) }
            dt { "last attempt" } dd { (opt(task.last_attempt_at)) }
            dt { "interval" } dd { (task.schedule.interval.map(human_duration).unwrap_or_else(|| "—".into())) }
            dt { "timeout" } dd { (task.timeout.map(human_duration).unwrap_or_else(|| "—".into())) }
            dt { "unique key" } dd { (task.unique_key.as_deref().unwrap_or("—")) }
            @if let Some(b) = &task.backoff { dt { "backoff" } dd { (format!("{b:?}")) } }
        }
        h2 { "Arguments" }
        (payload_block("args", &decode_payload(&task.args, format)))
        @if let Some(e) = &task.error {
            h2 { "Error" }
            (error_block("error", e))
        }
        h2 { "Result" }
        @match result {
            None => p.muted #result { "None: no run has finished, or it was purged." },
            Some(r) => {
                dl.fields #result {
                    dt { "status" } dd { (r.status) }
                    dt { "finished" } dd { (rfc3339(r.finished_at)) }
                    dt { "attempts" } dd { (r.attempts) }
                    dt { "last attempt" } dd { (opt(r.last_attempt_at)) }
                }
                @if let Some(p) = &r.result {
                    h3 { "Value" }
                    (payload_block("result-value", &decode_payload(p, format)))
                }
                @if let Some(e) = &r.error {
                    @if task.error.as_ref() != Some(e) {
                        h3 { "Error of this run" }
                        (error_block("result-error", e))
                    }
                }
            }
        }
    }
}

pub(crate) fn login(csrf: &str, next: &str, failed: bool) -> Markup {
    html! {
        h1 { "Sign in" }
        @if failed { p.error { "That token is not right." } }
        form method="post" action="/login" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="next" value=(next);
            label { "Dashboard token (OMNIQ_DASHBOARD_TOKEN) "
                input #token type="password" name="token" autocomplete="current-password" autofocus;
            }
            " "
            button #sign-in type="submit" { "Sign in" }
        }
    }
}

pub(crate) const STYLE: &str = r#"
:root { color-scheme: light; --fg: #1d2330; --muted: #687083; --line: #dde1e8; --accent: #3558d6; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: #f6f7f9; }
header { display: flex; gap: 1.5rem; align-items: center; padding: .7rem 1.5rem; background: #1d2330; color: #fff; }
header a { color: #fff; text-decoration: none; }
header nav a { margin-right: 1rem; opacity: .85; }
header .brand { font-weight: 700; font-size: 1.1rem; }
header .backend { margin-left: auto; font-family: ui-monospace, monospace; font-size: 12px; opacity: .8; }
main { padding: 1rem 1.5rem 3rem; max-width: 1100px; }
h1 { font-size: 1.4rem; margin: .5rem 0 1rem; }
h2 { font-size: 1.1rem; margin: 1.6rem 0 .6rem; }
h3 { font-size: 1rem; margin: 1rem 0 .4rem; }
table { border-collapse: collapse; background: #fff; border: 1px solid var(--line); }
th, td { padding: .35rem .7rem; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
td.id, span.id { font-family: ui-monospace, monospace; font-size: 12px; }
td.id, td.nowrap { white-space: nowrap; }
a { color: var(--accent); }
pre { background: #fff; border: 1px solid var(--line); padding: .6rem .8rem; overflow: auto; white-space: pre-wrap; word-break: break-word; }
dl.fields { display: grid; grid-template-columns: 9rem 1fr; gap: .2rem 1rem; background: #fff; border: 1px solid var(--line); padding: .6rem .8rem; }
dl.fields dt { color: var(--muted); }
dl.fields dd { margin: 0; }
.muted { color: var(--muted); }
.flash { background: #e6f4ea; border: 1px solid #b7dfc2; padding: .5rem .8rem; }
.error { background: #fdecea; border: 1px solid #f5c2bd; padding: .5rem .8rem; }
.actions { display: flex; gap: 1rem; flex-wrap: wrap; margin: .5rem 0 1rem; }
.actions form, form.filters { background: #fff; border: 1px solid var(--line); padding: .5rem .8rem; }
form.inline { display: inline; }
button { font: inherit; padding: .25rem .8rem; border: 1px solid #b9c0cc; border-radius: 4px; background: #fff; cursor: pointer; }
button.link { border: 0; background: none; color: #fff; opacity: .85; padding: 0; }
.status { padding: .05rem .45rem; border-radius: 3px; font-size: 12px; }
.status.pending { background: #eef1fb; } .status.running { background: #fff4d6; }
.status.success { background: #e6f4ea; } .status.failed { background: #fdecea; } .status.cancelled { background: #eceff3; }
figure.chart { margin: 0; background: #fff; border: 1px solid var(--line); padding: .6rem; display: inline-block; max-width: 622px; }
figure.chart svg { display: block; }
figure.chart figcaption { color: var(--muted); font-size: 12px; margin-top: .3rem; }
line.axis { stroke: var(--line); }
polyline.pending { stroke: #3558d6; } polyline.running { stroke: #d99a00; } polyline.success { stroke: #2e9e55; }
polyline.failed { stroke: #d2382b; } polyline.cancelled { stroke: #8a93a3; }
.key::before { content: "■ "; } .key.pending::before { color: #3558d6; } .key.running::before { color: #d99a00; }
.key.success::before { color: #2e9e55; } .key.failed::before { color: #d2382b; } .key.cancelled::before { color: #8a93a3; }
#samples { margin-top: .8rem; font-size: 12px; }
nav.pager { margin-top: .8rem; }
"#;
