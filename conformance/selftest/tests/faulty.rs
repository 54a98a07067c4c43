//! K5: the suite can fail. Each deliberately faulty wrapper must fail every case aimed
//! at its fault, while the same cases pass on the unwrapped storage.

mod common;

use common::MemoryFactory;
use omniq_conformance::faulty::{FAULTS, FaultyFactory};
use omniq_conformance::{CaseOutcome, cases, run_case};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_faulty_backend_fails_the_cases_aimed_at_it() {
    let mut survived = Vec::new();
    for fault in FAULTS {
        let factory = FaultyFactory::new(MemoryFactory::default(), fault.wrap);
        for &id in fault.targets {
            match run_case(&factory, id).await {
                CaseOutcome::Failed(reason) => {
                    eprintln!("{} fails {id} as it should: {reason}", fault.name);
                }
                other => survived.push(format!("{} was not caught by {id}: {other:?}", fault.name)),
            }
        }
    }
    assert!(
        survived.is_empty(),
        "the suite missed deliberate faults:\n{}",
        survived.join("\n")
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
