//! Conversions between the model and Redis values: unix-microsecond times, script
//! replies, and decoding of task and result hashes.

use crate::error::{Result, corrupt};
use fred::types::Value;
use omniq_core::{
    ErrorType, Format, Payload, Task, TaskError, TaskId, TaskResult, TaskStatus,
};
use time::OffsetDateTime;

/// Unix microseconds (floor) of a time, clamped to what a Redis score holds exactly.
pub(crate) fn micros(t: OffsetDateTime) -> i64 {
    const LIMIT: i128 = 1 << 53;
    let us = t.unix_timestamp_nanos().div_euclid(1000);
    us.clamp(-LIMIT, LIMIT) as i64
}

/// The wall clock in unix microseconds (only for TTL bookkeeping, never scheduling).
pub(crate) fn now_micros() -> i64 {
    micros(OffsetDateTime::now_utc())
}

/// A time from unix microseconds.
pub(crate) fn from_micros(us: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .map_err(|e| corrupt(format!("stored timestamp {us} out of range: {e}")))
}

/// A script argument.
pub(crate) fn arg(s: impl Into<String>) -> Value {
    Value::from(s.into())
}

/// A binary script argument.
pub(crate) fn bytes(b: &[u8]) -> Value {
    Value::from(Box::<[u8]>::from(b))
}

/// A reply as bytes (`None` for nil).
pub(crate) fn opt_bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::Null => None,
        other => other.as_bytes(),
    }
}

/// A reply as text ("" for nil).
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::Integer(i) => i.to_string(),
        other => opt_bytes(other)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default(),
    }
}

/// A reply as an integer.
pub(crate) fn int(v: &Value, what: &str) -> Result<i64> {
    match v {
        Value::Integer(i) => Ok(*i),
        other => text(other)
            .parse::<i64>()
            .map_err(|_| corrupt(format!("{what}: expected an integer, got {other:?}"))),
    }
}

/// An optional integer reply (nil → None).
pub(crate) fn opt_int(v: &Value, what: &str) -> Result<Option<i64>> {
    match v {
        Value::Null => Ok(None),
        other => int(other, what).map(Some),
    }
}

/// A reply as an array (nil → empty).
pub(crate) fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Null => Vec::new(),
        Value::Array(items) => items,
        other => vec![other],
    }
}

pub(crate) fn task_id(s: &str) -> Result<TaskId> {
    s.parse::<TaskId>()
        .map_err(|e| corrupt(format!("stored task id {s:?} is not a UUID: {e}")))
}

pub(crate) fn status(s: &str) -> Result<TaskStatus> {
    s.parse::<TaskStatus>().map_err(|e| corrupt(e.to_string()))
}

fn other(format: Format) -> Format {
    match format {
        Format::MessagePack => Format::Json,
        Format::Json => Format::MessagePack,
    }
}

/// Decodes a stored TaskError. A blob written with the other serializer still decodes;
/// one that decodes with neither becomes a `decode` TaskError saying so, rather than an
/// error that would fail every claim or read touching the task (a bad record must not
/// block its queue).
pub(crate) fn decode_error(format: Format, bytes: Option<&[u8]>) -> Option<TaskError> {
    let b = bytes?;
    Some(
        format
            .decode::<TaskError>(b)
            .or_else(|_| other(format).decode::<TaskError>(b))
            .unwrap_or_else(|e| {
                TaskError::new(
                    ErrorType::Decode,
                    format!("the stored error of this task could not be decoded: {e}"),
                )
                .with_context("stored_error_bytes", b.len())
            }),
    )
}

/// Decodes a task record (either serializer, so switching formats keeps old records).
pub(crate) fn decode_record(format: Format, bytes: &[u8]) -> Result<Task> {
    match format.decode::<Task>(bytes) {
        Ok(t) => Ok(t),
        Err(e) => other(format).decode::<Task>(bytes).map_err(|_| e.into()),
    }
}

/// The mutable fields of a stored task, overlaid on its record.
pub(crate) struct Overlay<'a> {
    pub(crate) status: TaskStatus,
    pub(crate) eta: Option<i64>,
    pub(crate) attempts: i64,
    pub(crate) updated_at: i64,
    pub(crate) last_attempt_at: Option<i64>,
    pub(crate) error: Option<&'a [u8]>,
}

