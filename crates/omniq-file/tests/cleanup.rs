//! The file backend keeps nothing forever (B1): dead unique-key generations are deleted
//! when a key is taken and by `purge_results` (T1, T11), superseded record versions are
//! pruned as new ones are written (B1, T3), and the records of an enqueue batch that never
//! committed are swept by `purge_results` once they are old enough that the enqueue
//! cannot still commit (T1, T11). Each clean-up keeps the conditional-create guarantees:
//! the tests race two instances after many generations and check every lease outcome.

mod common;

use omniq_core::{
    ClaimRequest, Completion, ManualClock, Outcome, Payload, Storage, Task, TaskStatus,
};
use omniq_file::FileStorage;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn task(queue: &str, key: Option<&str>) -> Task {
    let mut t = Task::new("noop", Payload(b"[]".to_vec()));
    t.queue = queue.to_string();
    t.created_at = now() - Duration::seconds(1);
    t.unique_key = key.map(str::to_string);
    t
}

/// Files (not directories, not staging files) under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files(&p));
            } else if !p.to_string_lossy().contains('#') {
                out.push(p);
            }
        }
    }
    out
}

async fn claim_one(s: &FileStorage, queue: &str) -> omniq_core::Claimed {
    let mut got = s
        .claim(ClaimRequest {
            queues: vec![queue.to_string()],
            limit: 1,
            now: now() + Duration::seconds(1),
            lease: Duration::seconds(30),
        })
        .await
        .expect("claim");
    assert_eq!(got.len(), 1, "one task is due");
    got.pop().unwrap()
}

async fn complete(s: &FileStorage, c: &omniq_core::Claimed) {
    let out = s
        .complete(vec![Completion {
            lease: c.lease_ref(),
            result: None,
            now: now(),
            next_run: None,
        }])
        .await
        .expect("complete");
    assert_eq!(out, vec![Outcome::Ok]);
}

