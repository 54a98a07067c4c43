//! Runtime-level cases: the guide's "Retry logic works with your storage
//! backend", "Interval tasks reschedule correctly", "Worker creates TaskError on
//! exceptions" and "Test both interfaces work correctly" lines, run through a real
//! [`omniq_runtime::AsyncWorkerPool`] and [`omniq_runtime::AsyncTaskQueue`] over the backend under test.
//!
//! Unlike the storage cases these use the wall clock (the worker's), with short back-offs
//! and poll intervals; they wait on results with `wait_result` or a bounded condition
//! poll, never for a fixed time they then assert on.

use crate::Case;
use crate::cases::{case, grouped};
use imp::*;

/// The runtime-level cases, appended after the storage cases, reported as the guide's
/// worker checklist.
pub fn cases() -> Vec<Case> {
    grouped(
        "Worker",
        vec![
            case!(
                retry_logic_works_with_backend,
                "Retry logic works with your storage backend",
                ["R2", "T5", "M5"],
                Runtime
            ),
            case!(
                retryable_failure_is_pending_with_later_eta,
                "A retryable failure is persisted as Pending with a later eta, attempts and TaskError kept, and no intermediate result",
                ["R1", "R2", "T5"],
                Runtime
            ),
            case!(
                task_backoff_overrides_the_workers,
                "A task's own back-off policy wins over the worker's (per-task retry policy)",
                ["R2", "M1"],
                Runtime
            ),
            case!(
                non_retryable_error_stops_at_once,
                "A non-retryable TaskError stops retrying at once",
                ["R2", "M5"],
                Runtime
            ),
            case!(
                retries_exhaust_into_failed,
                "Retry logic functions correctly with TaskError (max_retries 2 ⇒ 3 runs, then Failed)",
                ["R2", "M5"],
                Runtime
            ),
            case!(
                interval_tasks_reschedule_without_drift,
                "Interval tasks reschedule correctly",
                ["R5", "M3", "T4"],
                Runtime
            ),
            case!(
                worker_creates_task_error_on_exceptions,
                "Worker creates TaskError on exceptions",
                ["R3", "R4", "R6", "M5", "M6"],
                Runtime
            ),
            case!(
                both_worker_interfaces_process_tasks,
                "Test both interfaces work correctly",
                ["R6"],
                Runtime
            ),
            case!(
                get_result_waits_for_completion,
                "get_result with wait returns the final result once the task has run",
                ["R1", "T8"],
                Runtime
            ),
        ],
    )
}

/// The bodies, run through the real runtime (the `runtime` feature, on by default).
#[cfg(feature = "runtime")]
mod imp {
    use crate::check::CaseError;
    use omniq_core::{Backoff, ErrorType, Storage, TaskError, TaskStatus};
    use omniq_runtime::{AsyncTaskQueue, AsyncWorkerPool, HandlerError, TaskHandler};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    const WAIT: Duration = Duration::from_secs(20);

    type CaseResult = Result<(), CaseError>;

    fn fail(msg: impl Into<String>) -> CaseError {
        CaseError::new(msg)
    }

    fn rt<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> Result<T, CaseError> {
        r.map_err(|e| fail(format!("{what} failed: {e}")))
    }

    /// The cases' pool: quick polling and a 30 ms retry back-off.
    fn pool(queue: &AsyncTaskQueue) -> Result<AsyncWorkerPool, CaseError> {
        pool_with(queue, 4, Backoff::Fixed(time::Duration::milliseconds(30)))
    }

    fn pool_with(
        queue: &AsyncTaskQueue,
        concurrency: usize,
        backoff: Backoff,
    ) -> Result<AsyncWorkerPool, CaseError> {
        rt(
            AsyncWorkerPool::builder()
                .queue(queue.clone())
                .concurrency(concurrency)
                .poll_interval(Duration::from_millis(25))
                .backoff(backoff)
                .build(),
            "building the worker pool",
        )
    }

    async fn stop(p: &AsyncWorkerPool) -> CaseResult {
        rt(p.stop(Duration::from_secs(10)).await, "stopping the pool").map(|_| ())
    }

