//! Free-function forms of the migration guide's helpers, kept for code ported from it.
//! New code uses the methods ([`Task::has_error`], [`Task::is_failed`],
//! [`Task::get_error_message`]) and the serde helpers in [`crate::interval`].
//!
//! ```
//! use omniq_core::{Payload, Task, compat};
//!
//! let task = Task::new("f", Payload(vec![]));
//! assert!(!compat::has_error(&task));
//! let v = compat::serialize_timedelta(time::Duration::hours(1));
//! assert_eq!(v["total_seconds"], 3600.0);
//! assert_eq!(compat::deserialize_timedelta(&v).ok(), Some(time::Duration::hours(1)));
//! ```

use crate::{SerializationError, Task};

/// Whether the task has an error ([`Task::has_error`]).
pub fn has_error(task: &Task) -> bool {
    task.has_error()
}

/// Whether the task is Failed ([`Task::is_failed`]).
pub fn is_failed(task: &Task) -> bool {
    task.is_failed()
}

/// The task's error message, if any ([`Task::get_error_message`]).
pub fn get_error_message(task: &Task) -> Option<&str> {
    task.get_error_message()
}

/// An interval as the JSON value `{"type":"timedelta","total_seconds":…}`.
pub fn serialize_timedelta(d: time::Duration) -> serde_json::Value {
    serde_json::json!({"type": "timedelta", "total_seconds": d.as_seconds_f64()})
}

/// Reads a timedelta JSON value, or a bare number of seconds (old records).
pub fn deserialize_timedelta(v: &serde_json::Value) -> Result<time::Duration, SerializationError> {
    crate::interval::deserialize_timedelta(v).map_err(|e| SerializationError {
        format: "json",
        op: "decode",
        message: e.to_string(),
    })
}
