//! The key layout: every key this backend writes, and the parsers of the names it lists.
//!
//! ```text
//! {ns}/t/{id}/{version:010}                   task records (create-only)
//! {ns}/q/{queue}/r/{prio}/{minute}/{eta}_{uuid} ready index files (Pending tasks)
//! {ns}/q/{queue}/l/{minute}/{until}_{uuid}      lease index files (Running tasks)
//! {ns}/u/{queue}/{key}/{generation:010}                       unique-key holders
//! {ns}/b/{batch}                                               enqueue-batch commit markers
//! {ns}/probe/{uuid}                                            the startup probe
//! ```
//!
//! An index file lists the (task, version) pairs one call wrote in that directory, one
//! per line (ready: `eta seq id version`; lease: `id version`); its name starts with the
//! earliest eta (or the lease expiry) of its lines. Fixed-width decimal numbers sort as
//! they compare: `prio` is `i32::MAX - priority` (highest priority first), `minute` the
//! eta's (or lease expiry's) minute, `eta`/`until` microseconds, `seq` the enqueue order.
//! Signed values are offset (`x ^ 1 << 63`) so negatives sort first.

use object_store::path::{Path, PathPart};
use omniq_core::TaskId;
use time::OffsetDateTime;

/// Microseconds in a minute: the width of one time bucket.
pub(crate) const BUCKET_US: i64 = 60_000_000;

/// Unix microseconds of a timestamp (saturating far outside ±292k years).
pub(crate) fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// An `i64` as a fixed-width string that sorts like the number.
fn sortable(v: i64) -> String {
    format!("{:020}", (v as u64) ^ (1 << 63))
}

fn unsortable(s: &str) -> Option<i64> {
    (s.len() == 20)
        .then(|| s.parse::<u64>().ok())
        .flatten()
        .map(|u| (u ^ (1 << 63)) as i64)
}

/// The time bucket (minute index) of an instant.
pub(crate) fn bucket_index(us: i64) -> i64 {
    us.div_euclid(BUCKET_US)
}

/// The time bucket (minute) of an instant, as a directory name.
pub(crate) fn bucket(us: i64) -> String {
    sortable(bucket_index(us))
}

/// The directory name of a priority: highest first in name order.
pub(crate) fn prio_dir(priority: i32) -> String {
    format!("{:010}", i64::from(i32::MAX) - i64::from(priority))
}

/// The key builder of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    ns: String,
}

impl Keys {
    pub(crate) fn new(ns: &str) -> Self {
        Self { ns: ns.to_string() }
    }

    fn path<'a>(&'a self, parts: impl IntoIterator<Item = &'a str>) -> Path {
        Path::from_iter(
            std::iter::once(self.ns.as_str())
                .chain(parts)
                .map(PathPart::from),
        )
    }

    /// `{ns}/t`: every task's directory.
    pub(crate) fn tasks(&self) -> Path {
        self.path(["t"])
    }

    /// `{ns}/t/{id}`: one task's versions.
    pub(crate) fn task_dir(&self, id: &TaskId) -> Path {
        self.path(["t", &id.to_string()])
    }

    /// `{ns}/t/{id}/{version}`.
    pub(crate) fn version(&self, id: &TaskId, version: u64) -> Path {
        self.path(["t", &id.to_string(), &format!("{version:010}")])
    }

    /// `{ns}/q/{queue}/r`: the queue's ready entries.
    pub(crate) fn ready_root(&self, queue: &str) -> Path {
        self.path(["q", queue, "r"])
    }

    /// `{ns}/q/{queue}/l`: the queue's lease entries.
    pub(crate) fn lease_root(&self, queue: &str) -> Path {
        self.path(["q", queue, "l"])
    }

    /// A ready index file: `r/{prio}/{minute of eta_us}/{name}`.
    pub(crate) fn ready_file(&self, queue: &str, priority: i32, eta_us: i64, name: &str) -> Path {
        self.path(["q", queue, "r", &prio_dir(priority), &bucket(eta_us), name])
    }

    /// A lease index file: `l/{minute of until_us}/{name}`.
    pub(crate) fn lease_file(&self, queue: &str, until_us: i64, name: &str) -> Path {
        self.path(["q", queue, "l", &bucket(until_us), name])
    }

    /// `{ns}/u`: every unique key's holders.
    pub(crate) fn unique_root(&self) -> Path {
        self.path(["u"])
    }

    /// `{ns}/b`: every enqueue batch's commit marker.
    pub(crate) fn batch_root(&self) -> Path {
        self.path(["b"])
    }

    /// `{ns}/u/{queue}/{key}`: the holders of one unique key.
    pub(crate) fn unique_dir(&self, queue: &str, key: &str) -> Path {
        self.path(["u", queue, &unique_segment(key)])
    }

    /// One holder generation of a unique key.
    pub(crate) fn unique(&self, queue: &str, key: &str, generation: u64) -> Path {
        self.path([
            "u",
            queue,
            &unique_segment(key),
            &format!("{generation:010}"),
        ])
    }

    /// The commit marker of an enqueue batch.
    pub(crate) fn batch_marker(&self, batch: &str) -> Path {
        self.path(["b", batch])
    }

    /// A scratch key for the startup probe.
    pub(crate) fn probe(&self) -> Path {
        self.path(["probe", &uuid::Uuid::new_v4().to_string()])
    }
}

