//! The PROD file writer (size rotation, retention by age, gzip) and the non-blocking
//! front end.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use file_rotate::compression::Compression;
use file_rotate::suffix::{AppendTimestamp, FileLimit};
use file_rotate::{ContentLimit, FileRotate};
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};

use super::{LogConfig, LogMode, LoggingError};

/// The format of rotated files' timestamp suffix, in local time: `omniq.log.20251201T103045`.
/// Retention compares this suffix with the current time.
pub const ROTATED_SUFFIX_FORMAT: &str = "%Y%m%dT%H%M%S";

/// A size-rotated log file: `std::io::Write` over [`file_rotate`].
///
/// When the file holds more than [`LogConfig::rotation_bytes`], the next write first renames
/// it to `<file>.<YYYYmmddTHHMMSS>[.N]` (local time; `.N` when several rotations fall in the
/// same second), gzips it to `….gz` when compression is on, and deletes rotated files whose
/// suffix is older than [`LogConfig::retention`]. A write is never split across files, so a
/// formatted line stays whole. Usually wrapped in the non-blocking writer by
/// [`LogConfig::open_writer`]; usable directly for synchronous logging.
pub struct RotatingFileWriter {
    // Buffered: the non-blocking worker writes line by line and flushes whenever its
    // queue runs dry, so a burst of lines costs one write call instead of one per line.
    // The buffer only ever holds whole lines, so rotation still never splits one.
    inner: io::BufWriter<FileRotate<AppendTimestamp>>,
}

impl std::fmt::Debug for RotatingFileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatingFileWriter").finish_non_exhaustive()
    }
}

impl Write for RotatingFileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl RotatingFileWriter {
    /// Opens (creating it and its directory if needed) the file of `config`.
    ///
    /// # Errors
    ///
    /// [`LoggingError::InvalidValue`] for a zero rotation size or retention,
    /// [`LoggingError::File`] when the directory or file cannot be created or opened.
    pub fn open(config: &LogConfig) -> Result<Self, LoggingError> {
        config.validate()?;
        let path = config.file.as_path();
        let file_error = |source| LoggingError::File {
            path: path.to_path_buf(),
            source,
        };
        // file-rotate panics when it cannot create the directory and silently drops writes
        // when it cannot open the file, so both are checked here first, as errors.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(file_error)?;
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(file_error)?;
        let path = if path.parent().is_some_and(|d| d.as_os_str().is_empty()) {
            // A bare file name: file-rotate needs a parent directory to scan for old files.
            Path::new(".").join(path)
        } else {
            path.to_path_buf()
        };

        let file_limit = match chrono::Duration::from_std(config.retention) {
            Ok(age) => FileLimit::Age(age),
            Err(_) => FileLimit::Unlimited,
        };
        let compression = if config.compression {
            Compression::OnRotate(0)
        } else {
            Compression::None
        };
        let bytes = usize::try_from(config.rotation_bytes).unwrap_or(usize::MAX);
        let inner = FileRotate::new(
            path,
            AppendTimestamp::with_format(
                ROTATED_SUFFIX_FORMAT,
                file_limit,
                file_rotate::suffix::DateFrom::Now,
            ),
            ContentLimit::BytesSurpassed(bytes),
            compression,
            None,
        );
        Ok(RotatingFileWriter {
            // At most an eighth of the rotation size, so a rotated file overshoots its
            // limit by no more than that (64 KiB for the default 100 MB).
            inner: io::BufWriter::with_capacity(buffer_capacity(bytes), inner),
        })
    }
}

/// Keeps the non-blocking writer's background thread alive; dropping it flushes every
/// buffered line (waiting up to about a second) and stops the thread.
///
/// Keep it alive until the program exits — bind it in `main` (`let _guard = ...;`, not
/// `let _ = ...;`, which drops it at once). Lines logged after it is dropped are lost.
#[must_use = "dropping the LogGuard stops the log writer; keep it alive until exit"]
#[derive(Debug)]
pub struct LogGuard {
    _worker: WorkerGuard,
}

impl LogConfig {
    /// The writer `configure` uses, behind tracing-appender's non-blocking writer: a
    /// [`RotatingFileWriter`] in PROD mode, standard error in DEV mode.
    ///
    /// The writer never drops lines (it applies back-pressure when its 128 000-line buffer
    /// is full); each formatted event reaches the file in one write, so lines never
    /// interleave. Use it with [`LogConfig::build_subscriber`] to log to the configured
    /// destination without installing a global subscriber.
    ///
    /// # Errors
    ///
    /// As [`RotatingFileWriter::open`], in PROD mode.
    pub fn open_writer(&self) -> Result<(NonBlocking, LogGuard), LoggingError> {
        self.validate()?;
        let builder = NonBlockingBuilder::default()
            .lossy(false)
            .thread_name("omniq-log-writer");
        let (writer, guard) = match self.mode {
            LogMode::Prod => builder.finish(RotatingFileWriter::open(self)?),
            LogMode::Dev => builder.finish(io::stderr()),
        };
        Ok((writer, LogGuard { _worker: guard }))
    }
}

/// The write buffer for a rotation size of `rotation_bytes`.
fn buffer_capacity(rotation_bytes: usize) -> usize {
    (rotation_bytes / 8).min(64 * 1024)
}
