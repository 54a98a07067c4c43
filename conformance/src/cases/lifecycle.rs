//! Instances: namespace isolation, `close`, and wake-up hints.
//!
//! Each case's rule is written in the `# Behavior` section of the method it checks
//! (`crates/omniq-core/src/storage.rs`), which names the case.

use super::{
    Case, LEASE, at_second, base_now, case, claim, claim_from, claim_none, claim_one,
    claimed_and_flagged, complete, enqueue, enqueue_one, fail_with, grouped, pair_case, task,
    task_on,
};
use crate::check::{CaseError, Ctx};
use omniq_core::{
    ClaimRequest, Completion, ErrorType, FailAction, Failure, Outcome, Storage, TaskError,
    TaskFilter, TaskId, Wake,
};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

/// The group these cases are reported under.
pub(super) const GROUP: &str = "Contract: namespaces, close and wake-ups";

pub(super) fn cases() -> Vec<Case> {
    grouped(
        GROUP,
        vec![
            pair_case!(
                namespaces_are_isolated,
                "Two namespaces never see each other's tasks, results or counts",
                ["T14"]
            ),
            case!(
                close_makes_later_calls_fail_closed,
                "After close(), calls fail with a Closed error",
                ["T12", "T15"]
            ),
            case!(
                close_fails_every_operation,
                "After close(), every operation fails with a Closed error, whatever its arguments",
                ["T12", "T15"]
            ),
            case!(
                close_twice_is_ok,
                "close() is idempotent: a second close returns Ok",
                ["T12"]
            ),
            case!(
                subscribe_wakes_on_enqueue,
                "subscribe() delivers a Work wake-up for the queue after an enqueue",
                ["T13"],
                PushWakeup
            ),
            case!(
                subscribe_wakes_on_finish,
                "subscribe() delivers a Finished wake-up after a completion",
                ["T13"],
                PushWakeup
            ),
            case!(
                wake_on_release_and_retry,
                "subscribe() delivers Work after a release, and both Work and Finished after a retry",
                ["T13", "R6", "T5"],
                PushWakeup
            ),
            case!(
                wake_on_interval_rearm,
                "subscribe() delivers a Work wake-up when complete() re-arms an interval task",
                ["T13", "R5"],
                PushWakeup
            ),
            case!(
                wake_on_reschedule,
                "subscribe() delivers a Work wake-up after a reschedule",
                ["T13", "T7"],
                PushWakeup
            ),
            case!(
                wake_on_cancel,
                "subscribe() delivers a Finished wake-up when cancel() ends a task",
                ["T13", "T9"],
                PushWakeup
            ),
            case!(
                wake_on_release_of_cancel_requested_task,
                "subscribe() delivers a Finished wake-up when release() ends a flagged task",
                ["T13", "T9", "R6"],
                PushWakeup
            ),
            case!(
                wake_on_claim_ending_cancel_requested_lease,
                "subscribe() delivers a Finished wake-up when a claim ends a flagged task whose lease expired",
                ["T13", "T9", "T2"],
                PushWakeup
            ),
            case!(
                subscribe_after_close_still_returns_a_receiver,
                "subscribe() answers as before after close(): a push_wakeup backend still returns a receiver",
                ["T12", "T13"],
                PushWakeup
            ),
        ],
    )
}

async fn close_twice_is_ok(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    s.close().await.ctx("first close")?;
    s.close().await.ctx("second close")?;
    Ok(())
}

