//! Copying a result through the public `Storage` trait.
//!
//! The trait has no call that writes a [`TaskResult`]: results are written by the calls
//! that end a run (`complete`, `fail`, `cancel`). So a task that has a result is copied
//! by **replaying** its last run on the target with the source's own timestamps: enqueue
//! a staged copy, `claim` it at the run's `last_attempt_at`, then `complete` / `fail` /
//! `cancel` it at the result's `finished_at` (plus, for tasks that went back to Pending
//! afterwards, the `reschedule` or retry rounds that brought them there).
//!
//! A plan is only used when simulating it under the contract's rules (the `# Behavior`
//! docs of `Storage`) gives back the source's task and result exactly; otherwise the
//! task is copied without its result and the reason is reported. The verification pass
//! then reads both sides and compares every field, so a backend that departs from the
//! contract shows up there too.

use omniq::backend::FailAction;
use omniq::{Payload, Task, TaskError, TaskResult, TaskStatus};
use time::OffsetDateTime;

/// One storage call of a replay.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// `enqueue([task])` (the staged copy).
    Stage(Box<Task>),
    /// `claim` of the task's queue at `now`.
    Claim { now: OffsetDateTime },
    /// `complete` under the claim's lease.
    Complete {
        now: OffsetDateTime,
        result: Option<Payload>,
        next_run: Option<OffsetDateTime>,
    },
    /// `fail` under the claim's lease.
    Fail {
        now: OffsetDateTime,
        error: TaskError,
        action: FailAction,
    },
    /// `cancel` at `now`.
    Cancel { now: OffsetDateTime },
    /// `reschedule` to `eta` at `now`.
    Reschedule {
        eta: OffsetDateTime,
        now: OffsetDateTime,
    },
}

/// A replay: its steps, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub(crate) steps: Vec<Step>,
}

impl Plan {
    /// The times of its claims (each needs the queue free of other due work).
    pub(crate) fn claim_times(&self) -> impl Iterator<Item = OffsetDateTime> + '_ {
        self.steps.iter().filter_map(|s| match s {
            Step::Claim { now } => Some(*now),
            _ => None,
        })
    }

    /// The latest claim time (plans are run latest first when they leave a live task).
    pub(crate) fn last_claim(&self) -> Option<OffsetDateTime> {
        self.claim_times().max()
    }
}

/// What the target should hold for a source task: the same task, except that a Running
/// task is stored Pending (a task is only Running under a lease; `enqueue` says so).
pub(crate) fn expected(task: &Task) -> Task {
    let mut t = task.clone();
    if t.status == TaskStatus::Running {
        t.status = TaskStatus::Pending;
    }
    t
}

/// A plan that reproduces `task` and `result` exactly, or why there is none.
pub(crate) fn plan(task: &Task, result: &TaskResult) -> Result<Plan, String> {
    let want = expected(task);
    if task.status == TaskStatus::Running {
        return Err("the task is running (stop the workers before migrating); it was copied as pending without its previous result".into());
    }
    let mut candidates = candidates(&want, result);
    // The fewest calls first: a manual retry is one reschedule, not four retry rounds.
    candidates.sort_by_key(|p| p.steps.len());
    if candidates.is_empty() {
        return Err(format!(
            "no sequence of storage calls leads to a {} task with a {} result",
            want.status, result.status
        ));
    }
    let mut last_err = String::new();
    for plan in candidates {
        match simulate(&plan) {
            Ok((t, r))
                if norm_task(&t) == norm_task(&want) && norm_result(&r) == norm_result(result) =>
            {
                return Ok(plan);
            }
            Ok((t, r)) => {
                last_err = format!(
                    "replaying its last run would not reproduce it exactly (differs in {})",
                    differing_fields(&t, &want, Some(&r), Some(result)).join(", ")
                );
            }
            Err(e) => last_err = e,
        }
    }
    Err(last_err)
}

/// The staged copy: the source task, Pending, with the given attempts and error.
fn stage(
    want: &Task,
    attempts: u32,
    error: Option<TaskError>,
    eta: Option<OffsetDateTime>,
) -> Task {
    let mut s = want.clone();
    s.status = TaskStatus::Pending;
    s.attempts = attempts;
    s.error = error;
    s.schedule.eta = eta;
    s
}

/// Retry rounds after a result: `k` claims each followed by a `fail(Retry)`, the last one
/// leaving the task at its eta with its error, attempts and times.
fn retry_rounds(want: &Task, k: u32, steps: &mut Vec<Step>) -> Option<()> {
    let c2 = want.last_attempt_at?;
    let error = want.error.clone()?;
    let eta = want.schedule.eta?;
    for i in 1..=k {
        let last = i == k;
        steps.push(Step::Claim { now: c2 });
        steps.push(Step::Fail {
            now: if last { want.updated_at } else { c2 },
            error: error.clone(),
            action: FailAction::Retry {
                at: if last { eta } else { c2 },
            },
        });
    }
    Some(())
}

