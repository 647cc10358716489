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
//!   generation), `report`, `quit`. EOF on stdin is `quit`.
//!
//! Snapshot data (the initial sync and any resync after a reconnect) is applied but never counted:
//! only live updates are deliveries.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use clap::Args;
use hdrhistogram::Histogram;
use meshsync_agent::{Agent, AgentConfig, AgentEvent};
use meshsync_etcd::{EtcdClient, EtcdConfig, EtcdError, WatchStream, pb as etcd, prefix_end};
use meshsync_proto::{self as proto, SyncEvent, sync_client::SyncClient, sync_event};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tonic::transport::Endpoint;
use tracing::{info, warn};

use crate::floor::next_frame;
use crate::model::{AgentsMessage, Latency, System};
use crate::workload::{self, now_ns, stamp};

#[derive(Args, Debug, Clone)]
pub struct AgentsArgs {
    /// The system the clients talk to.
    #[arg(long, value_enum)]
    pub system: System,
    /// `http://127.0.0.1:P` (meshsync, etcd, grpc-proxy) or `127.0.0.1:P` (floor).
    #[arg(long)]
    pub target: String,
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

/// Generation value meaning "no `reset` yet": nothing is counted.
const NO_GENERATION: u64 = u64::MAX;
/// Latency histograms: shards, bounds and precision.
const SHARDS: usize = 64;
const MAX_LATENCY_US: u64 = 3_600_000_000;
const SIGFIGS: u8 = 3;
/// Points of the CDF in a report.
const CDF_POINTS: usize = 100;
/// First failures logged to stderr (the rest are only counted).
const LOGGED_FAILURES: usize = 5;

fn new_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGFIGS) {
        Ok(h) => h,
        // The bounds are constants that hdrhistogram accepts; never reached.
        Err(e) => unreachable!("invalid histogram bounds: {e:?}"),
    }
}

/// State shared by every client and the command loop.
struct Shared {
    /// The generation counted; read under a shard lock so `reset` cannot race a recording.
    generation: AtomicU64,
    /// Latency histograms (µs); client `i` records into shard `i % SHARDS`.
    shards: Box<[Mutex<Histogram<u64>>]>,
    synced: AtomicUsize,
    failed: AtomicUsize,
    /// Clients synced or failed (one counter, so exactly one client sees the last one).
    finished: AtomicUsize,
    /// Synced clients that lost their connection and reconnected.
    reconnects: AtomicUsize,
    logged: AtomicUsize,
    logged_reconnects: AtomicUsize,
    /// Seconds from `start` until each synced client held the snapshot.
    sync_times: Mutex<Vec<f64>>,
    start: Instant,
    all_done: Notify,
    n: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn new(n: usize) -> Self {
        Shared {
            generation: AtomicU64::new(NO_GENERATION),
            shards: (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect(),
            synced: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            reconnects: AtomicUsize::new(0),
            logged: AtomicUsize::new(0),
            logged_reconnects: AtomicUsize::new(0),
            sync_times: Mutex::new(Vec::with_capacity(n)),
            start: Instant::now(),
            all_done: Notify::new(),
            n,
        }
    }

    /// Records the latency of every value stamped with the current generation, received at
    /// `now` (ns). One lock per call, so callers pass a whole batch.
    fn record<'a>(&self, client: usize, now: u64, values: impl Iterator<Item = &'a [u8]>) {
        if self.generation.load(Ordering::Relaxed) == NO_GENERATION {
            return;
        }
        let mut histogram = lock(&self.shards[client % SHARDS]);
        let generation = self.generation.load(Ordering::Relaxed);
        for value in values {
            if let Some((g, ts)) = stamp(value)
                && g == generation
            {
                histogram.saturating_record(now.saturating_sub(ts) / 1000);
            }
        }
    }

    fn reset(&self, generation: u64) {
        self.generation.store(generation, Ordering::Relaxed);
        for shard in self.shards.iter() {
            lock(shard).reset();
        }
    }

    fn merged(&self) -> Histogram<u64> {
        let mut total = new_histogram();
        for shard in self.shards.iter() {
            // Same bounds everywhere: adding cannot fail.
            let _ = total.add(&*lock(shard));
        }
        total
    }

