//! A rough load tool: many agents against one meshsync server.
//!
//! ```sh
//! cargo run --release --example load -- --agents N --keys K [--server URL]
//!     [--updates U --rate R] [--subscription felix] [--agent-mode auto|full|light]
//! ```
//!
//! Without `--server`, an in-process cache and server are started on 127.0.0.1 (an OS-chosen
//! port), preloaded with K realistic ~1 KiB Calico WorkloadEndpoints through a channel source that
//! then reports InSync. N agents then connect at once, each with its own TCP connection, and the
//! tool reports the time until all are in sync (min/median/max per agent, total), resources per
//! agent, the connection count the server's `Status` reports, the process's peak RSS and CPU time
//! (split by thread: server runtime, agent runtime, writer). With `--updates U --rate R`, U updates
//! are then written into the source at R per second and the tool measures the latency from the
//! write to its receipt by every agent (p50/p99/max) and counts lost updates (must be 0).
//!
//! Agents are `meshsync_agent::Agent`s, each keeping a full mirror (`full`). Each mirror holds
//! every value, so N×K×~2 KB must fit in memory; when it would not (`auto`, the default, checks
//! `MemAvailable`) the agents are `light`: a raw gRPC subscriber per agent that decodes every
//! message, checks the snapshot against the server's per-cluster key count and digest, and keeps
//! no values.
//!
//! `--serve-only` runs just the preloaded server (until killed) and prints its connections, RSS
//! and CPU every 5 s, so that another `load --server URL` process can measure the server and the
//! agents separately.
//!
//! Progress goes to stderr, the report to stdout.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use futures::channel::mpsc;
use meshsync_agent::{Agent, AgentConfig, AgentEvent};
use meshsync_cache::{CacheConfig, SnapshotCache, SyncState};
use meshsync_datastore::{Revision, SourceEvent, SourceStatus};
use meshsync_proto::{self as pb, digest::entry_hash, sync_client::SyncClient, sync_event};
use meshsync_server::{BoundServer, Connections, ServerConfig};
use tokio::sync::{oneshot, watch};
use tonic::transport::Endpoint;

const USAGE: &str = "\
usage: load --agents N --keys K [--server URL] [--updates U --rate R]
            [--subscription NAME] [--agent-mode auto|full|light]
            [--timeout SECS] [--drain SECS]

  --agents N          agents to connect at once (default 100)
  --keys K            WorkloadEndpoints preloaded into the in-process server (default 1000)
  --server URL        use a running server (http://host:port) instead of an in-process one
  --updates U         after sync, write U updates into the source (in-process only; default 0)
  --rate R            updates per second (default 1000)
  --subscription S    subscription type (default felix)
  --agent-mode M      full: meshsync_agent::Agent with its mirror; light: raw subscriber, no
                      mirror; auto (default): full unless the mirrors would not fit in memory
  --timeout SECS      give up waiting for all agents to be in sync after this (default 600)
  --drain SECS        wait this long after the last write for deliveries (default 60)
  --serve-only        only run the preloaded in-process server (until killed), printing its
                      connections, RSS and CPU every 5 s; point another `load --server` at it
                      to measure the server and the agents separately
  --listen ADDR       the in-process server's address (default 127.0.0.1:0)
  --keepalive-interval SECS, --keepalive-timeout SECS
                      the in-process server's HTTP/2 keepalive (default: ServerConfig's)";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Auto,
    Full,
    Light,
}

#[derive(Debug)]
struct Args {
    agents: usize,
    keys: usize,
    server: Option<String>,
    updates: usize,
    rate: f64,
    subscription: String,
    mode: Mode,
    timeout: Duration,
    drain: Duration,
    serve_only: bool,
    listen: SocketAddr,
    /// The in-process server's HTTP/2 keepalive (interval, timeout); `None`: its defaults.
    keepalive: (Option<Duration>, Option<Duration>),
}

