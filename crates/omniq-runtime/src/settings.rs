//! [`Settings`] and `Settings::from_env()`.

use crate::error::{Error, Result};
use omniq_core::Format;
use std::path::PathBuf;
use time::Duration;

/// Which storage backend to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The embedded default: tasks as files under `base_dir` (no server needed; several
    /// processes may share the directory).
    #[default]
    File,
    /// SQLite at `url` (a path or `sqlite://…`), or `base_dir/omniq.db`.
    Sqlite,
    /// PostgreSQL at `url`.
    Postgres,
    /// Redis at `url`.
    Redis,
}

impl Backend {
    /// The cargo feature of `omniq` that builds this backend.
    pub fn feature(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Redis => "redis",
        }
    }

    /// The name used in `OMNIQ_BACKEND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Redis => "redis",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "file" => Ok(Self::File),
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            "redis" => Ok(Self::Redis),
            other => Err(format!(
                "OMNIQ_BACKEND={other:?} is not valid (valid values: file, sqlite, postgres, redis)"
            )),
        }
    }
}

/// OmniQ's configuration. Build it in code or with [`Settings::from_env`].
#[derive(Clone, PartialEq)]
pub struct Settings {
    /// `OMNIQ_BACKEND` (default file).
    pub backend: Backend,
    /// `OMNIQ_URL` or `OMNIQ_DB_URL`: server URL (never printed with its password).
    pub url: Option<String>,
    /// `OMNIQ_BASE_DIR` (default `./omniq_data`).
    pub base_dir: PathBuf,
    /// `OMNIQ_DEFAULT_TIMEOUT` in seconds (default none).
    pub default_timeout: Option<Duration>,
    /// `OMNIQ_DEFAULT_MAX_RETRIES` (default 3).
    pub default_max_retries: u32,
    /// `OMNIQ_RESULT_TTL` in seconds (default 7 days).
    pub result_ttl: Duration,
    /// `OMNIQ_SERIALIZER`: msgpack (default) or json.
    pub serializer: Format,
    /// `OMNIQ_LOG_LEVEL` (default INFO); read by `omniq_runtime::logging` too.
    pub log_level: String,
    /// Storage namespace (table prefix / key prefix), default `omniq`.
    pub namespace: String,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("backend", &self.backend)
            .field(
                "url",
                &self.url.as_deref().map(omniq_core::redact_credentials),
            )
            .field("base_dir", &self.base_dir)
            .field("default_timeout", &self.default_timeout)
            .field("default_max_retries", &self.default_max_retries)
            .field("result_ttl", &self.result_ttl)
            .field("serializer", &self.serializer)
            .field("log_level", &self.log_level)
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            backend: Backend::File,
            url: None,
            base_dir: PathBuf::from("./omniq_data"),
            default_timeout: None,
            default_max_retries: 3,
            result_ttl: Duration::days(7),
            serializer: Format::MessagePack,
            log_level: "INFO".into(),
            namespace: "omniq".into(),
        }
    }
}

const LOG_LEVELS: [&str; 5] = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

/// Whether `url` names an object store the file backend can use instead of
/// `OMNIQ_BASE_DIR` (`s3://`, `gs://`, `az://`, `abfs[s]://`, …; they need the facade's
/// `file-cloud` feature).
pub fn is_object_store_url(url: &str) -> bool {
    url.trim().split_once("://").is_some_and(|(scheme, _)| {
        matches!(
            scheme.to_ascii_lowercase().as_str(),
            "s3" | "s3a" | "gs" | "az" | "adl" | "azure" | "abfs" | "abfss"
        )
    })
}

