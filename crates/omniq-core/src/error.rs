//! The structured task error model.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use time::OffsetDateTime;

/// What kind of failure a [`TaskError`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ErrorType {
    /// A failure inside the handler's own logic.
    Runtime,
    /// The run exceeded its timeout.
    Timeout,
    /// The input was invalid; retrying will not help.
    Validation,
    /// A resource (database, disk, memory) was unavailable.
    Resource,
    /// A network call failed.
    Network,
    /// The system (OS, runtime) failed.
    System,
    /// A user-caused failure.
    User,
    /// The handler panicked.
    Panic,
    /// The task's payload could not be decoded for its handler.
    Decode,
    /// Anything not classified (also what unknown wire names decode to).
    #[default]
    #[serde(other)]
    Unknown,
}

impl ErrorType {
    /// The lowercase wire name (`"timeout"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Runtime => "runtime",
            Self::Timeout => "timeout",
            Self::Validation => "validation",
            Self::Resource => "resource",
            Self::Network => "network",
            Self::System => "system",
            Self::User => "user",
            Self::Unknown => "unknown",
            Self::Panic => "panic",
            Self::Decode => "decode",
        }
    }

    /// Parses a wire name; anything unknown maps to [`ErrorType::Unknown`].
    pub fn parse(s: &str) -> Self {
        match s.to_ascii_lowercase().as_str() {
            "runtime" => Self::Runtime,
            "timeout" => Self::Timeout,
            "validation" => Self::Validation,
            "resource" => Self::Resource,
            "network" => Self::Network,
            "system" => Self::System,
            "user" => Self::User,
            "panic" => Self::Panic,
            "decode" => Self::Decode,
            _ => Self::Unknown,
        }
    }

    /// The automatic category: timeout→system, validation→user, resource→system,
    /// network→external, runtime→application, others→unknown.
    pub fn category(self) -> ErrorCategory {
        match self {
            Self::Timeout | Self::Resource => ErrorCategory::System,
            Self::Validation => ErrorCategory::User,
            Self::Network => ErrorCategory::External,
            Self::Runtime => ErrorCategory::Application,
            _ => ErrorCategory::Unknown,
        }
    }

    /// The default severity for this error type.
    pub fn default_severity(self) -> Severity {
        match self {
            Self::Panic | Self::System => Severity::Critical,
            Self::Validation | Self::User | Self::Decode => Severity::Medium,
            Self::Timeout | Self::Network | Self::Resource => Severity::Medium,
            Self::Runtime | Self::Unknown => Severity::High,
        }
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an error comes from, derived from its [`ErrorType`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ErrorCategory {
    /// The handler's code.
    Application,
    /// The machine or runtime.
    System,
    /// The caller's input.
    User,
    /// A remote service.
    External,
    /// Unclassified.
    #[default]
    #[serde(other)]
    Unknown,
}

/// How bad an error is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational.
    Low,
    /// Expected, recoverable.
    #[default]
    Medium,
    /// Needs attention.
    High,
    /// Something is badly wrong.
    Critical,
}

/// A structured record of why a task run failed.
///
/// ```
/// use omniq_core::{ErrorCategory, ErrorType, TaskError};
///
/// let err = TaskError::new(ErrorType::Timeout, "Task exceeded 30 second limit")
///     .with_max_retries(3)
///     .with_context("timeout", 30);
/// assert_eq!(err.category, ErrorCategory::System);
/// assert!(err.can_retry());
/// let next = err.increment_retry();
/// assert_eq!(next.retry_count, 1);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskError {
    /// The kind of failure.
    pub error_type: ErrorType,
    /// Human-readable message.
    pub message: String,
    /// When the error was recorded (UTC).
    #[serde(with = "time::serde::rfc3339", default = "now_utc")]
    pub timestamp: OffsetDateTime,
    /// The error's source chain and/or captured backtrace.
    #[serde(default)]
    pub traceback: Option<String>,
    /// The Rust type name of the originating error, when known.
    #[serde(default)]
    pub exception_type: Option<String>,
    /// How many retries have happened so far.
    #[serde(default)]
    pub retry_count: u32,
    /// How many retries are allowed.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Whether a retry may help.
    #[serde(default = "default_true")]
    pub is_retryable: bool,
    /// Free-form structured context.
    #[serde(default)]
    pub context: BTreeMap<String, serde_json::Value>,
    /// Derived from `error_type` unless set explicitly.
    #[serde(default)]
    pub category: ErrorCategory,
    /// How severe the error is.
    #[serde(default)]
    pub severity: Severity,
}

