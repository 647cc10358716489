//! The scenarios: for each system in turn, start etcd and the system's server side as real
//! processes, preload the same keys, start the same agents process, and measure `snapshot`,
//! `churn` and `saturate` with the same writes. Results go to `--out/<time>-<scenario>/`.

//!
//! [`servers`] starts each system's server side, [`agents_proc`] drives the agents process,
//! [`writer`] preloads and writes, [`steps`] measures, [`peers`] finds the binaries built from Go
//! modules (Typha).

mod agents_proc;
mod peers;
mod servers;
mod stalled;
mod steps;
mod storm;
mod writer;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use crate::model::{RunResult, System, SystemResult};
use crate::procs::{self, EtcdProc};
use crate::workload;
use agents_proc::AgentsProc;
use peers::{Bins, peers_bin};
use servers::start_server;
use steps::Bench;
use writer::{etcd_client, preload};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Snapshot,
    Churn,
    Saturate,
    /// snapshot, then churn, then saturate, on the same connected agents.
    All,
    /// snapshot, then rounds of (baseline churn, churn with `--stalled-fraction` of the agents
    /// not reading): healthy latency, server memory, the stalled agents' fate (meshsync only).
    Stalled,
    /// snapshot, then every agent loses its server twice (moved to a replica, then back to the
    /// first server restarted) while 1 % of the keys change: bytes and time to recover.
    Storm,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Which scenario(s) to run.
    #[arg(value_enum, default_value = "all")]
    scenario: Scenario,
    /// Simulated agents (each its own connection).
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Keys preloaded (~1 KiB WorkloadEndpoints). Every agent holds them all, so the agents
    /// process needs about agents × keys × 1.3 KB of memory.
    #[arg(long, default_value_t = 2_000)]
    keys: usize,
    /// `churn` write rate, updates/s.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// `churn` duration, seconds.
    #[arg(long, default_value_t = 15.0)]
    duration: f64,
    /// Systems to run, in order. `meshsync-baseline` (not in the default) is `meshsync` run with
    /// the `--baseline-bin` build, to compare two builds of meshsync in one interleaved run;
    /// `meshsync-typha` (not in the default) is `meshsync` serving Typha's protocol to the same
    /// Typha clients as `typha` (`snapshot`, `churn`, `saturate`, `all`).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "meshsync,meshsync-zstd,typha,grpc-proxy,etcd,floor"
    )]
    systems: Vec<System>,
    /// `saturate`: first write rate.
    #[arg(long, default_value_t = 50.0)]
    saturate_start: f64,
    /// `saturate`: each step multiplies the rate by this (2 = doubling; 1.5 resolves capacity more
    /// finely, for every system alike).
    #[arg(long, default_value_t = 1.5)]
    ramp_factor: f64,
    /// `saturate`: highest write rate tried.
    #[arg(long, default_value_t = 64_000.0)]
    saturate_max: f64,
    /// `saturate`: seconds per step.
    #[arg(long, default_value_t = 6.0)]
    step_duration: f64,
    /// Seconds to wait for deliveries after the writer stops.
    #[arg(long, default_value_t = 10.0)]
    drain_timeout: f64,
    /// Run the whole sequence of systems this many times, interleaved (round 1: every system,
    /// round 2: every system in reverse order, …); the report gives the median and range of
    /// every figure.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// `saturate`: after the ramp, bisect between the last good and the first bad rate this many
    /// times (geometric midpoints), so capacity is known to about ramp^(1/2^steps).
    #[arg(long, default_value_t = 2)]
    bisect_steps: u32,
    /// Results directory (a subdirectory per run is created).
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// The meshsync binary (default: next to this one; built with cargo when missing).
    #[arg(long)]
    meshsync_bin: Option<PathBuf>,
    /// The baseline build of meshsync the `meshsync-baseline` system runs (required with it),
    /// e.g. a release build of the commit before a change.
    #[arg(long, value_name = "PATH")]
    baseline_bin: Option<PathBuf>,
    /// The etcd binary.
    #[arg(long, default_value = "etcd")]
    etcd_bin: String,
    /// The folder with the peers built from Go modules (`calico-typha`, `typha-bench-agents`).
    /// Default: the last line printed by `scripts/peers.sh` of the checkout this binary was built
    /// from (which builds them when missing). Only needed for the `typha` and `meshsync-typha`
    /// systems.
    #[arg(long, value_name = "DIR", env = "MESHSYNC_PEERS_BIN")]
    peers_bin: Option<PathBuf>,
    /// `stalled`: the fraction of the agents that stop reading.
    #[arg(long, default_value_t = 0.1)]
    stalled_fraction: f64,
    /// `stalled`: (baseline, stalled) pairs per system and round.
    #[arg(long, default_value_t = 2)]
    stalled_rounds: usize,
    /// meshsync's `--write-timeout` (seconds; a connection whose stream sent nothing this long
    /// is closed). Default: the server's own (120 s), except 5 s in the `stalled` scenario so
    /// that the stall outlasts it.
    #[arg(long)]
    write_timeout: Option<f64>,
    /// meshsync's simulated agents: `raw` (generated gRPC client + a plain map: the same work the
    /// etcd and floor clients do) or `agent` (the full agent library: mirror, digests).
    #[arg(long, value_enum, default_value_t = crate::agents::MeshsyncClient::Raw)]
    meshsync_client: crate::agents::MeshsyncClient,
}

