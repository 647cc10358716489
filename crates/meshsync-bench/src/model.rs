//! The harness's vocabulary: systems, scenarios, and the results written as JSON, Markdown and
//! charts.

use serde::{Deserialize, Serialize};

/// A system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    /// etcd ← meshsync (etcd datastore) ← N agents.
    Meshsync,
    /// The same as `meshsync`, but every agent accepts zstd: the server compresses each frame
    /// once and sends the same compressed bytes to all of them.
    MeshsyncZstd,
    /// meshsync with agents that never resume (no token, no digests): every reconnect is a full
    /// snapshot, as with Typha — the `storm` scenario's baseline.
    MeshsyncFull,
    /// Exactly `meshsync` (same server flags, agents and workload) but with the server binary
    /// given by `--baseline-bin`: an older build, so a change can be compared with the build
    /// before it in one interleaved run.
    MeshsyncBaseline,
    /// etcd ← Calico's `calico-typha` (etcdv3 datastore) ← N clients of Typha's own `syncclient`
    /// (the Go program `typha-bench-agents`, built by `scripts/peers.sh`).
    Typha,
    /// etcd ← meshsync (as `meshsync`) serving Typha's protocol too (`--typha-listen`) ← the
    /// same Typha clients as `typha`, on meshsync's Typha port: Typha and meshsync compared with
    /// identical clients.
    MeshsyncTypha,
    /// etcd ← `etcd grpc-proxy start` ← N watchers.
    GrpcProxy,
    /// N watchers straight on etcd.
    Etcd,
    /// A trivial server writing the same encoded frames to N plain TCP sockets.
    Floor,
}

impl System {
    /// Whether this system's agents accept zstd.
    pub fn zstd(self) -> bool {
        self == System::MeshsyncZstd
    }

    /// Whether this is a meshsync server (`meshsync serve`) with meshsync's own agents on its
    /// gRPC port (`meshsync-typha`, whose clients are Typha's, is not).
    pub fn is_meshsync(self) -> bool {
        matches!(
            self,
            System::Meshsync
                | System::MeshsyncZstd
                | System::MeshsyncFull
                | System::MeshsyncBaseline
        )
    }

    /// Whether this system's clients are Typha's (`typha-bench-agents`, on Typha's protocol).
    pub fn typha_clients(self) -> bool {
        matches!(self, System::Typha | System::MeshsyncTypha)
    }

    pub fn name(self) -> &'static str {
        match self {
            System::Meshsync => "meshsync",
            System::MeshsyncZstd => "meshsync-zstd",
            System::MeshsyncFull => "meshsync-full",
            System::MeshsyncBaseline => "meshsync-baseline",
            System::Typha => "typha",
            System::MeshsyncTypha => "meshsync-typha",
            System::GrpcProxy => "grpc-proxy",
            System::Etcd => "etcd",
            System::Floor => "floor",
        }
    }
}

/// Latency figures over every (agent, update) pair, in microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// Points of the CDF: (latency µs, fraction ≤ it), increasing, for charts.
    pub cdf: Vec<(u64, f64)>,
}

/// CPU and memory of one process over a phase.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProcessUsage {
    /// `etcd`, `grpc-proxy`, `meshsync`, `typha`, `floor`, `agents`.
    pub role: String,
    pub cpu_seconds: f64,
    /// Resident set at the end of the phase, bytes.
    pub rss_bytes: u64,
    /// Peak resident set (VmHWM), bytes.
    pub peak_rss_bytes: u64,
    /// Bytes written by the process during the phase (`wchar`), sockets included.
    pub bytes_written: u64,
    /// Write-type syscalls of the process during the phase (`syscw`); 0 in older files.
    #[serde(default)]
    pub write_syscalls: u64,
    /// Bytes the process read during the phase with `read(2)`-type calls (`rchar`): for the Go
    /// Typha clients (`typha-bench-agents`), everything they received over their sockets — the
    /// bytes on the wire of `typha` and `meshsync-typha`, whichever syscall the server sends with;
    /// Rust agents read with `recv(2)`, which it does not count. 0 in older files.
    #[serde(default)]
    pub bytes_read: u64,
}

/// The `snapshot` scenario: N agents connect at once to K preloaded keys.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SnapshotResult {
    pub agents: usize,
    pub keys: usize,
    /// Until every agent held every key (seconds).
    pub total_s: f64,
    pub agent_min_s: f64,
    pub agent_median_s: f64,
    pub agent_max_s: f64,
    pub failed_agents: usize,
    /// Server-side processes over the phase.
    pub server: Vec<ProcessUsage>,
    pub agents_process: ProcessUsage,
    /// (RSS of the fan-out process with N agents − with none) / N, bytes.
    pub server_bytes_per_agent: f64,
}

/// One step of `churn` or `saturate`: a writer at `rate` updates/s for `duration_s`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChurnResult {
    /// Requested write rate.
    pub rate: f64,
    /// Writes actually made per second.
    pub achieved_rate: f64,
    pub duration_s: f64,
    pub writes: u64,
    /// writes × agents.
    pub expected_deliveries: u64,
    pub deliveries: u64,
    pub lost: u64,
    pub deliveries_per_s: f64,
    pub latency: Latency,
    pub server: Vec<ProcessUsage>,
    pub agents_process: ProcessUsage,
    /// Server CPU (every server-side process) per delivered update, microseconds.
    pub server_cpu_us_per_delivery: f64,
}

