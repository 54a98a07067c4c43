//! A factory over the SQLite backend's private in-memory databases: the correct
//! storage the faulty wrappers are built around.

use omniq_conformance::{StorageFactory, async_trait};
use omniq_core::{Storage, StorageError};
use omniq_sqlite::SqliteStorage;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Each `create()` is a new private in-memory SQLite database in its own namespace.
#[derive(Debug, Default)]
pub(crate) struct MemoryFactory {
    next: AtomicUsize,
}

#[async_trait]
impl StorageFactory for MemoryFactory {
    fn backend(&self) -> &'static str {
        "sqlite-memory"
    }

    async fn create(&self) -> Result<Arc<dyn Storage>, StorageError> {
        let namespace = format!("ns{}", self.next.fetch_add(1, Ordering::Relaxed));
        let storage = SqliteStorage::builder()
            .in_memory()
            .namespace(&namespace)
            .build()
            .await?;
        Ok(Arc::new(storage))
    }
}
