//! What PROD logging at INFO costs per task run, without a backend: the logging a worker
//! does for one task (its span, three polls inside it, the start and completion lines)
//! in a loop, first with no subscriber, then with OmniQ's PROD subscriber writing to a
//! file through the batching writer.
//!
//! ```sh
//! cargo run --release -p omniq-runtime --example log_cost -- 300000
//! ```
//!
//! Prints the wall time per task on the logging thread and the process's CPU time per task
//! (the writer thread included), each with the no-subscriber loop subtracted.

use std::time::{Duration, Instant};

use omniq_runtime::logging::{LogConfig, LogMode, log_task_completed, log_task_started, task_span};

/// This process's CPU time (every thread), from /proc, in seconds (1/100 s ticks).
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    let mut fields = rest.split_whitespace();
    let utime: f64 = fields
        .nth(11)
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    let stime: f64 = fields
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    (utime + stime) / 100.0
}

/// One task run's logging, as the worker does it.
fn one_run(i: u64) {
    let uuid = uuid::Uuid::from_u64_pair(0x0193_0000_0000_7000, i);
    // The worker formats the id once per run.
    let mut buf = uuid::Uuid::encode_buffer();
    let id: &str = uuid.hyphenated().encode_lower(&mut buf);
    let span = task_span(&id, &"process_task", &id, Some(&"worker-1"));
    {
        // The executor's first poll: the start line.
        let _entered = span.enter();
        log_task_started(id, 1);
    }
    {
        // The handler's task, instrumented with a clone of the span.
        let handler = span.clone();
        let _entered = handler.enter();
    }
    {
        // The executor's last poll: the completion line.
        let _entered = span.enter();
        log_task_completed(id, 1, Duration::from_micros(68));
    }
}

fn run(n: u64) -> (f64, f64) {
    let cpu = cpu_s();
    let t = Instant::now();
    for i in 0..n {
        one_run(i);
    }
    (t.elapsed().as_secs_f64(), cpu)
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300_000);
    let (base_wall, cpu0) = run(n);
    let base_cpu = cpu_s() - cpu0;

    let file = std::env::temp_dir().join(format!("omniq-log-cost-{}.log", std::process::id()));
    // No rotation during the run (the lines of 300 000 runs take about 200 MB).
    let config = LogConfig::default()
        .with_mode(LogMode::Prod)
        .with_file(&file)
        .with_rotation_bytes(1 << 40);
    let (writer, guard) = config.open_writer().expect("open the log file");
    tracing::subscriber::set_global_default(config.build_subscriber(writer))
        .expect("no other subscriber");
    let (wall, cpu0) = run(n);
    drop(guard); // writes and flushes every queued line
    let cpu = cpu_s() - cpu0;
    let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_file(&file);

    let per = |s: f64| s * 1e9 / n as f64;
    println!(
        "{n} runs: logging thread {:.0} ns/task (wall {:.0} − {:.0} without a subscriber), \
         process CPU {:.0} ns/task ({:.0} − {:.0}), {:.0} bytes/task",
        per(wall) - per(base_wall),
        per(wall),
        per(base_wall),
        per(cpu) - per(base_cpu),
        per(cpu),
        per(base_cpu),
        bytes as f64 / n as f64,
    );
}
