//! Two in-process caches that spare the hot paths requests; neither is ever trusted for
//! correctness — every claim and every fenced write is still a conditional create.
//!
//! - [`ReadyCache`]: the due ready entries of each queue, listed at most once per
//!   refresh instead of once per claim, so a claim costs O(batch) requests however long
//!   the queue. This process's own writes keep it current; other processes' entries
//!   appear at the next listing (a claim that runs dry, or every [`REFRESH`]).
//! - [`Held`]: the newest version this process wrote of each task it holds a lease on,
//!   so complete / fail / heartbeat need not list and read the task first.

use crate::schema::ReadyName;
use object_store::path::Path;
use omniq_core::TaskId;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

use crate::convert::Versioned;

/// How long a listing serves claims before it is taken again (other processes' new
/// entries are seen at the latest then). Grows with the listing's own cost, so a huge
/// backlog is not re-listed more often than it is worth.
const REFRESH: Duration = Duration::from_secs(1);

/// At most this many held leases are remembered (a bound on memory; forgetting one only
/// costs the next write of that task a listing).
const MAX_HELD: usize = 100_000;

/// A ready entry's claim order and identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ReadyKey {
    /// The priority directory (highest priority sorts first).
    pub(crate) prio: String,
    pub(crate) name: ReadyName,
}

/// A cached ready entry.
#[derive(Debug, Clone)]
pub(crate) struct ReadyEntry {
    pub(crate) path: Path,
    pub(crate) modified: OffsetDateTime,
}

#[derive(Debug)]
struct QueueCache {
    listed_at: Instant,
    refresh: Duration,
    /// Every bucket up to this one (minute index) was listed.
    through_bucket: i64,
    entries: BTreeMap<ReadyKey, ReadyEntry>,
}

/// The due ready entries of each queue.
#[derive(Debug, Default)]
pub(crate) struct ReadyCache {
    queues: Mutex<HashMap<String, QueueCache>>,
}

impl ReadyCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, QueueCache>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `queue`'s listing can serve a claim at bucket `bucket`.
    pub(crate) fn is_fresh(&self, queue: &str, bucket: i64) -> bool {
        self.lock()
            .get(queue)
            .is_some_and(|q| q.through_bucket >= bucket && q.listed_at.elapsed() < q.refresh)
    }

    /// Replaces `queue`'s listing.
    pub(crate) fn replace(
        &self,
        queue: &str,
        through_bucket: i64,
        took: Duration,
        entries: BTreeMap<ReadyKey, ReadyEntry>,
    ) {
        self.lock().insert(
            queue.to_string(),
            QueueCache {
                listed_at: Instant::now(),
                refresh: REFRESH.max(took * 10),
                through_bucket,
                entries,
            },
        );
    }

    /// Removes and returns up to `n` entries due at `now_us`, in claim order, over
    /// `queues`. Taken entries are not handed to a concurrent claim of this process.
    pub(crate) fn take(
        &self,
        queues: &[&str],
        now_us: i64,
        n: usize,
    ) -> Vec<(String, ReadyKey, ReadyEntry)> {
        let mut map = self.lock();
        let mut found: Vec<(String, ReadyKey)> = Vec::new();
        for q in queues {
            if let Some(c) = map.get(*q) {
                found.extend(
                    c.entries
                        .keys()
                        .filter(|k| k.name.eta_us <= now_us)
                        .take(n)
                        .map(|k| (q.to_string(), k.clone())),
                );
            }
        }
        found.sort_by(|a, b| a.1.cmp(&b.1));
        found.truncate(n);
        found
            .into_iter()
            .filter_map(|(q, k)| {
                let e = map.get_mut(&q)?.entries.remove(&k)?;
                Some((q, k, e))
            })
            .collect()
    }

    /// Adds an entry this process wrote, when its bucket is covered by the listing.
    pub(crate) fn insert(&self, queue: &str, bucket: i64, key: ReadyKey, entry: ReadyEntry) {
        if let Some(c) = self.lock().get_mut(queue) {
            if bucket <= c.through_bucket {
                c.entries.insert(key, entry);
            }
        }
    }

    /// Forgets an entry that was deleted (or found stale).
    pub(crate) fn remove(&self, queue: &str, key: &ReadyKey) {
        if let Some(c) = self.lock().get_mut(queue) {
            c.entries.remove(key);
        }
    }

    /// The earliest cached eta of `queue`, when its listing is fresh and not empty.
    pub(crate) fn earliest(&self, queue: &str) -> Option<i64> {
        let map = self.lock();
        let c = map.get(queue)?;
        if c.listed_at.elapsed() >= c.refresh {
            return None;
        }
        c.entries.keys().map(|k| k.name.eta_us).min()
    }
}

