//! The file backend beyond the conformance suite: several independent instances and
//! several OS processes on one directory (B1, T2, S1), a writer killed mid-write (B1,
//! S4), corrupt records (S4), stores without conditional creates, configuration errors.
//!
//! The multi-process tests re-run this test binary as a child (`OMNIQ_FILE_CHILD=…`),
//! so the children are real processes with their own `FileStorage`.

mod common;

use omniq_core::{
    ClaimRequest, Completion, Payload, Storage, StorageErrorKind, Task, TaskFilter, TaskId,
    TaskStatus,
};
use omniq_file::{Durability, FileStorage};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

const TASKS: usize = 5_000;

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn tasks(n: usize, queue: &str) -> Vec<Task> {
    (0..n)
        .map(|i| {
            let mut t = Task::new("noop", Payload(format!("[{i}]").into_bytes()));
            t.queue = queue.to_string();
            t.created_at = now() - Duration::seconds(1);
            t
        })
        .collect()
}

async fn enqueue_all(s: &FileStorage, all: Vec<Task>) -> Vec<TaskId> {
    let mut ids = Vec::with_capacity(all.len());
    for chunk in all.chunks(omniq_file::MAX_BATCH) {
        let out = s.enqueue(chunk.to_vec()).await.expect("enqueue");
        ids.extend(out.iter().map(|e| e.id));
    }
    ids
}

/// Claims and completes until the queue is empty; returns the claimed ids in order.
async fn drain(s: Arc<FileStorage>, queue: &str, batch: usize) -> Vec<TaskId> {
    let mut mine = Vec::new();
    let mut empty = 0;
    while empty < 3 {
        let got = s
            .claim(ClaimRequest {
                queues: vec![queue.to_string()],
                limit: batch,
                now: now(),
                lease: Duration::minutes(10),
            })
            .await
            .expect("claim");
        if got.is_empty() {
            empty += 1;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        }
        empty = 0;
        let items = got
            .iter()
            .map(|c| Completion {
                lease: c.lease_ref(),
                result: None,
                now: now(),
                next_run: None,
            })
            .collect();
        let out = s.complete(items).await.expect("complete");
        assert!(
            out.iter().all(|o| *o == omniq_core::Outcome::Ok),
            "a fresh lease must complete: {out:?}"
        );
        mine.extend(got.iter().map(|c| c.task.id));
    }
    mine
}

/// Index files are deleted once every line in them is dead: a drained queue leaves none.
fn no_index_files_left(dir: &Path) {
    let left: Vec<PathBuf> = walk(&dir.join("omniq").join("q"))
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains('#'))
        .collect();
    assert!(left.is_empty(), "index files left behind: {left:?}");
}

fn check_exactly_once(claims: &[TaskId], ids: &[TaskId]) {
    let mut seen = HashSet::new();
    let doubles: Vec<_> = claims.iter().filter(|id| !seen.insert(**id)).collect();
    assert!(
        doubles.is_empty(),
        "{} tasks were claimed twice",
        doubles.len()
    );
    let want: HashSet<TaskId> = ids.iter().copied().collect();
    assert_eq!(seen.len(), want.len(), "every task claimed once, none lost");
    assert_eq!(seen, want, "the claimed tasks are the enqueued ones");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_directory_claim_each_task_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(FileStorage::open(dir.path()).await.unwrap());
    let b = Arc::new(FileStorage::open(dir.path()).await.unwrap());
    let ids = enqueue_all(&a, tasks(TASKS, "shared")).await;
    let mut handles = Vec::new();
    for (i, s) in [&a, &b, &a, &b, &a, &b].into_iter().enumerate() {
        let s = Arc::clone(s);
        handles.push(tokio::spawn(
            async move { drain(s, "shared", 8 + i * 4).await },
        ));
    }
    let mut claims = Vec::new();
    for h in handles {
        claims.extend(h.await.unwrap());
    }
    check_exactly_once(&claims, &ids);
    let counts = b.counts(Some("shared")).await.unwrap();
    assert_eq!(counts[0].success, TASKS as u64);
    no_index_files_left(dir.path());
}

