//! The agents process seen from the orchestrator: the `agents` subcommand started as a child (for
//! Typha's clients — the `typha` and `meshsync-typha` systems — the Go program
//! `typha-bench-agents`, which speaks the same protocol), commands written to its stdin, its JSON
//! lines read back as [`AgentsMessage`]s.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::mpsc;

use super::peers::Bins;
use super::{RunArgs, bar};
use crate::model::{AgentsMessage, Latency, System};
use crate::procs::Proc;

/// The Typha clients: a Go program on Typha's own `syncclient` (`peers/calico`).
pub(super) const TYPHA_AGENTS_BIN: &str = "typha-bench-agents";

/// The agents process and its message stream.
pub(super) struct AgentsProc {
    pub(super) proc: Proc,
    stdin: ChildStdin,
    messages: mpsc::UnboundedReceiver<AgentsMessage>,
    pub(super) received: u64,
    /// From the latest progress line: clients holding the catch-up marker, and reconnections.
    pub(super) caught_up: usize,
    pub(super) reconnects: usize,
}

impl AgentsProc {
    pub(super) fn spawn(
        system: System,
        target: &str,
        fallback: Option<&str>,
        args: &RunArgs,
        bins: &Bins,
        logs: &Path,
    ) -> anyhow::Result<Self> {
        let mut cmd = if system.typha_clients() {
            Command::new(bins.peer(TYPHA_AGENTS_BIN)?)
        } else {
            let mut cmd = Command::new(std::env::current_exe()?);
            cmd.arg("agents")
                .arg("--system")
                .arg(system.name())
                .arg("--meshsync-client")
                .arg(match args.meshsync_client {
                    crate::agents::MeshsyncClient::Raw => "raw",
                    crate::agents::MeshsyncClient::Agent => "agent",
                });
            cmd
        };
        if let Some(fallback) = fallback {
            cmd.arg("--fallback-target").arg(fallback);
        }
        cmd.arg("--target")
            .arg(target)
            .arg("--n")
            .arg(args.agents.to_string())
            .arg("--keys")
            .arg(args.keys.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut proc = Proc::spawn(
            "agents",
            cmd,
            &logs.join(format!("agents-{}.log", system.name())),
        )?;
        let stdin = proc.child.stdin.take().context("agents stdin")?;
        let stdout = proc.child.stdout.take().context("agents stdout")?;
        let (tx, messages) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<AgentsMessage>(&line) {
                    Ok(m) => {
                        if tx.send(m).is_err() {
                            return;
                        }
                    }
                    Err(e) => eprintln!("agents: unreadable line ({e}): {line}"),
                }
            }
        });
        Ok(AgentsProc {
            proc,
            stdin,
            messages,
            received: 0,
            caught_up: 0,
            reconnects: 0,
        })
    }

    pub(super) async fn command(&mut self, line: &str) -> anyhow::Result<()> {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    pub(super) async fn next(&mut self, timeout: Duration) -> anyhow::Result<AgentsMessage> {
        match tokio::time::timeout(timeout, self.messages.recv()).await {
            Ok(Some(AgentsMessage::Error { message })) => anyhow::bail!("agents: {message}"),
            Ok(Some(m)) => {
                if let AgentsMessage::Progress {
                    received,
                    caught_up,
                    reconnects,
                    ..
                } = &m
                {
                    self.received = *received;
                    self.caught_up = *caught_up;
                    self.reconnects = *reconnects;
                }
                Ok(m)
            }
            Ok(None) => {
                self.proc.check_alive()?;
                anyhow::bail!("the agents process closed its output")
            }
            Err(_) => anyhow::bail!("no word from the agents process for {timeout:?}"),
        }
    }

    /// Waits (at most `timeout` in all) for a message that satisfies `done`.
    pub(super) async fn wait_progress(
        &mut self,
        timeout: Duration,
        done: impl Fn(&AgentsMessage) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            anyhow::ensure!(
                !left.is_zero(),
                "the agents did not get there within {timeout:?}"
            );
            if done(&self.next(left).await?) {
                return Ok(());
            }
        }
    }

    /// Waits for `Synced`, showing progress.
    pub(super) async fn wait_synced(&mut self, agents: usize) -> anyhow::Result<(Vec<f64>, usize)> {
        let pb = bar(agents as u64, "agents synced");
        loop {
            match self.next(Duration::from_secs(120)).await? {
                AgentsMessage::Progress { synced, failed, .. } => {
                    pb.set_position(synced as u64);
                    if failed > 0 {
                        pb.set_message(format!("{failed} failed"));
                    }
                }
                AgentsMessage::Synced {
                    per_agent_s,
                    failed,
                } => {
                    pb.finish_and_clear();
                    return Ok((per_agent_s, failed));
                }
                _ => {}
            }
        }
    }

    /// Waits until `target` updates were received (or the timeout), then asks for the report.
    pub(super) async fn drain_and_report(
        &mut self,
        target: u64,
        timeout: Duration,
    ) -> anyhow::Result<(u64, Latency, Duration)> {
        let pb = bar(target, "deliveries");
        let start = Instant::now();
        while self.received < target && start.elapsed() < timeout {
            let left = timeout
                .saturating_sub(start.elapsed())
                .max(Duration::from_millis(1));
            match tokio::time::timeout(left, self.next(Duration::from_secs(60))).await {
                Ok(r) => {
                    r?;
                }
                Err(_) => break,
            }
            pb.set_position(self.received);
        }
        pb.finish_and_clear();
        let drained = start.elapsed();
        self.command("report").await?;
        loop {
            if let AgentsMessage::Report { received, latency } =
                self.next(Duration::from_secs(60)).await?
            {
                return Ok((received, latency, drained));
            }
        }
    }
}
