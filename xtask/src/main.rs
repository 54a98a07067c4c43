//! `cargo xtask`: the workspace's automation, in Rust instead of shell scripts.
//!
//! - `cargo xtask conformance [--backend file|sqlite|postgres|redis|all] [--report-dir DIR]
//!   [--url URL]` runs the backend conformance suite and writes `DIR/<backend>.json`; `--url`
//!   checks a deployment of your choosing (a server URL, or a path for the embedded backends).
//! - `cargo xtask bench [--backend file|sqlite|postgres|redis|all] [--tasks N] [--report FILE]
//!   [-- BENCH-OPTIONS]` builds `omniq-bench` in release mode and runs it: a table of
//!   figures against their targets, and a JSON report (default `target/bench/report.json`).
//!   It is long, so `ci` does not run it.
//! - `cargo xtask chaos [--backend NAME|all] [--scenario NAME|all] [--tasks N] [--small]
//!   [--report FILE]` runs the failure harness (`crates/omniq-chaos`) and prints, per
//!   backend and scenario, tasks, faults injected, lost, double runs under a live lease
//!   and panics; it fails unless the last three are all 0.
//! - `cargo xtask ci` runs what CI runs, stopping at the first failure.
//!
//! With no arguments it prints help.

use clap::{Parser, Subcommand};

#[cfg(test)]
mod tidy;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// OmniQ workspace tasks.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Run the backend conformance suite and write a JSON report per backend.
    ///
    /// A named backend whose server is unreachable fails (OMNIQ_REQUIRE_SERVICES=1);
    /// with `all`, an unreachable server is a visible skip unless OMNIQ_REQUIRE_SERVICES=1
    /// is already set.
    Conformance {
        /// Which backend to run (a crate `crates/omniq-<name>` with a `conformance*` test
        /// target), or `all` for every one in this workspace.
        #[arg(long, default_value = "all")]
        backend: String,
        /// Where the JSON reports go (default: target/conformance).
        #[arg(long, value_name = "DIR")]
        report_dir: Option<PathBuf>,
        /// The deployment to check instead of the test default: a server URL
        /// (`postgres://…`, `redis://…`, `redis-cluster://…`) or, for the embedded
        /// backends, a directory or database path. Passed to the suite as
        /// OMNIQ_CONFORMANCE_URL; needs one named --backend and runs its main
        /// `conformance` target. Every case works in a namespace of its own and the run
        /// deletes what it created.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Benchmark the backends in release mode: print a table of figures against their
    /// targets and write a JSON report. Not part of `ci` (it takes minutes).
    ///
    /// A named backend whose server is unreachable fails; with `all`, it is a visible skip.
    Bench {
        /// file, sqlite, postgres, redis, or all.
        #[arg(long, default_value = "all")]
        backend: String,
        /// Tasks in the main burn-down (default 50000).
        #[arg(long, value_name = "N")]
        tasks: Option<usize>,
        /// Where the JSON report goes (default: target/bench/report.json).
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// More options for the bench itself, after `--` (see `cargo xtask bench -- --help`).
        #[arg(last = true, value_name = "BENCH-OPTIONS")]
        extra: Vec<String>,
    },
    /// Run the failure harness (killed workers, restarted servers, injected storage
    /// faults, hangs, bad data, skewed clocks, load) on real worker processes and real
    /// servers; fails unless lost, double runs and panics are all 0.
    Chaos {
        /// file, sqlite, postgres, redis (comma-separated) or all.
        #[arg(long, default_value = "all")]
        backend: String,
        /// worker-kills, server-restarts, storage-faults, hang, bad-data, clock-skew, load
        /// (comma-separated) or all.
        #[arg(long, default_value = "all")]
        scenario: String,
        /// Tasks of the worker-kill scenario.
        #[arg(long, default_value_t = 10_000)]
        tasks: u64,
        /// The CI-sized variant of every scenario.
        #[arg(long)]
        small: bool,
        /// Also write the report (Markdown, or JSON for a .json name).
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
    },
    /// Run CI locally: tests, the quickstart, the conformance suite with services required,
    /// the failure harness's small variant, clippy
    /// with warnings denied, and rustfmt --check; stops at the first failure.
    Ci,
}

