//! The OmniQ conformance suite against a 3-master Redis Cluster
//! (`OMNIQ_TEST_REDIS_CLUSTER_URL`, default the cluster `.ci/services/redis-cluster.sh` starts on
//! 127.0.0.1:7000-7002), reported as backend `redis-cluster`.

mod common;

fn main() -> std::process::ExitCode {
    common::run_conformance(common::cluster_url(), "redis-cluster")
}
