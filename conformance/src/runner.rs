//! Running cases: one programmatically ([`run_case`]), all of them as libtest trials
//! with a checklist and JSON report ([`run`]), or one per `#[test]` (the macro).

use crate::cases::{Body, Case, CaseFuture, find};
use crate::report::{CaseReport, CaseStatus, Report};
use crate::{StorageFactory, cases};
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use omniq_core::{Storage, StorageErrorKind};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A case that runs longer than this fails (a hung backend must not hang CI).
const CASE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the first `create()` may take before the service counts as unavailable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// How one case ended, with the reason for anything but a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseOutcome {
    /// Every expectation held.
    Passed,
    /// An expectation failed; the message names it and the values seen.
    Failed(String),
    /// Not run, and why (`requires unique_keys`, `requires broken instance`,
    /// `service unavailable: …`).
    Skipped(String),
}

impl CaseOutcome {
    /// The report status.
    pub fn status(&self) -> CaseStatus {
        match self {
            Self::Passed => CaseStatus::Passed,
            Self::Failed(_) => CaseStatus::Failed,
            Self::Skipped(_) => CaseStatus::Skipped,
        }
    }

    /// The reason; empty when passed.
    pub fn reason(&self) -> &str {
        match self {
            Self::Passed => "",
            Self::Failed(r) | Self::Skipped(r) => r,
        }
    }

    /// True for [`CaseOutcome::Passed`].
    pub fn is_passed(&self) -> bool {
        matches!(self, Self::Passed)
    }

    /// True for [`CaseOutcome::Failed`].
    pub fn is_failed(&self) -> bool {
        matches!(self, Self::Failed(_))
    }
}

/// Whether `OMNIQ_REQUIRE_SERVICES` asks for unreachable services to be failures.
fn require_services() -> bool {
    std::env::var("OMNIQ_REQUIRE_SERVICES")
        .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
        .unwrap_or(false)
}

/// Runs the case `id` with fresh instances from `factory` (the suite's own tests
/// use this to run targeted cases against faulty backends).
///
/// Must be awaited on a multi-thread tokio runtime (the concurrency case spawns
/// claimers). A `create()` error of kind `Unavailable` gives `Skipped`, or `Failed`
/// under `OMNIQ_REQUIRE_SERVICES=1`; an unknown id gives `Failed`.
pub async fn run_case<F: StorageFactory + ?Sized>(factory: &F, id: &str) -> CaseOutcome {
    match find(id) {
        Some(case) => run_one(factory, case, !require_services()).await,
        None => CaseOutcome::Failed(format!("no conformance case named {id:?}")),
    }
}

/// Runs the case `id` on one given instance: for cases that need a single fresh
/// instance, `storage` must be empty; for the "raises `StorageError`" cases, it is the
/// broken instance. Cases that need two instances fail here: use [`run_case`].
pub async fn run_case_on(storage: Arc<dyn Storage>, id: &str) -> CaseOutcome {
    let Some(case) = find(id) else {
        return CaseOutcome::Failed(format!("no conformance case named {id:?}"));
    };
    match case.body {
        Body::Fresh(body) => {
            if let Some(skip) = missing_capability(case, &*storage) {
                return skip;
            }
            execute(body(storage)).await
        }
        Body::Broken(body) => execute(body(storage)).await,
        Body::Pair(_) => CaseOutcome::Failed(format!(
            "case {id} needs two instances from a factory; use run_case"
        )),
    }
}

fn missing_capability(case: &Case, storage: &dyn Storage) -> Option<CaseOutcome> {
    let cap = case.capability?;
    (!cap.is_supported_by(&storage.capabilities()))
        .then(|| CaseOutcome::Skipped(format!("requires {cap}")))
}

/// Creates one instance; an `Unavailable` error is a skip when `unavailable_skips`.
async fn create<F: StorageFactory + ?Sized>(
    factory: &F,
    unavailable_skips: bool,
) -> Result<Arc<dyn Storage>, CaseOutcome> {
    match factory.create().await {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == StorageErrorKind::Unavailable && unavailable_skips => {
            Err(CaseOutcome::Skipped(format!("service unavailable: {e}")))
        }
        Err(e) => Err(CaseOutcome::Failed(format!(
            "factory.create() failed: {e} (kind {})",
            e.kind()
        ))),
    }
}

async fn run_one<F: StorageFactory + ?Sized>(
    factory: &F,
    case: &'static Case,
    unavailable_skips: bool,
) -> CaseOutcome {
    match case.body {
        Body::Fresh(body) => {
            let s = match create(factory, unavailable_skips).await {
                Ok(s) => s,
                Err(outcome) => return outcome,
            };
            let outcome = match missing_capability(case, &*s) {
                Some(skip) => skip,
                None => execute(body(Arc::clone(&s))).await,
            };
            // Release the instance; a case may already have closed it.
            let _ = s.close().await;
            outcome
        }
        Body::Broken(body) => match factory.broken().await {
            Some(s) => execute(body(s)).await,
            None => CaseOutcome::Skipped("requires broken instance".into()),
        },
        Body::Pair(body) => {
            let a = match create(factory, unavailable_skips).await {
                Ok(s) => s,
                Err(outcome) => return outcome,
            };
            let b = match create(factory, unavailable_skips).await {
                Ok(s) => s,
                Err(outcome) => {
                    let _ = a.close().await;
                    return outcome;
                }
            };
            let outcome = match missing_capability(case, &*a) {
                Some(skip) => skip,
                None => execute(body(Arc::clone(&a), Arc::clone(&b))).await,
            };
            let _ = a.close().await;
            let _ = b.close().await;
            outcome
        }
    }
}

