//! The read and write commands: stats, list, show, retry, cancel, purge, enqueue.

use crate::cli::{CancelArgs, EnqueueArgs, ListArgs, PurgeArgs, RetryArgs, ShowArgs, StatsArgs};
use crate::connect::Target;
use crate::error::{CliError, CliResult, Exit};
use crate::view::{
    ResultView, TaskView, decode_payload, ellipsize, human_duration, rfc3339, short_time,
};
use omniq::{
    AsyncOmniQ, CancelOutcome, Cursor, Format, QueueCounts, Settings, Storage, Task, TaskFilter,
    TaskId, TaskResult, TaskStatus,
};
use serde_json::json;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use time::OffsetDateTime;

/// An opened storage with the settings it was built from.
pub(crate) struct Ctx {
    pub(crate) target: Target,
    pub(crate) settings: Settings,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) json: bool,
}

impl Ctx {
    pub(crate) async fn open(target: Target, json: bool) -> CliResult<Self> {
        let settings = target.settings()?;
        let storage = target.open().await?;
        Ok(Self {
            target,
            settings,
            storage,
            json,
        })
    }

    fn format(&self) -> Format {
        self.settings.serializer
    }

    /// Closes the storage (flushes what a backend buffers).
    pub(crate) async fn close(&self) -> CliResult<()> {
        self.storage
            .close()
            .await
            .map_err(|e| CliError::storage("closing the storage", &e))
    }

    async fn task(&self, id: &TaskId) -> CliResult<Task> {
        match self.storage.get_task(id).await {
            Ok(Some(t)) => Ok(t),
            Ok(None) => Err(CliError::new(
                Exit::NotFound,
                format!("task {id} not found in {}", self.target.describe()),
            )),
            Err(e) => Err(CliError::storage(&format!("reading task {id}"), &e)),
        }
    }
}

fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`omniq list | head`) is not an error worth reporting.
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

fn out_json(value: &serde_json::Value) {
    out(&format!("{value}\n"));
}

