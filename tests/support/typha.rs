//! The harness that compares Typha servers by what a real Typha client ends up holding.
//!
//! Three parts, each usable alone:
//!
//! - [`CalicoTypha`]: Calico's real `calico-typha` (built by `scripts/peers.sh`) on an etcd or a
//!   Kubernetes datastore, configured only through its environment as the benchmark's orchestrator
//!   runs it, on its own free loopback ports (client and health), waited for until `/readiness`
//!   says every syncer's cache is in sync.
//! - [`TyphaDump`]: the `typha-dump` peer (Calico's own `typha/pkg/syncclient`, the library Felix
//!   uses) on one syncer of any Typha address. It prints the whole key → value map each time the
//!   stream is in sync and quiet; [`TyphaDump::next_map`] and [`TyphaDump::wait_until`] read those
//!   lines with timeouts. The process dies with the test ([`super::process::spawn_tied`]).
//! - [`diff_maps`]: missing keys, extra keys and differing values of two maps (values compared as
//!   JSON, so formatting and object key order do not count), with a readable report of the first
//!   differences.
//!
//! [`Differential`] puts them together: one dump per syncer on each of two servers (the reference
//! and the candidate), and [`Differential::check`], which waits until the reference shows a
//! change and then until both servers' maps are equal, failing with the differences. The
//! scenarios that drive it are in [`super::typha_scenario`]; the second server is a parameter, so
//! the same scenario compares two calico-typhas or calico-typha with meshsync's Typha port.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::apiserver::peers_bin;

/// Longest wait for calico-typha's `/readiness`.
pub const TYPHA_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long typha-dump waits for quiet before it prints a map (its `--settle`).
pub const DUMP_SETTLE: Duration = Duration::from_millis(300);
/// How many differences a report lists.
pub const REPORT_FIRST: usize = 15;

/// The four syncers Typha serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Syncer {
    Felix,
    Bgp,
    TunnelIpAllocation,
    NodeStatus,
}

impl Syncer {
    pub const ALL: [Syncer; 4] = [
        Syncer::Felix,
        Syncer::Bgp,
        Syncer::TunnelIpAllocation,
        Syncer::NodeStatus,
    ];

    /// The name on the wire (`syncproto.SyncerType`) and typha-dump's `--syncer`.
    pub fn name(self) -> &'static str {
        match self {
            Syncer::Felix => "felix",
            Syncer::Bgp => "bgp",
            Syncer::TunnelIpAllocation => "tunnel-ip-allocation",
            Syncer::NodeStatus => "node-status",
        }
    }
}

/// Ports handed out in this test binary: two servers started at once never get the same one
/// (the OS may give a port that was just released again).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if given.insert(port) {
            return port;
        }
    }
}

/// A peer binary from the peers bin folder, checked to exist.
pub fn peer(name: &str) -> PathBuf {
    let bin = peers_bin().join(name);
    assert!(
        bin.is_file(),
        "{} is missing; run scripts/peers.sh (or unset MESHSYNC_PEERS_BIN)",
        bin.display()
    );
    bin
}

/// The last `lines` lines of a file (empty if unreadable).
pub fn file_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// calico-typha
// ---------------------------------------------------------------------------------------------

/// The datastore a [`CalicoTypha`] reads.
#[derive(Clone, Debug)]
pub enum TyphaDatastore {
    /// etcd v3 at these client URLs (`http://127.0.0.1:PORT`, comma-separated).
    Etcd { endpoints: String },
    /// The Kubernetes API (Calico's KDD) through this kubeconfig.
    Kubernetes { kubeconfig: PathBuf },
}

impl TyphaDatastore {
    pub fn etcd(etcd: &super::etcd::Etcd) -> TyphaDatastore {
        TyphaDatastore::Etcd {
            endpoints: etcd.url(),
        }
    }

