//! The simulated agents: N clients of one system in this one tokio process, each on its own
//! connection, each doing the same work in every system — decode every event and apply it to a
//! local map — while the latency of every update of the current generation is recorded.
//!
//! Protocol with the orchestrator:
//! - stdout: one [`AgentsMessage`] JSON object per line: `progress` every 250 ms, `synced` once
//!   every client has synced or failed, `report` in answer to `report`, `error` on fatal problems.
//! - stdin, one command per line: `reset <generation>` (count only updates stamped with that
//!   generation from now on; clears the latency histograms and counters; answered at once by a
//!   `progress` line with `received: 0`, so everything read after that line is about the new
//!   generation), `report`, `quit`; for the `stalled` scenario `stall <count>` (that many clients,
//!   spread over the ids, stop reading their stream), `resume`, and `catchup <generation>` (count
//!   the clients holding a value of that generation: see [`stall`]). EOF on stdin is `quit`.
//!
//! Snapshot data (the initial sync and any resync after a reconnect) is applied but never counted:
//! only live updates are deliveries.

//!
//! One file per kind of client: [`meshsync`] (the agent library), [`events`] (the floor and raw
//! meshsync clients), [`etcd`] (etcd and grpc-proxy); all record into one [`recorder::Recorder`].
//! Typha's clients speak this same protocol from a Go program built on Typha's own `syncclient`
//! (`peers/calico/cmd/typha-bench-agents`), which the orchestrator starts instead of this one.

mod etcd;
mod events;
mod meshsync;
mod recorder;
mod stall;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Args;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::child::{raise_nofile_limit, stdin_lines};
use crate::model::{AgentsMessage, System};
use recorder::{Recorder, lock, summarize};

#[derive(Args, Debug, Clone)]
pub struct AgentsArgs {
    /// The system the clients talk to.
    #[arg(long, value_enum)]
    pub system: System,
    /// `http://127.0.0.1:P` (meshsync, etcd, grpc-proxy) or `127.0.0.1:P` (floor).
    #[arg(long)]
    pub target: String,
    /// A second server of the same system (a replica), tried when `target` fails (meshsync
    /// agents and etcd clients list both).
    #[arg(long)]
    pub fallback_target: Option<String>,
    /// Number of clients, each with its own connection.
    #[arg(long)]
    pub n: usize,
    /// Keys a client must hold to call itself in sync (meshsync) / expected in the snapshot.
    #[arg(long)]
    pub keys: usize,
    /// Clients connecting and syncing at the same time (0: all at once). A client holds its slot
    /// from its first connection attempt until it is in sync or has failed.
    #[arg(long, default_value_t = 0)]
    pub connect_concurrency: usize,
    /// Connection attempts before a client that never synced counts as failed.
    #[arg(long, default_value_t = 5)]
    pub attempts: u32,
    /// Timeout of one TCP/HTTP2 connect, seconds.
    #[arg(long, default_value_t = 20.0)]
    pub connect_timeout_s: f64,
    /// The meshsync client: the agent library (`Agent` and its `Mirror`, what a node agent runs)
    /// or `raw` (the generated gRPC client applying updates to a plain map, like the floor's
    /// clients).
    #[arg(long, value_enum, default_value_t = MeshsyncClient::Agent)]
    pub meshsync_client: MeshsyncClient,
}

/// How the meshsync clients are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MeshsyncClient {
    Agent,
    Raw,
}