/// Child mode: `OMNIQ_FILE_CHILD=claim:<dir>:<out>` drains the queue into `<out>`;
/// `OMNIQ_FILE_CHILD=write:<dir>` writes forever until killed.
fn child_mode() -> Option<(String, Vec<String>)> {
    let v = std::env::var("OMNIQ_FILE_CHILD").ok()?;
    let mut parts = v.split('|').map(str::to_string);
    let mode = parts.next()?;
    Some((mode, parts.collect()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn child_process() {
    let Some((mode, args)) = child_mode() else {
        return; // only runs as a child of the tests below
    };
    let dir = PathBuf::from(&args[0]);
    let s = Arc::new(FileStorage::open(&dir).await.unwrap());
    match mode.as_str() {
        "claim" => {
            let mut handles = Vec::new();
            for i in 0..4 {
                let s = Arc::clone(&s);
                handles.push(tokio::spawn(
                    async move { drain(s, "shared", 8 + i * 8).await },
                ));
            }
            let mut mine = Vec::new();
            for h in handles {
                mine.extend(h.await.unwrap());
            }
            let text: Vec<String> = mine.iter().map(|id| id.to_string()).collect();
            std::fs::write(&args[1], text.join("\n")).unwrap();
        }
        "write" => loop {
            // Enqueue, claim and complete as fast as possible, with payloads big enough
            // that a write takes a while: the parent kills this process mid-write.
            let mut batch = tasks(50, "churn");
            let name = format!("batch-{}", TaskId::new());
            for t in &mut batch {
                t.args = Payload(vec![b'x'; 64 * 1024]);
                t.func_path = name.clone();
            }
            s.enqueue(batch).await.unwrap();
            let _ = drain(Arc::clone(&s), "churn", 25).await;
        },
        other => panic!("unknown child mode {other}"),
    }
}

fn spawn_child(spec: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "child_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("OMNIQ_FILE_CHILD", spec)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_directory_claim_each_task_once() {
    if child_mode().is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = FileStorage::open(dir.path()).await.unwrap();
    let ids = enqueue_all(&s, tasks(TASKS, "shared")).await;
    let outs: Vec<PathBuf> = (0..2)
        .map(|i| dir.path().join(format!("claims-{i}.txt")))
        .collect();
    let children: Vec<_> = outs
        .iter()
        .map(|out| spawn_child(&format!("claim|{}|{}", dir.path().display(), out.display())))
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a claimer process failed");
    }
    let mut claims = Vec::new();
    let mut per_process = Vec::new();
    for out in &outs {
        let text = std::fs::read_to_string(out).unwrap();
        let mine: Vec<TaskId> = text.lines().map(|l| l.parse().unwrap()).collect();
        per_process.push(mine.len());
        claims.extend(mine);
    }
    check_exactly_once(&claims, &ids);
    assert!(
        per_process.iter().all(|n| *n > 0),
        "both processes claimed work: {per_process:?}"
    );
    let counts = s.counts(Some("shared")).await.unwrap();
    assert_eq!(counts[0].success, TASKS as u64);
    no_index_files_left(dir.path());
}

/// Every record left in `dir` decodes: get_task and get_result of every listed task.
/// Every enqueue batch (tasks sharing a `func_path`) is there whole or not at all.
async fn every_record_decodes(dir: &Path) -> usize {
    let s = FileStorage::open(dir).await.unwrap();
    let mut batches: std::collections::HashMap<String, usize> = Default::default();
    let mut n = 0;
    let mut cursor = None;
    loop {
        let page = s
            .list_tasks(TaskFilter {
                limit: 500,
                cursor,
                ..TaskFilter::default()
            })
            .await
            .expect("list_tasks after a killed writer");
        for t in &page.items {
            let got = s.get_task(&t.id).await.expect("get_task decodes");
            assert!(got.is_some());
            s.get_result(&t.id).await.expect("get_result decodes");
            *batches.entry(t.func_path.clone()).or_default() += 1;
            n += 1;
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => {
                let partial: Vec<_> = batches.iter().filter(|(_, k)| **k != 50).collect();
                assert!(partial.is_empty(), "partially stored batches: {partial:?}");
                return n;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writer_leaves_only_decodable_records() {
    if child_mode().is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for round in 0..8u64 {
        let mut child = spawn_child(&format!("write|{}", dir.path().display()));
        tokio::time::sleep(std::time::Duration::from_millis(300 + round * 37)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    // Also every record file directly: no torn record anywhere.
    let mut files = 0;
    for entry in walk(&dir.path().join("omniq").join("t")) {
        let name = entry.file_name().unwrap().to_string_lossy().to_string();
        if name.contains('#') {
            continue; // a staging file of a killed writer: never listed, never read
        }
        let bytes = std::fs::read(&entry).unwrap();
        let decoded: Result<omniq_core::Task, _> = omniq_core::Format::MessagePack
            .decode::<RecordProbe>(&bytes)
            .map(|r| r.task);
        assert!(decoded.is_ok(), "{} does not decode", entry.display());
        files += 1;
    }
    let tasks = every_record_decodes(dir.path()).await;
    assert!(
        tasks > 0 && files >= tasks,
        "the writer wrote something ({tasks} tasks)"
    );
}

#[derive(serde::Deserialize)]
struct RecordProbe {
    task: omniq_core::Task,
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// S4: a record version that no longer decodes fails its task alone (Failed, with a
/// decode error, readable by `get_task` and `get_result`); its neighbours run on.
#[tokio::test]
async fn corrupt_record_fails_its_task_alone_and_claims_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = FileStorage::open(dir.path()).await.unwrap();
    let mut all = tasks(4, "default");
    for (i, t) in all.iter_mut().enumerate() {
        t.created_at += Duration::milliseconds(i as i64);
    }
    let ids: Vec<TaskId> = all.iter().map(|t| t.id).collect();
    enqueue_all(&s, all).await;
    let version = |id: &TaskId, v: &str| dir.path().join("omniq/t").join(id.to_string()).join(v);
    // A pending record (garbage), and one that is valid JSON but not a record.
    std::fs::write(version(&ids[0], "0000000001"), b"\xc1 not msgpack").unwrap();
    std::fs::write(version(&ids[2], "0000000001"), b"{\"id\": 42}").unwrap();
    let e = s.get_task(&ids[0]).await.unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Serialization);
    let t0 = now() + Duration::seconds(5);
    let req = |at: OffsetDateTime| ClaimRequest {
        queues: vec!["default".into()],
        limit: 10,
        now: at,
        lease: Duration::seconds(30),
    };
    let claimed = s
        .claim(req(t0))
        .await
        .expect("a corrupt record never stops claims");
    let got: Vec<TaskId> = claimed.iter().map(|c| c.task.id).collect();
    assert_eq!(got, vec![ids[1], ids[3]], "the good neighbours are claimed");
    for bad in [ids[0], ids[2]] {
        let t = s
            .get_task(&bad)
            .await
            .unwrap()
            .expect("the failed task is readable");
        assert_eq!(
            (t.status, t.queue.as_str()),
            (TaskStatus::Failed, "default")
        );
        let e = t.error.expect("its error");
        assert_eq!(e.error_type, omniq_core::ErrorType::Decode, "{e:?}");
        assert!(!e.is_retryable);
        let r = s.get_result(&bad).await.unwrap().expect("a result");
        assert_eq!(r.status, TaskStatus::Failed);
        assert_eq!(
            r.error.map(|e| e.error_type),
            Some(omniq_core::ErrorType::Decode)
        );
    }
    // A Running record corrupted under its lease: failed when the lease expires.
    std::fs::write(version(&ids[1], "0000000002"), b"").unwrap();
    s.complete(vec![Completion {
        lease: claimed[1].lease_ref(),
        result: None,
        now: t0,
        next_run: None,
    }])
    .await
    .unwrap();
    let again = s.claim(req(t0 + Duration::seconds(60))).await.unwrap();
    assert!(again.is_empty(), "nothing left to run: {again:?}");
    let t = s.get_task(&ids[1]).await.unwrap().expect("readable");
    assert_eq!(t.status, TaskStatus::Failed);
    assert_eq!(
        t.error.map(|e| e.error_type),
        Some(omniq_core::ErrorType::Decode)
    );
    let t = s.get_task(&ids[3]).await.unwrap().expect("the neighbour");
    assert_eq!(t.status, TaskStatus::Success);
    let page = s.list_tasks(TaskFilter::default()).await.unwrap();
    assert_eq!(page.items.len(), 4, "every task lists again");
}

#[tokio::test]
async fn store_without_conditional_create_is_refused() {
    let store = common::NoConditional::new();
    let e = FileStorage::with_store(store).await.unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("conditional"), "{e}");
}

#[tokio::test]
async fn urls_and_settings_are_checked() {
    let e = FileStorage::from_url("ftp://host/prefix")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Config);
    #[cfg(not(feature = "cloud"))]
    {
        let e = FileStorage::from_url("s3://bucket/prefix")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), StorageErrorKind::Config);
        assert!(e.to_string().contains("cloud"), "{e}");
    }
    let e = FileStorage::builder()
        .in_memory()
        .namespace("bad name")
        .build()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Config);
    assert!(e.to_string().contains("namespace"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/c");
    let s = FileStorage::from_url(&format!("file://{}", nested.display()))
        .await
        .unwrap();
    assert!(nested.is_dir(), "the directory is created");
    assert!(format!("{s:?}").contains("FileStorage"));
    let m = FileStorage::from_url("memory://").await.unwrap();
    assert!(!m.capabilities().multi_process);
    assert!(s.capabilities().multi_process);
}

#[tokio::test]
async fn relaxed_durability_and_json_records_work() {
    let dir = tempfile::tempdir().unwrap();
    let s = FileStorage::builder()
        .dir(dir.path())
        .durability(Durability::Relaxed)
        .serializer(omniq_core::Format::Json)
        .build()
        .await
        .unwrap();
    let ids = enqueue_all(&s, tasks(3, "default")).await;
    let t = s.get_task(&ids[0]).await.unwrap().unwrap();
    assert_eq!(t.status, TaskStatus::Pending);
    let raw = std::fs::read(
        dir.path()
            .join("omniq/t")
            .join(ids[0].to_string())
            .join("0000000001"),
    )
    .unwrap();
    assert_eq!(raw.first(), Some(&b'{'), "JSON records are readable");
}

/// The held-lease cache never outlives fencing: a worker whose lease another instance
/// took over (after expiry) or flagged (cancel) learns it from its next write.
#[tokio::test]
async fn another_instance_fences_a_cached_lease() {
    let dir = tempfile::tempdir().unwrap();
    let a = FileStorage::open(dir.path()).await.unwrap();
    let b = FileStorage::open(dir.path()).await.unwrap();
    let t0 = now();
    let ids = enqueue_all(&a, tasks(2, "default")).await;
    let req = |at: OffsetDateTime, limit| ClaimRequest {
        queues: vec!["default".into()],
        limit,
        now: at,
        lease: Duration::seconds(30),
    };
    let mine = a.claim(req(t0, 2)).await.unwrap();
    assert_eq!(mine.len(), 2);
    let (first, second) = (&mine[0], &mine[1]);

    // B flags the second task; A's heartbeat (from its cached version) must see it.
    let out = b.cancel(&second.task.id, t0).await.unwrap();
    assert_eq!(out, omniq_core::CancelOutcome::Requested);
    let hb = a
        .heartbeat(&[second.lease_ref()], t0 + Duration::seconds(20))
        .await
        .unwrap();
    assert_eq!(hb, vec![omniq_core::Outcome::CancelRequested]);

    // B redelivers the first task after its lease ran out; A's late completion is fenced.
    let later = t0 + Duration::seconds(31);
    let taken = b.claim(req(later, 1)).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].task.id, first.task.id);
    assert!(taken[0].lease.token > first.lease.token);
    let out = a
        .complete(vec![Completion {
            lease: first.lease_ref(),
            result: Some(Payload(b"late".to_vec())),
            now: later,
            next_run: None,
        }])
        .await
        .unwrap();
    assert_eq!(out, vec![omniq_core::Outcome::LeaseLost]);
    let t = b.get_task(&first.task.id).await.unwrap().unwrap();
    assert_eq!((t.status, t.attempts), (TaskStatus::Running, 2));
    assert!(b.get_result(&first.task.id).await.unwrap().is_none());
    assert!(ids.contains(&first.task.id));
}

/// On a caller-given store a create answered `AlreadyExists` is read back: a retry that
/// met its own write is a success, not a lost race (cloud stores retry lost responses).
#[tokio::test]
async fn a_create_whose_response_was_lost_still_counts() {
    let s = FileStorage::with_store(common::LostResponses::new())
        .await
        .unwrap();
    let ids = enqueue_all(&s, tasks(3, "default")).await;
    let claimed = s
        .claim(ClaimRequest {
            queues: vec!["default".into()],
            limit: 10,
            now: now(),
            lease: Duration::seconds(30),
        })
        .await
        .unwrap();
    assert_eq!(
        claimed.len(),
        3,
        "every claim counts although each create 'failed'"
    );
    let out = s
        .complete(
            claimed
                .iter()
                .map(|c| Completion {
                    lease: c.lease_ref(),
                    result: None,
                    now: now(),
                    next_run: None,
                })
                .collect(),
        )
        .await
        .unwrap();
    assert!(out.iter().all(|o| *o == omniq_core::Outcome::Ok), "{out:?}");
    for id in ids {
        let t = s.get_task(&id).await.unwrap().unwrap();
        assert_eq!(t.status, TaskStatus::Success);
    }
}

/// Results stop being returned once older than the result TTL (by the wall clock), and
/// a result exactly inside it is still there (the conformance suite cannot set the TTL).
#[tokio::test]
async fn results_expire_after_the_result_ttl() {
    let s = FileStorage::builder()
        .in_memory()
        .result_ttl(Duration::hours(1))
        .build()
        .await
        .unwrap();
    let wall = now();
    let ids = enqueue_all(&s, tasks(2, "default")).await;
    let claimed = s
        .claim(ClaimRequest {
            queues: vec!["default".into()],
            limit: 2,
            now: wall,
            lease: Duration::seconds(30),
        })
        .await
        .unwrap();
    let by_id = |id: TaskId| {
        claimed
            .iter()
            .find(|c| c.task.id == id)
            .unwrap()
            .lease_ref()
    };
    let finish = |id: TaskId, at: OffsetDateTime| Completion {
        lease: by_id(id),
        result: Some(Payload(b"1".to_vec())),
        now: at,
        next_run: None,
    };
    let old = wall - Duration::hours(1) - Duration::minutes(1);
    let recent = wall - Duration::minutes(59);
    s.complete(vec![finish(ids[0], old), finish(ids[1], recent)])
        .await
        .unwrap();
    assert!(
        s.get_result(&ids[0]).await.unwrap().is_none(),
        "past the TTL"
    );
    assert!(
        s.get_result(&ids[1]).await.unwrap().is_some(),
        "inside the TTL"
    );
    // The task itself stays until purged.
    assert!(s.get_task(&ids[0]).await.unwrap().is_some());
}
