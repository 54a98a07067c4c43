//! The OmniQ conformance suite against one Redis server (`OMNIQ_TEST_REDIS_URL`,
//! default `redis://127.0.0.1:6379`). Every case gets a fresh namespace; all of this
//! run's keys are deleted at the end.

mod common;

fn main() -> std::process::ExitCode {
    common::run_conformance(common::redis_url(), "redis")
}
