//! Redis-specific behaviour beyond the conformance suite: TTL expiry leaves no keys,
//! recovery from a server restart (scripts reloaded after NOSCRIPT), independent
//! instances claiming concurrently, cross-instance wake-ups, corrupt records, big
//! backlogs, and credentials kept out of errors. Each test uses its own namespace and
//! removes its keys.

mod common;

use common::{cluster_url, count_keys, delete_namespaces, redis_url, unique_namespace};
use omniq_core::{
    ClaimRequest, Completion, LeaseRef, Outcome, Payload, Storage, StorageErrorKind, Task, TaskId,
    TaskStatus, Wake,
};
use omniq_redis::RedisStorage;
use omniq_redis::fred::prelude::*;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration as StdDuration;
use time::{Duration, OffsetDateTime};

fn now() -> OffsetDateTime {
    let n = OffsetDateTime::now_utc();
    n.replace_nanosecond(0).unwrap_or(n)
}

fn task(queue: &str, now: OffsetDateTime) -> Task {
    let mut t = Task::new("m.f", Payload(b"[1]".to_vec()));
    t.queue = queue.to_string();
    t.created_at = now;
    t.updated_at = now;
    t
}

async fn storage(url: &str, ns: &str) -> RedisStorage {
    RedisStorage::builder()
        .url(url)
        .namespace(ns)
        .build()
        .await
        .expect("connect (is Redis running? OMNIQ_TEST_REDIS_URL)")
}

fn claim_req(queues: &[&str], limit: usize, now: OffsetDateTime) -> ClaimRequest {
    ClaimRequest {
        queues: queues.iter().map(|q| q.to_string()).collect(),
        limit,
        now,
        lease: Duration::seconds(30),
    }
}

/// Removes a test's namespace even when the test fails.
struct Cleanup(String, String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (url, ns) = (self.0.clone(), self.1.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Runtime::new().map(|rt| rt.block_on(delete_namespaces(&url, &ns)))
        })
        .join();
    }
}

/// S1/nothing grows without bound: finished tasks, results, their index entries and
/// locators are gone once the result TTL has passed.
#[tokio::test]
async fn finished_tasks_and_results_leave_no_keys_after_the_ttl() {
    for url in [redis_url(), cluster_url()] {
        let ns = unique_namespace("ttl");
        let _cleanup = Cleanup(url.clone(), ns.clone());
        let Ok(s) = RedisStorage::builder()
            .url(&url)
            .namespace(&ns)
            // Long enough that a loaded machine still counts the keys before they go.
            .result_ttl(Duration::seconds(4))
            .build()
            .await
        else {
            assert!(!url.starts_with("redis://"), "standalone Redis must be up");
            eprintln!("skipping the cluster: not reachable at {url}");
            continue;
        };
        let t0 = now();
        let tasks: Vec<Task> = (0..20)
            .map(|i| task(if i % 2 == 0 { "a" } else { "b" }, t0))
            .collect();
        s.enqueue(tasks).await.expect("enqueue");
        let claimed = s
            .claim(claim_req(&["a", "b"], 20, t0))
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 20);
        let done: Vec<Completion> = claimed
            .iter()
            .map(|c| Completion {
                lease: c.lease_ref(),
                result: Some(Payload(b"ok".to_vec())),
                now: OffsetDateTime::now_utc(),
                next_run: None,
            })
            .collect();
        let out = s.complete(done).await.expect("complete");
        assert!(out.iter().all(|o| *o == Outcome::Ok));
        let id = claimed[0].task.id;
        assert!(s.get_result(&id).await.expect("get_result").is_some());
        let before = count_keys(&url, &ns).await.expect("count keys");
        assert!(before > 20, "tasks, results and locators exist: {before}");

        tokio::time::sleep(StdDuration::from_millis(5100)).await;
        assert!(s.get_result(&id).await.expect("get_result").is_none());
        assert!(s.get_task(&id).await.expect("get_task").is_none());
        // A later call trims the index entries the expired records left behind.
        let counts = s.counts(None).await.expect("counts");
        assert!(counts.iter().all(|c| c.total() == 0), "{counts:?}");
        let left = count_keys(&url, &ns).await.expect("count keys");
        // Only the namespace's set of queue names stays.
        assert_eq!(left, 1, "keys left in {ns} on {url}");
        s.close().await.expect("close");
    }
}

