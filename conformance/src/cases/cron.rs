//! Cron schedules: the backend stores a task's cron schedule as written; the runtime
//! computes each next slot and hands it over like an interval's. The runtime-level cases
//! drive real worker pools on a manual clock across slots, downtime and daylight-saving
//! changes (they read tasks only, never results, so result TTLs never interfere).

use super::{Case, base_now, case, claim_one, enqueue_one, get, grouped, task};
use crate::check::{CaseError, Ctx};
use omniq_core::{Completion, CronSchedule, Outcome, Storage};
use std::sync::Arc;
use time::Duration;

/// The group these cases are reported under.
pub(super) const GROUP: &str = "Cron schedules";

pub(super) fn cases() -> Vec<Case> {
    grouped(
        GROUP,
        vec![
            case!(
                cron_schedule_round_trips,
                "A task's cron schedule (expression and time zone) is stored as written and kept across runs",
                ["M3", "M9", "T1", "T4"]
            ),
            case!(
                cron_task_runs_each_slot_under_one_id,
                "A cron task keeps its id and runs once at each slot of its expression",
                ["R5", "M3"],
                Runtime
            ),
            case!(
                cron_after_downtime_runs_once_then_resumes_on_schedule,
                "After downtime a cron task runs once for all the missed slots, then on its next slot",
                ["R5"],
                Runtime
            ),
            case!(
                cron_follows_daylight_saving_time,
                "A skipped local time runs once at the next valid time; a repeated one runs once",
                ["R5"],
                Runtime
            ),
            case!(
                cron_retries_do_not_shift_the_series,
                "A retried run of a cron task does not move its later slots",
                ["R2", "R5"],
                Runtime
            ),
            case!(
                cancel_ends_a_cron_series,
                "Cancelling a cron task ends its series: it is never run again",
                ["T9", "R5"],
                Runtime
            ),
            case!(
                two_pools_never_fire_one_cron_slot_twice,
                "Two worker pools on one storage run each slot of a cron task exactly once",
                ["R5", "T2", "S1"],
                Runtime
            ),
        ],
    )
}

async fn cron_schedule_round_trips(s: Arc<dyn Storage>) -> Result<(), CaseError> {
    let now = base_now();
    let mut t = task("m.cron", now);
    let cron = CronSchedule {
        expr: "0 9 * * 1-5".into(),
        tz: "Europe/Berlin".into(),
    };
    t.schedule.cron = Some(cron.clone());
    let id = enqueue_one(&*s, t).await?;
    ensure_eq!(
        get(&*s, id).await?.schedule.cron,
        Some(cron.clone()),
        "the stored cron schedule"
    );
    let c = claim_one(&*s, id, now).await?;
    ensure_eq!(
        c.task.schedule.cron,
        Some(cron.clone()),
        "the claimed task's cron schedule"
    );
    let next = now + Duration::days(1);
    let out = s
        .complete(vec![Completion {
            lease: c.lease_ref(),
            result: None,
            now,
            next_run: Some(next),
        }])
        .await
        .ctx("complete with next_run")?;
    ensure_eq!(out, vec![Outcome::Ok], "complete");
    let after = get(&*s, id).await?;
    ensure_eq!(after.schedule.eta, Some(next), "eta after the run");
    ensure_eq!(
        after.schedule.cron,
        Some(cron),
        "the cron schedule after a run"
    );
    Ok(())
}

pub(super) use imp::*;

#[cfg(feature = "runtime")]
mod imp {
    use crate::check::CaseError;
    use omniq_core::{Backoff, ManualClock, Storage, TaskId, TaskStatus};
    use omniq_runtime::{AsyncTaskQueue, AsyncWorkerPool, HandlerError};
    use std::sync::{Arc, Mutex};
    use std::time::Duration as StdDuration;
    use time::macros::datetime;
    use time::{Duration, OffsetDateTime};

    type CaseResult = Result<(), CaseError>;

    fn fail(msg: impl Into<String>) -> CaseError {
        CaseError::new(msg)
    }

    fn rt<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> Result<T, CaseError> {
        r.map_err(|e| fail(format!("{what} failed: {e}")))
    }

