//! Configuration and the builder of [`crate::SqliteStorage`].

use crate::SqliteStorage;
use crate::error::{Result, config};
use omniq_core::{Format, OperationExt, StorageError, validate_name};
use std::path::{Path, PathBuf};

/// The default namespace (table prefix).
pub const DEFAULT_NAMESPACE: &str = "omniq";

/// How long results are kept by default: 7 days.
pub const DEFAULT_RESULT_TTL: time::Duration = time::Duration::days(7);

/// Default size of the reader pool (file mode).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4;

/// Default SQLite busy timeout: how long a writer waits for another process's lock.
pub const DEFAULT_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How hard a commit tries to reach the disk (SQLite's `synchronous` in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every commit is synced to disk: an acknowledged enqueue survives power loss.
    #[default]
    Full,
    /// Commits survive a crash of the process but the last ones may be lost on power
    /// loss or an OS crash; faster.
    Normal,
}

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A database file (created if missing, with its parent directories).
    File(PathBuf),
    /// A private in-memory database that lives as long as the storage.
    Memory,
}

/// Everything [`SqliteStorageBuilder::build`] needs; see the builder for each field.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// File or memory.
    pub location: Option<Location>,
    /// Table prefix: tables are `{namespace}_tasks`, `{namespace}_results`, ….
    pub namespace: String,
    /// Serializer for stored TaskErrors (args and results are stored as given).
    pub format: Format,
    /// Results older than this are no longer returned by `get_result`.
    pub result_ttl: time::Duration,
    /// Reader pool size in file mode (writes always use one connection).
    pub max_connections: u32,
    /// SQLite busy timeout.
    pub busy_timeout: std::time::Duration,
    /// Commit durability (default [`Durability::Full`]).
    pub durability: Durability,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            location: None,
            namespace: DEFAULT_NAMESPACE.to_string(),
            format: Format::default(),
            result_ttl: DEFAULT_RESULT_TTL,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            durability: Durability::default(),
        }
    }
}

impl SqliteConfig {
    /// The defaults with the location a URL names:
    /// `sqlite://PATH`, `sqlite:PATH` or a plain path for a file (created if missing),
    /// `sqlite::memory:` or `:memory:` for a private in-memory database.
    ///
    /// ```
    /// use omniq_sqlite::{Location, SqliteConfig};
    ///
    /// let c = SqliteConfig::from_url("sqlite://./data/omniq.db").unwrap();
    /// assert_eq!(c.location, Some(Location::File("./data/omniq.db".into())));
    /// assert_eq!(SqliteConfig::from_url(":memory:").unwrap().location, Some(Location::Memory));
    /// assert!(SqliteConfig::from_url("sqlite://x.db?mode=ro").is_err());
    /// ```
    pub fn from_url(url: &str) -> Result<Self, StorageError> {
        Self::parse_url(url).operation("configure")
    }

    fn parse_url(url: &str) -> Result<Self> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if path.contains('?') {
            return Err(config(format!(
                "SQLite URL {url:?}: give a file path (or :memory:) without query parameters; \
                 set other options on SqliteStorage::builder()"
            )));
        }
        let location = match path {
            "" => return Err(config(format!("SQLite URL {url:?} names no file"))),
            ":memory:" => Location::Memory,
            p => Location::File(PathBuf::from(p)),
        };
        Ok(Self {
            location: Some(location),
            ..Self::default()
        })
    }

    /// Checks every value; the first problem is a `Config` error naming it.
    pub fn validate(&self) -> Result<(), StorageError> {
        self.check().operation("configure")
    }

    fn check(&self) -> Result<()> {
        validate_name("namespace", &self.namespace).map_err(config)?;
        // SQLite table names ignore case, so `App` and `app` would share tables; and
        // names starting with `sqlite` are reserved.
        if self.namespace.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(config(format!(
                "invalid namespace {:?}: SQLite table names ignore case, use lowercase",
                self.namespace
            )));
        }
        if self.namespace.to_ascii_lowercase().starts_with("sqlite") {
            return Err(config(format!(
                "invalid namespace {:?}: names starting with \"sqlite\" are reserved by SQLite",
                self.namespace
            )));
        }
        match &self.location {
            None => {
                return Err(config(
                    "no database location: call .path(file) or .in_memory()",
                ));
            }
            Some(Location::File(p)) if p.as_os_str().is_empty() => {
                return Err(config("database path is empty"));
            }
            Some(_) => {}
        }
        if !self.result_ttl.is_positive() {
            return Err(config(format!(
                "result_ttl must be positive, got {}",
                self.result_ttl
            )));
        }
        if self.max_connections == 0 {
            return Err(config("max_connections must be at least 1"));
        }
        Ok(())
    }
}

