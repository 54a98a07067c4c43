//! The OmniQ conformance suite against the file backend on a local directory. Every case
//! gets a fresh namespace in ONE shared directory, so namespace isolation (T14) is
//! checked where it matters: key prefixes side by side in the same directory.
//!
//! The directory is a temporary one, or the one `OMNIQ_CONFORMANCE_URL` names
//! (`file://DIR` or a path); there, `cleanup` removes only this run's namespaces.

mod common;

use omniq_conformance::{StorageFactory, async_trait};
use omniq_core::{Storage, StorageError};
use omniq_file::{FileConfig, FileStorage, Location};
use std::path::PathBuf;
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

/// The directory every case's namespace lives in.
fn shared_dir() -> Result<PathBuf, StorageError> {
    match std::env::var("OMNIQ_CONFORMANCE_URL") {
        Ok(url) => match FileConfig::from_url(&url)?.location {
            Some(Location::Dir(path)) => Ok(path),
            _ => Err(StorageError::config(
                "file",
                format!("OMNIQ_CONFORMANCE_URL={url:?} is not a directory (file://DIR)"),
            )),
        },
        Err(_) => Ok(dir().path().to_path_buf()),
    }
}

/// Namespaces of this run start with this prefix (the process id keeps runs against one
/// shared directory apart).
fn prefix() -> String {
    format!("conf{}_", std::process::id())
}

struct DirFactory {
    next: AtomicUsize,
}

impl DirFactory {
    fn next_name(&self) -> String {
        format!("{}{}", prefix(), self.next.fetch_add(1, Ordering::Relaxed))
    }
}

#[async_trait]
impl StorageFactory for DirFactory {
    fn backend(&self) -> &'static str {
        "file"
    }

    async fn create(&self) -> Result<Arc<dyn Storage>, StorageError> {
        let storage = FileStorage::builder()
            .dir(shared_dir()?)
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

    /// Removes every namespace of this run (a temporary directory itself goes when the
    /// process exits).
    async fn cleanup(&self) -> Result<(), StorageError> {
        let prefix = prefix();
        for entry in std::fs::read_dir(shared_dir()?)
            .map_err(|e| StorageError::config("file", e.to_string()))?
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    omniq_conformance::run(DirFactory {
        next: AtomicUsize::new(0),
    })
}
