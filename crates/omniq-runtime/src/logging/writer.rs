//! The PROD file writer (size rotation, retention by age, gzip) and the batching
//! background writer in front of every destination ([`LogWriter`]).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use file_rotate::compression::Compression;
use file_rotate::suffix::{AppendTimestamp, FileLimit};
use file_rotate::{ContentLimit, FileRotate};
use tracing_subscriber::fmt::MakeWriter;

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
/// formatted line stays whole. Usually behind a [`LogWriter`] (from
/// [`LogConfig::open_writer`]); usable directly for synchronous logging.
pub struct RotatingFileWriter {
    // Buffered: the LogWriter thread writes a batch line by line, then flushes, so a batch
    // costs a few write calls instead of one per line. The buffer only ever holds whole
    // lines, so rotation still never splits one.
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

/// Bytes of formatted lines that may wait for the writer thread. A logging call that
/// would go past it waits until the writer thread has taken what is queued: lines are
/// never dropped, callers are slowed down instead (back-pressure).
pub const LOG_QUEUE_BYTES: usize = 8 * 1024 * 1024;

/// The writer thread writes what is queued this long after the first line of a batch
/// arrived, at the latest ...
pub const LOG_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// ... or as soon as this many bytes are queued.
const BATCH_BYTES: usize = 256 * 1024;

/// The writer of [`LogConfig::open_writer`] and `configure`: a [`MakeWriter`] whose
/// lines are written by a background thread, in batches.
///
/// A logging call copies its formatted line into a shared queue and returns; the
/// thread (`omniq-log-writer`) takes the whole queue at once [`LOG_FLUSH_INTERVAL`] after
/// its first line (or when [`LOG_QUEUE_BYTES`]/32 have gathered), writes it and flushes the
/// destination: one wake-up and a few `write` calls per batch instead of one per line.
///
/// - **Whole lines:** each `write` call is queued in one piece, so lines of concurrent
///   callers never interleave and a rotated file never splits a line.
/// - **Bounded, never lossy:** at most [`LOG_QUEUE_BYTES`] wait; a call that would pass
///   that waits until the thread has taken the queue.
/// - **Durable at the end:** [`flush`](Write::flush) returns once every line written
///   before it is in the destination, and so does dropping the [`LogGuard`] (which also
///   stops the thread). An `AsyncWorkerPool`'s `stop` flushes every open writer before it
///   returns. Lines written after the guard is dropped are discarded.
///
/// Cheap to clone: clones share the queue and the thread.
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter").finish_non_exhaustive()
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = &'a LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Write for &LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.shared.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.shared.flush(None)
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self).flush()
    }
}

/// Keeps the writer thread of a [`LogWriter`] running; dropping it writes every queued
/// line, flushes the destination and stops the thread (it waits as long as that takes).
///
/// Keep it alive until the program exits — bind it in `main` (`let _guard = ...;`, not
/// `let _ = ...;`, which drops it at once). Lines logged after it is dropped are lost.
#[must_use = "dropping the LogGuard stops the log writer; keep it alive until exit"]
#[derive(Debug)]
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LogGuard {
    /// Waits until every line logged so far is written to the destination and flushed.
    ///
    /// # Errors
    ///
    /// An error when the writer thread has stopped (its destination panicked) with lines
    /// still unwritten.
    pub fn flush(&self) -> io::Result<()> {
        self.shared.flush(None)
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.closing = true;
        }
        self.shared.work.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // Whatever happened to the thread, nobody may wait for it any more.
        self.shared.lock().stopped = true;
        self.shared.done.notify_all();
    }
}

impl LogConfig {
    /// The writer `configure` uses: a [`LogWriter`] (batched, on a background thread) in
    /// front of a [`RotatingFileWriter`] in PROD mode, standard error in DEV mode.
    ///
    /// The writer never drops lines (callers wait while [`LOG_QUEUE_BYTES`] are queued);
    /// each formatted event reaches the destination in one piece, so lines never
    /// interleave. Use it with [`LogConfig::build_subscriber`] to log to the configured
    /// destination without installing a global subscriber.
    ///
    /// # Errors
    ///
    /// As [`RotatingFileWriter::open`], in PROD mode; [`LoggingError::File`] if the thread
    /// cannot be started.
    pub fn open_writer(&self) -> Result<(LogWriter, LogGuard), LoggingError> {
        self.validate()?;
        let (destination, piece): (Box<dyn Write + Send>, usize) = match self.mode {
            LogMode::Prod => {
                let file = RotatingFileWriter::open(self)?;
                let piece = file.inner.capacity();
                (Box::new(file), piece)
            }
            LogMode::Dev => (
                Box::new(io::BufWriter::with_capacity(64 * 1024, io::stderr())),
                64 * 1024,
            ),
        };
        LogWriter::start(destination, piece).map_err(|source| LoggingError::File {
            path: self.file.clone(),
            source,
        })
    }
}

