//! omniq::logging (L1–L6): real output captured through in-memory and file writers; no test
//! here installs a global subscriber.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read as _, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use omniq::logging::{
    self, LogConfig, LogLevel, LogMode, LoggingError, bind_task, log_serialization_error,
    log_storage_error, log_task_completed, log_task_enqueued, log_task_failed, log_task_retry,
    log_task_started, log_worker_started, log_worker_stopped, task_context,
    task_context_with_correlation,
};
use regex::Regex;
use serde_json::Value;
use tracing_subscriber::fmt::MakeWriter;

/// An in-memory `MakeWriter`: every writer appends to one shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("log output is UTF-8")
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

fn dev() -> LogConfig {
    LogConfig::default()
        .with_mode(LogMode::Dev)
        .with_ansi(Some(false))
}

fn prod() -> LogConfig {
    LogConfig::default().with_mode(LogMode::Prod)
}

/// Runs `f` with `config`'s subscriber as the thread's default; returns what it wrote.
fn capture(config: &LogConfig, f: impl FnOnce()) -> String {
    let sink = Capture::default();
    tracing::subscriber::with_default(config.build_subscriber(sink.clone()), f);
    sink.text()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect()
}

fn with_message<'a>(lines: &'a [Value], message: &str) -> &'a Value {
    lines
        .iter()
        .find(|line| line["message"] == message)
        .unwrap_or_else(|| panic!("no line with message {message:?} in {lines:#?}"))
}

fn env(vars: &[(&str, &str)]) -> impl FnMut(&str) -> Option<OsString> {
    let vars: HashMap<String, OsString> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
    move |name| vars.get(name).cloned()
}

// ---------------------------------------------------------------- L1

#[test]
fn library_calls_install_no_global_subscriber() {
    log_task_enqueued("t-1", "module.function");
    task_context("t-1", "process").finish();
    bind_task(Some("t-1"), &[("worker", &"w-1")]).in_scope(|| tracing::info!("inside"));
    // A fresh thread has no scoped default, so it sees the global one: still the no-op.
    let global_is_noop = std::thread::spawn(|| {
        tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>())
    })
    .join()
    .unwrap();
    assert!(global_is_noop, "a global subscriber was installed");
}

// ---------------------------------------------------------------- L3 DEV

#[test]
fn dev_line_has_guide_layout_and_bound_fields_below() {
    let out = capture(&dev(), || {
        let worker = bind_task(None, &[("worker", &"worker-1")]);
        let _w = worker.enter();
        let ctx = task_context_with_correlation("abc-123", "process_task", "corr-1");
        ctx.in_scope(|| tracing::info!(target: "omniq::worker", "Task execution started"));
        ctx.finish();
    });
    let lines: Vec<&str> = out.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.ends_with("| Task execution started"))
        .unwrap_or_else(|| panic!("no event line in {out}"));
    let layout = Regex::new(
        r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \| INFO     \| omniq::worker:\d+ \| Task execution started$",
    )
    .unwrap();
    assert!(layout.is_match(lines[at]), "{:?}", lines[at]);
    assert_eq!(
        lines[at + 1],
        "└── task_id: abc-123 | operation: process_task | worker: worker-1 | correlation_id: corr-1"
    );
    assert!(!out.contains('\x1b'), "ANSI forced off: {out:?}");
}

#[test]
fn dev_event_without_fields_has_no_field_line_and_levels_pad_to_eight() {
    let out = capture(&dev().with_level(LogLevel::Debug), || {
        tracing::warn!(target: "omniq::queue", "careful");
        tracing::debug!(target: "omniq::queue", "details");
    });
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains(" | WARNING  | omniq::queue:"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(" | DEBUG    | omniq::queue:"),
        "{}",
        lines[1]
    );
}

#[test]
fn dev_colours_only_when_ansi_is_on() {
    let out = capture(
        &dev().with_ansi(Some(true)),
        || tracing::error!(target: "omniq::worker", task_id = "t-9", "boom"),
    );
    assert!(out.contains("\x1b[1;31mERROR   \x1b[0m"), "{out:?}");
    assert!(out.contains("└── task_id: t-9"), "{out:?}");
}