/// Prints one protocol message on stdout, flushed.
fn emit(message: &AgentsMessage) {
    let Ok(line) = serde_json::to_string(message) else {
        return;
    };
    let mut out = std::io::stdout().lock();
    // A closed stdout means the orchestrator is gone; stdin's EOF will end us.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// A jittered, growing delay before attempt `attempt + 1`: 50 ms doubling to 2 s, × 0.5..1 (the
/// model's backoff; `_client` is kept so call sites say whose retry it is).
fn backoff(_client: usize, attempt: u32) -> Duration {
    meshsync_model::jittered_backoff(Duration::from_millis(50), Duration::from_secs(2), attempt)
}

pub async fn run(args: AgentsArgs) -> anyhow::Result<()> {
    let result = run_inner(args).await;
    if let Err(e) = &result {
        emit(&AgentsMessage::Error {
            message: format!("{e:#}"),
        });
    }
    result
}

async fn run_inner(args: AgentsArgs) -> anyhow::Result<()> {
    match raise_nofile_limit() {
        Ok(limit) if (limit as usize) < args.n + 64 => warn!(
            limit,
            n = args.n,
            "the open-file limit is below the number of clients"
        ),
        Ok(_) => {}
        Err(e) => warn!("cannot raise the open-file limit: {e}"),
    }
    check_target(&args)?;
    let mut commands = stdin_lines();
    let shared = Arc::new(Recorder::new(args.n));
    let args = Arc::new(args);
    spawn_clients(args.clone(), &shared);

    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut synced_sent = false;
    let mut reconnects_seen = 0;
    if shared.n == 0 {
        shared.all_done.notify_one();
    }
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                emit(&shared.progress());
                let reconnects = shared.reconnects.load(Ordering::Relaxed);
                if reconnects != reconnects_seen {
                    warn!(reconnects, "synced clients reconnected (their resync is not counted)");
                    reconnects_seen = reconnects;
                }
            }
            () = shared.all_done.notified(), if !synced_sent => {
                synced_sent = true;
                let mut per_agent_s = lock(&shared.sync_times).clone();
                per_agent_s.sort_by(f64::total_cmp);
                emit(&AgentsMessage::Synced {
                    per_agent_s,
                    failed: shared.failed.load(Ordering::Relaxed),
                });
            }
            () = shared.stall.all_caught.notified() => emit(&shared.progress()),
            command = commands.recv() => {
                let Some(command) = command else { break };
                if handle_command(&command, &shared, &args) == Flow::Quit {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Only the raw meshsync clients can stall (they own their stream's read loop).
fn stalls_supported(args: &AgentsArgs) -> bool {
    args.system.is_meshsync() && args.meshsync_client == MeshsyncClient::Raw
}

/// The floor takes `host:port`; every other system a URL. Typha's clients are not here.
fn check_target(args: &AgentsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.system.typha_clients(),
        "{}'s clients are Typha's, the Go program typha-bench-agents (peers/calico), not this process",
        args.system.name()
    );
    if matches!(args.system, System::Floor) {
        anyhow::ensure!(
            !args.target.contains("://"),
            "the floor target is host:port, not {:?}",
            args.target
        );
    } else {
        anyhow::ensure!(
            args.target.starts_with("http://") || args.target.starts_with("https://"),
            "the {} target must be a URL like http://127.0.0.1:P, not {:?}",
            args.system.name(),
            args.target
        );
    }
    Ok(())
}

/// Starts the `n` clients, each waiting for a connect slot when `--connect-concurrency` is set.
fn spawn_clients(args: Arc<AgentsArgs>, shared: &Arc<Recorder>) {
    let slots =
        (args.connect_concurrency > 0).then(|| Arc::new(Semaphore::new(args.connect_concurrency)));
    info!(system = args.system.name(), n = args.n, target = %args.target, "starting clients");
    for id in 0..args.n {
        let (shared, args, slots) = (shared.clone(), args.clone(), slots.clone());
        tokio::spawn(async move {
            let slot = match slots {
                Some(s) => s.acquire_owned().await.ok(),
                None => None,
            };
            match args.system {
                System::Meshsync
                | System::MeshsyncZstd
                | System::MeshsyncFull
                | System::MeshsyncBaseline
                    if args.meshsync_client == MeshsyncClient::Raw =>
                {
                    events::event_client(id, &args, &shared, slot).await
                }
                System::Meshsync
                | System::MeshsyncZstd
                | System::MeshsyncFull
                | System::MeshsyncBaseline => {
                    meshsync::meshsync_client(id, &args, &shared, slot).await
                }
                System::Etcd | System::GrpcProxy => {
                    etcd::etcd_client(id, &args, &shared, slot).await
                }
                System::Floor => events::event_client(id, &args, &shared, slot).await,
                // Refused by `check_target`: Typha's clients are the Go program.
                System::Typha | System::MeshsyncTypha => {
                    shared.mark_failed(id, "not a Typha client")
                }
            }
        });
    }
}

/// Whether the command loop goes on after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

/// One stdin command: `reset <generation>`, `report`, `stall <count>`, `resume`,
/// `catchup <generation>` or `quit`.
fn handle_command(command: &str, shared: &Recorder, args: &AgentsArgs) -> Flow {
    let mut words = command.split_whitespace();
    match (words.next(), words.next()) {
        (Some("stall"), Some(count)) => match count.parse::<usize>() {
            Ok(_) if !stalls_supported(args) => emit(&AgentsMessage::Error {
                message: format!(
                    "stalling is implemented for the raw meshsync clients only, not {} ({:?})",
                    args.system.name(),
                    args.meshsync_client
                ),
            }),
            Ok(count) => {
                let stalled = shared.stall.stall(count);
                info!(stalled, "clients stop reading");
                emit(&shared.progress());
            }
            Err(_) => warn!("bad count in {command:?}"),
        },
        (Some("resume"), None) => {
            shared.stall.resume();
            info!("stalled clients read again");
            emit(&shared.progress());
        }
        (Some("catchup"), Some(generation)) => match generation.parse::<u64>() {
            Ok(g) => {
                shared.stall.expect_catchup(g);
                emit(&shared.progress());
            }
            Err(_) => warn!("bad generation in {command:?}"),
        },
        (Some("reset"), Some(generation)) => match generation.parse::<u64>() {
            Ok(g) => {
                shared.reset(g);
                // Acknowledges the reset: every later line counts generation g only.
                emit(&shared.progress());
            }
            Err(_) => warn!("bad generation in {command:?}"),
        },
        (Some("report"), None) => {
            let histogram = shared.merged();
            emit(&AgentsMessage::Report {
                received: histogram.len(),
                latency: summarize(&histogram),
            });
        }
        (Some("quit"), None) => return Flow::Quit,
        (None, _) => {}
        _ => warn!("unknown command {command:?}"),
    }
    Flow::Continue
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_jittered() {
        for attempt in 0..10 {
            let d = backoff(7, attempt).as_millis() as u64;
            let base = (50u64 << attempt.min(6)).min(2000);
            assert!(d >= base / 2 && d <= base, "{attempt}: {d}");
        }
    }
}