impl RunArgs {
    /// The `--write-timeout` meshsync is started with, when not its own default.
    pub(super) fn meshsync_write_timeout(&self) -> Option<f64> {
        self.write_timeout
            .or((self.scenario == Scenario::Stalled).then_some(5.0))
    }
}

pub async fn run(mut args: RunArgs) -> anyhow::Result<()> {
    check_args(&mut args)?;
    // Raised before the children start, so they inherit it.
    let nofile = crate::child::raise_nofile_limit().unwrap_or(0);
    if (nofile as usize) < args.agents * 2 + 1000 {
        eprintln!(
            "warning: open-file limit {nofile} is low for {} agents",
            args.agents
        );
    }
    let bins = find_bins(&args).await?;
    let started = utc_now();
    let dir = results_dir(&args, &started);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mut run = RunResult {
        started_at: started,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: procs::machine(),
        agents: args.agents,
        keys: args.keys,
        value_bytes: workload::value(0, 0, workload::now_ns()).len(),
        rate: args.rate,
        duration_s: args.duration,
        repeat: args.repeat,
        systems: Vec::new(),
    };
    eprintln!(
        "meshsync-bench: {:?} with {} agents, {} keys, {} writes/s for {} s; systems {:?}; results in {}",
        args.scenario,
        args.agents,
        args.keys,
        args.rate,
        args.duration,
        args.systems.iter().map(|s| s.name()).collect::<Vec<_>>(),
        dir.display()
    );
    for round in 0..args.repeat {
        for system in round_order(&args.systems, round) {
            let result = run_in_round(system, round, &args, &bins, &logs).await?;
            run.systems.push(result);
            // Write after every system, so an interrupted run keeps what it measured.
            crate::report::write_all(&run, &dir)?;
        }
    }
    eprintln!("\nresults: {}", dir.join("results.md").display());
    println!("{}", crate::report::markdown(&run));
    Ok(())
}

/// The systems in the order `round` runs them: as given in even rounds, reversed in odd ones
/// (A B, B A, …), so that no system always runs first — the first run of a round starts on a cold
/// machine (page cache, CPU frequency, the previous system's leftovers) and measured up to 2× the
/// server CPU of the second in the same round.
fn round_order(systems: &[System], round: usize) -> Vec<System> {
    let mut order = systems.to_vec();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// Rejects arguments no run can use, and adjusts those of the `stalled` and `storm` scenarios.
fn check_args(args: &mut RunArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.agents > 0 && args.keys > 0,
        "--agents and --keys must be positive"
    );
    anyhow::ensure!(
        args.rate > 0.0 && args.duration > 0.0,
        "--rate and --duration must be positive"
    );
    anyhow::ensure!(args.ramp_factor > 1.0, "--ramp-factor must be above 1");
    anyhow::ensure!(
        (1..=20).contains(&args.repeat),
        "--repeat must be between 1 and 20"
    );
    if args.scenario == Scenario::Stalled {
        check_stalled_args(args)?;
    }
    if args.scenario == Scenario::Storm {
        check_storm_args(args)?;
    }
    check_baseline_args(args)
}

