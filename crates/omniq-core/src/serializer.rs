//! Serializers: MessagePack with named fields (default) and JSON (readable).

use crate::{Task, TaskError, TaskResult};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::str::FromStr;

/// A value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("{format} {op} failed: {message}")]
pub struct SerializationError {
    /// `msgpack` or `json`.
    pub format: &'static str,
    /// `encode` or `decode`.
    pub op: &'static str,
    /// The codec's explanation.
    pub message: String,
}

/// The two built-in wire formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// MessagePack with named fields (records can gain fields and still decode).
    #[default]
    MessagePack,
    /// JSON: intervals as `{"type":"timedelta","total_seconds":…}`, times as RFC 3339.
    Json,
}

impl Format {
    /// `msgpack` or `json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::MessagePack => "msgpack",
            Self::Json => "json",
        }
    }

    /// Encodes any serde value.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, SerializationError> {
        let r = match self {
            Self::MessagePack => rmp_serde::to_vec_named(value).map_err(|e| e.to_string()),
            Self::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
        };
        r.map_err(|message| SerializationError {
            format: self.name(),
            op: "encode",
            message,
        })
    }

    /// Decodes any serde value.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, SerializationError> {
        let r = match self {
            Self::MessagePack => rmp_serde::from_slice(bytes).map_err(|e| e.to_string()),
            Self::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        };
        r.map_err(|message| SerializationError {
            format: self.name(),
            op: "decode",
            message,
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "msgpack" | "messagepack" => Ok(Self::MessagePack),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown serializer {other:?} (valid values: msgpack, json)"
            )),
        }
    }
}

/// Encodes and decodes task records, results and errors.
///
/// ```
/// use omniq_core::{JsonSerializer, Payload, Serializer, Task};
///
/// let task = Task::new("emails.send", Payload(b"{\"to\":\"a@b\"}".to_vec()));
/// let bytes = JsonSerializer.encode_task(&task).unwrap();
/// assert_eq!(JsonSerializer.decode_task(&bytes).unwrap(), task);
/// ```
pub trait Serializer: Send + Sync + fmt::Debug {
    /// The wire format.
    fn format(&self) -> Format;

    /// Encodes a task record.
    fn encode_task(&self, task: &Task) -> Result<Vec<u8>, SerializationError> {
        self.format().encode(task)
    }
    /// Decodes a task record (old formats included).
    fn decode_task(&self, bytes: &[u8]) -> Result<Task, SerializationError> {
        self.format().decode(bytes)
    }
    /// Encodes a result.
    fn encode_result(&self, result: &TaskResult) -> Result<Vec<u8>, SerializationError> {
        self.format().encode(result)
    }
    /// Decodes a result.
    fn decode_result(&self, bytes: &[u8]) -> Result<TaskResult, SerializationError> {
        self.format().decode(bytes)
    }
    /// Encodes a TaskError.
    fn encode_error(&self, error: &TaskError) -> Result<Vec<u8>, SerializationError> {
        self.format().encode(error)
    }
    /// Decodes a TaskError.
    fn decode_error(&self, bytes: &[u8]) -> Result<TaskError, SerializationError> {
        self.format().decode(bytes)
    }
}

/// The default serializer: MessagePack with named fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgPackSerializer;

impl Serializer for MsgPackSerializer {
    fn format(&self) -> Format {
        Format::MessagePack
    }
}

/// The readable serializer: JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonSerializer;

impl Serializer for JsonSerializer {
    fn format(&self) -> Format {
        Format::Json
    }
}

impl Serializer for Format {
    fn format(&self) -> Format {
        *self
    }
}