fn candidates(want: &Task, r: &TaskResult) -> Vec<Plan> {
    let mut plans = Vec::new();
    let claimed_run = r.last_attempt_at.zip(r.attempts.checked_sub(1));
    match (want.status, r.status) {
        (TaskStatus::Success, TaskStatus::Success) => {
            if let Some((c, before)) = claimed_run {
                plans.push(Plan {
                    steps: vec![
                        Step::Stage(Box::new(stage(want, before, None, want.schedule.eta))),
                        Step::Claim { now: c },
                        Step::Complete {
                            now: r.finished_at,
                            result: r.result.clone(),
                            next_run: None,
                        },
                    ],
                });
            }
        }
        (TaskStatus::Failed, TaskStatus::Failed) => {
            if let (Some((c, before)), Some(e)) = (claimed_run, r.error.clone()) {
                plans.push(Plan {
                    steps: vec![
                        Step::Stage(Box::new(stage(want, before, None, want.schedule.eta))),
                        Step::Claim { now: c },
                        Step::Fail {
                            now: r.finished_at,
                            error: e,
                            action: FailAction::Fail,
                        },
                    ],
                });
            }
        }
        (TaskStatus::Cancelled, TaskStatus::Cancelled) => {
            let mut s = stage(want, r.attempts, r.error.clone(), want.schedule.eta);
            s.last_attempt_at = r.last_attempt_at;
            plans.push(Plan {
                steps: vec![
                    Step::Stage(Box::new(s)),
                    Step::Cancel { now: r.finished_at },
                ],
            });
        }
        (TaskStatus::Pending, TaskStatus::Success) => {
            // An interval task re-armed after a successful run (then maybe retried).
            if let (Some((c, before)), Some(eta)) = (claimed_run, want.schedule.eta) {
                let k = want.attempts;
                let next_run = if k == 0 {
                    Some(eta)
                } else {
                    want.last_attempt_at
                };
                let mut steps = vec![
                    Step::Stage(Box::new(stage(want, before, None, Some(c)))),
                    Step::Claim { now: c },
                    Step::Complete {
                        now: r.finished_at,
                        result: r.result.clone(),
                        next_run,
                    },
                ];
                if k == 0 || retry_rounds(want, k, &mut steps).is_some() {
                    plans.push(Plan { steps });
                }
            }
        }
        (TaskStatus::Pending, TaskStatus::Failed) => {
            if let (Some((c, before)), Some(e), Some(eta)) =
                (claimed_run, r.error.clone(), want.schedule.eta)
            {
                // An interval task whose run failed for good and moved to its next slot.
                let k = want.attempts;
                let at = if k == 0 {
                    Some(eta)
                } else {
                    want.last_attempt_at
                };
                if let Some(at) = at {
                    let mut steps = vec![
                        Step::Stage(Box::new(stage(want, before, None, Some(c)))),
                        Step::Claim { now: c },
                        Step::Fail {
                            now: r.finished_at,
                            error: e.clone(),
                            action: FailAction::NextRun { at },
                        },
                    ];
                    if k == 0 || retry_rounds(want, k, &mut steps).is_some() {
                        plans.push(Plan { steps });
                    }
                }
                // A failed task retried by hand (`reschedule`), then maybe retried again.
                if let Some(k) = want.attempts.checked_sub(r.attempts) {
                    let (to, at) = if k == 0 {
                        (Some(eta), Some(want.updated_at))
                    } else {
                        (want.last_attempt_at, want.last_attempt_at)
                    };
                    if let (Some(to), Some(at)) = (to, at) {
                        let mut steps = vec![
                            Step::Stage(Box::new(stage(want, before, None, Some(c)))),
                            Step::Claim { now: c },
                            Step::Fail {
                                now: r.finished_at,
                                error: e,
                                action: FailAction::Fail,
                            },
                            Step::Reschedule { eta: to, now: at },
                        ];
                        if k == 0 || retry_rounds(want, k, &mut steps).is_some() {
                            plans.push(Plan { steps });
                        }
                    }
                }
            }
        }
        _ => {}
    }
    plans
}

