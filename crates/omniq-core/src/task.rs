//! Tasks, their status machine, schedules, payloads and results.

use crate::error::{TaskError, deserialize_error_compat};
use crate::interval;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// A task's identity: a UUID v7 by default (time-ordered), or any UUID the caller supplies.
///
/// Always written as the hyphenated string, in every format, so records stay readable
/// and portable; 16-byte binary UUIDs are accepted on read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub Uuid);

impl Serialize for TaskId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = uuid::Uuid::encode_buffer();
        s.serialize_str(self.0.hyphenated().encode_lower(&mut buf))
    }
}

impl<'de> Deserialize<'de> for TaskId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TaskId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a UUID string or 16 bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TaskId, E> {
                Uuid::parse_str(v).map(TaskId).map_err(E::custom)
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<TaskId, E> {
                Uuid::from_slice(v).map(TaskId).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl TaskId {
    /// A fresh, time-ordered id (UUID v7).
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for TaskId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

impl From<Uuid> for TaskId {
    fn from(u: Uuid) -> Self {
        Self(u)
    }
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Waiting for its eta and a worker.
    Pending,
    /// Claimed by a worker under a lease.
    Running,
    /// Finished successfully (terminal).
    Success,
    /// Finished with a final error.
    Failed,
    /// Cancelled (terminal).
    Cancelled,
}

/// An attempted status change that the status rules do not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid task status transition {from} -> {to}")]
pub struct TransitionError {
    /// The current status.
    pub from: TaskStatus,
    /// The requested status.
    pub to: TaskStatus,
}

impl TaskStatus {
    /// All statuses, in lifecycle order.
    pub const ALL: [TaskStatus; 5] = [
        Self::Pending,
        Self::Running,
        Self::Success,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether `self -> next` is allowed: the status changes of a task's life. Writes
    /// that keep the status (a reschedule of a Pending task, the redelivery of a Running
    /// task whose lease expired) are not status changes and are not checked here.
    ///
    /// ```
    /// use omniq_core::TaskStatus::*;
    /// assert!(Pending.can_transition_to(Running));
    /// assert!(Running.can_transition_to(Pending)); // retry / lease expiry
    /// assert!(Failed.can_transition_to(Pending)); // manual retry
    /// assert!(!Success.can_transition_to(Pending));
    /// assert!(!Pending.can_transition_to(Success));
    /// ```
    pub fn can_transition_to(self, next: TaskStatus) -> bool {
        use TaskStatus::*;
        matches!(
            (self, next),
            (Pending, Running)
                | (Pending, Cancelled)
                | (Running, Success)
                | (Running, Failed)
                | (Running, Pending)
                | (Running, Cancelled)
                | (Failed, Pending)
                | (Failed, Cancelled)
        )
    }

    /// `next` if the transition is allowed, else a [`TransitionError`].
    pub fn transition(self, next: TaskStatus) -> Result<TaskStatus, TransitionError> {
        if self.can_transition_to(next) {
            Ok(next)
        } else {
            Err(TransitionError {
                from: self,
                to: next,
            })
        }
    }

    /// Success and Cancelled are terminal; Failed is final for a run but may be retried by hand.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Success | Self::Cancelled)
    }

    /// Success, Failed or Cancelled: the task is no longer live.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Success | Self::Failed | Self::Cancelled)
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "pending" => Ok(Self::Pending),
            "running" => Ok(Self::Running),
            "success" => Ok(Self::Success),
            "failed" => Ok(Self::Failed),
            "cancelled" | "canceled" => Ok(Self::Cancelled),
            other => Err(format!(
                "unknown task status {other:?} (valid: pending, running, success, failed, cancelled)"
            )),
        }
    }
}

/// When a task runs: `eta` (None = now), and for a recurring task either a repeat
/// `interval` or a `cron` expression.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Schedule {
    /// Earliest time the task may run (UTC).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub eta: Option<OffsetDateTime>,
    /// Repeat interval for recurring tasks.
    #[serde(default, with = "interval::option")]
    pub interval: Option<Duration>,
    /// A cron expression in an IANA time zone, for tasks that recur on a calendar. Stored
    /// as written; the runtime computes each next slot. Absent from records without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<CronSchedule>,
}

/// A cron expression (5 fields, or 6 with seconds first) and the IANA time zone its
/// local times are read in, e.g. `0 9 * * 1-5` in `Europe/Berlin`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CronSchedule {
    /// The expression, as written.
    pub expr: String,
    /// The IANA zone name (`UTC`, `Europe/Berlin`, …).
    pub tz: String,
}

impl Schedule {
    /// True for a recurring task (an interval or a cron expression).
    pub fn is_recurring(&self) -> bool {
        self.interval.is_some() || self.cron.is_some()
    }
}

/// An opaque, serializer-encoded payload (task args or a result value).
///
/// Bytes in binary formats; in human-readable formats a UTF-8 payload is written as a
/// string (JSON args stay readable) and anything else as a byte array.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Payload(pub Vec<u8>);