/// A backend crate's conformance test target.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// The backend name (`crates/omniq-<backend>`).
    backend: String,
    /// The test target (`conformance`, `conformance-cluster`, …).
    test: String,
}

/// Every `conformance*` test target of every `crates/omniq-<backend>` crate, by reading
/// the test files (`tests/conformance*.rs`) and the `[[test]]` names of each manifest.
fn discover(root: &Path) -> Vec<Target> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(root.join("crates")) else {
        return out;
    };
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs {
        let Some(backend) = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("omniq-"))
            .map(str::to_string)
        else {
            continue;
        };
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
        let mut tests: Vec<String> = manifest
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                let v = l
                    .strip_prefix("name")?
                    .trim_start()
                    .strip_prefix('=')?
                    .trim();
                let v = v.trim_matches('"');
                v.starts_with("conformance").then(|| v.to_string())
            })
            .collect();
        if tests.is_empty() && dir.join("tests").join("conformance.rs").is_file() {
            tests.push("conformance".into());
        }
        tests.sort();
        tests.dedup();
        out.extend(tests.into_iter().map(|test| Target {
            backend: backend.clone(),
            test,
        }));
    }
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = workspace_root();
    let result = match cli.command {
        Task::Conformance {
            backend,
            report_dir,
            url,
        } => {
            // A backend asked for by name must really run.
            let require = backend != "all";
            conformance(&root, &backend, report_dir, require, url.as_deref())
        }
        Task::Bench {
            backend,
            tasks,
            report,
            extra,
        } => bench(&root, &backend, tasks, report, &extra),
        Task::Chaos {
            backend,
            scenario,
            tasks,
            small,
            report,
        } => chaos(&root, &backend, &scenario, tasks, small, report.as_deref()),
        Task::Ci => ci(&root),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(manifest_dir)
}

fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Runs `cargo test -p omniq-<backend> --test <target>` for each selected conformance
/// target, with `OMNIQ_CONFORMANCE_REPORT_DIR` set, and `OMNIQ_REQUIRE_SERVICES=1` when
/// `require` (otherwise the variable is inherited as it is). With `url`, only the
/// backend's `conformance` target runs, with `OMNIQ_CONFORMANCE_URL=url`.
fn conformance(
    root: &Path,
    backend: &str,
    report_dir: Option<PathBuf>,
    require: bool,
    url: Option<&str>,
) -> Result<(), String> {
    if url.is_some() && backend == "all" {
        return Err(
            "--url names one deployment: pass the backend it belongs to with --backend NAME".into(),
        );
    }
    let report_dir = report_dir.unwrap_or_else(|| root.join("target").join("conformance"));
    let report_dir = if report_dir.is_absolute() {
        report_dir
    } else {
        std::env::current_dir()
            .map_err(|e| format!("cannot read the current directory: {e}"))?
            .join(report_dir)
    };
    let all = discover(root);
    if all.is_empty() {
        return Err("no backend crate with a conformance test target in this workspace".into());
    }
    let selected: Vec<&Target> = if backend == "all" {
        all.iter().collect()
    } else {
        let chosen: Vec<&Target> = all.iter().filter(|t| t.backend == backend).collect();
        if chosen.is_empty() {
            let mut names: Vec<&str> = all.iter().map(|t| t.backend.as_str()).collect();
            names.dedup();
            return Err(format!(
                "backend {backend:?} is not in this workspace (valid values: {}, all)",
                names.join(", ")
            ));
        }
        chosen
    };
    let selected: Vec<&Target> = match url {
        Some(_) => selected
            .into_iter()
            .filter(|t| t.test == "conformance")
            .collect(),
        None => selected,
    };
    if selected.is_empty() {
        return Err(format!(
            "backend {backend:?} has no `conformance` test target to run against --url"
        ));
    }
    let mut failed = Vec::new();
    for t in &selected {
        println!(
            "xtask: conformance: {} ({}; reports in {})",
            t.backend,
            t.test,
            report_dir.display()
        );
        let mut cmd = Command::new(cargo());
        cmd.current_dir(root)
            .args([
                "test",
                "-p",
                &format!("omniq-{}", t.backend),
                "--test",
                &t.test,
            ])
            .env("OMNIQ_CONFORMANCE_REPORT_DIR", &report_dir);
        if require {
            cmd.env("OMNIQ_REQUIRE_SERVICES", "1");
        }
        if let Some(url) = url {
            cmd.env("OMNIQ_CONFORMANCE_URL", url);
        }
        if !run(&mut cmd)? {
            failed.push(format!("{}/{}", t.backend, t.test));
        }
    }
    let names: Vec<String> = selected
        .iter()
        .map(|t| format!("{}/{}", t.backend, t.test))
        .collect();
    if failed.is_empty() {
        println!("xtask: conformance passed: {}", names.join(", "));
        Ok(())
    } else {
        Err(format!("conformance failed: {}", failed.join(", ")))
    }
}