/// S3: a storage survives a server restart: calls fail Unavailable while it is down,
/// work again after, and scripts are loaded again after NOSCRIPT.
#[tokio::test]
async fn survives_a_server_restart_and_reloads_its_scripts() {
    let Some(mut server) = common::PrivateServer::start().await else {
        panic!("redis-server must be installed for this test");
    };
    let s = RedisStorage::builder()
        .url(&server.url())
        .namespace("restart")
        .command_timeout(StdDuration::from_secs(2))
        .build()
        .await
        .expect("connect");
    let t0 = now();
    s.enqueue(vec![task("q", t0)])
        .await
        .expect("enqueue before");
    let mut rx = s.subscribe().expect("push wake-ups");

    server.stop();
    let err = s
        .enqueue(vec![task("q", t0)])
        .await
        .expect_err("server down");
    assert_eq!(err.kind(), StorageErrorKind::Unavailable, "{err}");
    let err = s
        .claim(claim_req(&["q"], 1, t0))
        .await
        .expect_err("server down");
    assert!(err.is_temporary(), "{err}");

    server.restart().expect("restart");
    // The restarted server is empty: no data, no scripts. Reconnection is automatic.
    let mut ok = None;
    for _ in 0..100 {
        match s.enqueue(vec![task("q", t0)]).await {
            Ok(e) => {
                ok = Some(e);
                break;
            }
            Err(e) => {
                assert!(e.is_temporary(), "only Unavailable while reconnecting: {e}");
                tokio::time::sleep(StdDuration::from_millis(50)).await;
            }
        }
    }
    assert!(ok.is_some(), "enqueue works again after the restart");
    let got = s
        .claim(claim_req(&["q"], 10, t0))
        .await
        .expect("claim after restart");
    assert_eq!(got.len(), 1, "the task enqueued after the restart");
    // Wake-ups flow again: the subscriber re-subscribed by itself.
    let other = storage(&server.url(), "restart").await;
    let mut woke = false;
    for _ in 0..50 {
        other.enqueue(vec![task("w", t0)]).await.expect("enqueue");
        let wait = tokio::time::timeout(StdDuration::from_millis(100), async {
            loop {
                match rx.recv().await {
                    Ok(Wake::Work { queue }) if queue == "w" => return true,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return false,
                }
            }
        });
        if wait.await.unwrap_or(false) {
            woke = true;
            break;
        }
    }
    assert!(
        woke,
        "another instance's enqueue wakes this one after the restart"
    );
    s.close().await.expect("close");
    other.close().await.expect("close");
}

/// T2/S1: independent instances (separate connections, as separate processes would
/// have) claiming one queue concurrently: every task exactly once, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn independent_instances_never_double_claim() {
    for url in [redis_url(), cluster_url()] {
        let ns = unique_namespace("race");
        let _cleanup = Cleanup(url.clone(), ns.clone());
        let Ok(first) = RedisStorage::builder()
            .url(&url)
            .namespace(&ns)
            .build()
            .await
        else {
            assert!(!url.starts_with("redis://"), "standalone Redis must be up");
            continue;
        };
        let t0 = now();
        let n = 3000;
        let mut ids = HashSet::new();
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            let tasks: Vec<Task> = chunk.iter().map(|_| task("hot", t0)).collect();
            ids.extend(tasks.iter().map(|t| t.id));
            first.enqueue(tasks).await.expect("enqueue");
        }
        let mut handles = Vec::new();
        for w in 0..8 {
            let s = storage(&url, &ns).await;
            handles.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = s
                        .claim(claim_req(&["hot"], 1 + w * 7, t0))
                        .await
                        .expect("claim");
                    if got.is_empty() {
                        break;
                    }
                    let done: Vec<Completion> = got
                        .iter()
                        .map(|c| Completion {
                            lease: c.lease_ref(),
                            result: None,
                            now: t0,
                            next_run: None,
                        })
                        .collect();
                    let out = s.complete(done).await.expect("complete");
                    assert!(out.iter().all(|o| *o == Outcome::Ok));
                    mine.extend(got.into_iter().map(|c| c.task.id));
                }
                s.close().await.expect("close");
                mine
            }));
        }
        let mut seen = HashSet::new();
        let mut total = 0;
        for h in handles {
            for id in h.await.expect("claimer") {
                total += 1;
                assert!(seen.insert(id), "task {id} claimed twice");
            }
        }
        assert_eq!(total, n);
        assert_eq!(seen, ids, "every task claimed once");
        let counts = first.counts(Some("hot")).await.expect("counts");
        assert_eq!(counts[0].success, n as u64);
        first.close().await.expect("close");
    }
}

