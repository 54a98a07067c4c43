//! Conversions between the model and Redis values: unix-microsecond times, script
//! replies, and decoding of task and result hashes.

use crate::error::{Result, corrupt};
use fred::types::Value;
use omniq_core::{ErrorType, Format, Payload, Task, TaskError, TaskId, TaskResult, TaskStatus};
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

/// An optional stored field: nil and "" (how scripts clear a field) are `None`.
pub(crate) fn opt_field(v: &Value) -> Option<&[u8]> {
    opt_bytes(v).filter(|b| !b.is_empty())
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

/// An optional integer field (nil or "" → None).
pub(crate) fn opt_int(v: &Value, what: &str) -> Result<Option<i64>> {
    match v {
        Value::Integer(i) => Ok(Some(*i)),
        other => opt_field(other)
            .map(|b| {
                String::from_utf8_lossy(b)
                    .parse::<i64>()
                    .map_err(|_| corrupt(format!("{what}: expected an integer, got {other:?}")))
            })
            .transpose(),
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
    /// None: the state predates recorded runs; the record's value stands.
    pub(crate) runs: Option<i64>,
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
    if let Some(runs) = o.runs {
        task.runs =
            u32::try_from(runs).map_err(|_| corrupt(format!("stored runs {runs} out of range")))?;
    }
    task.updated_at = from_micros(o.updated_at)?;
    task.last_attempt_at = o.last_attempt_at.map(from_micros).transpose()?;
    task.error = decode_error(format, o.error);
    Ok(task)
}

/// The fields [`task_from_fields`] reads, in order.
pub(crate) const TASK_FIELDS: [&str; 3] = ["d", "m", "er"];

/// A task's changing state, the hash field `m`:
/// `status|token|attempts|updated_at|last_attempt_at|lease_until|cancel|due|priority|seq|eta|runs`
/// (states written before `runs` existed have the first 11 fields).
pub(crate) struct State<'a> {
    parts: Vec<&'a str>,
}

impl<'a> State<'a> {
    pub(crate) fn parse(m: &'a str) -> Result<Self> {
        let parts: Vec<&str> = m.split('|').collect();
        if parts.len() != 11 && parts.len() != 12 {
            return Err(corrupt(format!("task state {m:?}")));
        }
        Ok(Self { parts })
    }

    fn int(&self, i: usize, what: &str) -> Result<Option<i64>> {
        let s = self.parts[i];
        if s.is_empty() {
            return Ok(None);
        }
        s.parse::<i64>()
            .map(Some)
            .map_err(|_| corrupt(format!("stored {what} {s:?}")))
    }

    fn req(&self, i: usize, what: &str) -> Result<i64> {
        self.int(i, what)?
            .ok_or_else(|| corrupt(format!("stored {what} is empty")))
    }

    /// The overlay of this state on a task record.
    pub(crate) fn overlay<'e>(&self, error: Option<&'e [u8]>) -> Result<Overlay<'e>> {
        Ok(Overlay {
            status: status(self.parts[0])?,
            eta: self.int(10, "eta")?,
            attempts: self.req(2, "attempts")?,
            runs: match self.parts.get(11) {
                Some(_) => Some(self.req(11, "runs")?),
                None => None,
            },
            updated_at: self.req(3, "updated_at")?,
            last_attempt_at: self.int(4, "last_attempt_at")?,
            error,
        })
    }
}

/// Decodes a task hash read with `HMGET` of [`TASK_FIELDS`]; `None` when it is gone.
pub(crate) fn task_from_fields(v: &[Value], format: Format) -> Result<Option<Task>> {
    let [d, m, er] = v else {
        return Err(corrupt(format!("task hash: {} fields", v.len())));
    };
    let (Some(record), Some(m)) = (opt_bytes(d), opt_bytes(m)) else {
        return Ok(None);
    };
    let task = decode_record(format, record)?;
    let m = String::from_utf8_lossy(m);
    let overlay = State::parse(&m)?.overlay(opt_field(er))?;
    apply(task, overlay, format).map(Some)
}