    /// The API server's admin kubeconfig (`O=system:masters`: no RBAC to set up).
    pub fn kubernetes(api: &super::apiserver::ApiServer) -> TyphaDatastore {
        TyphaDatastore::Kubernetes {
            kubeconfig: api.kubeconfig().to_path_buf(),
        }
    }
}

/// A running calico-typha, killed when dropped (and with the test binary in any case).
pub struct CalicoTypha {
    pub name: String,
    /// Where Typha clients connect.
    pub addr: SocketAddr,
    /// Its health port (`/readiness`, `/liveness`).
    pub health: SocketAddr,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl CalicoTypha {
    /// Starts calico-typha on `datastore` and waits until it is ready (every syncer's cache in
    /// sync). Fails the test with the end of its log when it exits or is not ready in time.
    pub async fn start(name: &str, datastore: &TyphaDatastore) -> CalicoTypha {
        Self::start_with(name, datastore, &[]).await
    }

    /// [`CalicoTypha::start`] with more of Typha's environment, e.g. its TLS files
    /// (`TYPHA_CAFILE`, `TYPHA_SERVERCERTFILE`, `TYPHA_SERVERKEYFILE`, `TYPHA_CLIENTCN`).
    pub async fn start_with(
        name: &str,
        datastore: &TyphaDatastore,
        extra_env: &[(&str, &str)],
    ) -> CalicoTypha {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let health = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let dir = tempfile::Builder::new()
            .prefix(&format!("calico-typha-{name}-"))
            .tempdir()
            .expect("tempdir");
        let mut cmd = Command::new(peer("calico-typha"));
        typha_environment(&mut cmd, datastore, addr, health, dir.path());
        cmd.envs(extra_env.iter().copied());
        let log = std::fs::File::create(dir.path().join("calico-typha.log")).expect("log file");
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        let child = super::process::spawn_tied(cmd).expect("start calico-typha");
        let mut typha = CalicoTypha {
            name: name.to_string(),
            addr,
            health,
            dir,
            child: Some(child),
        };
        let t0 = Instant::now();
        typha.wait_ready().await;
        eprintln!(
            "calico-typha {name}: ready on {addr} after {:.2}s (health {health}, log {})",
            t0.elapsed().as_secs_f64(),
            typha.log_path().display()
        );
        typha
    }

    /// `host:port` for typha-dump's `--addr`.
    pub fn addr_string(&self) -> String {
        self.addr.to_string()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("calico-typha.log")
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        file_tail(&self.log_path(), lines)
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + TYPHA_READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "calico-typha {} exited ({status}) before it was ready; its log ends:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            if http_status(self.health, "/readiness").await == Some(200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "calico-typha {} was not ready after {TYPHA_READY_TIMEOUT:?}; its log ends:\n{}",
                self.name,
                self.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for CalicoTypha {
    fn drop(&mut self) {
        self.kill();
    }
}

/// calico-typha's configuration, all through its environment (which starts empty, so nothing of
/// the test's environment — a `TYPHA_*`, `KUBECONFIG` or `DATASTORE_TYPE` — changes the run):
///
/// - etcd: `TYPHA_DATASTORETYPE=etcdv3` and `TYPHA_ETCDENDPOINTS`;
/// - Kubernetes: `TYPHA_DATASTORETYPE=kubernetes`, which makes Typha load the rest of its
///   datastore configuration as every Calico component does (`DATASTORE_TYPE`, `KUBECONFIG`);
/// - the client port and the health port on loopback, no metrics port, connection rebalancing
///   off (on Kubernetes it would poll the API for Typha's own Service), the screen log at INFO
///   into the log file (`TYPHA_LOGSEVERITYSCREEN` of the test's environment overrides it), no log
///   file or syslog of its own, and an absent config file, so a stray `/etc/calico/typha.cfg`
///   cannot change the run.
fn typha_environment(
    cmd: &mut Command,
    datastore: &TyphaDatastore,
    listen: SocketAddr,
    health: SocketAddr,
    dir: &Path,
) {
    let screen = std::env::var("TYPHA_LOGSEVERITYSCREEN").unwrap_or_else(|_| "INFO".into());
    cmd.env_clear();
    match datastore {
        TyphaDatastore::Etcd { endpoints } => {
            cmd.env("TYPHA_DATASTORETYPE", "etcdv3")
                .env("TYPHA_ETCDENDPOINTS", endpoints);
        }
        TyphaDatastore::Kubernetes { kubeconfig } => {
            cmd.env("TYPHA_DATASTORETYPE", "kubernetes")
                .env("DATASTORE_TYPE", "kubernetes")
                .env("KUBECONFIG", kubeconfig);
        }
    }
    cmd.env("TYPHA_SERVERHOST", listen.ip().to_string())
        .env("TYPHA_SERVERPORT", listen.port().to_string())
        .env("TYPHA_HEALTHENABLED", "true")
        .env("TYPHA_HEALTHHOST", health.ip().to_string())
        .env("TYPHA_HEALTHPORT", health.port().to_string())
        .env("TYPHA_PROMETHEUSMETRICSENABLED", "false")
        .env("TYPHA_LOGSEVERITYSCREEN", screen)
        .env("TYPHA_LOGFILEPATH", "none")
        .env("TYPHA_LOGSEVERITYFILE", "none")
        .env("TYPHA_LOGSEVERITYSYS", "none")
        .env("TYPHA_CONNECTIONREBALANCINGMODE", "none")
        .arg("--config-file")
        .arg(dir.join("typha.cfg.absent"));
}

/// The status code of a plain HTTP GET (`None` when nothing answers within 2 s).
async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response);
        let mut words = text.lines().next()?.split_whitespace();
        words.next().filter(|w| w.starts_with("HTTP/"))?;
        words.next()?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
}

/// `meshsync serve` on `datastore` (a `--datastore` URL) with a Typha port on loopback; returns
/// it and the Typha port's address (from the serving line's `typha=Some(ADDR)`).
pub fn meshsync_typha(datastore: &str) -> (super::binary::Serve, SocketAddr) {
    let mut serve =
        super::binary::Serve::on_loopback(datastore, &["--typha-listen", "127.0.0.1:0"]);
    let line = serve.wait_serving();
    let typha = super::log_text::text_field(&line, "typha")
        .and_then(|t| t.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok())
        .unwrap_or_else(|| panic!("no typha= in {line:?}"));
    (serve, typha)
}

// ---------------------------------------------------------------------------------------------
// typha-dump
// ---------------------------------------------------------------------------------------------

/// One map typha-dump printed: the stream was in sync and quiet.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DumpMap {
    /// Key (the v1 default path) → the value's JSON as the client library parsed it.
    pub map: BTreeMap<String, Value>,
}