/// Wake-ups cross instances (pub/sub): another instance's enqueue and completion wake
/// this one's workers and result waiters.
#[tokio::test]
async fn wake_ups_reach_other_instances() {
    for url in [redis_url(), cluster_url()] {
        let ns = unique_namespace("wake");
        let _cleanup = Cleanup(url.clone(), ns.clone());
        let Ok(a) = RedisStorage::builder()
            .url(&url)
            .namespace(&ns)
            .build()
            .await
        else {
            assert!(!url.starts_with("redis://"), "standalone Redis must be up");
            continue;
        };
        let b = storage(&url, &ns).await;
        let mut rx = a.subscribe().expect("subscribe");
        let t0 = now();
        let id = b.enqueue(vec![task("mail", t0)]).await.expect("enqueue")[0].id;
        let c = b.claim(claim_req(&["mail"], 1, t0)).await.expect("claim");
        b.complete(vec![Completion {
            lease: c[0].lease_ref(),
            result: None,
            now: t0,
            next_run: None,
        }])
        .await
        .expect("complete");
        let mut want = vec![
            Wake::Work {
                queue: "mail".into(),
            },
            Wake::Finished { task_id: id },
        ];
        tokio::time::timeout(StdDuration::from_secs(5), async {
            while !want.is_empty() {
                if let Ok(w) = rx.recv().await {
                    want.retain(|x| *x != w);
                }
            }
        })
        .await
        .expect("both wake-ups arrive from the other instance");
        a.close().await.expect("close");
        b.close().await.expect("close");
    }
}

/// S4: a stored record that no longer decodes fails its task with a decode error
/// instead of failing every claim of its queue.
#[tokio::test]
async fn a_corrupt_record_fails_its_task_and_the_queue_goes_on() {
    let url = redis_url();
    let ns = unique_namespace("corrupt");
    let _cleanup = Cleanup(url.clone(), ns.clone());
    let s = storage(&url, &ns).await;
    let t0 = now();
    let bad = task("q", t0);
    let mut good = task("q", t0);
    good.priority = -1;
    let bad_id = bad.id;
    s.enqueue(vec![bad, good.clone()]).await.expect("enqueue");
    let raw = Builder::from_config(Config::from_url(&url).expect("url"))
        .build()
        .expect("client");
    raw.init().await.expect("connect");
    let _: () = raw
        .hset(
            format!("omniq:{{{ns}:q}}:t:{bad_id}"),
            ("d", "\u{c1}garbage"),
        )
        .await
        .expect("corrupt the record");

    let got = s
        .claim(claim_req(&["q"], 10, t0))
        .await
        .expect("claim goes on");
    let ids: Vec<TaskId> = got.iter().map(|c| c.task.id).collect();
    assert_eq!(
        ids,
        vec![good.id],
        "the good task is claimed, the bad one is not"
    );
    let r = s.get_result(&bad_id).await.expect("get_result");
    let r = r.expect("the corrupt task has a result");
    assert_eq!(r.status, TaskStatus::Failed);
    assert_eq!(
        r.error.map(|e| e.error_type),
        Some(omniq_core::ErrorType::Decode)
    );
    // Reading it is an error of kind Serialization, not a panic.
    let err = s.get_task(&bad_id).await.expect_err("undecodable");
    assert_eq!(err.kind(), StorageErrorKind::Serialization);
    let _ = raw.quit().await;
    s.close().await.expect("close");
}

