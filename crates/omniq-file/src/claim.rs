//! The two hot paths that put tasks in and take them out: batch enqueue (with unique
//! keys) and batch claim (with redelivery of expired leases), plus `next_due`.
//!
//! A claim reads only due entries: a queue's ready index files sit in
//! `r/{priority}/{minute}/`, so a listing walks priorities highest first and, in each, the
//! minute buckets up to `now`; the live lines are cached in claim order and serve many
//! claims. Each entry is claimed by the conditional create of its task's next version: of
//! two racing claimers exactly one wins, the other sees the version exist and moves on.

use crate::cache::{ReadyEntry, ReadyKey};
use crate::connect::{Done, ORPHAN_AGE, Op, next_seq};
use crate::convert::{Record, StoredLease, Versioned};
use crate::error::{Error, Result, corrupt};
use crate::schema::{
    BUCKET_US, LeaseName, ReadyName, bucket_index, bucket_start, file_name, index_file_key, micros,
    parse_version,
};
use crate::storage::{FileStorage, distinct_queues, validate_queue};
use object_store::path::Path;
use omniq_core::{
    ClaimRequest, Claimed, Enqueued, ErrorType, Lease, LeaseToken, Payload, Task, TaskError,
    TaskId, TaskResult, TaskStatus, Wake,
};
use std::collections::{BTreeMap, HashMap};
use time::OffsetDateTime;

/// An enqueue batch that could not create its commit marker within this time after it
/// started writing its records rolls back instead: `purge_results` sweeps uncommitted
/// records once they are [`crate::admin::SWEEP_AGE`] (twice this) old, so it never
/// sweeps a batch that may still commit.
pub(crate) const COMMIT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(300);

impl FileStorage {
    pub(crate) async fn enqueue_tasks(&self, tasks: Vec<Task>) -> Result<Vec<Enqueued>> {
        self.check_open()?;
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        for t in &tasks {
            validate_queue(&t.queue)?;
        }
        // Unique keys first, in input order: duplicates inside the batch resolve to the
        // first, duplicates of live tasks to the live task.
        let mut out = Vec::with_capacity(tasks.len());
        let mut in_batch: HashMap<(&str, &str), TaskId> = HashMap::new();
        let mut held = Vec::new();
        let mut fresh = Vec::with_capacity(tasks.len());
        for t in &tasks {
            // Only a live input takes (or duplicates) a key: a finished one is stored as
            // given and holds none.
            let live = matches!(t.status, TaskStatus::Pending | TaskStatus::Running);
            let Some(key) = t.unique_key.as_deref().filter(|_| live) else {
                out.push(Enqueued {
                    id: t.id,
                    duplicate: false,
                });
                fresh.push(t);
                continue;
            };
            if let Some(first) = in_batch.get(&(t.queue.as_str(), key)) {
                out.push(Enqueued {
                    id: *first,
                    duplicate: true,
                });
                continue;
            }
            match self.hold_unique(&t.queue, key, t.id).await? {
                UniqueHold::Held(path) => {
                    in_batch.insert((&t.queue, key), t.id);
                    held.push((t.id, path));
                    out.push(Enqueued {
                        id: t.id,
                        duplicate: false,
                    });
                    fresh.push(t);
                }
                UniqueHold::Duplicate(existing) => {
                    in_batch.insert((&t.queue, key), existing);
                    out.push(Enqueued {
                        id: existing,
                        duplicate: true,
                    });
                }
            }
        }
        // A batch of several commits with one marker: until it exists its records are
        // invisible, so a conflict, an error or a crash midway stores nothing.
        let batch = (fresh.len() > 1).then(|| uuid::Uuid::new_v4().to_string());
        let records: Vec<(Record, u64)> = fresh
            .iter()
            .map(|t| {
                let mut task = (*t).clone();
                if task.status == TaskStatus::Running {
                    // A task is only Running under a lease.
                    task.status = TaskStatus::Pending;
                }
                let record = Record {
                    task,
                    lease: None,
                    cancel: false,
                    result: None,
                    seq: next_seq(),
                    batch: batch.clone(),
                    nonce: None,
                    index: None,
                };
                (record, 1)
            })
            .collect();
        let started = std::time::Instant::now();
        let (created, written) = match self.write_versions(&records).await {
            Ok(done) => done,
            Err(e) => {
                self.release_unique(&held).await;
                return Err(e);
            }
        };
        if let Some(i) = created.iter().position(|ok| !ok) {
            self.roll_back(&written, &created, &held).await;
            return Err(Error::Exists(fresh[i].id));
        }
        if let Some(batch) = &batch {
            if started.elapsed() > COMMIT_DEADLINE {
                // `purge_results` may sweep these records before the marker lands.
                self.roll_back(&written, &created, &held).await;
                return Err(Error::SlowBatch(COMMIT_DEADLINE.as_secs()));
            }
            let marker = self.inner.keys.batch_marker(batch);
            if let Err(e) = self.create(&marker, Vec::new()).await {
                self.release_unique(&held).await;
                return Err(e);
            }
            self.inner.committed.insert(batch);
        }
        self.sync().await?;
        self.wake_work(
            fresh
                .iter()
                .filter(|t| matches!(t.status, TaskStatus::Pending | TaskStatus::Running))
                .map(|t| t.queue.as_str()),
        );
        Ok(out)
    }