/// `meshsync-baseline` needs `--baseline-bin`, an existing file; without that system the flag is
/// unused, which is said rather than ignored silently.
fn check_baseline_args(args: &RunArgs) -> anyhow::Result<()> {
    let selected = args.systems.contains(&System::MeshsyncBaseline);
    match &args.baseline_bin {
        None => anyhow::ensure!(
            !selected,
            "the meshsync-baseline system needs --baseline-bin PATH (the baseline meshsync binary)"
        ),
        Some(path) if selected => anyhow::ensure!(
            path.is_file(),
            "--baseline-bin {}: no such file",
            path.display()
        ),
        Some(_) => {
            eprintln!("note: --baseline-bin is unused: meshsync-baseline is not in --systems")
        }
    }
    Ok(())
}

/// The meshsync binary and, when a system needs them, the peers built from Go modules.
async fn find_bins(args: &RunArgs) -> anyhow::Result<Bins> {
    let meshsync_bin = meshsync_binary(args)?;
    // Looked up once, and only for the systems that need them; a failure fails those systems.
    let peers = if args.systems.iter().any(|s| s.typha_clients()) {
        peers_bin(args).await.map_err(|e| {
            eprintln!("warning: the typha and meshsync-typha systems will fail: {e:#}");
            format!("{e:#}")
        })
    } else {
        Err("no system needs them".into())
    };
    Ok(Bins::new(meshsync_bin, peers).with_baseline(args.baseline_bin.clone()))
}

/// `<out>/<start time>-<scenario>`, e.g. `20261204-212909-churn`.
fn results_dir(args: &RunArgs, started: &str) -> PathBuf {
    args.out.join(format!(
        "{}-{}",
        started
            .replace([':', '-'], "")
            .replace('T', "-")
            .trim_end_matches('Z'),
        format!("{:?}", args.scenario).to_lowercase()
    ))
}

/// Measures one system in one round; a system that fails gives a result carrying its error.
async fn run_in_round(
    system: System,
    round: usize,
    args: &RunArgs,
    bins: &Bins,
    logs: &Path,
) -> anyhow::Result<SystemResult> {
    if args.repeat > 1 {
        eprintln!(
            "\n=== {} (round {} of {}) ===",
            system.name(),
            round + 1,
            args.repeat
        );
    } else {
        eprintln!("\n=== {} ===", system.name());
    }
    let logs = if args.repeat > 1 {
        logs.join(format!("round-{}", round + 1))
    } else {
        logs.to_path_buf()
    };
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mut result = match run_system(system, args, bins, &logs).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{}: failed: {e:#}", system.name());
            SystemResult {
                system: system.name().into(),
                error: Some(format!("{e:#}")),
                ..SystemResult::default()
            }
        }
    };
    result.round = round;
    Ok(result)
}

/// Stalls need our raw meshsync clients, at least two agents and a fraction in (0, 1); the
/// systems whose clients cannot stall are left out, with a note.
fn check_stalled_args(args: &mut RunArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.stalled_fraction > 0.0 && args.stalled_fraction < 1.0,
        "--stalled-fraction must be between 0 and 1"
    );
    anyhow::ensure!(args.agents >= 2, "`stalled` needs at least 2 agents");
    anyhow::ensure!(
        args.stalled_rounds >= 1,
        "--stalled-rounds must be at least 1"
    );
    anyhow::ensure!(
        args.meshsync_client == crate::agents::MeshsyncClient::Raw,
        "`stalled` needs --meshsync-client raw (the clients that can stop reading)"
    );
    let (kept, other): (Vec<System>, Vec<System>) = args.systems.iter().partition(|s| {
        matches!(
            s,
            System::Meshsync | System::MeshsyncZstd | System::MeshsyncBaseline
        )
    });
    if !other.is_empty() {
        eprintln!(
            "note: `stalled` runs meshsync, meshsync-zstd and meshsync-baseline only (their clients stall by not polling their stream; Typha's Go clients, of typha and meshsync-typha, cannot stall); leaving out {:?}",
            other.iter().map(|s| s.name()).collect::<Vec<_>>()
        );
    }
    anyhow::ensure!(
        !kept.is_empty(),
        "`stalled` needs meshsync, meshsync-zstd or meshsync-baseline in --systems"
    );
    args.systems = kept;
    Ok(())
}