#[test]
fn dev_escapes_control_characters_in_values() {
    let out = capture(
        &dev(),
        || tracing::info!(target: "omniq::worker", user = "\x1b[31mred", "msg\x07"),
    );
    assert!(!out.contains('\x1b') && !out.contains('\x07'), "{out:?}");
    assert!(out.contains("\\u{1b}[31mred"), "{out:?}");
}

#[test]
fn critical_marker_shows_critical_level_in_both_modes() {
    let emit = || tracing::error!(target: "omniq::worker", critical = true, "disk gone");
    let out = capture(&dev().with_level(LogLevel::Critical), emit);
    assert!(out.contains(" | CRITICAL | omniq::worker:"), "{out}");
    assert!(!out.contains("critical: true"), "{out}");

    let lines = json_lines(&capture(&prod().with_level(LogLevel::Critical), emit));
    assert_eq!(lines[0]["level"], "CRITICAL");
    assert!(lines[0].get("critical").is_none());
}

// ---------------------------------------------------------------- L3 PROD / L5

#[test]
fn prod_json_in_task_context_has_every_required_key() {
    let out = capture(&prod(), || {
        let worker = bind_task(None, &[("worker", &"worker-1")]);
        let _w = worker.enter();
        let ctx = task_context_with_correlation("abc-123", "process_task", "corr-1");
        ctx.in_scope(
            || tracing::info!(target: "omniq::worker", records = 10, "Task execution started"),
        );
        ctx.finish();
    });
    let lines = json_lines(&out);
    let line = with_message(&lines, "Task execution started");
    let timestamp = Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$").unwrap();
    assert!(
        timestamp.is_match(line["timestamp"].as_str().unwrap()),
        "{line}"
    );
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["logger"], "omniq::worker");
    assert_eq!(line["task_id"], "abc-123");
    assert_eq!(line["operation"], "process_task");
    assert_eq!(line["worker"], "worker-1");
    assert_eq!(line["correlation_id"], "corr-1");
    assert_eq!(line["records"], 10, "numbers stay numbers");

    let raw = out
        .lines()
        .find(|l| l.contains("Task execution started"))
        .unwrap();
    let order = Regex::new(
        r#"^\{"timestamp":"[^"]+","level":"INFO","logger":"omniq::worker","message":"Task execution started","task_id":"abc-123","operation":"process_task","worker":"worker-1","correlation_id":"corr-1","records":10\}$"#,
    )
    .unwrap();
    assert!(order.is_match(raw), "keys in the guide's order: {raw}");

    let started = with_message(&lines, "Task process_task started");
    assert_eq!(started["correlation_id"], "corr-1");
    let completed = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .unwrap()
                .starts_with("Task process_task completed in ")
        })
        .expect("completion line");
    assert!(completed["duration_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(completed["task_id"], "abc-123");
}

#[test]
fn prod_bind_task_fields_are_top_level_keys() {
    let out = capture(&prod(), || {
        let span = bind_task(
            Some("task-456"),
            &[
                ("worker", &"worker-1"),
                ("user_id", &"user-123"),
                ("session", &"session \"abc\"\n"),
                ("attempt", &2),
            ],
        );
        span.in_scope(|| tracing::info!(target: "omniq::worker", "Task started"));
    });
    let lines = json_lines(&out);
    let line = with_message(&lines, "Task started");
    assert_eq!(line["task_id"], "task-456");
    assert_eq!(line["worker"], "worker-1");
    assert_eq!(line["user_id"], "user-123");
    assert_eq!(line["session"], "session \"abc\"\n");
    assert_eq!(line["attempt"], "2");
    let correlation = line["correlation_id"].as_str().unwrap();
    let uuid = uuid::Uuid::parse_str(correlation).unwrap();
    assert_eq!(uuid.get_version_num(), 7);
    assert!(line.get("bound").is_none(), "bound is unpacked: {line}");
}

#[test]
fn inner_span_and_event_fields_override_outer_ones() {
    let out = capture(&prod(), || {
        let outer = bind_task(
            Some("outer"),
            &[("user_id", &"u-outer"), ("correlation_id", &"c-1")],
        );
        let _o = outer.enter();
        let inner = bind_task(None, &[("user_id", &"u-inner")]);
        let _i = inner.enter();
        tracing::info!(target: "omniq::worker", task_id = "event", level = "shadow", "hi");
    });
    let lines = json_lines(&out);
    assert_eq!(lines[0]["task_id"], "event");
    assert_eq!(lines[0]["user_id"], "u-inner");
    assert_eq!(lines[0]["correlation_id"], "c-1");
    assert_eq!(lines[0]["level"], "INFO");
    assert_eq!(lines[0]["field_level"], "shadow");
}

#[test]
fn prod_json_escapes_odd_values_and_keeps_numbers_typed() {
    let odd = "quote \" backslash \\ nl \n cr \r tab \t bell \u{7} del \u{7f} é 🚀 </script>";
    let out = capture(&prod(), || {
        let span = tracing::info_span!(target: "omniq::worker", "odd", span_text = %odd);
        let _s = span.enter();
        tracing::info!(
            target: "omniq::worker",
            text = %odd,
            debug_text = ?"dbg \"q\"",
            negative = -42i64,
            big = u64::MAX,
            ratio = 0.5f64,
            not_a_number = f64::NAN,
            yes = true,
            "message with {odd}"
        );
    });
    let raw = out.lines().next().expect("one line");
    assert!(!raw.contains('\u{7}') && !raw.contains('\u{7f}'), "{raw:?}");
    assert_eq!(out.lines().count(), 1, "the newline stays escaped: {out:?}");
    let lines = json_lines(&out);
    let line = &lines[0];
    assert_eq!(line["text"], odd);
    assert_eq!(line["span_text"], odd);
    assert_eq!(line["message"], format!("message with {odd}"));
    assert_eq!(line["debug_text"], "\"dbg \\\"q\\\"\"");
    assert_eq!(line["negative"], -42);
    assert_eq!(line["big"], u64::MAX);
    assert_eq!(line["ratio"], 0.5);
    assert_eq!(line["not_a_number"], "NaN");
    assert_eq!(line["yes"], true);
}

#[test]
fn nested_spans_merge_from_the_root_and_the_inner_value_wins_while_entered() {
    let out = capture(&prod(), || {
        let ctx = task_context_with_correlation("t-n", "outer-op", "c-n");
        ctx.in_scope(|| {
            let inner = tracing::info_span!(
                target: "omniq::worker",
                "step",
                operation = "inner-op",
                step = 2u64,
            );
            inner.in_scope(|| {
                let innermost = bind_task(None, &[("user_id", &"u-9")]);
                innermost.in_scope(|| tracing::info!(target: "omniq::worker", "deep"));
            });
            tracing::info!(target: "omniq::worker", "back out");
        });
        ctx.finish();
    });
    let lines = json_lines(&out);
    let deep = with_message(&lines, "deep");
    assert_eq!(deep["task_id"], "t-n");
    assert_eq!(deep["correlation_id"], "c-n");
    assert_eq!(deep["operation"], "inner-op");
    assert_eq!(deep["step"], 2);
    assert_eq!(deep["user_id"], "u-9");
    let raw = out.lines().find(|l| l.contains("\"deep\"")).unwrap();
    let order = Regex::new(
        r#""message":"deep","task_id":"t-n","operation":"inner-op","correlation_id":"c-n","step":2,"user_id":"u-9"\}$"#,
    )
    .unwrap();
    assert!(order.is_match(raw), "{raw}");
    let back = with_message(&lines, "back out");
    assert_eq!(back["operation"], "outer-op");
    assert!(back.get("step").is_none(), "{back}");
    assert!(back.get("user_id").is_none(), "{back}");
}

/// Logs while it is being formatted.
struct Chatty;

impl std::fmt::Display for Chatty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        tracing::info!(target: "omniq::worker", inner = "yes", "logged while formatting");
        f.write_str("chatty")
    }
}

