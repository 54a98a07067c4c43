//! The harness end to end on the file backend (and Redis) at a tiny size: the report has
//! every figure (timings are never asserted; performance is measured by `cargo xtask
//! bench`).

use std::process::Command;

#[test]
fn a_tiny_file_run_reports_every_figure() {
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_omniq-bench"))
        .args([
            "--backend",
            "file",
            "--tasks",
            "200",
            "--linear-small",
            "100",
            "--linear-large",
            "300",
            "--single-tasks",
            "50",
            "--latency-tasks",
            "50",
            "--latency-rate",
            "200",
            "--floor-ops",
            "50",
            "--concurrency",
            "8",
            "--prefetch",
            "16",
            "--logging-pairs",
            "2",
            "--report",
        ])
        .arg(&report)
        .output()
        .expect("run omniq-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("| file |"),
        "no table row for file: {stdout}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report written"))
            .expect("report is JSON");
    for k in ["nproc", "cpu", "ram_gib", "cpu_ref_ns"] {
        assert!(!v["machine"][k].is_null(), "machine.{k} missing: {v}");
    }
    let cpu_ref = v["machine"]["cpu_ref_ns"].as_f64().unwrap_or_default();
    assert!(cpu_ref > 0.0, "the CPU reference is a positive time: {v}");
    let b = &v["backends"][0];
    assert_eq!(b["backend"], "file", "{v}");
    for k in [
        "floor_per_s",
        "enqueue_batch_per_s",
        "enqueue_single_per_s",
        "processed_per_s",
        "processed_per_s_at_10k",
        "processed_per_s_at_200k",
        "linear_ratio",
        "latency_p50_ms",
        "latency_p99_ms",
        "worker_peak_rss_mb",
        "processed_per_s_logged",
        "logging_overhead_pct",
        "logging_overhead_spread_pct",
        "worker_cpu_us_per_task",
        "logging_cpu_us_per_task",
    ] {
        let x = b[k].as_f64();
        assert!(x.is_some_and(f64::is_finite), "{k} is {:?} in {b}", b[k]);
    }
    for k in [
        "floor_per_s",
        "enqueue_batch_per_s",
        "enqueue_single_per_s",
        "processed_per_s",
        "worker_peak_rss_mb",
    ] {
        assert!(b[k].as_f64().unwrap_or(0.0) > 0.0, "{k} not positive: {b}");
    }
    assert_eq!(b["latency_samples"], 50, "{b}");
    // The file backend has no server: its work is in the worker's CPU figure.
    for k in [
        "server_cpu_us_per_enqueued_task",
        "server_cpu_us_per_processed_task",
    ] {
        assert!(b[k].is_null(), "{k} is {:?} for file", b[k]);
    }
    // Two alternating off/on pairs, the first off run being the main burn-down, and the
    // figure is the median (here the mean) of the pairs' overheads.
    let pairs = b["logging_pairs"].as_array().expect("logging_pairs");
    assert_eq!(pairs.len(), 2, "{b}");
    assert_eq!(pairs[0]["off_per_s"], b["processed_per_s"], "{b}");
    assert_eq!(pairs[0]["on_first"], false, "{b}");
    assert_eq!(pairs[1]["on_first"], true, "{b}");
    let overheads: Vec<f64> = pairs
        .iter()
        .map(|p| p["overhead_pct"].as_f64().expect("overhead_pct"))
        .collect();
    let median = (overheads[0] + overheads[1]) / 2.0;
    let figure = b["logging_overhead_pct"].as_f64().expect("figure");
    assert!((figure - median).abs() < 1e-9, "{figure} vs {overheads:?}");
    let spread = b["logging_overhead_spread_pct"].as_f64().expect("spread");
    assert!(
        (spread - (overheads[0] - overheads[1]).abs()).abs() < 1e-9,
        "{b}"
    );
    for k in [
        "enqueue_batch_per_s",
        "processed_per_s",
        "latency_p50_ms",
        "latency_p99_ms",
        "linear_ratio",
        "logging_overhead_pct",
    ] {
        assert!(b["met"][k].is_boolean(), "met.{k} missing: {b}");
    }
}

// Redis reports its own CPU time (`INFO cpu`): the run gives the server's CPU per
// enqueued and per processed task (the test server at `OMNIQ_TEST_REDIS_URL`).
#[test]
fn a_tiny_redis_run_reports_the_server_cpu_per_task() {
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_omniq-bench"))
        .args([
            "--backend",
            "redis",
            "--tasks",
            "300",
            "--no-linear",
            "--no-logging",
            "--single-tasks",
            "10",
            "--latency-tasks",
            "10",
            "--floor-ops",
            "10",
            "--report",
        ])
        .arg(&report)
        .output()
        .expect("run omniq-bench");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report written"))
            .expect("report is JSON");
    let b = &v["backends"][0];
    assert_eq!(b["backend"], "redis", "{v}");
    for k in [
        "server_cpu_us_per_enqueued_task",
        "server_cpu_us_per_processed_task",
    ] {
        let x = b[k].as_f64().unwrap_or(0.0);
        assert!(x > 0.0 && x.is_finite(), "{k} is {:?} in {b}", b[k]);
    }
}

#[test]
fn an_unknown_backend_names_the_valid_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_omniq-bench"))
        .args(["--backend", "mongo"])
        .output()
        .expect("run omniq-bench");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("valid values: file, sqlite, postgres, redis, all"),
        "{err}"
    );
}