/// S4: a task whose state field `m` does not parse (garbage, or fields that do not read
/// back) fails alone with a decode error, readable afterwards; its neighbours run.
#[tokio::test]
async fn a_corrupt_state_fails_its_task_and_the_queue_goes_on() {
    let url = redis_url();
    let ns = unique_namespace("corrupt-m");
    let _cleanup = Cleanup(url.clone(), ns.clone());
    let s = storage(&url, &ns).await;
    let t0 = now();
    let mut all: Vec<Task> = (0..4).map(|_| task("q", t0)).collect();
    for (i, t) in all.iter_mut().enumerate() {
        t.priority = -(i as i32);
    }
    let ids: Vec<TaskId> = all.iter().map(|t| t.id).collect();
    s.enqueue(all).await.expect("enqueue");
    let raw = Builder::from_config(Config::from_url(&url).expect("url"))
        .build()
        .expect("client");
    raw.init().await.expect("connect");
    for (id, m) in [
        (ids[0], "\u{c1}garbage"),
        (ids[2], "pending|0|x|0|||||0|0|"),
    ] {
        let _: () = raw
            .hset(format!("omniq:{{{ns}:q}}:t:{id}"), ("m", m))
            .await
            .expect("corrupt the state");
    }
    let got = s
        .claim(claim_req(&["q"], 10, t0))
        .await
        .expect("claim goes on");
    let claimed: Vec<TaskId> = got.iter().map(|c| c.task.id).collect();
    assert_eq!(
        claimed,
        vec![ids[1], ids[3]],
        "only the good tasks are claimed"
    );
    for bad in [ids[0], ids[2]] {
        let t = s
            .get_task(&bad)
            .await
            .expect("readable again")
            .expect("still there");
        assert_eq!(t.status, TaskStatus::Failed);
        assert_eq!(
            t.error.map(|e| e.error_type),
            Some(omniq_core::ErrorType::Decode)
        );
        let r = s
            .get_result(&bad)
            .await
            .expect("get_result")
            .expect("a result");
        assert_eq!(r.status, TaskStatus::Failed);
        assert_eq!(
            r.error.map(|e| e.error_type),
            Some(omniq_core::ErrorType::Decode)
        );
    }
    let counts = s.claim(claim_req(&["q"], 10, t0)).await.expect("claim");
    assert!(counts.is_empty(), "the failed tasks are not claimed again");
    let _ = raw.quit().await;
    s.close().await.expect("close");
}

/// A task state written before recorded runs existed (11 fields) is claimed, read with
/// `runs = 0`, and gains the field on its next write (M10).
#[tokio::test]
async fn a_state_without_recorded_runs_is_upgraded_on_write() {
    let url = redis_url();
    let ns = unique_namespace("old-m");
    let _cleanup = Cleanup(url.clone(), ns.clone());
    let s = storage(&url, &ns).await;
    let t0 = now();
    let t = task("q", t0);
    let id = t.id;
    s.enqueue(vec![t]).await.expect("enqueue");
    let raw = Builder::from_config(Config::from_url(&url).expect("url"))
        .build()
        .expect("client");
    raw.init().await.expect("connect");
    let key = format!("omniq:{{{ns}:q}}:t:{id}");
    let m: String = raw.hget(&key, "m").await.expect("state");
    let (old, runs) = m.rsplit_once('|').expect("12 fields");
    assert_eq!((old.split('|').count(), runs), (11, "0"));
    let _: () = raw
        .hset(&key, ("m", old))
        .await
        .expect("write an old state");
    assert_eq!(s.get_task(&id).await.expect("get").expect("task").runs, 0);
    let c = s.claim(claim_req(&["q"], 10, t0)).await.expect("claim");
    assert_eq!(c.len(), 1, "the old state is claimable");
    assert_eq!(
        s.start(&[c[0].lease_ref()]).await.expect("start"),
        vec![omniq_core::Outcome::Ok]
    );
    assert_eq!(s.get_task(&id).await.expect("get").expect("task").runs, 1);
    let m: String = raw.hget(&key, "m").await.expect("state");
    assert_eq!(m.split('|').count(), 12, "{m}");
    let _ = raw.quit().await;
    s.close().await.expect("close");
}