async fn namespaces_are_isolated(
    a: Arc<dyn Storage>,
    b: Arc<dyn Storage>,
) -> Result<(), CaseError> {
    let now = base_now();
    let in_a = enqueue(&*a, (0..3).map(|i| task(&format!("a.{i}"), now)).collect()).await?;
    let in_b = enqueue_one(&*b, task("b.0", now)).await?;

    for id in &in_a {
        ensure!(
            b.get_task(id).await.ctx("get_task")?.is_none(),
            "namespace B sees A's task {id}"
        );
        ensure_kind!(
            b.reschedule(id, now, now).await,
            NotFound,
            "B reschedules A's task"
        );
        ensure_kind!(b.cancel(id, now).await, NotFound, "B cancels A's task");
    }
    ensure!(
        a.get_task(&in_b).await.ctx("get_task")?.is_none(),
        "namespace A sees B's task"
    );

    let counts_b = b.counts(None).await.ctx("counts")?;
    let total_b: u64 = counts_b.iter().map(|c| c.total()).sum();
    ensure_eq!(total_b, 1, "B's counts cover only B's task ({counts_b:?})");
    let listed_b = b
        .list_tasks(TaskFilter::default())
        .await
        .ctx("list_tasks")?;
    let ids_b: Vec<TaskId> = listed_b.items.iter().map(|t| t.id).collect();
    ensure_eq!(ids_b, vec![in_b], "B's listing");

    // B's claimer takes only B's task; A's stay Pending.
    let claimed = claim(&*b, 10, now).await?;
    let ids: Vec<TaskId> = claimed.iter().map(|c| c.task.id).collect();
    ensure_eq!(ids, vec![in_b], "B claims only its own task");
    let done = complete(&*b, claimed[0].lease_ref(), now, Some(b"b")).await?;
    ensure_eq!(done, Outcome::Ok, "B completes its task");
    ensure!(
        a.get_result(&in_b).await.ctx("get_result")?.is_none(),
        "A sees B's result"
    );
    let counts_a = a.counts(None).await.ctx("counts")?;
    let pending_a: u64 = counts_a.iter().map(|c| c.pending).sum();
    let total_a: u64 = counts_a.iter().map(|c| c.total()).sum();
    ensure!(
        pending_a == 3 && total_a == 3,
        "A's counts are its own three pending tasks, got {counts_a:?}"
    );

    // B's wake-ups, if it has any, never carry A's hints.
    if let Some(mut rx) = b.subscribe() {
        drain_wakes(&mut rx);
        enqueue_one(&*a, task_on("iso-a", "a.x", now)).await?;
        enqueue_one(&*b, task_on("iso-b", "b.x", now)).await?;
        // B's own hint ends the wait; A's enqueue came first, so a channel shared
        // between namespaces shows A's hint before it.
        let mut seen_a = false;
        wait_for_wake_where(&mut rx, "Work { queue: \"iso-b\" }", |w| {
            seen_a |= *w
                == Wake::Work {
                    queue: "iso-a".into(),
                };
            *w == Wake::Work {
                queue: "iso-b".into(),
            }
        })
        .await?;
        ensure!(!seen_a, "namespace B received A's wake-up for queue iso-a");
    }
    Ok(())
}

async fn close_makes_later_calls_fail_closed(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.f", now)).await?;
    s.close().await.ctx("close")?;
    ensure_kind!(s.get_task(&id).await, Closed, "get_task after close");
    ensure_kind!(
        s.enqueue(vec![task("m.g", now)]).await,
        Closed,
        "enqueue after close"
    );
    ensure_kind!(claim_req(&*s, now).await, Closed, "claim after close");
    ensure_kind!(s.counts(None).await, Closed, "counts after close");
    ensure_kind!(
        s.next_due(&[omniq_core::DEFAULT_QUEUE.to_string()]).await,
        Closed,
        "next_due after close"
    );
    Ok(())
}

async fn claim_req(
    s: &dyn Storage,
    now: OffsetDateTime,
) -> Result<Vec<omniq_core::Claimed>, omniq_core::StorageError> {
    s.claim(ClaimRequest {
        queues: vec![omniq_core::DEFAULT_QUEUE.to_string()],
        limit: 1,
        now,
        lease: LEASE,
    })
    .await
}

/// Waits (bounded, no polling) for a wake-up equal to `want`.
async fn wait_for_wake(
    rx: &mut tokio::sync::broadcast::Receiver<Wake>,
    want: &Wake,
) -> Result<(), CaseError> {
    wait_for_wake_where(rx, &format!("{want:?}"), |w| w == want).await
}

/// Waits (bounded, no polling) for a wake-up for which `matches` holds; `what` names it
/// in the failure.
async fn wait_for_wake_where(
    rx: &mut tokio::sync::broadcast::Receiver<Wake>,
    what: &str,
    mut matches: impl FnMut(&Wake) -> bool,
) -> Result<(), CaseError> {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(w) if matches(&w) => return Ok(()),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Err(CaseError::new(format!(
                        "the wake-up channel closed before {what}"
                    )));
                }
            }
        }
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), wait).await {
        Ok(r) => r,
        Err(_) => Err(CaseError::new(format!("no {what} wake-up within 5 s"))),
    }
}

/// Waits (bounded, no polling) until every wake-up in `want` has been delivered, in any
/// order.
async fn wait_for_wakes(
    rx: &mut tokio::sync::broadcast::Receiver<Wake>,
    want: &[Wake],
) -> Result<(), CaseError> {
    let mut missing: Vec<&Wake> = want.iter().collect();
    let wait = async {
        while !missing.is_empty() {
            match rx.recv().await {
                Ok(w) => missing.retain(|m| **m != w),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Err(CaseError::new(format!(
                        "the wake-up channel closed before {missing:?}"
                    )));
                }
            }
        }
        Ok(())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), wait).await {
        Ok(r) => r,
        Err(_) => Err(CaseError::new(format!(
            "not every wake-up of {want:?} arrived within 5 s"
        ))),
    }
}

