//! The `storm` scenario: every agent loses its server at once, 1 % of the keys change meanwhile,
//! and the agents come back — what does that cost compared with the first full snapshot?
//!
//! Two events, one after the other, on the agents connected by the snapshot step (each agent
//! lists the first server, then a second replica started beside it):
//! - `move`: the first server is killed; the agents fail over to the replica, which has been
//!   running (and in sync) all along — anti-entropy for meshsync, a revision resume for etcd
//!   clients of grpc-proxy, a full snapshot for `meshsync-full`.
//! - `restart`: the replica is killed and the first server restarted on its port (a new process,
//!   a new epoch); the agents come back to it.
//!
//! Before each event the agents are told to expect a marker (`catchup`); the changed keys and
//! then the marker are written while no server is there; recovery ends when every agent holds the
//! marker, by whatever path. Bytes and CPU are the serving process's over the recovery.

use std::path::Path;
use std::time::{Duration, Instant};

use super::RunArgs;
use super::peers::Bins;
use super::servers::start_server_at;
use super::steps::Bench;
use crate::model::{AgentsMessage, SnapshotResult, StormResult, StormStep};
use crate::procs::{self, Proc};
use crate::workload;

/// The second replica the agents fail over to.
pub(super) struct Replica {
    pub(super) proc: Proc,
    pub(super) target: String,
}

pub(super) async fn storm(
    bench: &mut Bench,
    args: &RunArgs,
    bins: &Bins,
    logs: &Path,
    snapshot: &SnapshotResult,
    replica: Replica,
    first_port: u16,
) -> anyhow::Result<StormResult> {
    let fanout_role = bench
        .server
        .as_ref()
        .map(|p| p.role.clone())
        .unwrap_or_default();
    let snapshot_bytes = snapshot
        .server
        .iter()
        .find(|u| u.role == fanout_role)
        .map(|u| u.bytes_written)
        .unwrap_or(0);
    let mut result = StormResult {
        snapshot_bytes,
        snapshot_s: snapshot.total_s,
        steps: Vec::new(),
    };
    let changed = (args.keys / 100).max(1);

    // move: the first server dies; the replica (already in sync) takes every agent.
    let marker = expect_marker(bench).await?;
    if let Some(first) = bench.server.take() {
        first.stop().await;
    }
    let before = replica.proc.sample();
    let start = Instant::now();
    write_changes(bench, args, changed, marker).await?;
    let caught_up = wait_caught_up(bench, args).await?;
    let step = measure("move", changed, &replica.proc, before, start, caught_up);
    report(&step, &result);
    result.steps.push(step);

    // restart: the replica dies, the changes are written, the first server comes back on its
    // port as a new process.
    let marker = expect_marker(bench).await?;
    replica.proc.stop().await;
    write_changes(bench, args, changed, marker).await?;
    // From the spawn: agents connect as soon as the port is open, before the server says it is
    // ready; its bytes count from its start (`wchar` starts at 0), its start-up time included.
    let start = Instant::now();
    let (restarted, _) = start_server_at(
        bench.system,
        &bench.etcd,
        args,
        bins,
        logs,
        first_port,
        "-restarted",
    )
    .await?;
    let restarted = restarted.ok_or_else(|| anyhow::anyhow!("the system has no server process"))?;
    let before = procs::Sample::default();
    let caught_up = wait_caught_up(bench, args).await?;
    let step = measure("restart", changed, &restarted, before, start, caught_up);
    report(&step, &result);
    result.steps.push(step);
    bench.server = Some(restarted);
    Ok(result)
}

/// A new generation for the marker, announced to the agents (acknowledged before returning).
async fn expect_marker(bench: &mut Bench) -> anyhow::Result<u64> {
    bench.generation += 1;
    let marker = bench.generation;
    bench.agents.command(&format!("catchup {marker}")).await?;
    bench
        .agents
        .wait_progress(Duration::from_secs(60), |m| {
            matches!(m, AgentsMessage::Progress { caught_up: 0, .. })
        })
        .await?;
    Ok(marker)
}

/// 1 % of the keys (every 100th) with new values, then the marker on a key not among them.
async fn write_changes(
    bench: &mut Bench,
    args: &RunArgs,
    changed: usize,
    marker: u64,
) -> anyhow::Result<()> {
    for i in 0..changed {
        let k = (i * 100) % args.keys;
        bench
            .writer
            .put(
                workload::key(k),
                workload::value(k, marker - 1, workload::now_ns()),
            )
            .await?;
    }
    let k = args.keys - 1;
    bench
        .writer
        .put(
            workload::key(k),
            workload::value(k, marker, workload::now_ns()),
        )
        .await?;
    Ok(())
}

/// Waits until every agent holds the marker (at most `--drain-timeout`, at least 60 s); returns
/// how many did.
async fn wait_caught_up(bench: &mut Bench, args: &RunArgs) -> anyhow::Result<usize> {
    let timeout = Duration::from_secs_f64(args.drain_timeout.max(60.0));
    let all = args.agents;
    let done = bench
        .agents
        .wait_progress(
            timeout,
            |m| matches!(m, AgentsMessage::Progress { caught_up, .. } if *caught_up >= all),
        )
        .await;
    if let Err(e) = done {
        eprintln!(
            "  storm: {e:#} ({} of {all} caught up)",
            bench.agents.caught_up
        );
    }
    Ok(bench.agents.caught_up)
}

fn measure(
    kind: &str,
    changed: usize,
    server: &Proc,
    before: procs::Sample,
    start: Instant,
    caught_up: usize,
) -> StormStep {
    let after = server.sample();
    StormStep {
        kind: kind.into(),
        changed_keys: changed,
        bytes_sent: after.wchar.saturating_sub(before.wchar),
        recovery_s: start.elapsed().as_secs_f64(),
        server_cpu_s: (after.cpu_seconds - before.cpu_seconds).max(0.0),
        caught_up,
    }
}

fn report(step: &StormStep, result: &StormResult) {
    eprintln!(
        "  storm {}: {} keys changed; {} agents caught up in {:.2} s; sent {:.1} MiB ({:.1} % of the snapshot's {:.1} MiB, in {:.1} % of its {:.2} s)",
        step.kind,
        step.changed_keys,
        step.caught_up,
        step.recovery_s,
        step.bytes_sent as f64 / (1 << 20) as f64,
        100.0 * step.bytes_sent as f64 / result.snapshot_bytes.max(1) as f64,
        result.snapshot_bytes as f64 / (1 << 20) as f64,
        100.0 * step.recovery_s / result.snapshot_s.max(1e-9),
        result.snapshot_s
    );
}