/// Runs a case body on its own task, so a panic or a hang is a failure, not a crash.
async fn execute(body: CaseFuture) -> CaseOutcome {
    let handle = tokio::spawn(body);
    let abort = handle.abort_handle();
    match tokio::time::timeout(CASE_TIMEOUT, handle).await {
        Ok(Ok(Ok(()))) => CaseOutcome::Passed,
        Ok(Ok(Err(e))) => CaseOutcome::Failed(e.to_string()),
        Ok(Err(join)) if join.is_panic() => {
            let payload = join.into_panic();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            CaseOutcome::Failed(format!("the case panicked: {msg}"))
        }
        Ok(Err(join)) => CaseOutcome::Failed(format!("the case was cancelled: {join}")),
        Err(_) => {
            abort.abort();
            CaseOutcome::Failed(format!("timed out after {} s", CASE_TIMEOUT.as_secs()))
        }
    }
}

fn build_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .thread_name("omniq-conformance")
        .build()
}

/// The result of the first `create()`.
enum Probe {
    /// The service answered; run the cases.
    Ready,
    /// `Unavailable` (or the probe timed out): skip, or fail when services are required.
    Unavailable(String),
    /// Any other error: every case fails with it.
    Failed(String),
}

async fn probe<F: StorageFactory + ?Sized>(factory: &F) -> Probe {
    match tokio::time::timeout(PROBE_TIMEOUT, factory.create()).await {
        Ok(Ok(s)) => {
            let _ = s.close().await;
            Probe::Ready
        }
        Ok(Err(e)) if e.kind() == StorageErrorKind::Unavailable => {
            Probe::Unavailable(e.to_string())
        }
        Ok(Err(e)) => Probe::Failed(format!("factory.create() failed: {e} (kind {})", e.kind())),
        Err(_) => Probe::Unavailable(format!(
            "factory.create() did not answer within {} s",
            PROBE_TIMEOUT.as_secs()
        )),
    }
}

/// The runner: every case as a libtest trial named `conformance::<id>`, then a
/// checklist report on stdout and, when `OMNIQ_CONFORMANCE_REPORT_DIR` is set, the JSON
/// report in `<dir>/<backend>.json`. Use it as `main` of a `harness = false` test.
///
/// libtest arguments work as usual (a name filter, `--exact`, `--list`,
/// `--test-threads`, …); cases filtered out are left out of the report.
///
/// - The factory's first `create()` is a probe. If it fails with
///   [`Unavailable`](omniq_core::StorageErrorKind::Unavailable) (or does not answer in
///   30 s), a line says so and every case is reported skipped ("service unavailable:
///   …") — or failed, under `OMNIQ_REQUIRE_SERVICES=1`. Any other probe error fails
///   every case.
/// - A case whose capability the backend lacks is ignored (libtest) and `skipped:
///   requires <capability>` (report); likewise "requires broken instance".
/// - Each case gets fresh instances, runs on a shared multi-thread tokio runtime, and
///   fails if it panics or runs longer than 120 s.
pub fn run<F: StorageFactory>(factory: F) -> ExitCode {
    let settings = RunSettings {
        require_services: require_services(),
        report_dir: std::env::var_os("OMNIQ_CONFORMANCE_REPORT_DIR").map(PathBuf::from),
    };
    run_with(factory, &Arguments::from_args(), &settings).exit_code()
}

/// What [`run`] otherwise reads from the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSettings {
    /// `OMNIQ_REQUIRE_SERVICES=1`: an unavailable service fails every case.
    pub require_services: bool,
    /// `OMNIQ_CONFORMANCE_REPORT_DIR`: where `<backend>.json` is written.
    pub report_dir: Option<PathBuf>,
}

/// What [`run_with`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutput {
    /// The report (empty for `--list`).
    pub report: Report,
    /// True when a case failed or the report could not be written.
    pub failed: bool,
}

