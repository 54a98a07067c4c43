//! K5: the suite can fail. Each deliberately faulty wrapper must fail exactly the cases
//! aimed at its fault — every one of them, and no other storage case (the two gross
//! faults excepted) — while the same cases pass on the unwrapped storage.

mod common;

use common::MemoryFactory;
use omniq_conformance::faulty::{FAULTS, Fault, FaultyFactory};
use omniq_conformance::{Capability, CaseOutcome, cases, run_case};
use std::collections::{BTreeMap, BTreeSet};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn targeted_cases_pass_on_the_correct_storage() {
    let mut failures = Vec::new();
    for fault in FAULTS {
        for &id in fault.targets {
            let outcome = run_case(&MemoryFactory::default(), id).await;
            if outcome != CaseOutcome::Passed {
                failures.push(format!("{id} (target of {}): {outcome:?}", fault.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "control: targeted cases must pass on the unwrapped storage:\n{}",
        failures.join("\n")
    );
}

/// Faults that break what nearly every case relies on (a claim that ignores leases or
/// eta): they must fail their targets, and fail much else besides.
const GROSS: &[&str] = &["ClaimsTwice", "IgnoresEta"];

/// Every storage case (and every targeted case) that fails against `fault`, with its
/// reason. The runtime-level cases run a real worker pool on the wall clock; run many at
/// once they can miss their timing, so only targeted ones run here.
async fn failures_of(fault: Fault) -> BTreeMap<&'static str, String> {
    let factory = FaultyFactory::new(MemoryFactory::default(), fault.wrap);
    let mut failed = BTreeMap::new();
    for case in cases() {
        let runtime = case.capability == Some(Capability::Runtime);
        if runtime && !fault.targets.contains(&case.id) {
            continue;
        }
        if let CaseOutcome::Failed(reason) = run_case(&factory, case.id).await {
            failed.insert(case.id, reason);
        }
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_faulty_backend_fails_exactly_the_cases_aimed_at_it() {
    // Every fault against the whole suite, side by side (each wake-up case waits up to
    // 5 s for a hint that never comes).
    let runs: Vec<_> = FAULTS
        .iter()
        .map(|&fault| (fault, tokio::spawn(failures_of(fault))))
        .collect();
    let mut wrong = Vec::new();
    for (fault, run) in runs {
        let failed = run.await.expect("a fault's run panicked");
        for (id, reason) in &failed {
            eprintln!("{} fails {id}: {reason}", fault.name);
        }
        let targets: BTreeSet<&str> = fault.targets.iter().copied().collect();
        let failed: BTreeSet<&str> = failed.into_keys().collect();
        let missed: Vec<_> = targets.difference(&failed).collect();
        if !missed.is_empty() {
            wrong.push(format!("{} was not caught by {missed:?}", fault.name));
        }
        let extra: Vec<_> = failed.difference(&targets).collect();
        if !extra.is_empty() && !GROSS.contains(&fault.name) {
            wrong.push(format!(
                "{} also fails {extra:?}: add them to its TARGETS, or narrow the fault",
                fault.name
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "each fault must fail exactly the cases aimed at it:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_target_is_a_registered_case() {
    for fault in FAULTS {
        assert!(!fault.targets.is_empty(), "{} targets no case", fault.name);
        for id in fault.targets {
            assert!(
                cases().iter().any(|c| c.id == *id),
                "{} targets unknown case {id}",
                fault.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_broken_instance_is_a_skip() {
    let outcome = run_case(
        &MemoryFactory::default(),
        "get_task_raises_storage_error_on_failure",
    )
    .await;
    assert_eq!(
        outcome,
        CaseOutcome::Skipped("requires broken instance".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_case_id_fails() {
    let outcome = run_case(&MemoryFactory::default(), "no_such_case").await;
    assert!(outcome.is_failed(), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_service_is_a_skip_unless_required() {
    let outcome = run_case(
        &omniq_conformance::faulty::NoFactory,
        "get_task_returns_none_for_missing_id",
    )
    .await;
    let required = std::env::var("OMNIQ_REQUIRE_SERVICES").is_ok_and(|v| v.trim() == "1");
    if required {
        assert!(outcome.is_failed(), "{outcome:?}");
    } else {
        assert!(
            matches!(&outcome, CaseOutcome::Skipped(r) if r.starts_with("service unavailable")),
            "{outcome:?}"
        );
    }
}
