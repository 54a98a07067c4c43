//! The backend's configuration: which namespace to use and how long results live.

use omniq_core::time::Duration;
use omniq_core::{StorageError, validate_name};

use crate::BACKEND;

/// How a [`MemoryStorage`](crate::MemoryStorage) connects to a
/// [`MemoryServer`](crate::MemoryServer).
///
/// ```
/// use omniq_example_memory::MemoryConfig;
/// use omniq_core::time::Duration;
///
/// let config = MemoryConfig::new("billing").unwrap().result_ttl(Duration::days(1));
/// assert_eq!(config.namespace(), "billing");
/// assert_eq!(MemoryConfig::from_url("memory://billing?result_ttl=86400").unwrap(), config);
/// assert!(MemoryConfig::new("no spaces").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryConfig {
    namespace: String,
    result_ttl: Option<Duration>,
}

impl MemoryConfig {
    /// The namespace `namespace` (a name that passes [`validate_name`]), results kept
    /// until purged.
    pub fn new(namespace: impl Into<String>) -> Result<Self, StorageError> {
        let namespace = namespace.into();
        validate_name("namespace", &namespace).map_err(|m| StorageError::config(BACKEND, m))?;
        Ok(Self {
            namespace,
            result_ttl: None,
        })
    }

    /// Parses `memory://<namespace>[?result_ttl=<seconds>]`.
    pub fn from_url(url: &str) -> Result<Self, StorageError> {
        let bad = |why: &str| StorageError::config(BACKEND, format!("invalid URL {url:?}: {why}"));
        let rest = url
            .strip_prefix("memory://")
            .ok_or_else(|| bad("expected memory://<namespace>"))?;
        let (namespace, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut config = Self::new(namespace)?;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("result_ttl", secs)) => {
                    let secs: i64 = secs
                        .parse()
                        .ok()
                        .filter(|s| *s > 0)
                        .ok_or_else(|| bad("result_ttl must be whole seconds > 0"))?;
                    config = config.result_ttl(Duration::seconds(secs));
                }
                _ => return Err(bad("the only parameter is result_ttl=<seconds>")),
            }
        }
        Ok(config)
    }

    /// Results older than this (by the wall clock) are no longer returned by
    /// `get_result`. Without it, results are kept until `purge_results` removes them.
    pub fn result_ttl(mut self, ttl: Duration) -> Self {
        self.result_ttl = Some(ttl);
        self
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The result TTL, if any.
    pub fn ttl(&self) -> Option<Duration> {
        self.result_ttl
    }
}
