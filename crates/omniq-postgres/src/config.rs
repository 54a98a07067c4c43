//! Configuration and the builder of [`crate::PostgresStorage`].

use crate::PostgresStorage;
use crate::error::{Result, config};
use omniq_core::{Format, OperationExt, StorageError, redact_credentials, validate_name};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The default namespace (PostgreSQL schema).
pub const DEFAULT_NAMESPACE: &str = "omniq";

/// How long results are kept by default: 7 days.
pub const DEFAULT_RESULT_TTL: time::Duration = time::Duration::days(7);

/// Default size of the connection pool.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// Default time to wait for a connection (from the pool, or to a server that is down)
/// before a call fails `Unavailable`.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Default interval of the expired-result sweep.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Where the storage gets its connections.
#[derive(Clone)]
pub enum Connection {
    /// Its own pool, connected with these options (from a `postgres://` URL).
    Options(Box<PgConnectOptions>),
    /// The application's pool, shared; `close()` leaves it open.
    Pool(PgPool),
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Options(o) => write!(f, "Options({})", describe(o)),
            Self::Pool(p) => write!(f, "Pool({})", describe(&p.connect_options())),
        }
    }
}

/// `host:port/database as user`: how errors and `Debug` name a server (never the
/// password).
pub(crate) fn describe(o: &PgConnectOptions) -> String {
    let db = o.get_database().unwrap_or("(default database)");
    format!(
        "{}:{}/{db} as {}",
        o.get_host(),
        o.get_port(),
        o.get_username()
    )
}

/// Everything [`PostgresStorageBuilder::build`] needs; see the builder for each field.
#[derive(Clone, Debug)]
pub struct PostgresConfig {
    /// The server (a URL's options) or an existing pool.
    pub connection: Option<Connection>,
    /// The PostgreSQL schema holding this namespace's tables (created if missing).
    pub namespace: String,
    /// Serializer for stored TaskErrors (args and results are stored as given).
    pub format: Format,
    /// Results older than this are no longer returned and are deleted by the sweep.
    pub result_ttl: time::Duration,
    /// Pool size (own pool only).
    pub max_connections: u32,
    /// How long a call waits for a connection before failing `Unavailable` (own pool only).
    pub acquire_timeout: Duration,
    /// LISTEN for other processes' wake-ups (turn off behind a transaction-mode pooler
    /// such as PgBouncer, where LISTEN does not work; workers then poll).
    pub listen: bool,
    /// How often completions also delete expired results and their finished tasks.
    pub sweep_interval: Duration,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            connection: None,
            namespace: DEFAULT_NAMESPACE.to_string(),
            format: Format::default(),
            result_ttl: DEFAULT_RESULT_TTL,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            listen: true,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
        }
    }
}

impl PostgresConfig {
    /// The defaults with the server a URL names:
    /// `postgres://user:password@host:port/database?sslmode=…` (or `postgresql://`).
    /// Every connection parameter sqlx understands may be given; OmniQ's own settings
    /// are set on the builder.
    ///
    /// ```
    /// use omniq_postgres::PostgresConfig;
    ///
    /// let c = PostgresConfig::from_url("postgres://app:secret@db.internal:5433/jobs").unwrap();
    /// assert!(format!("{c:?}").contains("db.internal:5433/jobs as app"));
    /// assert!(!format!("{c:?}").contains("secret"));
    /// assert!(PostgresConfig::from_url("redis://localhost").is_err());
    /// ```
    pub fn from_url(url: &str) -> Result<Self, StorageError> {
        Self::parse_url(url).operation("configure")
    }

