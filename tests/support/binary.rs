//! The real `meshsync` binary in tests: a command without inherited `MESHSYNC_*` settings, and a
//! `serve` child process whose stderr log is read line by line, killed when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_meshsync");
/// Longest wait for a server log line or a short-lived command.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A `meshsync` command with no `MESHSYNC_*` settings inherited from the environment.
pub fn meshsync() -> Command {
    let mut cmd = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MESHSYNC_") {
            cmd.env_remove(&name);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Kills and reaps its child when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A long-running `meshsync serve`: its stderr is read line by line on a thread.
pub struct Serve {
    pub child: ChildGuard,
    pub lines: Vec<String>,
    pub rx: Receiver<String>,
}

impl Serve {
    pub fn start(args: &[&str]) -> Serve {
        let mut child = meshsync()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn meshsync serve");
        let stderr = child.stderr.take().unwrap();
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

    /// Returns the first line (seen so far or arriving within the deadline) satisfying `pred`.
    pub fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.lines.iter().find(|l| pred(l)) {
            return line.clone();
        }
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.lines.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "timed out after {DEADLINE:?} waiting for {what}; server stderr so far:\n{}",
                    self.lines.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.0.try_wait();
                    panic!(
                        "server stderr closed ({status:?}) before {what}; stderr:\n{}",
                        self.lines.join("\n")
                    )
                }
            }
        }
    }

    pub fn count(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.lines.iter().filter(|l| pred(l)).count()
    }
}
