#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

//! meshsync's v1 conversion against Calico's own, for the config, node, IPAM and pass-through
//! families: a corpus of v3 resources (realistic ones and edge cases, and the deletion of each)
//! goes through `meshsync_typha::v1::convert` and through the `calico-v1` oracle
//! (peers/calico/cmd/calico-v1: Calico's real update processors, Typha's validation filter and
//! `SerializeUpdate`), and both must give the same keys with the same values — raw-string values
//! (config, host IP, ready flag) byte for byte, JSON values as parsed JSON — and the same v3
//! resource versions.
//!
//! The oracle comes from the peers folder: `$MESHSYNC_PEERS_BIN`, or the last line of
//! `scripts/peers.sh` (which builds it), as the workspace's other peer tests find their peers.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use meshsync_typha::v1::{Dialect, Resource, Syncer, convert};
use serde_json::{Value, json};

/// One corpus entry: a resource as the cache holds it, for one syncer.
struct Case {
    syncer: Syncer,
    kind: &'static str,
    namespace: &'static str,
    name: &'static str,
    value: Value,
    deleted: bool,
    revision: &'static str,
    /// What Calico's backend hands the syncer, where it differs from the cache's form (meshsync's
    /// Kubernetes driver stores KubernetesService and KubernetesEndpointSlice reshaped).
    calico_value: Option<Value>,
}

fn case(syncer: Syncer, kind: &'static str, name: &'static str, value: Value) -> Case {
    Case {
        syncer,
        kind,
        namespace: "",
        name,
        value,
        deleted: false,
        revision: "",
        calico_value: None,
    }
}

impl Case {
    fn revision(mut self, revision: &'static str) -> Case {
        self.revision = revision;
        self
    }
    fn namespace(mut self, namespace: &'static str) -> Case {
        self.namespace = namespace;
        self
    }
    fn calico_value(mut self, value: Value) -> Case {
        self.calico_value = Some(value);
        self
    }
    fn deletion(&self) -> Case {
        Case {
            deleted: true,
            calico_value: self.calico_value.clone(),
            value: self.value.clone(),
            ..*self
        }
    }
}

