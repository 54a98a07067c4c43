//! `omniq-chaos run …` (the orchestrator) and `omniq-chaos worker …` (the worker process
//! it spawns). `cargo xtask chaos` builds and runs it.

use clap::{Parser, Subcommand};
use omniq_chaos::scenarios::{self, NAMES, Row, Size};
use omniq_chaos::{backend, report, worker};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

/// OmniQ's failure harness.
#[derive(Debug, Parser)]
#[command(name = "omniq-chaos", arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run scenarios and print, per backend and scenario: tasks, faults injected, lost,
    /// double runs under a live lease, panics. Exits non-zero when any of the last
    /// three is not zero.
    Run {
        /// file, sqlite, postgres, redis (comma-separated) or all.
        #[arg(long, default_value = "all")]
        backend: String,
        /// Scenarios (comma-separated) or all.
        #[arg(long, default_value = "all")]
        scenario: String,
        /// Tasks of the worker-kill scenario (the others scale from their own sizes).
        #[arg(long, default_value_t = 10_000)]
        tasks: u64,
        /// The CI-sized variant of every scenario (about 2-3 minutes for all backends).
        #[arg(long)]
        small: bool,
        /// Also write the report here (Markdown; JSON when the name ends in .json).
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
    },
    /// A worker process (spawned by `run`; stops when its standard input closes).
    #[command(hide = true)]
    Worker(worker::WorkerArgs),
}

static PANICS: AtomicU64 = AtomicU64::new(0);

fn main() -> ExitCode {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("omniq-chaos: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Cmd::Worker(args) => rt.block_on(worker::run(args)),
        Cmd::Run {
            backend,
            scenario,
            tasks,
            small,
            report,
        } => rt.block_on(run(&backend, &scenario, tasks, small, report)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("omniq-chaos: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    backends: &str,
    scenario: &str,
    tasks: u64,
    small: bool,
    report_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let backends = backend::parse_backends(backends)?;
    let names: Vec<&str> = if scenario == "all" {
        NAMES.to_vec()
    } else {
        scenario.split(',').collect()
    };
    for n in &names {
        if !NAMES.contains(n) {
            anyhow::bail!(
                "--scenario: unknown {n:?} (valid values: {}, all)",
                NAMES.join(", ")
            );
        }
    }
    let size = Size {
        tasks: if small { tasks.min(300) } else { tasks },
        small,
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut errors = Vec::new();
    for b in &backends {
        for name in &names {
            let before = PANICS.load(Ordering::SeqCst);
            let started = std::time::Instant::now();
            let b = *b;
            let name_owned = name.to_string();
            let res = tokio::spawn(async move { scenarios::run(&name_owned, b, size).await }).await;
            let panicked = PANICS.load(Ordering::SeqCst) - before;
            match res {
                Ok(Ok(mut rs)) => {
                    for r in &mut rs {
                        r.panics += panicked;
                        print!(
                            "{}",
                            report::table(std::slice::from_ref(r))
                                .lines()
                                .nth(1)
                                .map(|l| format!("{l}\n"))
                                .unwrap_or_default()
                        );
                    }
                    rows.extend(rs);
                }
                Ok(Err(e)) => {
                    println!("{:<9} {:<17} ERROR: {e:#}", b.as_str(), name);
                    errors.push(format!("{} / {name}: {e:#}", b.as_str()));
                }
                Err(e) => {
                    println!("{:<9} {:<17} PANICKED: {e}", b.as_str(), name);
                    rows.push(Row {
                        backend: b.as_str().into(),
                        scenario: name.to_string(),
                        panics: panicked.max(1),
                        seconds: started.elapsed().as_secs_f64(),
                        note: e.to_string(),
                        ..Row::default()
                    });
                }
            }
        }
    }
    println!("\n{}", report::table(&rows));
    for r in rows.iter().filter(|r| !r.note.is_empty()) {
        println!("  {} / {}: {}", r.backend, r.scenario, r.note);
    }
    if let Some(path) = report_file {
        let command = std::env::args().collect::<Vec<_>>().join(" ");
        let text = if path.extension().is_some_and(|e| e == "json") {
            serde_json::to_string_pretty(&rows)?
        } else {
            report::markdown(&rows, &command)
        };
        std::fs::write(&path, text)?;
        println!("report written to {}", path.display());
    }
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| !r.ok())
        .map(|r| format!("{} / {}", r.backend, r.scenario))
        .collect();
    if !errors.is_empty() || !failed.is_empty() {
        anyhow::bail!(
            "chaos failed: {}",
            errors
                .into_iter()
                .chain(failed)
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    println!("chaos passed: lost, double and panics are 0 in every row");
    Ok(())
}
