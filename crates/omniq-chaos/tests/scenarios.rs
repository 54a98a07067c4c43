//! Each chaos scenario as an ignored test: its CI-sized variant on every backend, run
//! through the real binary (`cargo test -p omniq-chaos -- --ignored`, or one by name).
//! CI runs the same with `cargo xtask chaos --backend all --small`.

use std::process::Command;

fn scenario(name: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_omniq-chaos"))
        .args(["run", "--backend", "all", "--small", "--scenario", name])
        .output()
        .expect("run omniq-chaos");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("chaos passed"), "{stdout}");
}

#[test]
#[ignore = "spawns worker processes and servers; run with --ignored"]
fn worker_kills() {
    scenario("worker-kills");
}

#[test]
#[ignore = "spawns worker processes and servers; run with --ignored"]
fn server_restarts() {
    scenario("server-restarts");
}

#[test]
#[ignore = "spawns worker processes and servers; run with --ignored"]
fn storage_faults() {
    scenario("storage-faults");
}

#[test]
#[ignore = "spawns worker processes and servers; run with --ignored"]
fn hang() {
    scenario("hang");
}

#[test]
#[ignore = "spawns worker processes and servers; run with --ignored"]
fn bad_data() {
    scenario("bad-data");
}

#[test]
#[ignore = "spawns worker processes and servers; run with --ignored"]
fn clock_skew() {
    scenario("clock-skew");
}

#[test]
#[ignore = "spawns worker processes and servers; run with --ignored"]
fn load() {
    scenario("load");
}