impl LogWriter {
    fn start(
        mut destination: Box<dyn Write + Send>,
        piece: usize,
    ) -> io::Result<(LogWriter, LogGuard)> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("omniq-log-writer".into())
                .spawn(move || shared.run(&mut *destination, piece))?
        };
        register(&shared);
        Ok((
            LogWriter {
                shared: Arc::clone(&shared),
            },
            LogGuard {
                shared,
                thread: Some(thread),
            },
        ))
    }
}

struct Shared {
    state: Mutex<State>,
    /// The writer thread waits here for lines, a flush request or the close.
    work: Condvar,
    /// Callers wait here for room in the queue or for their flush.
    done: Condvar,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// Whole lines waiting for the writer thread.
    queue: Vec<u8>,
    /// Bytes ever queued, and ever written out and flushed: a flush waits until `written`
    /// reaches the `queued` it saw.
    queued: u64,
    written: u64,
    /// The thread sleeps with nothing queued: the next line wakes it.
    idle: bool,
    /// Somebody waits (flush, or a full queue): write now, not at the interval.
    urgent: bool,
    /// The guard was dropped: write what is queued, then stop.
    closing: bool,
    /// The thread has ended: lines are discarded and nobody waits.
    stopped: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues one formatted line (or several, in one piece).
    fn push(&self, line: &[u8]) {
        if line.is_empty() {
            return;
        }
        let mut state = self.lock();
        while !state.stopped
            && !state.queue.is_empty()
            && state.queue.len() + line.len() > LOG_QUEUE_BYTES
        {
            state.urgent = true;
            self.work.notify_one();
            state = self
                .done
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.stopped {
            return;
        }
        let before = state.queue.len();
        state.queue.extend_from_slice(line);
        state.queued += line.len() as u64;
        let wake = state.idle || (before < BATCH_BYTES && state.queue.len() >= BATCH_BYTES);
        if wake {
            state.idle = false;
            drop(state);
            self.work.notify_one();
        }
    }

    /// Waits until every line queued so far is written and flushed (or `limit` passed).
    fn flush(&self, limit: Option<Duration>) -> io::Result<()> {
        let deadline = limit.map(|l| Instant::now() + l);
        let mut state = self.lock();
        let target = state.queued;
        while state.written < target && !state.stopped {
            state.urgent = true;
            state.idle = false;
            self.work.notify_one();
            state = match deadline {
                None => self
                    .done
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the log writer did not flush in time",
                        ));
                    }
                    self.done
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
        if state.written < target {
            return Err(io::Error::other("the log writer has stopped"));
        }
        Ok(())
    }

