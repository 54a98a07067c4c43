//! Shared by the test targets: a store that can be made to fail, and the factories.
#![allow(dead_code, unreachable_pub)]

use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// `impl ObjectStore for $store` with the given `put_opts`, every other method passed
/// straight to `self.inner` (each test store below changes only its writes).
macro_rules! store_with_put {
    ($store:ty, $put:item) => {
        #[async_trait::async_trait]
        impl ObjectStore for $store {
            $put

            async fn put_multipart_opts(
                &self,
                location: &Path,
                opts: PutMultipartOptions,
            ) -> object_store::Result<Box<dyn MultipartUpload>> {
                self.inner.put_multipart_opts(location, opts).await
            }

            async fn get_opts(
                &self,
                location: &Path,
                options: GetOptions,
            ) -> object_store::Result<GetResult> {
                self.inner.get_opts(location, options).await
            }

            fn delete_stream(
                &self,
                locations: BoxStream<'static, object_store::Result<Path>>,
            ) -> BoxStream<'static, object_store::Result<Path>> {
                self.inner.delete_stream(locations)
            }

            fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
                self.inner.list(prefix)
            }

            async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
                self.inner.list_with_delimiter(prefix).await
            }

            async fn copy_opts(
                &self,
                from: &Path,
                to: &Path,
                options: CopyOptions,
            ) -> object_store::Result<()> {
                self.inner.copy_opts(from, to, options).await
            }
        }
    };
}

/// An object store whose every call fails with a transport error once `broken` is set
/// (a disk or a server that went away).
#[derive(Debug)]
pub struct Breakable {
    pub inner: Arc<dyn ObjectStore>,
    pub broken: AtomicBool,
}

impl Breakable {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            broken: AtomicBool::new(false),
        })
    }

    fn check(&self) -> object_store::Result<()> {
        if self.broken.load(Ordering::Acquire) {
            Err(object_store::Error::Generic {
                store: "Breakable",
                source: "the store went away".into(),
            })
        } else {
            Ok(())
        }
    }
}

impl fmt::Display for Breakable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Breakable({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Breakable {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.check()?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.check()?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.check()?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        if let Err(e) = self.check() {
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        if let Err(e) = self.check() {
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.check()?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.check()?;
        self.inner.copy_opts(from, to, options).await
    }
}

/// A store whose "conditional" create silently overwrites (like an S3 bucket without
/// conditional writes behind a naive wrapper): must be refused at construction.
#[derive(Debug)]
pub struct NoConditional {
    inner: object_store::memory::InMemory,
}

impl NoConditional {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: object_store::memory::InMemory::new(),
        })
    }
}

impl fmt::Display for NoConditional {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NoConditional")
    }
}

store_with_put!(
    NoConditional,
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        _opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner
            .put_opts(location, payload, PutOptions::default())
            .await
    }
);

/// A store whose creates of task records land but answer `AlreadyExists`, as when a
/// cloud store's response is lost and the client's retry meets its own write.
#[derive(Debug)]
pub struct LostResponses {
    inner: object_store::memory::InMemory,
}

impl LostResponses {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: object_store::memory::InMemory::new(),
        })
    }
}

impl fmt::Display for LostResponses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LostResponses")
    }
}

store_with_put!(
    LostResponses,
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let lie =
            matches!(opts.mode, object_store::PutMode::Create) && location.as_ref().contains("/t/");
        let r = self.inner.put_opts(location, payload, opts).await?;
        if lie {
            return Err(object_store::Error::AlreadyExists {
                path: location.to_string(),
                source: "the retry met its own write".into(),
            });
        }
        Ok(r)
    }
);

/// A store whose creates of enqueue-batch commit markers fail, like a process that
/// crashed after writing a batch's records and before its marker.
#[derive(Debug)]
pub struct NoMarkers {
    pub inner: Arc<dyn ObjectStore>,
}

impl fmt::Display for NoMarkers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoMarkers({})", self.inner)
    }
}

store_with_put!(
    NoMarkers,
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if location.as_ref().contains("/b/") {
            return Err(object_store::Error::Generic {
                store: "NoMarkers",
                source: "the process died before the commit marker".into(),
            });
        }
        self.inner.put_opts(location, payload, opts).await
    }
);
