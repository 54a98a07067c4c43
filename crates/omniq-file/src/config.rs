//! Configuration and the builder of [`crate::FileStorage`].

use crate::FileStorage;
use crate::error::{Result, config};
use object_store::ObjectStore;
use omniq_core::{Clock, Format, OperationExt, StorageError, SystemClock, validate_name};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The default namespace (the first segment of every key).
pub const DEFAULT_NAMESPACE: &str = "omniq";

/// How long results are kept by default: 7 days.
pub const DEFAULT_RESULT_TTL: time::Duration = time::Duration::days(7);

/// How hard a write tries to reach the disk (local directories only; object stores such
/// in the cloud are durable once they acknowledge a write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every call that stores something — enqueue, complete, fail, release,
    /// reschedule, cancel, purge — flushes the file system (one `syncfs` per call, a
    /// group commit of all its writes) before it returns: an acknowledged enqueue or
    /// outcome survives power loss. Claims and heartbeats are not flushed: losing one
    /// to a power cut only redelivers a task, which leases allow for anyway.
    #[default]
    Full,
    /// No flush: writes survive a crash of the process (each record is staged and
    /// renamed into place) but the last ones may be lost on power loss; faster.
    Relaxed,
}

/// Where the files live.
#[derive(Clone)]
pub enum Location {
    /// A local directory (created if missing, with its parents).
    Dir(PathBuf),
    /// A private in-memory store that lives as long as the storage.
    Memory,
    /// Any object store that supports conditional creates (`PutMode::Create`).
    Store(Arc<dyn ObjectStore>),
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dir(p) => f.debug_tuple("Dir").field(p).finish(),
            Self::Memory => f.write_str("Memory"),
            // The store's Display names it without credentials.
            Self::Store(s) => write!(f, "Store({s})"),
        }
    }
}

