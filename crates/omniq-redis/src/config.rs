//! Configuration and the builder of [`crate::RedisStorage`].

use crate::RedisStorage;
use crate::error::{Result, config};
use fred::clients::{Client, Pool};
use omniq_core::{Format, OperationExt, StorageError, redact_credentials, validate_name};
use std::fmt;
use std::time::Duration;

/// The default namespace (key prefix).
pub const DEFAULT_NAMESPACE: &str = "omniq";

/// How long results (and finished tasks) are kept by default: 7 days.
pub const DEFAULT_RESULT_TTL: time::Duration = time::Duration::days(7);

/// Default number of connections (per node on a cluster).
pub const DEFAULT_POOL_SIZE: usize = 2;

/// Default timeout of one command or script call; a call that takes longer fails with
/// an `Unavailable` error.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the server is one node or a Redis Cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One server (or a replicated primary): scripts also maintain the task locators.
    Standalone,
    /// A Redis Cluster: every script touches one queue's slot; locators are kept by
    /// the client.
    Cluster,
}

/// Everything [`RedisStorageBuilder::build`] needs (except an existing client, which
/// only the builder takes); see the builder for each field.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://[[user]:password@]host[:port][/db]`, `rediss://…` (TLS, with the `tls`
    /// feature), or `redis-cluster://host:port[?node=host:port&node=…]` for a cluster.
    pub url: Option<String>,
    /// Key prefix: keys are `omniq:{namespace:queue}:…` and `omniq:namespace:…`.
    pub namespace: String,
    /// Serializer for stored task records and errors.
    pub format: Format,
    /// Finished tasks and results expire this long after they finished.
    pub result_ttl: time::Duration,
    /// Connections in the pool (per node on a cluster).
    pub pool_size: usize,
    /// Timeout of one command or script call.
    pub command_timeout: Duration,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.url.as_deref().map(redact_credentials))
            .field("namespace", &self.namespace)
            .field("format", &self.format)
            .field("result_ttl", &self.result_ttl)
            .field("pool_size", &self.pool_size)
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            namespace: DEFAULT_NAMESPACE.to_string(),
            format: Format::default(),
            result_ttl: DEFAULT_RESULT_TTL,
            pool_size: DEFAULT_POOL_SIZE,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
        }
    }
}

/// URL schemes this backend understands, and whether each names a cluster.
const SCHEMES: [(&str, Topology); 4] = [
    ("redis://", Topology::Standalone),
    ("rediss://", Topology::Standalone),
    ("redis-cluster://", Topology::Cluster),
    ("rediss-cluster://", Topology::Cluster),
];

impl RedisConfig {
    /// The defaults with the server a URL names: `redis://host:port[/db]` (one server),
    /// `rediss://…` (TLS; needs this crate's `tls` feature) or
    /// `redis-cluster://host:port?node=host2:port2&node=…` (a Redis Cluster: any
    /// reachable nodes; the rest are discovered).
    ///
    /// ```
    /// use omniq_redis::{RedisConfig, Topology};
    ///
    /// let c = RedisConfig::from_url("redis://127.0.0.1:6379").unwrap();
    /// assert_eq!(c.topology(), Some(Topology::Standalone));
    /// let c = RedisConfig::from_url("redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001").unwrap();
    /// assert_eq!(c.topology(), Some(Topology::Cluster));
    /// let e = RedisConfig::from_url("http://:hunter2@db:6379").unwrap_err();
    /// assert!(!e.to_string().contains("hunter2"));
    /// ```
    pub fn from_url(url: &str) -> Result<Self, StorageError> {
        Self::parse_url(url).operation("configure")
    }

    fn parse_url(url: &str) -> Result<Self> {
        let cfg = Self {
            url: Some(url.to_string()),
            ..Self::default()
        };
        cfg.check_url(url)?;
        Ok(cfg)
    }

    fn check_url(&self, url: &str) -> Result<()> {
        if !SCHEMES.iter().any(|(s, _)| url.starts_with(s)) {
            return Err(config(format!(
                "Redis URL {url:?}: use redis://, rediss://, redis-cluster:// or rediss-cluster://"
            )));
        }
        if url.starts_with("rediss") && !cfg!(feature = "tls") {
            return Err(config(format!(
                "Redis URL {url:?}: TLS (rediss://) needs omniq-redis's `tls` cargo feature"
            )));
        }
        fred::types::config::Config::from_url(url)
            .map(drop)
            .map_err(|e| config(format!("Redis URL {url:?}: {}", e.details())))
    }

    /// One server or a cluster, as the URL says (`None` without a URL).
    pub fn topology(&self) -> Option<Topology> {
        let url = self.url.as_deref()?;
        SCHEMES
            .iter()
            .find(|(s, _)| url.starts_with(s))
            .map(|(_, t)| *t)
    }

    /// Checks every value; the first problem is a `Config` error naming it.
    pub fn validate(&self) -> Result<(), StorageError> {
        self.check(true).operation("configure")
    }

    pub(crate) fn check(&self, needs_url: bool) -> Result<()> {
        validate_name("namespace", &self.namespace).map_err(config)?;
        match &self.url {
            Some(url) => self.check_url(url)?,
            None if needs_url => {
                return Err(config(
                    "no Redis server: call .url(\"redis://127.0.0.1:6379\") or .client(…)",
                ));
            }
            None => {}
        }
        if !self.result_ttl.is_positive() {
            return Err(config(format!(
                "result_ttl must be positive, got {}",
                self.result_ttl
            )));
        }
        if self.pool_size == 0 || self.pool_size > 64 {
            return Err(config(format!(
                "pool_size must be between 1 and 64, got {}",
                self.pool_size
            )));
        }
        if self.command_timeout.is_zero() {
            return Err(config("command_timeout must be positive"));
        }
        Ok(())
    }
}

