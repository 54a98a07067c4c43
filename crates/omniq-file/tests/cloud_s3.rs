//! The OmniQ conformance suite against the file backend on a real S3 server (AWS, or a
//! compatible one such as a local moto server), opened by URL like a user would:
//! `OMNIQ_TEST_S3_URL=s3://BUCKET/PREFIX` plus the usual `AWS_*` variables
//! (`AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, `AWS_ACCESS_KEY_ID`, …), and the `cloud` feature:
//!
//! ```text
//! OMNIQ_TEST_S3_URL=s3://omniq-test/conformance AWS_ENDPOINT=http://127.0.0.1:5055 \
//!   AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
//!   AWS_REGION=us-east-1 cargo test -p omniq-file --features cloud --test cloud_s3
//! ```
//!
//! Without the variable the suite is skipped (and says so). The target's name does not
//! start with `conformance`, so `cargo xtask conformance` (which runs every such target)
//! does not report a skipped run as a pass.

use std::process::ExitCode;

#[cfg(feature = "cloud")]
mod common;

#[cfg(feature = "cloud")]
mod s3 {
    use crate::common;
    use omniq_conformance::{StorageFactory, async_trait};
    use omniq_core::{Storage, StorageError};
    use omniq_file::{FileConfig, FileStorage, Location};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub(crate) struct S3Factory {
        pub(crate) store: Arc<dyn object_store::ObjectStore>,
        pub(crate) run: String,
        pub(crate) next: AtomicUsize,
    }

    impl S3Factory {
        pub(crate) fn open(url: &str) -> Result<Self, StorageError> {
            let Some(Location::Store(store)) = FileConfig::from_url(url)?.location else {
                return Err(StorageError::config(
                    "file",
                    format!("{url} is not an object store"),
                ));
            };
            Ok(Self {
                store,
                run: format!("s3run{}", std::process::id()),
                next: AtomicUsize::new(0),
            })
        }

        fn next_name(&self) -> String {
            format!(
                "{}-case{}",
                self.run,
                self.next.fetch_add(1, Ordering::Relaxed)
            )
        }
    }

    #[async_trait]
    impl StorageFactory for S3Factory {
        fn backend(&self) -> &'static str {
            "file-s3"
        }

        async fn create(&self) -> Result<Arc<dyn Storage>, StorageError> {
            let storage = FileStorage::builder()
                .store(Arc::clone(&self.store))
                .namespace(&self.next_name())
                .build()
                .await?;
            Ok(Arc::new(storage))
        }

        /// A storage whose store fails every call after it was opened.
        async fn broken(&self) -> Option<Arc<dyn Storage>> {
            let store = common::Breakable::new(Arc::clone(&self.store));
            let storage = FileStorage::builder()
                .store(store.clone())
                .namespace(&self.next_name())
                .build()
                .await
                .unwrap_or_else(|e| panic!("building the broken instance: {e}"));
            store.broken.store(true, Ordering::Release);
            Some(Arc::new(storage))
        }

        /// Deletes every object this run wrote.
        async fn cleanup(&self) -> Result<(), StorageError> {
            use futures::TryStreamExt;
            use object_store::ObjectStoreExt;
            let all: Vec<_> = self
                .store
                .list(None)
                .try_collect()
                .await
                .map_err(|e| StorageError::config("file", e.to_string()))?;
            for meta in all {
                if meta.location.as_ref().starts_with(&self.run) {
                    let _ = self.store.delete(&meta.location).await;
                }
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let Ok(url) = std::env::var("OMNIQ_TEST_S3_URL") else {
        eprintln!(
            "cloud_s3: SKIPPED — set OMNIQ_TEST_S3_URL=s3://BUCKET/PREFIX (with AWS_* \
             variables) and build with --features cloud to run the suite against S3"
        );
        return ExitCode::SUCCESS;
    };
    #[cfg(feature = "cloud")]
    {
        // The store is checked once up front: a server that does not honour conditional
        // creates is refused here with the reason, before 111 cases fail one by one.
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        if let Err(e) = runtime.block_on(omniq_file::FileStorage::from_url(&url)) {
            eprintln!("cloud_s3: {url} cannot be used: {e}");
            return ExitCode::FAILURE;
        }
        drop(runtime);
        let factory = match s3::S3Factory::open(&url) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("cloud_s3: cannot open {url}: {e}");
                return ExitCode::FAILURE;
            }
        };
        omniq_conformance::run(factory)
    }
    #[cfg(not(feature = "cloud"))]
    {
        eprintln!(
            "cloud_s3: OMNIQ_TEST_S3_URL={url} is set but omniq-file was built without \
             the `cloud` feature: cargo test -p omniq-file --features cloud --test cloud_s3"
        );
        ExitCode::FAILURE
    }
}
