//! From a `--url` (or the `OMNIQ_*` settings) to a storage, through the facade's
//! `omniq::build_storage`, so every backend the facade builds works here unchanged.

use crate::error::{CliError, CliResult};
use omniq::backend::redact_credentials;
use omniq::{Backend, Settings, Storage};
use std::path::PathBuf;
use std::sync::Arc;

/// The URL schemes `--url` accepts, for error messages.
pub(crate) const VALID_URLS: &str = "file://DIR, sqlite://PATH (or sqlite::memory:), \
     postgres://USER@HOST/DB, redis://HOST:PORT, s3://BUCKET/PREFIX (gs://, az://; the \
     `cloud` feature)";

/// Where a storage comes from, for messages: the flag that named it, or the environment.
#[derive(Debug, Clone)]
pub struct Target {
    /// The flag (`--url`, `--from`, `--to`), or None for the `OMNIQ_*` settings.
    pub flag: Option<&'static str>,
    /// The URL given with the flag.
    pub url: Option<String>,
    /// The namespace.
    pub namespace: String,
}

impl Target {
    /// A storage named by `flag URL`.
    pub fn flag(flag: &'static str, url: &str, namespace: &str) -> Self {
        Self {
            flag: Some(flag),
            url: Some(url.to_string()),
            namespace: namespace.to_string(),
        }
    }

    /// `--url` when given, else the `OMNIQ_*` settings.
    pub fn url_or_env(url: Option<&str>, namespace: &str) -> Self {
        Self {
            flag: url.map(|_| "--url"),
            url: url.map(str::to_string),
            namespace: namespace.to_string(),
        }
    }

    /// How to name this storage in a message (credentials redacted).
    pub fn describe(&self) -> String {
        match (&self.flag, &self.url) {
            (Some(flag), Some(url)) => format!("{flag} {}", redact_credentials(url)),
            _ => "the OMNIQ_* settings".to_string(),
        }
    }

    /// The settings this target stands for: the URL's backend and location over the
    /// other `OMNIQ_*` variables (serializer, result TTL, …).
    pub fn settings(&self) -> CliResult<Settings> {
        let env = |k: &str| std::env::var(k).ok();
        let (flag, url) = match (&self.flag, &self.url) {
            (Some(flag), Some(url)) => (*flag, url.as_str()),
            _ => {
                let mut s = Settings::from_env().map_err(|e| CliError::config(e.to_string()))?;
                s.namespace = self.namespace.clone();
                s.validate().map_err(|e| CliError::config(e.to_string()))?;
                return Ok(s);
            }
        };
        let (backend, url_var, base_dir) = parse_url(flag, url)?;
        let mut s = Settings::from_lookup(|k| match k {
            "OMNIQ_BACKEND" => Some(backend.as_str().to_string()),
            "OMNIQ_URL" => url_var.clone(),
            "OMNIQ_DB_URL" => None,
            "OMNIQ_BASE_DIR" => base_dir
                .as_ref()
                .map(|d| d.display().to_string())
                .or_else(|| env(k)),
            other => env(other),
        })
        .map_err(|e| CliError::config(self.reword(&e.to_string())))?;
        s.namespace = self.namespace.clone();
        s.validate()
            .map_err(|e| CliError::config(self.reword(&e.to_string())))?;
        Ok(s)
    }

    /// Messages from the facade name `OMNIQ_URL`; when the URL came from a flag, name
    /// the flag instead.
    fn reword(&self, message: &str) -> String {
        match self.flag {
            Some(flag) => message.replace("OMNIQ_URL", flag),
            None => message.to_string(),
        }
    }

    /// Opens the storage.
    pub async fn open(&self) -> CliResult<Arc<dyn Storage>> {
        let settings = self.settings()?;
        omniq::build_storage(&settings).await.map_err(|e| {
            let mut err = CliError::runtime(&format!("cannot open {}", self.describe()), &e);
            err.message = self.reword(&err.message);
            err
        })
    }
}

/// A URL's backend, the URL to hand the facade (`OMNIQ_URL`) and, for `file://`, the
/// directory (`OMNIQ_BASE_DIR`).
fn parse_url(flag: &str, url: &str) -> CliResult<(Backend, Option<String>, Option<PathBuf>)> {
    let lower = url.trim().to_ascii_lowercase();
    let bad = |why: &str| {
        CliError::config(format!(
            "{flag} {}: {why} (valid: {VALID_URLS})",
            redact_credentials(url)
        ))
    };
    if let Some(dir) = url.trim().strip_prefix("file://") {
        if dir.is_empty() {
            return Err(bad("names no directory"));
        }
        return Ok((Backend::File, None, Some(PathBuf::from(dir))));
    }
    let backend = if omniq::is_object_store_url(&lower) {
        // The file backend in an object store (needs the `cloud` feature; the facade
        // says so otherwise).
        Backend::File
    } else if lower.starts_with("sqlite:") {
        Backend::Sqlite
    } else if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        Backend::Postgres
    } else if lower.starts_with("redis://")
        || lower.starts_with("rediss://")
        || lower.starts_with("redis+")
    {
        Backend::Redis
    } else if lower.contains("://") {
        return Err(bad("unknown scheme"));
    } else {
        return Err(bad("give a URL with its scheme"));
    };
    Ok((backend, Some(url.trim().to_string()), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_pick_the_backend() {
        let (b, u, d) = parse_url("--url", "sqlite:///tmp/x.db").expect("sqlite");
        assert_eq!(
            (b, u.as_deref(), d),
            (Backend::Sqlite, Some("sqlite:///tmp/x.db"), None)
        );
        let (b, u, d) = parse_url("--url", "s3://bucket/q").expect("s3");
        assert_eq!(
            (b, u.as_deref(), d),
            (Backend::File, Some("s3://bucket/q"), None)
        );
        let (b, _, _) = parse_url("--url", "postgresql://u@h/db").expect("pg");
        assert_eq!(b, Backend::Postgres);
        let (b, _, _) = parse_url("--url", "redis://127.0.0.1:6379").expect("redis");
        assert_eq!(b, Backend::Redis);
        let (b, u, d) = parse_url("--url", "file:///var/q").expect("file");
        assert_eq!(
            (b, u, d),
            (Backend::File, None, Some(PathBuf::from("/var/q")))
        );
    }

    #[test]
    fn bad_urls_name_the_flag_and_the_valid_forms_without_the_password() {
        for url in ["mongo://u:hunter2@h/db", "/tmp/x.db", "file://"] {
            let err = parse_url("--from", url).expect_err(url).message;
            assert!(err.starts_with("--from "), "{err}");
            assert!(
                err.contains("sqlite://PATH") && err.contains("redis://"),
                "{err}"
            );
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
