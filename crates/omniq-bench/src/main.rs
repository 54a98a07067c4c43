//! `omniq-bench`: OmniQ's benchmark, run through `cargo xtask bench`.
//!
//! Per backend (file, sqlite, postgres, redis) it measures, in one run: the backend's floor
//! (its raw durable single-write rate), batch and single enqueue rates, the burn-down rate of
//! pre-enqueued no-op tasks through a real `AsyncWorkerPool` (at N tasks, and at 10k and 200k
//! for the linear-growth check), enqueue→start latency at a steady low rate, the worker's
//! peak RSS and the cost of PROD logging at INFO. It prints a Markdown table with each
//! figure beside its target and writes a JSON report.
//!
//! ```text
//! cargo run --release -p omniq-bench -- --backend all --tasks 50000 --report target/bench/report.json
//! ```
//!
//! Servers come from `OMNIQ_TEST_POSTGRES_URL` and `OMNIQ_TEST_REDIS_URL` (the tests'
//! defaults otherwise). Each measurement works in a namespace (schema, key prefix,
//! directory) of its own and deletes it afterwards.

mod measure;
mod report;
mod site;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use measure::PoolShape;
use omniq::AsyncTaskQueue;
use serde_json::{Value, json};
use site::{Backend, Site};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// OmniQ's benchmark: throughput, latency and floor per backend.
#[derive(Debug, Parser)]
#[command(name = "omniq-bench")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Which backend to measure, or `all`. A backend named explicitly must be reachable;
    /// with `all`, an unreachable server is reported as skipped.
    #[arg(long, default_value = "all")]
    backend: String,
    /// Tasks in the main burn-down (and the batch-enqueue figure).
    #[arg(long, default_value_t = 50_000)]
    tasks: usize,
    /// Where the JSON report goes.
    #[arg(long, value_name = "FILE", default_value = "target/bench/report.json")]
    report: PathBuf,
    /// The small and large burn-downs of the linear-growth check.
    #[arg(long, default_value_t = 10_000)]
    linear_small: usize,
    /// See --linear-small.
    #[arg(long, default_value_t = 200_000)]
    linear_large: usize,
    /// Skip the linear-growth check (its two burn-downs).
    #[arg(long)]
    no_linear: bool,
    /// Skip the burn-downs with logging on (the logging-overhead figure).
    #[arg(long)]
    no_logging: bool,
    /// Off/on pairs of N-task burn-downs behind the logging-overhead figure (the main
    /// burn-down is the first pair's "off" run); the figure is the median pair's.
    #[arg(long, default_value_t = 3)]
    logging_pairs: usize,
    /// Tasks enqueued one at a time for the single-enqueue figure (at most 5 s of them).
    #[arg(long, default_value_t = 2_000)]
    single_tasks: usize,
    /// Tasks of the latency measurement.
    #[arg(long, default_value_t = 1_000)]
    latency_tasks: usize,
    /// Enqueues per second during the latency measurement.
    #[arg(long, default_value_t = 500.0)]
    latency_rate: f64,
    /// Writes of the floor probe (at most 3 s of them).
    #[arg(long, default_value_t = 3_000)]
    floor_ops: usize,
    /// Handlers running at once in every worker pool.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Claimed tasks waiting for a run slot in every worker pool.
    #[arg(long, default_value_t = 512)]
    prefetch: usize,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// (internal) The burn-down worker: run a pool until TASKS no-op tasks are done.
    #[command(hide = true)]
    Work {
        #[arg(long, value_enum)]
        backend: Backend,
        #[arg(long)]
        location: String,
        #[arg(long)]
        namespace: String,
        #[arg(long)]
        tasks: usize,
        #[arg(long)]
        concurrency: usize,
        #[arg(long)]
        prefetch: usize,
        #[arg(long)]
        log_file: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Work {
            backend,
            location,
            namespace,
            tasks,
            concurrency,
            prefetch,
            log_file,
        }) => {
            let site = Site { backend, location };
            let shape = PoolShape {
                concurrency,
                prefetch,
            };
            measure::work(&site, &namespace, tasks, shape, log_file.as_deref()).await
        }
        None => run(cli.run).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("omniq-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A namespace no other run uses: `bench_<run>_<n>`.
fn namespace(run: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("bench_{run}_{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn run(args: RunArgs) -> Result<()> {
    let selected: Vec<Backend> = if args.backend == "all" {
        Backend::ALL.to_vec()
    } else {
        match Backend::ALL.iter().find(|b| b.name() == args.backend) {
            Some(b) => vec![*b],
            None => bail!(
                "unknown backend {:?} (valid values: file, sqlite, postgres, redis, all)",
                args.backend
            ),
        }
    };
    if args.tasks == 0
        || args.latency_tasks == 0
        || args.latency_rate.is_nan()
        || args.latency_rate <= 0.0
    {
        bail!("--tasks, --latency-tasks and --latency-rate must be positive");
    }
    if !args.no_logging && args.logging_pairs == 0 {
        bail!("--logging-pairs must be positive (or pass --no-logging)");
    }
    if !args.no_linear && (args.linear_small == 0 || args.linear_large == 0) {
        bail!("--linear-small and --linear-large must be positive (or pass --no-linear)");
    }
    let required = args.backend != "all";
    let shape = PoolShape {
        concurrency: args.concurrency,
        prefetch: args.prefetch,
    };
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let dir = tempfile::Builder::new().prefix("omniq-bench-").tempdir()?;
    let started = Instant::now();
    let mut backends = Vec::new();
    for backend in selected {
        eprintln!("omniq-bench: {} …", backend.name());
        let t = Instant::now();
        let site = Site::new(backend, dir.path());
        let value = match measure_backend(&site, &run_id, &args, shape, dir.path()).await {
            Ok(v) => v,
            Err(Skip::Unreachable(why)) if !required => {
                eprintln!("omniq-bench: {}: skipped: {why}", backend.name());
                json!({ "backend": backend.name(), "skipped": why })
            }
            Err(Skip::Unreachable(why)) => {
                bail!("{}: the backend is unreachable: {why}", backend.name())
            }
            Err(Skip::Failed(e)) => return Err(e.context(backend.name())),
        };
        eprintln!(
            "omniq-bench: {} done in {:.0} s",
            backend.name(),
            t.elapsed().as_secs_f64()
        );
        backends.push(value);
    }
    let report = json!({
        "generated_at": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)?,
        "elapsed_s": started.elapsed().as_secs_f64(),
        "machine": report::machine(),
        "settings": {
            "tasks": args.tasks,
            "linear": if args.no_linear { Value::Null } else { json!([args.linear_small, args.linear_large]) },
            "single_tasks": args.single_tasks,
            "latency_tasks": args.latency_tasks,
            "latency_rate_per_s": args.latency_rate,
            "floor_ops": args.floor_ops,
            "pool": shape,
            "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        },
        "backends": backends,
    });
    let table = report::table(
        report["backends"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default(),
        args.linear_small,
        args.linear_large,
    );
    println!("{table}");
    let machine = &report["machine"];
    println!(
        "machine: {} × {}, CPU reference {} ns (one MessagePack encode + decode of a task)",
        machine["nproc"],
        machine["cpu"].as_str().unwrap_or("unknown CPU"),
        machine["cpu_ref_ns"]
    );
    if let Some(parent) = args.report.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&args.report, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", args.report.display()))?;
    println!(
        "omniq-bench: report written to {} ({:.0} s)",
        args.report.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Why a backend has no figures.
enum Skip {
    /// Its server could not be reached: a skip, unless the backend was asked for by name.
    Unreachable(String),
    /// A measurement failed.
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Skip {
    fn from(e: anyhow::Error) -> Self {
        Skip::Failed(e)
    }
}

async fn measure_backend(
    site: &Site,
    run_id: &str,
    args: &RunArgs,
    shape: PoolShape,
    dir: &Path,
) -> Result<Value, Skip> {
    let backend = site.backend;
    let ns = namespace(run_id);
    let storage = match tokio::time::timeout(Duration::from_secs(15), site.open(&ns)).await {
        Ok(Ok(s)) => s,
        // Nothing was created in the namespace: there is nothing to delete.
        Ok(Err(e)) => return Err(Skip::Unreachable(e.to_string())),
        Err(_) => return Err(Skip::Unreachable("no answer within 15 s".into())),
    };
    // Floor, single enqueue and latency share one namespace.
    let probes = async {
        eprintln!("  floor");
        let floor = site
            .floor(&ns, args.floor_ops, Duration::from_secs(3))
            .await?;
        let queue = AsyncTaskQueue::new(std::sync::Arc::clone(&storage));
        eprintln!("  single enqueue");
        let single =
            measure::enqueue_single(&queue, args.single_tasks, Duration::from_secs(5)).await?;
        eprintln!("  latency");
        let latency =
            measure::latency(&queue, shape, args.latency_tasks, args.latency_rate).await?;
        anyhow::Ok((floor, single, latency))
    }
    .await;
    let closed = storage.close().await;
    drop(storage);
    let cleaned = site.cleanup(&ns).await;
    let (floor, single, latency) = probes?;
    closed.map_err(anyhow::Error::from)?;
    cleaned?;

    eprintln!("  burn-down {} tasks", args.tasks);
    let main = measure::burn(site, &namespace(run_id), args.tasks, shape, None).await?;
    let logged = if args.no_logging {
        None
    } else {
        Some(logging_pairs(site, run_id, args, shape, dir, main).await?)
    };
    let linear = if args.no_linear {
        None
    } else {
        let mut v = Vec::new();
        for n in [args.linear_small, args.linear_large] {
            eprintln!("  burn-down {n} tasks (linear growth)");
            v.push(measure::burn(site, &namespace(run_id), n, shape, None).await?);
        }
        Some((v[0], v[1]))
    };

    let num = |x: Option<f64>| x.map_or(Value::Null, |v| json!(v));
    let mut b = json!({
        "backend": backend.name(),
        "location": omniq::backend::redact_credentials(&site.location),
        "floor_what": backend.floor_what(),
        "floor_per_s": floor,
        "enqueue_batch_per_s": main.enqueue_batch_per_s,
        "enqueue_single_per_s": single,
        "processed_per_s": main.processed_per_s,
        "processed_per_floor": main.processed_per_s / floor,
        "enqueue_batch_per_floor": main.enqueue_batch_per_s / floor,
        "latency_p50_ms": latency.p50_ms,
        "latency_p99_ms": latency.p99_ms,
        "latency_max_ms": latency.max_ms,
        "latency_samples": latency.samples,
        "worker_peak_rss_mb": main.worker_peak_rss_mb,
        "worker_cpu_us_per_task": main.worker_cpu_us_per_task,
        "server_cpu_us_per_enqueued_task": num(main.server_cpu_us_per_enqueued_task),
        "server_cpu_us_per_processed_task": num(main.server_cpu_us_per_processed_task),
        "logging_cpu_us_per_task": num(logged.as_ref().map(|l| l.cpu_us_per_task)),
        "processed_per_s_logged": num(logged.as_ref().map(|l| l.logged_per_s)),
        "logging_overhead_pct": num(logged.as_ref().map(|l| l.overhead_pct)),
        "logging_overhead_spread_pct": num(logged.as_ref().map(|l| l.spread_pct)),
        "logging_pairs": logged.as_ref().map_or(Value::Null, |l| json!(l.pairs)),
        "processed_per_s_at_10k": num(linear.map(|l| l.0.processed_per_s)),
        "processed_per_s_at_200k": num(linear.map(|l| l.1.processed_per_s)),
        "linear_ratio": num(linear.map(|l| l.1.processed_per_s / l.0.processed_per_s)),
        "targets": report::targets(backend),
    });
    if args.no_linear {
        b["linear_skipped"] = json!("--no-linear");
    }
    if args.no_logging {
        b["logging_skipped"] = json!("--no-logging");
    }
    b["met"] = report::verdicts(&b, &report::targets(backend));
    Ok(b)
}

/// The logging-overhead figure from alternating off/on burn-downs.
struct LoggingFigure {
    /// The median of the pairs' overheads.
    overhead_pct: f64,
    /// The largest minus the smallest of the pairs' overheads.
    spread_pct: f64,
    /// The median of the logged runs' processed/s.
    logged_per_s: f64,
    /// The median of the pairs' extra worker CPU time per task with logging on, in µs.
    cpu_us_per_task: f64,
    pairs: Vec<LoggingPair>,
}

/// One off/on pair of burn-downs, in the order they ran.
#[derive(serde::Serialize)]
struct LoggingPair {
    off_per_s: f64,
    on_per_s: f64,
    /// `(off − on) / off`, in percent.
    overhead_pct: f64,
    /// Worker CPU time per task, in µs.
    off_cpu_us_per_task: f64,
    on_cpu_us_per_task: f64,
    /// Whether the logged run went first.
    on_first: bool,
}

/// `--logging-pairs` off/on pairs of N-task burn-downs, the logged one with PROD logging at
/// INFO to a file. The first pair's "off" run is the main burn-down (`main`); the
/// pairs alternate their order (off-on, on-off, off-on, …) so that a drift of the machine
/// over the runs does not favour one side.
async fn logging_pairs(
    site: &Site,
    run_id: &str,
    args: &RunArgs,
    shape: PoolShape,
    dir: &Path,
    main: measure::Burn,
) -> Result<LoggingFigure> {
    let burn = |logged: bool| async move {
        let ns = namespace(run_id);
        if !logged {
            eprintln!(
                "  burn-down {} tasks (logging pair, logging off)",
                args.tasks
            );
            return measure::burn(site, &ns, args.tasks, shape, None).await;
        }
        eprintln!("  burn-down {} tasks, PROD logging at INFO", args.tasks);
        let log = dir.join(format!("{}-{ns}.log", site.backend.name()));
        let b = measure::burn(site, &ns, args.tasks, shape, Some(&log)).await;
        let _ = std::fs::remove_file(&log);
        b
    };
    let mut pairs = Vec::with_capacity(args.logging_pairs);
    for i in 0..args.logging_pairs {
        let on_first = i % 2 == 1;
        let (off, on) = if i == 0 {
            (main, burn(true).await?)
        } else if on_first {
            let on = burn(true).await?;
            (burn(false).await?, on)
        } else {
            (burn(false).await?, burn(true).await?)
        };
        pairs.push(LoggingPair {
            off_per_s: off.processed_per_s,
            on_per_s: on.processed_per_s,
            overhead_pct: (off.processed_per_s - on.processed_per_s) / off.processed_per_s * 100.0,
            off_cpu_us_per_task: off.worker_cpu_us_per_task,
            on_cpu_us_per_task: on.worker_cpu_us_per_task,
            on_first,
        });
    }
    let overheads: Vec<f64> = pairs.iter().map(|p| p.overhead_pct).collect();
    let ons: Vec<f64> = pairs.iter().map(|p| p.on_per_s).collect();
    let cpu: Vec<f64> = pairs
        .iter()
        .map(|p| p.on_cpu_us_per_task - p.off_cpu_us_per_task)
        .collect();
    let (lo, hi) = overheads
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    Ok(LoggingFigure {
        overhead_pct: median(&overheads),
        spread_pct: hi - lo,
        logged_per_s: median(&ons),
        cpu_us_per_task: median(&cpu),
        pairs,
    })
}

/// The median (the mean of the middle two for an even count); NaN for none.
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[9.0, -1.0, 4.0]), 4.0);
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