#[test]
fn a_value_that_logs_while_it_is_formatted_keeps_the_line_whole() {
    // Under a scoped subscriber tracing itself drops the nested event; the global case,
    // where it is written too, is in logging_global.rs.
    let out = capture(&prod(), || {
        let ctx = task_context_with_correlation("t-c", "process", "c-c");
        ctx.in_scope(|| tracing::info!(target: "omniq::worker", value = %Chatty, "outer event"));
        drop(ctx);
    });
    let lines = json_lines(&out);
    let outer = with_message(&lines, "outer event");
    assert_eq!(outer["value"], "chatty");
    assert_eq!(outer["task_id"], "t-c");
    assert!(outer.get("inner").is_none(), "{outer}");
}

/// Counts the events it sees.
#[derive(Clone, Default)]
struct Counter(Arc<Mutex<usize>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Counter {
    fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        *self.0.lock().unwrap() += 1;
    }
}

#[test]
fn the_layer_filters_only_itself_beside_another_layer() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let sink = Capture::default();
    let counter = Counter::default();
    let subscriber = tracing_subscriber::registry()
        .with(prod().with_level(LogLevel::Warning).layer(sink.clone()))
        .with(counter.clone());
    tracing::subscriber::with_default(subscriber, || {
        let ctx = task_context_with_correlation("t-l", "process", "c-l");
        ctx.in_scope(|| {
            tracing::debug!(target: "omniq::worker", "debug");
            tracing::info!(target: "omniq::worker", "info");
            tracing::warn!(target: "omniq::worker", "warn");
        });
        ctx.finish();
    });
    // The other layer saw everything: started, debug, info, warn, completed.
    assert_eq!(*counter.0.lock().unwrap(), 5);
    let lines = json_lines(&sink.text());
    assert_eq!(lines.len(), 1, "{}", sink.text());
    assert_eq!(lines[0]["message"], "warn");
    assert_eq!(lines[0]["task_id"], "t-l");
}

