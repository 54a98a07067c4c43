//! The OmniQ conformance suite against the file backend on object_store's in-memory
//! store: the same code path a cloud object store takes (no local-directory shortcuts).

mod common;

use omniq_conformance::{StorageFactory, async_trait};
use omniq_core::{Storage, StorageError};
use omniq_file::FileStorage;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// One in-memory store shared by every case, each in its own namespace (T14).
fn shared() -> Arc<dyn object_store::ObjectStore> {
    static STORE: OnceLock<Arc<dyn object_store::ObjectStore>> = OnceLock::new();
    Arc::clone(STORE.get_or_init(|| Arc::new(object_store::memory::InMemory::new())))
}

struct MemoryFactory {
    next: AtomicUsize,
}

impl MemoryFactory {
    fn next_name(&self) -> String {
        format!("case{}", self.next.fetch_add(1, Ordering::Relaxed))
    }
}

#[async_trait]
impl StorageFactory for MemoryFactory {
    fn backend(&self) -> &'static str {
        "file-memory"
    }

    async fn create(&self) -> Result<Arc<dyn Storage>, StorageError> {
        let storage = FileStorage::builder()
            .store(shared())
            .namespace(&self.next_name())
            .build()
            .await?;
        Ok(Arc::new(storage))
    }

    /// A storage whose store fails every call after it was opened.
    async fn broken(&self) -> Option<Arc<dyn Storage>> {
        let store = common::Breakable::new(shared());
        let storage = FileStorage::builder()
            .store(store.clone())
            .namespace(&self.next_name())
            .build()
            .await
            .unwrap_or_else(|e| panic!("building the broken instance: {e}"));
        store.broken.store(true, Ordering::Release);
        Some(Arc::new(storage))
    }

    /// Deletes every object the cases wrote.
    async fn cleanup(&self) -> Result<(), StorageError> {
        use futures::TryStreamExt;
        use object_store::ObjectStoreExt;
        let store = shared();
        let all: Vec<_> = store
            .list(None)
            .try_collect()
            .await
            .map_err(|e| StorageError::config("file", e.to_string()))?;
        for meta in all {
            let _ = store.delete(&meta.location).await;
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    omniq_conformance::run(MemoryFactory {
        next: AtomicUsize::new(0),
    })
}
