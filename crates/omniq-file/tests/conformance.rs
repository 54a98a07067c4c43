//! The OmniQ conformance suite against the file backend on a local directory. Every case
//! gets a fresh namespace in ONE shared directory, so namespace isolation (T14) is
//! checked where it matters: key prefixes side by side in the same directory.

mod common;

use omniq_conformance::{StorageFactory, async_trait};
use omniq_core::{Storage, StorageError};
use omniq_file::FileStorage;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// The directory every case's files live in; removed when the process exits normally
/// (kept for inspection when it is killed).
fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("omniq-file-conformance-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"))
    })
}

struct DirFactory {
    next: AtomicUsize,
}

impl DirFactory {
    fn next_name(&self) -> String {
        format!("case{}", self.next.fetch_add(1, Ordering::Relaxed))
    }
}

#[async_trait]
impl StorageFactory for DirFactory {
    fn backend(&self) -> &'static str {
        "file"
    }

    async fn create(&self) -> Result<Arc<dyn Storage>, StorageError> {
        let storage = FileStorage::builder()
            .dir(dir().path())
            .namespace(&self.next_name())
            .build()
            .await?;
        Ok(Arc::new(storage))
    }

    /// A storage whose directory "went away": its store fails every call with an I/O
    /// error after it was opened.
    async fn broken(&self) -> Option<Arc<dyn Storage>> {
        let local = object_store::local::LocalFileSystem::new_with_prefix(dir().path())
            .unwrap_or_else(|e| panic!("opening the broken instance's directory: {e}"));
        let store = common::Breakable::new(Arc::new(local));
        let storage = FileStorage::builder()
            .store(store.clone())
            .namespace(&self.next_name())
            .build()
            .await
            .unwrap_or_else(|e| panic!("building the broken instance: {e}"));
        store.broken.store(true, Ordering::Release);
        Some(Arc::new(storage))
    }

    /// Removes every case's namespace (the temporary directory itself goes when the
    /// process exits).
    async fn cleanup(&self) -> Result<(), StorageError> {
        for entry in std::fs::read_dir(dir().path())
            .map_err(|e| StorageError::config("file", e.to_string()))?
            .flatten()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    omniq_conformance::run(DirFactory {
        next: AtomicUsize::new(0),
    })
}