#[test]
fn debug_events_are_not_written_at_info() {
    let out = capture(&prod(), || {
        let ctx = task_context_with_correlation("t-d", "process", "c-d");
        ctx.in_scope(|| {
            tracing::debug!(target: "omniq::worker", "hidden");
            tracing::trace!(target: "omniq::worker", "hidden too");
            tracing::info!(target: "omniq::worker", "shown");
        });
        ctx.finish();
    });
    assert!(!out.contains("hidden"), "{out}");
    assert!(out.contains("\"shown\""), "{out}");
}

#[test]
fn task_context_fail_logs_error_with_duration() {
    let out = capture(&prod(), || {
        let ctx = task_context("t-1", "process");
        ctx.fail(&"division by zero");
    });
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0]["message"], "Task process started");
    assert_eq!(lines[1]["level"], "ERROR");
    let message = lines[1]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Task process failed after ")
            && message.ends_with("s: division by zero"),
        "{message}"
    );
    assert!(lines[1]["duration_ms"].is_f64());
    assert_eq!(lines[1]["error"], "division by zero");
    assert_eq!(lines[1]["task_id"], "t-1");
    assert_eq!(lines[0]["correlation_id"], lines[1]["correlation_id"]);
}

#[test]
fn task_context_dropped_logs_completion_once() {
    let out = capture(&prod(), || {
        let _ctx = task_context("t-2", "process");
    });
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[1]["message"]
            .as_str()
            .unwrap()
            .starts_with("Task process completed in ")
    );
}