/// Where the builder gets its connections.
#[derive(Clone)]
pub(crate) enum Source {
    /// Connect from `RedisConfig::url`.
    Url,
    /// Use the caller's fred clients (their connections are shared, not owned).
    Clients(Vec<Client>),
}

/// Builds a [`RedisStorage`].
///
/// ```no_run
/// # async fn demo() -> Result<(), omniq_core::StorageError> {
/// use omniq_redis::RedisStorage;
///
/// let storage = RedisStorage::builder()
///     .url("redis://127.0.0.1:6379")
///     .namespace("billing")
///     .result_ttl(time::Duration::days(1))
///     .build()
///     .await?;
/// # drop(storage); Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "call .build().await to connect the storage"]
pub struct RedisStorageBuilder {
    pub(crate) config: RedisConfig,
    pub(crate) source: Source,
}

impl fmt::Debug for RedisStorageBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStorageBuilder")
            .field("config", &self.config)
            .field(
                "existing_client",
                &matches!(self.source, Source::Clients(_)),
            )
            .finish()
    }
}

impl Default for RedisStorageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisStorageBuilder {
    /// A builder with the defaults (namespace `omniq`, MessagePack, 7-day result TTL).
    pub fn new() -> Self {
        Self {
            config: RedisConfig::default(),
            source: Source::Url,
        }
    }

    /// Starts from a complete configuration.
    pub fn from_config(config: RedisConfig) -> Self {
        Self {
            config,
            source: Source::Url,
        }
    }

    /// The server to connect to (see [`RedisConfig::from_url`]).
    pub fn url(mut self, url: &str) -> Self {
        self.config.url = Some(url.to_string());
        self.source = Source::Url;
        self
    }

    /// Use an existing fred client (standalone or cluster, as it was built) instead of
    /// a URL. It should have a reconnect policy, so the storage recovers from a server
    /// restart; the wake-up subscriber is a new connection with the same settings.
    pub fn client(mut self, client: Client) -> Self {
        self.source = Source::Clients(vec![client]);
        self
    }

    /// Use an existing fred pool instead of a URL (see [`RedisStorageBuilder::client`]).
    pub fn pool(mut self, pool: &Pool) -> Self {
        self.source = Source::Clients(pool.clients().to_vec());
        self
    }

    /// The key prefix (default `omniq`); 1–64 chars of `[A-Za-z0-9_.-]`.
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.config.namespace = namespace.to_string();
        self
    }

    /// The serializer for stored task records and errors (default MessagePack).
    pub fn serializer(mut self, format: Format) -> Self {
        self.config.format = format;
        self
    }

    /// How long finished tasks and their results are kept (default 7 days); Redis
    /// expires them after that.
    pub fn result_ttl(mut self, ttl: time::Duration) -> Self {
        self.config.result_ttl = ttl;
        self
    }

    /// Connections in the pool, per node on a cluster (default 2; 1–64). Each
    /// connection pipelines concurrent calls, so a few are enough.
    pub fn pool_size(mut self, n: usize) -> Self {
        self.config.pool_size = n;
        self
    }

    /// Timeout of one command or script call (default 10 s); a call that takes longer
    /// fails with an `Unavailable` error.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.config.command_timeout = timeout;
        self
    }

    /// The configuration so far.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Validates, connects, loads the scripts and subscribes to wake-ups.
    pub async fn build(self) -> Result<RedisStorage, StorageError> {
        let needs_url = matches!(self.source, Source::Url);
        self.config.check(needs_url).operation("configure")?;
        RedisStorage::connect(self.config, self.source)
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
        let kind = |b: RedisStorageBuilder| b.config().validate().err().map(|e| e.kind());
        let url = || RedisStorageBuilder::new().url("redis://127.0.0.1:6379");
        assert_eq!(
            kind(url().namespace("no spaces")),
            Some(StorageErrorKind::Config)
        );
        assert_eq!(
            kind(RedisStorageBuilder::new()),
            Some(StorageErrorKind::Config)
        );
        assert_eq!(
            kind(url().result_ttl(time::Duration::ZERO)),
            Some(StorageErrorKind::Config)
        );
        assert_eq!(kind(url().pool_size(0)), Some(StorageErrorKind::Config));
        assert_eq!(
            kind(url().command_timeout(Duration::ZERO)),
            Some(StorageErrorKind::Config)
        );
        assert_eq!(kind(url().namespace("a-b.c_1")), None);
    }

    #[test]
    fn urls_name_the_topology_and_bad_ones_say_what_is_valid() {
        let c = RedisConfig::from_url("redis-cluster://127.0.0.1:7000").unwrap();
        assert_eq!(c.topology(), Some(Topology::Cluster));
        let e = RedisConfig::from_url("postgres://u:secret@h/db").unwrap_err();
        assert_eq!(e.kind(), StorageErrorKind::Config);
        assert!(e.to_string().contains("redis-cluster://"), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
        let debug = format!("{:?}", RedisConfig::from_url("redis://:pw@h:6379").unwrap());
        assert!(!debug.contains("pw@"), "{debug}");
    }
}
