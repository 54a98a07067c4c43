//! Opening the store (with the conditional-create probe), flushing, and the record
//! "transaction": every state change of a task is the conditional create of its next
//! version, with the index entries of the new state written ahead of it.

use crate::cache::{ReadyEntry, ReadyKey};
use crate::config::{Durability, FileConfig, Location};
use crate::convert::{Record, Versioned};
use crate::error::{Error, Result, config, corrupt, is_already_exists, is_not_found};
use crate::schema::{
    Keys, LeaseName, ReadyName, bucket_index, file_name, index_file_name, micros, parse_version,
    prio_dir,
};
use crate::storage::{FileStorage, Inner};
use futures::StreamExt;
use futures::future::join_all;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ListResult, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use omniq_core::{TaskId, TaskStatus, Wake};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Wake-up channel capacity.
const WAKE_CAPACITY: usize = 1024;

/// A transition slower than this re-writes its index entries after its record, in case a
/// claimer took the entries for a crashed writer's leftovers meanwhile (see
/// [`ORPHAN_AGE`]).
const SLOW_WRITE: Duration = Duration::from_secs(20);

/// An index entry whose record version does not exist and that is older than this was
/// left by a writer that crashed (or lost its race) and is deleted.
pub(crate) const ORPHAN_AGE: time::Duration = time::Duration::seconds(60);

