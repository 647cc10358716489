//! Calico's real Felix as a Typha client in tests: what a node agent would program, recorded.
//!
//! [`Felix::start`] runs the `calico-felix` peer (Calico's `felix/daemon`, built by
//! `scripts/peers.sh`) for one node name against one Typha address, with the
//! `felix-dataplane-recorder` peer as its external dataplane driver: a test double of Felix's
//! Linux dataplane that keeps the IP sets, active policies, routes, VTEPs, endpoints… Felix asks
//! for and writes them as JSON after each burst of messages. So Felix needs no root, touches no
//! iptables or routes, and two Felixes (one per Typha server) can run side by side on one
//! machine; comparing their [`RecordedState`]s compares what the two servers make a real node
//! program, which is the property meshsync's Typha port must keep.
//!
//! Felix still reads its datastore directly at start (ClusterInformation's `datastoreReady`,
//! FelixConfiguration, IP pools for the encapsulation), so the datastore is given as well
//! ([`TyphaDatastore`]). It logs to a file; [`Felix::restarts_or_exits`] scans that log for the
//! lines Felix writes when it shuts down to be restarted (a config change, the datastore becoming
//! unready, an encapsulation change, a lost Typha connection) and says whether it still runs.
//! The process dies with the test binary ([`super::process::spawn_tied`]); the driver exits on
//! EOF of its pipe when Felix is gone.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::typha::{TyphaDatastore, file_tail, free_port, peer};

/// How often [`Felix::wait_state`] reads the recorder's file.
const POLL: Duration = Duration::from_millis(50);

/// Felix's log lines that mean it is shutting down to be restarted, or exiting (substrings, from
/// `felix/daemon/daemon.go` of the pinned Calico: the shutdown itself, then why).
pub const RESTART_OR_EXIT_LINES: &[&str] = &[
    // monitorAndManageShutdown, with reason="…" (config changed, encapsulation changed,
    // datastore became unready, Connection to Typha failed, Driver stopped, …).
    "Felix is shutting down",
    // handleConfigUpdate: a config value from Typha differs from the one Felix started with.
    "change DOES require Felix to restart",
    // sendMessagesToDataplaneDriver: "Datastore became unready, need to restart." and "IPIP
    // and/or VXLAN encapsulation changed, need to restart."
    "need to restart",
    "Exiting for config change",
    "Exiting for encapsulation change",
    "Restarting to avoid leaking datastore connections",
    "Failed to connect to Typha, giving up",
    "Driver process stopped",
    "Managed shutdown failed",
    "[FATAL]",
    "[PANIC]",
];

/// Felix's log line when its calculation graph is in sync with Typha (then the driver gets
/// `InSync`).
pub const IN_SYNC_LINE: &str = "Datastore now in sync.";
/// Felix's log line when its Typha connection is up (`Connected to Typha on attempt N`).
pub const TYPHA_CONNECTED_LINE: &str = "Connected to Typha on attempt";

/// Felix configuration keys that differ between two Felixes of one test by construction (set
/// per instance by [`felix_environment`]; Felix takes every `FELIX_*` variable as config, so the
/// recorder's `FELIX_RECORDER_STATE` shows up as `recorder_state`); [`RecordedState::comparable`]
/// leaves them out.
pub const PER_INSTANCE_CONFIG: &[&str] = &[
    "TyphaAddr",
    "HealthPort",
    "EndpointStatusPathPrefix",
    "recorder_state",
];

/// What one Felix runs as and against.
#[derive(Clone, Debug)]
pub struct FelixConfig {
    /// `FELIX_FELIXHOSTNAME`: the node whose endpoints it programs.
    pub node_name: String,
    /// `FELIX_TYPHAADDR` (`host:port`).
    pub typha_addr: String,
    /// Where Felix loads its config and IP pools from at start.
    pub datastore: TyphaDatastore,
    /// More environment (`FELIX_*`), applied last.
    pub extra_env: Vec<(String, String)>,
}

