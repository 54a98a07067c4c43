//! [`AsyncOmniQ`]: one object that builds storage, queue and workers from [`Settings`].

use omniq_core::{CancelOutcome, Storage, Task, TaskError, TaskId};
#[cfg(any(
    feature = "file",
    feature = "sqlite",
    feature = "postgres",
    feature = "redis"
))]
use omniq_runtime::Backend;
use omniq_runtime::{
    AsyncTaskQueue, AsyncWorkerPool, EnqueueBuilder, Error, IntoDuration, QueueDefaults, Result,
    Settings, TaskOutcome, TaskType, TypedEnqueueBuilder, TypedTaskId,
};
use serde::Serialize;
use std::sync::Arc;

/// The one-stop facade: settings in, queue and workers out.
///
/// ```no_run
/// # async fn demo() -> omniq::Result<()> {
/// use omniq::{AsyncOmniQ, HandlerError, Settings};
///
/// let omniq = AsyncOmniQ::new(Settings::from_env()?).await?;
/// let mut worker = omniq.worker(4)?;
/// worker.register("greet", |name: String| async move { Ok::<_, HandlerError>(format!("hi {name}")) });
/// worker.start()?;
/// let id = omniq.enqueue("greet", &"ada").await?;
/// let res = omniq.wait_result(&id, std::time::Duration::from_secs(5)).await?;
/// worker.stop(std::time::Duration::from_secs(5)).await?;
/// # let _ = res; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AsyncOmniQ {
    settings: Settings,
    queue: AsyncTaskQueue,
}

impl AsyncOmniQ {
    /// Builds the configured storage (creating `base_dir` for the embedded default).
    pub async fn new(settings: Settings) -> Result<Self> {
        let storage = build_storage(&settings).await?;
        Ok(Self::with_storage(settings, storage))
    }

    /// Uses an existing storage with these settings' defaults.
    pub fn with_storage(settings: Settings, storage: Arc<dyn Storage>) -> Self {
        let queue = AsyncTaskQueue::new(storage)
            .with_format(settings.serializer)
            .with_defaults(QueueDefaults {
                max_retries: settings.default_max_retries,
                timeout: settings.default_timeout,
                ..QueueDefaults::default()
            });
        Self { settings, queue }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The queue.
    pub fn queue(&self) -> &AsyncTaskQueue {
        &self.queue
    }

    /// The storage.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        self.queue.storage()
    }

    /// A worker pool over this queue (the new interface, internally
    /// `AsyncWorkerPool::builder().queue(queue).concurrency(n)`).
    pub fn worker(&self, concurrency: usize) -> Result<AsyncWorkerPool> {
        AsyncWorkerPool::builder()
            .queue(self.queue.clone())
            .concurrency(concurrency)
            .build()
    }

    /// See [`AsyncTaskQueue::enqueue_typed`].
    pub fn enqueue_typed<T: TaskType>(&self, args: &T::Args) -> TypedEnqueueBuilder<'_, T> {
        self.queue.enqueue_typed::<T>(args)
    }

    /// See [`AsyncTaskQueue::wait_output`].
    pub async fn wait_output<T: TaskType>(
        &self,
        id: &TypedTaskId<T>,
        timeout: impl IntoDuration,
    ) -> Result<std::result::Result<T::Output, TaskError>> {
        self.queue.wait_output(id, timeout).await
    }

    /// See [`AsyncTaskQueue::enqueue`].
    pub fn enqueue<A: Serialize + ?Sized>(&self, func: &str, args: &A) -> EnqueueBuilder<'_> {
        self.queue.enqueue(func, args)
    }

    /// See [`AsyncTaskQueue::get_task`].
    pub async fn get_task(&self, id: &TaskId) -> Result<Option<Task>> {
        self.queue.get_task(id).await
    }

    /// See [`AsyncTaskQueue::get_result`].
    pub async fn get_result(&self, id: &TaskId) -> Result<Option<TaskOutcome>> {
        self.queue.get_result(id).await
    }

    /// See [`AsyncTaskQueue::wait_result`].
    pub async fn wait_result(
        &self,
        id: &TaskId,
        timeout: impl IntoDuration,
    ) -> Result<TaskOutcome> {
        self.queue.wait_result(id, timeout).await
    }

    /// See [`AsyncTaskQueue::cancel`].
    pub async fn cancel(&self, id: &TaskId) -> Result<CancelOutcome> {
        self.queue.cancel(id).await
    }

    /// Closes the storage.
    pub async fn close(&self) -> Result<()> {
        Ok(self.queue.storage().close().await?)
    }
}