fn now_utc() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}
fn default_max_retries() -> u32 {
    3
}
fn default_true() -> bool {
    true
}

impl TaskError {
    /// A new error of `error_type`; category and severity follow from the type,
    /// `max_retries` is 3 and the error is retryable unless the type says otherwise
    /// (validation, user and decode errors are not).
    pub fn new(error_type: ErrorType, message: impl Into<String>) -> Self {
        Self {
            error_type,
            message: message.into(),
            timestamp: OffsetDateTime::now_utc(),
            traceback: None,
            exception_type: None,
            retry_count: 0,
            max_retries: default_max_retries(),
            is_retryable: !matches!(
                error_type,
                ErrorType::Validation | ErrorType::User | ErrorType::Decode
            ),
            context: BTreeMap::new(),
            category: error_type.category(),
            severity: error_type.default_severity(),
        }
    }

    /// Captures an error's type name, message and source chain (`from_error`).
    ///
    /// The error type is taken from a [`TaskError`] found in the chain, else inferred
    /// from the chain's text (timeouts, connection errors) and defaults to runtime.
    pub fn from_error(err: &(dyn std::error::Error + 'static)) -> Self {
        if let Some(te) = find_task_error(err) {
            return te.clone();
        }
        let mut chain = Vec::new();
        let mut cur = err.source();
        while let Some(e) = cur {
            chain.push(e.to_string());
            cur = e.source();
        }
        let error_type = infer_type(err);
        let mut te = Self::new(error_type, err.to_string());
        te.traceback = Some(render_chain(&err.to_string(), &chain));
        te.exception_type = Some(type_name_hint(err));
        te
    }

    /// Like [`TaskError::from_error`] for a typed error, keeping its exact type name.
    pub fn from_typed<E: std::error::Error + 'static>(err: &E) -> Self {
        Self::from_error_named(err, std::any::type_name::<E>())
    }

    /// Like [`TaskError::from_error`], recording `type_name` as the exception type
    /// (unless the chain carries a TaskError, which is kept as it is).
    pub fn from_error_named(err: &(dyn std::error::Error + 'static), type_name: &str) -> Self {
        let mut te = Self::from_error(err);
        if find_task_error(err).is_none() {
            te.exception_type = Some(type_name.to_string());
        }
        te
    }

    /// Records a caught panic from its payload.
    pub fn from_panic(payload: &(dyn std::any::Any + Send)) -> Self {
        let msg = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "handler panicked with a non-string payload".to_string()
        };
        let mut te = Self::new(ErrorType::Panic, format!("handler panicked: {msg}"));
        te.exception_type = Some("panic".to_string());
        te.traceback = Some(msg);
        te
    }

    /// `is_retryable && retry_count < max_retries`.
    pub fn can_retry(&self) -> bool {
        self.is_retryable && self.retry_count < self.max_retries
    }

    /// A copy with `retry_count + 1` and a fresh timestamp.
    pub fn increment_retry(&self) -> Self {
        let mut next = self.clone();
        next.retry_count = self.retry_count.saturating_add(1);
        next.timestamp = OffsetDateTime::now_utc();
        next
    }

    /// Sets the retry budget.
    pub fn with_max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// Sets whether a retry may help.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.is_retryable = retryable;
        self
    }

    /// Sets the error type and re-derives category and severity.
    pub fn with_type(mut self, error_type: ErrorType) -> Self {
        self.error_type = error_type;
        self.category = error_type.category();
        self.severity = error_type.default_severity();
        self
    }

    /// Adds one context entry.
    pub fn with_context(mut self, key: impl Into<String>, value: impl Serialize) -> Self {
        let v = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.context.insert(key.into(), v);
        self
    }

    /// Sets the severity.
    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// An old record's plain-string error.
    pub fn from_legacy_message(message: impl Into<String>) -> Self {
        Self::new(ErrorType::Unknown, message)
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error: {}", self.error_type, self.message)
    }
}

