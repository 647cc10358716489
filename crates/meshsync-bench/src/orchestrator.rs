//! The scenarios: for each system in turn, start etcd and the system's server side as real
//! processes, preload the same keys, start the same agents process, and measure `snapshot`,
//! `churn` and `saturate` with the same writes. Results go to `--out/<time>-<scenario>/`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use meshsync_etcd::{EtcdClient, EtcdConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::{Semaphore, mpsc};

use crate::model::{
    AgentsMessage, ChurnResult, Latency, ProcessUsage, RunResult, SnapshotResult, System,
    SystemResult,
};
use crate::procs::{self, EtcdProc, Proc, Sample};
use crate::workload;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Snapshot,
    Churn,
    Saturate,
    /// snapshot, then churn, then saturate, on the same connected agents.
    All,
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
    /// Systems to run, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "meshsync,grpc-proxy,etcd,floor"
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
    /// Results directory (a subdirectory per run is created).
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// The meshsync binary (default: next to this one; built with cargo when missing).
    #[arg(long)]
    meshsync_bin: Option<PathBuf>,
    /// The etcd binary.
    #[arg(long, default_value = "etcd")]
    etcd_bin: String,
    /// meshsync's simulated agents: `raw` (generated gRPC client + a plain map: the same work the
    /// etcd and floor clients do) or `agent` (the full agent library: mirror, digests).
    #[arg(long, value_enum, default_value_t = crate::agents::MeshsyncClient::Raw)]
    meshsync_client: crate::agents::MeshsyncClient,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.agents > 0 && args.keys > 0,
        "--agents and --keys must be positive"
    );
    anyhow::ensure!(
        args.rate > 0.0 && args.duration > 0.0,
        "--rate and --duration must be positive"
    );
    anyhow::ensure!(args.ramp_factor > 1.0, "--ramp-factor must be above 1");
    let nofile = procs::raise_nofile();
    if (nofile as usize) < args.agents * 2 + 1000 {
        eprintln!(
            "warning: open-file limit {nofile} is low for {} agents",
            args.agents
        );
    }
    let meshsync_bin = meshsync_binary(&args)?;
    let started = utc_now();
    let dir = args.out.join(format!(
        "{}-{}",
        started
            .replace([':', '-'], "")
            .replace('T', "-")
            .trim_end_matches('Z'),
        format!("{:?}", args.scenario).to_lowercase()
    ));
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
    for &system in &args.systems {
        eprintln!("\n=== {} ===", system.name());
        let result = match run_system(system, &args, &meshsync_bin, &logs).await {
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
        run.systems.push(result);
        // Write after every system, so an interrupted run keeps what it measured.
        crate::report::write_all(&run, &dir)?;
    }
    eprintln!("\nresults: {}", dir.join("results.md").display());
    println!("{}", crate::report::markdown(&run));
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

async fn etcd_client(url: &str) -> anyhow::Result<EtcdClient> {
    let mut config = EtcdConfig::new(vec![url.to_string()]);
    config.request_timeout = Duration::from_secs(60);
    Ok(EtcdClient::connect(&config).await?)
}

/// Writes keys `0..keys` once (generation 0), many in flight.
async fn preload(client: &EtcdClient, keys: usize) -> anyhow::Result<()> {
    let pb = bar(keys as u64, "preload");
    let permits = Arc::new(Semaphore::new(256));
    let mut tasks = Vec::with_capacity(keys);
    for i in 0..keys {
        let permit = permits.clone().acquire_owned().await?;
        let client = client.clone();
        let pb = pb.clone();
        tasks.push(tokio::spawn(async move {
            let r = client
                .put(workload::key(i), workload::value(i, 0, workload::now_ns()))
                .await;
            drop(permit);
            pb.inc(1);
            r
        }));
    }
    for t in tasks {
        t.await??;
    }
    pb.finish_and_clear();
    Ok(())
}

/// The agents process and its message stream.
struct AgentsProc {
    proc: Proc,
    stdin: ChildStdin,
    messages: mpsc::UnboundedReceiver<AgentsMessage>,
    received: u64,
}

impl AgentsProc {
    fn spawn(system: System, target: &str, args: &RunArgs, logs: &Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.arg("agents")
            .arg("--system")
            .arg(system.name())
            .arg("--target")
            .arg(target)
            .arg("--n")
            .arg(args.agents.to_string())
            .arg("--keys")
            .arg(args.keys.to_string())
            .arg("--meshsync-client")
            .arg(match args.meshsync_client {
                crate::agents::MeshsyncClient::Raw => "raw",
                crate::agents::MeshsyncClient::Agent => "agent",
            })
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
        })
    }

    async fn command(&mut self, line: &str) -> anyhow::Result<()> {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    async fn next(&mut self, timeout: Duration) -> anyhow::Result<AgentsMessage> {
        match tokio::time::timeout(timeout, self.messages.recv()).await {
            Ok(Some(AgentsMessage::Error { message })) => anyhow::bail!("agents: {message}"),
            Ok(Some(m)) => {
                if let AgentsMessage::Progress { received, .. } = &m {
                    self.received = *received;
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

    /// Waits for `Synced`, showing progress.
    async fn wait_synced(&mut self, agents: usize) -> anyhow::Result<(Vec<f64>, usize)> {
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
    async fn drain_and_report(
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

/// Everything running for one system.
struct Bench {
    system: System,
    etcd: EtcdProc,
    server: Option<Proc>,
    writer: EtcdClient,
    agents: AgentsProc,
    generation: u64,
}

impl Bench {
    /// The process that does the fan-out (whose memory per agent is reported).
    fn fanout_pid(&self) -> u32 {
        self.server
            .as_ref()
            .map(|p| p.pid)
            .unwrap_or(self.etcd.proc.pid)
    }

    fn server_samples(&self) -> Vec<(String, u32, Sample)> {
        let mut v = vec![(
            "etcd".to_string(),
            self.etcd.proc.pid,
            self.etcd.proc.sample(),
        )];
        if let Some(s) = &self.server {
            v.push((s.role.clone(), s.pid, s.sample()));
        }
        v
    }
}

fn server_usage(before: &[(String, u32, Sample)]) -> Vec<ProcessUsage> {
    before
        .iter()
        .map(|(role, pid, b)| procs::usage(role, *b, procs::sample(*pid)))
        .collect()
}

async fn start_server(
    system: System,
    etcd: &EtcdProc,
    args: &RunArgs,
    meshsync_bin: &Path,
    logs: &Path,
) -> anyhow::Result<(Option<Proc>, String)> {
    let port = procs::free_port()?;
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    match system {
        System::Etcd => Ok((None, etcd.url())),
        System::Meshsync => {
            let mut cmd = Command::new(meshsync_bin);
            cmd.arg("serve")
                .arg("--datastore")
                .arg(format!("etcd://127.0.0.1:{}", etcd.port))
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--no-health")
                .arg("--log-level")
                .arg("warn")
                .arg("--max-connections")
                .arg((args.agents + 100).to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            let proc = Proc::spawn("meshsync", cmd, &logs.join("meshsync.log"))?;
            let url = format!("http://{addr}");
            wait_meshsync_in_sync(&url, args.keys).await?;
            Ok((Some(proc), url))
        }
        System::GrpcProxy => {
            let mut cmd = Command::new(&args.etcd_bin);
            cmd.arg("grpc-proxy")
                .arg("start")
                .arg(format!("--endpoints=127.0.0.1:{}", etcd.port))
                .arg(format!("--listen-addr={addr}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            let proc = Proc::spawn("grpc-proxy", cmd, &logs.join("grpc-proxy.log"))?;
            procs::wait_port(addr, Duration::from_secs(30)).await?;
            Ok((Some(proc), format!("http://{addr}")))
        }
        System::Floor => {
            let mut cmd = Command::new(std::env::current_exe()?);
            cmd.arg("floor")
                .arg("--etcd")
                .arg(etcd.url())
                .arg("--listen")
                .arg(addr.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::null());
            let proc = Proc::spawn("floor", cmd, &logs.join("floor.log"))?;
            procs::wait_port(addr, Duration::from_secs(120)).await?;
            Ok((Some(proc), addr.to_string()))
        }
    }
}

async fn wait_meshsync_in_sync(url: &str, keys: usize) -> anyhow::Result<()> {
    use meshsync_proto::sync_client::SyncClient;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(mut client) = SyncClient::connect(url.to_string()).await
            && let Ok(resp) = client.status(meshsync_proto::StatusRequest {}).await
        {
            let status = resp.into_inner().status.unwrap_or_default();
            let total: u64 = status.clusters.iter().map(|c| c.keys).sum();
            if status.overall() == meshsync_proto::SyncState::InSync && total as usize >= keys {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "meshsync did not reach in-sync with {keys} keys"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_system(
    system: System,
    args: &RunArgs,
    meshsync_bin: &Path,
    logs: &Path,
) -> anyhow::Result<SystemResult> {
    let etcd = EtcdProc::start(&args.etcd_bin, logs, &format!("etcd-{}", system.name())).await?;
    let writer = etcd_client(&etcd.url()).await?;
    preload(&writer, args.keys).await?;
    let (server, target) = start_server(system, &etcd, args, meshsync_bin, logs).await?;
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
    let agents = AgentsProc::spawn(system, &target, args, logs)?;
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
    let (mut per_agent, failed) = bench.agents.wait_synced(args.agents).await?;
    let server_use = server_usage(&before);
    let agents_use = procs::usage("agents", agents_before, bench.agents.proc.sample());
    let rss_loaded = procs::sample(bench.fanout_pid()).rss_bytes;
    per_agent.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| -> f64 {
        if per_agent.is_empty() {
            return f64::NAN;
        }
        per_agent[((per_agent.len() - 1) as f64 * q).round() as usize]
    };
    result.snapshot = Some(SnapshotResult {
        agents: args.agents,
        keys: args.keys,
        total_s: per_agent.last().copied().unwrap_or(f64::NAN),
        agent_min_s: pick(0.0),
        agent_median_s: pick(0.5),
        agent_max_s: pick(1.0),
        failed_agents: failed,
        server: server_use,
        agents_process: agents_use,
        server_bytes_per_agent: rss_loaded.saturating_sub(rss_idle) as f64 / args.agents as f64,
    });
    report_snapshot(result.snapshot.as_ref());
    anyhow::ensure!(failed < args.agents, "every agent failed to connect");

    if matches!(args.scenario, Scenario::Churn | Scenario::All) {
        let step = churn_step(&mut bench, args, args.rate, args.duration).await?;
        report_step("churn", &step);
        result.churn = Some(step);
    }
    if matches!(args.scenario, Scenario::Saturate | Scenario::All) {
        let mut rate = args.saturate_start;
        while rate <= args.saturate_max {
            let step = churn_step(&mut bench, args, rate, args.step_duration).await?;
            report_step(&format!("saturate {rate}/s"), &step);
            let good = step.lost == 0 && step.latency.p99_us <= 1_000_000;
            let writer_limited = step.achieved_rate < 0.8 * rate;
            if good {
                result.capacity_deliveries_per_s = Some(
                    result
                        .capacity_deliveries_per_s
                        .unwrap_or(0.0)
                        .max(step.deliveries_per_s),
                );
            }
            result.saturate.push(step);
            if !good {
                break;
            }
            if writer_limited {
                eprintln!("  the writer could not reach {rate}/s; stopping the ramp");
                break;
            }
            rate *= args.ramp_factor;
        }
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

/// Writes `rate` updates/s for `duration` seconds (generation g), waits for deliveries, measures.
async fn churn_step(
    bench: &mut Bench,
    args: &RunArgs,
    rate: f64,
    duration: f64,
) -> anyhow::Result<ChurnResult> {
    bench.generation += 1;
    let generation = bench.generation;
    bench.agents.command(&format!("reset {generation}")).await?;
    // Progress lines queued before the reset carry the old count: skip to the reset's
    // acknowledgement (a Progress with nothing received yet).
    loop {
        if let AgentsMessage::Progress { received: 0, .. } =
            bench.agents.next(Duration::from_secs(60)).await?
        {
            break;
        }
    }
    bench.agents.received = 0;
    let before = bench.server_samples();
    let agents_before = bench.agents.proc.sample();
    let (writes, write_time) = write_load(
        &bench.writer,
        args.keys,
        rate,
        Duration::from_secs_f64(duration),
        generation,
    )
    .await?;
    let expected = writes * args.agents as u64;
    let (received, latency, _) = bench
        .agents
        .drain_and_report(expected, Duration::from_secs_f64(args.drain_timeout))
        .await?;
    let server = server_usage(&before);
    let agents_process = procs::usage("agents", agents_before, bench.agents.proc.sample());
    let cpu: f64 = server.iter().map(|u| u.cpu_seconds).sum();
    let secs = write_time.as_secs_f64().max(1e-9);
    Ok(ChurnResult {
        rate,
        achieved_rate: writes as f64 / secs,
        duration_s: secs,
        writes,
        expected_deliveries: expected,
        deliveries: received,
        lost: expected.saturating_sub(received),
        deliveries_per_s: received as f64 / secs,
        latency,
        server,
        agents_process,
        server_cpu_us_per_delivery: if received > 0 {
            cpu * 1e6 / received as f64
        } else {
            f64::NAN
        },
    })
}

/// Puts stamped values at `rate`/s, round-robin over the keys, many in flight.
async fn write_load(
    client: &EtcdClient,
    keys: usize,
    rate: f64,
    duration: Duration,
    generation: u64,
) -> anyhow::Result<(u64, Duration)> {
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let pb = bar(total, &format!("writes {rate}/s"));
    let permits = Arc::new(Semaphore::new(512));
    let failures = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut issued = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut tasks = Vec::new();
    while issued < total {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate) as u64).min(total);
        while issued < due {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                break; // the writer is saturated: carry on at the next tick
            };
            let i = (issued as usize) % keys;
            let client = client.clone();
            let failures = failures.clone();
            tasks.push(tokio::spawn(async move {
                let value = workload::value(i, generation, workload::now_ns());
                if client.put(workload::key(i), value).await.is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                drop(permit);
            }));
            issued += 1;
        }
        pb.set_position(issued);
        if start.elapsed() > duration * 3 {
            break; // far behind schedule: report the achieved rate
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    pb.finish_and_clear();
    let failed = failures.load(Ordering::Relaxed);
    anyhow::ensure!(failed == 0, "{failed} writes failed");
    Ok((issued, elapsed))
}

fn report_snapshot(s: Option<&SnapshotResult>) {
    if let Some(s) = s {
        let cpu: f64 = s.server.iter().map(|u| u.cpu_seconds).sum();
        eprintln!(
            "  snapshot: all {} agents in sync in {:.2} s (agent min {:.2} / median {:.2} / max {:.2} s), {} failed, server CPU {:.2} s, {:.1} KiB/agent",
            s.agents,
            s.total_s,
            s.agent_min_s,
            s.agent_median_s,
            s.agent_max_s,
            s.failed_agents,
            cpu,
            s.server_bytes_per_agent / 1024.0
        );
    }
}

fn report_step(name: &str, c: &ChurnResult) {
    eprintln!(
        "  {name}: {:.0} writes/s, {} deliveries, {} lost, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {:.2} µs server CPU/delivery",
        c.achieved_rate,
        c.deliveries,
        c.lost,
        c.latency.p50_us as f64 / 1000.0,
        c.latency.p99_us as f64 / 1000.0,
        c.latency.max_us as f64 / 1000.0,
        c.server_cpu_us_per_delivery
    );
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