fn peers_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("MESHSYNC_PEERS_BIN").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/peers.sh");
    eprintln!("MESHSYNC_PEERS_BIN is not set: running scripts/peers.sh (builds the peers once)");
    let out = Command::new(script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/peers.sh");
    assert!(
        out.status.success(),
        "scripts/peers.sh failed ({})",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(
        stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap()
            .trim(),
    )
}

/// The oracle's answer for each case, in order.
fn oracle(cases: &[Case]) -> Vec<Value> {
    let mut child = Command::new(peers_bin().join("calico-v1"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start calico-v1");
    let mut input = String::new();
    for c in cases {
        let line = json!({
            "syncer": c.syncer.name(), "kind": c.kind, "namespace": c.namespace, "name": c.name,
            "value": c.calico_value.as_ref().unwrap_or(&c.value), "deleted": c.deleted,
            "revision": c.revision,
        });
        input.push_str(&line.to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let lines: Vec<Value> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    writer.join().unwrap();
    assert!(child.wait().unwrap().success(), "calico-v1 failed");
    assert_eq!(lines.len(), cases.len(), "one oracle line per case");
    lines
}

/// Keys whose values are raw strings on the wire (compared byte for byte).
fn is_raw(key: &str) -> bool {
    key.starts_with("/calico/v1/config/")
        || key == "/calico/v1/Ready"
        || (key.starts_with("/calico/v1/host/")
            && (key.contains("/config/") || key.ends_with("/bird_ip")))
}

type Updates = BTreeMap<String, (Option<String>, String)>;

/// Compares one case; `Err` describes every difference.
fn compare(c: &Case, oracle: &Value) -> Result<(), String> {
    let bytes = serde_json::to_vec(&c.value).unwrap();
    let ours = convert(
        c.syncer,
        Dialect::V331,
        &Resource {
            kind: c.kind,
            namespace: c.namespace,
            name: c.name,
            value: &bytes,
            revision: c.revision,
        },
        c.deleted,
    );
    let theirs: Updates = oracle["updates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["key"].as_str().unwrap().to_owned(),
                (
                    u["value"].as_str().map(str::to_owned),
                    u["v3_resource_version"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    let mine: Updates = ours
        .updates
        .iter()
        .map(|u| {
            (
                u.key.clone(),
                (
                    u.value
                        .as_ref()
                        .map(|v| String::from_utf8(v.to_vec()).unwrap()),
                    u.v3_resource_version.clone(),
                ),
            )
        })
        .collect();
    let mut diffs = Vec::new();
    let oracle_error = oracle.get("error").and_then(Value::as_str);
    if oracle_error.is_some() && theirs.is_empty() {
        // Calico could not decode the value: it sends nothing; meshsync reports the error and
        // may only delete (for a deletion, deleting is all it does: the value is not needed).
        if ours.error.is_none() && !c.deleted {
            diffs.push(format!(
                "Calico failed ({oracle_error:?}), meshsync did not"
            ));
        }
        if mine.values().any(|(v, _)| v.is_some()) {
            diffs.push(format!(
                "Calico failed ({oracle_error:?}), meshsync sent values: {mine:?}"
            ));
        }
    } else {
        if oracle_error.is_some() && ours.error.is_none() {
            diffs.push(format!(
                "Calico reported {oracle_error:?}, meshsync nothing"
            ));
        }
        for key in theirs
            .keys()
            .chain(mine.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            match (theirs.get(key), mine.get(key)) {
                (Some(t), None) => diffs.push(format!("missing {key} = {t:?}")),
                (None, Some(m)) => diffs.push(format!("extra {key} = {m:?}")),
                (Some((tv, trv)), Some((mv, mrv))) => {
                    let same = match (tv, mv) {
                        (Some(t), Some(m)) if !is_raw(key) => {
                            serde_json::from_str::<Value>(t).ok()
                                == serde_json::from_str::<Value>(m).ok()
                        }
                        _ => tv == mv,
                    };
                    if !same {
                        diffs.push(format!(
                            "{key}:\n    calico:   {tv:?}\n    meshsync: {mv:?}"
                        ));
                    }
                    if trv != mrv {
                        diffs.push(format!("{key}: resource version {trv:?} vs {mrv:?}"));
                    }
                }
                (None, None) => {}
            }
        }
    }
    if let Some(warnings) = oracle.get("warnings").filter(|_| !diffs.is_empty()) {
        diffs.push(format!("(Calico logged {warnings})"));
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} {} {}/{} (deleted: {}):\n  {}",
            c.syncer.name(),
            c.kind,
            c.namespace,
            c.name,
            c.deleted,
            diffs.join("\n  ")
        ))
    }
}

/// Runs the corpus plus the deletion of every entry; panics with every difference.
fn check(corpus: Vec<Case>) {
    let mut cases = Vec::new();
    for c in corpus {
        let deletion = c.deletion();
        cases.push(c);
        cases.push(deletion);
    }
    let answers = oracle(&cases);
    let values = answers
        .iter()
        .flat_map(|a| a["updates"].as_array().unwrap())
        .filter(|u| !u["value"].is_null())
        .count();
    eprintln!("{} cases, {values} values from Calico", cases.len());
    assert!(values > 0, "the oracle sent no values at all");
    let failures: Vec<String> = cases
        .iter()
        .zip(&answers)
        .filter_map(|(c, a)| compare(c, a).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from Calico:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

use Syncer::{Bgp, Felix, NodeStatus, TunnelIpAllocation};

fn felix_configuration(name: &str, annotations: Value, spec: Value) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
        "metadata": {"name": name, "annotations": annotations, "resourceVersion": "100",
            "creationTimestamp": "2026-01-02T03:04:05Z"},
        "spec": spec})
}

#[test]
fn config_matches_calico() {
    let every_type = json!({
        // bool, int, uint32
        "useInternalDataplaneDriver": true, "ipv6Support": false, "maxIpsetSize": 1048576,
        "iptablesMarkMask": 4294901760u32, "vxlanVNI": 4096, "bpfExtToServiceConnmark": -1,
        // text (non-pointer: "" is unset), pointer text ("" is a value), named string types
        "logSeverityScreen": "Info", "logPrefix": "", "healthHost": "", "debugHost": "::1",
        "iptablesBackend": "NFT", "nftablesMode": "Auto", "bpfConntrackMode": "",
        // durations in seconds, milliseconds, big, fractional, zero, negative, Go's units
        "iptablesRefreshInterval": "1m30s", "routeRefreshInterval": "1000000s",
        "iptablesLockProbeInterval": "50ms", "iptablesLockTimeout": "0",
        "netlinkTimeout": "1.5s", "reportingInterval": "-10s", "ipsetsRefreshInterval": "1h2m3.004s",
        "xdpRefreshInterval": "250\u{b5}s", "endpointReportingDelay": "1234567s",
        "wireguardKeepAlive": "25s", "bpfKubeProxyMinSyncPeriod": "0.000015s",
        // lists (an empty list is the empty string)
        "externalNodesList": ["10.0.0.0/8", "192.168.0.1"], "bpfDSROptoutCIDRs": [],
        "bpfForceTrackPacketsFromIfaces": ["docker+"],
        // failsafe ports: IPv4 and IPv6 nets, no net, protocol case
        "failsafeInboundHostPorts": [{"protocol": "TCP", "port": 22},
            {"protocol": "udp", "port": 68, "net": "0.0.0.0/0"},
            {"protocol": "tcp", "port": 179, "net": "fd00::/64"}],
        "failsafeOutboundHostPorts": [],
        // numorstring ports: number, range, name; a list of them
        "natPortRange": "32768:65535", "bpfPSNATPorts": 20000,
        "kubeNodePortRanges": [30000, "30000:32767", "http"],
        // a map (one entry: Go's order is random), nested structs, lists of structs
        "bpfLogFilters": {"all": "tcp port 80"},
        "routeTableRange": {"min": 1, "max": 250},
        "routeTableRanges": [{"min": 1, "max": 250}, {"min": 1000, "max": 2000}],
        "healthTimeoutOverrides": [{"name": "InternalDataplaneMainLoop", "timeout": "90s"},
            {"name": "CalculationGraph", "timeout": "1.5ms"}],
        "bpfConntrackTimeouts": {"tcpEstablished": "1h", "creationGracePeriod": "",
            "icmpTimeout": "5s"},
        // an unknown field is dropped
        "notAFelixField": "ignored"
    });
    let annotations = json!({
        "config.projectcalico.org/LogSeverityScreen": "Debug",
        "config.projectcalico.org/NotAField": "extra",
        "config.projectcalico.org/Ipv6Support": "",
        "unrelated.example.com/x": "y"
    });
    let corpus = vec![
        case(
            Felix,
            "FelixConfiguration",
            "default",
            felix_configuration("default", annotations.clone(), every_type.clone()),
        )
        .revision("100"),
        case(
            Felix,
            "FelixConfiguration",
            "node.node-1",
            felix_configuration(
                "node.node-1",
                annotations,
                json!({
                "bpfLogLevel": "Debug", "routeTableRange": {"min": 10, "max": 20},
                "healthTimeoutOverrides": []}),
            ),
        ),
        case(
            Felix,
            "FelixConfiguration",
            "node.node-2",
            felix_configuration("node.node-2", json!(null), every_type),
        ),
        // An empty host name is the global scope, as in Calico.
        case(
            Felix,
            "FelixConfiguration",
            "node.",
            felix_configuration("node.", json!({}), json!({"logSeverityFile": "Warning"})),
        ),
        // Go's duration corner cases: wrap-around, fractions of hours, both micro signs.
        case(
            Felix,
            "FelixConfiguration",
            "node.node-3",
            felix_configuration(
                "node.node-3",
                json!({}),
                json!({"routeRefreshInterval": "9223372036854775808ns9223372036854775808ns",
                    "iptablesRefreshInterval": "1.0000000001h", "netlinkTimeout": ".5\u{3bc}s",
                    "iptablesLockProbeInterval": "1.0000005ms", "reportingTTL": "-0.000000001s",
                    "healthTimeoutOverrides": [{"name": "x", "timeout": "100000h"},
                        {"name": "y", "timeout": "999ns"}, {"name": "z", "timeout": "-1.5us"}]}),
            ),
        ),
        // A name that is neither: nothing.
        case(
            Felix,
            "FelixConfiguration",
            "other",
            felix_configuration("other", json!({}), json!({"logSeverityFile": "Warning"})),
        ),
        // No spec at all: every field unset.
        case(
            Felix,
            "FelixConfiguration",
            "default",
            json!({"kind": "FelixConfiguration", "metadata": {"name": "default"}}),
        ),
        // Values Calico cannot decode: the whole resource fails.
        case(
            Felix,
            "FelixConfiguration",
            "default",
            felix_configuration("default", json!({}), json!({"logSeverityScreen": 5})),
        ),
        case(
            Felix,
            "FelixConfiguration",
            "default",
            felix_configuration("default", json!({}), json!({"routeRefreshInterval": "10"})),
        ),
        case(
            Felix,
            "FelixConfiguration",
            "default",
            felix_configuration("default", json!({}), json!({"vxlanVNI": 1.5})),
        ),
        // Not the bgp syncer's.
        case(
            Bgp,
            "FelixConfiguration",
            "default",
            felix_configuration("default", json!({}), json!({"logSeverityScreen": "Info"})),
        ),
        case(
            Felix,
            "ClusterInformation",
            "default",
            json!({
            "apiVersion": "projectcalico.org/v3", "kind": "ClusterInformation",
            "metadata": {"name": "default", "annotations": {"config.projectcalico.org/X": "no"}},
            "spec": {"clusterGUID": "3f9b1c0e8a2d4c6f", "clusterType": "k8s,bgp,kubeadm,kdd",
                "calicoVersion": "v3.31.0", "datastoreReady": true, "variant": "Calico"}}),
        ),
        case(
            Felix,
            "ClusterInformation",
            "default",
            json!({
            "kind": "ClusterInformation", "metadata": {"name": "default"},
            "spec": {"datastoreReady": false, "clusterType": ""}}),
        ),
        case(
            Felix,
            "ClusterInformation",
            "default",
            json!({
            "kind": "ClusterInformation", "metadata": {"name": "default"}, "spec": {}}),
        ),
        // A per-node ClusterInformation has no ready flag.
        case(
            Felix,
            "ClusterInformation",
            "node.n1",
            json!({
            "kind": "ClusterInformation", "metadata": {"name": "node.n1"},
            "spec": {"datastoreReady": true, "variant": "Calico"}}),
        ),
    ];
    check(corpus);
}

const WG_KEY: &str = "jlkVyQYooZYzI2wFfNhSZez5eWh44yfq1wKVjLvSXgY=";
const WG_KEY_V6: &str = "9bI2Ylbl2WJTTdP1Hh3KlLuh8wLdHAhSu2e7UTgYtlM=";

fn node(name: &str, spec: Value, status: Value) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "Node",
        "metadata": {"name": name, "resourceVersion": "5", "uid": "0d3c1e6a-1111-2222-3333-444455556666",
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"},
            "annotations": {"projectcalico.org/kube-labels": "{}"}},
        "spec": spec, "status": status})
}

#[test]
fn nodes_match_calico() {
    let full = node(
        "node-1",
        json!({
        "bgp": {"ipv4Address": "10.0.0.11/24", "ipv6Address": "fd00::11/64",
            "ipv4IPIPTunnelAddr": "192.168.10.1", "asNumber": 64512,
            "routeReflectorClusterID": "224.0.0.1"},
        "ipv4VXLANTunnelAddr": "192.168.20.1", "vxlanTunnelMACAddr": "66:0a:1b:2c:3d:4e",
        "ipv6VXLANTunnelAddr": "FD00:0:0:20::1", "vxlanTunnelMACAddrV6": "66:0a:1b:2c:3d:4f",
        "addresses": [{"address": "10.0.0.11", "type": "InternalIP"},
            {"address": "203.0.113.11", "type": "ExternalIP"}, {"address": "fd00::11", "type": "CalicoNodeIP"}],
        "orchRefs": [{"nodeName": "node-1", "orchestrator": "k8s"}],
        "wireguard": {"interfaceIPv4Address": "192.168.30.1", "interfaceIPv6Address": "fd00:30::1"}}),
        json!({"wireguardPublicKey": WG_KEY, "wireguardPublicKeyV6": WG_KEY_V6,
            "podCIDRs": ["10.244.1.0/24"]}),
    );
    let corpus = vec![
        case(Felix, "Node", "node-1", full.clone()).revision("77"),
        case(Bgp, "Node", "node-1", full.clone()).revision("77"),
        case(TunnelIpAllocation, "Node", "node-1", full.clone()),
        case(NodeStatus, "Node", "node-1", full),
        // No BGP: the host IP is the first IPv4 InternalIP (an IPv6 one is skipped).
        case(
            Felix,
            "Node",
            "node-2",
            node(
                "node-2",
                json!({
            "addresses": [{"address": "fd00::12", "type": "InternalIP"},
                {"address": "10.0.0.12", "type": "InternalIP"},
                {"address": "203.0.113.12", "type": "ExternalIP"}]}),
                json!({}),
            ),
        ),
        // Only an ExternalIP.
        case(
            Felix,
            "Node",
            "node-3",
            node(
                "node-3",
                json!({
            "addresses": [{"address": "203.0.113.13", "type": "ExternalIP"}]}),
                json!({}),
            ),
        ),
        // IPv6 only, VXLAN v6, a WireGuard v6 key only.
        case(
            Felix,
            "Node",
            "node-4",
            node(
                "node-4",
                json!({
            "bgp": {"ipv6Address": "fd00::14/64"},
            "ipv6VXLANTunnelAddr": "fd00:20::14", "vxlanTunnelMACAddrV6": "66-0A-1B-2C-3D-50",
            "addresses": [{"address": "fd00::14", "type": "InternalIP"}]}),
                json!({"wireguardPublicKeyV6": WG_KEY_V6}),
            ),
        ),
        // Nothing at all: every key is a deletion but the Node itself.
        case(
            Felix,
            "Node",
            "node-5",
            json!({"kind": "Node", "metadata": {"name": "node-5"}}),
        ),
        // The BGP address as a bare IP; a WireGuard key without an interface address.
        case(
            Felix,
            "Node",
            "node-6",
            node(
                "node-6",
                json!({
            "bgp": {"ipv4Address": "10.0.0.16", "asNumber": 65001}}),
                json!({"wireguardPublicKey": WG_KEY}),
            ),
        ),
        // Invalid for Typha's validator (bad MAC, empty BGP spec, unmasked node address, bad
        // WireGuard key, bad name): the Node is sent as missing, its other keys still go.
        case(
            Felix,
            "Node",
            "node-7",
            node(
                "node-7",
                json!({
            "ipv4VXLANTunnelAddr": "192.168.20.7", "vxlanTunnelMACAddr": "not-a-mac"}),
                json!({}),
            ),
        ),
        case(
            Felix,
            "Node",
            "node-8",
            node(
                "node-8",
                json!({"bgp": {},
            "addresses": [{"address": "10.0.0.18", "type": "InternalIP"}]}),
                json!({}),
            ),
        ),
        case(
            Felix,
            "Node",
            "node-9",
            node(
                "node-9",
                json!({
            "addresses": [{"address": "10.0.0.19/24", "type": "InternalIP"}]}),
                json!({}),
            ),
        ),
        case(
            Felix,
            "Node",
            "node-10",
            node(
                "node-10",
                json!({
            "addresses": [{"address": "10.0.0.20", "type": "InternalIP"}]}),
                json!({"wireguardPublicKey": "bm90LWEta2V5"}),
            ),
        ),
        case(
            Felix,
            "Node",
            "Node_11",
            node(
                "Node_11",
                json!({
            "addresses": [{"address": "10.0.0.21", "type": "InternalIP"}]}),
                json!({}),
            ),
        ),
        // Addresses Calico cannot parse: their keys are deleted and an error reported.
        case(
            Felix,
            "Node",
            "node-12",
            node(
                "node-12",
                json!({
            "bgp": {"ipv4Address": "10.0.0.300/24", "ipv4IPIPTunnelAddr": "nonsense"},
            "ipv4VXLANTunnelAddr": "192.168.20.12.1",
            "addresses": [{"address": "10.0.0.22", "type": "InternalIP"}]}),
                json!({}),
            ),
        ),
        // A value Calico cannot decode.
        case(
            Felix,
            "Node",
            "node-13",
            node("node-13", json!({"bgp": "yes"}), json!({})),
        ),
    ];
    check(corpus);
}

fn pool(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
        "metadata": {"name": name, "resourceVersion": "9", "creationTimestamp": "2026-01-02T03:04:05Z"},
        "spec": spec})
}