/// A storage on `dir` whose clock runs `ahead` of the wall clock.
async fn aged(dir: &Path, ahead: Duration) -> FileStorage {
    FileStorage::builder()
        .dir(dir)
        .clock(Arc::new(ManualClock::new(now() + ahead)))
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unique_key_generations_stay_bounded_and_races_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(FileStorage::open(dir.path()).await.unwrap());
    let b = Arc::new(FileStorage::open(dir.path()).await.unwrap());
    let keys_dir = dir.path().join("omniq/u/uq");
    // A recurring job: the key is taken, the task runs and finishes, again and again.
    for i in 0..40 {
        let s = if i % 2 == 0 { &a } else { &b };
        let out = s.enqueue(vec![task("uq", Some("daily"))]).await.unwrap();
        assert!(!out[0].duplicate, "round {i}: the key is free");
        let again = s.enqueue(vec![task("uq", Some("daily"))]).await.unwrap();
        assert_eq!(
            (again[0].duplicate, again[0].id),
            (true, out[0].id),
            "round {i}: the live holder keeps the key"
        );
        let c = claim_one(s, "uq").await;
        assert_eq!(c.task.id, out[0].id);
        complete(s, &c).await;
        let gens = files(&keys_dir).len();
        assert!(gens <= 2, "round {i}: {gens} generations kept");
    }
    // Two instances race for the free key, many times: exactly one takes it each time.
    for round in 0..25 {
        let (ta, tb) = (task("uq", Some("daily")), task("uq", Some("daily")));
        let (ra, rb) = tokio::join!(
            {
                let a = Arc::clone(&a);
                async move { a.enqueue(vec![ta]).await.unwrap() }
            },
            {
                let b = Arc::clone(&b);
                async move { b.enqueue(vec![tb]).await.unwrap() }
            }
        );
        let winners = [&ra[0], &rb[0]].iter().filter(|e| !e.duplicate).count();
        assert_eq!(winners, 1, "round {round}: {ra:?} {rb:?}");
        assert_eq!(ra[0].id, rb[0].id, "round {round}: both name the holder");
        let c = claim_one(&a, "uq").await;
        assert_eq!(c.task.id, ra[0].id);
        complete(&a, &c).await;
    }
    let gens = files(&keys_dir);
    assert!(gens.len() <= 2, "{gens:?}");
    let newest = gens
        .iter()
        .filter_map(|p| p.file_name()?.to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    assert!(newest >= 65, "generation numbers only grow: {newest}");

    // A live holder's key survives a purge; a finished holder's key is swept once old.
    let live = a.enqueue(vec![task("uq", Some("live"))]).await.unwrap()[0].id;
    let future = aged(dir.path(), Duration::minutes(11)).await;
    future
        .purge_results(now() - Duration::days(1))
        .await
        .unwrap();
    let left = files(&keys_dir);
    assert_eq!(left.len(), 1, "only the live key is left: {left:?}");
    let dup = a.enqueue(vec![task("uq", Some("live"))]).await.unwrap();
    assert_eq!((dup[0].duplicate, dup[0].id), (true, live));
    // The swept key starts over, and is still taken by exactly one racer.
    let (ra, rb) = tokio::join!(
        a.enqueue(vec![task("uq", Some("daily"))]),
        b.enqueue(vec![task("uq", Some("daily"))])
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(u8::from(!ra[0].duplicate) + u8::from(!rb[0].duplicate), 1);
    assert_eq!(ra[0].id, rb[0].id);
    let holder = a.get_task(&ra[0].id).await.unwrap().unwrap();
    assert_eq!(holder.status, TaskStatus::Pending);
}

fn versions_of(dir: &Path, id: &omniq_core::TaskId) -> Vec<u64> {
    let mut v: Vec<u64> = files(&dir.join("omniq/t").join(id.to_string()))
        .iter()
        .filter_map(|p| p.file_name()?.to_str()?.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

#[tokio::test]
async fn heartbeats_keep_a_bounded_number_of_versions() {
    let dir = tempfile::tempdir().unwrap();
    let s = FileStorage::open(dir.path()).await.unwrap();
    let id = s.enqueue(vec![task("hb", None)]).await.unwrap()[0].id;
    let c = claim_one(&s, "hb").await;
    for i in 0..300 {
        let out = s
            .heartbeat(&[c.lease_ref()], now() + Duration::seconds(60 + i))
            .await
            .unwrap();
        assert_eq!(out, vec![Outcome::Ok], "heartbeat {i}");
        let kept = versions_of(dir.path(), &id);
        assert!(kept.len() <= 3, "heartbeat {i}: {kept:?}");
    }
    assert_eq!(versions_of(dir.path(), &id), vec![300, 301, 302]);
    let t = s.get_task(&id).await.unwrap().unwrap();
    assert_eq!(t.status, TaskStatus::Running);
    complete(&s, &c).await;
    let kept = versions_of(dir.path(), &id);
    assert_eq!(kept, vec![301, 302, 303]);
    let r = s.get_result(&id).await.unwrap().unwrap();
    assert!(r.is_success());
    // A reader on another instance sees the newest version.
    let other = FileStorage::open(dir.path()).await.unwrap();
    let t = other.get_task(&id).await.unwrap().unwrap();
    assert_eq!(t.status, TaskStatus::Success);
}

/// A worker that lost its lease remembers a version long pruned: its create of the next
/// number succeeds (the number is free again) but is recognised as stale, withdrawn,
/// and the worker is told its lease is lost. Its late completion changes nothing.
#[tokio::test]
async fn a_stale_worker_cannot_revive_a_pruned_version() {
    let dir = tempfile::tempdir().unwrap();
    let a = FileStorage::open(dir.path()).await.unwrap();
    let b = FileStorage::open(dir.path()).await.unwrap();
    let t0 = now();
    let id = a.enqueue(vec![task("stale", None)]).await.unwrap()[0].id;
    let req = |at: OffsetDateTime| ClaimRequest {
        queues: vec!["stale".into()],
        limit: 1,
        now: at,
        lease: Duration::seconds(30),
    };
    let mine = a.claim(req(t0)).await.unwrap().pop().unwrap();
    assert_eq!(mine.lease.token.0, 2);
    // B redelivers after the lease ran out and heartbeats on: version 2 and its
    // successors are pruned.
    let later = t0 + Duration::seconds(31);
    let theirs = b.claim(req(later)).await.unwrap().pop().unwrap();
    assert_eq!(theirs.task.id, id);
    for i in 0..10 {
        let out = b
            .heartbeat(&[theirs.lease_ref()], later + Duration::seconds(40 + i))
            .await
            .unwrap();
        assert_eq!(out, vec![Outcome::Ok]);
    }
    assert_eq!(versions_of(dir.path(), &id), vec![11, 12, 13]);
    // A writes from its remembered version 2: it creates version 3, sees it is stale.
    let hb = a
        .heartbeat(&[mine.lease_ref()], later + Duration::seconds(60))
        .await
        .unwrap();
    assert_eq!(hb, vec![Outcome::LeaseLost]);
    let done = a
        .complete(vec![Completion {
            lease: mine.lease_ref(),
            result: Some(Payload(b"late".to_vec())),
            now: later,
            next_run: None,
        }])
        .await
        .unwrap();
    assert_eq!(done, vec![Outcome::LeaseLost]);
    assert_eq!(
        versions_of(dir.path(), &id),
        vec![11, 12, 13],
        "the stale writes were withdrawn"
    );
    let t = b.get_task(&id).await.unwrap().unwrap();
    assert_eq!((t.status, t.attempts), (TaskStatus::Running, 2));
    assert!(b.get_result(&id).await.unwrap().is_none());
    complete(&b, &theirs).await;
    // A claimer on A still holding the task's first index line does not take it.
    assert!(a.claim(req(later)).await.unwrap().is_empty());
    assert!(
        files(&dir.path().join("omniq/q")).is_empty(),
        "every index file was retired"
    );
}

/// An enqueue batch that died before its commit marker leaves invisible records: a
/// purge leaves them while the enqueue could still be in flight, sweeps them once they
/// are ten minutes old (aged with the injected clock), and sweeps the markers of
/// committed batches whose tasks all moved on — never one a task still needs.
#[tokio::test]
async fn uncommitted_batches_and_spent_markers_are_swept_once_old() {
    let dir = tempfile::tempdir().unwrap();
    let local = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    let crashing = FileStorage::with_store(Arc::new(common::NoMarkers {
        inner: Arc::new(local),
    }))
    .await
    .unwrap();
    let lost: Vec<Task> = (0..3).map(|_| task("batch", None)).collect();
    let lost_ids: Vec<_> = lost.iter().map(|t| t.id).collect();
    assert!(crashing.enqueue(lost).await.is_err(), "the marker failed");
    let records = || files(&dir.path().join("omniq/t")).len();
    assert_eq!(records(), 3, "the batch's records were left behind");

    let s = FileStorage::open(dir.path()).await.unwrap();
    // Two committed batches: one whose tasks all finish, one with a task still pending.
    let done: Vec<Task> = (0..2).map(|_| task("batch", None)).collect();
    let done_ids: Vec<_> = s
        .enqueue(done)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    for _ in 0..2 {
        let c = claim_one(&s, "batch").await;
        assert!(done_ids.contains(&c.task.id));
        complete(&s, &c).await;
    }
    let mut later = vec![task("later", None), task("later", None)];
    later[0].schedule.eta = Some(now() + Duration::hours(1));
    later[1].schedule.eta = Some(now() + Duration::hours(1));
    let pending: Vec<_> = s
        .enqueue(later)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    let markers = || files(&dir.path().join("omniq/b")).len();
    assert_eq!(markers(), 2);
    for id in &lost_ids {
        assert!(s.get_task(id).await.unwrap().is_none(), "never visible");
    }

    // Now: the lost records might belong to an enqueue still in flight; all stays.
    assert_eq!(s.purge_results(now() - Duration::days(1)).await.unwrap(), 0);
    assert_eq!((records(), markers()), (3 + 2 * 3 + 2, 2));

    // Eleven minutes on: the lost records and the spent marker go; the rest stays.
    let future = aged(dir.path(), Duration::minutes(11)).await;
    future
        .purge_results(now() - Duration::days(1))
        .await
        .unwrap();
    for id in &lost_ids {
        assert!(!dir.path().join("omniq/t").join(id.to_string()).exists());
    }
    assert_eq!(markers(), 1, "the pending batch keeps its marker");
    for id in pending.iter().chain(&done_ids) {
        assert!(
            s.get_task(id).await.unwrap().is_some(),
            "{id} is still there"
        );
    }
    let fresh = FileStorage::open(dir.path()).await.unwrap();
    let t = fresh.get_task(&pending[0]).await.unwrap().unwrap();
    assert_eq!(
        t.status,
        TaskStatus::Pending,
        "its batch still counts as committed"
    );
    let claimed = fresh
        .claim(ClaimRequest {
            queues: vec!["later".into()],
            limit: 10,
            now: now() + Duration::hours(2),
            lease: Duration::seconds(30),
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(
        fresh
            .claim(ClaimRequest {
                queues: vec!["batch".into()],
                limit: 10,
                now: now() + Duration::hours(2),
                lease: Duration::seconds(30),
            })
            .await
            .unwrap()
            .is_empty()
    );
}