/// A running calico-felix with the recorder as its dataplane, killed when dropped.
pub struct Felix {
    pub label: String,
    pub config: FelixConfig,
    /// Its health port (`/readiness`, `/liveness`).
    pub health: SocketAddr,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Felix {
    /// Starts calico-felix (does not wait for anything: see [`Felix::wait_state`]).
    pub fn start(label: &str, config: FelixConfig) -> Felix {
        let health = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let dir = tempfile::Builder::new()
            .prefix(&format!("calico-felix-{label}-"))
            .tempdir()
            .expect("tempdir");
        let mut cmd = Command::new(peer("calico-felix"));
        felix_environment(&mut cmd, &config, health, dir.path());
        let log = std::fs::File::create(dir.path().join("calico-felix.log")).expect("log file");
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        let child = super::process::spawn_tied(cmd).expect("start calico-felix");
        eprintln!(
            "calico-felix {label}: node {} on Typha {} (log {})",
            config.node_name,
            config.typha_addr,
            dir.path().join("calico-felix.log").display()
        );
        Felix {
            label: label.to_string(),
            config,
            health,
            dir,
            child: Some(child),
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("calico-felix.log")
    }

    /// The recorder's JSON file.
    pub fn state_path(&self) -> PathBuf {
        self.dir.path().join("dataplane.json")
    }

    /// The last `lines` lines of Felix's log (the recorder's stderr is in it too).
    pub fn log_tail(&self, lines: usize) -> String {
        file_tail(&self.log_path(), lines)
    }

    /// The recorder's latest state (`Ok(None)` before the driver has written one).
    pub fn read_state(&self) -> Result<Option<RecordedState>, String> {
        let text = match std::fs::read_to_string(self.state_path()) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("read {}: {e}", self.state_path().display())),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("bad recorder state ({e}): {text:.300}"))
    }

    /// Whether the process still runs; its exit status if not.
    fn exit_status(&mut self) -> Option<String> {
        match self.child.as_mut().map(Child::try_wait) {
            None => Some("killed by the test".into()),
            Some(Ok(None)) => None,
            Some(Ok(Some(status))) => Some(status.to_string()),
            Some(Err(e)) => Some(format!("unknown ({e})")),
        }
    }

    /// Felix's shutdown, restart and fatal lines so far, and whether it has exited.
    pub fn restarts_or_exits(&mut self) -> Lifecycle {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        Lifecycle {
            exited: self.exit_status(),
            lines: text
                .lines()
                .filter(|line| RESTART_OR_EXIT_LINES.iter().any(|p| line.contains(p)))
                .map(str::to_string)
                .collect(),
        }
    }

