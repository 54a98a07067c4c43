//! How tasks, results and payloads look to an operator: decoded payloads, times, and
//! the JSON shapes `--json` prints.

use omniq::{Format, Payload, Task, TaskError, TaskResult};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A payload as far as it could be decoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decoded {
    /// A serde value in one of the two formats (which one: `encoding`).
    Value {
        /// The decoded value.
        value: Value,
        /// `msgpack` or `json`.
        encoding: &'static str,
    },
    /// Not a serde value, but UTF-8 text.
    Text(String),
    /// Neither: raw bytes.
    Bytes(Vec<u8>),
}

impl Decoded {
    /// The encoding name shown beside the value.
    pub(crate) fn encoding(&self) -> &'static str {
        match self {
            Self::Value { encoding, .. } => encoding,
            Self::Text(_) => "text",
            Self::Bytes(_) => "bytes",
        }
    }

    /// The payload as JSON: the value, the text as a string, or the bytes as hex.
    pub(crate) fn to_json(&self) -> Value {
        match self {
            Self::Value { value, .. } => value.clone(),
            Self::Text(t) => Value::String(t.clone()),
            Self::Bytes(b) => Value::String(hex(b)),
        }
    }

    /// The payload as one line of text (JSON for values).
    pub(crate) fn compact(&self) -> String {
        match self {
            Self::Value { value, .. } => value.to_string(),
            Self::Text(t) => t.clone(),
            Self::Bytes(b) => format!("0x{}", hex(b)),
        }
    }

    /// The payload as indented text (pretty JSON for values).
    pub(crate) fn pretty(&self) -> String {
        match self {
            Self::Value { value, .. } => {
                serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
            }
            other => other.compact(),
        }
    }
}

/// Decodes a payload: with the storage's serializer first, then the other format, then
/// as text. A format only counts when it consumes every byte (a JSON text is not taken
/// for a MessagePack number).
pub(crate) fn decode_payload(payload: &Payload, preferred: Format) -> Decoded {
    let bytes = payload.as_bytes();
    let other = match preferred {
        Format::MessagePack => Format::Json,
        _ => Format::MessagePack,
    };
    for format in [preferred, other] {
        if let Some(value) = decode_exact(bytes, format) {
            return Decoded::Value {
                value,
                encoding: format.name(),
            };
        }
    }
    match std::str::from_utf8(bytes) {
        Ok(t) => Decoded::Text(t.to_string()),
        Err(_) => Decoded::Bytes(bytes.to_vec()),
    }
}

fn decode_exact(bytes: &[u8], format: Format) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    match format {
        Format::Json => serde_json::from_slice(bytes).ok(),
        _ => {
            let mut cursor = std::io::Cursor::new(bytes);
            let value: Value = rmp_serde::decode::from_read(&mut cursor).ok()?;
            (cursor.position() as usize == bytes.len()).then_some(value)
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3339 (`2026-11-30T09:15:02.123456Z`).
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// A time to the second, for tables (`2026-11-30 09:15:02`, UTC).
pub(crate) fn short_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A duration in words (`1h 30m`, `250ms`).
pub(crate) fn human_duration(d: time::Duration) -> String {
    match std::time::Duration::try_from(d) {
        Ok(std) => humantime::format_duration(std).to_string(),
        Err(_) => d.to_string(),
    }
}

/// Shortens text to `max` characters for a table cell.
pub(crate) fn ellipsize(s: &str, max: usize) -> String {
    let one_line = s.replace(['\n', '\r', '\t'], " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let mut out: String = one_line.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// A task as `--json` prints it: the stored fields with the arguments decoded.
#[derive(Debug, Serialize)]
pub(crate) struct TaskView<'a> {
    id: String,
    name: &'a str,
    queue: &'a str,
    status: &'static str,
    priority: i32,
    attempts: u32,
    max_retries: u32,
    eta: Option<String>,
    interval_seconds: Option<f64>,
    timeout_seconds: Option<f64>,
    created_at: String,
    updated_at: String,
    last_attempt_at: Option<String>,
    unique_key: Option<&'a str>,
    backoff: Option<&'a omniq::Backoff>,
    args: Value,
    args_encoding: &'static str,
    error: Option<&'a TaskError>,
}

impl<'a> TaskView<'a> {
    pub(crate) fn new(task: &'a Task, format: Format) -> Self {
        let args = decode_payload(&task.args, format);
        Self {
            id: task.id.to_string(),
            name: &task.func_path,
            queue: &task.queue,
            status: task.status.as_str(),
            priority: task.priority,
            attempts: task.attempts,
            max_retries: task.max_retries,
            eta: task.schedule.eta.map(rfc3339),
            interval_seconds: task.schedule.interval.map(|d| d.as_seconds_f64()),
            timeout_seconds: task.timeout.map(|d| d.as_seconds_f64()),
            created_at: rfc3339(task.created_at),
            updated_at: rfc3339(task.updated_at),
            last_attempt_at: task.last_attempt_at.map(rfc3339),
            unique_key: task.unique_key.as_deref(),
            backoff: task.backoff.as_ref(),
            args: args.to_json(),
            args_encoding: args.encoding(),
            error: task.error.as_ref(),
        }
    }
}

/// A result as `--json` prints it, the value decoded.
#[derive(Debug, Serialize)]
pub(crate) struct ResultView<'a> {
    status: &'static str,
    finished_at: String,
    attempts: u32,
    last_attempt_at: Option<String>,
    value: Option<Value>,
    value_encoding: Option<&'static str>,
    error: Option<&'a TaskError>,
}

impl<'a> ResultView<'a> {
    pub(crate) fn new(result: &'a TaskResult, format: Format) -> Self {
        let value = result.result.as_ref().map(|p| decode_payload(p, format));
        Self {
            status: result.status.as_str(),
            finished_at: rfc3339(result.finished_at),
            attempts: result.attempts,
            last_attempt_at: result.last_attempt_at.map(rfc3339),
            value: value.as_ref().map(Decoded::to_json),
            value_encoding: value.as_ref().map(Decoded::encoding),
            error: result.error.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_decode_in_either_format_and_fall_back_to_text_or_bytes() {
        let mp = Payload(Format::MessagePack.encode(&(2, 3)).expect("encode"));
        assert_eq!(
            decode_payload(&mp, Format::MessagePack),
            Decoded::Value {
                value: serde_json::json!([2, 3]),
                encoding: "msgpack"
            }
        );
        // JSON text under a MessagePack storage is read as JSON, not as the fixint '{'.
        let js = Payload(br#"{"to":"a@b"}"#.to_vec());
        assert_eq!(decode_payload(&js, Format::MessagePack).encoding(), "json");
        assert_eq!(
            decode_payload(&Payload(b"plain words".to_vec()), Format::Json),
            Decoded::Text("plain words".into())
        );
        let raw = decode_payload(&Payload(vec![0xc1, 0xff]), Format::MessagePack);
        assert_eq!(raw.compact(), "0xc1ff");
    }

    #[test]
    fn ellipsis_keeps_one_line() {
        assert_eq!(ellipsize("a\nb", 10), "a b");
        assert_eq!(ellipsize("abcdefghijkl", 5), "abcd…");
    }
}