impl PartialEq for Location {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Dir(a), Self::Dir(b)) => a == b,
            (Self::Memory, Self::Memory) => true,
            (Self::Store(a), Self::Store(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// Everything [`FileStorageBuilder::build`] needs; see the builder for each field.
#[derive(Debug, Clone)]
pub struct FileConfig {
    /// Directory, memory or a given store.
    pub location: Option<Location>,
    /// Key prefix: every key starts with `{namespace}/`.
    pub namespace: String,
    /// Serializer for the stored records.
    pub format: Format,
    /// Results older than this are no longer returned by `get_result`.
    pub result_ttl: time::Duration,
    /// Flush policy for local directories (default [`Durability::Full`]).
    pub durability: Durability,
    /// The clock that ages objects (orphaned entries, abandoned batches, dead unique
    /// keys) and results; the wall clock by default.
    pub clock: Arc<dyn Clock>,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            location: None,
            namespace: DEFAULT_NAMESPACE.to_string(),
            format: Format::default(),
            result_ttl: DEFAULT_RESULT_TTL,
            durability: Durability::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// URL schemes of object stores (`s3a` and `adl`/`azure`/`abfs`/`abfss` are aliases).
const CLOUD_SCHEMES: &[&str] = &["s3", "s3a", "gs", "az", "adl", "azure", "abfs", "abfss"];

/// Environment variables handed to the object store's builder (lower-cased, as
/// object_store's `from_env` does): credentials, region, endpoint and other options.
#[cfg(feature = "cloud")]
const ENV_PREFIXES: &[&str] = &["AWS_", "GOOGLE_", "AZURE_"];

/// The object store a cloud URL names, with its options from the environment; the
/// URL's path becomes a key prefix.
#[cfg(feature = "cloud")]
fn cloud_store(scheme: &str, url: &str) -> Result<Arc<dyn ObjectStore>> {
    // Only the scheme and bucket are ever printed (an Azure URL may carry an account).
    let parsed =
        url::Url::parse(url).map_err(|e| config(format!("invalid {scheme}:// URL: {e}")))?;
    let bucket = parsed.host_str().unwrap_or_default().to_string();
    let options = std::env::vars()
        .filter(|(k, _)| ENV_PREFIXES.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.to_ascii_lowercase(), v));
    let (store, prefix) = object_store::parse_url_opts(&parsed, options).map_err(|e| {
        config(format!(
            "cannot open the object store {scheme}://{bucket}: {e} (options come from \
             the AWS_*, GOOGLE_* or AZURE_* environment variables)"
        ))
    })?;
    let store: Arc<dyn ObjectStore> = Arc::from(store);
    if prefix.as_ref().is_empty() {
        Ok(store)
    } else {
        Ok(Arc::new(object_store::prefix::PrefixStore::new(
            store, prefix,
        )))
    }
}

/// Without the `cloud` feature a cloud URL is a clear configuration error.
#[cfg(not(feature = "cloud"))]
fn cloud_store(scheme: &str, _url: &str) -> Result<Arc<dyn ObjectStore>> {
    Err(config(format!(
        "{scheme}:// URLs need omniq-file's `cloud` cargo feature (omniq's `file-cloud`); \
         or build the object store yourself and pass it to FileStorage::builder().store(...)"
    )))
}

impl FileConfig {
    /// The defaults with the location a URL names: `file://PATH` or a plain path for a
    /// local directory (created if missing; `file:///abs` and `file://./rel` both work),
    /// `memory://` for a private in-memory store.
    ///
    /// With the `cloud` feature, `s3://BUCKET/PREFIX` (AWS or a compatible server),
    /// `gs://BUCKET/PREFIX` (Google Cloud Storage) and `az://CONTAINER/PREFIX` or
    /// `abfs[s]://…` (Azure) open that object store, every key under the prefix, with
    /// credentials and options from the environment as object_store reads them
    /// (`AWS_ACCESS_KEY_ID`, `AWS_REGION`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`,
    /// `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, …). The store must
    /// support conditional creates (on AWS: conditional writes, on by default; do not set
    /// `AWS_CONDITIONAL_PUT=disabled`): `build` checks and refuses it otherwise. Without
    /// the feature these URLs are a `Config` error naming it.
    ///
    /// ```
    /// use omniq_file::{FileConfig, Location};
    ///
    /// let c = FileConfig::from_url("file://./omniq_data").unwrap();
    /// assert_eq!(c.location, Some(Location::Dir("./omniq_data".into())));
    /// assert_eq!(FileConfig::from_url("memory://").unwrap().location, Some(Location::Memory));
    /// assert!(FileConfig::from_url("ftp://host/queues").is_err());
    /// ```
    pub fn from_url(url: &str) -> Result<Self, StorageError> {
        Self::parse_url(url).operation("configure")
    }

    fn parse_url(url: &str) -> Result<Self> {
        let url = url.trim();
        let location = if url == "memory://" || url == "memory:" || url == ":memory:" {
            Location::Memory
        } else if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err(config(
                    "file:// URL has no path (e.g. file:///var/lib/omniq)",
                ));
            }
            Location::Dir(PathBuf::from(path))
        } else if let Some((scheme, _)) = url.split_once("://") {
            let lower = scheme.to_ascii_lowercase();
            if !CLOUD_SCHEMES.contains(&lower.as_str()) {
                return Err(config(format!(
                    "unsupported URL scheme {scheme:?} for the file backend (valid: \
                     file://PATH, memory://, a plain path, or with the `cloud` feature \
                     s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, az://CONTAINER/PREFIX)"
                )));
            }
            Location::Store(cloud_store(&lower, url)?)
        } else if url.is_empty() {
            return Err(config("the file backend URL is empty"));
        } else {
            Location::Dir(PathBuf::from(url))
        };
        Ok(Self {
            location: Some(location),
            ..Self::default()
        })
    }

    /// Checks every value; the errors name the setting and the valid values.
    pub fn validate(&self) -> Result<(), StorageError> {
        self.check().operation("configure")
    }

    fn check(&self) -> Result<()> {
        validate_name("namespace", &self.namespace).map_err(config)?;
        if self.namespace.bytes().all(|b| b == b'.') {
            return Err(config(format!(
                "invalid namespace {:?}: \".\" and \"..\" cannot name a directory",
                self.namespace
            )));
        }
        match &self.location {
            None => {
                return Err(config(
                    "no location: call .dir(path), .in_memory() or .store(object_store)",
                ));
            }
            Some(Location::Dir(p)) if p.as_os_str().is_empty() => {
                return Err(config("directory path is empty"));
            }
            Some(_) => {}
        }
        if !self.result_ttl.is_positive() {
            return Err(config(format!(
                "result_ttl must be positive, got {}",
                self.result_ttl
            )));
        }
        Ok(())
    }
}

/// Builds a [`FileStorage`].
///
/// ```no_run
/// # async fn demo() -> Result<(), omniq_core::StorageError> {
/// use omniq_file::FileStorage;
///
/// let storage = FileStorage::builder()
///     .dir("./omniq_data")
///     .namespace("billing")
///     .result_ttl(time::Duration::days(1))
///     .build()
///     .await?;
/// # drop(storage); Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "call .build().await to open the storage"]
pub struct FileStorageBuilder {
    config: FileConfig,
}