impl Payload {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) if s.len() <= 256 => write!(f, "Payload({s:?})"),
            _ => write!(f, "Payload({} bytes)", self.0.len()),
        }
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            if let Ok(text) = std::str::from_utf8(&self.0) {
                return s.serialize_str(text);
            }
            return self.0.serialize(s);
        }
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Payload;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes, a string or a byte array")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Payload, E> {
                Ok(Payload(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Payload, E> {
                Ok(Payload(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Payload, E> {
                Ok(Payload(v.as_bytes().to_vec()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Payload, E> {
                Ok(Payload::default())
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Payload, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Payload(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A unit of work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "TaskRecord")]
pub struct Task {
    /// Identity.
    pub id: TaskId,
    /// The handler name the worker dispatches on.
    pub func_path: String,
    /// Serializer-encoded handler arguments.
    pub args: Payload,
    /// Queue name (default `"default"`).
    pub queue: String,
    /// Higher runs first.
    pub priority: i32,
    /// Current status.
    pub status: TaskStatus,
    /// When, and how often, the task runs.
    pub schedule: Schedule,
    /// Retries allowed after the first attempt (3 ⇒ up to 4 runs).
    pub max_retries: u32,
    /// Per-run timeout.
    #[serde(default, with = "opt_duration_secs")]
    pub timeout: Option<Duration>,
    /// Runs started so far (claims).
    pub attempts: u32,
    /// Handler starts recorded with [`Storage::start`](crate::Storage::start): stored as
    /// given by `enqueue` (0 for a new task), one more per start, and back to 0 when the
    /// task begins a new series (a recurring task's next slot, from a completion or a
    /// final failure, or a reschedule).
    /// Unlike `attempts`, claims that never started a handler (taken by a worker that
    /// died before running them) do not count.
    #[serde(default)]
    pub runs: u32,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When the latest run started.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_attempt_at: Option<OffsetDateTime>,
    /// The latest run's error, if it failed.
    #[serde(default)]
    pub error: Option<TaskError>,
    /// At most one live task per (queue, unique_key).
    #[serde(default)]
    pub unique_key: Option<String>,
    /// This task's own retry back-off; None = the worker's policy for its handler,
    /// queue or pool.
    #[serde(default)]
    pub backoff: Option<crate::Backoff>,
}

/// The default queue name.
pub const DEFAULT_QUEUE: &str = "default";

impl Task {
    /// A pending task for `func_path` with encoded `args`, due now, on the default queue.
    pub fn new(func_path: impl Into<String>, args: Payload) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            id: TaskId::new(),
            func_path: func_path.into(),
            args,
            queue: DEFAULT_QUEUE.to_string(),
            priority: 0,
            status: TaskStatus::Pending,
            schedule: Schedule::default(),
            max_retries: 3,
            timeout: None,
            attempts: 0,
            runs: 0,
            created_at: now,
            updated_at: now,
            last_attempt_at: None,
            error: None,
            unique_key: None,
            backoff: None,
        }
    }

    /// The eta, or `created_at` when none was set (the task is due at once).
    pub fn effective_eta(&self) -> OffsetDateTime {
        self.schedule.eta.unwrap_or(self.created_at)
    }

    /// The repeat interval, if this is a recurring task.
    pub fn interval(&self) -> Option<Duration> {
        self.schedule.interval
    }

    /// Whether an error is recorded.
    pub fn has_error(&self) -> bool {
        self.error.is_some()
    }

    /// Whether the task is Failed.
    pub fn is_failed(&self) -> bool {
        self.status == TaskStatus::Failed
    }

    /// The recorded error's message, if any.
    pub fn get_error_message(&self) -> Option<&str> {
        self.error.as_ref().map(|e| e.message.as_str())
    }

    /// Applies a status change under the status rules, touching `updated_at`.
    pub fn set_status(
        &mut self,
        next: TaskStatus,
        now: OffsetDateTime,
    ) -> Result<(), crate::TransitionError> {
        self.status = self.status.transition(next)?;
        self.updated_at = now;
        Ok(())
    }
}

/// The decoding shape of a task: today's fields plus the old top-level `interval`.
#[derive(Deserialize)]
struct TaskRecord {
    id: TaskId,
    func_path: String,
    #[serde(default)]
    args: Payload,
    #[serde(default = "default_queue")]
    queue: String,
    #[serde(default)]
    priority: i32,
    #[serde(default = "default_status")]
    status: TaskStatus,
    #[serde(default)]
    schedule: Schedule,
    #[serde(default = "default_max_retries")]
    max_retries: u32,
    #[serde(default, with = "opt_duration_secs")]
    timeout: Option<Duration>,
    #[serde(default)]
    attempts: u32,
    #[serde(default)]
    runs: u32,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    updated_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    last_attempt_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "deserialize_error_compat")]
    error: Option<TaskError>,
    #[serde(default)]
    unique_key: Option<String>,
    #[serde(default)]
    backoff: Option<crate::Backoff>,
    /// Old records kept the interval at task level as integer seconds (0 = none).
    #[serde(default, with = "interval::option")]
    interval: Option<Duration>,
}

fn default_queue() -> String {
    DEFAULT_QUEUE.to_string()
}
fn default_status() -> TaskStatus {
    TaskStatus::Pending
}
fn default_max_retries() -> u32 {
    3
}

impl From<TaskRecord> for Task {
    fn from(r: TaskRecord) -> Self {
        let mut schedule = r.schedule;
        if schedule.interval.is_none() {
            schedule.interval = r.interval.filter(|d| d.is_positive());
        }
        Task {
            id: r.id,
            func_path: r.func_path,
            args: r.args,
            queue: r.queue,
            priority: r.priority,
            status: r.status,
            schedule,
            max_retries: r.max_retries,
            timeout: r.timeout,
            attempts: r.attempts,
            runs: r.runs,
            created_at: r.created_at,
            updated_at: r.updated_at.unwrap_or(r.created_at),
            last_attempt_at: r.last_attempt_at,
            error: r.error,
            unique_key: r.unique_key,
            backoff: r.backoff,
        }
    }
}

/// The outcome of a task's latest finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// The task.
    pub task_id: TaskId,
    /// Success, Failed or Cancelled.
    pub status: TaskStatus,
    /// The handler's encoded return value, on success.
    #[serde(default)]
    pub result: Option<Payload>,
    /// The final error, on failure.
    #[serde(default, deserialize_with = "deserialize_error_compat")]
    pub error: Option<TaskError>,
    /// When the run finished.
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    /// Attempts used.
    #[serde(default)]
    pub attempts: u32,
    /// When the last attempt started.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_attempt_at: Option<OffsetDateTime>,
}

impl TaskResult {
    /// The result of `task`'s run that just ended: its id, and the attempts and
    /// `last_attempt_at` the task holds now (read them before an interval re-arm resets
    /// the attempts).
    ///
    /// ```
    /// use omniq_core::time::OffsetDateTime;
    /// use omniq_core::{Payload, Task, TaskResult, TaskStatus};
    ///
    /// let now = OffsetDateTime::now_utc();
    /// let mut task = Task::new("reports.build", Payload(b"[]".to_vec()));
    /// task.attempts = 1;
    /// task.last_attempt_at = Some(now);
    /// let r = TaskResult::of_run(&task, TaskStatus::Success, Some(Payload(b"42".to_vec())), None, now);
    /// assert_eq!((r.task_id, r.attempts, r.last_attempt_at), (task.id, 1, Some(now)));
    /// assert!(r.is_success());
    /// ```
    pub fn of_run(
        task: &Task,
        status: TaskStatus,
        result: Option<Payload>,
        error: Option<TaskError>,
        finished_at: OffsetDateTime,
    ) -> Self {
        Self {
            task_id: task.id,
            status,
            result,
            error,
            finished_at,
            attempts: task.attempts,
            last_attempt_at: task.last_attempt_at,
        }
    }

    /// True for a successful run.
    pub fn is_success(&self) -> bool {
        self.status == TaskStatus::Success
    }
}

/// Durations as (fractional) seconds, for timeouts.
pub(crate) mod opt_duration_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Duration;

    pub(crate) fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_some(&d.as_seconds_f64()),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        match Option::<f64>::deserialize(d)? {
            // A stored number can be anything: out of range is an error, never a panic.
            Some(s) if s.is_finite() && s > 0.0 => {
                Duration::checked_seconds_f64(s).map(Some).ok_or_else(|| {
                    serde::de::Error::custom(format!("timeout of {s} seconds is out of range"))
                })
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compat::{get_error_message, has_error, is_failed};

    #[test]
    fn every_disallowed_transition_is_an_error() {
        use TaskStatus::*;
        for from in TaskStatus::ALL {
            for to in TaskStatus::ALL {
                let allowed = from.can_transition_to(to);
                assert_eq!(from.transition(to).is_ok(), allowed, "{from}->{to}");
            }
        }
        assert!(Success.transition(Running).is_err());
        assert!(Cancelled.transition(Pending).is_err());
        assert!(Pending.transition(Failed).is_err());
    }

    #[test]
    fn task_ids_are_time_ordered_and_parse() {
        let a = TaskId::new();
        let b = TaskId::new();
        assert!(a < b);
        assert_eq!(a.to_string().parse::<TaskId>().ok(), Some(a));
    }

    #[test]
    fn helpers_report_errors() {
        let mut t = Task::new("f", Payload::default());
        assert!(!has_error(&t));
        assert_eq!(get_error_message(&t), None);
        t.error = Some(TaskError::new(crate::ErrorType::Runtime, "boom"));
        t.status = TaskStatus::Failed;
        assert!(has_error(&t) && is_failed(&t));
        assert_eq!(get_error_message(&t), Some("boom"));
    }
}