/// Runs a plan on a model of one task under the contract's rules; the task and result
/// it ends with, or why a step would be refused.
pub(crate) fn simulate(plan: &Plan) -> Result<(Task, TaskResult), String> {
    let mut task: Option<Task> = None;
    let mut result: Option<TaskResult> = None;
    for step in &plan.steps {
        match step {
            Step::Stage(t) => task = Some(t.as_ref().clone()),
            Step::Claim { now } => {
                let t = task.as_mut().ok_or("claim before stage")?;
                if t.status != TaskStatus::Pending || t.effective_eta() > *now {
                    return Err(format!(
                        "its last run started ({}) before it was due ({})",
                        crate::view::rfc3339(*now),
                        crate::view::rfc3339(t.effective_eta())
                    ));
                }
                t.status = TaskStatus::Running;
                t.attempts += 1;
                t.last_attempt_at = Some(*now);
                t.updated_at = *now;
            }
            Step::Complete {
                now,
                result: payload,
                next_run,
            } => {
                let t = task.as_mut().ok_or("complete before stage")?;
                running(t)?;
                result = Some(TaskResult {
                    task_id: t.id,
                    status: TaskStatus::Success,
                    result: payload.clone(),
                    error: None,
                    finished_at: *now,
                    attempts: t.attempts,
                    last_attempt_at: t.last_attempt_at,
                });
                t.error = None;
                t.updated_at = *now;
                match next_run {
                    Some(at) => {
                        t.status = TaskStatus::Pending;
                        t.schedule.eta = Some(*at);
                        t.attempts = 0;
                    }
                    None => t.status = TaskStatus::Success,
                }
            }
            Step::Fail { now, error, action } => {
                let t = task.as_mut().ok_or("fail before stage")?;
                running(t)?;
                t.error = Some(error.clone());
                t.updated_at = *now;
                let stored = TaskResult {
                    task_id: t.id,
                    status: TaskStatus::Failed,
                    result: None,
                    error: Some(error.clone()),
                    finished_at: *now,
                    attempts: t.attempts,
                    last_attempt_at: t.last_attempt_at,
                };
                match action {
                    FailAction::Retry { at } => {
                        t.status = TaskStatus::Pending;
                        t.schedule.eta = Some(*at);
                    }
                    FailAction::NextRun { at } => {
                        result = Some(stored);
                        t.status = TaskStatus::Pending;
                        t.schedule.eta = Some(*at);
                        t.attempts = 0;
                    }
                    FailAction::Fail => {
                        result = Some(stored);
                        t.status = TaskStatus::Failed;
                    }
                    // Plans never defer: a deferral leaves no trace to reproduce.
                    FailAction::Defer { .. } => return Err("a plan never defers".into()),
                }
            }
            Step::Cancel { now } => {
                let t = task.as_mut().ok_or("cancel before stage")?;
                if !matches!(t.status, TaskStatus::Pending | TaskStatus::Failed) {
                    return Err(format!("a {} task is not cancelled at once", t.status));
                }
                t.status = TaskStatus::Cancelled;
                t.updated_at = *now;
                result = Some(TaskResult {
                    task_id: t.id,
                    status: TaskStatus::Cancelled,
                    result: None,
                    error: t.error.clone(),
                    finished_at: *now,
                    attempts: t.attempts,
                    last_attempt_at: t.last_attempt_at,
                });
            }
            Step::Reschedule { eta, now } => {
                let t = task.as_mut().ok_or("reschedule before stage")?;
                if t.status.is_terminal() {
                    return Err(format!("a {} task cannot be rescheduled", t.status));
                }
                t.status = TaskStatus::Pending;
                t.schedule.eta = Some(*eta);
                t.updated_at = *now;
            }
        }
    }
    match (task, result) {
        (Some(t), Some(r)) => Ok((t, r)),
        _ => Err("the plan stores no result".into()),
    }
}

fn running(t: &Task) -> Result<(), String> {
    if t.status == TaskStatus::Running {
        Ok(())
    } else {
        Err(format!("a {} task has no run to end", t.status))
    }
}

/// A time at the precision every backend keeps (the microsecond).
pub(crate) fn micros(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
}

fn norm_error(e: &mut TaskError) {
    e.timestamp = micros(e.timestamp);
}

/// A task with its times at microsecond precision, for comparisons across backends.
pub(crate) fn norm_task(t: &Task) -> Task {
    let mut t = t.clone();
    t.created_at = micros(t.created_at);
    t.updated_at = micros(t.updated_at);
    t.last_attempt_at = t.last_attempt_at.map(micros);
    t.schedule.eta = t.schedule.eta.map(micros);
    if let Some(e) = t.error.as_mut() {
        norm_error(e);
    }
    t
}

/// A result with its times at microsecond precision.
pub(crate) fn norm_result(r: &TaskResult) -> TaskResult {
    let mut r = r.clone();
    r.finished_at = micros(r.finished_at);
    r.last_attempt_at = r.last_attempt_at.map(micros);
    if let Some(e) = r.error.as_mut() {
        norm_error(e);
    }
    r
}