impl Settings {
    /// Reads the `OMNIQ_*` variables from the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `lookup` (a map in tests, the environment in `from_env`).
    /// A bad value is an error naming the variable and the valid values.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut s = Self::default();
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        if let Some(v) = get("OMNIQ_BACKEND") {
            s.backend = v.parse().map_err(Error::Config)?;
        }
        s.url = match (get("OMNIQ_URL"), get("OMNIQ_DB_URL")) {
            (Some(a), Some(b)) if a.trim() != b.trim() => {
                return Err(Error::Config(
                    "OMNIQ_URL and OMNIQ_DB_URL are both set and differ; set only one".into(),
                ));
            }
            (a, b) => a.or(b),
        };
        if let Some(v) = get("OMNIQ_BASE_DIR") {
            s.base_dir = PathBuf::from(v);
        }
        if let Some(v) = get("OMNIQ_DEFAULT_TIMEOUT") {
            s.default_timeout = Some(positive_seconds("OMNIQ_DEFAULT_TIMEOUT", &v)?);
        }
        if let Some(v) = get("OMNIQ_DEFAULT_MAX_RETRIES") {
            s.default_max_retries = v.trim().parse().map_err(|_| {
                Error::Config(format!(
                    "OMNIQ_DEFAULT_MAX_RETRIES={v:?} is not valid (valid values: a whole number 0..=4294967295)"
                ))
            })?;
        }
        if let Some(v) = get("OMNIQ_RESULT_TTL") {
            s.result_ttl = positive_seconds("OMNIQ_RESULT_TTL", &v)?;
        }
        if let Some(v) = get("OMNIQ_SERIALIZER") {
            s.serializer = v.parse().map_err(|_| {
                Error::Config(format!(
                    "OMNIQ_SERIALIZER={v:?} is not valid (valid values: msgpack, json)"
                ))
            })?;
        }
        if let Some(v) = get("OMNIQ_LOG_LEVEL") {
            let mut up = v.trim().to_ascii_uppercase();
            if up == "WARN" {
                up = "WARNING".into();
            }
            if !LOG_LEVELS.contains(&up.as_str()) {
                return Err(Error::Config(format!(
                    "OMNIQ_LOG_LEVEL={v:?} is not valid (valid values: {})",
                    LOG_LEVELS.join(", ")
                )));
            }
            s.log_level = up;
        }
        s.validate()?;
        Ok(s)
    }

    /// Checks settings built in code the way `from_env` checks the environment.
    pub fn validate(&self) -> Result<()> {
        if matches!(self.backend, Backend::Postgres | Backend::Redis) && self.url.is_none() {
            return Err(Error::Config(format!(
                "OMNIQ_BACKEND={} needs OMNIQ_URL (or OMNIQ_DB_URL) to be set",
                self.backend.as_str()
            )));
        }
        if self.backend == Backend::File
            && self.url.as_deref().is_some_and(|u| !is_object_store_url(u))
        {
            return Err(Error::Config(
                "OMNIQ_URL is set but OMNIQ_BACKEND=file stores under OMNIQ_BASE_DIR (or in \
                 the object store an s3://, gs:// or az:// OMNIQ_URL names); set OMNIQ_BACKEND \
                 to the URL's backend (sqlite, postgres, redis) or unset OMNIQ_URL"
                    .into(),
            ));
        }
        if let Some(t) = self.default_timeout {
            if !t.is_positive() {
                return Err(Error::Config(format!(
                    "OMNIQ_DEFAULT_TIMEOUT must be positive, got {t}"
                )));
            }
        }
        if !self.result_ttl.is_positive() {
            return Err(Error::Config(format!(
                "OMNIQ_RESULT_TTL must be positive, got {}",
                self.result_ttl
            )));
        }
        omniq_core::validate_name("namespace", &self.namespace).map_err(Error::Config)?;
        Ok(())
    }
}