/// The task as stored now: its record with the mutable fields applied.
pub(crate) fn apply(mut task: Task, o: Overlay<'_>, format: Format) -> Result<Task> {
    task.status = o.status;
    task.schedule.eta = o.eta.map(from_micros).transpose()?;
    task.attempts = u32::try_from(o.attempts)
        .map_err(|_| corrupt(format!("stored attempts {} out of range", o.attempts)))?;
    task.updated_at = from_micros(o.updated_at)?;
    task.last_attempt_at = o.last_attempt_at.map(from_micros).transpose()?;
    task.error = decode_error(format, o.error);
    Ok(task)
}

/// The fields [`task_from_fields`] reads, in order.
pub(crate) const TASK_FIELDS: [&str; 7] = ["d", "st", "eta", "at", "up", "la", "er"];

/// Decodes a task hash read with `HMGET` of [`TASK_FIELDS`]; `None` when it is gone.
pub(crate) fn task_from_fields(v: &[Value], format: Format) -> Result<Option<Task>> {
    let [d, st, eta, at, up, la, er] = v else {
        return Err(corrupt(format!("task hash: {} fields", v.len())));
    };
    let Some(record) = opt_bytes(d) else {
        return Ok(None);
    };
    let task = decode_record(format, record)?;
    let overlay = Overlay {
        status: status(&text(st))?,
        eta: opt_int(eta, "eta")?,
        attempts: int(at, "attempts")?,
        updated_at: int(up, "updated_at")?,
        last_attempt_at: opt_int(la, "last_attempt_at")?,
        error: opt_bytes(er),
    };
    apply(task, overlay, format).map(Some)
}

/// The fields [`result_from_fields`] reads, in order.
pub(crate) const RESULT_FIELDS: [&str; 6] = ["s", "p", "e", "f", "a", "l"];

/// Decodes a result hash read with `HMGET` of [`RESULT_FIELDS`]; `None` when it is gone.
pub(crate) fn result_from_fields(
    id: TaskId,
    v: &[Value],
    format: Format,
) -> Result<Option<TaskResult>> {
    let [s, p, e, f, a, l] = v else {
        return Err(corrupt(format!("result hash: {} fields", v.len())));
    };
    if matches!(s, Value::Null) {
        return Ok(None);
    }
    let attempts = int(a, "attempts")?;
    Ok(Some(TaskResult {
        task_id: id,
        status: status(&text(s))?,
        result: opt_bytes(p).map(|b| Payload(b.to_vec())),
        error: decode_error(format, opt_bytes(e)),
        finished_at: from_micros(int(f, "finished_at")?)?,
        attempts: u32::try_from(attempts)
            .map_err(|_| corrupt(format!("stored attempts {attempts} out of range")))?,
        last_attempt_at: opt_int(l, "last_attempt_at")?
            .map(from_micros)
            .transpose()?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn micros_round_trip_and_floor() {
        let t = datetime!(2025-01-02 03:04:05.123456789 UTC);
        let us = micros(t);
        assert_eq!(us % 1_000_000, 123_456);
        assert_eq!(
            from_micros(us).ok(),
            Some(datetime!(2025-01-02 03:04:05.123456 UTC))
        );
        assert_eq!(micros(datetime!(1969-12-31 23:59:59.9999995 UTC)), -1);
    }

    #[test]
    fn an_undecodable_error_becomes_a_decode_task_error() {
        let e = decode_error(Format::MessagePack, Some(b"\xc1not an error"));
        assert_eq!(e.map(|e| e.error_type), Some(ErrorType::Decode));
    }

    #[test]
    fn a_corrupt_record_is_a_serialization_error() {
        let fields = [
            bytes(b"\xc1garbage"),
            arg("pending"),
            Value::Null,
            arg("0"),
            arg("0"),
            Value::Null,
            Value::Null,
        ];
        let err = task_from_fields(&fields, Format::MessagePack).err();
        assert!(matches!(err, Some(crate::error::Error::Codec(_))), "{err:?}");
    }
}