impl RunOutput {
    /// The process exit code: failure when anything failed.
    pub fn exit_code(&self) -> ExitCode {
        if self.failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// [`run`] with explicit libtest arguments and settings instead of the process's
/// command line and environment (for embedding the runner, and for testing it).
pub fn run_with<F: StorageFactory>(
    factory: F,
    args: &Arguments,
    settings: &RunSettings,
) -> RunOutput {
    let backend = factory.backend();
    let all = cases();
    let empty = |failed| RunOutput {
        report: Report {
            backend: backend.to_string(),
            cases: Vec::new(),
        },
        failed,
    };

    if args.list {
        let trials = all
            .iter()
            .map(|c| Trial::test(trial_name(c), || Ok(())))
            .collect();
        return empty(libtest_mimic::run(args, trials).has_failed());
    }

    let rt = match build_runtime() {
        Ok(rt) => Arc::new(rt),
        Err(e) => {
            eprintln!("omniq-conformance: cannot start a tokio runtime: {e}");
            return empty(true);
        }
    };
    let factory = Arc::new(factory);
    let require = settings.require_services;
    let probe = Arc::new(rt.block_on(probe(&*factory)));
    match &*probe {
        Probe::Ready => {}
        Probe::Unavailable(msg) if require => println!(
            "omniq-conformance: {backend}: service unavailable: {msg}\n\
             omniq-conformance: OMNIQ_REQUIRE_SERVICES=1, so every case FAILS"
        ),
        Probe::Unavailable(msg) => println!(
            "omniq-conformance: {backend}: service unavailable: {msg}\n\
             omniq-conformance: every case is SKIPPED (set OMNIQ_REQUIRE_SERVICES=1 to fail instead)"
        ),
        Probe::Failed(msg) => println!("omniq-conformance: {backend}: {msg}; every case fails"),
    }

    let results: Arc<Mutex<Vec<(usize, CaseReport)>>> = Arc::default();
    let trials = all
        .iter()
        .enumerate()
        .map(|(index, case)| {
            let (rt, factory, probe, results) = (
                Arc::clone(&rt),
                Arc::clone(&factory),
                Arc::clone(&probe),
                Arc::clone(&results),
            );
            Trial::ignorable_test(trial_name(case), move || {
                let outcome = match &*probe {
                    // The service answered: from now on, a failing create() is a failure.
                    Probe::Ready => rt.block_on(run_one(&*factory, case, false)),
                    Probe::Unavailable(msg) if require => CaseOutcome::Failed(format!(
                        "service unavailable: {msg} (OMNIQ_REQUIRE_SERVICES=1)"
                    )),
                    Probe::Unavailable(msg) => {
                        CaseOutcome::Skipped(format!("service unavailable: {msg}"))
                    }
                    Probe::Failed(msg) => CaseOutcome::Failed(msg.clone()),
                };
                let line = CaseReport {
                    id: case.id.to_string(),
                    group: case.group.to_string(),
                    checklist: case.checklist.to_string(),
                    requirements: case.requirements.iter().map(|r| r.to_string()).collect(),
                    status: outcome.status(),
                    reason: outcome.reason().to_string(),
                };
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((index, line));
                match outcome {
                    CaseOutcome::Passed => Ok(Completion::Completed),
                    CaseOutcome::Skipped(reason) => Ok(Completion::ignored_with(reason)),
                    CaseOutcome::Failed(reason) => Err(Failed::from(reason)),
                }
            })
        })
        .collect();

    let conclusion = libtest_mimic::run(args, trials);
    // Every case is done: let the factory remove what it created (namespaces, schemas,
    // keys), so a run against a live deployment leaves nothing behind.
    if let Err(e) = rt.block_on(factory.cleanup()) {
        eprintln!("omniq-conformance: cleanup of {backend} failed: {e}");
    }

    let mut lines = std::mem::take(&mut *results.lock().unwrap_or_else(|p| p.into_inner()));
    lines.sort_by_key(|(i, _)| *i);
    let report = Report {
        backend: backend.to_string(),
        cases: lines.into_iter().map(|(_, l)| l).collect(),
    };
    println!("\n{report}");

    let mut failed = conclusion.has_failed();
    if let Some(dir) = &settings.report_dir {
        match report.write_to_dir(dir) {
            Ok(path) => println!("omniq-conformance: report written to {}", path.display()),
            Err(e) => {
                eprintln!(
                    "omniq-conformance: cannot write the report to {}: {e}",
                    dir.display()
                );
                failed = true;
            }
        }
    }
    RunOutput { report, failed }
}

fn trial_name(case: &Case) -> String {
    format!("conformance::{}", case.id)
}

/// Used by [`conformance_tests!`](crate::conformance_tests): runs one case on a fresh
/// multi-thread runtime, panics with the reason on failure, returns (printing why) on
/// a skip.
#[doc(hidden)]
pub fn __run_case<F: StorageFactory>(factory: F, id: &str) {
    let rt = match build_runtime() {
        Ok(rt) => rt,
        Err(e) => panic!("conformance case {id}: cannot start a tokio runtime: {e}"),
    };
    match rt.block_on(run_case(&factory, id)) {
        CaseOutcome::Passed => {}
        CaseOutcome::Skipped(reason) => {
            // libtest cannot mark a test ignored at run time, so a skip shows as "ok";
            // OMNIQ_CONFORMANCE_STRICT=1 makes it fail instead.
            if std::env::var("OMNIQ_CONFORMANCE_STRICT").is_ok_and(|v| v == "1") {
                panic!("conformance case {id} skipped (OMNIQ_CONFORMANCE_STRICT=1): {reason}");
            }
            eprintln!("conformance case {id} skipped: {reason}");
        }
        CaseOutcome::Failed(reason) => {
            panic!("conformance case {id} failed: {reason}");
        }
    }
}