/// Decodes a stored result: `status|finished_at|attempts|last_attempt_at|len(error)|
/// len(payload) or -|` then the error's and the payload's bytes.
pub(crate) fn result_from_bytes(id: TaskId, b: &[u8], format: Format) -> Result<TaskResult> {
    let bad = || corrupt(format!("stored result of {id} is malformed"));
    let mut fields: Vec<&[u8]> = Vec::with_capacity(6);
    let mut rest = b;
    for _ in 0..6 {
        let at = rest.iter().position(|c| *c == b'|').ok_or_else(bad)?;
        fields.push(&rest[..at]);
        rest = &rest[at + 1..];
    }
    let text = |i: usize| String::from_utf8_lossy(fields[i]).into_owned();
    let num = |i: usize| text(i).parse::<i64>().map_err(|_| bad());
    let elen = usize::try_from(num(4)?).map_err(|_| bad())?;
    let (err, payload) = (rest.get(..elen).ok_or_else(bad)?, &rest[elen..]);
    let payload = match fields[5] {
        b"-" => None,
        n => {
            let plen = String::from_utf8_lossy(n)
                .parse::<usize>()
                .map_err(|_| bad())?;
            if plen != payload.len() {
                return Err(bad());
            }
            Some(Payload(payload.to_vec()))
        }
    };
    let attempts = num(2)?;
    Ok(TaskResult {
        task_id: id,
        status: status(&text(0))?,
        result: payload,
        error: decode_error(format, Some(err).filter(|e| !e.is_empty())),
        finished_at: from_micros(num(1)?)?,
        attempts: u32::try_from(attempts)
            .map_err(|_| corrupt(format!("stored attempts {attempts} out of range")))?,
        last_attempt_at: match fields[3] {
            b"" => None,
            _ => Some(from_micros(num(3)?)?),
        },
    })
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
    fn results_round_trip_binary_payloads_and_errors() {
        let id = TaskId::new();
        let err = Format::MessagePack
            .encode(&TaskError::new(ErrorType::Runtime, "a|b"))
            .unwrap();
        let mut stored = format!("failed|5|2|3|{}|4|", err.len()).into_bytes();
        stored.extend_from_slice(&err);
        stored.extend_from_slice(b"\x00|\xff|");
        let r = result_from_bytes(id, &stored, Format::MessagePack).unwrap();
        assert_eq!(r.status, TaskStatus::Failed);
        assert_eq!(r.result, Some(Payload(b"\x00|\xff|".to_vec())));
        assert_eq!(r.error.map(|e| e.message), Some("a|b".to_string()));
        assert_eq!((r.attempts, r.last_attempt_at.is_some()), (2, true));
        let none = result_from_bytes(id, b"success|5|1||0|-|", Format::MessagePack).unwrap();
        assert_eq!(
            (none.result, none.error, none.last_attempt_at),
            (None, None, None)
        );
        assert!(result_from_bytes(id, b"success|5|1", Format::MessagePack).is_err());
    }

    #[test]
    fn states_without_recorded_runs_still_read() {
        let old = State::parse("running|3|2|10|9|40|||0|7|").unwrap();
        assert_eq!(old.overlay(None).unwrap().runs, None);
        let new = State::parse("running|3|2|10|9|40|||0|7||5").unwrap();
        let o = new.overlay(None).unwrap();
        assert_eq!((o.attempts, o.runs), (2, Some(5)));
        assert!(
            State::parse("running|3|2|10|9|40|||0|7||x")
                .unwrap()
                .overlay(None)
                .is_err()
        );
        assert!(State::parse("running|3|2|10|9|40|||0|7||5|1").is_err());
    }

    #[test]
    fn a_corrupt_record_is_a_serialization_error() {
        let fields = [
            bytes(b"\xc1garbage"),
            arg("pending|0|0|0|||||0|0|"),
            Value::Null,
        ];
        let err = task_from_fields(&fields, Format::MessagePack).err();
        assert!(
            matches!(err, Some(crate::error::Error::Codec(_))),
            "{err:?}"
        );
    }
}
