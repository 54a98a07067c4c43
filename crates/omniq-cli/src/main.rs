//! The `omniq` command. Everything lives in the `omniq_cli` library; see `omniq --help`.

fn main() -> std::process::ExitCode {
    omniq_cli::run(std::env::args_os())
}