impl DumpMap {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Parses one stdout line: `{"status":"in-sync","keys":N,"map":{...}}`.
    pub fn parse(line: &str) -> Result<DumpMap, String> {
        let value: Value =
            serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line:.200}"))?;
        if value.get("status").and_then(Value::as_str) != Some("in-sync") {
            return Err(format!("not an in-sync map: {line:.200}"));
        }
        let Some(Value::Object(map)) = value.get("map") else {
            return Err(format!("no map: {line:.200}"));
        };
        let keys = value.get("keys").and_then(Value::as_u64);
        if keys != Some(map.len() as u64) {
            return Err(format!(
                "\"keys\" is {keys:?} but the map holds {} keys",
                map.len()
            ));
        }
        Ok(DumpMap {
            map: map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        })
    }

    /// Whether some key contains `key_part` and its value's JSON contains `value_part` (if any).
    pub fn has(&self, key_part: &str, value_part: Option<&str>) -> bool {
        self.map.iter().any(|(k, v)| {
            k.contains(key_part) && value_part.is_none_or(|part| v.to_string().contains(part))
        })
    }
}

/// Why a dump gave no map.
#[derive(Debug)]
pub enum DumpError {
    /// No (matching) map within the timeout.
    Timeout {
        what: String,
        waited: Duration,
        last: Option<usize>,
        stderr: String,
    },
    /// typha-dump exited (its stdout ended).
    Exited { status: String, stderr: String },
    /// A line that is not a map.
    BadLine(String),
}