#[test]
fn task_context_run_carries_fields_across_await_and_records_result() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = capture(&prod(), || {
        let ctx = task_context("t-3", "process");
        let result = runtime.block_on(ctx.run(async {
            tokio::task::yield_now().await;
            tracing::info!(target: "omniq::worker", "after await");
            Err::<(), _>("bad input")
        }));
        assert!(result.is_err());
    });
    let lines = json_lines(&out);
    let after = with_message(&lines, "after await");
    assert_eq!(after["task_id"], "t-3");
    assert_eq!(after["operation"], "process");
    let last = lines.last().unwrap();
    assert_eq!(last["level"], "ERROR");
    assert!(last["message"].as_str().unwrap().ends_with("s: bad input"));
}

#[test]
fn warning_level_drops_info_but_keeps_task_fields_on_warnings() {
    let out = capture(&prod().with_level(LogLevel::Warning), || {
        let ctx = task_context("t-4", "process");
        ctx.in_scope(|| {
            tracing::info!(target: "omniq::worker", "hidden");
            tracing::warn!(target: "omniq::worker", "shown");
        });
        ctx.finish();
    });
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["message"], "shown");
    assert_eq!(lines[0]["level"], "WARNING");
    assert_eq!(lines[0]["task_id"], "t-4");
}

// ---------------------------------------------------------------- L6

#[test]
fn event_helpers_use_the_guides_messages_levels_and_fields() {
    let eta = time::macros::datetime!(2025-12-01 10:30:45 UTC);
    let out = capture(&prod(), || {
        log_task_enqueued("task-123", "module.function");
        log_task_started("task-123", 1);
        log_task_completed("task-123", 1, Duration::from_millis(12));
        log_task_failed("task-123", "Error message", true);
        log_task_failed("task-123", "Error message", false);
        log_task_retry("task-123", 2, eta);
        log_worker_started("worker-1", 4);
        log_worker_stopped("worker-1");
        log_storage_error("enqueue", "disk full");
        log_serialization_error("task-123", "bad payload");
    });
    let lines = json_lines(&out);
    let expect = [
        (
            "INFO",
            "omniq::queue",
            "Task enqueued: task-123 -> module.function",
        ),
        (
            "INFO",
            "omniq::worker",
            "Task started: task-123 (attempt 1)",
        ),
        (
            "INFO",
            "omniq::worker",
            "Task completed: task-123 after 1 attempt",
        ),
        (
            "WARNING",
            "omniq::worker",
            "Task failed (will retry): task-123 - Error message",
        ),
        (
            "ERROR",
            "omniq::worker",
            "Task failed (final): task-123 - Error message",
        ),
        (
            "INFO",
            "omniq::worker",
            "Task retry scheduled: task-123 (attempt 2) at 2025-12-01T10:30:45Z",
        ),
        (
            "INFO",
            "omniq::worker",
            "Worker worker-1 started with concurrency: 4",
        ),
        ("INFO", "omniq::worker", "Worker worker-1 stopped"),
        (
            "ERROR",
            "omniq::storage",
            "Storage error during enqueue: disk full",
        ),
        (
            "ERROR",
            "omniq::serialization",
            "Serialization error for task task-123: bad payload",
        ),
    ];
    assert_eq!(lines.len(), expect.len(), "{out}");
    for (line, (level, logger, message)) in lines.iter().zip(expect) {
        assert_eq!(
            (
                line["level"].as_str(),
                line["logger"].as_str(),
                line["message"].as_str()
            ),
            (Some(level), Some(logger), Some(message))
        );
    }
    assert_eq!(lines[0]["task_id"], "task-123");
    assert_eq!(lines[0]["func_path"], "module.function");
    assert_eq!(lines[1]["attempt"], 1);
    assert_eq!(lines[2]["attempts"], 1);
    assert_eq!(lines[2]["duration_ms"], 12.0);
    assert_eq!(lines[3]["will_retry"], true);
    assert_eq!(lines[4]["error"], "Error message");
    assert_eq!(lines[5]["eta"], "2025-12-01T10:30:45Z");
    assert_eq!(lines[6]["worker"], "worker-1");
    assert_eq!(lines[6]["concurrency"], 4);
    assert_eq!(lines[8]["operation"], "enqueue");
    assert_eq!(lines[9]["task_id"], "task-123");
}

