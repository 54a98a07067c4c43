//! M9/M10: both serializers round-trip every field, and old records still decode.

use omniq_core::{
    ErrorType, Format, JsonSerializer, MsgPackSerializer, Payload, Serializer, Task, TaskError,
    TaskId, TaskResult, TaskStatus,
};
use std::path::PathBuf;
use time::Duration;
use time::macros::datetime;

fn serializers() -> [&'static dyn Serializer; 2] {
    [&MsgPackSerializer, &JsonSerializer]
}

fn fixture(name: &str, format: Format) -> Vec<u8> {
    let ext = match format {
        Format::MessagePack => "msgpack",
        Format::Json => "json",
    };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.{ext}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn full_task() -> Task {
    let mut t = Task::new("reports.build", Payload(b"{\"month\":3}".to_vec()));
    t.queue = "reports".into();
    t.priority = 7;
    t.status = TaskStatus::Failed;
    t.schedule.eta = Some(datetime!(2025-06-01 08:30:15.123456 UTC));
    t.schedule.interval =
        Some(Duration::days(1) + Duration::hours(2) + Duration::milliseconds(500));
    t.max_retries = 5;
    t.timeout = Some(Duration::seconds(30));
    t.attempts = 2;
    t.runs = 1;
    t.last_attempt_at = Some(datetime!(2025-06-01 08:31:00 UTC));
    t.unique_key = Some("report-2025-03".into());
    t.backoff = Some(omniq_core::Backoff::Exponential {
        base: Duration::milliseconds(250),
        cap: Duration::minutes(2),
        jitter: 0.1,
    });
    t.error = Some(
        TaskError::new(ErrorType::Resource, "Database connection failed")
            .with_context("database", "postgres")
            .with_context("connection_pool_size", 10)
            .with_context(
                "query",
                serde_json::json!({"sql": "SELECT 1", "params": [1, "a"]}),
            )
            .with_max_retries(5),
    );
    if let Some(e) = t.error.as_mut() {
        e.traceback = Some("outer\n  0: caused by: inner".into());
        e.exception_type = Some("std::io::Error".into());
        e.retry_count = 2;
    }
    t
}

#[test]
fn every_task_field_round_trips_in_both_formats() {
    let task = full_task();
    for s in serializers() {
        let bytes = s.encode_task(&task).expect("encode");
        let back = s.decode_task(&bytes).expect("decode");
        assert_eq!(back, task, "{:?}", s.format());
    }
}

#[test]
fn binary_args_round_trip_in_json() {
    let mut task = full_task();
    task.args = Payload(vec![0, 159, 146, 150, 255]);
    let bytes = JsonSerializer.encode_task(&task).expect("encode");
    assert_eq!(
        JsonSerializer.decode_task(&bytes).expect("decode").args,
        task.args
    );
}

#[test]
fn json_writes_intervals_as_timedelta_and_times_as_rfc3339() {
    let mut task = Task::new("m.f", Payload::default());
    task.schedule.interval = Some(Duration::hours(1));
    task.schedule.eta = Some(datetime!(2025-12-01 10:30:45 UTC));
    let v: serde_json::Value =
        serde_json::from_slice(&JsonSerializer.encode_task(&task).expect("encode")).expect("json");
    assert_eq!(
        v["schedule"]["interval"],
        serde_json::json!({"type": "timedelta", "total_seconds": 3600.0})
    );
    assert_eq!(v["schedule"]["eta"], "2025-12-01T10:30:45Z");
}

#[test]
fn timedelta_helpers_match_the_guide() {
    let v = omniq_core::compat::serialize_timedelta(Duration::hours(1));
    assert_eq!(
        v,
        serde_json::json!({"type": "timedelta", "total_seconds": 3600.0})
    );
    assert_eq!(
        omniq_core::compat::deserialize_timedelta(&v).ok(),
        Some(Duration::hours(1))
    );
    assert_eq!(
        omniq_core::compat::deserialize_timedelta(&serde_json::json!(1800)).ok(),
        Some(Duration::minutes(30))
    );
}

#[test]
fn task_error_and_result_round_trip() {
    let task = full_task();
    let result = TaskResult {
        task_id: task.id,
        status: TaskStatus::Failed,
        result: Some(Payload(b"42".to_vec())),
        error: task.error.clone(),
        finished_at: datetime!(2025-06-01 08:31:02 UTC),
        attempts: 3,
        last_attempt_at: task.last_attempt_at,
    };
    for s in serializers() {
        let e = task.error.as_ref().expect("error");
        assert_eq!(
            &s.decode_error(&s.encode_error(e).expect("enc"))
                .expect("dec"),
            e
        );
        let r = s
            .decode_result(&s.encode_result(&result).expect("enc"))
            .expect("dec");
        assert_eq!(r, result);
    }
}

#[test]
fn old_record_without_error_field_decodes() {
    for f in [Format::Json, Format::MessagePack] {
        let t = f.decode_task(&fixture("v0_no_error_field", f));
        let t: Task = t.expect("decode");
        assert_eq!(t.error, None, "{f}");
        assert!(!t.has_error());
        assert_eq!(t.func_path, "reports.build");
        assert_eq!(t.args, Payload(b"[1,2,3]".to_vec()));
        assert_eq!(t.schedule.eta, Some(datetime!(2024-03-01 12:00 UTC)));
        assert_eq!(t.schedule.interval, None);
    }
}

#[test]
fn old_record_with_string_error_decodes_into_task_error() {
    for f in [Format::Json, Format::MessagePack] {
        let t: Task = f
            .decode_task(&fixture("v0_error_as_string", f))
            .expect("decode");
        let e = t.error.as_ref().expect("error kept");
        assert_eq!(e.message, "ConnectionError: SMTP server unreachable", "{f}");
        assert_eq!(e.error_type, ErrorType::Unknown);
        assert!(t.is_failed());
        assert_eq!(
            t.get_error_message(),
            Some("ConnectionError: SMTP server unreachable")
        );
        assert_eq!(t.queue, "mail");
        assert_eq!(t.attempts, 3);
    }
}

#[test]
fn old_record_with_top_level_integer_interval_moves_into_schedule() {
    for f in [Format::Json, Format::MessagePack] {
        let t: Task = f
            .decode_task(&fixture("v0_top_level_interval", f))
            .expect("decode");
        assert_eq!(t.schedule.interval, Some(Duration::hours(1)), "{f}");
        assert_eq!(t.queue, "default");
        assert_eq!(t.updated_at, t.created_at);
        assert_eq!(
            t.id,
            "0190a5b2-7c3e-7d4a-9f10-000000000003"
                .parse::<TaskId>()
                .expect("id")
        );
        // Re-encoding writes today's format: the interval lives in the schedule.
        let v: serde_json::Value =
            serde_json::from_slice(&JsonSerializer.encode_task(&t).expect("enc")).expect("json");
        assert_eq!(v["schedule"]["interval"]["total_seconds"], 3600.0);
        assert!(v.get("interval").is_none());
    }
}

#[test]
fn old_zero_interval_means_not_recurring() {
    for f in [Format::Json, Format::MessagePack] {
        let t: Task = f
            .decode_task(&fixture("v0_zero_interval_means_none", f))
            .expect("decode");
        assert_eq!(t.schedule.interval, None, "{f}");
        assert_eq!(t.status, TaskStatus::Success);
    }
}

#[test]
fn corrupt_bytes_are_a_serialization_error_not_a_panic() {
    for s in serializers() {
        assert!(s.decode_task(b"\xff\x00garbage").is_err());
        assert!(s.decode_task(b"").is_err());
    }
}

/// A record written with a cron schedule: the expression and zone survive both formats,
/// and records without one (every fixture above) decode with `cron: None`.
#[test]
fn a_cron_schedule_round_trips_and_old_records_have_none() {
    for f in [Format::MessagePack, Format::Json] {
        let t = serializer(f)
            .decode_task(&fixture("v1_cron", f))
            .expect("decode");
        let cron = t.schedule.cron.clone().expect("the cron schedule");
        assert_eq!(
            (cron.expr.as_str(), cron.tz.as_str()),
            ("0 9 * * 1-5", "Europe/Berlin"),
            "{f}"
        );
        assert!(t.schedule.is_recurring());
        assert_eq!(t.schedule.eta, Some(datetime!(2026-12-01 08:00 UTC)));
        let again = serializer(f)
            .decode_task(&serializer(f).encode_task(&t).expect("encode"))
            .expect("decode");
        assert_eq!(again, t, "{f}");
        let old = serializer(f)
            .decode_task(&fixture("v0_no_error_field", f))
            .expect("decode");
        assert_eq!(old.schedule.cron, None, "{f}");
        // Recorded runs came later still: every fixture reads as none recorded (M10).
        assert_eq!((t.runs, old.runs), (0, 0), "{f}");
    }
    // A task without a cron schedule writes no `cron` key: older readers see no change.
    let v: serde_json::Value =
        serde_json::from_slice(&JsonSerializer.encode_task(&full_task()).expect("enc"))
            .expect("json");
    assert!(v["schedule"].get("cron").is_none(), "{v}");
}

fn serializer(f: Format) -> &'static dyn Serializer {
    match f {
        Format::MessagePack => &MsgPackSerializer,
        Format::Json => &JsonSerializer,
    }
}

/// A stored interval too large for a `Duration` is a decode error, never a panic (the
/// decoder fuzzing found `1e300` seconds panicking inside `time`).
#[test]
fn an_out_of_range_interval_is_a_decode_error_not_a_panic() {
    let huge = serde_json::json!({"type": "timedelta", "total_seconds": 1e300});
    let err = omniq_core::compat::deserialize_timedelta(&huge).expect_err("out of range");
    assert!(err.to_string().contains("out of range"), "{err}");

    let mut record = serde_json::to_value(full_task()).expect("task as JSON");
    record["schedule"]["interval"] = huge;
    let bytes = serde_json::to_vec(&record).expect("JSON bytes");
    assert!(JsonSerializer.decode_task(&bytes).is_err());
    let packed = rmp_serde::to_vec_named(&record).expect("MessagePack bytes");
    assert!(MsgPackSerializer.decode_task(&packed).is_err());
}