impl std::fmt::Display for DumpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DumpError::Timeout {
                what,
                waited,
                last,
                stderr,
            } => {
                let last = match last {
                    Some(n) => format!("the last map held {n} keys"),
                    None => "no map was printed".into(),
                };
                write!(
                    f,
                    "timed out after {waited:?} waiting for {what} ({last}); typha-dump's stderr ends:\n{stderr}"
                )
            }
            DumpError::Exited { status, stderr } => {
                write!(
                    f,
                    "typha-dump exited ({status}); its stderr ends:\n{stderr}"
                )
            }
            DumpError::BadLine(e) => write!(f, "typha-dump printed a bad line: {e}"),
        }
    }
}

impl std::error::Error for DumpError {}

/// A running typha-dump on one syncer of one Typha address.
pub struct TyphaDump {
    pub addr: String,
    pub syncer: Syncer,
    lines: mpsc::UnboundedReceiver<String>,
    latest: Option<DumpMap>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl TyphaDump {
    /// Starts `typha-dump --addr ADDR --syncer SYNCER` (following, settling for [`DUMP_SETTLE`]).
    pub fn start(addr: &str, syncer: Syncer) -> TyphaDump {
        Self::start_with(addr, syncer, &[])
    }

    /// [`TyphaDump::start`] with more flags (TLS: `--ca-file`, `--cert-file`, `--key-file`,
    /// `--server-cn`, `--server-uri-san`; `--follow=false`).
    pub fn start_with(addr: &str, syncer: Syncer, extra_args: &[&str]) -> TyphaDump {
        let dir = tempfile::Builder::new()
            .prefix(&format!("typha-dump-{}-", syncer.name()))
            .tempdir()
            .expect("tempdir");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr file");
        let mut cmd = Command::new(peer("typha-dump"));
        cmd.arg("--addr")
            .arg(addr)
            .arg("--syncer")
            .arg(syncer.name())
            .arg("--settle")
            .arg(format!("{}ms", DUMP_SETTLE.as_millis()))
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = super::process::spawn_tied(cmd).expect("start typha-dump");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name(format!("typha-dump-{}", syncer.name()))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn the stdout reader");
        TyphaDump {
            addr: addr.to_string(),
            syncer,
            lines,
            latest: None,
            dir,
            child: Some(child),
        }
    }

    /// The last map printed so far (without waiting).
    pub fn latest(&self) -> Option<&DumpMap> {
        self.latest.as_ref()
    }

    /// The end of typha-dump's stderr (status changes, lost connections, library warnings).
    pub fn stderr_tail(&self, lines: usize) -> String {
        file_tail(&self.dir.path().join("stderr.log"), lines)
    }

    /// The next map printed, within `timeout`.
    pub async fn next_map(&mut self, timeout: Duration) -> Result<DumpMap, DumpError> {
        let deadline = tokio::time::Instant::now() + timeout;
        match tokio::time::timeout_at(deadline, self.recv()).await {
            Ok(result) => result,
            Err(_) => Err(self.timeout("the next map", timeout)),
        }
    }

    /// Reads maps until `pred` holds for the latest (which may be one printed earlier); returns it.
    pub async fn wait_until(
        &mut self,
        what: &str,
        pred: impl Fn(&DumpMap) -> bool,
        timeout: Duration,
    ) -> Result<DumpMap, DumpError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(latest) = &self.latest
                && pred(latest)
            {
                return Ok(latest.clone());
            }
            match tokio::time::timeout_at(deadline, self.recv()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(self.timeout(what, timeout)),
            }
        }
    }

    /// The next line as a map, kept as the latest. Cancel-safe: a line is consumed only when
    /// it is returned.
    async fn recv(&mut self) -> Result<DumpMap, DumpError> {
        match self.lines.recv().await {
            Some(line) => {
                let map = DumpMap::parse(&line).map_err(DumpError::BadLine)?;
                self.latest = Some(map.clone());
                Ok(map)
            }
            None => Err(self.exited()),
        }
    }

    fn timeout(&self, what: &str, waited: Duration) -> DumpError {
        DumpError::Timeout {
            what: format!(
                "{what} from typha-dump --syncer {} --addr {}",
                self.syncer.name(),
                self.addr
            ),
            waited,
            last: self.latest.as_ref().map(DumpMap::len),
            stderr: self.stderr_tail(15),
        }
    }

    fn exited(&mut self) -> DumpError {
        // stdout ends just before the process does.
        let status = self.child.as_mut().and_then(|c| c.wait().ok());
        self.child = None;
        DumpError::Exited {
            status: status.map_or_else(|| "unknown status".into(), |s| s.to_string()),
            stderr: self.stderr_tail(15),
        }
    }
}