    /// A retryable failure goes back to Pending with a later eta, then succeeds; the
    /// attempts and the retry's TaskError are persisted by the backend.
    pub(super) async fn retry_logic_works_with_backend(storage: Arc<dyn Storage>) -> CaseResult {
        let queue = AsyncTaskQueue::new(Arc::clone(&storage));
        let mut p = pool(&queue)?;
        let calls = Arc::new(AtomicU32::new(0));
        let c = Arc::clone(&calls);
        p.register("flaky", move |n: u32| {
            let c = Arc::clone(&c);
            async move {
                let call = c.fetch_add(1, Ordering::SeqCst);
                if call == 0 {
                    return Err(HandlerError::from(
                        TaskError::new(ErrorType::Network, "connection reset")
                            .with_context("call", call),
                    ));
                }
                Ok::<_, HandlerError>(n * 2)
            }
        });
        rt(p.start(), "start")?;
        let id = rt(
            queue.enqueue("flaky", &21u32).max_retries(3).await,
            "enqueue",
        )?;
        let res = rt(queue.wait_result(&id, WAIT).await, "wait_result");
        stop(&p).await?;
        let res = res?;
        if res.status != TaskStatus::Success {
            return Err(fail(format!(
                "expected Success after one retry, got {:?} ({:?})",
                res.status, res.error
            )));
        }
        let value: u32 = rt(res.output(), "decoding result")?;
        if value != 42 {
            return Err(fail(format!("result {value}, expected 42")));
        }
        let task =
            rt(storage.get_task(&id).await, "get_task")?.ok_or_else(|| fail("task missing"))?;
        if task.attempts != 2 || res.attempts != 2 {
            return Err(fail(format!(
                "attempts task={} result={}, expected 2",
                task.attempts, res.attempts
            )));
        }
        if calls.load(Ordering::SeqCst) != 2 {
            return Err(fail("handler should have run exactly twice"));
        }
        Ok(())
    }

