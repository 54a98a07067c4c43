//! The one error type every storage operation returns.

use std::fmt;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, as a kind tests and the runtime can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StorageErrorKind {
    /// The task (or result) does not exist (the guide's `NotFoundError`).
    NotFound,
    /// The presented lease token is no longer current (fencing). Batch lease writes
    /// answer this per item as [`Outcome::LeaseLost`](crate::Outcome::LeaseLost); the
    /// single-item helpers of [`StorageExt`](crate::StorageExt) turn it into this kind.
    LeaseLost,
    /// The change conflicts with the current state: an invalid status transition
    /// (rescheduling a finished task), or an enqueued id that already exists.
    Conflict,
    /// Temporarily unavailable: the server is down or busy; retrying is safe.
    Unavailable,
    /// A record could not be encoded or decoded.
    Serialization,
    /// The backend does not support the operation.
    Unsupported,
    /// Invalid input or configuration: a builder value, a URL, or a queue or namespace
    /// name that fails [`validate_name`](crate::validate_name).
    Config,
    /// The storage was closed.
    Closed,
    /// Any other backend failure.
    Backend,
}

impl StorageErrorKind {
    /// A short snake-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::LeaseLost => "lease_lost",
            Self::Conflict => "conflict",
            Self::Unavailable => "unavailable",
            Self::Serialization => "serialization",
            Self::Unsupported => "unsupported",
            Self::Config => "config",
            Self::Closed => "closed",
            Self::Backend => "backend",
        }
    }
}

impl fmt::Display for StorageErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A storage failure: a kind, the backend's name, the operation, a message and the
/// source chain.
///
/// ```
/// use omniq_core::{StorageError, StorageErrorKind};
///
/// let e = StorageError::not_found("sqlite", "task 42 not found");
/// assert!(e.is_not_found());
/// assert_eq!(e.kind(), StorageErrorKind::NotFound);
/// assert_eq!(e.to_string(), "sqlite: not_found: task 42 not found");
///
/// let e = e.with_operation("get_task");
/// assert_eq!(e.operation(), Some("get_task"));
/// assert_eq!(e.to_string(), "sqlite get_task: not_found: task 42 not found");
/// ```
#[derive(Debug)]
pub struct StorageError {
    kind: StorageErrorKind,
    backend: &'static str,
    operation: Option<&'static str>,
    message: String,
    source: Option<BoxError>,
}