/// Builds a [`SqliteStorage`].
///
/// ```no_run
/// # async fn demo() -> Result<(), omniq_core::StorageError> {
/// use omniq_sqlite::SqliteStorage;
///
/// let storage = SqliteStorage::builder()
///     .path("./omniq_data/omniq.db")
///     .namespace("billing")
///     .result_ttl(time::Duration::days(1))
///     .build()
///     .await?;
/// # drop(storage); Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "call .build().await to open the storage"]
pub struct SqliteStorageBuilder {
    config: SqliteConfig,
}

impl SqliteStorageBuilder {
    /// A builder with the defaults (namespace `omniq`, MessagePack, 7-day result TTL).
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts from a complete configuration.
    pub fn from_config(config: SqliteConfig) -> Self {
        Self { config }
    }

    /// Use a database file; it (and its parent directories) are created if missing.
    pub fn path(mut self, path: impl AsRef<Path>) -> Self {
        self.config.location = Some(Location::File(path.as_ref().to_path_buf()));
        self
    }

    /// Use a private in-memory database (gone when the storage is closed or dropped).
    pub fn in_memory(mut self) -> Self {
        self.config.location = Some(Location::Memory);
        self
    }

    /// The table prefix (default `omniq`); 1–64 chars of `[A-Za-z0-9_.-]`.
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.config.namespace = namespace.to_string();
        self
    }

    /// The serializer for stored TaskErrors (default MessagePack).
    pub fn serializer(mut self, format: Format) -> Self {
        self.config.format = format;
        self
    }

    /// How long finished results stay readable (default 7 days).
    pub fn result_ttl(mut self, ttl: time::Duration) -> Self {
        self.config.result_ttl = ttl;
        self
    }

    /// Reader pool size in file mode (default 4). Writes always go through one connection.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.config.max_connections = n;
        self
    }

    /// How long to wait for another process's write lock (default 5 s).
    pub fn busy_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.config.busy_timeout = timeout;
        self
    }

    /// Commit durability (default [`Durability::Full`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.config.durability = durability;
        self
    }

    /// The configuration so far.
    pub fn config(&self) -> &SqliteConfig {
        &self.config
    }

    /// Validates, opens the database and applies migrations.
    pub async fn build(self) -> Result<SqliteStorage, StorageError> {
        self.config.validate()?;
        SqliteStorage::connect(self.config)
            .await
            .operation("connect")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omniq_core::StorageErrorKind;

    #[test]
    fn bad_values_are_config_errors() {
        let cfg = SqliteStorageBuilder::new()
            .in_memory()
            .namespace("no spaces");
        let err = cfg.config().validate().err().map(|e| e.kind());
        assert_eq!(err, Some(StorageErrorKind::Config));

        let none = SqliteStorageBuilder::new();
        assert!(none.config().validate().is_err());

        let ttl = SqliteStorageBuilder::new()
            .in_memory()
            .result_ttl(time::Duration::ZERO);
        assert!(ttl.config().validate().is_err());

        let ok = SqliteStorageBuilder::new()
            .path("x.db")
            .namespace("a-b.c_1");
        assert!(ok.config().validate().is_ok());
    }
}