#[test]
fn ipam_matches_calico() {
    let pools = [
        (
            "ipip-always",
            json!({"cidr": "10.10.0.0/16", "ipipMode": "Always", "vxlanMode": "Never",
            "natOutgoing": true, "blockSize": 26, "nodeSelector": "all()"}),
        ),
        (
            "ipip-cross",
            json!({"cidr": "10.11.0.0/16", "ipipMode": "CrossSubnet"}),
        ),
        (
            "vxlan-always",
            json!({"cidr": "10.12.0.0/16", "vxlanMode": "Always", "natOutgoing": true}),
        ),
        (
            "vxlan-cross",
            json!({"cidr": "10.13.0.0/16", "vxlanMode": "CrossSubnet",
            "disableBGPExport": true}),
        ),
        (
            "never",
            json!({"cidr": "10.14.0.0/16", "ipipMode": "Never", "vxlanMode": "Never"}),
        ),
        (
            "disabled",
            json!({"cidr": "10.15.0.0/16", "disabled": true}),
        ),
        (
            "manual",
            json!({"cidr": "10.16.0.0/24", "assignmentMode": "Manual",
            "allowedUses": ["Workload", "Tunnel"]}),
        ),
        (
            "v6",
            json!({"cidr": "fd00:10:244::/48", "vxlanMode": "CrossSubnet", "natOutgoing": true}),
        ),
        ("v6-uncanonical", json!({"cidr": "FD00:0:0:0:1::/80"})),
        ("unmasked", json!({"cidr": "10.17.3.4/16"})),
        (
            "lowercase-mode",
            json!({"cidr": "10.18.0.0/16", "ipipMode": "always"}),
        ),
        ("bad-cidr", json!({"cidr": "10.19.0.0/33"})),
        ("no-cidr", json!({})),
    ];
    let mut corpus = Vec::new();
    for (name, spec) in pools {
        let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
        for syncer in [Felix, Bgp, TunnelIpAllocation, NodeStatus] {
            corpus.push(case(syncer, "IPPool", name, pool(name, spec.clone())).revision("9"));
        }
    }
    // Blocks in Calico's etcd form (the AllocationBlock JSON itself) ...
    let etcd_block = json!({"cidr": "10.10.1.0/26", "affinity": "host:node-1",
        "allocations": [0, null, 1, null], "unallocated": [1, 3],
        "attributes": [
            {"handle_id": "k8s-pod-network.4f8e", "secondary": {"namespace": "ns1", "node": "node-1",
                "pod": "web-0", "timestamp": "2026-01-02 03:04:05 +0000 UTC"}},
            // A borrowed address: allocated to a pod on another node.
            {"handle_id": "k8s-pod-network.9a1b", "secondary": {"node": "node-2", "pod": "db-0"}}],
        "sequenceNumber": 7, "sequenceNumberForAllocation": {"0": 3, "2": 7}, "deleted": false});
    corpus.push(case(Felix, "IPAMBlock", "10-10-1-0-26", etcd_block.clone()));
    corpus.push(case(Bgp, "IPAMBlock", "10-10-1-0-26", etcd_block));
    corpus.push(case(
        Felix,
        "IPAMBlock",
        "10-10-2-0-26",
        json!({"cidr": "10.10.2.0/26",
        "affinity": null, "allocations": [null, null], "unallocated": [0, 1], "attributes": [],
        "hostAffinity": "node-3", "deleted": true}),
    ));
    corpus.push(case(
        Felix,
        "IPAMBlock",
        "fd00-10-244--122",
        json!({"cidr": "fd00:10:244::/122",
        "affinity": "host:node-4", "allocations": [null], "unallocated": [0]}),
    ));
    // ... and as the Kubernetes datastore's IPAMBlock resource.
    corpus.push(
        case(
            Felix,
            "IPAMBlock",
            "10-10-3-0-26",
            json!({"apiVersion": "projectcalico.org/v3",
        "kind": "IPAMBlock", "metadata": {"name": "10-10-3-0-26", "resourceVersion": "31"},
        "spec": {"cidr": "10.10.3.0/26", "affinity": "host:node-1", "allocations": [0, null],
            "unallocated": [1], "attributes": [{"handle_id": "h1", "secondary": {"node": "node-1"}},
                {"handle_id": "h2"}, {}],
            "sequenceNumber": 2, "sequenceNumberForAllocation": {"0": 2}, "deleted": false,
            "strictAffinity": false}}),
        )
        .revision("31"),
    );
    corpus.push(case(
        Felix,
        "IPAMBlock",
        "fd00-10-244--40-122",
        json!({"apiVersion": "projectcalico.org/v3",
        "kind": "IPAMBlock", "metadata": {"name": "fd00-10-244--40-122"},
        "spec": {"cidr": "fd00:10:244::40/122", "allocations": [], "unallocated": []}}),
    ));
    corpus.push(case(
        Felix,
        "IPAMBlock",
        "bad",
        json!({"cidr": "10.10.4.0"}),
    ));
    let affinity = |name: &str, spec: Value| {
        json!({"apiVersion": "projectcalico.org/v3", "kind": "BlockAffinity",
            "metadata": {"name": name, "resourceVersion": "12"}, "spec": spec})
    };
    for (name, spec) in [
        (
            "node-1-10-10-1-0-26",
            json!({"state": "confirmed", "node": "node-1", "cidr": "10.10.1.0/26",
            "deleted": "false"}),
        ),
        (
            "node-2-10-10-5-0-26",
            json!({"state": "pendingDeletion", "node": "node-2",
            "cidr": "10.10.5.0/26", "deleted": "True"}),
        ),
        (
            "virtual-10-10-6-0-26",
            json!({"state": "pending", "node": "vm-1", "type": "virtual",
            "cidr": "10.10.6.0/26", "deleted": ""}),
        ),
        (
            "node-4-fd00-10-244--122",
            json!({"state": "confirmed", "node": "node-4",
            "cidr": "fd00:10:244::/122"}),
        ),
        (
            "bad-deleted",
            json!({"state": "confirmed", "node": "node-1", "cidr": "10.10.7.0/26",
            "deleted": "yes"}),
        ),
        (
            "bad-cidr",
            json!({"state": "confirmed", "node": "node-1", "cidr": "10.10.8.0"}),
        ),
    ] {
        let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
        corpus.push(case(Bgp, "BlockAffinity", name, affinity(name, spec.clone())).revision("12"));
        corpus.push(case(Felix, "BlockAffinity", name, affinity(name, spec)));
    }
    check(corpus);
}