impl Drop for TyphaDump {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Comparing maps
// ---------------------------------------------------------------------------------------------

/// The differences between an expected and an actual map.
#[derive(Debug, Default)]
pub struct MapDiff {
    /// In the expected map only.
    pub missing: Vec<(String, Value)>,
    /// In the actual map only.
    pub extra: Vec<(String, Value)>,
    /// In both with different values: (key, expected, actual).
    pub differing: Vec<(String, Value, Value)>,
}

/// Whether two values are the same as JSON: equal JSON values, or two strings that both hold
/// JSON that parses to equal values (whitespace and object key order do not count); any other
/// pair of strings is compared as it is.
pub fn same_value(a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    match (a, b) {
        (Value::String(a), Value::String(b)) => {
            match (
                serde_json::from_str::<Value>(a),
                serde_json::from_str::<Value>(b),
            ) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            }
        }
        _ => false,
    }
}

/// Missing keys, extra keys and differing values of `actual` against `expected`.
pub fn diff_maps(expected: &BTreeMap<String, Value>, actual: &BTreeMap<String, Value>) -> MapDiff {
    let mut diff = MapDiff::default();
    for (key, want) in expected {
        match actual.get(key) {
            None => diff.missing.push((key.clone(), want.clone())),
            Some(got) if !same_value(want, got) => {
                diff.differing
                    .push((key.clone(), want.clone(), got.clone()))
            }
            Some(_) => {}
        }
    }
    for (key, got) in actual {
        if !expected.contains_key(key) {
            diff.extra.push((key.clone(), got.clone()));
        }
    }
    diff
}

impl MapDiff {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.differing.is_empty()
    }

    pub fn len(&self) -> usize {
        self.missing.len() + self.extra.len() + self.differing.len()
    }

    /// A report of the first `first` differences, naming the two sides.
    pub fn report(&self, expected: &str, actual: &str, first: usize) -> String {
        if self.is_empty() {
            return format!("{actual} holds the same map as {expected}");
        }
        let mut out = format!(
            "{actual} differs from {expected}: {} keys missing, {} extra, {} with other values",
            self.missing.len(),
            self.extra.len(),
            self.differing.len()
        );
        let mut shown = 0;
        for (key, value) in &self.missing {
            if shown == first {
                break;
            }
            out.push_str(&format!(
                "\n  missing in {actual}: {key} = {}",
                short(value)
            ));
            shown += 1;
        }
        for (key, value) in &self.extra {
            if shown == first {
                break;
            }
            out.push_str(&format!("\n  extra in {actual}: {key} = {}", short(value)));
            shown += 1;
        }
        for (key, want, got) in &self.differing {
            if shown == first {
                break;
            }
            let mut paths = Vec::new();
            value_differences(want, got, "", &mut paths);
            out.push_str(&format!("\n  different value: {key}"));
            for (path, w, g) in paths.iter().take(5) {
                let at = if path.is_empty() {
                    "(whole value)"
                } else {
                    path
                };
                out.push_str(&format!("\n      at {at}: {expected} {w}, {actual} {g}"));
            }
            if paths.len() > 5 {
                out.push_str(&format!("\n      … and {} more places", paths.len() - 5));
            }
            shown += 1;
        }
        if self.len() > shown {
            out.push_str(&format!(
                "\n  … and {} more differences",
                self.len() - shown
            ));
        }
        out
    }
}