// ---------------------------------------------------------------- L2

#[test]
fn env_defaults_match_the_guide() {
    let config = LogConfig::from_env_with(env(&[])).unwrap();
    assert_eq!(config, LogConfig::default());
    assert_eq!(config.level, LogLevel::Info);
    assert_eq!(config.mode, LogMode::Dev);
    assert_eq!(config.file, PathBuf::from("logs/omniq.log"));
    assert_eq!(config.rotation_bytes, 100_000_000);
    assert_eq!(config.retention, Duration::from_secs(30 * 86_400));
    assert!(config.compression);
}

#[test]
fn env_values_are_parsed_case_insensitively() {
    let config = LogConfig::from_env_with(env(&[
        ("OMNIQ_LOG_LEVEL", "debug"),
        ("OMNIQ_LOG_MODE", "prod"),
        ("OMNIQ_LOG_FILE", "/var/log/omniq/app.log"),
        ("OMNIQ_LOG_ROTATION", "50 MB"),
        ("OMNIQ_LOG_RETENTION", "7 days"),
    ]))
    .unwrap();
    assert_eq!(config.level, LogLevel::Debug);
    assert_eq!(config.mode, LogMode::Prod);
    assert_eq!(config.file, PathBuf::from("/var/log/omniq/app.log"));
    assert_eq!(config.rotation_bytes, 50_000_000);
    assert_eq!(config.retention, Duration::from_secs(7 * 86_400));

    let critical = LogConfig::from_env_with(env(&[("OMNIQ_LOG_LEVEL", "Critical")])).unwrap();
    assert_eq!(critical.level, LogLevel::Critical);
    assert_eq!(critical.level.as_tracing_level(), tracing::Level::ERROR);
    let empty = LogConfig::from_env_with(env(&[("OMNIQ_LOG_MODE", " ")])).unwrap();
    assert_eq!(empty.mode, LogMode::Dev, "empty means unset");
}

