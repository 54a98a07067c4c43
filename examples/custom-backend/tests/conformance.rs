//! The whole OmniQ conformance suite against the in-memory backend, in one line.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use omniq_conformance::{StorageFactory, async_trait};
use omniq_core::{Storage, StorageError};
use omniq_example_memory::{MemoryConfig, MemoryServer};

/// One server for the whole run; every case gets a namespace of its own on it.
struct MemoryFactory {
    server: MemoryServer,
    next: AtomicU64,
}

#[async_trait]
impl StorageFactory for MemoryFactory {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn create(&self) -> Result<Arc<dyn Storage>, StorageError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let config = MemoryConfig::new(format!("case-{n}"))?;
        Ok(Arc::new(self.server.connect(config)?))
    }

    /// A storage whose server went away: every call fails with `Unavailable`.
    async fn broken(&self) -> Option<Arc<dyn Storage>> {
        let server = MemoryServer::new();
        let storage = server.connect(MemoryConfig::new("broken").ok()?).ok()?;
        server.stop();
        Some(Arc::new(storage))
    }
}

fn main() -> std::process::ExitCode {
    omniq_conformance::run(MemoryFactory {
        server: MemoryServer::new(),
        next: AtomicU64::new(0),
    })
}