/// The newest version this process wrote of each Running task.
#[derive(Debug, Default)]
pub(crate) struct Held {
    tasks: Mutex<HashMap<TaskId, Versioned>>,
}

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, Versioned>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, id: &TaskId) -> Option<Versioned> {
        self.lock().get(id).cloned()
    }

    pub(crate) fn put(&self, v: &Versioned) {
        let mut map = self.lock();
        if map.len() >= MAX_HELD {
            map.clear();
        }
        map.insert(v.record.task.id, v.clone());
    }

    pub(crate) fn forget(&self, id: &TaskId) {
        self.lock().remove(id);
    }
}

/// At most this many committed batch ids are remembered.
const MAX_COMMITTED: usize = 100_000;

/// Enqueue batches known to be committed (their marker exists; markers are never
/// deleted while their tasks live, so a known commit stays true).
#[derive(Debug, Default)]
pub(crate) struct Committed {
    batches: Mutex<std::collections::HashSet<String>>,
}

impl Committed {
    pub(crate) fn contains(&self, batch: &str) -> bool {
        self.batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(batch)
    }

    pub(crate) fn insert(&self, batch: &str) {
        let mut set = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        if set.len() >= MAX_COMMITTED {
            set.clear();
        }
        set.insert(batch.to_string());
    }
}

/// The index files this process knows, with the (task, version) lines of each not yet
/// known to be dead. A line is dead once its version is superseded (this process wrote
/// the next version, or a create of it failed) or its record will never appear; a file
/// whose lines are all dead is deleted. Nothing else deletes an index file, so a live
/// task never loses its entry.
#[derive(Debug, Default)]
pub(crate) struct IndexFiles {
    files: Mutex<HashMap<Path, std::collections::HashSet<(TaskId, u64)>>>,
}

impl IndexFiles {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Path, std::collections::HashSet<(TaskId, u64)>>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts tracking `file` with its live lines (no-op when already tracked: what is
    /// known dead stays dead). Returns the lines still live.
    pub(crate) fn register(
        &self,
        file: &Path,
        lines: impl IntoIterator<Item = (TaskId, u64)>,
    ) -> std::collections::HashSet<(TaskId, u64)> {
        let mut map = self.lock();
        map.entry(file.clone())
            .or_insert_with(|| lines.into_iter().collect())
            .clone()
    }

    /// Marks one line dead; true when the file has no live line left (it is forgotten and
    /// the caller deletes it).
    pub(crate) fn dead(&self, file: &Path, line: (TaskId, u64)) -> bool {
        let mut map = self.lock();
        let Some(live) = map.get_mut(file) else {
            return false;
        };
        live.remove(&line);
        if live.is_empty() {
            map.remove(file);
            true
        } else {
            false
        }
    }

    /// Forgets a file (gone from the store, or rolled back).
    pub(crate) fn forget(&self, file: &Path) {
        self.lock().remove(file);
    }

    /// After a listing of everything under `root` whose sort key is at most `upto_us`:
    /// forgets the tracked files there that the listing did not show (another process
    /// deleted them). Forgetting is always safe: a file that still exists is registered
    /// again, and its lines checked again, by the next listing.
    pub(crate) fn forget_absent(
        &self,
        root: &Path,
        upto_us: i64,
        present: &std::collections::HashSet<Path>,
    ) {
        self.lock().retain(|path, _| {
            present.contains(path)
                || !path.prefix_matches(root)
                || path
                    .filename()
                    .and_then(crate::schema::index_file_key)
                    .is_none_or(|key| key > upto_us)
        });
    }
}