/// A receiver with nothing pending: subscribed now, earlier hints drained.
fn fresh_receiver(s: &dyn Storage) -> Result<tokio::sync::broadcast::Receiver<Wake>, CaseError> {
    let mut rx = some!(s.subscribe(), "subscribe() of a push_wakeup backend");
    drain_wakes(&mut rx);
    Ok(rx)
}

/// Discards the wake-ups already delivered, so a later wait sees only new ones.
fn drain_wakes(rx: &mut tokio::sync::broadcast::Receiver<Wake>) {
    use tokio::sync::broadcast::error::TryRecvError;
    loop {
        match rx.try_recv() {
            Ok(_) | Err(TryRecvError::Lagged(_)) => {}
            Err(TryRecvError::Empty | TryRecvError::Closed) => return,
        }
    }
}

async fn subscribe_wakes_on_enqueue(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let mut rx = some!(s.subscribe(), "subscribe() of a push_wakeup backend");
    let now = base_now();
    enqueue_one(&*s, task_on("wake-q", "m.f", now)).await?;
    wait_for_wake(
        &mut rx,
        &Wake::Work {
            queue: "wake-q".into(),
        },
    )
    .await
}

async fn subscribe_wakes_on_finish(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.f", now)).await?;
    let c = claim_one(&*s, id, now).await?;
    let mut rx = some!(s.subscribe(), "subscribe() of a push_wakeup backend");
    ensure_eq!(
        complete(&*s, c.lease_ref(), now, None).await?,
        Outcome::Ok,
        "complete"
    );
    wait_for_wake(&mut rx, &Wake::Finished { task_id: id }).await
}

async fn close_fails_every_operation(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.f", now)).await?;
    let c = claim_one(&*s, id, now).await?;
    let lease = c.lease_ref();
    s.close().await.ctx("close")?;

    ensure_kind!(
        s.enqueue(vec![task("m.g", now)]).await,
        Closed,
        "enqueue after close"
    );
    ensure_kind!(claim_req(&*s, now).await, Closed, "claim after close");
    ensure_kind!(
        s.heartbeat(&[lease], now + Duration::minutes(1)).await,
        Closed,
        "heartbeat after close"
    );
    ensure_kind!(
        s.complete(vec![Completion {
            lease,
            result: None,
            now,
            next_run: None,
        }])
        .await,
        Closed,
        "complete after close"
    );
    ensure_kind!(
        s.fail(vec![Failure {
            lease,
            error: at_second(TaskError::new(ErrorType::Runtime, "x"), now),
            action: FailAction::Fail,
            now,
        }])
        .await,
        Closed,
        "fail after close"
    );
    ensure_kind!(
        s.release(&[lease], now).await,
        Closed,
        "release after close"
    );
    ensure_kind!(s.get_task(&id).await, Closed, "get_task after close");
    ensure_kind!(
        s.reschedule(&id, now, now).await,
        Closed,
        "reschedule after close"
    );
    ensure_kind!(s.get_result(&id).await, Closed, "get_result after close");
    ensure_kind!(s.cancel(&id, now).await, Closed, "cancel after close");
    ensure_kind!(
        s.list_tasks(TaskFilter::default()).await,
        Closed,
        "list_tasks after close"
    );
    ensure_kind!(s.counts(None).await, Closed, "counts after close");
    ensure_kind!(
        s.next_due(&[omniq_core::DEFAULT_QUEUE.to_string()]).await,
        Closed,
        "next_due after close"
    );
    ensure_kind!(
        s.purge_results(now).await,
        Closed,
        "purge_results after close"
    );
    // Closed wins over every other answer, an invalid name's Config error included.
    let bad = || vec!["bad queue!".to_string()];
    ensure_kind!(
        s.enqueue(vec![task_on("bad queue!", "m.g", now)]).await,
        Closed,
        "enqueue on an invalid queue name after close"
    );
    ensure_kind!(
        s.claim(ClaimRequest {
            queues: bad(),
            limit: 1,
            now,
            lease: LEASE,
        })
        .await,
        Closed,
        "claim from an invalid queue name after close"
    );
    ensure_kind!(
        s.next_due(&bad()).await,
        Closed,
        "next_due of an invalid queue name after close"
    );
    ensure_kind!(
        s.list_tasks(TaskFilter {
            queue: Some("bad queue!".into()),
            ..TaskFilter::default()
        })
        .await,
        Closed,
        "list_tasks of an invalid queue name after close"
    );
    ensure_kind!(
        s.counts(Some("bad queue!")).await,
        Closed,
        "counts of an invalid queue name after close"
    );
    // Closing is idempotent: a second close may be Ok or Closed, so it is not asserted.
    let _ = s.close().await;
    Ok(())
}