/// The names of the fields in which two tasks (and results) differ, for reports.
pub(crate) fn differing_fields(
    got: &Task,
    want: &Task,
    got_result: Option<&TaskResult>,
    want_result: Option<&TaskResult>,
) -> Vec<String> {
    let mut out = Vec::new();
    let a = serde_json::to_value(norm_task(got)).unwrap_or_default();
    let b = serde_json::to_value(norm_task(want)).unwrap_or_default();
    diff_objects("", &a, &b, &mut out);
    match (got_result, want_result) {
        (Some(x), Some(y)) => {
            let a = serde_json::to_value(norm_result(x)).unwrap_or_default();
            let b = serde_json::to_value(norm_result(y)).unwrap_or_default();
            diff_objects("result.", &a, &b, &mut out);
        }
        (None, Some(_)) => out.push("result (missing)".into()),
        (Some(_), None) => out.push("result (unexpected)".into()),
        (None, None) => {}
    }
    out
}

fn diff_objects(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    match (a.as_object(), b.as_object()) {
        (Some(x), Some(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (va, vb) = (x.get(k), y.get(k));
                if va != vb {
                    out.push(format!("{prefix}{k} ({} vs {})", short(va), short(vb)));
                }
            }
        }
        _ if a != b => out.push(format!("{prefix}value")),
        _ => {}
    }
}

fn short(v: Option<&serde_json::Value>) -> String {
    let s = v.map(|v| v.to_string()).unwrap_or_else(|| "absent".into());
    crate::view::ellipsize(&s, 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use omniq::{ErrorType, TaskId};
    use time::Duration;

    fn at(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + s).expect("time")
    }

    fn task(status: TaskStatus) -> Task {
        let mut t = Task::new("f", Payload(vec![1, 2, 3]));
        t.id = TaskId::new();
        t.created_at = at(0);
        t.updated_at = at(0);
        t.status = status;
        t
    }

    fn result(t: &Task, status: TaskStatus) -> TaskResult {
        TaskResult {
            task_id: t.id,
            status,
            result: None,
            error: None,
            finished_at: t.updated_at,
            attempts: t.attempts,
            last_attempt_at: t.last_attempt_at,
        }
    }

    #[test]
    fn a_succeeded_task_replays_as_claim_then_complete() {
        let mut t = task(TaskStatus::Success);
        t.attempts = 2;
        t.last_attempt_at = Some(at(10));
        t.updated_at = at(12);
        let mut r = result(&t, TaskStatus::Success);
        r.result = Some(Payload(b"42".to_vec()));
        let p = plan(&t, &r).expect("plan");
        assert_eq!(p.steps.len(), 3);
        assert_eq!(p.steps[1], Step::Claim { now: at(10) });
        let (st, sr) = simulate(&p).expect("sim");
        assert_eq!((st, sr), (t, r));
    }

    #[test]
    fn a_failed_task_retried_by_hand_replays_with_a_reschedule() {
        let mut t = task(TaskStatus::Pending);
        t.attempts = 4;
        t.last_attempt_at = Some(at(40));
        t.error = Some(TaskError::new(ErrorType::Runtime, "boom"));
        let mut r = result(&t, TaskStatus::Failed);
        r.finished_at = at(41);
        r.error = t.error.clone();
        t.updated_at = at(100);
        t.schedule.eta = Some(at(100));
        let p = plan(&t, &r).expect("plan");
        assert!(
            matches!(p.steps.last(), Some(Step::Reschedule { .. })),
            "{p:?}"
        );
    }

    #[test]
    fn an_interval_task_rearmed_after_success_then_retried_once() {
        let mut t = task(TaskStatus::Pending);
        t.schedule.interval = Some(Duration::minutes(1));
        let mut r = result(&t, TaskStatus::Success);
        r.attempts = 1;
        r.last_attempt_at = Some(at(60));
        r.finished_at = at(61);
        // The next slot ran at 120 and failed with a retry due at 150.
        t.attempts = 1;
        t.last_attempt_at = Some(at(120));
        t.updated_at = at(121);
        t.schedule.eta = Some(at(150));
        t.error = Some(TaskError::new(ErrorType::Network, "refused"));
        let p = plan(&t, &r).expect("plan");
        assert_eq!(p.claim_times().count(), 2);
        assert_eq!(p.last_claim(), Some(at(120)));
    }

    #[test]
    fn impossible_shapes_are_refused_with_a_reason() {
        let mut t = task(TaskStatus::Success);
        t.attempts = 1;
        t.last_attempt_at = Some(at(5));
        t.schedule.eta = Some(at(50)); // ran before it was due
        let r = result(&t, TaskStatus::Success);
        assert!(
            plan(&t, &r)
                .expect_err("early")
                .contains("before it was due")
        );
        let running = task(TaskStatus::Running);
        let r = result(&running, TaskStatus::Success);
        assert!(plan(&running, &r).expect_err("running").contains("running"));
        let c = task(TaskStatus::Cancelled);
        assert!(plan(&c, &result(&c, TaskStatus::Success)).is_err());
    }
}