#[test]
fn pass_through_kinds_match_calico() {
    let meta = |name: &str| {
        json!({"name": name, "resourceVersion": "41", "uid": "6a1f0c2e-aaaa-bbbb-cccc-ddddeeeeffff",
            "creationTimestamp": "2026-01-02T03:04:05Z", "labels": {"team": "net"}})
    };
    let bgp_configuration = json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration",
        "metadata": meta("default"),
        "spec": {"logSeverityScreen": "Info", "nodeToNodeMeshEnabled": false, "asNumber": 64512,
            "serviceClusterIPs": [{"cidr": "10.96.0.0/12"}], "listenPort": 179,
            "communities": [{"name": "c1", "value": "64512:100"}],
            "prefixAdvertisements": [{"cidr": "10.10.0.0/16", "communities": ["c1", "64512:200"]}]}});
    let bgp_peer = json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer",
        "metadata": meta("rack-tor"),
        "spec": {"nodeSelector": "rack == 'a'", "peerIP": "10.0.0.1", "asNumber": 64513,
            "keepOriginalNextHop": true, "filters": ["export-only"]}});
    let bgp_filter = json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPFilter",
        "metadata": meta("export-only"),
        "spec": {"exportV4": [{"action": "Accept", "matchOperator": "In", "cidr": "10.10.0.0/16"}]}});
    let node_status = json!({"apiVersion": "projectcalico.org/v3", "kind": "CalicoNodeStatus",
        "metadata": meta("node-1-status"),
        "spec": {"node": "node-1", "classes": ["Agent", "BGP", "Routes"], "updatePeriodSeconds": 10},
        "status": {"lastUpdated": "2026-01-02T03:04:05Z",
            "agent": {"birdV4": {"state": "Ready", "version": "v0.3.3", "routerID": "10.0.0.11",
                "lastBootTime": "2026-01-01 00:00:00", "lastReconfigurationTime": "2026-01-01 00:00:00"},
                "birdV6": {}},
            "bgp": {"numberEstablishedV4": 1, "numberEstablishedV6": 0, "numberNotEstablishedV4": 0,
                "numberNotEstablishedV6": 0, "peersV4": [{"peerIP": "10.0.0.1", "type": "GlobalPeer",
                    "state": "Established", "since": "2026-01-01"}]},
            "routes": {"routesV4": [{"type": "FIB", "destination": "10.10.1.0/26",
                "gateway": "10.0.0.12", "interface": "eth0", "learnedFrom": {"sourceType": "NodeMesh",
                    "peerIP": "10.0.0.12"}}]}}});
    // meshsync's Kubernetes driver stores Services and EndpointSlices in a v3-like shape; Calico
    // hands Felix the Kubernetes objects themselves.
    let service = json!({"apiVersion": "projectcalico.org/v3", "kind": "KubernetesService",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-1",
            "creationTimestamp": "2026-01-02T03:04:05Z", "labels": {"app": "web"}},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
            "selector": {"app": "web"}, "sessionAffinity": "None", "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster"}});
    let k8s_service = json!({
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "resourceVersion": "41",
            "creationTimestamp": "2026-01-02T03:04:05Z", "labels": {"app": "web"}},
        "spec": service["spec"].clone(), "status": {"loadBalancer": {}}});
    let slice_fields = json!({"addressType": "IPv4",
        "endpoints": [{"addresses": ["10.10.1.5"], "conditions": {"ready": true, "serving": true,
            "terminating": false}, "nodeName": "node-1",
            "targetRef": {"kind": "Pod", "namespace": "shop", "name": "web-0", "uid": "p-1"}}],
        "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]});
    let slice = json!({"apiVersion": "projectcalico.org/v3", "kind": "KubernetesEndpointSlice",
        "metadata": {"name": "web-abcde", "namespace": "shop", "uid": "u-2",
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "labels": {"kubernetes.io/service-name": "web"}},
        "spec": slice_fields});
    let mut k8s_slice = slice_fields_at_top(&slice);
    k8s_slice["metadata"]["resourceVersion"] = json!("41");
    let corpus = vec![
        case(
            Felix,
            "BGPConfiguration",
            "default",
            bgp_configuration.clone(),
        )
        .revision("41"),
        case(Bgp, "BGPConfiguration", "default", bgp_configuration).revision("41"),
        case(Felix, "BGPPeer", "rack-tor", bgp_peer.clone()).revision("41"),
        case(Bgp, "BGPPeer", "rack-tor", bgp_peer.clone()),
        case(TunnelIpAllocation, "BGPPeer", "rack-tor", bgp_peer),
        case(Bgp, "BGPFilter", "export-only", bgp_filter.clone()).revision("41"),
        case(Felix, "BGPFilter", "export-only", bgp_filter),
        case(
            NodeStatus,
            "CalicoNodeStatus",
            "node-1-status",
            node_status.clone(),
        )
        .revision("41"),
        case(Felix, "CalicoNodeStatus", "node-1-status", node_status),
        case(Felix, "KubernetesService", "web", service.clone())
            .namespace("shop")
            .revision("41")
            .calico_value(k8s_service.clone()),
        case(Bgp, "KubernetesService", "web", service)
            .namespace("shop")
            .calico_value(k8s_service),
        case(Felix, "KubernetesEndpointSlice", "web-abcde", slice)
            .namespace("shop")
            .revision("41")
            .calico_value(k8s_slice),
        // Empty objects: Go writes the empty structs.
        case(
            Bgp,
            "BGPPeer",
            "empty",
            json!({"kind": "BGPPeer", "metadata": {"name": "empty"}}),
        ),
    ];
    check(corpus);
}

/// A KubernetesEndpointSlice in the Kubernetes shape: the fields at the top, no type meta.
fn slice_fields_at_top(slice: &Value) -> Value {
    let mut out = json!({"metadata": slice["metadata"].clone()});
    for (k, v) in slice["spec"].as_object().unwrap() {
        out[k] = v.clone();
    }
    out
}

/// A value of each Go type the config specs use: `full` a typical one, else an empty one.
fn sample(go_type: &str, full: bool) -> Value {
    match (go_type, full) {
        ("string", true) => json!("Value-1"),
        ("string", false) => json!(""),
        ("bool", f) => json!(f),
        ("int", true) => json!(-42),
        ("int", false) => json!(0),
        ("uint32", true) => json!(4_294_967_295u32),
        ("uint32", false) => json!(0),
        ("v1.Duration", true) => json!("2m3.25s"),
        ("v1.Duration", false) => json!("0s"),
        ("[]string", true) => json!(["a", "b/c"]),
        ("[]v3.ProtoPort", true) => json!([{"protocol": "SCTP", "port": 9}]),
        ("numorstring.Port", true) => json!("1000:2000"),
        ("numorstring.Port", false) => json!(0),
        ("[]numorstring.Port", true) => json!([1, "2:3", "dns"]),
        ("map[string]string", true) => json!({"eth0": "host 10.0.0.1"}),
        ("[]v3.HealthTimeoutOverride", true) => json!([{"name": "a", "timeout": "1h"}]),
        ("v3.RouteTableRanges", true) => json!([{"min": 1, "max": 2}]),
        ("v3.RouteTableRange", true) => json!({"min": 3, "max": 4}),
        ("v3.RouteTableRange", false) => json!({}),
        ("v3.BPFConntrackTimeouts", true) => json!({"udpTimeout": "60s", "genericTimeout": "Auto"}),
        ("v3.BPFConntrackTimeouts", false) => json!({}),
        (t, _) if t.starts_with("[]") => json!([]),
        (t, true) if t.starts_with("v3.") => json!("Enabled"),
        (t, false) if t.starts_with("v3.") => json!(""),
        (t, _) if t.starts_with("map[") => json!({}),
        (t, f) => panic!("no sample for {t} ({f}): extend sample()"),
    }
}

/// Every field of FelixConfiguration and ClusterInformation set (to a typical value, then to an
/// empty one), from the spec types' own field list (`calico-v1 -config-fields`), globally and
/// per node: no field is missing from meshsync's table or rendered differently.
#[test]
fn config_every_field_matches_calico() {
    let out = Command::new(peers_bin().join("calico-v1"))
        .arg("-config-fields")
        .output()
        .expect("run calico-v1 -config-fields");
    assert!(out.status.success());
    let specs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut corpus = Vec::new();
    for kind in ["FelixConfiguration", "ClusterInformation"] {
        let fields = specs[kind].as_array().unwrap();
        assert!(fields.len() >= 5, "{kind}: {fields:?}");
        for full in [true, false] {
            let spec: serde_json::Map<String, Value> = fields
                .iter()
                .map(|f| {
                    (
                        f["json"].as_str().unwrap().to_owned(),
                        sample(f["type"].as_str().unwrap(), full),
                    )
                })
                .collect();
            for name in ["default", "node.node-1"] {
                let value = json!({"kind": kind, "metadata": {"name": name}, "spec": spec});
                let kind: &'static str = Box::leak(kind.to_owned().into_boxed_str());
                let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
                corpus.push(case(Felix, kind, name, value));
            }
        }
    }
    check(corpus);
}

/// A remote cluster's resources, renamed for the felix syncer (`v1::remote::localize`), are
/// valid for Calico: its update processors and Typha's validation filter accept every one (none
/// is filtered out as invalid) and give exactly meshsync's keys and values.
#[test]
fn remote_resources_renamed_pass_calicos_validation_and_match_it() {
    use meshsync_typha::v1::remote::{RemoteNamespaces, localize};
    let wep = json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
        "metadata": {"name": "node--1.example-k8s-db--0-eth0", "namespace": "prod",
            "labels": {"app": "db", "projectcalico.org/namespace": "prod",
                "projectcalico.org/orchestrator": "k8s"}},
        "spec": {"orchestrator": "k8s", "node": "node-1.example", "pod": "db-0", "endpoint": "eth0",
            "containerID": "abc", "ipNetworks": ["10.9.0.5/32"], "interfaceName": "cali1234",
            "mac": "ee:ee:ee:ee:ee:ee", "serviceAccountName": "default",
            "profiles": ["kns.prod", "ksa.prod.default"]}});
    let hep = json!({"apiVersion": "projectcalico.org/v3", "kind": "HostEndpoint",
        "metadata": {"name": "node-1.example-eth0", "labels": {"role": "gw"}},
        "spec": {"node": "node-1.example", "interfaceName": "eth0", "expectedIPs": ["192.168.9.5"],
            "profiles": ["projectcalico-default-allow"]}});
    let profile = json!({"apiVersion": "projectcalico.org/v3", "kind": "Profile",
        "metadata": {"name": "kns.prod"},
        "spec": {"labelsToApply": {"pcns.projectcalico.org/name": "prod", "pcns.team": "x"}}});
    let netset = json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkSet",
        "metadata": {"name": "dbs", "namespace": "prod", "labels": {"role": "db"}},
        "spec": {"nets": ["10.9.1.0/24"]}});
    let node = node(
        "node-1.example",
        json!({"bgp": {"ipv4Address": "192.168.9.5/24"}, "ipv4VXLANTunnelAddr": "10.9.0.1",
            "orchRefs": [{"nodeName": "node-1.example", "orchestrator": "k8s"}]}),
        json!({}),
    );
    let ippool = pool(
        "default-ipv4-ippool",
        json!({"cidr": "10.9.0.0/16", "vxlanMode": "Always", "ipipMode": "Never",
            "natOutgoing": true, "blockSize": 26, "nodeSelector": "all()"}),
    );
    let block = json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPAMBlock",
        "metadata": {"name": "10-9-0-0-26"},
        "spec": {"cidr": "10.9.0.0/26", "affinity": "host:node-1.example", "strictAffinity": false,
            "allocations": [null, 0], "unallocated": [], "attributes": [
                {"handle_id": "h", "secondary": {"node": "node-1.example", "pod": "db-0"}}],
            "deleted": false}});
    let remote = [
        (
            "WorkloadEndpoint",
            "prod",
            "node--1.example-k8s-db--0-eth0",
            wep,
        ),
        ("HostEndpoint", "", "node-1.example-eth0", hep),
        ("Profile", "", "kns.prod", profile),
        ("NetworkSet", "prod", "dbs", netset),
        ("Node", "", "node-1.example", node),
        ("IPPool", "", "default-ipv4-ippool", ippool),
        ("IPAMBlock", "", "10-9-0-0-26", block),
    ];
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut corpus = Vec::new();
    for namespaces in [RemoteNamespaces::Same, RemoteNamespaces::Distinct] {
        for &(kind, ns, name, ref value) in &remote {
            let bytes = serde_json::to_vec(value).unwrap();
            let resource = Resource {
                kind,
                namespace: ns,
                name,
                value: &bytes,
                revision: "",
            };
            let local = localize("cluster-b", namespaces, &resource)
                .unwrap()
                .unwrap_or_else(|| panic!("{kind} is merged from remotes"));
            corpus.push(Case {
                namespace: leak(local.namespace.clone()),
                ..case(
                    Felix,
                    local.kind,
                    leak(local.name.clone()),
                    serde_json::from_slice(&local.value).unwrap(),
                )
            });
        }
    }
    let answers = oracle(&corpus);
    for (c, answer) in corpus.iter().zip(&answers) {
        let values = answer["updates"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| !u["value"].is_null())
            .count();
        assert!(
            answer.get("error").is_none_or(Value::is_null) && values > 0,
            "Calico refuses the renamed {} {}: {answer}",
            c.kind,
            c.name
        );
    }
    check(corpus);
}
