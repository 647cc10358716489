//! Helpers for hostile-client tests: the real `meshsync serve` with its addresses parsed from the
//! serving line, raw TCP sockets, and the child's CPU time from `/proc`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::binary::{BIN, Serve, serve_args, without_meshsync_env};
use super::log_text::text_field;

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
    let args = serve_args(&datastore, extra);
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
            without_meshsync_env(&mut cmd);
            Serve::spawn(cmd)
        }
    };
    let line = serve.wait_serving();
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