    fn parse_url(url: &str) -> Result<Self> {
        // Query parameters may carry a password too (`?password=…`): never shown.
        let shown = match url.split_once('?') {
            Some((base, _)) => format!("{}?…", redact_credentials(base)),
            None => redact_credentials(url),
        };
        let scheme_ok = url.starts_with("postgres://") || url.starts_with("postgresql://");
        if !scheme_ok {
            return Err(config(format!(
                "PostgreSQL URL {shown:?} is not valid: use a postgres:// or postgresql:// URL naming user, password, host, port and database"
            )));
        }
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            config(format!(
                "PostgreSQL URL {shown:?} is not valid ({}): use a postgres:// or postgresql:// URL naming user, password, host, port and database",
                redact_credentials(&e.to_string())
            ))
        })?;
        Ok(Self {
            connection: Some(Connection::Options(Box::new(options))),
            ..Self::default()
        })
    }

    /// Checks every value; the first problem is a `Config` error naming it.
    pub fn validate(&self) -> Result<(), StorageError> {
        self.check().operation("configure")
    }

    fn check(&self) -> Result<()> {
        validate_name("namespace", &self.namespace).map_err(config)?;
        if self.namespace.len() > 63 {
            return Err(config(format!(
                "invalid namespace {:?}: PostgreSQL schema names are at most 63 bytes",
                self.namespace
            )));
        }
        if self.namespace.starts_with("pg_") {
            return Err(config(format!(
                "invalid namespace {:?}: names starting with \"pg_\" are reserved by PostgreSQL",
                self.namespace
            )));
        }
        if self.connection.is_none() {
            return Err(config(
                "no PostgreSQL server: call .url(\"postgres://…\") or .pool(pool)",
            ));
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
        if self.acquire_timeout.is_zero() {
            return Err(config("acquire_timeout must be positive"));
        }
        if self.sweep_interval.is_zero() {
            return Err(config("sweep_interval must be positive"));
        }
        Ok(())
    }

    /// The own pool's connect options: OmniQ's application name when the URL set none
    /// (so `pg_stat_activity` shows whose connections these are), and plans made for
    /// every execution (see `PostgresStorage::query`).
    pub(crate) fn for_own_pool(options: &PgConnectOptions) -> PgConnectOptions {
        let options = options
            .clone()
            .options([("plan_cache_mode", "force_custom_plan")]);
        if options.get_application_name().is_some() {
            options
        } else {
            options.application_name("omniq")
        }
    }
}

/// Builds a [`PostgresStorage`].
///
/// ```no_run
/// # async fn demo() -> Result<(), omniq_core::StorageError> {
/// use omniq_postgres::PostgresStorage;
///
/// let storage = PostgresStorage::builder()
///     .url("postgres://app:secret@db.internal/jobs")
///     .namespace("billing")
///     .max_connections(20)
///     .result_ttl(time::Duration::days(1))
///     .build()
///     .await?;
/// # drop(storage); Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "call .build().await to connect"]
pub struct PostgresStorageBuilder {
    config: PostgresConfig,
    url_error: Option<String>,
}

impl PostgresStorageBuilder {
    /// A builder with the defaults (namespace `omniq`, MessagePack, 7-day result TTL,
    /// 10 connections).
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts from a complete configuration (e.g. [`PostgresConfig::from_url`]).
    pub fn from_config(config: PostgresConfig) -> Self {
        Self {
            config,
            url_error: None,
        }
    }

    /// The server: `postgres://user:password@host:port/database`. An invalid URL is
    /// reported by [`build`](Self::build).
    pub fn url(mut self, url: &str) -> Self {
        match PostgresConfig::parse_url(url) {
            Ok(parsed) => {
                self.config.connection = parsed.connection;
                self.url_error = None;
            }
            Err(e) => self.url_error = Some(e.to_string()),
        }
        self
    }

    /// Use the application's pool (shared with its own queries; `close()` leaves it
    /// open). Pool size and timeouts are then the pool's own.
    pub fn pool(mut self, pool: PgPool) -> Self {
        self.config.connection = Some(Connection::Pool(pool));
        self.url_error = None;
        self
    }