    /// A queue on a manual clock, and the manual-clock times at which `func` ran.
    struct Rig {
        clock: Arc<ManualClock>,
        queue: AsyncTaskQueue,
        runs: Arc<Mutex<Vec<OffsetDateTime>>>,
    }

    impl Rig {
        fn new(storage: Arc<dyn Storage>, start: OffsetDateTime) -> Self {
            let clock = Arc::new(ManualClock::new(start));
            let queue = AsyncTaskQueue::new(storage).with_clock(Arc::clone(&clock) as _);
            Self {
                clock,
                queue,
                runs: Arc::default(),
            }
        }

        /// A started pool (see [`Rig::pool`]).
        fn started(&self, fail_first: usize) -> Result<AsyncWorkerPool, CaseError> {
            let p = self.pool(fail_first)?;
            rt(p.start(), "start")?;
            Ok(p)
        }

        /// Enqueue `cron.job` on the series `expr` in `tz`.
        async fn enqueue_cron(
            &self,
            expr: &str,
            tz: &str,
        ) -> Result<omniq_core::TaskId, CaseError> {
            rt(
                self.queue.enqueue("cron.job", &()).cron(expr, tz).await,
                "enqueue",
            )
        }

        /// A pool that runs `cron.job`, failing the first `fail_first` runs.
        fn pool(&self, fail_first: usize) -> Result<AsyncWorkerPool, CaseError> {
            let mut p = rt(
                AsyncWorkerPool::builder()
                    .queue(self.queue.clone())
                    .concurrency(2)
                    .poll_interval(StdDuration::from_millis(20))
                    .backoff(Backoff::Fixed(Duration::seconds(1)))
                    .build(),
                "building the worker pool",
            )?;
            let (runs, clock) = (Arc::clone(&self.runs), Arc::clone(&self.clock));
            p.register("cron.job", move |(): ()| {
                let (runs, clock) = (Arc::clone(&runs), Arc::clone(&clock));
                async move {
                    let n = {
                        let mut r = runs.lock().unwrap_or_else(|p| p.into_inner());
                        r.push(omniq_core::Clock::now(&*clock));
                        r.len()
                    };
                    if n <= fail_first {
                        return Err(HandlerError::msg("this run fails"));
                    }
                    Ok(())
                }
            });
            Ok(p)
        }

        fn runs(&self) -> Vec<OffsetDateTime> {
            self.runs.lock().unwrap_or_else(|p| p.into_inner()).clone()
        }

        /// Waits (real time, bounded) until `n` runs happened and the task is Pending
        /// again at a later eta than `after` (its run is fully recorded).
        async fn wait_runs(
            &self,
            id: &TaskId,
            n: usize,
            after: Option<OffsetDateTime>,
        ) -> Result<OffsetDateTime, CaseError> {
            let deadline = tokio::time::Instant::now() + StdDuration::from_secs(20);
            loop {
                let t = rt(self.queue.get_task(id).await, "get_task")?;
                let t = t.ok_or_else(|| fail(format!("task {id} vanished")))?;
                let recorded = t.status == TaskStatus::Pending
                    && t.schedule.eta.is_some_and(|e| after.is_none_or(|a| e > a));
                if self.runs().len() >= n && recorded {
                    return t.schedule.eta.ok_or_else(|| fail("no eta"));
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(fail(format!(
                        "expected {n} run(s) then Pending after {after:?}; got runs {:?}, task {:?} at {:?}",
                        self.runs(),
                        t.status,
                        t.schedule.eta
                    )));
                }
                tokio::time::sleep(StdDuration::from_millis(10)).await;
            }
        }

        /// Waits a little (real time) and checks no further run happened.
        async fn no_more_runs(&self, n: usize, why: &str) -> CaseResult {
            tokio::time::sleep(StdDuration::from_millis(150)).await;
            let runs = self.runs();
            if runs.len() != n {
                return Err(fail(format!("{why}: expected {n} run(s), got {runs:?}")));
            }
            Ok(())
        }
    }

    async fn stop(p: &AsyncWorkerPool) -> CaseResult {
        rt(p.stop(StdDuration::from_secs(5)).await, "stop").map(drop)
    }