/// Builds the storage `settings` describe: one arm per backend, each parsing its URL in
/// its own crate.
pub async fn build_storage(settings: &Settings) -> Result<Arc<dyn Storage>> {
    settings.validate()?;
    match settings.backend {
        #[cfg(feature = "file")]
        Backend::File => {
            let builder = match settings.url.as_deref() {
                // An object store (validate() lets only those through).
                Some(url) => omniq_file::FileStorageBuilder::from_config(
                    omniq_file::FileConfig::from_url(url).map_err(|e| url_error(&e))?,
                ),
                None => {
                    std::fs::create_dir_all(&settings.base_dir).map_err(|e| {
                        Error::Config(format!(
                            "OMNIQ_BASE_DIR={}: cannot create directory: {e}",
                            settings.base_dir.display()
                        ))
                    })?;
                    omniq_file::FileStorage::builder().dir(&settings.base_dir)
                }
            };
            let storage = builder
                .namespace(&settings.namespace)
                .serializer(settings.serializer)
                .result_ttl(settings.result_ttl)
                .build()
                .await?;
            Ok(Arc::new(storage))
        }
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => {
            let config = match settings.url.as_deref() {
                Some(url) => {
                    omniq_sqlite::SqliteConfig::from_url(url).map_err(|e| url_error(&e))?
                }
                None => omniq_sqlite::SqliteConfig {
                    location: Some(omniq_sqlite::Location::File(
                        settings.base_dir.join("omniq.db"),
                    )),
                    ..omniq_sqlite::SqliteConfig::default()
                },
            };
            sqlite(config, settings).await
        }
        #[cfg(feature = "postgres")]
        Backend::Postgres => {
            // validate() ensures the URL is set.
            let url = settings.url.as_deref().unwrap_or_default();
            let config =
                omniq_postgres::PostgresConfig::from_url(url).map_err(|e| url_error(&e))?;
            let storage = omniq_postgres::PostgresStorageBuilder::from_config(config)
                .namespace(&settings.namespace)
                .serializer(settings.serializer)
                .result_ttl(settings.result_ttl)
                .build()
                .await?;
            Ok(Arc::new(storage))
        }
        #[cfg(feature = "redis")]
        Backend::Redis => {
            let url = settings.url.as_deref().unwrap_or_default();
            let config = omniq_redis::RedisConfig::from_url(url).map_err(|e| url_error(&e))?;
            let storage = omniq_redis::RedisStorageBuilder::from_config(config)
                .namespace(&settings.namespace)
                .serializer(settings.serializer)
                .result_ttl(settings.result_ttl)
                .build()
                .await?;
            Ok(Arc::new(storage))
        }
        #[allow(unreachable_patterns)]
        other => Err(Error::Config(format!(
            "OMNIQ_BACKEND={} is not available in this build (enable omniq's `{}` cargo feature)",
            other.as_str(),
            other.feature()
        ))),
    }
}

/// A backend's refusal of `OMNIQ_URL`, naming the variable (the backend's message says
/// what a valid URL looks like; it never contains the password).
#[allow(dead_code)]
fn url_error(e: &omniq_core::StorageError) -> Error {
    Error::Config(format!("OMNIQ_URL: {}", e.message()))
}

#[cfg(feature = "sqlite")]
async fn sqlite(
    config: omniq_sqlite::SqliteConfig,
    settings: &Settings,
) -> Result<Arc<dyn Storage>> {
    let storage = omniq_sqlite::SqliteStorageBuilder::from_config(config)
        .namespace(&settings.namespace)
        .serializer(settings.serializer)
        .result_ttl(settings.result_ttl)
        .build()
        .await?;
    Ok(Arc::new(storage))
}

#[cfg(test)]
mod tests {
    #[allow(unused_imports)]
    use super::*;
    #[allow(unused_imports)]
    use omniq_runtime::Backend;

    #[cfg(not(feature = "postgres"))]
    #[tokio::test]
    async fn a_backend_left_out_of_the_build_names_its_feature() {
        let settings = Settings {
            backend: Backend::Postgres,
            url: Some("postgres://127.0.0.1/x".into()),
            ..Settings::default()
        };
        let err = build_storage(&settings).await.err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(
            err.contains("OMNIQ_BACKEND=postgres") && err.contains("`postgres` cargo feature"),
            "{err}"
        );
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn a_bad_sqlite_url_names_the_variable() {
        let settings = Settings {
            backend: Backend::Sqlite,
            url: Some("sqlite://x.db?mode=ro".into()),
            ..Settings::default()
        };
        let err = build_storage(&settings).await.err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(
            err.contains("OMNIQ_URL") && err.contains("without query parameters"),
            "{err}"
        );
    }

    #[cfg(all(feature = "file", not(feature = "file-cloud")))]
    #[tokio::test]
    async fn an_object_store_url_names_the_feature_it_needs() {
        let settings = Settings {
            backend: Backend::File,
            url: Some("s3://bucket/queues".into()),
            ..Settings::default()
        };
        let err = build_storage(&settings).await.err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(
            err.contains("OMNIQ_URL") && err.contains("`file-cloud`"),
            "{err}"
        );
    }
}
