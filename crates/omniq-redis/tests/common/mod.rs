//! Test helpers: server URLs, unique namespaces, key cleanup and private servers.
#![allow(dead_code, unreachable_pub)]

use omniq_conformance::{StorageFactory, async_trait};
use omniq_core::{Storage, StorageError};
use omniq_redis::RedisStorage;
use omniq_redis::fred::prelude::*;
use std::process::ExitCode;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The standalone server the tests use.
pub fn redis_url() -> String {
    std::env::var("OMNIQ_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The cluster the cluster tests use (`.ci/services/redis-cluster.sh` starts it).
pub fn cluster_url() -> String {
    std::env::var("OMNIQ_TEST_REDIS_CLUSTER_URL").unwrap_or_else(|_| {
        "redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001&node=127.0.0.1:7002".into()
    })
}

/// A namespace no other test run uses: `t<random>`.
pub fn unique_namespace(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// Deletes every key of the namespaces whose names start with `prefix`.
pub async fn delete_namespaces(url: &str, prefix: &str) -> Result<usize, Error> {
    let config = Config::from_url(url)?;
    let client = Builder::from_config(config).build()?;
    client.init().await?;
    let pattern = format!("omniq:*{prefix}*");
    let keys: Vec<Key> = if client.is_clustered() {
        collect(client.scan_cluster_buffered(pattern, Some(1000), None)).await?
    } else {
        collect(client.scan_buffered(pattern, Some(1000), None)).await?
    };
    // One key per DEL (a cluster refuses cross-slot DELs), many in flight at once.
    for chunk in keys.chunks(1000) {
        let dels = chunk.iter().map(|k| client.del::<(), _>(k.clone()));
        futures::future::try_join_all(dels).await?;
    }
    let _ = client.quit().await;
    Ok(keys.len())
}

async fn collect(
    stream: impl futures::Stream<Item = Result<Key, Error>>,
) -> Result<Vec<Key>, Error> {
    use futures::TryStreamExt;
    stream.try_collect().await
}

/// The number of keys of a namespace.
pub async fn count_keys(url: &str, namespace: &str) -> Result<usize, Error> {
    let config = Config::from_url(url)?;
    let client = Builder::from_config(config).build()?;
    client.init().await?;
    let mut n = 0;
    for pattern in [
        format!("omniq:{{{namespace}:*"),
        format!("omniq:{namespace}:*"),
        format!("omniq:{{{namespace}}}:*"),
    ] {
        let keys: Vec<Key> = if client.is_clustered() {
            collect(client.scan_cluster_buffered(pattern, Some(1000), None)).await?
        } else {
            collect(client.scan_buffered(pattern, Some(1000), None)).await?
        };
        n += keys.len();
    }
    let _ = client.quit().await;
    Ok(n)
}

/// A private `redis-server` on a free port, killed when dropped.
pub struct PrivateServer {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateServer {
    /// Starts one; `None` when `redis-server` is not installed.
    pub async fn start() -> Option<Self> {
        let port = free_port();
        let mut s = Self { port, child: None };
        s.spawn().ok()?;
        Some(s)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        // Wait until it accepts connections.
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(std::io::Error::other("redis-server did not start"))
    }

    /// Kills the server (its data is gone: no persistence).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (empty: scripts must be loaded again).
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        self.spawn()
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(6390)
}

/// A storage on a private server that is then stopped: every call fails (Unavailable).
pub async fn broken_storage() -> Option<(RedisStorage, PrivateServer)> {
    let mut server = PrivateServer::start().await?;
    let storage = RedisStorage::builder()
        .url(&server.url())
        .namespace("broken")
        .command_timeout(Duration::from_secs(2))
        .build()
        .await
        .ok()?;
    server.stop();
    Some((storage, server))
}

// ---------------------------------------------------------------------------------
// The conformance factory.

struct RedisFactory {
    url: String,
    backend: &'static str,
    run: String,
    next: AtomicUsize,
    /// Keeps the stopped servers of broken instances alive until the run ends.
    broken: Mutex<Vec<PrivateServer>>,
}

#[async_trait]
impl StorageFactory for RedisFactory {
    fn backend(&self) -> &'static str {
        self.backend
    }

    async fn create(&self) -> Result<Arc<dyn Storage>, StorageError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let storage = RedisStorage::builder()
            .url(&self.url)
            .namespace(&format!("{}-{n}", self.run))
            .build()
            .await?;
        Ok(Arc::new(storage))
    }

    /// A storage whose server went away: every call fails with Unavailable.
    async fn broken(&self) -> Option<Arc<dyn Storage>> {
        let (storage, server) = broken_storage().await?;
        if let Ok(mut b) = self.broken.lock() {
            b.push(server);
        }
        Some(Arc::new(storage))
    }
}

/// Runs the whole suite against `url`, reported as `backend`; deletes this run's keys.
pub fn run_conformance(url: String, backend: &'static str) -> ExitCode {
    let factory = Arc::new(RedisFactory {
        url: url.clone(),
        backend,
        run: unique_namespace("cf"),
        next: AtomicUsize::new(0),
        broken: Mutex::new(Vec::new()),
    });
    let code = omniq_conformance::run(Arc::clone(&factory));
    if let Ok(rt) = tokio::runtime::Runtime::new() {
        let _ = rt.block_on(delete_namespaces(&url, &factory.run));
    }
    code
}