/// Claim and complete take a short path for the usual state and a general one for
/// anything else (a negative priority, a task without its stored schedule member, a
/// next run); both write the same state, indexes, result, unique-key release and
/// expiries.
#[tokio::test]
async fn claim_and_complete_write_the_same_state_on_every_path() {
    let url = redis_url();
    let ns = unique_namespace("paths");
    let _cleanup = Cleanup(url.clone(), ns.clone());
    let s = storage(&url, &ns).await;
    let raw = Builder::from_config(Config::from_url(&url).expect("url"))
        .build()
        .expect("client");
    raw.init().await.expect("connect");
    let us = |t: OffsetDateTime| (t.unix_timestamp_nanos() / 1000) as i64;
    let t0 = now();
    let t1 = t0 + Duration::seconds(1);
    // usual; negative priority (general claim); member removed before completing
    // (general completion); a next run (general completion, back to Pending).
    let mut tasks: Vec<Task> = (0..4).map(|_| task("q", t0)).collect();
    tasks[0].unique_key = Some("k0".into());
    tasks[1].priority = -3;
    tasks[1].unique_key = Some("k1".into());
    tasks[2].unique_key = Some("k2".into());
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
    s.enqueue(tasks).await.expect("enqueue");
    let key = |id: &TaskId| format!("omniq:{{{ns}:q}}:t:{id}");
    let zkey = |name: &str| format!("omniq:{{{ns}:q}}:{name}");
    // due|priority|seq as enqueued: kept by every write below.
    let mut kept = Vec::new();
    for id in &ids {
        let m: String = raw.hget(key(id), "m").await.expect("state");
        let f: Vec<&str> = m.split('|').collect();
        assert_eq!(f.len(), 12, "{m}");
        kept.push(format!("{}|{}|{}", f[7], f[8], f[9]));
    }
    let claimed = s.claim(claim_req(&["q"], 10, t0)).await.expect("claim");
    assert_eq!(claimed.len(), 4);
    let (n0, until) = (us(t0), us(t0 + Duration::seconds(30)));
    for (id, k) in ids.iter().zip(&kept) {
        let m: String = raw.hget(key(id), "m").await.expect("state");
        assert_eq!(m, format!("running|1|1|{n0}|{n0}|{until}||{k}||0"), "{id}");
        let c = claimed.iter().find(|c| c.task.id == *id).expect("claimed");
        assert_eq!((c.lease.token.0, c.task.attempts), (1, 1));
    }
    let running: i64 = raw.zcard(zkey("s:running")).await.expect("zcard");
    let pending: i64 = raw.zcard(zkey("s:pending")).await.expect("zcard");
    let leases: i64 = raw.zcard(zkey("leases")).await.expect("zcard");
    assert_eq!((running, pending, leases), (4, 0, 4));
    let _: i64 = raw.hdel(key(&ids[2]), "rk").await.expect("hdel");
    let done: Vec<Completion> = ids
        .iter()
        .map(|id| {
            let c = claimed.iter().find(|c| c.task.id == *id).expect("claimed");
            Completion {
                lease: c.lease_ref(),
                result: Some(Payload(b"ok".to_vec())),
                now: t1,
                next_run: (*id == ids[3]).then_some(t1 + Duration::hours(1)),
            }
        })
        .collect();
    let out = s.complete(done).await.expect("complete");
    assert_eq!(out, vec![Outcome::Ok; 4]);
    let n1 = us(t1);
    for (i, (id, k)) in ids.iter().zip(&kept).enumerate().take(3) {
        let m: String = raw.hget(key(id), "m").await.expect("state");
        assert_eq!(m, format!("success|1|1|{n1}|{n0}|||{k}||0"), "{id}");
        let er: String = raw.hget(key(id), "er").await.expect("er");
        assert_eq!(er, "");
        let r = s.get_result(id).await.expect("get_result").expect("result");
        assert_eq!(r.status, TaskStatus::Success);
        assert_eq!(r.result.map(|p| p.0), Some(b"ok".to_vec()));
        assert_eq!((r.finished_at, r.error), (t1, None));
        assert_eq!(r.attempts, 1);
        let freed: Option<String> = raw.hget(zkey("uniq"), format!("k{i}")).await.expect("uniq");
        assert_eq!(freed, None, "the unique key is released");
        for k in [
            key(id),
            format!("omniq:{ns}:loc:{id}"),
            zkey(&format!("r:{id}")),
        ] {
            let ttl: i64 = raw.pttl(&k).await.expect("pttl");
            assert!(ttl > 0, "{k} expires: {ttl}");
        }
        for set in ["s:success", "done", "res"] {
            let score: Option<f64> = raw.zscore(zkey(set), id.to_string()).await.expect("zscore");
            assert!(score.is_some(), "{id} in {set}");
        }
        let task = s.get_task(id).await.expect("get").expect("task");
        assert_eq!(task.status, TaskStatus::Success);
    }
    let again = s.get_task(&ids[3]).await.expect("get").expect("task");
    assert_eq!((again.status, again.runs), (TaskStatus::Pending, 0));
    for (set, n) in [
        ("s:running", 0),
        ("leases", 0),
        ("s:success", 3),
        ("s:pending", 1),
    ] {
        let len: i64 = raw.zcard(zkey(set)).await.expect("zcard");
        assert_eq!(len, n, "{set}");
    }
    let _ = raw.quit().await;
    s.close().await.expect("close");
}