    pub(in crate::cases) async fn cron_task_runs_each_slot_under_one_id(
        storage: Arc<dyn Storage>,
    ) -> CaseResult {
        let rig = Rig::new(storage, datetime!(2027-01-04 09:59:30 UTC));
        let p = rig.started(0)?;
        let id = rig.enqueue_cron("0 * * * *", "UTC").await?;
        let first = rt(rig.queue.get_task(&id).await, "get_task")?.and_then(|t| t.schedule.eta);
        if first != Some(datetime!(2027-01-04 10:00 UTC)) {
            return Err(fail(format!("first slot: {first:?}")));
        }
        rig.no_more_runs(0, "before the first slot").await?;
        rig.clock.set(datetime!(2027-01-04 10:00 UTC));
        let next = rig.wait_runs(&id, 1, first).await?;
        rig.clock.set(next);
        let after = rig.wait_runs(&id, 2, Some(next)).await?;
        stop(&p).await?;
        if rig.runs()
            != vec![
                datetime!(2027-01-04 10:00 UTC),
                datetime!(2027-01-04 11:00 UTC),
            ]
            || after != datetime!(2027-01-04 12:00 UTC)
        {
            return Err(fail(format!("runs {:?}, next {after}", rig.runs())));
        }
        Ok(())
    }

    pub(in crate::cases) async fn cron_after_downtime_runs_once_then_resumes_on_schedule(
        storage: Arc<dyn Storage>,
    ) -> CaseResult {
        let rig = Rig::new(storage, datetime!(2027-01-04 09:59:30 UTC));
        let id = rt(
            rig.queue
                .enqueue("cron.job", &())
                .cron("0 * * * *", "UTC")
                .await,
            "enqueue",
        )?;
        // No worker for five slots, then one starts at 15:30.
        rig.clock.set(datetime!(2027-01-04 15:30 UTC));
        let p = rig.started(0)?;
        let next = rig
            .wait_runs(&id, 1, Some(datetime!(2027-01-04 10:00 UTC)))
            .await?;
        rig.no_more_runs(1, "the missed slots run once, not once each")
            .await?;
        stop(&p).await?;
        if next != datetime!(2027-01-04 16:00 UTC) {
            return Err(fail(format!("next slot after the catch-up run: {next}")));
        }
        Ok(())
    }

    pub(in crate::cases) async fn cron_follows_daylight_saving_time(
        storage: Arc<dyn Storage>,
    ) -> CaseResult {
        // Europe/Berlin: 2027-03-28 02:00 → 03:00 (02:30 does not exist);
        // 2027-10-31 03:00 → 02:00 (02:30 happens twice).
        for (start, expected) in [
            (
                datetime!(2027-03-27 12:00 UTC),
                [
                    datetime!(2027-03-28 01:00 UTC), // 03:00 CEST, after the gap
                    datetime!(2027-03-29 00:30 UTC), // 02:30 CEST
                ],
            ),
            (
                datetime!(2027-10-30 12:00 UTC),
                [
                    datetime!(2027-10-31 00:30 UTC), // the first 02:30 (CEST)
                    datetime!(2027-11-01 01:30 UTC), // next day 02:30 CET, not the repeat
                ],
            ),
        ] {
            let rig = Rig::new(Arc::clone(&storage), start);
            let p = rig.started(0)?;
            let id = rig.enqueue_cron("30 2 * * *", "Europe/Berlin").await?;
            let first = rt(rig.queue.get_task(&id).await, "get_task")?.and_then(|t| t.schedule.eta);
            if first != Some(expected[0]) {
                return Err(fail(format!(
                    "first slot from {start}: {first:?}, expected {}",
                    expected[0]
                )));
            }
            rig.clock.set(expected[0]);
            let next = rig.wait_runs(&id, 1, first).await?;
            rt(rig.queue.cancel(&id).await, "cancel")?;
            stop(&p).await?;
            if next != expected[1] {
                return Err(fail(format!(
                    "slot after {}: {next}, expected {}",
                    expected[0], expected[1]
                )));
            }
        }
        Ok(())
    }