/// `storm` needs servers it can restart and a replica of, and clients that reconnect and see the
/// marker: meshsync (through the agent library) and grpc-proxy; the others are left out.
fn check_storm_args(args: &mut RunArgs) -> anyhow::Result<()> {
    let (kept, other): (Vec<System>, Vec<System>) = args
        .systems
        .iter()
        .partition(|s| s.is_meshsync() || **s == System::GrpcProxy);
    if !other.is_empty() {
        eprintln!(
            "note: `storm` runs meshsync, meshsync-zstd, meshsync-full, meshsync-baseline and grpc-proxy; leaving out {:?} (Typha's Go clients, of typha and meshsync-typha, cannot report the catch-up marker; Typha resends its whole snapshot on every reconnect)",
            other.iter().map(|s| s.name()).collect::<Vec<_>>()
        );
    }
    anyhow::ensure!(!kept.is_empty(), "`storm` has no system to run");
    if args.meshsync_client != crate::agents::MeshsyncClient::Agent {
        eprintln!("note: `storm` uses --meshsync-client agent (the clients that resume)");
        args.meshsync_client = crate::agents::MeshsyncClient::Agent;
    }
    args.systems = kept;
    Ok(())
}

fn meshsync_binary(args: &RunArgs) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.meshsync_bin {
        return Ok(path.clone());
    }
    let exe = std::env::current_exe()?;
    let sibling = exe.with_file_name("meshsync");
    // Under `cargo run`, (re)build the server first so the comparison never runs a stale binary.
    if let Ok(cargo) = std::env::var("CARGO") {
        let release = exe.parent().is_some_and(|p| p.ends_with("release"));
        eprintln!("building the meshsync binary…");
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "--quiet", "--bin", "meshsync", "-p", "meshsync"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status()?;
        anyhow::ensure!(status.success(), "building meshsync failed");
    }
    anyhow::ensure!(
        sibling.exists(),
        "no meshsync binary at {}; build it (cargo build --release) or pass --meshsync-bin",
        sibling.display()
    );
    Ok(sibling)
}

/// A progress bar on stderr.
fn bar(len: u64, prefix: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>14} [{bar:40.cyan/blue}] {pos}/{len} {msg} ({elapsed})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_prefix(prefix.to_string());
    pb
}

async fn run_system(
    system: System,
    args: &RunArgs,
    bins: &Bins,
    logs: &Path,
) -> anyhow::Result<SystemResult> {
    // Before anything starts, so a missing peer fails fast and says why.
    if system == System::Typha {
        bins.peer(servers::TYPHA_BIN)?;
    }
    if system.typha_clients() {
        bins.peer(agents_proc::TYPHA_AGENTS_BIN)?;
    }
    let etcd = EtcdProc::start(&args.etcd_bin, logs, &format!("etcd-{}", system.name())).await?;
    let writer = etcd_client(&etcd.url()).await?;
    preload(&writer, args.keys).await?;
    let first_port = procs::free_port()?;
    let (server, target) =
        servers::start_server_at(system, &etcd, args, bins, logs, first_port, "").await?;
    // storm: a second replica the agents list after the first.
    let replica = if args.scenario == Scenario::Storm {
        let (proc, target) = start_server(system, &etcd, args, bins, logs).await?;
        let proc = proc.context("storm needs a server process")?;
        Some(storm::Replica { proc, target })
    } else {
        None
    };
    let mut result = SystemResult {
        system: system.name().into(),
        ..SystemResult::default()
    };
    let fanout_pid = server.as_ref().map(|p| p.pid).unwrap_or(etcd.proc.pid);
    let rss_idle = procs::sample(fanout_pid).rss_bytes;
    let before = {
        let mut v = vec![("etcd".to_string(), etcd.proc.pid, etcd.proc.sample())];
        if let Some(s) = &server {
            v.push((s.role.clone(), s.pid, s.sample()));
        }
        v
    };
    let agents = AgentsProc::spawn(
        system,
        &target,
        replica.as_ref().map(|r| r.target.as_str()),
        args,
        bins,
        logs,
    )?;
    let agents_before = agents.proc.sample();
    let mut bench = Bench {
        system,
        etcd,
        server,
        writer,
        agents,
        generation: 0,
    };

    // snapshot: every agent connects at once and lists everything.
    let snapshot = steps::snapshot(&mut bench, args, &before, agents_before, rss_idle).await?;
    let failed = snapshot.failed_agents;
    result.snapshot = Some(snapshot);
    steps::report_snapshot(result.snapshot.as_ref());
    anyhow::ensure!(failed < args.agents, "every agent failed to connect");

    if matches!(args.scenario, Scenario::Churn | Scenario::All) {
        let step = steps::churn_step(&mut bench, args, args.rate, args.duration).await?;
        steps::report_step("churn", &step);
        result.churn = Some(step);
    }
    if matches!(args.scenario, Scenario::Saturate | Scenario::All) {
        steps::saturate(&mut bench, args, &mut result).await?;
    }
    if args.scenario == Scenario::Stalled {
        result.stalled = Some(stalled::stalled(&mut bench, args).await?);
    }
    if let Some(replica) = replica {
        let snapshot = result.snapshot.clone().unwrap_or_default();
        result.storm =
            Some(storm::storm(&mut bench, args, bins, logs, &snapshot, replica, first_port).await?);
    }
    let _ = bench.agents.command("quit").await;
    bench.agents.proc.stop().await;
    if let Some(server) = bench.server.take() {
        server.stop().await;
    }
    bench.etcd.proc.stop().await;
    let _ = bench.system;
    Ok(result)
}

