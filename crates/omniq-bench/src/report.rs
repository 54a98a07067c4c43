//! The targets each figure is read against, the JSON report and the printed table.

use crate::site::Backend;
use serde::Serialize;
use serde_json::{Value, json};

/// The performance targets of one backend on a 2-core machine with durable defaults.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Targets {
    pub(crate) enqueue_batch_per_s: f64,
    pub(crate) processed_per_s: f64,
    pub(crate) latency_p50_ms: f64,
    pub(crate) latency_p99_ms: f64,
}

/// Logging at INFO may cost at most this share of throughput.
pub(crate) const LOGGING_OVERHEAD_MAX_PCT: f64 = 5.0;
/// processed/s at the large burn-down must be at least this share of that at the small one.
pub(crate) const LINEAR_MIN_RATIO: f64 = 0.8;

pub(crate) fn targets(backend: Backend) -> Targets {
    let t = |b: f64, p: f64, p50: f64, p99: f64| Targets {
        enqueue_batch_per_s: b,
        processed_per_s: p,
        latency_p50_ms: p50,
        latency_p99_ms: p99,
    };
    match backend {
        Backend::Sqlite => t(200_000.0, 45_000.0, 1.0, 10.0),
        Backend::Postgres => t(100_000.0, 25_000.0, 3.0, 15.0),
        Backend::Redis => t(300_000.0, 50_000.0, 1.0, 5.0),
        Backend::File => t(20_000.0, 5_000.0, 20.0, 100.0),
    }
}

/// The machine a report comes from.
pub(crate) fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0);
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "cpu": cpu,
        "ram_gib": ram_gib,
        "os": std::env::consts::OS,
        "cpu_ref_ns": cpu_ref_ns(),
    })
}

/// A CPU reference taken in the same run, for reading CPU-bound figures across machines
/// (the floors only describe durable writes): nanoseconds for one MessagePack encode and
/// decode of a small task on one thread, the best of five rounds of 20 000.
pub(crate) fn cpu_ref_ns() -> Option<f64> {
    use omniq::backend::{Format, Payload, Task};
    use std::hint::black_box;
    const ROUND: u32 = 20_000;
    let task = Task::new("bench.cpu_ref", Payload(vec![0x92, 0x01, 0x02]));
    let format = Format::MessagePack;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = std::time::Instant::now();
        for _ in 0..ROUND {
            let bytes = format.encode(black_box(&task)).ok()?;
            let back: Task = format.decode(black_box(&bytes)).ok()?;
            black_box(back);
        }
        best = best.min(start.elapsed().as_nanos() as f64 / f64::from(ROUND));
    }
    Some((best * 10.0).round() / 10.0)
}

fn rate(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

fn mark(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

/// Whether figure `k` of `b` meets its target, `None` when it was not measured.
pub(crate) fn met(b: &Value, k: &str) -> Option<bool> {
    b["met"][k].as_bool()
}

/// The `met` object of one backend's report: each target figure against its bound.
pub(crate) fn verdicts(b: &Value, t: &Targets) -> Value {
    let ge = |k: &str, bound: f64| {
        let v = f(b, k);
        v.is_finite().then_some(v >= bound)
    };
    let le = |k: &str, bound: f64| {
        let v = f(b, k);
        v.is_finite().then_some(v <= bound)
    };
    json!({
        "enqueue_batch_per_s": ge("enqueue_batch_per_s", t.enqueue_batch_per_s),
        "processed_per_s": ge("processed_per_s", t.processed_per_s),
        "latency_p50_ms": le("latency_p50_ms", t.latency_p50_ms),
        "latency_p99_ms": le("latency_p99_ms", t.latency_p99_ms),
        "linear_ratio": ge("linear_ratio", LINEAR_MIN_RATIO),
        "logging_overhead_pct": le("logging_overhead_pct", LOGGING_OVERHEAD_MAX_PCT),
    })
}

/// The table, as Markdown: one row per backend, each figure beside its target.
pub(crate) fn table(backends: &[Value], linear_small: usize, linear_large: usize) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "| backend | floor/s | batch enqueue/s | single enqueue/s | processed/s | processed ÷ floor | latency p50 / p99 | processed {}k → {}k | worker peak RSS | logging overhead |\n",
        linear_small / 1000,
        linear_large / 1000
    ));
    out.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    for b in backends {
        let name = b["backend"].as_str().unwrap_or("?");
        if let Some(why) = b["skipped"].as_str() {
            out.push_str(&format!("| {name} | skipped: {why} |||||||||\n"));
            continue;
        }
        let t = &b["targets"];
        // A missed target says how far off it is: the figure as a multiple of its bound.
        let verdict = |k: &str| match met(b, k) {
            None => "not measured".to_string(),
            Some(true) => mark(true).to_string(),
            Some(false) => {
                let bound = match k {
                    "linear_ratio" => LINEAR_MIN_RATIO,
                    "logging_overhead_pct" => LOGGING_OVERHEAD_MAX_PCT,
                    _ => f(t, k),
                };
                format!("{}, {:.2}× the bound", mark(false), f(b, k) / bound)
            }
        };
        let ratio = |k: &str| {
            let v = f(b, k) / f(b, "floor_per_s");
            if v.is_finite() {
                format!("{v:.2}×")
            } else {
                "–".into()
            }
        };
        let linear = match b["linear_skipped"].as_str() {
            Some(why) => format!("skipped: {why}"),
            None => format!(
                "{} → {} ({:.2}, ≥ {LINEAR_MIN_RATIO}: {})",
                rate(f(b, "processed_per_s_at_10k")),
                rate(f(b, "processed_per_s_at_200k")),
                f(b, "linear_ratio"),
                verdict("linear_ratio")
            ),
        };
        let logging = match b["logging_skipped"].as_str() {
            Some(why) => format!("skipped: {why}"),
            None => format!(
                "{:.1}% (median of {} pairs, spread {:.1} pts; ≤ {LOGGING_OVERHEAD_MAX_PCT}%: {})",
                f(b, "logging_overhead_pct"),
                b["logging_pairs"].as_array().map_or(0, Vec::len),
                f(b, "logging_overhead_spread_pct"),
                verdict("logging_overhead_pct")
            ),
        };
        out.push_str(&format!(
            "| {name} | {} | {} (≥ {}: {}) | {} | {} (≥ {}: {}) | {} | {:.2} / {:.2} ms (≤ {} / ≤ {} ms: {} / {}) | {linear} | {:.0} MiB | {logging} |\n",
            rate(f(b, "floor_per_s")),
            rate(f(b, "enqueue_batch_per_s")),
            rate(f(t, "enqueue_batch_per_s")),
            verdict("enqueue_batch_per_s"),
            rate(f(b, "enqueue_single_per_s")),
            rate(f(b, "processed_per_s")),
            rate(f(t, "processed_per_s")),
            verdict("processed_per_s"),
            ratio("processed_per_s"),
            f(b, "latency_p50_ms"),
            f(b, "latency_p99_ms"),
            f(t, "latency_p50_ms"),
            f(t, "latency_p99_ms"),
            verdict("latency_p50_ms"),
            verdict("latency_p99_ms"),
            f(b, "worker_peak_rss_mb"),
        ));
    }
    out
}