/// The `cargo run --release -p omniq-bench -- …` arguments of `cargo xtask bench`.
fn bench_args(
    root: &Path,
    backend: &str,
    tasks: Option<usize>,
    report: Option<PathBuf>,
    extra: &[String],
) -> Result<Vec<OsString>, String> {
    let report = report.unwrap_or_else(|| root.join("target").join("bench").join("report.json"));
    let report = if report.is_absolute() {
        report
    } else {
        std::env::current_dir()
            .map_err(|e| format!("cannot read the current directory: {e}"))?
            .join(report)
    };
    let mut args: Vec<OsString> = ["run", "--release", "--quiet", "-p", "omniq-bench", "--"]
        .iter()
        .map(OsString::from)
        .collect();
    args.extend(["--backend".into(), backend.into()]);
    if let Some(n) = tasks {
        args.extend(["--tasks".into(), n.to_string().into()]);
    }
    args.extend(["--report".into(), report.into_os_string()]);
    args.extend(extra.iter().map(OsString::from));
    Ok(args)
}

/// Builds the bench in release mode and runs it from the workspace root.
fn bench(
    root: &Path,
    backend: &str,
    tasks: Option<usize>,
    report: Option<PathBuf>,
    extra: &[String],
) -> Result<(), String> {
    let args = bench_args(root, backend, tasks, report, extra)?;
    println!(
        "xtask: bench: cargo {}",
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root).args(&args);
    if run(&mut cmd)? {
        Ok(())
    } else {
        Err("bench failed".into())
    }
}

/// Runs `cargo run -p omniq-chaos -- run …` in the workspace root.
fn chaos(
    root: &Path,
    backend: &str,
    scenario: &str,
    tasks: u64,
    small: bool,
    report: Option<&Path>,
) -> Result<(), String> {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root).args([
        "run",
        "--quiet",
        "-p",
        "omniq-chaos",
        "--",
        "run",
        "--backend",
        backend,
        "--scenario",
        scenario,
        "--tasks",
        &tasks.to_string(),
    ]);
    if small {
        cmd.arg("--small");
    }
    if let Some(r) = report {
        let r = if r.is_absolute() {
            r.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| format!("cannot read the current directory: {e}"))?
                .join(r)
        };
        cmd.arg("--report").arg(r);
    }
    if run(&mut cmd)? {
        Ok(())
    } else {
        Err("chaos failed (see the table above)".into())
    }
}

fn ci(root: &Path) -> Result<(), String> {
    step("tests", root, &["test", "--workspace"])?;
    // The README's first command must keep working on a fresh machine.
    step(
        "quickstart",
        root,
        &["run", "--quiet", "--example", "quickstart"],
    )?;
    println!(
        "xtask: ci: conformance: OMNIQ_REQUIRE_SERVICES=1 cargo xtask conformance --backend all"
    );
    conformance(root, "all", None, true, None)
        .map_err(|e| format!("ci failed at step conformance: {e}"))?;
    // The failure harness, CI-sized (about three minutes for every backend).
    println!("xtask: ci: chaos: cargo xtask chaos --backend all --small");
    chaos(root, "all", "all", 10_000, true, None)
        .map_err(|e| format!("ci failed at step chaos: {e}"))?;
    step(
        "clippy",
        root,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    step("fmt", root, &["fmt", "--all", "--", "--check"])?;
    println!("xtask: ci passed");
    Ok(())
}

/// One CI step: `cargo <args>` in the workspace root.
fn step(name: &str, root: &Path, args: &[&str]) -> Result<(), String> {
    println!("xtask: ci: {name}: cargo {}", args.join(" "));
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root).args(args);
    if run(&mut cmd)? {
        Ok(())
    } else {
        Err(format!(
            "ci failed at step {name} (cargo {})",
            args.join(" ")
        ))
    }
}

