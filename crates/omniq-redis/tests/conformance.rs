//! The OmniQ conformance suite against one Redis deployment (`OMNIQ_CONFORMANCE_URL`, else
//! `OMNIQ_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`). Every case gets a fresh namespace; all of this
//! run's keys are deleted at the end.

mod common;

fn main() -> std::process::ExitCode {
    let url = std::env::var("OMNIQ_CONFORMANCE_URL").unwrap_or_else(|_| common::redis_url());
    common::run_conformance(url, "redis")
}