/// A unique key as one path segment: hex of its bytes (any key is safe in any store),
/// or a 128-bit FNV-1a digest for keys too long for a file name.
fn unique_segment(key: &str) -> String {
    const MAX_HEX_BYTES: usize = 96;
    let bytes = key.as_bytes();
    if bytes.len() <= MAX_HEX_BYTES {
        let mut s = String::with_capacity(1 + bytes.len() * 2);
        s.push('k');
        for b in bytes {
            s.push_str(&format!("{b:02x}"));
        }
        s
    } else {
        let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
        for b in bytes {
            h ^= u128::from(*b);
            h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
        }
        format!("h{h:032x}")
    }
}

/// The last segment of a path.
pub(crate) fn file_name(p: &Path) -> Option<&str> {
    p.filename()
}

/// A version number from a record key's file name.
pub(crate) fn parse_version(name: &str) -> Option<u64> {
    (name.len() == 10).then(|| name.parse().ok()).flatten()
}

/// The name of a ready entry: what a claim needs to order and find the task.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ReadyName {
    /// The effective eta, unix microseconds.
    pub(crate) eta_us: i64,
    /// The enqueue order.
    pub(crate) seq: u64,
    /// The task.
    pub(crate) id: TaskId,
    /// The record version that made the task Pending.
    pub(crate) version: u64,
}

impl ReadyName {
    /// The line of a ready index file.
    pub(crate) fn line(&self) -> String {
        format!("{} {} {} {}", self.eta_us, self.seq, self.id, self.version)
    }

    pub(crate) fn parse_line(line: &str) -> Option<Self> {
        let mut it = line.split_ascii_whitespace();
        let eta_us = it.next()?.parse().ok()?;
        let seq = it.next()?.parse().ok()?;
        let id = it.next()?.parse().ok()?;
        let version = it.next()?.parse().ok()?;
        Some(Self {
            eta_us,
            seq,
            id,
            version,
        })
    }
}

/// The name of a lease entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct LeaseName {
    /// The lease expiry, unix microseconds.
    pub(crate) until_us: i64,
    /// The task.
    pub(crate) id: TaskId,
    /// The record version that holds this lease.
    pub(crate) version: u64,
}

impl LeaseName {
    /// The line of a lease index file (the expiry is in the file's name).
    pub(crate) fn line(&self) -> String {
        format!("{} {}", self.id, self.version)
    }

    pub(crate) fn parse_line(until_us: i64, line: &str) -> Option<Self> {
        let mut it = line.split_ascii_whitespace();
        let id = it.next()?.parse().ok()?;
        let version = it.next()?.parse().ok()?;
        Some(Self {
            until_us,
            id,
            version,
        })
    }
}

/// A fresh index file name whose sort key is `first_us` (earliest eta, or expiry).
pub(crate) fn index_file_name(first_us: i64) -> String {
    format!("{}_{}", sortable(first_us), uuid::Uuid::new_v4().simple())
}

/// The sort key (earliest eta, or expiry) of an index file name.
pub(crate) fn index_file_key(name: &str) -> Option<i64> {
    let (key, rest) = name.split_once('_')?;
    (!rest.is_empty()).then(|| unsortable(key)).flatten()
}

/// The first microsecond of a bucket directory, when the name is one.
pub(crate) fn bucket_start(name: &str) -> Option<i64> {
    unsortable(name).map(|m| m.saturating_mul(BUCKET_US))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_like_their_values() {
        let mut v = [-5_i64, 0, 7, i64::MIN, i64::MAX, -1];
        let mut names: Vec<String> = v.iter().map(|x| sortable(*x)).collect();
        names.sort();
        v.sort();
        let back: Vec<i64> = names.iter().filter_map(|n| unsortable(n)).collect();
        assert_eq!(back, v);
        let mut prios = [prio_dir(-3), prio_dir(5), prio_dir(0)];
        prios.sort();
        assert_eq!(prios, [prio_dir(5), prio_dir(0), prio_dir(-3)]);
    }

    #[test]
    fn index_lines_and_names_round_trip() {
        let r = ReadyName {
            eta_us: -12,
            seq: 42,
            id: TaskId::new(),
            version: 3,
        };
        assert_eq!(ReadyName::parse_line(&r.line()), Some(r));
        let l = LeaseName {
            until_us: 1_700_000_000_000_000,
            id: TaskId::new(),
            version: 9,
        };
        assert_eq!(LeaseName::parse_line(l.until_us, &l.line()), Some(l));
        assert_eq!(ReadyName::parse_line("garbage"), None);
        let name = index_file_name(-5);
        assert_eq!(index_file_key(&name), Some(-5));
        assert_eq!(index_file_key("x_y"), None);
        assert_eq!(parse_version("0000000012"), Some(12));
        assert_eq!(parse_version("12"), None);
    }

    #[test]
    fn unique_keys_are_safe_segments() {
        assert_eq!(unique_segment("a/b"), "k612f62");
        let long = "x".repeat(500);
        assert!(unique_segment(&long).len() < 40);
        assert_ne!(unique_segment(&long), unique_segment(&"y".repeat(500)));
        let keys = Keys::new("ns");
        assert_eq!(
            keys.unique("q", "..", 1).to_string(),
            "ns/u/q/k2e2e/0000000001"
        );
    }
}
