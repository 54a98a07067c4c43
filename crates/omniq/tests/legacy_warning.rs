//! R6: the legacy storage constructor emits the guide's deprecation warning, once.
//! (Its own test binary: the warning is once per process.)

use omniq::{AsyncWorkerPool, LEGACY_STORAGE_WARNING};
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn legacy_storage_constructor_warns_once_with_the_guides_text() {
    let buf = Buf::default();
    let sink = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let storage: Arc<dyn omniq::Storage> = Arc::new(
        omniq_sqlite::SqliteStorage::in_memory()
            .await
            .expect("sqlite"),
    );
    #[allow(deprecated)]
    let first = AsyncWorkerPool::from_storage(Arc::clone(&storage));
    #[allow(deprecated)]
    let second = AsyncWorkerPool::builder()
        .storage(storage)
        .build()
        .expect("legacy ok");
    let out = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf8");
    assert_eq!(
        out.matches("Passing 'storage' to AsyncWorkerPool is deprecated")
            .count(),
        1,
        "{out}"
    );
    assert!(out.contains(LEGACY_STORAGE_WARNING), "{out}");
    assert!(out.contains("WARN"), "{out}");
    drop((first, second));
}