/// Enqueue order across the process: strictly increasing, seeded by the wall clock so
/// processes started later sort later.
pub(crate) fn next_seq() -> u64 {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let now = u64::try_from(micros(time::OffsetDateTime::now_utc())).unwrap_or(0);
    let mut prev = SEQ.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match SEQ.compare_exchange_weak(prev, next, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

/// One wake-up channel per (directory, namespace) in this process, so independent
/// instances on one directory wake each other.
fn shared_channel(root: &std::path::Path, ns: &str) -> broadcast::Sender<Wake> {
    type Registry = Mutex<HashMap<(PathBuf, String), Weak<broadcast::Sender<Wake>>>>;
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    static KEEP: OnceLock<Mutex<Vec<Arc<broadcast::Sender<Wake>>>>> = OnceLock::new();
    let registry = REGISTRY.get_or_init(Default::default);
    let mut map = registry.lock().unwrap_or_else(|e| e.into_inner());
    let key = (root.to_path_buf(), ns.to_string());
    if let Some(tx) = map.get(&key).and_then(Weak::upgrade) {
        return (*tx).clone();
    }
    let tx = Arc::new(broadcast::channel(WAKE_CAPACITY).0);
    map.insert(key, Arc::downgrade(&tx));
    // Senders are cheap; keep one alive per directory for the process's life.
    KEEP.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Arc::clone(&tx));
    (*tx).clone()
}

impl FileStorage {
    pub(crate) async fn connect(cfg: FileConfig) -> Result<Self> {
        let location = cfg.location.clone().ok_or_else(|| config("no location"))?;
        let (store, local_root): (Arc<dyn ObjectStore>, Option<PathBuf>) = match &location {
            Location::Dir(dir) => {
                let dir = dir.clone();
                let root = tokio::task::spawn_blocking(move || {
                    std::fs::create_dir_all(&dir)
                        .and_then(|()| std::fs::canonicalize(&dir))
                        .map_err(|source| Error::Io {
                            what: "cannot create data directory",
                            path: dir,
                            source,
                        })
                })
                .await
                .map_err(|e| corrupt(format!("directory setup task failed: {e}")))??;
                let fs = LocalFileSystem::new_with_prefix(&root)?
                    // Not object_store's automatic cleanup: it removes parent directories
                    // too, racing with a concurrent put's `create_dir_all`. Past bucket
                    // directories are removed by listings instead (`remove_empty_dir`).
                    .with_automatic_cleanup(false)
                    // Durability is one syncfs per call (a group commit), not two fsyncs
                    // per file.
                    .with_fsync(false);
                (Arc::new(fs), Some(root))
            }
            Location::Memory => (Arc::new(InMemory::new()), None),
            Location::Store(s) => (Arc::clone(s), None),
        };
        let verify_creates = matches!(location, Location::Store(_));
        let keys = Keys::new(&cfg.namespace);
        probe_conditional_create(&*store, &keys).await?;
        if let Some(root) = &local_root {
            // The probe's directory, empty again (another instance's probe may be in it).
            let _ = std::fs::remove_dir(root.join(&cfg.namespace).join("probe"));
        }
        let wake = match &local_root {
            Some(root) => shared_channel(root, &cfg.namespace),
            None => broadcast::channel(WAKE_CAPACITY).0,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                keys,
                namespace: cfg.namespace,
                location,
                local_root,
                format: cfg.format,
                result_ttl: cfg.result_ttl,
                durability: cfg.durability,
                clock: cfg.clock,
                closed: AtomicBool::new(false),
                wake,
                ready: Default::default(),
                held: Default::default(),
                committed: Default::default(),
                index_files: Default::default(),
                verify_creates,
            }),
        })
    }

    /// Makes every write of this call durable (local directories under
    /// [`Durability::Full`]): one `syncfs` flushes them all.
    pub(crate) async fn sync(&self) -> Result<()> {
        let Some(root) = self.inner.local_root.clone() else {
            return Ok(());
        };
        if self.inner.durability != Durability::Full {
            return Ok(());
        }
        tokio::task::spawn_blocking(move || sync_dir(&root))
            .await
            .map_err(|e| corrupt(format!("sync task failed: {e}")))?
    }

    /// A directory listing; a missing directory is empty.
    pub(crate) async fn list_dir(&self, prefix: &Path) -> Result<ListResult> {
        match self.inner.store.list_with_delimiter(Some(prefix)).await {
            Ok(l) => Ok(l),
            Err(e) if is_not_found(&e) => Ok(ListResult {
                common_prefixes: Vec::new(),
                objects: Vec::new(),
                extensions: Default::default(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// The bytes at `path`, or None.
    pub(crate) async fn read(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        match self.inner.store.get(path).await {
            Ok(r) => match r.bytes().await {
                Ok(b) => Ok(Some(b.to_vec())),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(e.into()),
            },
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates `path` only if it does not exist; false when it does.
    pub(crate) async fn create(&self, path: &Path, bytes: Vec<u8>) -> Result<bool> {
        let done = exec(
            &*self.inner.store,
            Op::Create(path.clone(), bytes),
            self.inner.verify_creates,
        )
        .await?;
        Ok(matches!(done, Done::Created(true)))
    }

    /// Removes an empty directory of a local store (a past time bucket, a purged task):
    /// listings then never walk it again. Only leaf directories are removed, so a
    /// concurrent put (which creates its directory again) cannot fail; a directory that
    /// is not empty stays. Object stores have no directories: nothing to do.
    pub(crate) async fn remove_empty_dir(&self, dir: &Path) {
        let Some(root) = self.inner.local_root.clone() else {
            return;
        };
        let mut path = root;
        for part in dir.parts() {
            path.push(part.as_ref());
        }
        let _ = io_thread(move || {
            let _ = std::fs::remove_dir(&path);
            Ok(())
        })
        .await;
    }

    /// Deletes `path`; already gone is fine.
    pub(crate) async fn delete_quiet(&self, path: &Path) -> Result<()> {
        match self.inner.store.delete(path).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Version `version` of a task, or None when it does not exist.
    pub(crate) async fn read_version(&self, id: &TaskId, version: u64) -> Result<Option<Record>> {
        let path = self.inner.keys.version(id, version);
        match self.read(&path).await? {
            Some(bytes) => Ok(Some(Record::decode(self.inner.format, &bytes)?)),
            None => Ok(None),
        }
    }

    /// The newest version of a task, or None for an unknown id.
    pub(crate) async fn latest(&self, id: &TaskId) -> Result<Option<Versioned>> {
        // A purge, or the pruning of superseded versions, may delete the newest version
        // between the listing and the read: look again.
        for _ in 0..8 {
            let listing = self.list_dir(&self.inner.keys.task_dir(id)).await?;
            let newest = listing
                .objects
                .iter()
                .filter_map(|o| file_name(&o.location).and_then(parse_version))
                .max();
            let Some(version) = newest else {
                return Ok(None);
            };
            if let Some(record) = self.read_version(id, version).await? {
                if !self.visible(version, &record).await? {
                    // Version 1 of an enqueue batch that has not committed (yet).
                    return Ok(None);
                }
                return Ok(Some(Versioned { version, record }));
            }
        }
        Ok(None)
    }

    /// Whether a record exists for readers: always, except version 1 of a batch whose
    /// commit marker is not there (the enqueue is in flight, failed or crashed).
    pub(crate) async fn visible(&self, version: u64, record: &Record) -> Result<bool> {
        let Some(batch) = record.batch.as_deref().filter(|_| version == 1) else {
            return Ok(true);
        };
        if self.inner.committed.contains(batch) {
            return Ok(true);
        }
        let committed = self
            .read(&self.inner.keys.batch_marker(batch))
            .await?
            .is_some();
        if committed {
            self.inner.committed.insert(batch);
        }
        Ok(committed)
    }

    /// The index file that lists `record`: its ready file while Pending, its lease file
    /// while Running, none once finished.
    pub(crate) fn index_path(&self, record: &Record) -> Option<Path> {
        let keys = &self.inner.keys;
        let t = &record.task;
        let name = record.index.as_deref()?;
        match t.status {
            TaskStatus::Pending => {
                Some(keys.ready_file(&t.queue, t.priority, micros(t.effective_eta()), name))
            }
            TaskStatus::Running => record
                .lease
                .map(|l| keys.lease_file(&t.queue, micros(l.until), name)),
            _ => None,
        }
    }

    /// Marks `record`'s line (at `version`) dead in its index file; the delete to run
    /// when that was the file's last live line.
    pub(crate) fn retire(&self, record: &Record, version: u64) -> Option<Op> {
        let path = self.index_path(record)?;
        self.inner
            .index_files
            .dead(&path, (record.task.id, version))
            .then_some(Op::Delete(path))
    }

    /// Runs a batch of store operations, in order.
    ///
    /// Runs of operations of one kind go out together, runs one after the other (so
    /// index files written ahead land before their records). On a local directory a run
    /// is split over the I/O threads, which work outside the tokio runtime, so
    /// object_store performs each file operation inline instead of handing every one to
    /// the blocking pool (a thread hop per share of a run, not per file). On other stores
    /// a run's requests go out concurrently.
    pub(crate) async fn run(&self, ops: Vec<Op>) -> Result<Vec<Done>> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let store = Arc::clone(&self.inner.store);
        let local = self.inner.local_root.is_some();
        let mut out = Vec::with_capacity(ops.len());
        let mut ops = ops.into_iter().peekable();
        while let Some(first) = ops.next() {
            let kind = std::mem::discriminant(&first);
            let mut run = vec![first];
            while let Some(op) = ops.next_if(|op| std::mem::discriminant(op) == kind) {
                run.push(op);
            }
            if local {
                // One job per I/O thread, each running its share of the run in order.
                let share = run.len().div_ceil(IO_THREADS).max(LOCAL_SHARE);
                let mut jobs = Vec::new();
                let mut run = run.into_iter().peekable();
                while run.peek().is_some() {
                    let chunk: Vec<Op> = run.by_ref().take(share).collect();
                    let store = Arc::clone(&store);
                    jobs.push(io_thread(move || {
                        chunk
                            .into_iter()
                            .map(|op| futures::executor::block_on(exec(&*store, op, false)))
                            .collect::<Result<Vec<Done>>>()
                    }));
                }
                for done in join_all(jobs).await {
                    out.extend(done?);
                }
                continue;
            }
            let verify = self.inner.verify_creates;
            let futures: Vec<_> = run
                .into_iter()
                .map(|op| exec(&*store, op, verify))
                .collect();
            let done: Vec<Result<Done>> = futures::stream::iter(futures)
                .buffered(PARALLEL_OPS)
                .collect()
                .await;
            for d in done {
                out.push(d?);
            }
        }
        Ok(out)
    }

    /// Reads many versions at once; a record that does not decode is that item's error.
    pub(crate) async fn read_versions(
        &self,
        which: &[(TaskId, u64)],
    ) -> Result<Vec<Result<Option<Record>>>> {
        let ops = which
            .iter()
            .map(|(id, v)| Op::Read(self.inner.keys.version(id, *v)))
            .collect();
        let format = self.inner.format;
        Ok(self
            .run(ops)
            .await?
            .into_iter()
            .map(|d| match d {
                Done::Read(Some(bytes)) => Record::decode(format, &bytes).map(Some),
                _ => Ok(None),
            })
            .collect())
    }

    /// Writes each `record` as version `version` of its task: the index files of the new
    /// states first (one per queue and directory: a batch of claims writes one lease
    /// file, a batch enqueue one ready file per priority and minute), then the conditional
    /// create of each record, the whole batch in one run. Per item, false when that
    /// version already exists — another writer got there first.
    ///
    /// Index files written ahead mean a crash can leave a line without its record (a
    /// claimer retires it once the file is [`ORPHAN_AGE`] old), never a record without its
    /// line.
    pub(crate) async fn write_versions(
        &self,
        items: &[(Record, u64)],
    ) -> Result<(Vec<bool>, Vec<Record>)> {
        let started = Instant::now();
        let mut records: Vec<Record> = items.iter().map(|(r, _)| r.clone()).collect();
        // Group by index directory; the file's name sorts by its earliest line.
        let mut groups: HashMap<(String, bool, i32, i64), Vec<usize>> = HashMap::new();
        for (i, r) in records.iter_mut().enumerate() {
            r.index = None;
            let t = &r.task;
            let key = match (t.status, r.lease) {
                (TaskStatus::Pending, _) => {
                    let eta = micros(t.effective_eta());
                    (t.queue.clone(), true, t.priority, bucket_index(eta))
                }
                (TaskStatus::Running, Some(l)) => (t.queue.clone(), false, 0, micros(l.until)),
                _ => continue,
            };
            groups.entry(key).or_default().push(i);
        }
        let mut files: Vec<(Path, Vec<usize>, Vec<u8>)> = Vec::with_capacity(groups.len());
        let mut ops = Vec::with_capacity(groups.len() + items.len());
        for ((_, ready, _, _), members) in groups {
            let first = members
                .iter()
                .map(|i| {
                    let r = &records[*i];
                    match r.lease {
                        Some(l) if !ready => micros(l.until),
                        _ => micros(r.task.effective_eta()),
                    }
                })
                .min()
                .unwrap_or(0);
            let name = index_file_name(first);
            let mut content = String::new();
            for i in &members {
                let r = &mut records[*i];
                r.index = Some(name.clone());
                let (id, version) = (r.task.id, items[*i].1);
                let line = if ready {
                    ReadyName {
                        eta_us: micros(r.task.effective_eta()),
                        seq: r.seq,
                        id,
                        version,
                    }
                    .line()
                } else {
                    LeaseName {
                        until_us: 0,
                        id,
                        version,
                    }
                    .line()
                };
                content.push_str(&line);
                content.push('\n');
            }
            let path = self
                .index_path(&records[members[0]])
                .ok_or_else(|| corrupt("an index group without a path"))?;
            let content = content.into_bytes();
            ops.push(Op::PutBytes(path.clone(), content.clone()));
            files.push((path, members, content));
        }
        let first_create = ops.len();
        for (record, (_, version)) in records.iter().zip(items) {
            let bytes = if self.inner.verify_creates {
                let mut record = record.clone();
                record.nonce = Some(uuid::Uuid::new_v4());
                record.encode(self.inner.format)?
            } else {
                record.encode(self.inner.format)?
            };
            ops.push(Op::Create(
                self.inner.keys.version(&record.task.id, *version),
                bytes,
            ));
        }
        // An error leaves the outcome unknown: the index files stay (a claimer sorts them
        // out).
        let done = self.run(ops).await?;
        let created: Vec<bool> = done[first_create..]
            .iter()
            .map(|d| matches!(d, Done::Created(true)))
            .collect();
        let mut cleanup = Vec::new();
        for (path, members, content) in files {
            let live: Vec<(TaskId, u64)> = members
                .iter()
                .filter(|i| created[**i])
                .map(|i| (records[*i].task.id, items[*i].1))
                .collect();
            if live.is_empty() {
                cleanup.push(Op::Delete(path));
                continue;
            }
            self.inner.index_files.register(&path, live);
            if started.elapsed() > SLOW_WRITE {
                cleanup.push(Op::PutBytes(path, content));
            }
        }
        for ((record, (_, version)), ok) in records.iter().zip(items).zip(&created) {
            if !ok {
                continue;
            }
            if let (Some((queue, key)), Some(path)) =
                (ready_key(record, *version), self.index_path(record))
            {
                self.inner.ready.insert(
                    queue,
                    bucket_index(key.name.eta_us),
                    key,
                    ReadyEntry {
                        path,
                        modified: self.now(),
                    },
                );
            }
        }
        self.run(cleanup).await?;
        Ok((created, records))
    }

    /// Replaces `cur` by `next` (see [`Self::transitions`]).
    pub(crate) async fn transition(
        &self,
        cur: &Versioned,
        next: Record,
    ) -> Result<Option<Versioned>> {
        Ok(self
            .transitions(vec![(cur.clone(), next)])
            .await?
            .pop()
            .flatten())
    }

    /// Replaces each `cur` by its `next` (version `cur.version + 1`). Per item, None
    /// when another writer changed the task first; the caller re-reads and decides
    /// again. The replaced versions' index entries are removed.
    ///
    /// Then each task's directory is listed once: to check the new version (see
    /// [`is_ghost`]) and to delete the versions it supersedes beyond the newest
    /// [`KEEP_VERSIONS`] (with any a crash left behind), so a task keeps a bounded number
    /// of versions however often it is written.
    pub(crate) async fn transitions(
        &self,
        pairs: Vec<(Versioned, Record)>,
    ) -> Result<Vec<Option<Versioned>>> {
        let items: Vec<(Record, u64)> = pairs
            .iter()
            .map(|(cur, next)| {
                let mut next = next.clone();
                // Only version 1 belongs to an enqueue batch.
                next.batch = None;
                (next, cur.version + 1)
            })
            .collect();
        let (created, written) = self.write_versions(&items).await?;
        let keys = &self.inner.keys;
        let lists = pairs
            .iter()
            .zip(&created)
            .filter(|(_, ok)| **ok)
            .map(|((cur, _), _)| Op::Versions(keys.task_dir(&cur.record.task.id)))
            .collect();
        let mut listings = self.run(lists).await?.into_iter();
        let mut cleanup = Vec::new();
        let mut out = Vec::with_capacity(pairs.len());
        for (((cur, _), ok), next) in pairs.into_iter().zip(created).zip(written) {
            let id = cur.record.task.id;
            if !ok {
                self.inner.held.forget(&id);
                out.push(None);
                continue;
            }
            let version = cur.version + 1;
            let versions = match listings.next() {
                Some(Done::Versions(v)) => v,
                _ => Vec::new(),
            };
            if is_ghost(version, &versions) {
                // Not a write: take it back, with its index line.
                tracing::debug!(task_id = %id, version, "withdrawing a stale write of a pruned version");
                self.inner.held.forget(&id);
                if let Some((queue, key)) = ready_key(&next, version) {
                    self.inner.ready.remove(queue, &key);
                }
                cleanup.extend(self.retire(&next, version));
                cleanup.push(Op::Delete(keys.version(&id, version)));
                out.push(None);
                continue;
            }
            cleanup.extend(
                versions
                    .iter()
                    .filter(|v| **v + KEEP_VERSIONS <= version)
                    .map(|v| Op::Delete(keys.version(&id, *v))),
            );
            if let Some((queue, key)) = ready_key(&cur.record, cur.version) {
                self.inner.ready.remove(queue, &key);
            }
            cleanup.extend(self.retire(&cur.record, cur.version));
            let done = Versioned {
                version,
                record: next,
            };
            if done.record.task.status == TaskStatus::Running {
                self.inner.held.put(&done);
            } else {
                self.inner.held.forget(&id);
            }
            out.push(Some(done));
        }
        self.run(cleanup).await?;
        Ok(out)
    }

    /// The newest version of each task (None when it has none), one listing each.
    pub(crate) async fn newest_versions(&self, ids: &[TaskId]) -> Result<Vec<Option<u64>>> {
        let ops = ids
            .iter()
            .map(|id| Op::Versions(self.inner.keys.task_dir(id)))
            .collect();
        Ok(self
            .run(ops)
            .await?
            .into_iter()
            .map(|d| match d {
                Done::Versions(v) => v.last().copied(),
                _ => None,
            })
            .collect())
    }
}

/// Versions a task keeps: the newest and the two before it. A reader that listed the
/// directory and then reads the newest version finds it unless three more were written
/// in between (it then lists again); a new version's check needs its predecessor.
pub(crate) const KEEP_VERSIONS: u64 = 3;

/// Whether a version this process just created is a stale write rather than the task's
/// next version, from a listing of the task's directory taken after the create.
///
/// Pruned version numbers are free again, so a writer whose view is old (a worker that
/// lost its lease and remembers an old version, a claimer holding an old index line)
/// could create one. Versions are pruned only once [`KEEP_VERSIONS`] newer ones exist
/// and oldest first, so such a create finds its predecessor gone, or a version two or
/// more above its own present. A genuine write has its predecessor (it read or wrote
/// it, and only a third write after it deletes it) and at most one version above it
/// (a write built on it). Two writers building on a genuine write before its listing
/// make it look stale: it is withdrawn and its writer re-reads, which is safe.
pub(crate) fn is_ghost(version: u64, versions: &[u64]) -> bool {
    (version > 1 && !versions.contains(&(version - 1)))
        || versions.iter().any(|v| *v >= version + 2)
        || !versions.contains(&version)
}

/// Store operations run in batches by [`FileStorage::run`].
#[derive(Debug)]
pub(crate) enum Op {
    /// Write an index file (rewriting one with the same lines is harmless).
    PutBytes(Path, Vec<u8>),
    /// Create an object only if it does not exist.
    Create(Path, Vec<u8>),
    /// Delete; already gone is fine.
    Delete(Path),
    /// Read; missing is `None`.
    Read(Path),
    /// The record versions in a task's directory, ascending (none when it is gone).
    Versions(Path),
}

/// What an [`Op`] did.
#[derive(Debug)]
pub(crate) enum Done {
    Put,
    Created(bool),
    Deleted,
    Read(Option<Vec<u8>>),
    Versions(Vec<u64>),
}

/// Operations of one run in flight at once on remote stores.
const PARALLEL_OPS: usize = 64;

/// Runs one operation. With `verify`, a create answered `AlreadyExists` reads the object
/// back: when it holds exactly the bytes written (every record carries a fresh nonce on
/// such stores), the create had landed and a retry of the request hit its own write.
async fn exec(store: &dyn ObjectStore, op: Op, verify: bool) -> Result<Done> {
    Ok(match op {
        Op::PutBytes(path, bytes) => {
            store.put(&path, PutPayload::from(bytes)).await?;
            Done::Put
        }
        Op::Create(path, bytes) => {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            let payload = PutPayload::from(bytes.clone());
            match store.put_opts(&path, payload, opts).await {
                Ok(_) => Done::Created(true),
                Err(e) if is_already_exists(&e) && verify => {
                    let mine = match store.get(&path).await {
                        Ok(r) => r.bytes().await?.as_ref() == bytes.as_slice(),
                        Err(e) if is_not_found(&e) => false,
                        Err(e) => return Err(e.into()),
                    };
                    Done::Created(mine)
                }
                Err(e) if is_already_exists(&e) => Done::Created(false),
                Err(e) => return Err(e.into()),
            }
        }
        Op::Delete(path) => match store.delete(&path).await {
            Ok(()) => Done::Deleted,
            Err(e) if is_not_found(&e) => Done::Deleted,
            Err(e) => return Err(e.into()),
        },
        Op::Versions(dir) => match store.list_with_delimiter(Some(&dir)).await {
            Ok(l) => {
                let mut versions: Vec<u64> = l
                    .objects
                    .iter()
                    .filter_map(|o| file_name(&o.location).and_then(parse_version))
                    .collect();
                versions.sort_unstable();
                Done::Versions(versions)
            }
            Err(e) if is_not_found(&e) => Done::Versions(Vec::new()),
            Err(e) => return Err(e.into()),
        },
        Op::Read(path) => match store.get(&path).await {
            Ok(r) => match r.bytes().await {
                Ok(b) => Done::Read(Some(b.to_vec())),
                Err(e) if is_not_found(&e) => Done::Read(None),
                Err(e) => return Err(e.into()),
            },
            Err(e) if is_not_found(&e) => Done::Read(None),
            Err(e) => return Err(e.into()),
        },
    })
}

/// Runs `job` on one of the process's I/O threads (plain threads, outside any tokio
/// runtime) and waits for it without blocking the runtime.
async fn io_thread<T: Send + 'static>(
    job: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    type Job = Box<dyn FnOnce() + Send>;
    static POOL: OnceLock<Mutex<std::sync::mpsc::Sender<Job>>> = OnceLock::new();
    let pool = POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..IO_THREADS {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("omniq-file-io-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start an omniq-file I/O thread");
            }
        }
        Mutex::new(tx)
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        // A panic inside the store must fail this call, not kill the I/O thread.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
            .unwrap_or_else(|_| Err(Error::Unsupported("an I/O job panicked".into())));
        let _ = tx.send(result);
    });
    pool.lock()
        .map_err(|_| corrupt("the I/O thread pool is poisoned"))?
        .send(job)
        .map_err(|_| corrupt("the I/O threads are gone"))?;
    rx.await.map_err(|_| corrupt("an I/O job was dropped"))?
}

/// Threads that run local-directory batches.
const IO_THREADS: usize = 4;

/// Smallest share of a run handed to one I/O thread (below it a second thread costs more
/// than it saves).
const LOCAL_SHARE: usize = 32;

/// The ready-cache key of a Pending record at `version`.
pub(crate) fn ready_key(record: &Record, version: u64) -> Option<(&str, ReadyKey)> {
    let t = &record.task;
    (t.status == TaskStatus::Pending).then(|| {
        (
            t.queue.as_str(),
            ReadyKey {
                prio: prio_dir(t.priority),
                name: ReadyName {
                    eta_us: micros(t.effective_eta()),
                    seq: record.seq,
                    id: t.id,
                    version,
                },
            },
        )
    })
}

/// Refuses a store whose conditional create is not exclusive (AWS without conditional
/// writes, an HTTP store, …): claims would not be safe on it.
async fn probe_conditional_create(store: &dyn ObjectStore, keys: &Keys) -> Result<()> {
    let path = keys.probe();
    let create = || {
        store.put_opts(
            &path,
            PutPayload::from_static(b"probe"),
            PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            },
        )
    };
    let unsupported = |detail: String| {
        Error::Unsupported(format!(
            "the object store {store} does not support exclusive conditional creates \
             (PutMode::Create), which claims rely on: {detail} (S3 needs conditional \
             writes: AWS S3 has them; leave AWS_CONDITIONAL_PUT unset; an S3-compatible \
             server must honour `If-None-Match: *`)"
        ))
    };
    match create().await {
        Ok(_) => {}
        Err(
            e @ (object_store::Error::NotImplemented { .. }
            | object_store::Error::NotSupported { .. }),
        ) => return Err(unsupported(e.to_string())),
        Err(e) => return Err(e.into()),
    }
    let second = create().await;
    let _ = store.delete(&path).await;
    match second {
        Err(e) if is_already_exists(&e) => Ok(()),
        Ok(_) => Err(unsupported(
            "a second create of the same key succeeded".into(),
        )),
        Err(e) => Err(unsupported(e.to_string())),
    }
}

/// Flushes the file system holding `root`.
#[cfg(target_os = "linux")]
fn sync_dir(root: &std::path::Path) -> Result<()> {
    let io = |source| Error::Io {
        what: "cannot sync data directory",
        path: root.to_path_buf(),
        source,
    };
    let dir = std::fs::File::open(root).map_err(io)?;
    rustix::fs::syncfs(&dir).map_err(|e| io(e.into()))
}

/// Flushes the directory holding `root` (no `syncfs` here: files were synced by the
/// store).
#[cfg(not(target_os = "linux"))]
fn sync_dir(root: &std::path::Path) -> Result<()> {
    std::fs::File::open(root)
        .and_then(|d| d.sync_all())
        .map_err(|source| Error::Io {
            what: "cannot sync data directory",
            path: root.to_path_buf(),
            source,
        })
}