impl FileStorageBuilder {
    /// A builder with the defaults (namespace `omniq`, MessagePack, 7-day result TTL,
    /// [`Durability::Full`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts from a complete configuration.
    pub fn from_config(config: FileConfig) -> Self {
        Self { config }
    }

    /// Store under a local directory; it (and its parents) are created if missing.
    pub fn dir(mut self, path: impl AsRef<Path>) -> Self {
        self.config.location = Some(Location::Dir(path.as_ref().to_path_buf()));
        self
    }

    /// Use a private in-memory store (gone when the storage is dropped).
    pub fn in_memory(mut self) -> Self {
        self.config.location = Some(Location::Memory);
        self
    }

    /// Use any object store (AWS, GCS or Azure with conditional writes, …). It must support
    /// `PutMode::Create`; `build` refuses a store that does not.
    pub fn store(mut self, store: Arc<dyn ObjectStore>) -> Self {
        self.config.location = Some(Location::Store(store));
        self
    }

    /// The key prefix (default `omniq`); 1–64 chars of `[A-Za-z0-9_.-]`.
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.config.namespace = namespace.to_string();
        self
    }

    /// The serializer for stored records (default MessagePack).
    pub fn serializer(mut self, format: Format) -> Self {
        self.config.format = format;
        self
    }

    /// How long finished results stay readable (default 7 days).
    pub fn result_ttl(mut self, ttl: time::Duration) -> Self {
        self.config.result_ttl = ttl;
        self
    }

    /// Flush policy for local directories (default [`Durability::Full`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.config.durability = durability;
        self
    }

    /// The clock that decides how old stored objects and results are (default: the wall
    /// clock). Object times come from the store, so a clock set ahead makes everything
    /// look older — what tests of the clean-ups use.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.config.clock = clock;
        self
    }

    /// The configuration so far.
    pub fn config(&self) -> &FileConfig {
        &self.config
    }

    /// Validates, opens the store and checks that it supports conditional creates.
    pub async fn build(self) -> Result<FileStorage, StorageError> {
        self.config.validate()?;
        FileStorage::connect(self.config).await.operation("connect")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omniq_core::StorageErrorKind;

    #[test]
    fn bad_values_are_config_errors() {
        let bad_ns = FileStorageBuilder::new().in_memory().namespace("no spaces");
        let err = bad_ns.config().validate().err().map(|e| e.kind());
        assert_eq!(err, Some(StorageErrorKind::Config));
        let dots = FileStorageBuilder::new().in_memory().namespace("..");
        assert!(dots.config().validate().is_err());
        assert!(FileStorageBuilder::new().config().validate().is_err());
        let ttl = FileStorageBuilder::new()
            .in_memory()
            .result_ttl(time::Duration::ZERO);
        assert!(ttl.config().validate().is_err());
        let ok = FileStorageBuilder::new().dir("x").namespace("a-b.c_1");
        assert!(ok.config().validate().is_ok());
    }

    #[test]
    fn urls_name_the_location() {
        let c = FileConfig::from_url("file:///var/lib/omniq").unwrap();
        assert_eq!(c.location, Some(Location::Dir("/var/lib/omniq".into())));
        let c = FileConfig::from_url("./data").unwrap();
        assert_eq!(c.location, Some(Location::Dir("./data".into())));
        let e = FileConfig::from_url("redis://:secret@h:6379").unwrap_err();
        assert_eq!(e.kind(), StorageErrorKind::Config);
        assert!(!e.to_string().contains("secret"));
        assert!(FileConfig::from_url("file://").is_err());
        let e = FileConfig::from_url("ftp://h/x").unwrap_err();
        assert!(e.to_string().contains("s3://"), "{e}");
        #[cfg(not(feature = "cloud"))]
        for url in ["s3://bucket/q", "gs://b/q", "az://c/q", "abfss://c@a.dfs/q"] {
            let e = FileConfig::from_url(url).unwrap_err();
            assert_eq!(e.kind(), StorageErrorKind::Config);
            assert!(e.to_string().contains("`cloud` cargo feature"), "{e}");
        }
        #[cfg(feature = "cloud")]
        {
            let c = FileConfig::from_url("s3://bucket/some/prefix").unwrap();
            let Some(Location::Store(store)) = c.location else {
                panic!("an object store");
            };
            assert!(store.to_string().contains("some/prefix"), "{store}");
        }
        assert!(FileConfig::from_url("").is_err());
    }
}