    /// Removes what a batch enqueue that will not commit wrote (invisible anyway: no
    /// marker) and gives back its unique keys. Its index files list only its own tasks.
    async fn roll_back(&self, written: &[Record], created: &[bool], held: &[(TaskId, Path)]) {
        let mut undo = Vec::new();
        let mut files = std::collections::HashSet::new();
        for (record, ok) in written.iter().zip(created) {
            if let Some(path) = self.index_path(record) {
                files.insert(path);
            }
            if *ok {
                undo.push(Op::Delete(self.inner.keys.version(&record.task.id, 1)));
            }
        }
        for path in files {
            self.inner.index_files.forget(&path);
            undo.push(Op::Delete(path));
        }
        let _ = self.run(undo).await;
        self.release_unique(held).await;
    }

    /// Gives back the unique keys an enqueue that failed had taken (best effort: a
    /// generation left behind names a task that does not exist, which frees the key
    /// once it is a minute old).
    async fn release_unique(&self, held: &[(TaskId, Path)]) {
        for (_, path) in held {
            let _ = self.delete_quiet(path).await;
        }
    }

    /// Takes the unique key (queue, key) for `id`, unless a live task holds it.
    ///
    /// Holders are generations `u/{queue}/{key}/{n}`; the newest one holds the key while
    /// its task is Pending or Running. Taking a free key is the conditional create of the
    /// next generation, so of two racing enqueuers exactly one gets it.
    ///
    /// Dead generations are deleted, so a created number can come free again and a
    /// process that decided long ago could create it anew. A take therefore counts only
    /// when, listed right after the create, its generation is the newest and the one it
    /// succeeded is still there (a deleted predecessor means the decision is stale);
    /// otherwise the create is withdrawn and the take starts over. Only then are the
    /// older generations deleted. Everyone else deletes only generations below the
    /// newest one's predecessor, which a taker still checking needs.
    pub(crate) async fn hold_unique(
        &self,
        queue: &str,
        key: &str,
        id: TaskId,
    ) -> Result<UniqueHold> {
        let keys = &self.inner.keys;
        let dir = keys.unique_dir(queue, key);
        for _ in 0..16 {
            let gens = self.generations(&dir).await?;
            let generation = match gens.last() {
                None => 0,
                Some((g, modified)) => {
                    let (g, modified) = (*g, *modified);
                    // Long dead generations (a crash, or a racing taker) go now.
                    self.drop_generations(queue, key, gens.iter().filter(|(o, _)| *o + 1 < g))
                        .await;
                    let path = keys.unique(queue, key, g);
                    let Some(bytes) = self.read(&path).await? else {
                        continue;
                    };
                    let holder: TaskId = std::str::from_utf8(&bytes)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .ok_or_else(|| corrupt(format!("unique-key holder {path}")))?;
                    match self.latest(&holder).await? {
                        Some(v)
                            if matches!(
                                v.record.task.status,
                                TaskStatus::Pending | TaskStatus::Running
                            ) && v.record.task.unique_key.as_deref() == Some(key) =>
                        {
                            return Ok(UniqueHold::Duplicate(holder));
                        }
                        // The holder's record is still being written.
                        None if self.age(modified) < ORPHAN_AGE => {
                            return Ok(UniqueHold::Duplicate(holder));
                        }
                        _ => g,
                    }
                }
            };
            let path = keys.unique(queue, key, generation + 1);
            if !self.create(&path, id.to_string().into_bytes()).await? {
                continue;
            }
            let after = self.generations(&dir).await?;
            let newest = after.last().map(|(g, _)| *g);
            let predecessor = generation == 0 || after.iter().any(|(g, _)| *g == generation);
            if newest != Some(generation + 1) || !predecessor {
                // A stale decision re-created a deleted number: not a holder.
                self.delete_quiet(&path).await?;
                continue;
            }
            self.drop_generations(queue, key, after.iter().filter(|(g, _)| *g <= generation))
                .await;
            return Ok(UniqueHold::Held(path));
        }
        Err(Error::Contended(id))
    }