/// Enqueue takes a whole batch's locators at once (`MSETNX`, in chunks of 3 000 tasks)
/// and checks ids one by one only when that fails: the conflict names the existing id,
/// and nothing of the batch stays behind — no task, no locator, also when the
/// conflicting id sits in a later chunk than locators already taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_batch_names_the_existing_id_and_leaves_nothing() {
    let url = redis_url();
    let ns = unique_namespace("msetnx");
    let _cleanup = Cleanup(url.clone(), ns.clone());
    let s = storage(&url, &ns).await;
    let t0 = now();
    let existing = task("q", t0);
    let existing_id = existing.id;
    s.enqueue(vec![existing.clone()]).await.expect("enqueue");
    for (len, at) in [(3, 1), (3_500, 3_400)] {
        let keys_before = count_keys(&url, &ns).await.expect("count");
        let mut batch: Vec<Task> = (0..len).map(|_| task("q", t0)).collect();
        let mut copy = task("q", t0);
        copy.id = existing_id;
        batch[at] = copy;
        let fresh: Vec<TaskId> = batch
            .iter()
            .map(|t| t.id)
            .filter(|id| *id != existing_id)
            .collect();
        let err = s.enqueue(batch).await.expect_err("an existing id");
        assert_eq!(err.kind(), StorageErrorKind::Conflict, "{err}");
        assert!(err.to_string().contains(&existing_id.to_string()), "{err}");
        assert_eq!(
            count_keys(&url, &ns).await.expect("count"),
            keys_before,
            "a batch of {len}: no task or locator stays behind"
        );
        // The fresh ids are free: the same tasks enqueue without the existing one.
        let again: Vec<Task> = fresh
            .iter()
            .map(|id| {
                let mut t = task("q", t0);
                t.id = *id;
                t
            })
            .collect();
        s.enqueue(again).await.expect("the fresh ids are free");
        let first = s.get_task(&fresh[0]).await.expect("get");
        assert_eq!(first.map(|t| t.status), Some(TaskStatus::Pending));
    }
    // A batch holding one id twice names it, and stores nothing either.
    let keys_before = count_keys(&url, &ns).await.expect("count");
    let a = task("q", t0);
    let mut twin = task("q", t0);
    twin.id = a.id;
    let err = s
        .enqueue(vec![task("q", t0), a.clone(), twin])
        .await
        .expect_err("an id twice");
    assert_eq!(err.kind(), StorageErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains(&a.id.to_string()), "{err}");
    assert_eq!(count_keys(&url, &ns).await.expect("count"), keys_before);
    s.close().await.expect("close");
}