/// A plain-text table: the first row is the header; `right` marks right-aligned columns.
pub(crate) fn table(rows: &[Vec<String>], right: &[bool]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c].saturating_sub(cell.chars().count());
            if c > 0 {
                line.push_str("  ");
            }
            if right.get(c).copied().unwrap_or(false) {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if c + 1 < row.len() {
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

/// The counts table with a TOTAL row when there is more than one queue.
pub(crate) fn counts_table(counts: &[QueueCounts]) -> String {
    let mut rows = vec![
        [
            "QUEUE",
            "PENDING",
            "RUNNING",
            "SUCCESS",
            "FAILED",
            "CANCELLED",
            "TOTAL",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>(),
    ];
    let mut total = QueueCounts {
        queue: "TOTAL".into(),
        ..QueueCounts::default()
    };
    for c in counts {
        for status in TaskStatus::ALL {
            total.add(status, c.get(status));
        }
        rows.push(counts_row(c));
    }
    if counts.len() > 1 {
        rows.push(counts_row(&total));
    }
    let mut s = table(&rows, &[false, true, true, true, true, true, true]);
    if counts.is_empty() {
        s.push_str("(no tasks)\n");
    }
    s
}

fn counts_row(c: &QueueCounts) -> Vec<String> {
    let mut row = vec![c.queue.clone()];
    row.extend(TaskStatus::ALL.iter().map(|s| c.get(*s).to_string()));
    row.push(c.total().to_string());
    row
}

pub(crate) fn counts_json(counts: &[QueueCounts]) -> serde_json::Value {
    let one = |c: &QueueCounts| {
        json!({
            "queue": c.queue,
            "pending": c.pending,
            "running": c.running,
            "success": c.success,
            "failed": c.failed,
            "cancelled": c.cancelled,
            "total": c.total(),
        })
    };
    let mut total = QueueCounts {
        queue: "*".into(),
        ..QueueCounts::default()
    };
    for c in counts {
        for status in TaskStatus::ALL {
            total.add(status, c.get(status));
        }
    }
    let mut total = one(&total);
    if let Some(obj) = total.as_object_mut() {
        obj.remove("queue");
    }
    json!({
        "at": rfc3339(OffsetDateTime::now_utc()),
        "queues": counts.iter().map(one).collect::<Vec<_>>(),
        "total": total,
    })
}

pub(crate) async fn stats(ctx: &Ctx, args: &StatsArgs) -> CliResult<()> {
    let read = || async {
        ctx.storage
            .counts(args.queue.as_deref())
            .await
            .map_err(|e| CliError::storage("reading counts", &e))
    };
    if !args.watch {
        let counts = read().await?;
        if ctx.json {
            out_json(&counts_json(&counts));
        } else {
            out(&counts_table(&counts));
        }
        return Ok(());
    }
    let tty = std::io::stdout().is_terminal();
    let mut shown = 0u64;
    let mut ticker = tokio::time::interval(args.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let counts = read().await?;
        if ctx.json {
            // One JSON document per line (NDJSON), for `| jq`.
            out_json(&counts_json(&counts));
        } else {
            let mut s = String::new();
            if tty {
                s.push_str("\x1b[2J\x1b[H");
            }
            let _ = writeln!(
                s,
                "{} — every {} — Ctrl-C to stop",
                short_time(OffsetDateTime::now_utc()),
                humantime::format_duration(args.interval)
            );
            s.push_str(&counts_table(&counts));
            if !tty {
                s.push('\n');
            }
            out(&s);
        }
        shown += 1;
        if args.iterations.is_some_and(|n| shown >= n) {
            return Ok(());
        }
    }
}

pub(crate) async fn list(ctx: &Ctx, args: &ListArgs) -> CliResult<()> {
    let filter = TaskFilter {
        status: args.status,
        queue: args.queue.clone(),
        limit: args.limit as usize,
        cursor: args.cursor.map(Cursor),
    };
    let page = ctx
        .storage
        .list_tasks(filter)
        .await
        .map_err(|e| CliError::storage("listing tasks", &e))?;
    let next = page.next_cursor.as_ref().map(|c| c.0.to_string());
    if ctx.json {
        let tasks: Vec<_> = page
            .items
            .iter()
            .map(|t| TaskView::new(t, ctx.format()))
            .collect();
        out_json(&json!({ "tasks": tasks, "next_cursor": next }));
        return Ok(());
    }
    let mut rows = vec![
        [
            "ID",
            "QUEUE",
            "NAME",
            "STATUS",
            "RUNS",
            "UPDATED (UTC)",
            "ERROR",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>(),
    ];
    for t in &page.items {
        rows.push(vec![
            t.id.to_string(),
            t.queue.clone(),
            ellipsize(&t.func_path, 40),
            t.status.to_string(),
            format!("{}/{}", t.attempts, u64::from(t.max_retries) + 1),
            short_time(t.updated_at),
            t.error
                .as_ref()
                .map(|e| ellipsize(&format!("{}: {}", e.error_type, e.message), 60))
                .unwrap_or_default(),
        ]);
    }
    let mut s = table(&rows, &[false, false, false, false, true, false, false]);
    if page.items.is_empty() {
        s.push_str("(no tasks)\n");
    }
    if let Some(next) = next {
        let _ = writeln!(s, "more: add --cursor {next} for the next page");
    }
    out(&s);
    Ok(())
}

pub(crate) async fn show(ctx: &Ctx, args: &ShowArgs) -> CliResult<()> {
    let task = ctx.task(&args.id).await?;
    let result = ctx
        .storage
        .get_result(&args.id)
        .await
        .map_err(|e| CliError::storage(&format!("reading the result of {}", args.id), &e))?;
    if ctx.json {
        out_json(&json!({
            "task": TaskView::new(&task, ctx.format()),
            "result": result.as_ref().map(|r| ResultView::new(r, ctx.format())),
        }));
        return Ok(());
    }
    out(&show_text(&task, result.as_ref(), ctx.format()));
    Ok(())
}

fn show_text(task: &Task, result: Option<&TaskResult>, format: Format) -> String {
    let mut s = String::new();
    let field = |s: &mut String, k: &str, v: &str| {
        let _ = writeln!(s, "  {k:<14}{v}");
    };
    let opt = |t: Option<OffsetDateTime>| t.map(rfc3339).unwrap_or_else(|| "-".into());
    let _ = writeln!(s, "Task {}", task.id);
    field(&mut s, "name", &task.func_path);
    field(&mut s, "queue", &task.queue);
    field(&mut s, "status", task.status.as_str());
    field(&mut s, "priority", &task.priority.to_string());
    field(
        &mut s,
        "attempts",
        &format!("{} (max retries {})", task.attempts, task.max_retries),
    );
    field(&mut s, "created", &rfc3339(task.created_at));
    field(&mut s, "updated", &rfc3339(task.updated_at));
    field(&mut s, "eta", &opt(task.schedule.eta));
    field(&mut s, "last attempt", &opt(task.last_attempt_at));
    field(
        &mut s,
        "interval",
        &task
            .schedule
            .interval
            .map(human_duration)
            .unwrap_or_else(|| "-".into()),
    );
    field(
        &mut s,
        "timeout",
        &task
            .timeout
            .map(human_duration)
            .unwrap_or_else(|| "-".into()),
    );
    field(
        &mut s,
        "unique key",
        task.unique_key.as_deref().unwrap_or("-"),
    );
    if let Some(b) = &task.backoff {
        field(&mut s, "backoff", &format!("{b:?}"));
    }
    let args = decode_payload(&task.args, format);
    let _ = writeln!(s, "  args ({})", args.encoding());
    push_indented(&mut s, &args.pretty(), 4);
    if let Some(e) = &task.error {
        s.push_str("Error\n");
        error_text(&mut s, e);
    }
    match result {
        None => s.push_str("Result\n  (none: no run has finished, or it was purged)\n"),
        Some(r) => {
            s.push_str("Result\n");
            field(&mut s, "status", r.status.as_str());
            field(&mut s, "finished", &rfc3339(r.finished_at));
            field(&mut s, "attempts", &r.attempts.to_string());
            field(&mut s, "last attempt", &opt(r.last_attempt_at));
            if let Some(p) = &r.result {
                let v = decode_payload(p, format);
                let _ = writeln!(s, "  value ({})", v.encoding());
                push_indented(&mut s, &v.pretty(), 4);
            }
            if let Some(e) = &r.error {
                if task.error.as_ref() != Some(e) {
                    s.push_str("  error\n");
                    error_text(&mut s, e);
                } else {
                    s.push_str("  error         (the task's error above)\n");
                }
            }
        }
    }
    s
}

fn error_text(s: &mut String, e: &omniq::TaskError) {
    let _ = writeln!(s, "  {:<14}{}", "type", e.error_type);
    let _ = writeln!(s, "  {:<14}{}", "category", serde_plain(&e.category));
    let _ = writeln!(s, "  {:<14}{}", "severity", serde_plain(&e.severity));
    let _ = writeln!(s, "  {:<14}{}", "message", e.message);
    let _ = writeln!(s, "  {:<14}{}", "at", rfc3339(e.timestamp));
    let _ = writeln!(
        s,
        "  {:<14}{} (retry {} of {})",
        "retryable",
        if e.is_retryable { "yes" } else { "no" },
        e.retry_count,
        e.max_retries
    );
    if let Some(x) = &e.exception_type {
        let _ = writeln!(s, "  {:<14}{x}", "exception");
    }
    if !e.context.is_empty() {
        s.push_str("  context\n");
        let ctx = serde_json::to_string_pretty(&e.context).unwrap_or_default();
        push_indented(s, &ctx, 4);
    }
    if let Some(tb) = &e.traceback {
        s.push_str("  traceback\n");
        push_indented(s, tb, 4);
    }
}

/// A unit enum's serde name (`application`).
pub(crate) fn serde_plain<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

fn push_indented(s: &mut String, text: &str, by: usize) {
    for line in text.lines() {
        let _ = writeln!(s, "{}{line}", " ".repeat(by));
    }
    if text.is_empty() {
        let _ = writeln!(s, "{}(empty)", " ".repeat(by));
    }
}

/// Why a task cannot be retried by hand, or None when it can (it is Failed).
pub(crate) fn retry_refusal(task: &Task) -> Option<String> {
    match task.status {
        TaskStatus::Failed => None,
        TaskStatus::Pending | TaskStatus::Running => Some(format!(
            "task {} is {}: only failed tasks are retried by hand (it will run anyway)",
            task.id, task.status
        )),
        TaskStatus::Success | TaskStatus::Cancelled => Some(format!(
            "task {} is {}: only failed tasks are retried by hand (it has finished; enqueue a new task to run it again)",
            task.id, task.status
        )),
    }
}

/// Retries one failed task now.
pub(crate) async fn retry_one(storage: &dyn Storage, task: &Task) -> CliResult<()> {
    if let Some(why) = retry_refusal(task) {
        return Err(CliError::new(Exit::Conflict, why));
    }
    let now = OffsetDateTime::now_utc();
    storage
        .reschedule(&task.id, now, now)
        .await
        .map_err(|e| CliError::storage(&format!("retrying task {}", task.id), &e))
}

/// Retries every failed task (of `queue`); returns the ids retried and the failures.
pub(crate) async fn retry_failed(
    storage: &dyn Storage,
    queue: Option<&str>,
) -> CliResult<(Vec<TaskId>, Vec<CliError>)> {
    let mut done = Vec::new();
    let mut failed = Vec::new();
    let mut cursor = None;
    loop {
        let page = storage
            .list_tasks(TaskFilter {
                status: Some(TaskStatus::Failed),
                queue: queue.map(str::to_string),
                limit: 500,
                cursor: cursor.take(),
            })
            .await
            .map_err(|e| CliError::storage("listing failed tasks", &e))?;
        for task in &page.items {
            match retry_one(storage, task).await {
                Ok(()) => done.push(task.id),
                Err(e) => failed.push(e),
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok((done, failed))
}

pub(crate) async fn retry(ctx: &Ctx, args: &RetryArgs) -> CliResult<()> {
    if let Some(id) = &args.id {
        let task = ctx.task(id).await?;
        retry_one(ctx.storage.as_ref(), &task).await?;
        if ctx.json {
            out_json(&json!({ "retried": [id.to_string()], "count": 1, "errors": [] }));
        } else {
            out(&format!(
                "task {id} will run again: pending now ({} attempt(s) so far)\n",
                task.attempts
            ));
        }
        return Ok(());
    }
    let (done, failed) = retry_failed(ctx.storage.as_ref(), args.queue.as_deref()).await?;
    if ctx.json {
        out_json(&json!({
            "retried": done.iter().map(|id| id.to_string()).collect::<Vec<_>>(),
            "count": done.len(),
            "errors": failed.iter().map(|e| e.message.clone()).collect::<Vec<_>>(),
        }));
    } else {
        let scope = args
            .queue
            .as_deref()
            .map(|q| format!(" in queue {q}"))
            .unwrap_or_default();
        out(&format!("retried {} failed task(s){scope}\n", done.len()));
    }
    match failed.into_iter().next() {
        None => Ok(()),
        Some(first) => Err(CliError::new(
            first.exit,
            format!(
                "some failed tasks could not be retried; first: {}",
                first.message
            ),
        )),
    }
}

/// What a cancel did, in words.
pub(crate) fn cancel_words(id: &TaskId, outcome: CancelOutcome) -> CliResult<String> {
    match outcome {
        CancelOutcome::Cancelled => Ok(format!("task {id} cancelled")),
        CancelOutcome::Requested => Ok(format!(
            "task {id} is running: cancellation requested; its worker will stop it"
        )),
        CancelOutcome::AlreadyFinished(status) => Err(CliError::new(
            Exit::Conflict,
            format!("task {id} already finished ({status}); nothing changed"),
        )),
    }
}

pub(crate) async fn cancel(ctx: &Ctx, args: &CancelArgs) -> CliResult<()> {
    let outcome = ctx
        .storage
        .cancel(&args.id, OffsetDateTime::now_utc())
        .await
        .map_err(|e| match e.kind() {
            omniq::StorageErrorKind::NotFound => CliError::new(
                Exit::NotFound,
                format!("task {} not found in {}", args.id, ctx.target.describe()),
            ),
            _ => CliError::storage(&format!("cancelling task {}", args.id), &e),
        })?;
    let words = cancel_words(&args.id, outcome)?;
    if ctx.json {
        let outcome = match outcome {
            CancelOutcome::Cancelled => "cancelled",
            _ => "requested",
        };
        out_json(&json!({ "id": args.id.to_string(), "outcome": outcome }));
    } else {
        out(&format!("{words}\n"));
    }
    Ok(())
}

/// The purge cutoff for "older than `d`".
pub(crate) fn cutoff(d: std::time::Duration) -> CliResult<OffsetDateTime> {
    let d = time::Duration::try_from(d)
        .map_err(|_| CliError::new(Exit::Usage, "--older-than is too long"))?;
    OffsetDateTime::now_utc()
        .checked_sub(d)
        .ok_or_else(|| CliError::new(Exit::Usage, "--older-than is too long"))
}

pub(crate) async fn purge(ctx: &Ctx, args: &PurgeArgs) -> CliResult<()> {
    let cutoff = cutoff(args.older_than)?;
    let n = ctx
        .storage
        .purge_results(cutoff)
        .await
        .map_err(|e| CliError::storage("purging results", &e))?;
    if ctx.json {
        out_json(&json!({ "purged_results": n, "cutoff": rfc3339(cutoff) }));
    } else {
        out(&format!(
            "purged {n} result(s) that finished before {} UTC, with the finished tasks last changed before then\n",
            short_time(cutoff)
        ));
    }
    Ok(())
}

pub(crate) async fn enqueue(ctx: &Ctx, args: &EnqueueArgs) -> CliResult<()> {
    let value: serde_json::Value = serde_json::from_str(&args.args).map_err(|e| {
        CliError::new(
            Exit::Usage,
            format!(
                "--args is not valid JSON: {e} (e.g. --args '[2, 3]' or --args '{{\"to\": \"a@example.com\"}}')"
            ),
        )
    })?;
    let omniq = AsyncOmniQ::with_storage(ctx.settings.clone(), ctx.storage.clone());
    // The queue encodes the JSON value with the storage's serializer (MessagePack by
    // default), exactly as an application's `enqueue(name, &args)` would.
    let mut b = omniq.enqueue(&args.name, &value).priority(args.priority);
    if let Some(q) = &args.queue {
        b = b.queue(q.clone());
    }
    if let Some(d) = args.delay {
        b = b.delay(d);
    }
    if let Some(n) = args.max_retries {
        b = b.max_retries(n);
    }
    if let Some(k) = &args.unique_key {
        b = b.unique_key(k.clone());
    }
    if let Some(t) = args.timeout {
        b = b.timeout(t);
    }
    let enq = b
        .send()
        .await
        .map_err(|e| CliError::runtime(&format!("enqueueing {}", args.name), &e))?;
    if ctx.json {
        out_json(&json!({ "id": enq.id.to_string(), "duplicate": enq.duplicate }));
    } else {
        out(&format!("{}\n", enq.id));
        if enq.duplicate {
            eprintln!(
                "note: a live task with this unique key already exists; that is its id (nothing new was enqueued)"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_table_aligns_and_totals() {
        let counts = vec![
            QueueCounts {
                queue: "default".into(),
                pending: 3,
                success: 10,
                ..Default::default()
            },
            QueueCounts {
                queue: "mail".into(),
                running: 1,
                failed: 12,
                ..Default::default()
            },
        ];
        let t = counts_table(&counts);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "QUEUE    PENDING  RUNNING  SUCCESS  FAILED  CANCELLED  TOTAL"
        );
        assert_eq!(
            lines[1],
            "default        3        0       10       0          0     13"
        );
        assert_eq!(
            lines[3],
            "TOTAL          3        1       10      12          0     26"
        );
        assert!(counts_table(&[]).contains("(no tasks)"));
    }
}
