//! Processes under test and what `/proc` says about them: CPU seconds, resident memory, bytes
//! written. Every server-side process is a real process started here and killed when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::{Child, Command};

use crate::model::ProcessUsage;

/// A point-in-time reading of one process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub wchar: u64,
    /// Write-type syscalls so far (`syscw`: write, writev, sendmsg, …).
    pub syscw: u64,
    /// Bytes read so far with `read(2)`-type calls (`rchar`; `recv(2)` is not counted).
    pub rchar: u64,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions; it only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Reads `/proc/<pid>/{stat,status,io}`. Missing files (the process ended) read as zero.
pub fn sample(pid: u32) -> Sample {
    let mut s = Sample::default();
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Fields after the command name (which may contain spaces) start after the last ')'.
        if let Some((_, rest)) = stat.rsplit_once(')') {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // rest[0] is field 3 (state); utime is field 14, stime 15.
            let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            s.cpu_seconds = (utime + stime) / clock_ticks();
        }
    }
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        for line in status.lines() {
            let kb = |l: &str| -> u64 {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    * 1024
            };
            if line.starts_with("VmRSS:") {
                s.rss_bytes = kb(line);
            } else if line.starts_with("VmHWM:") {
                s.peak_rss_bytes = kb(line);
            }
        }
    }
    if let Ok(io) = std::fs::read_to_string(format!("/proc/{pid}/io")) {
        for line in io.lines() {
            if let Some(v) = line.strip_prefix("wchar:") {
                s.wchar = v.trim().parse().unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("syscw:") {
                s.syscw = v.trim().parse().unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("rchar:") {
                s.rchar = v.trim().parse().unwrap_or(0);
            }
        }
    }
    s
}

/// Usage of `role` between two samples.
pub fn usage(role: &str, before: Sample, after: Sample) -> ProcessUsage {
    ProcessUsage {
        role: role.to_string(),
        cpu_seconds: (after.cpu_seconds - before.cpu_seconds).max(0.0),
        rss_bytes: after.rss_bytes,
        peak_rss_bytes: after.peak_rss_bytes,
        bytes_written: after.wchar.saturating_sub(before.wchar),
        write_syscalls: after.syscw.saturating_sub(before.syscw),
        bytes_read: after.rchar.saturating_sub(before.rchar),
    }
}

/// A free loopback port (bound and released; good enough on a quiet machine).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something accepts connections on `addr`.
pub async fn wait_port(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "nothing listens on {addr} after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A child process with a role name, killed on drop.
pub struct Proc {
    pub role: String,
    pub child: Child,
    pub pid: u32,
}

impl Proc {
    /// Spawns `command`; stderr goes to `log` (a file in the run directory).
    pub fn spawn(role: &str, mut command: Command, log: &Path) -> anyhow::Result<Proc> {
        let file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        command.stderr(Stdio::from(file));
        Proc::start(role, command)
    }

    /// Like [`Proc::spawn`], with stdout going to the same log (for programs that log on stdout).
    pub fn spawn_logging_stdout(
        role: &str,
        mut command: Command,
        log: &Path,
    ) -> anyhow::Result<Proc> {
        let file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let stdout = file
            .try_clone()
            .with_context(|| format!("opening {} twice", log.display()))?;
        command
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(file));
        Proc::start(role, command)
    }

    /// Starts `command`, killed when the returned `Proc` is dropped.
    fn start(role: &str, mut command: Command) -> anyhow::Result<Proc> {
        let child = command
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {role}"))?;
        let pid = child.id().context("child has no pid")?;
        Ok(Proc {
            role: role.to_string(),
            child,
            pid,
        })
    }

    pub fn sample(&self) -> Sample {
        sample(self.pid)
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => anyhow::bail!("{} exited: {status}", self.role),
        }
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// The last `lines` lines of a log file ("" when it cannot be read), for error messages.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A single-member etcd in its own directory.
pub struct EtcdProc {
    pub proc: Proc,
    pub port: u16,
    _dir: TempDir,
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl EtcdProc {
    pub async fn start(etcd_bin: &str, logs: &Path, name: &str) -> anyhow::Result<EtcdProc> {
        let port = free_port()?;
        let peer = free_port()?;
        let dir = std::env::temp_dir().join(format!(
            "meshsync-bench-{}-{name}-{port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let client = format!("http://127.0.0.1:{port}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut cmd = Command::new(etcd_bin);
        cmd.arg("--name")
            .arg(name)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(format!("{name}={peer_url}"))
            .arg("--quota-backend-bytes")
            .arg((8u64 << 30).to_string())
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let proc = Proc::spawn("etcd", cmd, &logs.join(format!("{name}.log")))
            .context("is etcd installed? (Debian package etcd-server)")?;
        wait_port(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(30),
        )
        .await?;
        Ok(EtcdProc {
            proc,
            port,
            _dir: TempDir(dir),
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A short description of this machine for the report.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kb| format!("{:.0} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), {mem} RAM")
}