impl StorageError {
    /// A new error of `kind` raised by `backend`. The message is passed through
    /// [`redact_credentials`] so connection URLs never leak passwords.
    pub fn new(kind: StorageErrorKind, backend: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            backend,
            operation: None,
            message: redact_credentials(&message.into()),
            source: None,
        }
    }

    /// Names the storage operation that failed (`claim`, `complete`, …).
    pub fn with_operation(mut self, operation: &'static str) -> Self {
        self.operation = Some(operation);
        self
    }

    /// The operation that failed, when the raiser named it.
    pub fn operation(&self) -> Option<&'static str> {
        self.operation
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Shorthand for [`StorageErrorKind::NotFound`].
    pub fn not_found(backend: &'static str, message: impl Into<String>) -> Self {
        Self::new(StorageErrorKind::NotFound, backend, message)
    }

    /// Shorthand for [`StorageErrorKind::Closed`].
    pub fn closed(backend: &'static str) -> Self {
        Self::new(
            StorageErrorKind::Closed,
            backend,
            "storage is closed; create a new instance to continue",
        )
    }

    /// Shorthand for [`StorageErrorKind::Config`].
    pub fn config(backend: &'static str, message: impl Into<String>) -> Self {
        Self::new(StorageErrorKind::Config, backend, message)
    }

    /// Shorthand for [`StorageErrorKind::Conflict`]: an enqueued id that exists, a
    /// finished task that cannot be rescheduled, a unique key held by another task.
    ///
    /// ```
    /// use omniq_core::{StorageError, StorageErrorKind};
    ///
    /// let e = StorageError::conflict("mine", "task 42 already exists");
    /// assert_eq!(e.kind(), StorageErrorKind::Conflict);
    /// ```
    pub fn conflict(backend: &'static str, message: impl Into<String>) -> Self {
        Self::new(StorageErrorKind::Conflict, backend, message)
    }

    /// Shorthand for [`StorageErrorKind::Unavailable`]: the server is down or busy, and
    /// retrying later is safe.
    ///
    /// ```
    /// use omniq_core::StorageError;
    ///
    /// let e = StorageError::unavailable("mine", "connection refused");
    /// assert!(e.is_temporary());
    /// ```
    pub fn unavailable(backend: &'static str, message: impl Into<String>) -> Self {
        Self::new(StorageErrorKind::Unavailable, backend, message)
    }

    /// Shorthand for [`StorageErrorKind::Backend`]: any other failure of the backend.
    /// (Named `backend_error` because [`backend`](Self::backend) is the backend's name.)
    ///
    /// ```
    /// use omniq_core::{StorageError, StorageErrorKind};
    ///
    /// let io = std::io::Error::other("disk on fire");
    /// let e = StorageError::backend_error("mine", "write failed").with_source(io);
    /// assert_eq!(e.kind(), StorageErrorKind::Backend);
    /// assert_eq!(e.backend(), "mine");
    /// ```
    pub fn backend_error(backend: &'static str, message: impl Into<String>) -> Self {
        Self::new(StorageErrorKind::Backend, backend, message)
    }

    /// Shorthand for [`StorageErrorKind::Serialization`] from a codec error.
    pub fn serialization(backend: &'static str, err: crate::SerializationError) -> Self {
        Self::new(StorageErrorKind::Serialization, backend, err.to_string()).with_source(err)
    }

    /// The kind.
    pub fn kind(&self) -> StorageErrorKind {
        self.kind
    }

    /// The backend that raised it (`sqlite`, `postgres`, …).
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// The (redacted) message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// True for [`StorageErrorKind::NotFound`].
    pub fn is_not_found(&self) -> bool {
        self.kind == StorageErrorKind::NotFound
    }

    /// True when retrying later is safe and may succeed ([`StorageErrorKind::Unavailable`]).
    pub fn is_temporary(&self) -> bool {
        self.kind == StorageErrorKind::Unavailable
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.operation {
            Some(op) => write!(f, "{} {op}: {}: {}", self.backend, self.kind, self.message),
            None => write!(f, "{}: {}: {}", self.backend, self.kind, self.message),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Converts a backend's private error into a [`StorageError`] that names the operation,
/// so each `impl Storage` method is one line over an inner function that uses `?`.
///
/// ```
/// use omniq_core::{OperationExt, StorageError, StorageErrorKind};
///
/// #[derive(Debug)]
/// struct DriverError;
/// impl From<DriverError> for StorageError {
///     fn from(_: DriverError) -> Self {
///         StorageError::new(StorageErrorKind::Unavailable, "mine", "connection refused")
///     }
/// }
///
/// let r: Result<(), DriverError> = Err(DriverError);
/// let e = r.operation("claim").unwrap_err();
/// assert_eq!(e.operation(), Some("claim"));
/// assert!(e.is_temporary());
/// ```
pub trait OperationExt<T> {
    /// Converts the error and names `operation` on it (keeping a name already set).
    fn operation(self, operation: &'static str) -> Result<T, StorageError>;
}

impl<T, E: Into<StorageError>> OperationExt<T> for Result<T, E> {
    fn operation(self, operation: &'static str) -> Result<T, StorageError> {
        self.map_err(|e| {
            let e: StorageError = e.into();
            if e.operation.is_some() {
                e
            } else {
                e.with_operation(operation)
            }
        })
    }
}

/// Replaces the password of any `scheme://user:password@host` URL in `text` with `***`.
///
/// ```
/// use omniq_core::redact_credentials;
/// assert_eq!(
///     redact_credentials("connect postgres://app:s3cret@db:5432/q failed"),
///     "connect postgres://app:***@db:5432/q failed"
/// );
/// assert_eq!(redact_credentials("redis://:pw@h:6379"), "redis://:***@h:6379");
/// ```
pub fn redact_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        // The authority ends at the first '/', whitespace or quote.
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_never_contain_passwords() {
        let e = StorageError::new(
            StorageErrorKind::Unavailable,
            "postgres",
            "cannot reach postgres://u:hunter2@localhost/db",
        );
        assert!(!e.to_string().contains("hunter2"));
        assert!(!format!("{e:?}").contains("hunter2"));
        assert!(e.is_temporary());
    }

    #[test]
    fn source_chain_is_kept() {
        let io = std::io::Error::other("disk on fire");
        let e =
            StorageError::new(StorageErrorKind::Backend, "file", "write failed").with_source(io);
        let src = std::error::Error::source(&e).map(|s| s.to_string());
        assert_eq!(src.as_deref(), Some("disk on fire"));
    }

    #[test]
    fn urls_without_passwords_are_unchanged() {
        assert_eq!(
            redact_credentials("postgres://u@h/db and redis://h:6379/0"),
            "postgres://u@h/db and redis://h:6379/0"
        );
    }
}