/// `YYYY-MM-DDTHH:MM:SSZ` without a date crate.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn rounds_alternate_the_order_of_the_systems() {
        let systems = [System::Meshsync, System::MeshsyncBaseline, System::Floor];
        assert_eq!(round_order(&systems, 0), systems.to_vec());
        let mut reversed = systems.to_vec();
        reversed.reverse();
        assert_eq!(round_order(&systems, 1), reversed);
        assert_eq!(round_order(&systems, 2), systems.to_vec());
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(args: &[&str]) -> RunArgs {
        let mut argv = vec!["run"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv) {
            Ok(cli) => cli.run,
            Err(e) => panic!("{args:?} did not parse: {e}"),
        }
    }

    /// `meshsync-baseline` is a system of its own in `--systems`, kept by `stalled` and `storm`
    /// like meshsync; it needs `--baseline-bin` naming a file (a clear error otherwise), and its
    /// server runs that binary while `meshsync`'s runs the current one.
    #[test]
    fn meshsync_baseline_needs_baseline_bin() {
        let bin = tempfile::NamedTempFile::new().expect("a temporary file");
        let bin_path = bin.path().to_str().expect("a UTF-8 temporary path");

        let mut args = parse(&["churn", "--systems", "meshsync,meshsync-baseline"]);
        assert_eq!(args.systems, [System::Meshsync, System::MeshsyncBaseline]);
        let e = check_args(&mut args)
            .expect_err("no --baseline-bin")
            .to_string();
        assert!(
            e.contains("meshsync-baseline") && e.contains("--baseline-bin PATH"),
            "{e}"
        );

        let mut args = parse(&[
            "churn",
            "--systems",
            "meshsync-baseline",
            "--baseline-bin",
            "/nonexistent/meshsync-old",
        ]);
        let e = check_args(&mut args)
            .expect_err("a missing file")
            .to_string();
        assert!(e.contains("/nonexistent/meshsync-old: no such file"), "{e}");

        // Given, but not selected: a note, not an error.
        let mut args = parse(&["churn", "--systems", "meshsync", "--baseline-bin", bin_path]);
        check_args(&mut args).expect("an unused --baseline-bin is accepted");

        for scenario in ["churn", "stalled", "storm"] {
            let mut args = parse(&[
                scenario,
                "--systems",
                "meshsync,meshsync-baseline,etcd",
                "--baseline-bin",
                bin_path,
            ]);
            check_args(&mut args).expect("valid arguments");
            assert!(
                args.systems
                    .starts_with(&[System::Meshsync, System::MeshsyncBaseline]),
                "{scenario}: {:?}",
                args.systems
            );
        }

        let current = PathBuf::from("/build/meshsync");
        let bins = Bins::new(current.clone(), Err("unused".into()));
        let e = bins
            .meshsync(System::MeshsyncBaseline)
            .expect_err("no baseline binary")
            .to_string();
        assert!(e.contains("--baseline-bin"), "{e}");
        let bins = bins.with_baseline(Some(bin.path().to_path_buf()));
        assert_eq!(
            bins.meshsync(System::Meshsync).ok(),
            Some(current.as_path())
        );
        assert_eq!(
            bins.meshsync(System::MeshsyncBaseline).ok(),
            Some(bin.path())
        );
        assert!(System::MeshsyncBaseline.is_meshsync() && !System::MeshsyncBaseline.zstd());
        assert_eq!(System::MeshsyncBaseline.name(), "meshsync-baseline");
    }

    /// `meshsync-typha` is a system of its own in `--systems`, with Typha's clients (the Go
    /// program, so it needs the peers) and meshsync's server; `snapshot`, `churn`, `saturate` and
    /// `all` run it, `stalled` and `storm` leave it out like `typha` (an error when nothing else
    /// is left).
    #[test]
    fn meshsync_typha_runs_typha_clients_on_meshsync() {
        assert_eq!(System::MeshsyncTypha.name(), "meshsync-typha");
        assert!(System::MeshsyncTypha.typha_clients() && System::Typha.typha_clients());
        assert!(!System::Meshsync.typha_clients() && !System::MeshsyncBaseline.typha_clients());
        // Not one of the systems with meshsync's own agents (stalls, storm, the agent library).
        assert!(!System::MeshsyncTypha.is_meshsync() && !System::MeshsyncTypha.zstd());

        for scenario in ["snapshot", "churn", "saturate", "all"] {
            let mut args = parse(&[scenario, "--systems", "typha,meshsync-typha"]);
            check_args(&mut args).expect("valid arguments");
            assert_eq!(
                args.systems,
                [System::Typha, System::MeshsyncTypha],
                "{scenario}"
            );
        }
        for scenario in ["stalled", "storm"] {
            let mut args = parse(&[scenario, "--systems", "meshsync,meshsync-typha,typha"]);
            check_args(&mut args).expect("valid arguments");
            assert_eq!(args.systems, [System::Meshsync], "{scenario}");
            let mut args = parse(&[scenario, "--systems", "meshsync-typha"]);
            assert!(check_args(&mut args).is_err(), "{scenario}: nothing left");
        }
        // Not in the default set.
        assert!(!parse(&["churn"]).systems.contains(&System::MeshsyncTypha));
    }

    /// Without the peers, `meshsync-typha` fails fast, naming the missing Typha clients (it does
    /// not need calico-typha).
    #[tokio::test]
    async fn meshsync_typha_without_peers_fails_naming_the_clients() {
        let peers = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(peers.path().join(servers::TYPHA_BIN), b"").expect("a file");
        let logs = tempfile::tempdir().expect("a temporary directory");
        let args = parse(&["snapshot", "--systems", "meshsync-typha"]);
        let bins = Bins::new(PathBuf::from("meshsync"), Ok(peers.path().to_path_buf()));
        let e = run_system(System::MeshsyncTypha, &args, &bins, logs.path())
            .await
            .expect_err("no typha-bench-agents")
            .to_string();
        assert!(
            e.contains("no typha-bench-agents in") && e.contains("scripts/peers.sh"),
            "{e}"
        );
    }

    /// The whole `typha` system on real processes: etcd, Calico's `calico-typha` on it, and the Go
    /// clients on Typha's `syncclient`, driven like every other system. Every client must hold
    /// every key, and every write of the churn step must reach every client with its stamp (the
    /// label survived Typha's conversion to the v1 model). Needs the peers: `MESHSYNC_PEERS_BIN`
    /// (scripts/test.sh sets it), else `scripts/peers.sh` builds or finds them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn typha_system_end_to_end() -> anyhow::Result<()> {
        let logs = tempfile::tempdir()?;
        let cli = Cli::try_parse_from([
            "run",
            "churn",
            "--systems",
            "typha",
            "--agents",
            "8",
            "--keys",
            "60",
            "--rate",
            "40",
            "--duration",
            "2",
            "--drain-timeout",
            "20",
        ])?;
        let args = cli.run;
        let bins = Bins::new(PathBuf::from("unused"), Ok(peers_bin(&args).await?));
        let result = run_system(System::Typha, &args, &bins, logs.path()).await?;
        let snapshot = result.snapshot.context("no snapshot")?;
        assert_eq!(snapshot.failed_agents, 0);
        assert!(
            snapshot.total_s > 0.0 && snapshot.total_s < 60.0,
            "{snapshot:?}"
        );
        assert!(snapshot.server.iter().any(|p| p.role == "typha"));
        let churn = result.churn.context("no churn step")?;
        assert_eq!(churn.writes, 80);
        assert_eq!(churn.expected_deliveries, 80 * 8);
        assert_eq!(churn.lost, 0, "{churn:?}");
        assert_eq!(churn.deliveries, 80 * 8);
        assert_eq!(churn.latency.count, 80 * 8);
        assert!(churn.latency.p50_us > 0 && churn.latency.p50_us < 10_000_000);
        assert!(!churn.latency.cdf.is_empty());
        assert!(churn.server_cpu_us_per_delivery > 0.0);
        Ok(())
    }
}
