//! The real `meshsync` binary in tests: a command without inherited `MESHSYNC_*` settings, and a
//! `serve` child process whose stderr log is read line by line, killed when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
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

/// What a finished short-lived command did.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Finished {
    pub fn describe(&self) -> String {
        format!(
            "exit {:?} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs a command to completion, failing the test if it takes longer than `limit`.
pub fn run(cmd: &mut Command, limit: Duration) -> Finished {
    let start = Instant::now();
    let mut child = ChildGuard(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn meshsync"),
    );
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.0.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.0.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > limit {
            drop(child);
            panic!(
                "{cmd:?} did not exit within {limit:?}; stdout: {:?}; stderr: {:?}",
                stdout.join().unwrap_or_default(),
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    Finished {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        elapsed,
    }
}
