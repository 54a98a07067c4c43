//! Worker processes: spawn, SIGKILL, restart, stop gracefully, count their panics.

use crate::audit::AuditLog;
use crate::backend::Target;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One worker slot: the arguments it is started with and its current process.
#[derive(Debug)]
struct Slot {
    args: Vec<String>,
    child: Option<Child>,
    stderr: PathBuf,
}

/// The worker processes of one scenario.
#[derive(Debug)]
pub struct Workers {
    exe: PathBuf,
    dir: PathBuf,
    slots: Vec<Slot>,
    spawned: usize,
}

impl Workers {
    /// Starts one worker process per entry of `extra` (the arguments that differ per
    /// worker), each with `common` arguments, against `target`, appending to `audit`.
    /// Their standard error goes to files in `dir`.
    pub fn start(
        target: &Target,
        audit: &Path,
        dir: &Path,
        common: &[String],
        extra: &[Vec<String>],
    ) -> Result<Self> {
        let exe = std::env::var_os("OMNIQ_CHAOS_EXE")
            .map(PathBuf::from)
            .map_or_else(std::env::current_exe, Ok)
            .context("the chaos binary")?;
        let mut w = Self {
            exe,
            dir: dir.to_path_buf(),
            slots: Vec::new(),
            spawned: 0,
        };
        for e in extra {
            let mut args = vec!["worker".to_string()];
            args.extend(target.args());
            args.push("--audit".into());
            args.push(audit.display().to_string());
            args.extend(common.iter().cloned());
            args.extend(e.iter().cloned());
            w.slots.push(Slot {
                args,
                child: None,
                stderr: PathBuf::new(),
            });
        }
        for i in 0..w.slots.len() {
            w.spawn(i)?;
        }
        Ok(w)
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        self.spawned += 1;
        let stderr = self.dir.join(format!("worker-{}.stderr", self.spawned));
        let err = std::fs::File::create(&stderr)?;
        let slot = &mut self.slots[i];
        let child = Command::new(&self.exe)
            .args(&slot.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .with_context(|| format!("spawn {}", self.exe.display()))?;
        slot.child = Some(child);
        slot.stderr = stderr;
        Ok(())
    }

    /// Number of worker slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when there are no slots.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// SIGKILLs worker `i` (logging it) and starts a fresh one in its place.
    pub fn kill_and_restart(&mut self, i: usize, log: &AuditLog) -> Result<()> {
        if let Some(mut c) = self.slots[i].child.take() {
            let pid = c.id();
            let _ = c.kill();
            let _ = c.wait();
            log.kill(pid);
        }
        self.spawn(i)
    }

    /// The pids of the live workers.
    pub fn pids(&self) -> Vec<u32> {
        self.slots
            .iter()
            .filter_map(|s| s.child.as_ref().map(Child::id))
            .collect()
    }

    /// Closes every worker's standard input (a graceful stop), waits up to `timeout`
    /// for them, SIGKILLs the rest. Returns the workers that did not exit cleanly.
    pub fn stop(&mut self, timeout: Duration) -> Vec<String> {
        for s in &mut self.slots {
            if let Some(c) = s.child.as_mut() {
                drop(c.stdin.take());
            }
        }
        let deadline = Instant::now() + timeout;
        let mut bad = Vec::new();
        for s in &mut self.slots {
            let Some(mut c) = s.child.take() else {
                continue;
            };
            loop {
                match c.try_wait() {
                    Ok(Some(status)) => {
                        if !status.success() {
                            bad.push(format!("worker {} exited with {status}", c.id()));
                        }
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        bad.push(format!("worker {} did not stop within {timeout:?}", c.id()));
                        break;
                    }
                }
            }
        }
        bad
    }

    /// Panics reported on the standard error of every process this scenario started.
    pub fn panics(&self) -> (u64, Vec<String>) {
        let mut n = 0;
        let mut lines = Vec::new();
        for i in 1..=self.spawned {
            let p = self.dir.join(format!("worker-{i}.stderr"));
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            for l in text.lines().filter(|l| l.contains("panicked at")) {
                n += 1;
                if lines.len() < 5 {
                    lines.push(l.to_string());
                }
            }
        }
        (n, lines)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for s in &mut self.slots {
            if let Some(mut c) = s.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Peak resident memory (VmHWM) of a live process, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