async fn wake_on_release_and_retry(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let queue = "wake-r";
    let id = enqueue_one(&*s, task_on(queue, "m.f", now)).await?;
    // Subscribed after the enqueue, so the enqueue's own Work wake-up is not seen.
    let mut rx = some!(s.subscribe(), "subscribe() of a push_wakeup backend");
    let got = claim_from(&*s, queue, 1, now).await?;
    ensure_eq!(got.len(), 1, "claim of the enqueued task");
    drain_wakes(&mut rx);
    let out = s.release(&[got[0].lease_ref()], now).await.ctx("release")?;
    ensure_eq!(out, vec![Outcome::Ok], "release");
    wait_for_wake(
        &mut rx,
        &Wake::Work {
            queue: queue.into(),
        },
    )
    .await?;

    let again = claim_from(&*s, queue, 1, now).await?;
    ensure_eq!(again.len(), 1, "claim of the released task");
    drain_wakes(&mut rx);
    let out = fail_with(
        &*s,
        again[0].lease_ref(),
        FailAction::Retry { at: now },
        now,
        "retry me",
    )
    .await?;
    ensure_eq!(out, Outcome::Ok, "fail with Retry");
    // A retry is both: the run's outcome is stored (waiters re-check) and the task is
    // back on its queue.
    wait_for_wakes(
        &mut rx,
        &[
            Wake::Finished { task_id: id },
            Wake::Work {
                queue: queue.into(),
            },
        ],
    )
    .await
}

async fn wake_on_interval_rearm(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let queue = "wake-i";
    let mut t = task_on(queue, "m.tick", now);
    t.schedule.interval = Some(Duration::hours(1));
    enqueue_one(&*s, t).await?;
    let got = claim_from(&*s, queue, 1, now).await?;
    ensure_eq!(got.len(), 1, "claim of the interval task");
    let mut rx = fresh_receiver(&*s)?;
    let out = s
        .complete(vec![Completion {
            lease: got[0].lease_ref(),
            result: None,
            now,
            next_run: Some(now + Duration::hours(1)),
        }])
        .await
        .ctx("complete with next_run")?;
    ensure_eq!(out, vec![Outcome::Ok], "complete with next_run");
    wait_for_wake(
        &mut rx,
        &Wake::Work {
            queue: queue.into(),
        },
    )
    .await
}

async fn wake_on_reschedule(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let queue = "wake-s";
    let mut t = task_on(queue, "m.later", now);
    t.schedule.eta = Some(now + Duration::hours(1));
    let id = enqueue_one(&*s, t).await?;
    let mut rx = fresh_receiver(&*s)?;
    s.reschedule(&id, now, now).await.ctx("reschedule")?;
    wait_for_wake(
        &mut rx,
        &Wake::Work {
            queue: queue.into(),
        },
    )
    .await
}

async fn wake_on_cancel(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let id = enqueue_one(&*s, task("m.f", now)).await?;
    let mut rx = fresh_receiver(&*s)?;
    s.cancel(&id, now).await.ctx("cancel")?;
    wait_for_wake(&mut rx, &Wake::Finished { task_id: id }).await
}

async fn wake_on_release_of_cancel_requested_task(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let (id, c) = claimed_and_flagged(&*s, task("m.f", now), now).await?;
    let mut rx = fresh_receiver(&*s)?;
    let out = s.release(&[c.lease_ref()], now).await.ctx("release")?;
    ensure_eq!(out, vec![Outcome::Ok], "release of the flagged task");
    wait_for_wake(&mut rx, &Wake::Finished { task_id: id }).await
}

async fn wake_on_claim_ending_cancel_requested_lease(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let (id, _c) = claimed_and_flagged(&*s, task("m.f", now), now).await?;
    let mut rx = fresh_receiver(&*s)?;
    claim_none(
        &*s,
        now + LEASE,
        "the flagged task whose lease expired is not redelivered",
    )
    .await?;
    wait_for_wake(&mut rx, &Wake::Finished { task_id: id }).await
}

async fn subscribe_after_close_still_returns_a_receiver(
    s: Arc<dyn Storage>,
) -> Result<(), CaseError> {
    some!(s.subscribe(), "subscribe() of a push_wakeup backend");
    s.close().await.ctx("close")?;
    some!(
        s.subscribe(),
        "subscribe() after close() of a push_wakeup backend"
    );
    Ok(())
}