    fn received(&self) -> u64 {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    fn mark_synced(&self) {
        let t = self.start.elapsed().as_secs_f64();
        lock(&self.sync_times).push(t);
        self.synced.fetch_add(1, Ordering::Relaxed);
        self.finished_one();
    }

    fn mark_failed(&self, client: usize, error: &str) {
        if self.logged.fetch_add(1, Ordering::Relaxed) < LOGGED_FAILURES {
            warn!(client, "client failed: {error}");
        }
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.finished_one();
    }

    /// A synced client lost its connection (it reconnects; its resync is not counted).
    fn lost_connection(&self, client: usize, error: &dyn std::fmt::Display) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
        if self.logged_reconnects.fetch_add(1, Ordering::Relaxed) < LOGGED_FAILURES {
            warn!(client, "synced client lost its connection: {error}");
        }
    }

    fn finished_one(&self) {
        if self.finished.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.all_done.notify_one();
        }
    }

    fn progress(&self) -> AgentsMessage {
        AgentsMessage::Progress {
            synced: self.synced.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            received: self.received(),
        }
    }
}

/// The latency summary of `h` (µs), with [`CDF_POINTS`] log-spaced CDF points.
pub fn summarize(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    let lo = h.min().max(1);
    let hi = h.max().max(lo);
    let mut cdf: Vec<(u64, f64)> = Vec::with_capacity(CDF_POINTS + 1);
    let ratio = hi as f64 / lo as f64;
    for i in 0..CDF_POINTS {
        let x = lo as f64 * ratio.powf(i as f64 / (CDF_POINTS - 1) as f64);
        let v = (x.round() as u64).clamp(lo, hi);
        if cdf.last().is_some_and(|&(last, _)| last >= v) {
            continue;
        }
        cdf.push((v, h.quantile_below(v).min(1.0)));
    }
    if let Some(last) = cdf.last_mut() {
        last.1 = 1.0;
    }
    Latency {
        count: h.len(),
        p50_us: h.value_at_quantile(0.50),
        p90_us: h.value_at_quantile(0.90),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
        cdf,
    }
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

/// Raises the soft open-file limit to the hard limit; returns the new soft limit.
pub(crate) fn raise_nofile_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the `rlimit` we pass, which is valid for the whole call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit only reads the `rlimit` we pass, which is valid for the whole call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// Lines read from stdin by a plain thread (so no blocking read is left inside the runtime); the
/// channel closes at EOF.
pub(crate) fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut line = String::new();
            loop {
                line.clear();
                match stdin.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let quit = line.trim() == "quit";
                        if tx.send(line.trim().to_string()).is_err() || quit {
                            return;
                        }
                    }
                }
            }
        });
    if let Err(e) = spawned {
        // Without stdin nobody can stop us; the closed channel reads as EOF.
        warn!("cannot start the stdin reader: {e}");
    }
    rx
}