#[test]
fn sizes_and_retentions_parse_the_guides_strings() {
    assert_eq!(logging::parse_size("10 MB").unwrap(), 10_000_000);
    assert_eq!(logging::parse_size("1 GB").unwrap(), 1_000_000_000);
    assert_eq!(logging::parse_size("500 KB").unwrap(), 500_000);
    assert_eq!(logging::parse_size("500kb").unwrap(), 500_000);
    assert_eq!(logging::parse_size("64 KiB").unwrap(), 65_536);
    assert_eq!(logging::parse_size("1.5 MB").unwrap(), 1_500_000);
    assert_eq!(logging::parse_size("2048").unwrap(), 2048);
    let day = 86_400;
    assert_eq!(
        logging::parse_retention("7 days").unwrap().as_secs(),
        7 * day
    );
    assert_eq!(
        logging::parse_retention("1 week").unwrap().as_secs(),
        7 * day
    );
    assert_eq!(
        logging::parse_retention("2 weeks").unwrap().as_secs(),
        14 * day
    );
    assert_eq!(
        logging::parse_retention("12 hours").unwrap().as_secs(),
        12 * 3_600
    );
    assert_eq!(
        logging::parse_retention("30 Days").unwrap().as_secs(),
        30 * day
    );
    for bad in ["", "MB", "0 MB", "ten MB", "10 parsecs", "-1 MB"] {
        assert!(logging::parse_size(bad).is_err(), "{bad:?}");
    }
    for bad in ["", "days", "0 days", "7 fortnights", "-2 days"] {
        assert!(logging::parse_retention(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn invalid_env_values_name_the_variable_value_and_valid_values() {
    let cases = [
        (
            "OMNIQ_LOG_MODE",
            "LOUD",
            &["OMNIQ_LOG_MODE", "LOUD", "DEV", "PROD"][..],
        ),
        (
            "OMNIQ_LOG_LEVEL",
            "VERBOSE",
            &[
                "OMNIQ_LOG_LEVEL",
                "VERBOSE",
                "DEBUG",
                "INFO",
                "WARNING",
                "ERROR",
                "CRITICAL",
            ][..],
        ),
        (
            "OMNIQ_LOG_ROTATION",
            "huge",
            &["OMNIQ_LOG_ROTATION", "huge", "MB"][..],
        ),
        (
            "OMNIQ_LOG_RETENTION",
            "forever",
            &["OMNIQ_LOG_RETENTION", "forever", "days"][..],
        ),
    ];
    for (variable, value, mentions) in cases {
        let err = LogConfig::from_env_with(env(&[(variable, value)])).unwrap_err();
        assert!(
            matches!(&err, LoggingError::InvalidValue { setting, .. } if *setting == variable),
            "{err:?}"
        );
        let message = err.to_string();
        for word in mentions {
            assert!(message.contains(word), "{message:?} should mention {word}");
        }
    }
}

// ---------------------------------------------------------------- L4

/// Emits `count` PROD events of about 200 bytes through `config`'s real (non-blocking,
/// rotating) writer, then drops the guard to flush.
fn write_through_file_writer(config: &LogConfig, count: usize) {
    let (writer, guard) = config.open_writer().unwrap();
    tracing::subscriber::with_default(config.build_subscriber(writer), || {
        for i in 0..count {
            tracing::info!(target: "omniq::worker", i, padding = "x".repeat(120), "event {i}");
        }
    });
    drop(guard);
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn rotation_gzips_rotated_files_that_decompress_to_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let config = prod()
        .with_file(dir.path().join("logs/omniq.log"))
        .with_rotation_bytes(2_000);
    write_through_file_writer(&config, 100);

    let logs = dir.path().join("logs");
    let gz: Vec<String> = file_names(&logs)
        .into_iter()
        .filter(|n| n.starts_with("omniq.log.") && n.ends_with(".gz"))
        .collect();
    assert!(!gz.is_empty(), "{:?}", file_names(&logs));

    let mut total = json_lines(&fs::read_to_string(logs.join("omniq.log")).unwrap()).len();
    for name in &gz {
        let mut text = String::new();
        flate2::read::GzDecoder::new(fs::File::open(logs.join(name)).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        let lines = json_lines(&text);
        assert!(!lines.is_empty(), "{name} is empty");
        assert!(
            text.len() < 2_000 + 400,
            "{name}: one file holds about the limit"
        );
        total += lines.len();
    }
    assert_eq!(total, 100, "no line lost or split across files");
}

#[test]
fn rotation_without_compression_keeps_plain_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = prod()
        .with_file(dir.path().join("omniq.log"))
        .with_rotation_bytes(2_000)
        .with_compression(false);
    write_through_file_writer(&config, 50);
    let names = file_names(dir.path());
    assert!(names.len() > 1, "{names:?}");
    assert!(names.iter().all(|n| !n.ends_with(".gz")), "{names:?}");
}

#[test]
fn retention_deletes_rotated_files_older_than_the_period_on_next_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("omniq.log.20000101T000000.gz");
    let recent_suffix = (chrono::Local::now() - chrono::Duration::hours(1))
        .format(logging::ROTATED_SUFFIX_FORMAT)
        .to_string();
    let recent = dir.path().join(format!("omniq.log.{recent_suffix}.gz"));
    fs::write(&old, b"old").unwrap();
    fs::write(&recent, b"recent").unwrap();

    let config = prod()
        .with_file(dir.path().join("omniq.log"))
        .with_rotation_bytes(1_000)
        .with_retention(logging::parse_retention("1 day").unwrap());
    write_through_file_writer(&config, 20);

    let names = file_names(dir.path());
    assert!(!old.exists(), "older than retention: {names:?}");
    assert!(recent.exists(), "within retention: {names:?}");
}

#[test]
fn unopenable_log_file_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    fs::write(&blocker, b"").unwrap();
    let config = prod().with_file(blocker.join("omniq.log"));
    let err = config.open_writer().unwrap_err();
    assert!(matches!(err, LoggingError::File { .. }), "{err:?}");
}

#[test]
fn concurrent_writers_never_interleave_lines() {
    const THREADS: usize = 8;
    const EVENTS: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let config = prod().with_file(dir.path().join("omniq.log"));
    let (writer, guard) = config.open_writer().unwrap();
    let dispatch = tracing::Dispatch::new(config.build_subscriber(writer));

    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let dispatch = &dispatch;
            scope.spawn(move || {
                tracing::dispatcher::with_default(dispatch, || {
                    let ctx = task_context(format!("task-{t}"), "process");
                    ctx.in_scope(|| {
                        for i in 0..EVENTS {
                            tracing::info!(
                                target: "omniq::worker",
                                thread = t,
                                i,
                                padding = "y".repeat(300),
                                "event {i}"
                            );
                        }
                    });
                    ctx.finish();
                });
            });
        }
    });
    drop(dispatch);
    drop(guard);

    let text = fs::read_to_string(dir.path().join("omniq.log")).unwrap();
    let lines = json_lines(&text);
    let mut per_thread = [0usize; THREADS];
    for line in &lines {
        if let Some(t) = line["thread"].as_u64() {
            assert_eq!(line["task_id"], format!("task-{t}"));
            per_thread[t as usize] += 1;
        }
    }
    assert_eq!(per_thread, [EVENTS; THREADS]);
}