/// A value's JSON, cut to 300 characters.
fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The places (JSON pointers) where two values differ, with the short forms of both sides.
fn value_differences(a: &Value, b: &Value, path: &str, out: &mut Vec<(String, String, String)>) {
    const ABSENT: &str = "(absent)";
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let here = format!("{path}/{k}");
                match (x.get(k), y.get(k)) {
                    (Some(v), Some(w)) => value_differences(v, w, &here, out),
                    (Some(v), None) => out.push((here, short(v), ABSENT.into())),
                    (None, Some(w)) => out.push((here, ABSENT.into(), short(w))),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                value_differences(v, w, &format!("{path}/{i}"), out);
            }
        }
        _ if same_value(a, b) => {}
        _ => out.push((path.to_string(), short(a), short(b))),
    }
}

// ---------------------------------------------------------------------------------------------
// Two servers side by side
// ---------------------------------------------------------------------------------------------

/// A Typha server under comparison.
#[derive(Clone, Debug)]
pub struct TyphaServer {
    /// How reports name it (`calico-typha a`, `meshsync`).
    pub label: String,
    /// `host:port` for typha-dump.
    pub addr: String,
}

impl TyphaServer {
    pub fn new(label: &str, addr: impl Into<String>) -> TyphaServer {
        TyphaServer {
            label: label.to_string(),
            addr: addr.into(),
        }
    }

    pub fn calico(label: &str, typha: &CalicoTypha) -> TyphaServer {
        TyphaServer::new(label, typha.addr_string())
    }
}

/// What must hold on the reference side before a step's comparison means anything (the change
/// has reached it): some key of `syncer`'s map contains `key_part` and its value's JSON contains
/// `value_part` — or, when `present` is false, no such key is left.
#[derive(Clone, Debug)]
pub struct Witness {
    pub syncer: Syncer,
    pub key_part: String,
    pub value_part: Option<String>,
    pub present: bool,
}

impl Witness {
    pub fn has(syncer: Syncer, key_part: &str, value_part: Option<&str>) -> Witness {
        Witness {
            syncer,
            key_part: key_part.into(),
            value_part: value_part.map(str::to_string),
            present: true,
        }
    }

    pub fn gone(syncer: Syncer, key_part: &str, value_part: Option<&str>) -> Witness {
        Witness {
            present: false,
            ..Witness::has(syncer, key_part, value_part)
        }
    }

    pub fn holds(&self, map: &DumpMap) -> bool {
        map.has(&self.key_part, self.value_part.as_deref()) == self.present
    }

    fn describe(&self) -> String {
        let value = self
            .value_part
            .as_ref()
            .map(|v| format!(" with {v:?} in its value"))
            .unwrap_or_default();
        let state = if self.present { "a key" } else { "no key" };
        format!(
            "{state} containing {:?}{value} in the {} map",
            self.key_part,
            self.syncer.name()
        )
    }
}

/// The maps both servers held after one step, per syncer.
#[derive(Debug)]
pub struct StepMaps {
    pub step: String,
    pub maps: Vec<(Syncer, DumpMap)>,
}

impl StepMaps {
    pub fn map(&self, syncer: Syncer) -> &DumpMap {
        &self
            .maps
            .iter()
            .find(|(s, _)| *s == syncer)
            .expect("a compared syncer")
            .1
    }