/// The schedule member an enqueue stores (built by the client) is the one the scripts
/// build for the same task (`rkey`, used when a task is requeued), for extreme
/// priorities and etas too, so claim order is the same whichever wrote it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_members_built_by_the_client_match_the_scripts() {
    let url = redis_url();
    let ns = unique_namespace("rkey");
    let _cleanup = Cleanup(url.clone(), ns.clone());
    let s = storage(&url, &ns).await;
    let t0 = now();
    let mut tasks = Vec::new();
    for (priority, eta) in [
        (0, None),
        (i32::MAX, Some(t0 + Duration::days(3))),
        (
            i32::MIN,
            Some(OffsetDateTime::UNIX_EPOCH - Duration::days(1)),
        ),
        (-7, Some(t0 + Duration::days(365 * 400))),
    ] {
        let mut t = task("q", t0);
        t.priority = priority;
        t.schedule.eta = eta;
        tasks.push(t);
    }
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
    s.enqueue(tasks).await.expect("enqueue");
    let raw = Builder::from_config(Config::from_url(&url).expect("url"))
        .build()
        .expect("client");
    raw.init().await.expect("connect");
    let rkey = "local function clamp(x) if x < 0 then return 0 end if x > 9e15 then return 9e15 end \
                return x end \
                local m = redis.call('HGET', KEYS[1], 'm') \
                local f = {} for p in string.gmatch(m .. '|', '([^|]*)|') do f[#f + 1] = p end \
                return string.format('%010.0f%017.0f%017.0f:', 2147483647 - tonumber(f[9]), \
                  clamp(tonumber(f[8])), clamp(tonumber(f[10]))) .. ARGV[1]";
    for id in ids {
        let key = format!("omniq:{{{ns}:q}}:t:{id}");
        let stored: String = raw.hget(&key, "rk").await.expect("member");
        let scripted: String = raw
            .eval(rkey, vec![key.clone()], vec![id.to_string()])
            .await
            .expect("rkey");
        assert_eq!(stored, scripted, "task {id}");
    }
    let _ = raw.quit().await;
    s.close().await.expect("close");
}

/// A backlog far past what one script call may unpack: 200k due tasks, claimed and
/// completed in batches of 1000 without an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200k_backlog_is_claimed_and_completed() {
    let url = redis_url();
    let ns = unique_namespace("backlog");
    let _cleanup = Cleanup(url.clone(), ns.clone());
    let s = storage(&url, &ns).await;
    let t0 = now();
    let n = 200_000;
    let started = std::time::Instant::now();
    for b in 0..n / 1000 {
        let tasks: Vec<Task> = (0..1000)
            .map(|i| {
                let mut t = task(
                    "bulk",
                    t0 - Duration::seconds(((b * 1000 + i) % 600) as i64),
                );
                t.priority = (i % 3) as i32;
                t
            })
            .collect();
        s.enqueue(tasks).await.expect("enqueue");
    }
    let enqueued = started.elapsed();
    let mut done = 0;
    let started = std::time::Instant::now();
    loop {
        let got = s
            .claim(claim_req(&["bulk"], 1000, t0))
            .await
            .expect("claim");
        if got.is_empty() {
            break;
        }
        let items: Vec<Completion> = got
            .iter()
            .map(|c| Completion {
                lease: c.lease_ref(),
                result: None,
                now: t0,
                next_run: None,
            })
            .collect();
        let out = s.complete(items).await.expect("complete");
        assert!(out.iter().all(|o| *o == Outcome::Ok));
        // Each claim promotes at most 1000 due tasks (earliest eta first) and returns
        // the promoted ones in claim order: priority, then eta, then enqueue order.
        let order: Vec<(std::cmp::Reverse<i32>, OffsetDateTime)> = got
            .iter()
            .map(|c| (std::cmp::Reverse(c.task.priority), c.task.effective_eta()))
            .collect();
        assert!(
            order.is_sorted(),
            "a claim returns its tasks in claim order"
        );
        done += got.len();
    }
    eprintln!(
        "backlog {n}: enqueue {:?}, claim+complete {:?}",
        enqueued,
        started.elapsed()
    );
    assert_eq!(done, n);
    let c = s.counts(Some("bulk")).await.expect("counts");
    assert_eq!((c[0].pending, c[0].success), (0, n as u64));
    s.close().await.expect("close");
}

