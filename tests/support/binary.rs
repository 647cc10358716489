//! The real `meshsync` binary in tests: a command without inherited `MESHSYNC_*` settings, and a
//! `serve` child process whose stderr log is read line by line, killed when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use super::log_text::text_message_is;

pub const BIN: &str = env!("CARGO_BIN_EXE_meshsync");
/// Longest wait for a server log line or a short-lived command.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A `meshsync` command with no `MESHSYNC_*` settings inherited from the environment.
pub fn meshsync() -> Command {
    let mut cmd = Command::new(BIN);
    without_meshsync_env(&mut cmd);
    cmd.stdin(Stdio::null());
    cmd
}

/// Keeps `cmd` from inheriting any `MESHSYNC_*` setting from the test's environment.
pub fn without_meshsync_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MESHSYNC_") {
            cmd.env_remove(&name);
        }
    }
}

/// `serve --datastore DATASTORE` on OS-chosen loopback ports (gRPC and health), then `extra`.
pub fn serve_args(datastore: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "serve",
        "--datastore",
        datastore,
        "--listen",
        "127.0.0.1:0",
        "--health-listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
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
        let mut cmd = meshsync();
        cmd.args(args);
        Serve::spawn(cmd)
    }

    /// `meshsync serve` over `datastore` on OS-chosen loopback ports, with `extra` arguments.
    pub fn on_loopback(datastore: &str, extra: &[&str]) -> Serve {
        let args = serve_args(datastore, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Serve::start(&args)
    }

    /// Starts `cmd` (which must end up running `meshsync serve`) with its stderr read line by line.
    pub fn spawn(mut cmd: Command) -> Serve {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn meshsync serve");
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

    /// Waits for the `meshsync serving` line (it names the bound addresses) and returns it.
    pub fn wait_serving(&mut self) -> String {
        self.wait_line("the serving line", |l| {
            text_message_is(l, "meshsync serving")
        })
    }

    pub fn count(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.lines.iter().filter(|l| pred(l)).count()
    }

    /// Kills the server and returns its whole stderr, read to the end.
    pub fn kill_and_collect(&mut self) -> Vec<String> {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.lines.push(line),
                Err(RecvTimeoutError::Disconnected) => return self.lines.clone(),
                Err(RecvTimeoutError::Timeout) => panic!("stderr did not close after the kill"),
            }
        }
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