    /// `felix 42, bgp 7, …`.
    pub fn summary(&self) -> String {
        self.maps
            .iter()
            .map(|(s, m)| format!("{} {}", s.name(), m.len()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One typha-dump per syncer on each of two servers.
pub struct Differential {
    pub reference: TyphaServer,
    pub candidate: TyphaServer,
    pairs: Vec<(Syncer, TyphaDump, TyphaDump)>,
}

impl Differential {
    /// Starts the dumps of `syncers` on both servers.
    pub fn start(reference: TyphaServer, candidate: TyphaServer, syncers: &[Syncer]) -> Self {
        let pairs = syncers
            .iter()
            .map(|&s| {
                (
                    s,
                    TyphaDump::start(&reference.addr, s),
                    TyphaDump::start(&candidate.addr, s),
                )
            })
            .collect();
        Differential {
            reference,
            candidate,
            pairs,
        }
    }

    /// After `step`: waits (within `timeout` in all) until every witness holds on the reference,
    /// then until both servers' maps of every syncer are equal. Returns the maps, or a report of
    /// what did not hold or the differences of the last maps seen.
    pub async fn check(
        &mut self,
        step: &str,
        witnesses: &[Witness],
        timeout: Duration,
    ) -> Result<StepMaps, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let (reference, candidate) = (&self.reference, &self.candidate);
        let mut maps = Vec::new();
        for (syncer, left, right) in &mut self.pairs {
            let mine: Vec<&Witness> = witnesses.iter().filter(|w| w.syncer == *syncer).collect();
            let what = mine
                .iter()
                .map(|w| w.describe())
                .collect::<Vec<_>>()
                .join(" and ");
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            left.wait_until(
                if what.is_empty() { "a map" } else { &what },
                |m| mine.iter().all(|w| w.holds(m)),
                remaining,
            )
            .await
            .map_err(|e| format!("step {step:?}: {} never showed it: {e}", reference.label))?;
            let map = converge(left, right, (&reference.label, &candidate.label), deadline)
                .await
                .map_err(|e| format!("step {step:?}, syncer {}: {e}", syncer.name()))?;
            maps.push((*syncer, map));
        }
        Ok(StepMaps {
            step: step.to_string(),
            maps,
        })
    }

    /// The dumps of one syncer (reference, candidate).
    pub fn dumps(&mut self, syncer: Syncer) -> (&mut TyphaDump, &mut TyphaDump) {
        let (_, l, r) = self
            .pairs
            .iter_mut()
            .find(|(s, _, _)| *s == syncer)
            .expect("a started syncer");
        (l, r)
    }
}

/// Waits until both dumps' latest maps are equal (reading whichever prints next), until
/// `deadline`. The error is the report of the last maps, the sides named by `labels`.
pub async fn converge(
    left: &mut TyphaDump,
    right: &mut TyphaDump,
    labels: (&str, &str),
    deadline: tokio::time::Instant,
) -> Result<DumpMap, String> {
    let (left_label, right_label) = labels;
    loop {
        if let (Some(l), Some(r)) = (left.latest(), right.latest()) {
            let diff = diff_maps(&l.map, &r.map);
            if diff.is_empty() {
                return Ok(l.clone());
            }
        }
        let next = tokio::time::timeout_at(deadline, async {
            tokio::select! {
                got = left.recv() => got.map_err(|e| format!("{left_label}: {e}")),
                got = right.recv() => got.map_err(|e| format!("{right_label}: {e}")),
            }
        })
        .await;
        match next {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                let report = match (left.latest(), right.latest()) {
                    (Some(l), Some(r)) => {
                        diff_maps(&l.map, &r.map).report(left_label, right_label, REPORT_FIRST)
                    }
                    (None, _) => format!(
                        "{left_label} printed no map; its stderr ends:\n{}",
                        left.stderr_tail(15)
                    ),
                    (_, None) => format!(
                        "{right_label} printed no map; its stderr ends:\n{}",
                        right.stderr_tail(15)
                    ),
                };
                return Err(format!("the maps did not converge in time: {report}"));
            }
        }
    }
}