    /// The writer thread.
    fn run(&self, destination: &mut dyn Write, piece: usize) {
        let mut batch = Vec::new();
        let mut reported = false;
        loop {
            let (upto, closing) = {
                let mut state = self.lock();
                while state.queue.is_empty() && !state.closing && !state.urgent {
                    state.idle = true;
                    state = self
                        .work
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                state.idle = false;
                // Let a batch gather, from its first line on.
                let first = Instant::now();
                while !state.closing && !state.urgent && state.queue.len() < BATCH_BYTES {
                    let left = LOG_FLUSH_INTERVAL.saturating_sub(first.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    state = self
                        .work
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                std::mem::swap(&mut batch, &mut state.queue);
                state.urgent = false;
                (state.queued, state.closing)
            };
            // Room again for callers waiting on a full queue.
            self.done.notify_all();
            let result = catch_unwind(AssertUnwindSafe(|| write_batch(destination, &batch, piece)));
            batch.clear();
            if batch.capacity() > 2 * BATCH_BYTES {
                batch.shrink_to(BATCH_BYTES);
            }
            let panicked = match result {
                Ok(Ok(())) => false,
                Ok(Err(error)) => {
                    if !reported {
                        eprintln!("omniq: cannot write the log: {error}");
                        reported = true;
                    }
                    false
                }
                Err(_) => {
                    eprintln!("omniq: the log writer panicked; further log lines are discarded");
                    true
                }
            };
            let stop = {
                let mut state = self.lock();
                // After a panic the batch is not written: flushes waiting for it fail.
                if !panicked {
                    state.written = upto;
                }
                if panicked || (closing && state.queue.is_empty()) {
                    state.stopped = true;
                }
                state.stopped
            };
            self.done.notify_all();
            if stop {
                return;
            }
        }
    }
}

/// Writes a batch in pieces of at most `piece` bytes cut between lines (so a buffered
/// rotating file still rotates near its limit, never inside a line) and flushes.
fn write_batch(destination: &mut dyn Write, batch: &[u8], piece: usize) -> io::Result<()> {
    let mut rest = batch;
    while !rest.is_empty() {
        let cut = if rest.len() <= piece {
            rest.len()
        } else {
            rest[..piece]
                .iter()
                .rposition(|&b| b == b'\n')
                .or_else(|| rest.iter().position(|&b| b == b'\n'))
                .map_or(rest.len(), |i| i + 1)
        };
        destination.write_all(&rest[..cut])?;
        rest = &rest[cut..];
    }
    destination.flush()
}

/// Every writer opened in this process, for [`flush_all`].
static WRITERS: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

fn register(shared: &Arc<Shared>) {
    let mut writers = WRITERS.lock().unwrap_or_else(PoisonError::into_inner);
    writers.retain(|w| w.strong_count() > 0);
    writers.push(Arc::downgrade(shared));
}

/// Whether any [`LogWriter`] is open in this process.
pub(crate) fn any_open() -> bool {
    WRITERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .any(|w| w.strong_count() > 0)
}

/// Flushes every open [`LogWriter`], waiting at most `limit` in all.
pub(crate) fn flush_all(limit: Duration) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    let writers: Vec<Arc<Shared>> = WRITERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for writer in writers {
        writer.flush(Some(deadline.saturating_duration_since(Instant::now())))?;
    }
    Ok(())
}

/// The write buffer for a rotation size of `rotation_bytes`.
fn buffer_capacity(rotation_bytes: usize) -> usize {
    (rotation_bytes / 8).min(64 * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A destination that holds every write until the test lets it go on.
    struct Gate {
        open: Arc<(Mutex<bool>, Condvar)>,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (lock, cv) = &*self.open;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_makes_callers_wait_and_loses_nothing() {
        let open = Arc::new((Mutex::new(false), Condvar::new()));
        let out = Arc::new(Mutex::new(Vec::new()));
        let gate = Gate {
            open: Arc::clone(&open),
            out: Arc::clone(&out),
        };
        let (writer, guard) = LogWriter::start(Box::new(gate), 64 * 1024).unwrap();
        let line = [b'x'; 1023]
            .iter()
            .copied()
            .chain(std::iter::once(b'\n'))
            .collect::<Vec<u8>>();
        // Three queues' worth: the writer thread is stuck on its first batch, so the caller
        // must block once the queue is full.
        let lines = 3 * LOG_QUEUE_BYTES / line.len();
        let (done_tx, done_rx) = mpsc::channel();
        let caller = {
            let writer = writer.clone();
            let line = line.clone();
            std::thread::spawn(move || {
                let mut w = &writer;
                for _ in 0..lines {
                    w.write_all(&line).unwrap();
                }
                done_tx.send(()).unwrap();
            })
        };
        assert!(
            done_rx.recv_timeout(Duration::from_millis(500)).is_err(),
            "the caller must wait while the queue is full"
        );
        {
            let state = writer.shared.lock();
            assert!(
                state.queue.len() <= LOG_QUEUE_BYTES,
                "{}",
                state.queue.len()
            );
        }
        *open.0.lock().unwrap() = true;
        open.1.notify_all();
        done_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        caller.join().unwrap();
        drop(guard);
        let out = out.lock().unwrap();
        assert_eq!(out.len(), lines * line.len());
        assert!(
            out.split(|&b| b == b'\n')
                .take(lines)
                .all(|l| l == &line[..1023])
        );
    }

    struct Panics;

    impl Write for Panics {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            panic!("destination failed");
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_panicking_destination_stops_the_writer_without_hanging_callers() {
        let (writer, guard) = LogWriter::start(Box::new(Panics), 1024).unwrap();
        let mut w = &writer;
        w.write_all(b"one\n").unwrap();
        assert!(w.flush().is_err(), "the line could not be written");
        // Later lines are discarded; nobody blocks, even past the queue's bound.
        for _ in 0..(LOG_QUEUE_BYTES / 1024 + 10) {
            w.write_all(&[b'y'; 1024]).unwrap();
        }
        drop(guard);
    }

    #[test]
    fn batches_are_cut_between_lines() {
        let mut out = Vec::new();
        struct Pieces<'a>(&'a mut Vec<Vec<u8>>);
        impl Write for Pieces<'_> {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.push(buf.to_vec());
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let batch = b"aaaa\nbbbb\ncc\nddddddddddddd\ne\n";
        write_batch(&mut Pieces(&mut out), batch, 11).unwrap();
        let pieces: Vec<&[u8]> = out.iter().map(Vec::as_slice).collect();
        assert_eq!(
            pieces,
            [&b"aaaa\nbbbb\n"[..], b"cc\n", b"ddddddddddddd\n", b"e\n"]
        );
    }
}