    /// The PostgreSQL schema holding the tables (default `omniq`), created if missing;
    /// 1–63 chars of `[A-Za-z0-9_.-]`, not starting with `pg_`.
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.config.namespace = namespace.to_string();
        self
    }

    /// The serializer for stored TaskErrors (default MessagePack).
    pub fn serializer(mut self, format: Format) -> Self {
        self.config.format = format;
        self
    }

    /// How long finished results stay readable (default 7 days); older results and
    /// their finished tasks are deleted by the sweep.
    pub fn result_ttl(mut self, ttl: time::Duration) -> Self {
        self.config.result_ttl = ttl;
        self
    }

    /// Pool size (default 10; own pool only).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.config.max_connections = n;
        self
    }

    /// How long a call waits for a connection before failing `Unavailable`
    /// (default 5 s; own pool only).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.config.acquire_timeout = timeout;
        self
    }

    /// LISTEN for other processes' wake-ups (default on). Turn it off behind a
    /// transaction-mode pooler (PgBouncer), where LISTEN does not work.
    pub fn listen(mut self, on: bool) -> Self {
        self.config.listen = on;
        self
    }

    /// How often completions also delete expired results and their finished tasks, in
    /// batches of at most 10,000 rows (default 60 s).
    pub fn sweep_interval(mut self, every: Duration) -> Self {
        self.config.sweep_interval = every;
        self
    }

    /// The configuration so far.
    pub fn config(&self) -> &PostgresConfig {
        &self.config
    }

    /// Validates, connects, applies migrations and starts the LISTEN connection.
    pub async fn build(self) -> Result<PostgresStorage, StorageError> {
        if let Some(e) = self.url_error {
            return Err(StorageError::config(crate::error::BACKEND, e).with_operation("configure"));
        }
        self.config.validate()?;
        PostgresStorage::connect_with(self.config)
            .await
            .operation("connect")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omniq_core::StorageErrorKind;

    fn kind(b: &PostgresStorageBuilder) -> Option<StorageErrorKind> {
        b.config().validate().err().map(|e| e.kind())
    }

    #[test]
    fn bad_values_are_config_errors() {
        let url = "postgres://u:pw@localhost/db";
        let ok = PostgresStorageBuilder::new().url(url).namespace("a-b.c_1");
        assert_eq!(kind(&ok), None);
        for bad in [
            PostgresStorageBuilder::new()
                .url(url)
                .namespace("no spaces"),
            PostgresStorageBuilder::new()
                .url(url)
                .namespace("pg_catalog"),
            PostgresStorageBuilder::new()
                .url(url)
                .namespace(&"x".repeat(64)),
            PostgresStorageBuilder::new(),
            PostgresStorageBuilder::new()
                .url(url)
                .result_ttl(time::Duration::ZERO),
            PostgresStorageBuilder::new().url(url).max_connections(0),
        ] {
            assert_eq!(kind(&bad), Some(StorageErrorKind::Config), "{bad:?}");
        }
    }

    #[test]
    fn urls_are_checked_and_never_shown_with_their_password() {
        for bad in [
            "mysql://u:topsecret@h/db",
            "postgres://u:topsecret@h:notaport/db",
            "postgres://u@h:notaport/db?password=topsecret",
        ] {
            let e = PostgresConfig::from_url(bad).expect_err(bad);
            assert_eq!(e.kind(), StorageErrorKind::Config);
            assert!(!e.to_string().contains("topsecret"), "{e}");
            assert!(e.to_string().contains("postgres://"), "names the form: {e}");
        }
        let c = PostgresConfig::from_url("postgresql://u:topsecret@h:6543/db?sslmode=disable")
            .expect("valid");
        let shown = format!("{c:?}");
        assert!(shown.contains("h:6543/db as u"), "{shown}");
        assert!(!shown.contains("topsecret"), "{shown}");
    }

    #[tokio::test]
    async fn an_invalid_url_is_reported_by_build() {
        let e = PostgresStorageBuilder::new()
            .url("postgres://u:topsecret@h:x/db")
            .build()
            .await
            .expect_err("invalid");
        assert_eq!(e.kind(), StorageErrorKind::Config);
        assert!(!e.to_string().contains("topsecret"), "{e}");
    }
}