fn positive_seconds(var: &str, v: &str) -> Result<Duration> {
    let parsed = v
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 0.001)
        .and_then(Duration::checked_seconds_f64)
        .filter(|d| *d <= Duration::days(36_525));
    match parsed {
        Some(d) => Ok(d),
        None => Err(Error::Config(format!(
            "{var}={v:?} is not valid (valid values: a positive number of seconds from 0.001 to 100 years, e.g. 30 or 0.5)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Settings> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_need_no_server() {
        let s = from(&[]).expect("defaults");
        assert_eq!(s.backend, Backend::File);
        assert_eq!(s.base_dir, PathBuf::from("./omniq_data"));
        assert_eq!(s.serializer, Format::MessagePack);
    }

    #[test]
    fn every_variable_is_read() {
        let s = from(&[
            ("OMNIQ_BACKEND", "sqlite"),
            ("OMNIQ_DB_URL", "/tmp/q.db"),
            ("OMNIQ_BASE_DIR", "/data"),
            ("OMNIQ_DEFAULT_TIMEOUT", "2.5"),
            ("OMNIQ_DEFAULT_MAX_RETRIES", "7"),
            ("OMNIQ_RESULT_TTL", "60"),
            ("OMNIQ_SERIALIZER", "json"),
            ("OMNIQ_LOG_LEVEL", "debug"),
        ])
        .expect("valid");
        assert_eq!(s.backend, Backend::Sqlite);
        assert_eq!(s.url.as_deref(), Some("/tmp/q.db"));
        assert_eq!(s.default_timeout, Some(Duration::milliseconds(2500)));
        assert_eq!(s.default_max_retries, 7);
        assert_eq!(s.result_ttl, Duration::minutes(1));
        assert_eq!(s.serializer, Format::Json);
        assert_eq!(s.log_level, "DEBUG");
    }

    #[test]
    fn bad_values_name_the_variable_and_valid_values() {
        let cases = [
            ("OMNIQ_BACKEND", "mongo", "file, sqlite, postgres, redis"),
            ("OMNIQ_SERIALIZER", "xml", "msgpack, json"),
            ("OMNIQ_DEFAULT_TIMEOUT", "-1", "positive number of seconds"),
            ("OMNIQ_RESULT_TTL", "soon", "positive number of seconds"),
            ("OMNIQ_RESULT_TTL", "1e20", "positive number of seconds"),
            (
                "OMNIQ_DEFAULT_TIMEOUT",
                "1e-10",
                "positive number of seconds",
            ),
            ("OMNIQ_DEFAULT_MAX_RETRIES", "-2", "whole number"),
            (
                "OMNIQ_LOG_LEVEL",
                "LOUD",
                "DEBUG, INFO, WARNING, ERROR, CRITICAL",
            ),
        ];
        for (var, val, valid) in cases {
            let err = from(&[(var, val)]).expect_err(var).to_string();
            assert!(err.contains(var) && err.contains(valid), "{err}");
        }
    }

    #[test]
    fn conflicting_urls_and_url_with_file_backend_are_errors() {
        let err = from(&[
            ("OMNIQ_URL", "a.db"),
            ("OMNIQ_DB_URL", "b.db"),
            ("OMNIQ_BACKEND", "sqlite"),
        ])
        .expect_err("conflict")
        .to_string();
        assert!(
            err.contains("OMNIQ_URL") && err.contains("OMNIQ_DB_URL"),
            "{err}"
        );
        let err = from(&[("OMNIQ_URL", "a.db")])
            .expect_err("file + url")
            .to_string();
        assert!(err.contains("OMNIQ_BACKEND"), "{err}");
        // An object-store URL is where the file backend keeps its files.
        let s = from(&[("OMNIQ_URL", "s3://bucket/queues")]).expect("file + s3");
        assert_eq!(
            (s.backend, s.url.as_deref()),
            (Backend::File, Some("s3://bucket/queues"))
        );
        assert!(is_object_store_url("GS://b/p") && is_object_store_url("abfss://c@a/p"));
        assert!(!is_object_store_url("redis://h") && !is_object_store_url("a.db"));
        assert_eq!(
            from(&[("OMNIQ_LOG_LEVEL", "warn")])
                .expect("alias")
                .log_level,
            "WARNING"
        );
    }

    #[test]
    fn server_backends_need_a_url_and_never_print_its_password() {
        let err = from(&[("OMNIQ_BACKEND", "postgres")])
            .expect_err("no url")
            .to_string();
        assert!(err.contains("OMNIQ_URL"), "{err}");
        let s = from(&[
            ("OMNIQ_BACKEND", "redis"),
            ("OMNIQ_URL", "redis://:topsecret@localhost:6379"),
        ])
        .expect("valid");
        assert!(!format!("{s:?}").contains("topsecret"));
    }
}
