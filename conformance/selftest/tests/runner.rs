//! The K2 runner's skip, fail and report behaviour, driven in-process through
//! `run_with` (the same code `run` uses, with explicit arguments and settings).

mod common;

use common::MemoryFactory;
use omniq_conformance::faulty::{FaultyFactory, NoFactory, WithCapabilities};
use omniq_conformance::{Arguments, CaseStatus, RunSettings, cases, run_with};

/// Quiet arguments whose libtest output goes to a log file in `dir` (the nested
/// runner's lines would otherwise interleave with this test binary's own).
fn args(dir: &tempfile::TempDir) -> Arguments {
    Arguments {
        test_threads: Some(4),
        quiet: true,
        logfile: Some(dir.path().join("libtest.log").display().to_string()),
        ..Arguments::default()
    }
}

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

#[test]
fn unavailable_service_skips_every_case_and_writes_the_json_report() {
    let dir = temp();
    let settings = RunSettings {
        require_services: false,
        report_dir: Some(dir.path().to_path_buf()),
    };
    let out = run_with(NoFactory, &args(&dir), &settings);
    assert!(
        !out.failed,
        "an unavailable service is a skip, not a failure"
    );
    assert_eq!(out.report.cases.len(), cases().len());
    for c in &out.report.cases {
        assert_eq!(c.status, CaseStatus::Skipped, "{}", c.id);
        assert!(
            c.reason.starts_with("service unavailable: "),
            "{}",
            c.reason
        );
    }

    let text = std::fs::read_to_string(dir.path().join("none.json")).expect("none.json written");
    let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(json["backend"], "none");
    let first = &json["cases"][0];
    assert_eq!(first["id"], cases()[0].id);
    assert_eq!(first["checklist"], cases()[0].checklist);
    assert_eq!(first["status"], "skipped");
    assert!(first["requirements"].is_array());
    assert!(first["reason"].is_string());
}

#[test]
fn unavailable_service_fails_every_case_when_services_are_required() {
    let settings = RunSettings {
        require_services: true,
        report_dir: None,
    };
    let out = run_with(NoFactory, &args(&temp()), &settings);
    assert!(out.failed);
    assert!(
        out.report
            .cases
            .iter()
            .all(|c| c.status == CaseStatus::Failed && c.reason.contains("service unavailable"))
    );
}

#[test]
fn missing_capabilities_and_broken_instance_are_reported_skipped() {
    let factory = FaultyFactory::new(MemoryFactory::default(), WithCapabilities::wrap);
    let out = run_with(factory, &args(&temp()), &RunSettings::default());
    assert!(!out.failed, "{}", out.report);
    for c in &out.report.cases {
        let case = cases().iter().find(|k| k.id == c.id).expect("registered");
        let expected = if let Some(cap) = case
            .capability
            .filter(|c| *c != omniq_conformance::Capability::Runtime)
        {
            Some(format!("requires {cap}"))
        } else if case.needs_broken_instance() {
            Some("requires broken instance".to_string())
        } else {
            None
        };
        match expected {
            Some(reason) => {
                assert_eq!(c.status, CaseStatus::Skipped, "{}", c.id);
                assert_eq!(c.reason, reason, "{}", c.id);
            }
            None => {
                assert_eq!(c.status, CaseStatus::Passed, "{}: {}", c.id, c.reason);
                assert_eq!(c.reason, "", "{}", c.id);
            }
        }
    }
    assert!(out.report.count(CaseStatus::Skipped) >= 4);
}

#[test]
fn a_filter_runs_and_reports_only_matching_cases() {
    let dir = temp();
    let mut a = args(&dir);
    a.filter = Some("get_task".into());
    let out = run_with(MemoryFactory::default(), &a, &RunSettings::default());
    assert!(!out.report.cases.is_empty());
    assert!(out.report.cases.iter().all(|c| c.id.contains("get_task")));
}