    /// The generations of a unique key's directory, oldest first, with their times.
    pub(crate) async fn generations(&self, dir: &Path) -> Result<Vec<(u64, OffsetDateTime)>> {
        let listing = self.list_dir(dir).await?;
        let mut gens: Vec<(u64, OffsetDateTime)> = listing
            .objects
            .iter()
            .filter_map(|o| {
                file_name(&o.location)
                    .and_then(parse_version)
                    .map(|g| (g, to_time(o.last_modified)))
            })
            .collect();
        gens.sort_unstable_by_key(|(g, _)| *g);
        Ok(gens)
    }

    /// Deletes dead generations of a unique key, oldest first (best effort: one left
    /// behind is deleted by the next take).
    pub(crate) async fn drop_generations<'a>(
        &self,
        queue: &str,
        key: &str,
        gens: impl Iterator<Item = &'a (u64, OffsetDateTime)>,
    ) {
        let ops: Vec<Op> = gens
            .map(|(g, _)| Op::Delete(self.inner.keys.unique(queue, key, *g)))
            .collect();
        if !ops.is_empty() {
            let _ = self.run(ops).await;
        }
    }

    pub(crate) async fn claim_tasks(&self, req: ClaimRequest) -> Result<Vec<Claimed>> {
        self.check_open()?;
        let queues = distinct_queues(&req.queues)?;
        if req.limit == 0 || queues.is_empty() {
            return Ok(Vec::new());
        }
        let now_us = micros(req.now);
        let mut claimed: Vec<(Option<ReadyKey>, Claimed)> = Vec::new();
        let mut finished = Vec::new();
        let mut leftover_expired = false;

        // Expired leases first: they were due before anything pending now.
        for queue in &queues {
            let expired = self.expired_leases(queue, now_us).await?;
            for (name, path, modified) in expired {
                if claimed.len() >= req.limit {
                    leftover_expired = true;
                    break;
                }
                let line = (name.id, name.version);
                match self.redeliver(&name, queue, &req).await? {
                    Redelivery::Claimed(c) => claimed.push((None, *c)),
                    Redelivery::Cancelled(id) => finished.push(id),
                    Redelivery::Failed(id) => {
                        finished.push(id);
                        self.line_dead(&path, line).await?
                    }
                    Redelivery::Stale | Redelivery::Corrupt => self.line_dead(&path, line).await?,
                    Redelivery::Missing => {
                        // Pruned after the task moved on, or its writer is still at it
                        // (or crashed).
                        let pruned = self.newest_versions(&[name.id]).await?[0]
                            .is_some_and(|n| n > name.version);
                        if pruned || self.age(modified) >= ORPHAN_AGE {
                            self.line_dead(&path, line).await?;
                        }
                    }
                }
            }
        }

        // Then pending tasks, in claim order across the queues, from the listing cache
        // (listed again when stale, when `now` reaches an unlisted bucket, or when it
        // runs dry).
        let now_bucket = bucket_index(now_us);
        let mut listed = false;
        let mut in_flight = Vec::new();
        for queue in &queues {
            if !self.inner.ready.is_fresh(queue, now_bucket) {
                self.relist(queue, now_us).await?;
                listed = true;
            }
        }
        loop {
            let need = req.limit.saturating_sub(claimed.len());
            if need == 0 {
                break;
            }
            let batch = self.inner.ready.take(&queues, now_us, need);
            if batch.is_empty() {
                if listed {
                    break;
                }
                // Dry: other processes may have added entries since the last listing.
                for queue in &queues {
                    self.relist(queue, now_us).await?;
                }
                listed = true;
                continue;
            }
            let which: Vec<(TaskId, u64)> = batch
                .iter()
                .map(|(_, k, _)| (k.name.id, k.name.version))
                .collect();
            let records = self.read_versions(&which).await?;
            let mut pairs = Vec::with_capacity(batch.len());
            let mut taken = Vec::with_capacity(batch.len());
            let mut stale = Vec::new();
            let mut missing = Vec::new();
            for ((queue, key, entry), record) in batch.into_iter().zip(records) {
                match record {
                    // Entries are written from their record, so a Pending record at the
                    // entry's version is due at the entry's eta.
                    Ok(Some(record))
                        if record.task.status == TaskStatus::Pending
                            && self.visible(key.name.version, &record).await? =>
                    {
                        let cur = Versioned {
                            version: key.name.version,
                            record,
                        };
                        let next = claimed_record(&cur, &req);
                        pairs.push((cur, next));
                        taken.push((key, entry));
                    }
                    // Not Pending: cannot happen for a ready entry's own version.
                    Ok(Some(record)) if record.task.status != TaskStatus::Pending => {}
                    // Missing, or part of an enqueue batch not committed (yet).
                    Ok(_) => {
                        // A writer is still creating the record, or crashed before it
                        // did, or the version was pruned after the task moved on.
                        if self.age(entry.modified) >= ORPHAN_AGE {
                            stale.push((entry.path, (key.name.id, key.name.version)));
                        } else {
                            missing.push((queue, key, entry));
                        }
                    }
                    // A corrupt record cannot be run; it must not stop every other
                    // claim either: its task fails alone, with a decode error.
                    Err(e) if e.kind() == omniq_core::StorageErrorKind::Serialization => {
                        if self
                            .fail_unreadable(&key.name.id, &queue, key.name.version, req.now, &e)
                            .await?
                        {
                            finished.push(key.name.id);
                        }
                        stale.push((entry.path, (key.name.id, key.name.version)));
                    }
                    Err(e) => return Err(e),
                }
            }
            // A missing version below the task's newest was pruned: the line is dead.
            let ids: Vec<TaskId> = missing.iter().map(|(_, k, _)| k.name.id).collect();
            let newest = self.newest_versions(&ids).await?;
            for ((queue, key, entry), newest) in missing.drain(..).zip(newest) {
                if newest.is_some_and(|n| n > key.name.version) {
                    stale.push((entry.path, (key.name.id, key.name.version)));
                } else {
                    in_flight.push((queue, key, entry));
                }
            }
            let results = self.transitions(pairs).await?;
            for ((key, entry), done) in taken.into_iter().zip(results) {
                match done {
                    Some(v) => {
                        let lease = v.record.lease.map(|l| Lease {
                            token: LeaseToken(l.token),
                            until: l.until,
                        });
                        if let Some(lease) = lease {
                            claimed.push((
                                Some(key),
                                Claimed {
                                    task: v.record.task,
                                    lease,
                                },
                            ));
                        }
                    }
                    // A newer version exists: the entry is stale.
                    None => stale.push((entry.path, (key.name.id, key.name.version))),
                }
            }
            let deletes: Vec<Op> = stale
                .into_iter()
                .filter(|(path, line)| self.inner.index_files.dead(path, *line))
                .map(|(path, _)| Op::Delete(path))
                .collect();
            self.run(deletes).await?;
        }
        for (queue, key, entry) in in_flight {
            let bucket = bucket_index(key.name.eta_us);
            self.inner.ready.insert(&queue, bucket, key, entry);
        }
        // A claim lost to a power cut is only a redelivery (the lease's job anyway), so
        // claims are not flushed; tasks that ended Cancelled here are.
        if !finished.is_empty() {
            self.sync().await?;
        }
        for task_id in finished {
            self.wake(Wake::Finished { task_id });
        }
        if leftover_expired {
            // Some redeliveries did not fit this claim: tell other workers.
            self.wake_work(queues.iter().copied());
        }
        // Redelivered tasks first (they were due first), then claim order.
        claimed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(claimed.into_iter().map(|(_, c)| c).collect())
    }

    /// The claim write: `cur` becomes Running under a new lease.
    async fn take(&self, cur: &Versioned, req: &ClaimRequest) -> Result<Option<Claimed>> {
        let next = claimed_record(cur, req);
        Ok(self.transition(cur, next).await?.and_then(|v| {
            let l = v.record.lease?;
            Some(Claimed {
                task: v.record.task,
                lease: Lease {
                    token: LeaseToken(l.token),
                    until: l.until,
                },
            })
        }))
    }

    /// Redelivers the task of an expired lease entry (or ends it Cancelled when its
    /// cancellation was requested).
    async fn redeliver(
        &self,
        name: &LeaseName,
        queue: &str,
        req: &ClaimRequest,
    ) -> Result<Redelivery> {
        let record = match self.read_version(&name.id, name.version).await {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(Redelivery::Missing),
            Err(e) if e.kind() == omniq_core::StorageErrorKind::Serialization => {
                return Ok(
                    if self
                        .fail_unreadable(&name.id, queue, name.version, req.now, &e)
                        .await?
                    {
                        Redelivery::Failed(name.id)
                    } else {
                        Redelivery::Corrupt
                    },
                );
            }
            Err(e) => return Err(e),
        };
        let cur = Versioned {
            version: name.version,
            record,
        };
        let expired = cur.record.task.status == TaskStatus::Running
            && cur.record.lease.is_some_and(|l| l.until <= req.now);
        if !expired {
            return Ok(Redelivery::Stale);
        }
        if cur.record.cancel {
            // Its worker is gone and nobody would act on the request: end it now.
            let mut next = cur.record.clone();
            next.end_cancelled(req.now);
            return Ok(match self.transition(&cur, next).await? {
                Some(_) => Redelivery::Cancelled(name.id),
                None => Redelivery::Stale,
            });
        }
        Ok(match self.take(&cur, req).await? {
            Some(c) => Redelivery::Claimed(Box::new(c)),
            None => Redelivery::Stale,
        })
    }

    /// A task whose record `version` cannot be decoded: its next version is written, by
    /// the usual conditional create (so of racing writers one wins), as a minimal
    /// Failed record — id and queue from the key and index paths, a non-retryable
    /// decode error and a Failed result — so the task ends alone, readable, and its
    /// queue goes on. False when another writer moved the task on first.
    async fn fail_unreadable(
        &self,
        id: &TaskId,
        queue: &str,
        version: u64,
        now: OffsetDateTime,
        why: &Error,
    ) -> Result<bool> {
        tracing::error!(target: "omniq::storage", backend = "file", task_id = %id, version, "claimed task cannot be read, failing it: {why}");
        let error = TaskError::new(
            ErrorType::Decode,
            format!("the stored task cannot be read: {why}"),
        )
        .with_retryable(false);
        let mut task = Task::new("", Payload(Vec::new()));
        task.id = *id;
        task.queue = queue.to_string();
        task.status = TaskStatus::Failed;
        task.created_at = now;
        task.updated_at = now;
        task.error = Some(error.clone());
        let record = Record {
            result: Some(TaskResult {
                task_id: *id,
                status: TaskStatus::Failed,
                result: None,
                error: Some(error),
                finished_at: now,
                attempts: 0,
                last_attempt_at: None,
            }),
            task,
            lease: None,
            cancel: false,
            seq: 0,
            batch: None,
            nonce: None,
            index: None,
        };
        let (created, _) = self.write_versions(&[(record, version + 1)]).await?;
        self.inner.held.forget(id);
        Ok(created.first().copied().unwrap_or(false))
    }

    /// Live lines of `queue`'s lease files that expired at `now_us`, earliest first,
    /// with their file.
    async fn expired_leases(
        &self,
        queue: &str,
        now_us: i64,
    ) -> Result<Vec<(LeaseName, Path, OffsetDateTime)>> {
        let root = self.inner.keys.lease_root(queue);
        let buckets = self.list_dir(&root).await?;
        let mut files = Vec::new();
        for b in &buckets.common_prefixes {
            let Some(start) = file_name(b).and_then(bucket_start) else {
                continue;
            };
            if start > now_us {
                break;
            }
            let listing = self.list_dir(b).await?;
            if listing.objects.is_empty() && start + BUCKET_US <= now_us {
                self.remove_empty_dir(b).await;
            }
            for o in listing.objects {
                if let Some(until) = file_name(&o.location).and_then(index_file_key) {
                    if until <= now_us {
                        files.push((until, o.location, to_time(o.last_modified)));
                    }
                }
            }
        }
        let present = files.iter().map(|(_, p, _)| p.clone()).collect();
        self.inner
            .index_files
            .forget_absent(&root, now_us, &present);
        let mut out = Vec::new();
        for ((until, path, modified), text) in
            files.iter().zip(self.read_index_files(&files).await?)
        {
            let lines: Vec<LeaseName> = text
                .lines()
                .filter_map(|l| LeaseName::parse_line(*until, l))
                .collect();
            let live = self
                .inner
                .index_files
                .register(path, lines.iter().map(|n| (n.id, n.version)));
            out.extend(
                lines
                    .into_iter()
                    .filter(|n| live.contains(&(n.id, n.version)))
                    .map(|n| (n, path.clone(), *modified)),
            );
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The text of each index file (empty when it is gone).
    async fn read_index_files<K>(
        &self,
        files: &[(K, Path, OffsetDateTime)],
    ) -> Result<Vec<String>> {
        let ops = files.iter().map(|(_, p, _)| Op::Read(p.clone())).collect();
        Ok(self
            .run(ops)
            .await?
            .into_iter()
            .map(|d| match d {
                Done::Read(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
                _ => String::new(),
            })
            .collect())
    }

    /// Marks one line of an index file dead, deleting the file when it was the last.
    async fn line_dead(&self, path: &Path, line: (TaskId, u64)) -> Result<()> {
        if self.inner.index_files.dead(path, line) {
            self.delete_quiet(path).await?;
        }
        Ok(())
    }

    /// Lists every due ready entry of `queue` (all priorities, every bucket up to
    /// `now_us`'s) into the listing cache: the index files' live lines.
    async fn relist(&self, queue: &str, now_us: i64) -> Result<()> {
        let started = std::time::Instant::now();
        let root = self.inner.keys.ready_root(queue);
        let prios = self.list_dir(&root).await?;
        let mut files = Vec::new();
        for p in &prios.common_prefixes {
            let Some(prio) = file_name(p).map(str::to_string) else {
                continue;
            };
            let buckets = self.list_dir(p).await?;
            for b in &buckets.common_prefixes {
                let Some(start) = file_name(b).and_then(bucket_start) else {
                    continue;
                };
                if start > now_us {
                    break;
                }
                let listing = self.list_dir(b).await?;
                if listing.objects.is_empty() && start + BUCKET_US <= now_us {
                    // A past minute nobody will write to again (unless a retry lands
                    // there, which creates it again).
                    self.remove_empty_dir(b).await;
                }
                for o in listing.objects {
                    if file_name(&o.location).and_then(index_file_key).is_some() {
                        files.push((prio.clone(), o.location, to_time(o.last_modified)));
                    }
                }
            }
        }
        let present = files.iter().map(|(_, p, _)| p.clone()).collect();
        self.inner
            .index_files
            .forget_absent(&root, now_us, &present);
        let mut out = BTreeMap::new();
        for ((prio, path, modified), text) in files.iter().zip(self.read_index_files(&files).await?)
        {
            let lines: Vec<ReadyName> = text.lines().filter_map(ReadyName::parse_line).collect();
            let live = self
                .inner
                .index_files
                .register(path, lines.iter().map(|n| (n.id, n.version)));
            for name in lines {
                if live.contains(&(name.id, name.version)) {
                    out.insert(
                        ReadyKey {
                            prio: prio.clone(),
                            name,
                        },
                        ReadyEntry {
                            path: path.clone(),
                            modified: *modified,
                        },
                    );
                }
            }
        }
        self.inner
            .ready
            .replace(queue, bucket_index(now_us), started.elapsed(), out);
        Ok(())
    }

    pub(crate) async fn earliest_due(&self, queues: &[String]) -> Result<Option<OffsetDateTime>> {
        self.check_open()?;
        let queues = distinct_queues(queues)?;
        let mut best: Option<i64> = None;
        let mut consider = |us: i64| best = Some(best.map_or(us, |b| b.min(us)));
        for queue in queues {
            // Pending: the listing cache's earliest while it is fresh, else the earliest
            // eta over every priority's first non-empty bucket.
            match self.inner.ready.earliest(queue) {
                Some(us) => consider(us),
                None => {
                    let prios = self.list_dir(&self.inner.keys.ready_root(queue)).await?;
                    for p in &prios.common_prefixes {
                        let buckets = self.list_dir(p).await?;
                        for b in &buckets.common_prefixes {
                            let min = self
                                .list_dir(b)
                                .await?
                                .objects
                                .iter()
                                .filter_map(|o| file_name(&o.location).and_then(index_file_key))
                                .min();
                            if let Some(us) = min {
                                consider(us);
                                break;
                            }
                        }
                    }
                }
            }
            // Running: the earliest lease expiry.
            let buckets = self.list_dir(&self.inner.keys.lease_root(queue)).await?;
            for b in &buckets.common_prefixes {
                let min = self
                    .list_dir(b)
                    .await?
                    .objects
                    .iter()
                    .filter_map(|o| file_name(&o.location).and_then(index_file_key))
                    .min();
                if let Some(us) = min {
                    consider(us);
                    break;
                }
            }
        }
        best.map(from_micros).transpose()
    }
}

pub(crate) enum UniqueHold {
    /// The key is ours; the path of our holder generation.
    Held(Path),
    /// A live task holds it.
    Duplicate(TaskId),
}

enum Redelivery {
    Claimed(Box<Claimed>),
    Cancelled(TaskId),
    /// The entry is out of date: the task moved on.
    Stale,
    /// The entry's record version does not exist (yet).
    Missing,
    /// The record cannot be decoded: its task was failed with a decode error.
    Failed(TaskId),
    /// The record cannot be decoded and another writer moved the task on first.
    Corrupt,
}

/// `cur` claimed by `req`: Running, one more attempt, under a lease whose fencing token
/// is the number of the version being written, `cur.version + 1`.
fn claimed_record(cur: &Versioned, req: &ClaimRequest) -> Record {
    let mut next = cur.record.clone();
    next.task.status = TaskStatus::Running;
    next.task.attempts = next.task.attempts.saturating_add(1);
    next.task.last_attempt_at = Some(req.now);
    next.task.updated_at = req.now;
    next.lease = Some(StoredLease {
        token: i64::try_from(cur.version + 1).unwrap_or(i64::MAX),
        until: req.now + req.lease,
    });
    next
}

/// An object's modification time as `OffsetDateTime`.
pub(crate) fn to_time(t: chrono::DateTime<chrono::Utc>) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.timestamp_micros()) * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub(crate) fn from_micros(us: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
        .map_err(|e| corrupt(format!("timestamp {us} out of range: {e}")))
}