/// A jittered, growing delay before attempt `attempt + 1` (50 ms doubling to 2 s, × 0.5..1).
fn backoff(client: usize, attempt: u32) -> Duration {
    let base_ms = (50u64 << attempt.min(6)).min(2000);
    // splitmix64 of (client, attempt, clock): cheap jitter without an RNG dependency.
    let mut x = (client as u64) ^ (u64::from(attempt) << 40) ^ now_ns();
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let frac = 0.5 + 0.5 * (x >> 11) as f64 / (1u64 << 53) as f64;
    Duration::from_millis((base_ms as f64 * frac) as u64)
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
    let mut commands = stdin_lines();
    let shared = Arc::new(Shared::new(args.n));
    let slots =
        (args.connect_concurrency > 0).then(|| Arc::new(Semaphore::new(args.connect_concurrency)));
    let args = Arc::new(args);
    info!(system = args.system.name(), n = args.n, target = %args.target, "starting clients");
    for id in 0..args.n {
        let (shared, args, slots) = (shared.clone(), args.clone(), slots.clone());
        tokio::spawn(async move {
            let slot = match slots {
                Some(s) => s.acquire_owned().await.ok(),
                None => None,
            };
            match args.system {
                System::Meshsync if args.meshsync_client == MeshsyncClient::Raw => {
                    event_client(id, &args, &shared, slot).await
                }
                System::Meshsync => meshsync_client(id, &args, &shared, slot).await,
                System::Etcd | System::GrpcProxy => etcd_client(id, &args, &shared, slot).await,
                System::Floor => event_client(id, &args, &shared, slot).await,
            }
        });
    }

    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut synced_sent = false;
    let mut reconnects_seen = 0;
    if args.n == 0 {
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
            command = commands.recv() => {
                let Some(command) = command else { break };
                let mut words = command.split_whitespace();
                match (words.next(), words.next()) {
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
                    (Some("quit"), None) => break,
                    (None, _) => {}
                    _ => warn!("unknown command {command:?}"),
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// meshsync

async fn meshsync_client(
    id: usize,
    args: &AgentsArgs,
    shared: &Shared,
    mut slot: Option<OwnedSemaphorePermit>,
) {
    let mut config = AgentConfig::new(args.target.clone());
    config.node_name = format!("bench-agent-{id}");
    config.subscription = "felix".into();
    config.connect_timeout = Duration::from_secs_f64(args.connect_timeout_s);
    config.backoff_initial = Duration::from_millis(50);
    config.backoff_max = Duration::from_secs(2);
    let mut agent = match Agent::new(config) {
        Ok(agent) => agent,
        Err(e) => return shared.mark_failed(id, &e.to_string()),
    };
    let mut synced = false;
    // True between a hello and the status ending its snapshot: those updates are not deliveries.
    let mut in_snapshot = true;
    let mut failures = 0u32;
    loop {
        let event = match agent.next().await {
            Ok(event) => event,
            Err(e) => {
                if !synced {
                    shared.mark_failed(id, &e.to_string());
                } else {
                    warn!(client = id, "agent stopped: {e}");
                }
                return;
            }
        };
        match event {
            AgentEvent::Update(update) => {
                if !in_snapshot {
                    shared.record(id, now_ns(), std::iter::once(&update.value[..]));
                } else if !synced {
                    continue;
                }
            }
            AgentEvent::Status { .. } => in_snapshot = false,
            AgentEvent::Connected { .. } => in_snapshot = true,
            AgentEvent::Disconnected { error, .. } => {
                if synced {
                    shared.lost_connection(id, &error);
                } else {
                    failures += 1;
                    if failures >= args.attempts {
                        return shared.mark_failed(id, &error);
                    }
                }
            }
            AgentEvent::Removed(_) | AgentEvent::DigestMismatch(_) => {}
        }
        if !synced && agent.mirror().in_sync() && agent.mirror().len() >= args.keys {
            synced = true;
            slot.take();
            shared.mark_synced();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// etcd and grpc-proxy

/// A client's local copy: etcd key → value.
type EtcdMap = HashMap<Bytes, Bytes>;

fn etcd_config(args: &AgentsArgs) -> EtcdConfig {
    let mut config = EtcdConfig::new(vec![args.target.clone()]);
    config.connect_timeout = Duration::from_secs_f64(args.connect_timeout_s);
    // A range of every key through a loaded proxy can take long; do not give up on it.
    config.request_timeout = Duration::from_secs(600);
    config
}

/// Connects, ranges the prefix at the current revision (one unpaged `Range`, as typical clients
/// do), applies it, and watches from the next revision.
async fn etcd_sync(
    config: &EtcdConfig,
    keys: usize,
) -> Result<(EtcdConnection, EtcdMap, i64), EtcdError> {
    let client = EtcdClient::connect(config).await?;
    let prefix = workload::PREFIX.as_bytes();
    let response = client
        .range(etcd::RangeRequest {
            key: Bytes::from_static(prefix),
            range_end: Bytes::from(prefix_end(prefix)),
            limit: 0,
            ..Default::default()
        })
        .await?;
    let revision = response.header.as_ref().map(|h| h.revision).unwrap_or(0);
    let mut map = EtcdMap::with_capacity(response.kvs.len().max(keys));
    for kv in response.kvs {
        map.insert(kv.key, kv.value);
    }
    let watch = client.watch_prefix(prefix, revision + 1).await?;
    Ok((
        EtcdConnection {
            _client: client,
            watch,
        },
        map,
        revision,
    ))
}

/// A watch and the client whose connection carries it (kept so the connection stays up).
struct EtcdConnection {
    _client: EtcdClient,
    watch: WatchStream,
}

async fn etcd_client(
    id: usize,
    args: &AgentsArgs,
    shared: &Shared,
    slot: Option<OwnedSemaphorePermit>,
) {
    let config = etcd_config(args);
    let mut attempt = 0u32;
    let (mut conn, mut map, mut revision) = loop {
        match etcd_sync(&config, args.keys).await {
            Ok(state) => break state,
            Err(e) => {
                attempt += 1;
                if attempt >= args.attempts {
                    return shared.mark_failed(id, &e.to_string());
                }
                tokio::time::sleep(backoff(id, attempt)).await;
            }
        }
    };
    if map.len() < args.keys && shared.logged.fetch_add(1, Ordering::Relaxed) < LOGGED_FAILURES {
        warn!(
            client = id,
            got = map.len(),
            expected = args.keys,
            "fewer keys than expected"
        );
    }
    drop(slot);
    shared.mark_synced();
    loop {
        match conn.watch.next().await {
            Ok(response) => {
                if response.events.is_empty() {
                    continue;
                }
                let now = now_ns();
                shared.record(
                    id,
                    now,
                    response
                        .events
                        .iter()
                        .filter(|ev| ev.r#type == etcd::event::EventType::Put as i32)
                        .filter_map(|ev| ev.kv.as_ref())
                        .map(|kv| &kv.value[..]),
                );
                for ev in response.events {
                    let Some(kv) = ev.kv else { continue };
                    revision = revision.max(kv.mod_revision);
                    if ev.r#type == etcd::event::EventType::Delete as i32 {
                        map.remove(&kv.key);
                    } else {
                        map.insert(kv.key, kv.value);
                    }
                }
            }
            Err(e) => {
                // Like a real watcher: reconnect and resume from the next revision; if that was
                // compacted, range again (the resync is not counted).
                shared.lost_connection(id, &e);
                let mut attempt = 0u32;
                let mut error = e;
                loop {
                    attempt += 1;
                    tokio::time::sleep(backoff(id, attempt)).await;
                    if error.is_compacted() {
                        match etcd_sync(&config, args.keys).await {
                            Ok((c, m, r)) => {
                                (conn, map, revision) = (c, m, r);
                                break;
                            }
                            Err(e) => error = e,
                        }
                        continue;
                    }
                    let resumed = match EtcdClient::connect(&config).await {
                        Ok(c) => {
                            let w = c.watch_prefix(workload::PREFIX.as_bytes(), revision + 1);
                            w.await.map(|watch| EtcdConnection { _client: c, watch })
                        }
                        Err(e) => Err(e),
                    };
                    match resumed {
                        Ok(c) => {
                            conn = c;
                            break;
                        }
                        Err(e) => error = e,
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clients reading `SyncEvent`s into a plain map: the floor (length-prefixed frames on TCP) and
// meshsync with `--meshsync-client raw` (the generated gRPC client, no mirror).

/// A client's local copy: resource name → value.
type NameMap = HashMap<String, Bytes>;

/// The state of one client that survives its reconnections.
struct EventClient<'a> {
    id: usize,
    args: &'a AgentsArgs,
    shared: &'a Shared,
    map: NameMap,
    /// Past the snapshot of the current connection: updates are deliveries.
    live: bool,
    synced: bool,
    slot: Option<OwnedSemaphorePermit>,
}

impl EventClient<'_> {
    /// Applies one event; the first status ends the snapshot.
    fn handle(&mut self, event: SyncEvent) {
        match event.event {
            Some(sync_event::Event::Updates(batch)) => {
                if self.live {
                    let now = now_ns();
                    let values = batch.updates.iter().map(|u| &u.value[..]);
                    self.shared.record(self.id, now, values);
                }
                for update in batch.updates {
                    if update.r#type == proto::UpdateType::Deleted as i32 {
                        self.map.remove(&update.name);
                    } else {
                        self.map.insert(update.name, update.value);
                    }
                }
            }
            Some(sync_event::Event::Status(status)) => {
                self.live = true;
                if !self.synced && status.overall() == proto::SyncState::InSync {
                    self.synced = true;
                    self.slot.take();
                    if self.map.len() < self.args.keys
                        && self.shared.logged.fetch_add(1, Ordering::Relaxed) < LOGGED_FAILURES
                    {
                        warn!(
                            client = self.id,
                            got = self.map.len(),
                            expected = self.args.keys,
                            "fewer keys than expected"
                        );
                    }
                    self.shared.mark_synced();
                }
            }
            _ => {}
        }
    }
}

/// Runs sessions until the client fails: before its first sync a client gets `attempts`
/// consecutive failures; afterwards it reconnects for ever (each time through a full snapshot,
/// which is not counted).
async fn event_client(
    id: usize,
    args: &AgentsArgs,
    shared: &Shared,
    slot: Option<OwnedSemaphorePermit>,
) {
    let mut client = EventClient {
        id,
        args,
        shared,
        map: NameMap::with_capacity(args.keys),
        live: false,
        synced: false,
        slot,
    };
    let mut failures = 0u32;
    loop {
        client.live = false;
        client.map.clear();
        let result = match args.system {
            System::Floor => floor_session(&mut client).await,
            _ => meshsync_raw_session(&mut client).await,
        };
        let error = match result {
            Ok(()) => anyhow::anyhow!("the server ended the stream"),
            Err(e) => e,
        };
        if client.live {
            failures = 0;
            shared.lost_connection(id, &format_args!("{error:#}"));
        } else {
            failures += 1;
            if !client.synced && failures >= args.attempts {
                return shared.mark_failed(id, &format!("{error:#}"));
            }
        }
        tokio::time::sleep(backoff(id, failures)).await;
    }
}

/// One floor connection: connect, then read frames until it fails.
async fn floor_session(client: &mut EventClient<'_>) -> anyhow::Result<()> {
    let args = client.args;
    let timeout = Duration::from_secs_f64(args.connect_timeout_s);
    let mut socket = tokio::time::timeout(timeout, TcpStream::connect(&args.target))
        .await
        .map_err(|_| anyhow::anyhow!("connecting to {} timed out", args.target))?
        .with_context(|| format!("connecting to {}", args.target))?;
    let _ = socket.set_nodelay(true);
    // One byte, which the floor discards: if the kernel completed this connection with a SYN
    // cookie and then dropped it from a full accept queue, the byte repairs it (or draws a reset)
    // instead of leaving us waiting for ever.
    socket
        .write_all(b"\n")
        .await
        .context("sending the hello byte")?;
    let mut buf = BytesMut::with_capacity(64 << 10);
    loop {
        while let Some(frame) = next_frame(&mut buf)? {
            client.handle(SyncEvent::decode(frame).context("decoding a frame")?);
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 << 10);
        }
        if socket.read_buf(&mut buf).await? == 0 {
            anyhow::bail!("the floor closed the connection");
        }
    }
}

/// One meshsync subscription through the generated client, without the agent library's mirror.
async fn meshsync_raw_session(client: &mut EventClient<'_>) -> anyhow::Result<()> {
    let args = client.args;
    let channel = Endpoint::from_shared(args.target.clone())?
        .connect_timeout(Duration::from_secs_f64(args.connect_timeout_s))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20))
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.target))?;
    let mut sync = SyncClient::new(channel).max_decoding_message_size(64 << 20);
    let request = proto::SubscribeRequest {
        node_name: format!("bench-agent-{}", client.id),
        client_version: env!("CARGO_PKG_VERSION").to_string(),
        subscription: "felix".into(),
        ..Default::default()
    };
    let mut stream = sync.subscribe(request).await?.into_inner();
    while let Some(event) = stream.message().await? {
        client.handle(event);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_summary_of_a_histogram() {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let l = summarize(&h);
        assert_eq!(l.count, 10_000);
        assert!((4990..=5010).contains(&l.p50_us), "{}", l.p50_us);
        assert!((8990..=9010).contains(&l.p90_us), "{}", l.p90_us);
        assert!((9890..=9910).contains(&l.p99_us), "{}", l.p99_us);
        assert!((9980..=10_010).contains(&l.p999_us), "{}", l.p999_us);
        assert!((10_000..=10_010).contains(&l.max_us), "{}", l.max_us);
        assert!((60..=CDF_POINTS).contains(&l.cdf.len()), "{}", l.cdf.len());
        assert!(
            l.cdf
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
        );
        assert_eq!(l.cdf.first().map(|p| p.0), Some(1));
        assert_eq!(l.cdf.last().map(|p| p.1), Some(1.0));
        // Around the median, the CDF says one half.
        let mid = l.cdf.iter().find(|p| p.0 >= 5000).unwrap();
        assert!((0.45..0.6).contains(&mid.1), "{mid:?}");
        assert_eq!(summarize(&new_histogram()).count, 0);
        let mut one = new_histogram();
        one.record(42).unwrap();
        let l = summarize(&one);
        assert_eq!(l.cdf, vec![(42, 1.0)]);
    }

    #[test]
    fn only_the_current_generation_is_recorded_after_a_reset() {
        let shared = Shared::new(2);
        let now = now_ns();
        let old = workload::value(1, 1, now - 5_000_000);
        let new = workload::value(2, 2, now - 3_000_000);
        shared.record(0, now, [&old[..], &new[..]].into_iter());
        assert_eq!(
            shared.received(),
            0,
            "nothing counts before the first reset"
        );
        shared.reset(2);
        shared.record(0, now, [&old[..], &new[..], b"{}"].into_iter());
        shared.record(65, now, std::iter::once(&new[..]));
        let h = shared.merged();
        assert_eq!(h.len(), 2);
        assert!((2990..=3010).contains(&h.max()), "{}", h.max());
        shared.reset(3);
        assert_eq!(shared.received(), 0);
    }

    #[test]
    fn backoff_grows_and_is_jittered() {
        for attempt in 0..10 {
            let d = backoff(7, attempt).as_millis() as u64;
            let base = (50u64 << attempt.min(6)).min(2000);
            assert!(d >= base / 2 && d <= base, "{attempt}: {d}");
        }
    }
}