    /// Polls the recorder's state until `pred` holds and returns that state. Fails (with the
    /// last state, Felix's restart lines and the end of its log) when Felix exits or `timeout`
    /// passes.
    pub async fn wait_state(
        &mut self,
        what: &str,
        pred: impl Fn(&RecordedState) -> bool,
        timeout: Duration,
    ) -> Result<RecordedState, String> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            match self.read_state() {
                Ok(Some(state)) if pred(&state) => return Ok(state),
                Ok(Some(state)) => last = Some(state),
                Ok(None) => {}
                Err(e) => return Err(format!("felix {}: {e}", self.label)),
            }
            let lifecycle = self.restarts_or_exits();
            let stop = if lifecycle.exited.is_some() {
                Some("Felix exited")
            } else if Instant::now() >= deadline {
                Some("timed out")
            } else {
                None
            };
            if let Some(why) = stop {
                let last = last.map_or_else(
                    || "no state was recorded".to_string(),
                    |s| format!("the last state:\n{}", s.summary()),
                );
                return Err(format!(
                    "felix {} ({why} after {:?}) waiting for {what}; {last}\n{lifecycle}\nits log ends:\n{}",
                    self.label,
                    timeout.saturating_sub(deadline.saturating_duration_since(Instant::now())),
                    self.log_tail(25)
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until Felix has exited (as it does to be restarted, e.g. after a config change)
    /// and returns its restart/exit lines; fails with the end of its log after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<Lifecycle, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let lifecycle = self.restarts_or_exits();
            if lifecycle.exited.is_some() {
                return Ok(lifecycle);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "felix {} still runs after {timeout:?}; {lifecycle}\nits log ends:\n{}",
                    self.label,
                    self.log_tail(25)
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Kills the process (the recorder then exits on EOF).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Felix {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Felix's configuration, all through its environment (which starts empty, so nothing of the
/// test's environment changes the run), with an absent config file:
///
/// - the datastore Felix reads at start: `DATASTORE_TYPE=etcdv3` and `ETCD_ENDPOINTS`, or
///   `DATASTORE_TYPE=kubernetes` and `KUBECONFIG` (libcalico-go's own variables, which Felix's
///   datastore client reads), and the same as `FELIX_DATASTORETYPE`;
/// - `FELIX_FELIXHOSTNAME`, `FELIX_TYPHAADDR`;
/// - the recorder as external dataplane driver (`FELIX_USEINTERNALDATAPLANEDRIVER=false`,
///   `FELIX_DATAPLANEDRIVER`), its state file in `FELIX_RECORDER_STATE` (the driver inherits
///   Felix's environment);
/// - the screen log at INFO (`FELIX_LOGSEVERITYSCREEN` of the test's environment overrides it),
///   no log file or syslog, and no log lines dropped (by default Felix drops lines when its log
///   queue is full, which loses the very lines [`Felix::restarts_or_exits`] looks for); no
///   usage reporting, the health port on loopback, endpoint status files in the temporary
///   folder (not `/var/run/calico`).
fn felix_environment(cmd: &mut Command, config: &FelixConfig, health: SocketAddr, dir: &Path) {
    let screen = std::env::var("FELIX_LOGSEVERITYSCREEN").unwrap_or_else(|_| "INFO".into());
    cmd.env_clear();
    match &config.datastore {
        TyphaDatastore::Etcd { endpoints } => {
            cmd.env("DATASTORE_TYPE", "etcdv3")
                .env("FELIX_DATASTORETYPE", "etcdv3")
                .env("ETCD_ENDPOINTS", endpoints);
        }
        TyphaDatastore::Kubernetes { kubeconfig } => {
            cmd.env("DATASTORE_TYPE", "kubernetes")
                .env("FELIX_DATASTORETYPE", "kubernetes")
                .env("KUBECONFIG", kubeconfig);
        }
    }
    cmd.env("FELIX_FELIXHOSTNAME", &config.node_name)
        .env("FELIX_TYPHAADDR", &config.typha_addr)
        .env("FELIX_USEINTERNALDATAPLANEDRIVER", "false")
        .env("FELIX_DATAPLANEDRIVER", peer("felix-dataplane-recorder"))
        .env("FELIX_RECORDER_STATE", dir.join("dataplane.json"))
        .env("FELIX_LOGSEVERITYSCREEN", screen)
        .env("FELIX_LOGFILEPATH", "none")
        .env("FELIX_LOGSEVERITYFILE", "none")
        .env("FELIX_LOGSEVERITYSYS", "none")
        .env("FELIX_DEBUGDISABLELOGDROPPING", "true")
        .env("FELIX_USAGEREPORTINGENABLED", "false")
        .env("FELIX_HEALTHENABLED", "true")
        .env("FELIX_HEALTHHOST", health.ip().to_string())
        .env("FELIX_HEALTHPORT", health.port().to_string())
        .env(
            "FELIX_ENDPOINTSTATUSPATHPREFIX",
            dir.join("endpoint-status"),
        )
        .envs(config.extra_env.iter().map(|(k, v)| (k, v)))
        .arg("--config-file")
        .arg(dir.join("felix.cfg.absent"));
}

/// Felix's shutdown and restart lines and whether it exited.
#[derive(Clone, Debug, Default)]
pub struct Lifecycle {
    /// Its exit status, `None` while it runs.
    pub exited: Option<String>,
    /// The log lines matching [`RESTART_OR_EXIT_LINES`].
    pub lines: Vec<String>,
}

impl Lifecycle {
    /// Still running and never started to shut down.
    pub fn is_clean(&self) -> bool {
        self.exited.is_none() && self.lines.is_empty()
    }
}

impl std::fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.exited {
            Some(status) => write!(f, "Felix exited ({status})")?,
            None => write!(f, "Felix is running")?,
        }
        if self.lines.is_empty() {
            write!(f, "; no restart or exit lines in its log")
        } else {
            write!(f, "; its restart/exit lines:\n{}", self.lines.join("\n"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The recorder's state (the JSON of peers/calico/cmd/felix-dataplane-recorder)
// ---------------------------------------------------------------------------------------------

/// What Felix asked its dataplane to program, as the recorder writes it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordedState {
    /// Felix sent `InSync`.
    pub in_sync: bool,
    /// Messages received, by `ToDataplane` payload field name (`ipset_update`, `route_update`…).
    pub messages: BTreeMap<String, u64>,
    /// The last ConfigUpdate's merged config.
    pub config: BTreeMap<String, String>,
    /// IP set id → sorted members (CIDRs such as `10.65.0.2/32`).
    pub ipsets: BTreeMap<String, Vec<String>>,
    /// Active policies by `tier/name`.
    pub policies: BTreeMap<String, RecordedPolicy>,
    /// Active profiles by name.
    pub profiles: BTreeMap<String, RecordedProfile>,
    /// Original selector text → the IP set id the active rules use for it.
    pub selector_ipsets: BTreeMap<String, String>,
    /// Route destination CIDR → route.
    pub routes: BTreeMap<String, RecordedRoute>,
    /// Node name → VXLAN tunnel endpoint.
    pub vteps: BTreeMap<String, RecordedVtep>,
    /// `orchestrator/workload/endpoint` → local workload endpoint.
    pub workload_endpoints: BTreeMap<String, RecordedWorkloadEndpoint>,
    /// Endpoint id → local host endpoint.
    pub host_endpoints: BTreeMap<String, Value>,
    pub encapsulation: Option<RecordedEncapsulation>,
    /// Pool id → IPAM pool.
    pub ipam_pools: BTreeMap<String, RecordedIpamPool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordedRule {
    pub action: String,
    pub src_ip_set_ids: Vec<String>,
    pub dst_ip_set_ids: Vec<String>,
    pub not_src_ip_set_ids: Vec<String>,
    pub not_dst_ip_set_ids: Vec<String>,
    pub src_net: Vec<String>,
    pub dst_net: Vec<String>,
    pub original_src_selector: String,
    pub original_dst_selector: String,
    pub original_not_src_selector: String,
    pub original_not_dst_selector: String,
    pub original_src_namespace_selector: String,
    pub original_dst_namespace_selector: String,
    pub rule_id: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordedPolicy {
    pub namespace: String,
    pub original_selector: String,
    pub inbound_rules: Vec<RecordedRule>,
    pub outbound_rules: Vec<RecordedRule>,
    pub untracked: bool,
    pub pre_dnat: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordedProfile {
    pub inbound_rules: Vec<RecordedRule>,
    pub outbound_rules: Vec<RecordedRule>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordedRoute {
    /// `RouteType` names joined by `|` (`REMOTE_WORKLOAD`, `LOCAL_WORKLOAD`, `CIDR_INFO`…).
    pub types: String,
    /// `NONE`, `NO_ENCAP`, `VXLAN`, `IPIP`.
    pub ip_pool_type: String,
    pub dst_node_name: String,
    pub dst_node_ip: String,
    pub same_subnet: bool,
    pub nat_outgoing: bool,
    pub local_workload: bool,
    pub borrowed: bool,
}

impl RecordedRoute {
    /// Whether `types` has the type `name`.
    pub fn has_type(&self, name: &str) -> bool {
        self.types.split('|').any(|t| t == name)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordedVtep {
    pub parent_device_ip: String,
    pub mac: String,
    pub ipv4_addr: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordedTier {
    pub name: String,
    pub ingress_policies: Vec<String>,
    pub egress_policies: Vec<String>,
    pub default_action: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordedWorkloadEndpoint {
    pub name: String,
    pub state: String,
    pub ipv4_nets: Vec<String>,
    pub ipv6_nets: Vec<String>,
    pub profile_ids: Vec<String>,
    pub tiers: Vec<RecordedTier>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordedEncapsulation {
    pub ipip_enabled: bool,
    pub vxlan_enabled: bool,
    pub vxlan_enabled_v6: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordedIpamPool {
    pub cidr: String,
    pub masquerade: bool,
    pub ipip_mode: String,
    pub vxlan_mode: String,
}

impl RecordedState {
    /// The members of the IP set active rules use for the selector `selector` (its original
    /// text, as written in the policy); `None` when no active rule uses it.
    pub fn members_for_selector(&self, selector: &str) -> Option<BTreeSet<String>> {
        let id = self.selector_ipsets.get(selector)?;
        Some(
            self.ipsets
                .get(id)
                .map(|m| m.iter().cloned().collect())
                .unwrap_or_default(),
        )
    }

    pub fn route(&self, dst: &str) -> Option<&RecordedRoute> {
        self.routes.get(dst)
    }

    pub fn vtep(&self, node: &str) -> Option<&RecordedVtep> {
        self.vteps.get(node)
    }

    /// The state as JSON for comparing two Felixes: IP set ids replaced by `selector:<text>`
    /// wherever an active rule names the selector (ids are hashes of the selector, so this only
    /// matters when they differ), the message counts left out (they depend on how updates were
    /// batched: a full IP set update or deltas) and so are [`PER_INSTANCE_CONFIG`]'s keys.
    pub fn comparable(&self) -> Value {
        let names: BTreeMap<&str, String> = self
            .selector_ipsets
            .iter()
            .map(|(sel, id)| (id.as_str(), format!("selector:{sel}")))
            .collect();
        let mut value = serde_json::to_value(self).expect("state as JSON");
        rename_ids(&mut value, &names);
        if let Value::Object(map) = &mut value {
            map.remove("messages");
            // Keys of `ipsets` were renamed above; the inverse map is now redundant.
            map.remove("selector_ipsets");
            if let Some(Value::Object(config)) = map.get_mut("config") {
                for key in PER_INSTANCE_CONFIG {
                    config.remove(*key);
                }
            }
        }
        value
    }

    /// One line per part: counts, IP sets, routes, VTEPs (for failure reports).
    pub fn summary(&self) -> String {
        let mut out = format!("in_sync={} messages={:?}\n", self.in_sync, self.messages);
        for (sel, id) in &self.selector_ipsets {
            out += &format!("  selector {sel:?} -> {id} = {:?}\n", self.ipsets.get(id));
        }
        out += &format!("  ipsets: {:?}\n", self.ipsets);
        out += &format!(
            "  policies: {:?}\n",
            self.policies.keys().collect::<Vec<_>>()
        );
        out += &format!("  routes: {:?}\n", self.routes);
        out += &format!("  vteps: {:?}\n", self.vteps);
        out += &format!(
            "  workload_endpoints: {:?}",
            self.workload_endpoints.keys().collect::<Vec<_>>()
        );
        out
    }
}

/// Replaces every string (object keys too) that is a key of `names` by its value.
fn rename_ids(value: &mut Value, names: &BTreeMap<&str, String>) {
    match value {
        Value::String(s) => {
            if let Some(name) = names.get(s.as_str()) {
                *s = name.clone();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rename_ids(v, names)),
        Value::Object(map) => {
            let old = std::mem::take(map);
            for (key, mut v) in old {
                rename_ids(&mut v, names);
                let key = names.get(key.as_str()).cloned().unwrap_or(key);
                map.insert(key, v);
            }
        }
        _ => {}
    }
}

/// The paths (`a.b[2].c`) where two JSON values differ, at most `first` of them.
pub fn json_differences(a: &Value, b: &Value, first: usize) -> Vec<String> {
    fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<String>, first: usize) {
        if out.len() >= first || a == b {
            return;
        }
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let p = format!("{path}.{k}");
                    match (x.get(k), y.get(k)) {
                        (Some(va), Some(vb)) => walk(&p, va, vb, out, first),
                        (va, vb) => out.push(format!("{p}: {va:?} vs {vb:?}")),
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                    walk(&format!("{path}[{i}]"), va, vb, out, first);
                }
            }
            _ => out.push(format!("{path}: {a} vs {b}")),
        }
    }
    let mut out = Vec::new();
    walk("", a, b, &mut out, first);
    out
}