impl std::error::Error for TaskError {}

fn find_task_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a TaskError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(te) = e.downcast_ref::<TaskError>() {
            return Some(te);
        }
        cur = e.source();
    }
    None
}

fn render_chain(top: &str, chain: &[String]) -> String {
    let mut s = top.to_string();
    for (i, c) in chain.iter().enumerate() {
        s.push_str(&format!("\n  {i}: caused by: {c}"));
    }
    s
}

fn infer_type(err: &(dyn std::error::Error + 'static)) -> ErrorType {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            return match io.kind() {
                K::TimedOut => ErrorType::Timeout,
                K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::NotConnected
                | K::AddrNotAvailable
                | K::BrokenPipe => ErrorType::Network,
                K::InvalidInput | K::InvalidData => ErrorType::Validation,
                K::OutOfMemory | K::StorageFull | K::PermissionDenied | K::NotFound => {
                    ErrorType::Resource
                }
                _ => ErrorType::System,
            };
        }
        if e.downcast_ref::<serde_json::Error>().is_some() {
            return ErrorType::Validation;
        }
        cur = e.source();
    }
    ErrorType::Runtime
}

fn type_name_hint(err: &(dyn std::error::Error + 'static)) -> String {
    if err.is::<std::io::Error>() {
        "std::io::Error".into()
    } else if err.is::<serde_json::Error>() {
        "serde_json::Error".into()
    } else {
        "dyn std::error::Error".into()
    }
}

/// Reads `error` as a structured TaskError, or as an old plain string.
pub(crate) fn deserialize_error_compat<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<TaskError>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Compat {
        Full(Box<TaskError>),
        Text(String),
    }
    match Option::<Compat>::deserialize(d) {
        Ok(Some(Compat::Full(e))) => Ok(Some(*e)),
        Ok(Some(Compat::Text(s))) => Ok(Some(TaskError::from_legacy_message(s))),
        Ok(None) => Ok(None),
        Err(e) => Err(de::Error::custom(format!("invalid error field: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer failure")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn categories_follow_types() {
        assert_eq!(ErrorType::Timeout.category(), ErrorCategory::System);
        assert_eq!(ErrorType::Validation.category(), ErrorCategory::User);
        assert_eq!(ErrorType::Resource.category(), ErrorCategory::System);
        assert_eq!(ErrorType::Network.category(), ErrorCategory::External);
        assert_eq!(ErrorType::Runtime.category(), ErrorCategory::Application);
        assert_eq!(ErrorType::User.category(), ErrorCategory::Unknown);
        assert_eq!(ErrorType::Panic.category(), ErrorCategory::Unknown);
    }

    #[test]
    fn can_retry_respects_count_and_flag() {
        let e = TaskError::new(ErrorType::Runtime, "x").with_max_retries(1);
        assert!(e.can_retry());
        assert!(!e.increment_retry().can_retry());
        assert!(!e.clone().with_retryable(false).can_retry());
        assert!(!TaskError::new(ErrorType::Validation, "bad").can_retry());
    }

    #[test]
    fn from_error_captures_chain_and_type() {
        let err = Outer(std::io::Error::new(std::io::ErrorKind::TimedOut, "slow"));
        let te = TaskError::from_typed(&err);
        assert_eq!(te.error_type, ErrorType::Timeout);
        assert_eq!(te.message, "outer failure");
        assert!(
            te.traceback
                .as_deref()
                .unwrap_or("")
                .contains("caused by: slow")
        );
        assert!(
            te.exception_type
                .as_deref()
                .unwrap_or("")
                .ends_with("Outer")
        );
    }

    #[test]
    fn from_error_keeps_a_task_error_in_the_chain() {
        let inner = TaskError::new(ErrorType::Validation, "bad input").with_context("field", "x");
        let te = TaskError::from_error(&inner);
        assert_eq!(te, inner);
    }

    #[test]
    fn from_panic_reads_string_payloads() {
        let te = TaskError::from_panic(&"boom");
        assert_eq!(te.error_type, ErrorType::Panic);
        assert!(te.message.contains("boom"));
        let te = TaskError::from_panic(&String::from("owned"));
        assert!(te.message.contains("owned"));
    }
}
