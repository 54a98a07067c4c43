//! Private servers for the restart scenario: a Redis and a PostgreSQL of the scenario's
//! own on free ports in temporary directories, so that the shared servers other tests use
//! are never restarted.

use crate::backend::Target;
use crate::scenarios::{Chaos, ProcessRun, Row, Size};
use anyhow::{Context, Result, bail};
use omniq::Backend;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server the scenario can restart.
pub trait Restartable: Send {
    /// Stops the server abruptly and starts it again on the same port and data.
    fn restart(&mut self) -> Result<()>;
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_port(port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing listens on port {port} after {timeout:?}")
}

/// `redis-server --port <free> --appendonly yes --appendfsync always --dir <tmp>`.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one; an error when `redis-server` is not installed.
    pub fn start() -> Result<Self> {
        let mut s = Self {
            port: free_port()?,
            dir: tempfile::Builder::new()
                .prefix("omniq-chaos-redis-")
                .tempdir()?,
            child: None,
        };
        s.spawn()?;
        Ok(s)
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("redis-server")?;
        self.child = Some(child);
        wait_port(self.port, Duration::from_secs(30))
    }
}

impl Restartable for RedisServer {
    fn restart(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            // SIGKILL: the append-only file (fsync always) is all that survives.
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A PostgreSQL cluster of its own: `initdb` in a temporary directory, `pg_ctl` on a
/// free port. As root it runs as the `postgres` user (`runuser`), since PostgreSQL
/// refuses to run as root.
#[derive(Debug)]
pub struct PostgresServer {
    port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
}

impl PostgresServer {
    /// Creates and starts one.
    pub fn start() -> Result<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .context("/usr/lib/postgresql (PostgreSQL server binaries)")?
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").is_file())
            .max()
            .context("no initdb under /usr/lib/postgresql/*/bin")?;
        let dir = tempfile::Builder::new()
            .prefix("omniq-chaos-pg-")
            .tempdir()?;
        let as_postgres = is_root();
        if as_postgres {
            run(Command::new("chown").arg("postgres").arg(dir.path()))?;
        }
        let s = Self {
            port: free_port()?,
            dir,
            bin,
            as_postgres,
        };
        let data = s.data();
        s.run_pg("initdb", &["-D", &data, "-A", "trust", "-U", "postgres"])?;
        s.pg_ctl(&["start"])?;
        wait_port(s.port, Duration::from_secs(30))?;
        Ok(s)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run_pg(&self, tool: &str, args: &[&str]) -> Result<()> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.args(args).current_dir(self.dir.path());
        run(&mut cmd)
    }

    fn pg_ctl(&self, what: &[&str]) -> Result<()> {
        let data = self.data();
        let log = self.dir.path().join("server.log").display().to_string();
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let mut args = vec!["-D", &data, "-l", &log, "-w", "-o", &opts];
        args.extend_from_slice(what);
        self.run_pg("pg_ctl", &args)
    }
}

impl Restartable for PostgresServer {
    fn restart(&mut self) -> Result<()> {
        // Immediate mode: no clean shutdown, crash recovery at start.
        self.pg_ctl(&["-m", "immediate", "restart"])?;
        wait_port(self.port, Duration::from_secs(30))
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "stop"]);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}{}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Scenario 2: Server restarts (Postgres and Redis only): a private server restarted twice
/// mid-run under three workers; they reconnect by themselves.
pub async fn server_restarts(backend: Backend, size: Size) -> Result<Option<Row>> {
    let mut redis;
    let mut pg;
    let server: &mut dyn Restartable;
    let url = match backend {
        Backend::Redis => {
            redis = RedisServer::start()?;
            let u = redis.url();
            server = &mut redis;
            u
        }
        Backend::Postgres => {
            pg = PostgresServer::start()?;
            let u = pg.url();
            server = &mut pg;
            u
        }
        _ => return Ok(None),
    };
    let target = Target::new(backend, "server_restarts", Some(&url))?;
    let tasks = size.pick(3000, 300);
    let row = ProcessRun {
        name: "server-restarts",
        tasks,
        task_ms: crate::scenarios::task_ms(tasks, 3, size.pick(15, 5)),
        common: vec![
            "--concurrency".into(),
            "4".into(),
            "--lease-ms".into(),
            "5000".into(),
            "--storage-timeout-ms".into(),
            "3000".into(),
        ],
        workers: vec![vec![]; 3],
        chaos: Chaos::Restarts {
            server,
            every: Duration::from_millis(size.pick(4000, 1500)),
            times: 2,
        },
        deadline: Duration::from_secs(size.pick(300, 120)),
    }
    .run(&target)
    .await?;
    Ok(Some(row))
}