    /// The intermediate state after a retryable failure is Pending with a later eta,
    /// attempts kept, the TaskError stored on the task, and no result yet.
    pub(super) async fn retryable_failure_is_pending_with_later_eta(
        storage: Arc<dyn Storage>,
    ) -> CaseResult {
        let queue = AsyncTaskQueue::new(Arc::clone(&storage));
        let mut p = pool_with(&queue, 1, Backoff::Fixed(time::Duration::hours(1)))?;
        p.register("always_fails", |_: ()| async move {
            Err::<(), _>(HandlerError::from(
                TaskError::new(ErrorType::Resource, "db down").with_context("db", "primary"),
            ))
        });
        let before = time::OffsetDateTime::now_utc();
        let id = rt(
            queue.enqueue("always_fails", &()).max_retries(2).await,
            "enqueue",
        )?;
        rt(p.start(), "start")?;
        // Wait until the first run has been recorded.
        let deadline = tokio::time::Instant::now() + WAIT;
        let task = loop {
            let t =
                rt(storage.get_task(&id).await, "get_task")?.ok_or_else(|| fail("task missing"))?;
            if t.status == TaskStatus::Pending && t.attempts == 1 && t.error.is_some() {
                break t;
            }
            if tokio::time::Instant::now() > deadline {
                stop(&p).await?;
                return Err(fail(format!(
                    "task never came back to Pending with its error: {t:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        stop(&p).await?;
        let eta = task.schedule.eta.ok_or_else(|| fail("retry has no eta"))?;
        if eta < before + time::Duration::minutes(59) {
            return Err(fail(format!(
                "retry eta {eta} is not ~1h later than {before}"
            )));
        }
        let err = task
            .error
            .as_ref()
            .ok_or_else(|| fail("no error on task"))?;
        if err.error_type != ErrorType::Resource
            || err.context.get("db") != Some(&serde_json::json!("primary"))
        {
            return Err(fail(format!(
                "TaskError not persisted with its context: {err:?}"
            )));
        }
        if err.retry_count != 0 || err.max_retries != 2 {
            return Err(fail(format!(
                "retry_count/max_retries = {}/{}, expected 0/2",
                err.retry_count, err.max_retries
            )));
        }
        if rt(queue.get_result(&id).await, "get_result")?.is_some() {
            return Err(fail(
                "get_result returned an intermediate failure while a retry is pending",
            ));
        }
        Ok(())
    }

    /// A task's own back-off wins over the worker's: with the pool's back-off at one
    /// hour, a task enqueued with `Backoff::None` is retried at once and succeeds.
    pub(super) async fn task_backoff_overrides_the_workers(
        storage: Arc<dyn Storage>,
    ) -> CaseResult {
        let queue = AsyncTaskQueue::new(Arc::clone(&storage));
        let mut p = pool_with(&queue, 1, Backoff::Fixed(time::Duration::hours(1)))?;
        let calls = Arc::new(AtomicU32::new(0));
        let c = Arc::clone(&calls);
        p.register("flaky", move |_: ()| {
            let c = Arc::clone(&c);
            async move {
                if c.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err(HandlerError::msg("first run fails"));
                }
                Ok::<_, HandlerError>(())
            }
        });
        rt(p.start(), "start")?;
        let id = rt(
            queue
                .enqueue("flaky", &())
                .max_retries(1)
                .backoff(Backoff::None)
                .await,
            "enqueue",
        )?;
        let res = rt(queue.wait_result(&id, WAIT).await, "wait_result");
        stop(&p).await?;
        let res = res?;
        if res.status != TaskStatus::Success || res.attempts != 2 {
            return Err(fail(format!(
                "expected Success on the immediate retry, got {:?} after {} attempt(s)",
                res.status, res.attempts
            )));
        }
        Ok(())
    }

    /// A non-retryable TaskError stops at once: Failed after one attempt.
    pub(super) async fn non_retryable_error_stops_at_once(storage: Arc<dyn Storage>) -> CaseResult {
        let queue = AsyncTaskQueue::new(Arc::clone(&storage));
        let mut p = pool(&queue)?;
        p.register("validate", |_: ()| async move {
            Err::<(), _>(HandlerError::from(
                TaskError::new(ErrorType::Validation, "bad input").with_retryable(false),
            ))
        });
        rt(p.start(), "start")?;
        let id = rt(
            queue.enqueue("validate", &()).max_retries(5).await,
            "enqueue",
        )?;
        let res = rt(queue.wait_result(&id, WAIT).await, "wait_result");
        stop(&p).await?;
        let res = res?;
        let task =
            rt(storage.get_task(&id).await, "get_task")?.ok_or_else(|| fail("task missing"))?;
        if res.status != TaskStatus::Failed
            || task.status != TaskStatus::Failed
            || task.attempts != 1
        {
            return Err(fail(format!(
                "expected Failed after 1 attempt, got {:?} after {}",
                task.status, task.attempts
            )));
        }
        Ok(())
    }

    /// Retries are bounded: max_retries = 2 ⇒ 3 runs, then Failed with the last error.
    pub(super) async fn retries_exhaust_into_failed(storage: Arc<dyn Storage>) -> CaseResult {
        let queue = AsyncTaskQueue::new(Arc::clone(&storage));
        let mut p = pool(&queue)?;
        let calls = Arc::new(AtomicU32::new(0));
        let c = Arc::clone(&calls);
        p.register("boom", move |_: ()| {
            let c = Arc::clone(&c);
            async move {
                let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                Err::<(), _>(HandlerError::msg(format!("failure {n}")))
            }
        });
        rt(p.start(), "start")?;
        let id = rt(queue.enqueue("boom", &()).max_retries(2).await, "enqueue")?;
        let res = rt(queue.wait_result(&id, WAIT).await, "wait_result");
        stop(&p).await?;
        let res = res?;
        let err = res
            .error
            .as_ref()
            .ok_or_else(|| fail("final result has no error"))?;
        if res.status != TaskStatus::Failed
            || res.attempts != 3
            || calls.load(Ordering::SeqCst) != 3
        {
            return Err(fail(format!(
                "expected Failed after 3 runs, got {:?} after {} ({} calls)",
                res.status,
                res.attempts,
                calls.load(Ordering::SeqCst)
            )));
        }
        if err.message != "failure 3" || err.retry_count != 2 || err.can_retry() {
            return Err(fail(format!(
                "final error should be the last run's: {err:?}"
            )));
        }
        Ok(())
    }

    /// An interval task keeps its id, runs repeatedly, and each next eta lies on the
    /// original slot lattice (no drift) — also after a retried run; cancel ends the series.
    pub(super) async fn interval_tasks_reschedule_without_drift(
        storage: Arc<dyn Storage>,
    ) -> CaseResult {
        let queue = AsyncTaskQueue::new(Arc::clone(&storage));
        let mut p = pool(&queue)?;
        let runs = Arc::new(AtomicU32::new(0));
        let r = Arc::clone(&runs);
        p.register("tick", move |_: ()| {
            let r = Arc::clone(&r);
            async move {
                let run = r.fetch_add(1, Ordering::SeqCst) + 1;
                if run == 2 {
                    // One retryable failure mid-series: its retry must not shift later slots.
                    return Err(HandlerError::msg("transient"));
                }
                Ok::<_, HandlerError>(run)
            }
        });
        let interval = time::Duration::milliseconds(150);
        // Whole milliseconds, so backends storing micro- or millisecond times keep it exactly.
        let start = time::OffsetDateTime::now_utc() + time::Duration::milliseconds(50);
        let start = start
            .replace_millisecond(start.millisecond())
            .unwrap_or(start);
        let id = rt(
            queue
                .enqueue("tick", &())
                .eta(start)
                .interval(interval)
                .await,
            "enqueue",
        )?;
        rt(p.start(), "start")?;
        let deadline = tokio::time::Instant::now() + WAIT;
        while runs.load(Ordering::SeqCst) < 4 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let result = rt(storage.get_result(&id).await, "get_result")?;
        rt(queue.cancel(&id).await, "cancel")?;
        let at_cancel = runs.load(Ordering::SeqCst);
        // The worker keeps polling for three more intervals: the series must not go on.
        tokio::time::sleep(Duration::from_millis(450)).await;
        let after = runs.load(Ordering::SeqCst);
        stop(&p).await?;
        if at_cancel < 4 {
            return Err(fail(
                "interval task did not run 4 times (one of them retried)",
            ));
        }
        if after > at_cancel + 1 {
            return Err(fail(format!(
                "the series went on after cancel: {at_cancel} runs at cancel, {after} later"
            )));
        }
        let result = result.ok_or_else(|| fail("no latest result after 3 runs"))?;
        if result.status != TaskStatus::Success {
            return Err(fail(format!("latest run result {:?}", result.status)));
        }
        let task =
            rt(storage.get_task(&id).await, "get_task")?.ok_or_else(|| fail("task missing"))?;
        if task.status != TaskStatus::Cancelled && task.status != TaskStatus::Success {
            return Err(fail(format!(
                "cancel did not end the series: {:?}",
                task.status
            )));
        }
        if task.schedule.interval != Some(interval) {
            return Err(fail("interval lost"));
        }
        if let Some(eta) = task.schedule.eta {
            let offset = (eta - start).whole_milliseconds();
            if offset <= 0 || offset % interval.whole_milliseconds() != 0 {
                return Err(fail(format!(
                    "eta {eta} drifted off the {start} + k·{interval} lattice (offset {offset} ms)"
                )));
            }
        } else {
            return Err(fail("interval task has no eta"));
        }
        Ok(())
    }

    /// The worker turns a handler error, a panic, a timeout, an unknown handler (after a
    /// grace period of deferrals that do not count as attempts) and an undecodable
    /// payload into TaskErrors of the right type — and keeps running.
    pub(super) async fn worker_creates_task_error_on_exceptions(
        storage: Arc<dyn Storage>,
    ) -> CaseResult {
        let queue = AsyncTaskQueue::new(Arc::clone(&storage));
        // A task without a handler is handed back (deferred, its attempt not counted) for
        // a short grace period here, then fails: both sides of a rolling deploy.
        let mut p = rt(
            AsyncWorkerPool::builder()
                .queue(queue.clone())
                .concurrency(4)
                .poll_interval(Duration::from_millis(25))
                .unknown_handler_grace(Duration::from_millis(300))
                .unknown_handler_delay(Duration::from_millis(50))
                .build(),
            "building the worker pool",
        )?;
        p.register("io_error", |_: ()| async move {
            Err::<(), _>(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "refused",
            ))
        });
        p.register("panics", |_: ()| async move {
            if true {
                panic!("handler exploded (expected: this case checks that panics are caught)");
            }
            Ok::<(), HandlerError>(())
        });
        p.register("slow", |_: ()| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<(), HandlerError>(())
        });
        p.register(
            "typed",
            |_: Vec<u64>| async move { Ok::<(), HandlerError>(()) },
        );
        p.register("ok", |x: u8| async move { Ok::<u8, HandlerError>(x) });
        rt(p.start(), "start")?;
        let io = rt(
            queue.enqueue("io_error", &()).max_retries(0).await,
            "enqueue",
        )?;
        let panics = rt(queue.enqueue("panics", &()).max_retries(0).await, "enqueue")?;
        let slow = rt(
            queue
                .enqueue("slow", &())
                .max_retries(0)
                .timeout(time::Duration::milliseconds(100))
                .await,
            "enqueue",
        )?;
        let unknown = rt(queue.enqueue("not.registered", &()).await, "enqueue")?;
        let undecodable = rt(queue.enqueue("typed", &"not a list").await, "enqueue")?;
        let expect = [
            (io, ErrorType::Network),
            (panics, ErrorType::Panic),
            (slow, ErrorType::Timeout),
            (unknown, ErrorType::Validation),
            (undecodable, ErrorType::Decode),
        ];
        let mut problems = Vec::new();
        for (id, ty) in expect {
            match queue.wait_result(&id, WAIT).await {
                Ok(r) => match (&r.status, &r.error) {
                    (TaskStatus::Failed, Some(e)) if e.error_type == ty => {
                        if id == unknown && r.attempts != 1 {
                            problems.push(format!(
                                "the unhandled task's deferrals were counted: attempts {}",
                                r.attempts
                            ));
                        }
                        let names_io = e
                            .exception_type
                            .as_deref()
                            .is_some_and(|t| t.starts_with("std::io::") && t.ends_with("Error"));
                        if ty == ErrorType::Network && !names_io {
                            problems.push(format!(
                                "io error's exception_type is {:?}",
                                e.exception_type
                            ));
                        }
                    }
                    other => problems.push(format!("{ty}: got {other:?}")),
                },
                Err(e) => problems.push(format!("{ty}: {e}")),
            }
        }
        // Enqueued only once every failure is recorded, so it proves the worker lived on.
        let after = rt(queue.enqueue("ok", &7u8).await, "enqueue")?;
        let ok = queue.wait_result(&after, WAIT).await;
        stop(&p).await?;
        match ok {
            Ok(r) if r.status == TaskStatus::Success => {}
            other => problems.push(format!(
                "worker did not keep running after the failures: {other:?}"
            )),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(fail(problems.join("; ")))
        }
    }

    /// Both worker interfaces (queue, and legacy storage) process tasks, and so does the
    /// trait form of a handler.
    pub(super) async fn both_worker_interfaces_process_tasks(
        storage: Arc<dyn Storage>,
    ) -> CaseResult {
        struct Double;
        impl omniq_runtime::TaskType for Double {
            const NAME: &'static str = "double";
            type Args = i64;
            type Output = i64;
        }
        impl TaskHandler for Double {
            type Task = Double;
            async fn run(&self, x: i64, _ctx: omniq_runtime::TaskCtx) -> Result<i64, HandlerError> {
                Ok(x * 2)
            }
        }
        let queue = AsyncTaskQueue::new(Arc::clone(&storage));
        #[allow(deprecated)]
        let legacy = AsyncWorkerPool::builder()
            .storage(Arc::clone(&storage))
            .poll_interval(Duration::from_millis(25))
            .build();
        let mut legacy = rt(legacy, "legacy constructor")?;
        let mut new = pool(&queue)?;
        legacy.register_handler(Double);
        new.register_handler(Double);
        for (name, p) in [("queue", &new), ("storage", &legacy)] {
            rt(p.start(), "start")?;
            let id = rt(queue.enqueue("double", &21i64).await, "enqueue")?;
            let r = rt(queue.wait_result(&id, WAIT).await, "wait_result");
            stop(p).await?;
            let r = r?;
            let v: i64 = rt(r.output(), "decode")?;
            if v != 42 {
                return Err(fail(format!("{name} interface: result {v}")));
            }
        }
        Ok(())
    }

    /// `wait_result` waits for a task that is not done yet and returns its final result.
    pub(super) async fn get_result_waits_for_completion(storage: Arc<dyn Storage>) -> CaseResult {
        let queue = AsyncTaskQueue::new(Arc::clone(&storage));
        let id = rt(queue.enqueue("later", &5u32).await, "enqueue")?;
        if rt(queue.get_result(&id).await, "get_result")?.is_some() {
            return Err(fail("result exists before any run"));
        }
        let q2 = queue.clone();
        let waiter = tokio::spawn(async move { q2.wait_result(&id, WAIT).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        if waiter.is_finished() {
            return Err(fail("wait_result returned before the task ran"));
        }
        let mut p = pool(&queue)?;
        p.register(
            "later",
            |x: u32| async move { Ok::<u32, HandlerError>(x + 1) },
        );
        rt(p.start(), "start")?;
        let r = rt(waiter.await, "join")?;
        stop(&p).await?;
        let r = rt(r, "wait_result")?;
        if r.status != TaskStatus::Success {
            return Err(fail(format!("status {:?}", r.status)));
        }
        Ok(())
    }
}

/// Without the runtime the cases are reported `skipped: requires runtime` (their
/// capability); these bodies never run.
#[cfg(not(feature = "runtime"))]
mod imp {
    use crate::check::CaseError;
    use omniq_core::Storage;
    use std::sync::Arc;

    pub(super) async fn retry_logic_works_with_backend(
        _: Arc<dyn Storage>,
    ) -> Result<(), CaseError> {
        Err(CaseError::new(
            "omniq-conformance was built without its `runtime` feature",
        ))
    }
    pub(super) async fn retryable_failure_is_pending_with_later_eta(
        _: Arc<dyn Storage>,
    ) -> Result<(), CaseError> {
        Err(CaseError::new(
            "omniq-conformance was built without its `runtime` feature",
        ))
    }
    pub(super) async fn task_backoff_overrides_the_workers(
        _: Arc<dyn Storage>,
    ) -> Result<(), CaseError> {
        Err(CaseError::new(
            "omniq-conformance was built without its `runtime` feature",
        ))
    }
    pub(super) async fn non_retryable_error_stops_at_once(
        _: Arc<dyn Storage>,
    ) -> Result<(), CaseError> {
        Err(CaseError::new(
            "omniq-conformance was built without its `runtime` feature",
        ))
    }
    pub(super) async fn retries_exhaust_into_failed(_: Arc<dyn Storage>) -> Result<(), CaseError> {
        Err(CaseError::new(
            "omniq-conformance was built without its `runtime` feature",
        ))
    }
    pub(super) async fn interval_tasks_reschedule_without_drift(
        _: Arc<dyn Storage>,
    ) -> Result<(), CaseError> {
        Err(CaseError::new(
            "omniq-conformance was built without its `runtime` feature",
        ))
    }
    pub(super) async fn worker_creates_task_error_on_exceptions(
        _: Arc<dyn Storage>,
    ) -> Result<(), CaseError> {
        Err(CaseError::new(
            "omniq-conformance was built without its `runtime` feature",
        ))
    }
    pub(super) async fn both_worker_interfaces_process_tasks(
        _: Arc<dyn Storage>,
    ) -> Result<(), CaseError> {
        Err(CaseError::new(
            "omniq-conformance was built without its `runtime` feature",
        ))
    }
    pub(super) async fn get_result_waits_for_completion(
        _: Arc<dyn Storage>,
    ) -> Result<(), CaseError> {
        Err(CaseError::new(
            "omniq-conformance was built without its `runtime` feature",
        ))
    }
}
