//! # omniq-cli
//!
//! The `omniq` command: see and steer OmniQ queues without writing code, on any backend
//! the `omniq` facade builds (`file://`, `sqlite://`, `postgres://`, `redis://`), since
//! every command goes through the public [`omniq::Storage`] trait.
//!
//! - `omniq stats | list | show | retry | cancel | purge | enqueue` — one storage call
//!   or a few, `--json` for scripts;
//! - `omniq migrate --from URL --to URL` — [`migrate::migrate`]: copies every task and
//!   result between backends, resumable, verified field by field;
//! - `omniq dashboard` — [`dashboard`]: a server-rendered web UI with Prometheus
//!   metrics at `/metrics`, embeddable in an application as an axum router.
//!
//! Exit codes are [`Exit`]; the commands, flags and the dashboard's security model are
//! documented in `docs/cli.md`.
//!
//! The binary is a thin wrapper over [`run`], which a test or another tool can call
//! with its own arguments:
//!
//! ```no_run
//! let code = omniq_cli::run(["omniq", "stats", "--url", "sqlite://./omniq_data/omniq.db"]);
//! # let _ = code;
//! ```
//!
//! Copying between two storages from code (what `omniq migrate` does):
//!
//! ```no_run
//! # async fn demo(from: &dyn omniq::Storage, to: &dyn omniq::Storage) -> omniq_cli::CliResult<()> {
//! use omniq_cli::migrate::{MigrateOptions, NoProgress, migrate};
//!
//! let report = migrate(from, to, &MigrateOptions::default(), &NoProgress).await?;
//! assert!(report.is_complete(), "{:?}", report.verification.mismatches);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod cli;
mod commands;
mod connect;
pub mod dashboard;
mod error;
pub mod migrate;
mod view;

pub use connect::Target;
pub use error::{CliError, CliResult, Exit};

use clap::Parser;
use cli::{Cli, Command};
use std::ffi::OsString;
use std::process::ExitCode;

/// Parses `args` (the program name first) and runs the command; the exit code follows
/// [`Exit`]. Errors are printed to stderr as `omniq: error: …`.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed; usage errors exit 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                Exit::Usage.code()
            } else {
                0
            });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("omniq: error: cannot start the async runtime: {e}");
            return ExitCode::from(Exit::Failure.code());
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            for line in e.message.lines() {
                eprintln!("omniq: error: {line}");
            }
            ExitCode::from(e.exit.code())
        }
    }
}

async fn dispatch(cli: Cli) -> CliResult<()> {
    let g = &cli.global;
    let target = || Target::url_or_env(g.url.as_deref(), &g.namespace);
    match &cli.command {
        Command::Migrate(args) => migrate::run(g, args).await,
        Command::Dashboard(args) => dashboard::run(target(), args).await,
        other => {
            let ctx = commands::Ctx::open(target(), g.json).await?;
            let result = match other {
                Command::Stats(a) => commands::stats(&ctx, a).await,
                Command::List(a) => commands::list(&ctx, a).await,
                Command::Show(a) => commands::show(&ctx, a).await,
                Command::Retry(a) => commands::retry(&ctx, a).await,
                Command::Cancel(a) => commands::cancel(&ctx, a).await,
                Command::Purge(a) => commands::purge(&ctx, a).await,
                Command::Enqueue(a) => commands::enqueue(&ctx, a).await,
                Command::Migrate(_) | Command::Dashboard(_) => Ok(()),
            };
            let closed = ctx.close().await;
            result.and(closed)
        }
    }
}
