//! Helpers for hostile-client tests: the real `meshsync serve` with its addresses parsed from the
//! serving line, raw TCP sockets, and the child's CPU time from `/proc`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;

use super::binary::{BIN, ChildGuard, Serve};

/// Starts `cmd` (which must end up running `meshsync serve`) with its stderr read line by line.
pub fn start_command(mut cmd: Command) -> Serve {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the server");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Serve {
        child: ChildGuard(child),
        lines: Vec::new(),
        rx,
    }
}

/// The value of `name=` in a text-format log line.
pub fn text_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|token| token.strip_prefix(name)?.strip_prefix('='))
}

/// A `meshsync serve` on 127.0.0.1 with OS-chosen ports over an empty file datastore, started
/// with `extra` arguments; returns it with its gRPC and health addresses once it serves.
pub struct Served {
    pub serve: Serve,
    pub grpc: SocketAddr,
    pub health: SocketAddr,
    pub dir: tempfile::TempDir,
}

pub fn serve(extra: &[&str]) -> Served {
    serve_with(extra, None)
}

/// As [`serve`]; with `nofile`, the server runs with that open-file limit (soft and hard), set by
/// a shell that then `exec`s it, so the process id is the server's.
pub fn serve_with(extra: &[&str], nofile: Option<u32>) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let datastore = format!("file:{}", dir.path().display());
    let mut args: Vec<String> = [
        "serve",
        "--datastore",
        &datastore,
        "--listen",
        "127.0.0.1:0",
        "--health-listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut serve = match nofile {
        None => {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            Serve::start(&refs)
        }
        Some(n) => {
            let mut cmd = std::process::Command::new("sh");
            cmd.arg("-c")
                .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                .arg(BIN)
                .args(&args);
            for (name, _) in std::env::vars_os() {
                if name.to_string_lossy().starts_with("MESHSYNC_") {
                    cmd.env_remove(&name);
                }
            }
            start_command(cmd)
        }
    };
    let line = serve.wait_line("the serving line", |l| l.contains("meshsync serving"));
    let grpc = text_field(&line, "grpc")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no grpc= in {line:?}"));
    let health = text_field(&line, "health")
        .and_then(|t| t.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok())
        .unwrap_or_else(|| panic!("no health= in {line:?}"));
    Served {
        serve,
        grpc,
        health,
        dir,
    }
}

/// User plus system CPU time of process `pid` so far (Linux `/proc/PID/stat`).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on every Linux configuration we run on.
    Duration::from_millis(ticks * 10)
}

/// Resident set size of process `pid` in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Waits (blocking, up to `limit`) until `pred` holds, polling every 20 ms.
pub fn wait_until(what: &str, limit: Duration, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !pred() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
