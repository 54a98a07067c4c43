//! Where a scenario runs: a backend, its location and a namespace of its own, deleted
//! when the scenario ends.

use anyhow::{Context, Result};
use omniq::{Backend, Settings, Storage};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The backends the harness knows, in report order.
pub const ALL: [Backend; 4] = [
    Backend::File,
    Backend::Sqlite,
    Backend::Postgres,
    Backend::Redis,
];

/// The Postgres server (`OMNIQ_TEST_POSTGRES_URL`, default the local one).
pub fn postgres_url() -> String {
    std::env::var("OMNIQ_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The Redis server (`OMNIQ_TEST_REDIS_URL`, default the local one).
pub fn redis_url() -> String {
    std::env::var("OMNIQ_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// One scenario's place: backend, URL (or directory / database path) and namespace.
#[derive(Debug, Clone)]
pub struct Target {
    /// The backend.
    pub backend: Backend,
    /// Server URL, SQLite database path, or (file) the base directory.
    pub location: String,
    /// The namespace: unique per scenario run.
    pub namespace: String,
    /// Holds the temporary directory of the embedded backends.
    _dir: Option<Arc<tempfile::TempDir>>,
}

impl Target {
    /// A fresh namespace for `scenario` on `backend`; `url` overrides the server.
    pub fn new(backend: Backend, scenario: &str, url: Option<&str>) -> Result<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let namespace = format!(
            "chaos_{scenario}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let (location, dir) = match backend {
            Backend::File | Backend::Sqlite => {
                let dir = tempfile::Builder::new()
                    .prefix("omniq-chaos-")
                    .tempdir()
                    .context("temporary directory")?;
                let loc = match backend {
                    Backend::File => dir.path().to_path_buf(),
                    _ => dir.path().join("chaos.db"),
                };
                (loc.display().to_string(), Some(Arc::new(dir)))
            }
            Backend::Postgres => (url.map_or_else(postgres_url, str::to_string), None),
            Backend::Redis => (url.map_or_else(redis_url, str::to_string), None),
        };
        Ok(Self {
            backend,
            location,
            namespace,
            _dir: dir,
        })
    }

    /// A place that already exists (a worker process opening the orchestrator's).
    pub fn existing(backend: Backend, location: String, namespace: String) -> Self {
        Self {
            backend,
            location,
            namespace,
            _dir: None,
        }
    }

    /// The same place with another server URL (a private server of the scenario).
    pub fn with_location(mut self, location: String) -> Self {
        self.location = location;
        self
    }

    /// The settings that open this target.
    pub fn settings(&self) -> Settings {
        let mut s = Settings {
            backend: self.backend,
            namespace: self.namespace.clone(),
            ..Settings::default()
        };
        match self.backend {
            Backend::File => s.base_dir = PathBuf::from(&self.location),
            _ => s.url = Some(self.location.clone()),
        }
        s
    }

    /// Opens a storage on it.
    pub async fn open(&self) -> Result<Arc<dyn Storage>> {
        omniq::build_storage(&self.settings())
            .await
            .with_context(|| format!("open {} ({})", self.backend.as_str(), self.namespace))
    }

    /// The command-line arguments that let a worker process open it.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--backend".into(),
            self.backend.as_str().into(),
            "--location".into(),
            self.location.clone(),
            "--namespace".into(),
            self.namespace.clone(),
        ]
    }

    /// Deletes everything of the namespace on a server (the embedded backends' directory
    /// goes with the last clone of this target).
    pub async fn cleanup(&self) -> Result<()> {
        match self.backend {
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.location).await?;
                sqlx::query(&format!(
                    r#"DROP SCHEMA IF EXISTS "{}" CASCADE"#,
                    self.namespace
                ))
                .execute(&pool)
                .await?;
                pool.close().await;
            }
            Backend::Redis => {
                crate::raw::redis_delete_namespace(&self.location, &self.namespace).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Parses `--backend`: one name or `all`.
pub fn parse_backends(s: &str) -> Result<Vec<Backend>> {
    if s == "all" {
        return Ok(ALL.to_vec());
    }
    s.split(',')
        .map(|b| {
            b.parse::<Backend>()
                .map_err(|e| anyhow::anyhow!("--backend: {e} (or all)"))
        })
        .collect()
}