/// Runs `cmd`, inheriting stdio; true when it exits successfully.
fn run(cmd: &mut Command) -> Result<bool, String> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    Ok(status.success())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn conformance_defaults_to_all_backends() {
        let cli = Cli::try_parse_from(["xtask", "conformance"]).map_err(|e| e.to_string());
        assert!(
            matches!(
                &cli,
                Ok(Cli {
                    command: Task::Conformance {
                        backend,
                        report_dir: None,
                        url: None,
                    }
                }) if backend == "all"
            ),
            "{cli:?}"
        );
    }

    #[test]
    fn bench_runs_the_release_harness_with_a_report_under_target() {
        let cli = Cli::try_parse_from([
            "xtask",
            "bench",
            "--backend",
            "sqlite",
            "--tasks",
            "1000",
            "--",
            "--no-linear",
        ])
        .map_err(|e| e.to_string());
        let Ok(Cli {
            command:
                Task::Bench {
                    backend,
                    tasks,
                    report,
                    extra,
                },
        }) = cli
        else {
            panic!("{cli:?}");
        };
        let root = workspace_root();
        let args = bench_args(&root, &backend, tasks, report, &extra).unwrap_or_default();
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let report = root.join("target/bench/report.json").display().to_string();
        assert_eq!(
            args,
            [
                "run",
                "--release",
                "--quiet",
                "-p",
                "omniq-bench",
                "--",
                "--backend",
                "sqlite",
                "--tasks",
                "1000",
                "--report",
                &report,
                "--no-linear",
            ],
        );
        // ci never runs the bench: it takes minutes.
        let src = include_str!("main.rs");
        let ci_body = src
            .split("fn ci(root: &Path)")
            .nth(1)
            .and_then(|s| s.split("\n}\n").next())
            .unwrap_or_default();
        assert!(
            !ci_body.is_empty() && !ci_body.contains("bench"),
            "{ci_body}"
        );
    }

    #[test]
    fn no_arguments_is_help() {
        let err = Cli::try_parse_from(["xtask"]).err().map(|e| e.kind());
        assert_eq!(
            err,
            Some(clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand)
        );
    }

    #[test]
    fn backends_are_discovered_from_their_conformance_targets() {
        let root = workspace_root();
        let found = discover(&root);
        assert!(
            found.contains(&Target {
                backend: "sqlite".into(),
                test: "conformance".into()
            }),
            "{found:?}"
        );
        // Every discovered target is a real test file or manifest entry of its crate.
        for t in &found {
            let dir = root.join("crates").join(format!("omniq-{}", t.backend));
            assert!(dir.join("Cargo.toml").is_file(), "{t:?}");
        }
        assert!(!found.iter().any(|t| t.backend == "core"), "{found:?}");
    }

    #[test]
    fn an_unknown_backend_names_the_valid_ones() {
        let err = conformance(&workspace_root(), "no-such-backend", None, true, None)
            .err()
            .unwrap_or_default();
        assert!(
            err.contains("valid values: ") && err.contains("sqlite"),
            "{err}"
        );
    }

    #[test]
    fn a_url_needs_a_named_backend() {
        let err = conformance(&workspace_root(), "all", None, true, Some("postgres://x"))
            .err()
            .unwrap_or_default();
        assert!(err.contains("--backend"), "{err}");
        let cli = Cli::try_parse_from([
            "xtask",
            "conformance",
            "--backend",
            "postgres",
            "--url",
            "postgres://db/omniq",
        ])
        .map_err(|e| e.to_string());
        assert!(
            matches!(&cli, Ok(Cli { command: Task::Conformance { url: Some(u), .. } }) if u == "postgres://db/omniq"),
            "{cli:?}"
        );
    }
}
