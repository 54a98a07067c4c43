//! `configure` installs the process-wide subscriber once (L1, L2). Its own test binary, so
//! the global install cannot leak into other tests.

use std::fs;

use omniq::logging::{self, LogConfig, LogMode, LoggingError};

fn global_is_noop() -> bool {
    std::thread::spawn(|| {
        tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>())
    })
    .join()
    .unwrap()
}

#[test]
fn configure_installs_once_then_reports_already_configured() {
    assert!(global_is_noop());

    // A file that cannot be opened fails without installing anything, so a retry may succeed.
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    fs::write(&blocker, b"").unwrap();
    let bad = LogConfig::default()
        .with_mode(LogMode::Prod)
        .with_file(blocker.join("omniq.log"));
    let err = logging::configure(bad).unwrap_err();
    assert!(matches!(err, LoggingError::File { .. }), "{err:?}");
    assert!(global_is_noop());

    let file = dir.path().join("logs/omniq.log");
    let config = LogConfig::default()
        .with_mode(LogMode::Prod)
        .with_file(&file);
    let guard = logging::configure(config.clone()).expect("first configure succeeds");
    assert!(!global_is_noop());

    let again = logging::configure(config).unwrap_err();
    assert!(
        matches!(again, LoggingError::AlreadyConfigured),
        "{again:?}"
    );
    assert!(matches!(
        logging::configure_from_env(),
        Err(LoggingError::AlreadyConfigured | LoggingError::InvalidValue { .. })
    ));

    // Events from any thread reach the installed subscriber's file once the guard is dropped.
    std::thread::spawn(|| logging::log_worker_started("worker-1", 2))
        .join()
        .unwrap();
    // A value that logs while it is formatted: the global subscriber takes the nested
    // event too (on its own buffers), and both lines come out whole.
    std::thread::spawn(|| {
        let span = logging::task_span(&"t-c", &"process", &"c-c", None);
        span.in_scope(|| tracing::info!(target: "omniq::worker", value = %Chatty, "outer event"));
    })
    .join()
    .unwrap();
    drop(guard);
    let text = fs::read_to_string(&file).unwrap();
    assert!(
        text.contains(r#""message":"Worker worker-1 started with concurrency: 2""#),
        "{text}"
    );
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let find = |message: &str| {
        lines
            .iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} in {text}"))
    };
    let outer = find("outer event");
    assert_eq!(outer["value"], "chatty");
    assert_eq!(outer["task_id"], "t-c");
    let inner = find("logged while formatting");
    assert_eq!(inner["inner"], "yes");
    assert_eq!(inner["task_id"], "t-c");
    assert!(inner.get("value").is_none(), "{inner}");
}

/// Logs while it is being formatted.
struct Chatty;

impl std::fmt::Display for Chatty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        tracing::info!(target: "omniq::worker", inner = "yes", "logged while formatting");
        f.write_str("chatty")
    }
}