fn parse_args() -> anyhow::Result<Option<Args>> {
    let mut args = Args {
        agents: 100,
        keys: 1000,
        server: None,
        updates: 0,
        rate: 1000.0,
        subscription: "felix".into(),
        mode: Mode::Auto,
        timeout: Duration::from_secs(600),
        drain: Duration::from_secs(60),
        serve_only: false,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        keepalive: (None, None),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        if flag == "--serve-only" {
            args.serve_only = true;
            continue;
        }
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.clone(), None),
        };
        let mut value = || -> anyhow::Result<String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it.next().with_context(|| format!("{name} needs a value")),
            }
        };
        let number = |v: String| -> anyhow::Result<f64> {
            v.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .with_context(|| format!("{name}: not a non-negative number: {v:?}"))
        };
        match name.as_str() {
            "--agents" => args.agents = number(value()?)? as usize,
            "--keys" => args.keys = number(value()?)? as usize,
            "--server" => args.server = Some(value()?),
            "--listen" => {
                let v = value()?;
                args.listen = v
                    .parse()
                    .with_context(|| format!("--listen: not an address: {v:?}"))?;
            }
            "--updates" => args.updates = number(value()?)? as usize,
            "--rate" => args.rate = number(value()?)?,
            "--subscription" => args.subscription = value()?,
            "--timeout" => args.timeout = Duration::from_secs_f64(number(value()?)?),
            "--drain" => args.drain = Duration::from_secs_f64(number(value()?)?),
            "--keepalive-interval" => {
                args.keepalive.0 = Some(Duration::from_secs_f64(number(value()?)?))
            }
            "--keepalive-timeout" => {
                args.keepalive.1 = Some(Duration::from_secs_f64(number(value()?)?))
            }
            "--agent-mode" => {
                args.mode = match value()?.as_str() {
                    "auto" => Mode::Auto,
                    "full" => Mode::Full,
                    "light" => Mode::Light,
                    other => bail!("--agent-mode: expected auto, full or light, not {other:?}"),
                }
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    if args.agents == 0 {
        bail!("--agents must be at least 1");
    }
    if args.serve_only && args.server.is_some() {
        bail!("--serve-only and --server exclude each other");
    }
    if args.updates > 0 {
        if args.server.is_some() {
            bail!("--updates needs the in-process server (it writes into its source)");
        }
        if args.keys == 0 || args.rate <= 0.0 {
            bail!("--updates needs --keys > 0 and --rate > 0");
        }
    }
    Ok(Some(args))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("load: {e:#}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("load: FAILED (see the report)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Realistic data: Calico v3 WorkloadEndpoints as the Kubernetes datastore derives them from Pods
// (the same generator as benches/cache.rs).

#[path = "../benches/common/wep.rs"]
mod wep;
use wep::{mix, wep};

// ---------------------------------------------------------------------------------------------
// Process measurements from /proc.

/// `VmHWM` (peak RSS) and `VmRSS`, in bytes.
fn memory() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb = text
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .split_whitespace()
        .next()?
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Clock ticks per second of `/proc/*/stat` times (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

/// `(comm, utime + stime in ticks)` from a `stat` file.
fn stat_cpu(path: &str) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // Fields after the comm start at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// CPU seconds: the whole process, and live threads grouped by name prefix.
#[derive(Clone, Debug, Default)]
struct Cpu {
    process: f64,
    server: f64,
    agents: f64,
    writer: f64,
}

impl Cpu {
    fn now() -> Cpu {
        let mut cpu = Cpu {
            process: stat_cpu("/proc/self/stat").map_or(0.0, |(_, t)| t as f64 / TICKS),
            ..Cpu::default()
        };
        if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
            for task in dir.flatten() {
                let path = format!("{}/stat", task.path().display());
                if let Some((comm, ticks)) = stat_cpu(&path) {
                    let secs = ticks as f64 / TICKS;
                    if comm.starts_with("ms-server") {
                        cpu.server += secs;
                    } else if comm.starts_with("ms-agents") {
                        cpu.agents += secs;
                    } else if comm.starts_with("ms-writer") {
                        cpu.writer += secs;
                    }
                }
            }
        }
        cpu
    }

    fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            process: self.process - before.process,
            server: self.server - before.server,
            agents: self.agents - before.agents,
            writer: self.writer - before.writer,
        }
    }

    fn describe(&self, wall: Duration) -> String {
        let other = (self.process - self.server - self.agents - self.writer).max(0.0);
        format!(
            "{:.2} s CPU in {:.2} s wall ({:.0}% of one core): server {:.2} s, agents {:.2} s, \
             writer {:.2} s, other {:.2} s",
            self.process,
            wall.as_secs_f64(),
            100.0 * self.process / wall.as_secs_f64().max(1e-9),
            self.server,
            self.agents,
            self.writer,
            other
        )
    }
}

fn gib(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The value at quantile `q` of sorted `v`.
fn quantile<T: Copy>(v: &[T], q: f64) -> T {
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

// ---------------------------------------------------------------------------------------------
// State shared by the agents, the writer and the main thread.

struct Shared {
    /// Everything is timed from here: agents are started right after it is taken.
    t0: Instant,
    /// Revisions above this are written by the update phase: update `i` has `base_rev + 1 + i`.
    base_rev: u64,
    updates: usize,
    /// Per update: nanoseconds after `t0` at which it was written, plus one (0: not yet).
    write_ns: Vec<AtomicU64>,
    /// Per agent: nanoseconds after `t0` at which it was first in sync, plus one (0: not yet).
    sync_ns: Vec<AtomicU64>,
    /// Per agent: resources held when it was first in sync.
    resources: Vec<AtomicU64>,
    connected: AtomicUsize,
    synced: AtomicUsize,
    finished: AtomicUsize,
    disconnects: AtomicU64,
    mismatches: AtomicU64,
    written: AtomicU64,
    /// Distinct (agent, update) receipts.
    delivered: AtomicU64,
}

impl Shared {
    fn elapsed_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64 + 1
    }
}

/// What one agent saw, returned when it stops.
#[derive(Default)]
struct AgentReport {
    connects: u32,
    disconnects: u32,
    mismatches: u32,
    last_error: Option<String>,
    fatal: Option<String>,
    final_resources: u64,
    final_seq: u64,
    live: Live,
}

/// Receipt of the update phase's writes by one agent.
#[derive(Default)]
struct Live {
    /// Bit per update id.
    seen: Vec<u64>,
    received: u64,
    duplicates: u64,
    latencies_us: Vec<u32>,
}

impl Live {
    fn on_update(&mut self, revision: &str, shared: &Shared) {
        if shared.updates == 0 {
            return;
        }
        let Ok(rev) = revision.parse::<u64>() else {
            return;
        };
        let Some(id) = rev.checked_sub(shared.base_rev + 1) else {
            return;
        };
        let id = id as usize;
        if id >= shared.updates {
            return;
        }
        let now = shared.elapsed_ns();
        if self.seen.is_empty() {
            self.seen = vec![0; shared.updates.div_ceil(64)];
        }
        let (word, bit) = (id / 64, 1u64 << (id % 64));
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[word] |= bit;
        self.received += 1;
        let written = shared.write_ns[id].load(Ordering::Acquire);
        let latency_us = now.saturating_sub(written) / 1000;
        self.latencies_us
            .push(u32::try_from(latency_us).unwrap_or(u32::MAX));
        shared.delivered.fetch_add(1, Ordering::Relaxed);
    }
}

fn agent_config(url: &str, index: usize, subscription: &str) -> AgentConfig {
    let mut config = AgentConfig::new(url);
    config.node_name = format!("load-agent-{index:05}");
    config.subscription = subscription.to_string();
    config
}

fn mark_synced(shared: &Shared, index: usize, resources: u64) {
    shared.resources[index].store(resources, Ordering::Relaxed);
    shared.sync_ns[index].store(shared.elapsed_ns(), Ordering::Release);
    shared.synced.fetch_add(1, Ordering::AcqRel);
}

/// A `meshsync_agent::Agent` with its full mirror, until `stop`.
async fn full_agent(
    index: usize,
    url: String,
    subscription: String,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> AgentReport {
    let mut report = AgentReport::default();
    let mut agent = match Agent::new(agent_config(&url, index, &subscription)) {
        Ok(agent) => agent,
        Err(e) => {
            report.fatal = Some(e.to_string());
            return report;
        }
    };
    let mut synced = false;
    loop {
        let event = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            event = agent.next() => event,
        };
        match event {
            Ok(AgentEvent::Update(u)) => report.live.on_update(&u.revision, &shared),
            Ok(AgentEvent::Status { in_sync: true, .. }) if !synced => {
                synced = true;
                mark_synced(&shared, index, agent.mirror().len() as u64);
            }
            Ok(AgentEvent::Connected { .. }) => {
                if report.connects == 0 {
                    shared.connected.fetch_add(1, Ordering::Relaxed);
                }
                report.connects += 1;
            }
            Ok(AgentEvent::Disconnected { error, .. }) => {
                report.disconnects += 1;
                report.last_error = Some(error);
                shared.disconnects.fetch_add(1, Ordering::Relaxed);
            }
            Ok(AgentEvent::DigestMismatch(_)) => {
                report.mismatches += 1;
                shared.mismatches.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(e) => {
                report.fatal = Some(e.to_string());
                break;
            }
        }
    }
    report.final_resources = agent.mirror().len() as u64;
    report.final_seq = agent.mirror().seq();
    report
}

/// A raw subscriber that keeps no values: it decodes every message, checks the snapshot against
/// the server's per-cluster key count and digest, counts resources, and reconnects with backoff.
async fn light_agent(
    index: usize,
    url: String,
    subscription: String,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> AgentReport {
    let mut report = AgentReport::default();
    let mut synced = false;
    let mut attempt = 0u32;
    loop {
        let connects_before = report.connects;
        let session = light_session(
            index,
            &url,
            &subscription,
            &shared,
            &mut report,
            &mut synced,
        );
        let result = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            result = session => result,
        };
        if report.connects > connects_before {
            // Subscribed this time: start the backoff over, as the agent does.
            attempt = 0;
        }
        match result {
            Ok(()) => {}
            Err(error) => {
                report.disconnects += 1;
                report.last_error = Some(error);
                shared.disconnects.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Same policy as the agent: 100 ms doubling to 5 s, jittered between half and all of it.
        let base = Duration::from_millis(100)
            .saturating_mul(1 << attempt.min(6))
            .min(Duration::from_secs(5));
        let delay = base
            .mul_f64(0.5 + 0.5 * (mix(index as u64 ^ u64::from(attempt)) as f64 / u64::MAX as f64));
        attempt += 1;
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    report
}

/// One subscription of a light agent; returns when the stream ends or fails.
async fn light_session(
    index: usize,
    url: &str,
    subscription: &str,
    shared: &Shared,
    report: &mut AgentReport,
    synced: &mut bool,
) -> Result<(), String> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let mut client = SyncClient::new(channel).max_decoding_message_size(64 << 20);
    let request = pb::SubscribeRequest {
        node_name: format!("load-agent-{index:05}"),
        client_version: "load".into(),
        subscription: subscription.to_string(),
        ..Default::default()
    };
    let mut stream = client
        .subscribe(request)
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    // Per cluster during the snapshot: (keys, digest) of what was received.
    let mut snapshot: Option<BTreeMap<String, (u64, u64)>> = None;
    loop {
        let event = match stream.message().await {
            Ok(Some(event)) => event,
            Ok(None) => return Err("server closed the stream".into()),
            Err(s) => return Err(format!("{:?}: {}", s.code(), s.message())),
        };
        match event.event {
            Some(sync_event::Event::Hello(_)) => {
                if report.connects == 0 {
                    shared.connected.fetch_add(1, Ordering::Relaxed);
                }
                report.connects += 1;
                report.final_resources = 0;
                snapshot = Some(BTreeMap::new());
            }
            Some(sync_event::Event::Updates(batch)) => {
                for u in &batch.updates {
                    if !batch.unordered {
                        report.final_seq = report.final_seq.max(u.seq);
                    }
                    if u.r#type == pb::UpdateType::Deleted as i32 {
                        report.final_resources = report.final_resources.saturating_sub(1);
                    } else if u.r#type == pb::UpdateType::New as i32 {
                        report.final_resources += 1;
                    }
                    if let Some(clusters) = snapshot.as_mut() {
                        let hash = entry_hash(&u.cluster, &u.kind, &u.namespace, &u.name, &u.value);
                        let entry = match clusters.get_mut(&u.cluster) {
                            Some(entry) => entry,
                            None => clusters.entry(u.cluster.clone()).or_default(),
                        };
                        entry.0 += 1;
                        entry.1 = entry.1.wrapping_add(hash);
                    }
                    report.live.on_update(&u.revision, shared);
                }
            }
            Some(sync_event::Event::Status(status)) => {
                report.final_seq = report.final_seq.max(status.seq);
                if let Some(clusters) = snapshot.take() {
                    for c in &status.clusters {
                        let (keys, digest) = clusters.get(&c.cluster).copied().unwrap_or_default();
                        if (keys, digest) != (c.keys, c.digest) {
                            report.mismatches += 1;
                            shared.mismatches.fetch_add(1, Ordering::Relaxed);
                            return Err(format!(
                                "snapshot of cluster {:?} differs from the server's digest \
                                 ({keys} keys here, {} there)",
                                c.cluster, c.keys
                            ));
                        }
                    }
                }
                if !*synced && status.overall() == pb::SyncState::InSync {
                    *synced = true;
                    mark_synced(shared, index, report.final_resources);
                }
            }
            Some(sync_event::Event::Compressed(_)) | None => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The in-process server.

struct LocalServer {
    cache: SnapshotCache,
    url: String,
    connections: Arc<Connections>,
    source: mpsc::UnboundedSender<SourceEvent>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts a cache fed by a channel and a server, and loads `--keys` endpoints.
async fn start_local(args: &Args) -> anyhow::Result<LocalServer> {
    let keys = args.keys;
    let (source, events) = mpsc::unbounded();
    let cache = SnapshotCache::spawn(events, CacheConfig::default());
    let defaults = ServerConfig::default();
    let config = ServerConfig {
        listen: args.listen,
        health_listen: None,
        keepalive_interval: args.keepalive.0.unwrap_or(defaults.keepalive_interval),
        keepalive_timeout: args.keepalive.1.unwrap_or(defaults.keepalive_timeout),
        ..defaults
    };
    let bound = BoundServer::bind(cache.clone(), config).await?;
    let url = format!("http://{}", bound.grpc_addr()?);
    let connections = bound.connections();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(e) = bound.serve(shutdown).await {
            eprintln!("load: server failed: {e}");
        }
    });
    let status = |status| SourceEvent::Status {
        cluster: "".into(),
        status,
    };
    let send = |event| source.unbounded_send(event).context("cache input closed");
    send(status(SourceStatus::ResyncInProgress))?;
    send(SourceEvent::ResyncStart { cluster: "".into() })?;
    for i in 0..keys {
        let (key, value) = wep(i, 0);
        let revision: Revision = (i as u64 + 1).to_string().into();
        send(SourceEvent::Upsert {
            key,
            value,
            revision,
        })?;
    }
    send(SourceEvent::ResyncDone { cluster: "".into() })?;
    send(status(SourceStatus::InSync))?;
    let loaded = cache
        .wait_for_status(|s| s.overall == SyncState::InSync && s.total_keys() == keys as u64)
        .await;
    if !loaded {
        bail!("the cache stopped while loading");
    }
    Ok(LocalServer {
        cache,
        url,
        connections,
        source,
        stop,
        task,
    })
}

/// The server's `Status`: (connections, total keys, seq).
async fn server_status(url: &str) -> anyhow::Result<(u32, u64, u64)> {
    let call = async {
        let mut client = SyncClient::connect(url.to_string()).await?;
        let response = client.status(pb::StatusRequest {}).await?.into_inner();
        let status = response.status.unwrap_or_default();
        let keys = status.clusters.iter().map(|c| c.keys).sum();
        anyhow::Ok((response.connections, keys, status.seq))
    };
    tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .context("Status call timed out")?
}

// ---------------------------------------------------------------------------------------------
// The run.

fn run(args: Args) -> anyhow::Result<bool> {
    let mut ok = true;
    let fds_needed = args.agents as u64 * if args.server.is_some() { 1 } else { 2 } + 64;
    if let Some(limit) = open_files_limit()
        && limit < fds_needed
    {
        bail!(
            "{} agents need about {fds_needed} file descriptors; the limit is {limit} (ulimit -n)",
            args.agents
        );
    }
    let runtime = |name: &'static str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .thread_keep_alive(Duration::from_secs(3600))
            .enable_all()
            .build()
            .context("cannot start a runtime")
    };
    let agents_rt = runtime("ms-agents")?;
    let cpu_start = Cpu::now();
    let t_start = Instant::now();

    // The server: in-process (preloaded) or remote.
    let (server_rt, local, url) = match &args.server {
        Some(url) => (None, None, url.clone()),
        None => {
            let server_rt = runtime("ms-server")?;
            eprintln!(
                "load: loading {} WorkloadEndpoints into an in-process server…",
                args.keys
            );
            let local = server_rt.block_on(start_local(&args))?;
            let url = local.url.clone();
            if args.serve_only {
                serve_only(&local, &cpu_start, t_start);
            }
            (Some(server_rt), Some(local), url)
        }
    };
    let load_wall = t_start.elapsed();
    let cpu_loaded = Cpu::now();
    let (_, rss_loaded) = memory();
    let (_, server_keys, _) = agents_rt.block_on(server_status(&url))?;
    println!(
        "# meshsync load: {} agents, {} keys, subscription {}",
        args.agents, server_keys, args.subscription
    );
    match &local {
        Some(local) => println!(
            "server: in-process at {} (preloaded {} keys in {}, seq {}); RSS after load {}",
            local.url,
            args.keys,
            ms(load_wall),
            local.cache.head().seq,
            gib(rss_loaded)
        ),
        None => println!("server: {url} (reports {server_keys} keys)"),
    }
    if local.is_some() {
        println!(
            "  load CPU: {}",
            cpu_loaded.since(&cpu_start).describe(load_wall)
        );
    }

    // Full mirrors or light agents.
    // A mirrored entry: the ~1.1 KB value (a slice of the received frame), key strings,
    // revision and map overhead; measured at about 2 KB.
    let mirrors = args.agents as u64 * server_keys * 2048;
    let available = mem_available().unwrap_or(u64::MAX);
    let mode = match args.mode {
        Mode::Auto if mirrors as f64 > 0.6 * available as f64 => Mode::Light,
        Mode::Auto => Mode::Full,
        other => other,
    };
    println!(
        "agents: {} ({}); full mirrors would need about {}, {} available",
        args.agents,
        match mode {
            Mode::Full => "full: meshsync_agent::Agent, each with its mirror",
            _ => "light: raw subscribers that verify the snapshot digest and keep no values",
        },
        gib(mirrors),
        gib(available)
    );

    // Phase 1: connect every agent at once and wait until all are in sync.
    let base_rev = args.keys as u64;
    let shared = Arc::new(Shared {
        t0: Instant::now(),
        base_rev,
        updates: args.updates,
        write_ns: (0..args.updates).map(|_| AtomicU64::new(0)).collect(),
        sync_ns: (0..args.agents).map(|_| AtomicU64::new(0)).collect(),
        resources: (0..args.agents).map(|_| AtomicU64::new(0)).collect(),
        connected: AtomicUsize::new(0),
        synced: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
        disconnects: AtomicU64::new(0),
        mismatches: AtomicU64::new(0),
        written: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let cpu_before_sync = Cpu::now();
    let handles: Vec<_> = (0..args.agents)
        .map(|i| {
            let (url, sub, shared, stop) = (
                url.clone(),
                args.subscription.clone(),
                shared.clone(),
                stop_rx.clone(),
            );
            agents_rt.spawn(async move {
                let report = match mode {
                    Mode::Full => full_agent(i, url, sub, shared.clone(), stop).await,
                    _ => light_agent(i, url, sub, shared.clone(), stop).await,
                };
                shared.finished.fetch_add(1, Ordering::AcqRel);
                report
            })
        })
        .collect();
    eprintln!("load: {} agents started", args.agents);
    let all_synced = agents_rt.block_on(async {
        let deadline = shared.t0 + args.timeout;
        let mut last_progress = Instant::now();
        loop {
            let synced = shared.synced.load(Ordering::Acquire);
            if synced == args.agents {
                return true;
            }
            if shared.finished.load(Ordering::Acquire) == args.agents || Instant::now() > deadline {
                return false;
            }
            if last_progress.elapsed() >= Duration::from_secs(2) {
                last_progress = Instant::now();
                eprintln!(
                    "load: [{:6.1} s] connected {}/{}, in sync {synced}/{}, disconnects {}, RSS {}",
                    shared.t0.elapsed().as_secs_f64(),
                    shared.connected.load(Ordering::Relaxed),
                    args.agents,
                    args.agents,
                    shared.disconnects.load(Ordering::Relaxed),
                    gib(memory().1)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let sync_wall = shared.t0.elapsed();
    let cpu_synced = Cpu::now();
    let (hwm_synced, rss_synced) = memory();
    let mut sync_times: Vec<Duration> = shared
        .sync_ns
        .iter()
        .map(|n| n.load(Ordering::Acquire))
        .filter(|&n| n > 0)
        .map(|n| Duration::from_nanos(n - 1))
        .collect();
    sync_times.sort();
    let resources: Vec<u64> = shared
        .resources
        .iter()
        .zip(&shared.sync_ns)
        .filter(|(_, s)| s.load(Ordering::Acquire) > 0)
        .map(|(r, _)| r.load(Ordering::Relaxed))
        .collect();
    println!();
    println!("## connect and sync");
    if sync_times.is_empty() {
        println!("no agent got in sync within {:?}", args.timeout);
        ok = false;
    } else {
        println!(
            "in sync: {}/{} agents; per agent min {}, median {}, p90 {}, max {}; all in sync after {}",
            sync_times.len(),
            args.agents,
            ms(sync_times[0]),
            ms(quantile(&sync_times, 0.5)),
            ms(quantile(&sync_times, 0.9)),
            ms(*sync_times.last().unwrap()),
            ms(sync_wall)
        );
        let (min, max) = (
            resources.iter().min().copied().unwrap_or(0),
            resources.iter().max().copied().unwrap_or(0),
        );
        println!("resources per agent: min {min}, max {max} (server holds {server_keys})");
        if min != max || (local.is_some() && max != server_keys) {
            ok = false;
        }
    }
    if !all_synced {
        ok = false;
    }
    println!(
        "disconnects/retries: {}, digest mismatches: {}",
        shared.disconnects.load(Ordering::Relaxed),
        shared.mismatches.load(Ordering::Relaxed)
    );
    match agents_rt.block_on(server_status(&url)) {
        Ok((connections, _, _)) => {
            println!("server Status: {connections} connections");
            if connections as usize != args.agents {
                ok = false;
            }
        }
        Err(e) => println!("server Status failed: {e:#}"),
    }
    let sync_bytes = args.agents as u64 * server_keys * 1100;
    println!(
        "CPU: {} (~{:.0} MB/s of values delivered)",
        cpu_synced.since(&cpu_before_sync).describe(sync_wall),
        sync_bytes as f64 / 1e6 / sync_wall.as_secs_f64()
    );
    println!(
        "memory: RSS {} when in sync (+{} over the loaded server), peak {}",
        gib(rss_synced),
        gib(rss_synced.saturating_sub(rss_loaded)),
        gib(hwm_synced)
    );

    // Phase 2: updates at a fixed rate, latency from write to receipt in every agent.
    if let (Some(local), true) = (&local, args.updates > 0 && all_synced) {
        let cpu_before = Cpu::now();
        let t_updates = Instant::now();
        let writer = {
            let (shared, source) = (shared.clone(), local.source.clone());
            let (updates, rate, keys) = (args.updates, args.rate, args.keys);
            std::thread::Builder::new()
                .name("ms-writer".into())
                .spawn(move || {
                    let start = Instant::now();
                    for id in 0..updates {
                        let due = start + Duration::from_secs_f64(id as f64 / rate);
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                        let (key, value) = wep(id % keys, id as u64 + 1);
                        let revision: Revision =
                            (shared.base_rev + 1 + id as u64).to_string().into();
                        shared.write_ns[id].store(shared.elapsed_ns(), Ordering::Release);
                        if source
                            .unbounded_send(SourceEvent::Upsert {
                                key,
                                value,
                                revision,
                            })
                            .is_err()
                        {
                            break;
                        }
                        shared.written.fetch_add(1, Ordering::Release);
                    }
                })?
        };
        eprintln!("load: writing {} updates at {}/s", args.updates, args.rate);
        let expected = (args.agents * args.updates) as u64;
        let mut written_at: Option<Instant> = None;
        agents_rt.block_on(async {
            let mut last_progress = Instant::now();
            loop {
                let delivered = shared.delivered.load(Ordering::Relaxed);
                let written = shared.written.load(Ordering::Acquire);
                if (written == args.updates as u64 || writer.is_finished()) && written_at.is_none() {
                    written_at = Some(Instant::now());
                }
                if delivered >= expected {
                    break;
                }
                if written_at.is_some_and(|t| t.elapsed() > args.drain) {
                    break;
                }
                if last_progress.elapsed() >= Duration::from_secs(2) {
                    last_progress = Instant::now();
                    eprintln!(
                        "load: [{:6.1} s] written {written}/{}, delivered {delivered}/{expected}, RSS {}",
                        t_updates.elapsed().as_secs_f64(),
                        args.updates,
                        gib(memory().1)
                    );
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let _ = writer.join();
        let updates_wall = t_updates.elapsed();
        let write_wall = written_at.map_or(updates_wall, |t| t - t_updates);
        let cpu_updates = Cpu::now().since(&cpu_before);
        // Stop the agents and collect what each received.
        let head_seq = local.cache.head().seq;
        let _ = stop_tx.send(true);
        let reports = join_all(&agents_rt, handles);
        let mut latencies: Vec<u32> = Vec::with_capacity(expected as usize);
        let (mut received, mut duplicates, mut at_head, mut fatal) =
            (0u64, 0u64, 0usize, Vec::new());
        for r in &reports {
            latencies.extend_from_slice(&r.live.latencies_us);
            received += r.live.received;
            duplicates += r.live.duplicates;
            if r.final_seq == head_seq && r.final_resources == args.keys as u64 {
                at_head += 1;
            }
            if let Some(e) = &r.fatal {
                fatal.push(e.clone());
            }
        }
        latencies.sort_unstable();
        let lost = expected.saturating_sub(received);
        println!();
        println!("## updates");
        println!(
            "written: {} updates at {}/s in {} (achieved {:.0}/s); {} deliveries expected",
            shared.written.load(Ordering::Relaxed),
            args.rate,
            ms(write_wall),
            args.updates as f64 / write_wall.as_secs_f64().max(1e-9),
            expected
        );
        if latencies.is_empty() {
            println!("no update was received");
        } else {
            let us = |v: u32| format!("{:.2} ms", f64::from(v) / 1e3);
            println!(
                "write→agent latency: p50 {}, p90 {}, p99 {}, p99.9 {}, max {}",
                us(quantile(&latencies, 0.5)),
                us(quantile(&latencies, 0.9)),
                us(quantile(&latencies, 0.99)),
                us(quantile(&latencies, 0.999)),
                us(*latencies.last().unwrap())
            );
        }
        println!("received {received}, lost {lost}, duplicates {duplicates}");
        println!(
            "agents at the head (seq {head_seq}, {} resources): {at_head}/{}",
            args.keys, args.agents
        );
        println!("CPU: {}", cpu_updates.describe(updates_wall));
        println!(
            "memory: RSS {}, peak so far {}",
            gib(memory().1),
            gib(memory().0)
        );
        if lost > 0 || duplicates > 0 || at_head != args.agents || !fatal.is_empty() {
            ok = false;
        }
        for e in fatal.iter().take(3) {
            println!("agent failed: {e}");
        }
    } else {
        let _ = stop_tx.send(true);
        let reports = join_all(&agents_rt, handles);
        let errors: Vec<&String> = reports
            .iter()
            .filter_map(|r| r.fatal.as_ref().or(r.last_error.as_ref()))
            .collect();
        for e in errors.iter().take(3) {
            println!("agent error: {e}");
        }
    }

    // Shut down and summarise (threads are measured before their runtimes end).
    let cpu_total = Cpu::now().since(&cpu_start);
    let wall_total = t_start.elapsed();
    let (hwm, _) = memory();
    if let (Some(server_rt), Some(local)) = (server_rt, local) {
        let _ = local.stop.send(());
        let _ = server_rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), local.task).await });
        server_rt.shutdown_timeout(Duration::from_secs(5));
    }
    agents_rt.shutdown_timeout(Duration::from_secs(5));
    println!();
    println!("## process");
    println!("peak RSS (VmHWM): {}", gib(hwm));
    println!("CPU total: {}", cpu_total.describe(wall_total));
    println!("result: {}", if ok { "OK" } else { "FAILED" });
    Ok(ok)
}

/// Serves forever, printing the server's connections, memory and CPU every 5 s.
fn serve_only(local: &LocalServer, cpu_start: &Cpu, t_start: Instant) -> ! {
    println!(
        "serving {} keys at {}",
        local.cache.status().total_keys(),
        local.url
    );
    let mut last = (Cpu::now(), Instant::now());
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let (hwm, rss) = memory();
        let now = (Cpu::now(), Instant::now());
        eprintln!(
            "load: [{:7.1} s] connections {}, RSS {}, peak {}; last 5 s: {}; total CPU {:.2} s",
            t_start.elapsed().as_secs_f64(),
            local.connections.active(),
            gib(rss),
            gib(hwm),
            now.0.since(&last.0).describe(now.1 - last.1),
            now.0.since(cpu_start).process
        );
        last = now;
    }
}

fn join_all(
    rt: &tokio::runtime::Runtime,
    handles: Vec<tokio::task::JoinHandle<AgentReport>>,
) -> Vec<AgentReport> {
    rt.block_on(async {
        let mut reports = Vec::with_capacity(handles.len());
        for handle in handles {
            match tokio::time::timeout(Duration::from_secs(30), handle).await {
                Ok(Ok(report)) => reports.push(report),
                Ok(Err(e)) => reports.push(AgentReport {
                    fatal: Some(format!("agent task failed: {e}")),
                    ..AgentReport::default()
                }),
                Err(_) => reports.push(AgentReport {
                    fatal: Some("agent did not stop".into()),
                    ..AgentReport::default()
                }),
            }
        }
        reports
    })
}