impl ChurnResult {
    /// A step counts toward capacity when something was delivered, nothing was lost and p99
    /// stayed within 1 s.
    pub fn within_limits(&self) -> bool {
        self.lost == 0 && self.latency.p99_us <= 1_000_000 && self.deliveries > 0
    }
}

/// One round of the `stalled` scenario: a baseline churn step, then the same step with some
/// agents not reading (its latency is the healthy agents'), then the resume.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StalledRound {
    /// Every agent reading.
    pub baseline: ChurnResult,
    /// The healthy agents while the others stalled.
    pub stalled: ChurnResult,
    /// stalled p99 / baseline p99.
    pub p99_ratio: f64,
    /// The fan-out process's resident set just before the stall, at its peak during it (sampled
    /// every 100 ms until every agent caught up) and after the recovery.
    pub rss_before_bytes: u64,
    pub rss_peak_bytes: u64,
    pub rss_after_bytes: u64,
    /// Agents whose connection ended during the stall or the recovery (the server closed them).
    pub reconnected_agents: usize,
    /// From the resume until every agent held a marker written then, seconds.
    pub recovery_s: f64,
}

/// The `stalled` scenario.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StalledResult {
    pub stalled_agents: usize,
    /// The server's write timeout (meshsync's `--write-timeout`), seconds.
    pub write_timeout_s: f64,
    pub rounds: Vec<StalledRound>,
}

/// One `storm` event: the server the agents were on went away, 1 % of the keys changed, and
/// the agents came back (to the restarted server, or to the second replica).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StormStep {
    /// `restart` or `move`.
    pub kind: String,
    pub changed_keys: usize,
    /// Bytes the serving process wrote from the event until every agent held the marker.
    pub bytes_sent: u64,
    /// From the spawn of the restarted server (restart, its start-up included) or the old one
    /// gone (move) until every agent held the marker written after the changes, seconds.
    pub recovery_s: f64,
    /// The server's CPU over the same span, seconds.
    pub server_cpu_s: f64,
    pub caught_up: usize,
}

/// The `storm` scenario.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StormResult {
    /// What the first full snapshot cost, for the ratios: bytes the fan-out process wrote and
    /// the time until every agent was in sync.
    pub snapshot_bytes: u64,
    pub snapshot_s: f64,
    pub steps: Vec<StormStep>,
}

/// Everything measured for one system.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SystemResult {
    pub system: String,
    /// Which round of `--repeat` this is (0-based); every round runs every system once.
    #[serde(default)]
    pub round: usize,
    pub snapshot: Option<SnapshotResult>,
    pub churn: Option<ChurnResult>,
    pub saturate: Vec<ChurnResult>,
    /// Highest deliveries/s of a `saturate` step with p99 ≤ 1 s and nothing lost.
    pub capacity_deliveries_per_s: Option<f64>,
    /// The `stalled` scenario.
    #[serde(default)]
    pub stalled: Option<StalledResult>,
    /// The `storm` scenario.
    #[serde(default)]
    pub storm: Option<StormResult>,
    /// Set when the system could not be measured (e.g. a process failed to start).
    pub error: Option<String>,
}

/// One invocation of the harness.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunResult {
    pub started_at: String,
    pub command: String,
    pub machine: String,
    pub agents: usize,
    pub keys: usize,
    pub value_bytes: usize,
    pub rate: f64,
    pub duration_s: f64,
    /// Rounds run (`--repeat`); 0 in files written before it existed, meaning 1.
    #[serde(default)]
    pub repeat: usize,
    /// Every (round, system) in the order they ran: round 0's systems, then round 1's, …
    pub systems: Vec<SystemResult>,
}

impl RunResult {
    /// The number of rounds (at least 1).
    pub fn rounds(&self) -> usize {
        self.repeat
            .max(1)
            .max(self.systems.iter().map(|s| s.round + 1).max().unwrap_or(1))
    }

    /// The same run restricted to one round: what a single-round report shows.
    pub fn round_view(&self, round: usize) -> RunResult {
        RunResult {
            repeat: 1,
            systems: self
                .systems
                .iter()
                .filter(|s| s.round == round)
                .cloned()
                .collect(),
            ..self.clone()
        }
    }

    /// The systems' names in the order they first ran.
    pub fn system_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for s in &self.systems {
            if !names.contains(&s.system.as_str()) {
                names.push(&s.system);
            }
        }
        names
    }
}

/// Messages the agents process prints on stdout, one JSON object per line.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentsMessage {
    /// Periodic: how many agents hold the full snapshot, and updates received in this generation.
    Progress {
        synced: usize,
        failed: usize,
        received: u64,
        /// Clients stalled now (`stall`); 0 from agents processes without stalls.
        #[serde(default)]
        stalled: usize,
        /// Clients holding the catch-up marker (`catchup <g>`).
        #[serde(default)]
        caught_up: usize,
        /// Synced clients that lost their connection (and reconnected), since the start.
        #[serde(default)]
        reconnects: usize,
    },
    /// Every agent holds the snapshot (or failed): seconds from the start of connecting, per agent.
    Synced {
        per_agent_s: Vec<f64>,
        failed: usize,
    },
    /// Answer to `report`: updates of the current generation received by all agents together.
    Report { received: u64, latency: Latency },
    /// A fatal problem.
    Error { message: String },
}