    pub(in crate::cases) async fn cron_retries_do_not_shift_the_series(
        storage: Arc<dyn Storage>,
    ) -> CaseResult {
        let rig = Rig::new(storage, datetime!(2027-01-04 09:59:30 UTC));
        let p = rig.started(1)?;
        let id = rt(
            rig.queue
                .enqueue("cron.job", &())
                .cron("0 * * * *", "UTC")
                .max_retries(2)
                .await,
            "enqueue",
        )?;
        rig.clock.set(datetime!(2027-01-04 10:00 UTC));
        // The failed run retries one (manual) second later.
        let retry_at = rig
            .wait_runs(&id, 1, Some(datetime!(2027-01-04 10:00 UTC)))
            .await?;
        if retry_at != datetime!(2027-01-04 10:00:01 UTC) {
            return Err(fail(format!("retry at {retry_at}")));
        }
        rig.clock.set(retry_at);
        let next = rig.wait_runs(&id, 2, Some(retry_at)).await?;
        stop(&p).await?;
        if next != datetime!(2027-01-04 11:00 UTC) {
            return Err(fail(format!(
                "the slot after a retried run moved: {next}, expected 11:00"
            )));
        }
        Ok(())
    }

    pub(in crate::cases) async fn cancel_ends_a_cron_series(
        storage: Arc<dyn Storage>,
    ) -> CaseResult {
        let rig = Rig::new(storage, datetime!(2027-01-04 09:59:30 UTC));
        let p = rig.started(0)?;
        let id = rig.enqueue_cron("0 * * * *", "UTC").await?;
        rig.clock.set(datetime!(2027-01-04 10:00 UTC));
        let next = rig
            .wait_runs(&id, 1, Some(datetime!(2027-01-04 10:00 UTC)))
            .await?;
        rt(rig.queue.cancel(&id).await, "cancel")?;
        rig.clock.set(next);
        rig.no_more_runs(1, "after cancel").await?;
        rig.clock.set(next + Duration::hours(3));
        rig.no_more_runs(1, "hours after cancel").await?;
        stop(&p).await?;
        let status = rt(rig.queue.get_task(&id).await, "get_task")?.map(|t| t.status);
        if status != Some(TaskStatus::Cancelled) {
            return Err(fail(format!("status after cancel: {status:?}")));
        }
        Ok(())
    }

    pub(in crate::cases) async fn two_pools_never_fire_one_cron_slot_twice(
        storage: Arc<dyn Storage>,
    ) -> CaseResult {
        let rig = Rig::new(storage, datetime!(2027-01-04 09:59:30 UTC));
        let (a, b) = (rig.pool(0)?, rig.pool(0)?);
        rt(a.start(), "start a")?;
        rt(b.start(), "start b")?;
        let id = rt(
            rig.queue
                .enqueue("cron.job", &())
                .cron("* * * * *", "UTC")
                .await,
            "enqueue",
        )?;
        let mut slot = datetime!(2027-01-04 10:00 UTC);
        for n in 1..=5 {
            rig.clock.set(slot);
            slot = rig.wait_runs(&id, n, Some(slot)).await?;
        }
        rig.no_more_runs(5, "each slot once").await?;
        stop(&a).await?;
        stop(&b).await?;
        Ok(())
    }
}

/// Without the runtime the runtime-level cases are reported `skipped: requires runtime`.
#[cfg(not(feature = "runtime"))]
mod imp {
    use crate::check::CaseError;
    use omniq_core::Storage;
    use std::sync::Arc;

    macro_rules! stubs {
        ($($id:ident),*) => {$(
            pub(in crate::cases) async fn $id(_: Arc<dyn Storage>) -> Result<(), CaseError> {
                Err(CaseError::new("omniq-conformance was built without its `runtime` feature"))
            }
        )*};
    }
    stubs!(
        cron_task_runs_each_slot_under_one_id,
        cron_after_downtime_runs_once_then_resumes_on_schedule,
        cron_follows_daylight_saving_time,
        cron_retries_do_not_shift_the_series,
        cancel_ends_a_cron_series,
        two_pools_never_fire_one_cron_slot_twice
    );
}