// ---------------------------------------------------------------- L7: the batching writer

/// Every line logged before the guard is dropped is in the file once the drop returns,
/// however many are still queued: dropping the guard waits for the writer, it does not
/// give up after a timeout.
#[test]
fn dropping_the_guard_writes_every_line_logged_before_it() {
    const THREADS: usize = 4;
    const EVENTS: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let config = prod().with_file(dir.path().join("omniq.log"));
    let (writer, guard) = config.open_writer().unwrap();
    let dispatch = tracing::Dispatch::new(config.build_subscriber(writer));
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let dispatch = &dispatch;
            scope.spawn(move || {
                tracing::dispatcher::with_default(dispatch, || {
                    for i in 0..EVENTS {
                        tracing::info!(target: "omniq::worker", thread = t, i, "event {i}");
                    }
                });
            });
        }
    });
    drop(guard);

    let text = fs::read_to_string(dir.path().join("omniq.log")).unwrap();
    let lines = json_lines(&text);
    assert_eq!(lines.len(), THREADS * EVENTS, "no line lost");
    // Each thread's lines are whole and in the order it logged them.
    let mut next = [0u64; THREADS];
    for line in &lines {
        let t = line["thread"].as_u64().unwrap() as usize;
        assert_eq!(line["i"].as_u64(), Some(next[t]), "{line}");
        next[t] += 1;
    }
    // Lines logged after the guard is gone are discarded, not a hang or a panic.
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("after the guard"));
    assert!(
        !fs::read_to_string(dir.path().join("omniq.log"))
            .unwrap()
            .contains("after the guard")
    );
}

/// `LogGuard::flush` (and `flush` on the writer) returns once the lines logged before it
/// are in the file, without waiting for the batch interval or stopping the writer.
#[test]
fn flush_puts_every_line_logged_so_far_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("omniq.log");
    let config = prod().with_file(&file);
    let (writer, guard) = config.open_writer().unwrap();
    let mut handle = writer.clone();
    let subscriber = config.build_subscriber(writer);
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(target: "omniq::worker", "first");
        guard.flush().unwrap();
        let text = fs::read_to_string(&file).unwrap();
        assert!(text.contains(r#""message":"first""#), "{text}");

        tracing::info!(target: "omniq::worker", "second");
        handle.flush().unwrap();
        let text = fs::read_to_string(&file).unwrap();
        assert_eq!(json_lines(&text).len(), 2, "{text}");
    });
    drop(guard);
}