/// S5: a password never shows in errors or Debug output.
#[tokio::test]
async fn credentials_never_show_in_errors_or_debug() {
    let url = "redis://omniq:hunter2@127.0.0.1:1";
    let err = RedisStorage::builder()
        .url(url)
        .command_timeout(StdDuration::from_millis(500))
        .build()
        .await
        .expect_err("nothing listens on port 1");
    assert_eq!(err.kind(), StorageErrorKind::Unavailable, "{err}");
    let mut text = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(&s.to_string());
        source = s.source();
    }
    assert!(!text.contains("hunter2"), "{text}");
    let builder = RedisStorage::builder().url(url);
    assert!(!format!("{builder:?}").contains("hunter2"));
    let bad = omniq_redis::RedisConfig::from_url("redis://:hunter2@[bad").expect_err("bad url");
    assert!(!bad.to_string().contains("hunter2"), "{bad}");

    // A storage connected with a password (the server has none) keeps it out of Debug.
    let s = storage(&redis_url(), &unique_namespace("dbg")).await;
    assert!(!format!("{s:?}").contains("hunter2"));
    s.close().await.expect("close");
}

/// A claim over several queues of a cluster (several slots) takes the global best.
#[tokio::test]
async fn cluster_claims_over_queues_in_different_slots_keep_global_order() {
    let url = cluster_url();
    let ns = unique_namespace("spread");
    let _cleanup = Cleanup(url.clone(), ns.clone());
    let Ok(s) = RedisStorage::builder()
        .url(&url)
        .namespace(&ns)
        .build()
        .await
    else {
        eprintln!("skipping: no cluster at {url}");
        return;
    };
    assert_eq!(s.topology(), omniq_redis::Topology::Cluster);
    let t0 = now();
    let queues: Vec<String> = (0..6).map(|i| format!("q{i}")).collect();
    let mut tasks = Vec::new();
    for (i, q) in queues.iter().enumerate() {
        for p in 0..3 {
            let mut t = task(q, t0);
            t.priority = (i * 3 + p) as i32;
            tasks.push(t);
        }
    }
    s.enqueue(tasks).await.expect("enqueue");
    let names: Vec<&str> = queues.iter().map(String::as_str).collect();
    let mut seen = Vec::new();
    loop {
        let got = s.claim(claim_req(&names, 4, t0)).await.expect("claim");
        if got.is_empty() {
            break;
        }
        seen.extend(got.iter().map(|c| c.task.priority));
    }
    let want: Vec<i32> = (0..18).rev().collect();
    assert_eq!(seen, want, "global priority order across slots");
    // Release and heartbeat route by locator to each queue's slot.
    let c = s.claim(claim_req(&names, 1, t0)).await.expect("claim");
    assert!(c.is_empty());
    let missing = LeaseRef {
        task_id: TaskId::new(),
        token: omniq_core::LeaseToken(1),
    };
    let out = s.heartbeat(&[missing], t0).await.expect("heartbeat");
    assert_eq!(out, vec![Outcome::NotFound]);
    s.close().await.expect("close");
}

/// The storage works on a caller's own fred client.
#[tokio::test]
async fn an_existing_fred_client_can_be_used() {
    let url = redis_url();
    let ns = unique_namespace("own");
    let _cleanup = Cleanup(url.clone(), ns.clone());
    let client = Builder::from_config(Config::from_url(&url).expect("url"))
        .build()
        .expect("client");
    let s = RedisStorage::builder()
        .client(client.clone())
        .namespace(&ns)
        .build()
        .await
        .expect("build on a client");
    let t0 = now();
    let id = s.enqueue(vec![task("q", t0)]).await.expect("enqueue")[0].id;
    assert!(s.get_task(&id).await.expect("get").is_some());
    s.close().await.expect("close");
    // The caller's client is not closed with the storage.
    let pong: String = client
        .ping(None)
        .await
        .expect("the caller's client still works");
    assert_eq!(pong, "PONG");
    let _ = client.quit().await;
    let arc: Arc<dyn Storage> = Arc::new(storage(&url, &ns).await);
    assert_eq!(arc.backend_name(), "redis");
    arc.close().await.expect("close");
}
