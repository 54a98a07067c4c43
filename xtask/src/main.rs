//! `cargo xtask`: the workspace's automation, in Rust instead of shell scripts.
//!
//! - `cargo xtask conformance [--backend file|sqlite|postgres|redis|all] [--report-dir DIR]`
//!   runs the backend conformance suite (K4) and writes `DIR/<backend>.json`.
//! - `cargo xtask ci` runs what CI runs, stopping at the first failure.
//!
//! With no arguments it prints help.

use clap::{Parser, Subcommand, ValueEnum};
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
        /// Which backend to run; `all` runs every backend crate in this workspace.
        #[arg(long, value_enum, default_value_t = Backend::All)]
        backend: Backend,
        /// Where the JSON reports go (default: target/conformance).
        #[arg(long, value_name = "DIR")]
        report_dir: Option<PathBuf>,
    },
    /// Run CI locally: tests, the quickstart, the conformance suite with services required, clippy
    /// with warnings denied, and rustfmt --check; stops at the first failure.
    Ci,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    File,
    Sqlite,
    Postgres,
    Redis,
    All,
}

/// Every backend the project plans, in report order.
const BACKENDS: [&str; 4] = ["file", "sqlite", "postgres", "redis"];

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Redis => "redis",
            Self::All => "all",
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = workspace_root();
    let result = match cli.command {
        Task::Conformance {
            backend,
            report_dir,
        } => {
            // A backend asked for by name must really run (K4).
            let require = backend != Backend::All;
            conformance(&root, backend, report_dir, require)
        }
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

/// Whether the workspace has `crates/omniq-<backend>` with a conformance test.
fn backend_present(root: &Path, backend: &str) -> bool {
    root.join("crates")
        .join(format!("omniq-{backend}"))
        .join("tests")
        .join("conformance.rs")
        .is_file()
}

/// Runs `cargo test -p omniq-<name> --test conformance` per selected backend, with
/// `OMNIQ_CONFORMANCE_REPORT_DIR` set, and `OMNIQ_REQUIRE_SERVICES=1` when `require`
/// (otherwise the variable is inherited as it is).
fn conformance(
    root: &Path,
    backend: Backend,
    report_dir: Option<PathBuf>,
    require: bool,
) -> Result<(), String> {
    let report_dir = report_dir.unwrap_or_else(|| root.join("target").join("conformance"));
    let report_dir = if report_dir.is_absolute() {
        report_dir
    } else {
        std::env::current_dir()
            .map_err(|e| format!("cannot read the current directory: {e}"))?
            .join(report_dir)
    };

    let selected: Vec<&str> = match backend {
        Backend::All => {
            let (present, absent): (Vec<&str>, Vec<&str>) =
                BACKENDS.iter().partition(|b| backend_present(root, b));
            if !absent.is_empty() {
                println!(
                    "xtask: not in this workspace yet (no crates/omniq-<name>/tests/conformance.rs): {}",
                    absent.join(", ")
                );
            }
            if present.is_empty() {
                return Err("no backend crate with a conformance test in this workspace".into());
            }
            present
        }
        named => {
            if !backend_present(root, named.name()) {
                return Err(format!(
                    "backend {} is not in this workspace (crates/omniq-{}/tests/conformance.rs is missing)",
                    named.name(),
                    named.name()
                ));
            }
            vec![named.name()]
        }
    };

    let mut failed = Vec::new();
    for name in &selected {
        println!(
            "xtask: conformance: {name} (reports in {})",
            report_dir.display()
        );
        let mut cmd = Command::new(cargo());
        cmd.current_dir(root)
            .args([
                "test",
                "-p",
                &format!("omniq-{name}"),
                "--test",
                "conformance",
            ])
            .env("OMNIQ_CONFORMANCE_REPORT_DIR", &report_dir);
        if require {
            cmd.env("OMNIQ_REQUIRE_SERVICES", "1");
        }
        if !run(&mut cmd)? {
            failed.push(*name);
        }
    }
    if failed.is_empty() {
        println!("xtask: conformance passed: {}", selected.join(", "));
        Ok(())
    } else {
        Err(format!("conformance failed: {}", failed.join(", ")))
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
    conformance(root, Backend::All, None, true)
        .map_err(|e| format!("ci failed at step conformance: {e}"))?;
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
                cli,
                Ok(Cli {
                    command: Task::Conformance {
                        backend: Backend::All,
                        report_dir: None
                    }
                })
            ),
            "{cli:?}"
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
    fn sqlite_is_present_and_redis_is_detected_by_its_test_file() {
        let root = workspace_root();
        assert_eq!(
            backend_present(&root, "sqlite"),
            root.join("crates/omniq-sqlite/tests/conformance.rs")
                .is_file()
        );
        assert!(!backend_present(&root, "no-such-backend"));
    }
}
