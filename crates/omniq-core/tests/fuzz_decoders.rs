//! S4: the decoders of tasks, results and TaskErrors never panic, in both serializers,
//! whatever bytes they are handed (garbage, truncated or mutated records), and what they
//! encode they decode back unchanged. Property tests (proptest).

use omniq_core::{
    ErrorType, Format, JsonSerializer, MsgPackSerializer, Payload, Serializer, Task, TaskError,
    TaskId, TaskResult, TaskStatus,
};
use proptest::prelude::*;
use time::OffsetDateTime;

const SERIALIZERS: [&dyn Serializer; 2] = [&MsgPackSerializer, &JsonSerializer];

/// Whole microseconds, inside the years every format handles.
fn time_strategy() -> impl Strategy<Value = OffsetDateTime> {
    (0i64..4_102_444_800, 0u32..1_000_000).prop_map(|(s, us)| {
        OffsetDateTime::from_unix_timestamp(s)
            .expect("in range")
            .replace_microsecond(us)
            .expect("in range")
    })
}

fn task_strategy() -> impl Strategy<Value = Task> {
    (
        "[a-z][a-z0-9_.]{0,30}",
        proptest::collection::vec(any::<u8>(), 0..256),
        "[a-z][a-z0-9_-]{0,20}",
        any::<i32>(),
        any::<u32>(),
        any::<u32>(),
        time_strategy(),
        proptest::option::of("[ -~]{0,40}"),
        proptest::option::of(0i64..10_000_000_000),
    )
        .prop_map(
            |(func, args, queue, priority, max_retries, attempts, created, key, interval_us)| {
                let mut t = Task::new(func, Payload(args));
                t.queue = queue;
                t.priority = priority;
                t.max_retries = max_retries;
                t.attempts = attempts;
                t.created_at = created;
                t.updated_at = created;
                t.unique_key = key;
                t.schedule.interval = interval_us.map(time::Duration::microseconds);
                t
            },
        )
}

fn error_strategy() -> impl Strategy<Value = TaskError> {
    (
        "[ -~\\PC]{0,80}",
        any::<u32>(),
        any::<bool>(),
        proptest::collection::btree_map("[a-z]{1,8}", any::<i64>(), 0..4),
        time_strategy(),
    )
        .prop_map(|(message, retries, retryable, ctx, at)| {
            let mut e = TaskError::new(ErrorType::Runtime, message).with_retryable(retryable);
            e.retry_count = retries;
            e.timestamp = at;
            for (k, v) in ctx {
                e = e.with_context(k, v);
            }
            e
        })
}

fn result_strategy() -> impl Strategy<Value = TaskResult> {
    (
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..128)),
        proptest::option::of(error_strategy()),
        time_strategy(),
        any::<u32>(),
        any::<bool>(),
    )
        .prop_map(|(result, error, at, attempts, ok)| TaskResult {
            task_id: TaskId::new(),
            status: if ok {
                TaskStatus::Success
            } else {
                TaskStatus::Failed
            },
            result: result.map(Payload),
            error,
            finished_at: at,
            attempts,
            last_attempt_at: Some(at),
        })
}

/// Every decoder on `bytes`: each returns Ok or Err, none panics.
fn decode_all(bytes: &[u8]) {
    for s in SERIALIZERS {
        let _ = s.decode_task(bytes);
        let _ = s.decode_result(bytes);
        let _ = s.decode_error(bytes);
    }
}

/// A mutation of a valid record: truncate, flip a byte, or insert bytes.
fn mutate(mut bytes: Vec<u8>, op: u8, at: usize, with: &[u8]) -> Vec<u8> {
    if bytes.is_empty() {
        return with.to_vec();
    }
    let at = at % bytes.len();
    match op % 3 {
        0 => bytes.truncate(at),
        1 => bytes[at] ^= with.first().copied().unwrap_or(0xff) | 1,
        _ => {
            let tail = bytes.split_off(at);
            bytes.extend_from_slice(with);
            bytes.extend(tail);
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
    }

    #[test]
    fn mutated_tasks_never_panic(
        task in task_strategy(),
        op in any::<u8>(),
        at in any::<usize>(),
        with in proptest::collection::vec(any::<u8>(), 1..16),
    ) {
        for s in SERIALIZERS {
            let bytes = s.encode_task(&task).expect("encode");
            decode_all(&mutate(bytes, op, at, &with));
        }
    }

    #[test]
    fn mutated_results_and_errors_never_panic(
        result in result_strategy(),
        op in any::<u8>(),
        at in any::<usize>(),
        with in proptest::collection::vec(any::<u8>(), 1..16),
    ) {
        for s in SERIALIZERS {
            let bytes = s.encode_result(&result).expect("encode");
            decode_all(&mutate(bytes, op, at, &with));
            if let Some(e) = &result.error {
                let bytes = s.encode_error(e).expect("encode");
                decode_all(&mutate(bytes, op, at, &with));
            }
        }
    }

    #[test]
    fn tasks_round_trip(task in task_strategy()) {
        for s in SERIALIZERS {
            let bytes = s.encode_task(&task).expect("encode");
            prop_assert_eq!(&s.decode_task(&bytes).expect("decode"), &task, "{}", s.format());
        }
    }

    #[test]
    fn results_and_errors_round_trip(result in result_strategy()) {
        for s in SERIALIZERS {
            let bytes = s.encode_result(&result).expect("encode");
            prop_assert_eq!(&s.decode_result(&bytes).expect("decode"), &result, "{}", s.format());
            if let Some(e) = &result.error {
                let bytes = s.encode_error(e).expect("encode");
                prop_assert_eq!(&s.decode_error(&bytes).expect("decode"), e, "{}", s.format());
            }
        }
    }

    #[test]
    fn a_decode_error_names_the_format(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        for f in [Format::MessagePack, Format::Json] {
            if let Err(e) = f.decode::<Task>(&bytes) {
                prop_assert_eq!(e.format, f.name());
                prop_assert_eq!(e.op, "decode");
            }
        }
    }
}

/// A stored timeout too large for a `time::Duration` (one mutated record held 1e300
/// seconds) is that record's decode error, never a panic.
#[test]
fn an_out_of_range_timeout_is_a_decode_error() {
    let mut task = Task::new("f", Payload(b"[]".to_vec()));
    task.timeout = Some(time::Duration::seconds(5));
    let bytes = JsonSerializer.encode_task(&task).expect("encode");
    let mut v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(v["timeout"], serde_json::json!(5.0), "{v}");
    v["timeout"] = serde_json::json!(1e300);
    let bytes = serde_json::to_vec(&v).expect("json");
    let err = JsonSerializer
        .decode_task(&bytes)
        .expect_err("an out-of-range timeout must not decode");
    assert!(err.to_string().contains("out of range"), "{err}");
    // In range, it still decodes.
    v["timeout"] = serde_json::json!(2.5);
    let back = JsonSerializer
        .decode_task(&serde_json::to_vec(&v).expect("json"))
        .expect("decode");
    assert_eq!(back.timeout, Some(time::Duration::milliseconds(2500)));
}
