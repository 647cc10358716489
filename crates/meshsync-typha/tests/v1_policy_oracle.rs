//! meshsync's v1 conversion of endpoints, profiles, policies, tiers and network sets against
//! Calico's own: every resource of the corpus below (and its deletion) goes through the
//! `calico-v1` oracle — Calico v3.31's real update processors, Typha's validation filter and
//! Typha's serialization, built by `scripts/peers.sh` — and through
//! `meshsync_typha::v1::convert` (felix syncer, v3.31 dialect). Both must give the same keys and,
//! per key, equal values (JSON compared after parsing; a deletion is `null`) and the same v3
//! resource version.
//!
//! The corpus is in the forms meshsync's cache holds: Calico v3 resources as the etcd and CRD
//! datastores have them, and the Kubernetes datastore's derived kinds (`KubernetesNetworkPolicy`
//! with the Kubernetes spec, `kns.`/`ksa.` Profiles, WorkloadEndpoints with `pcns.`/`pcsa.`
//! labels). The modern (v3.32) policy dialect is not covered here: there is no v3.32 oracle; its
//! unit tests check the documented examples.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use meshsync_typha::v1::{Dialect, Resource, Syncer, convert};
use serde_json::{Value, json};

/// The folder with the built peers: `$MESHSYNC_PEERS_BIN`, or the last line `scripts/peers.sh`
/// prints.
fn peers_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("MESHSYNC_PEERS_BIN").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(repo.join("scripts/peers.sh"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/peers.sh");
    assert!(out.status.success(), "scripts/peers.sh failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .expect("scripts/peers.sh prints the bin folder last");
    PathBuf::from(last.trim())
}

/// One resource of the corpus.
struct Case {
    kind: &'static str,
    namespace: &'static str,
    name: &'static str,
    revision: &'static str,
    value: Value,
}

fn case(kind: &'static str, namespace: &'static str, name: &'static str, spec: Value) -> Case {
    case_meta(kind, namespace, name, json!({}), spec)
}

fn case_meta(
    kind: &'static str,
    namespace: &'static str,
    name: &'static str,
    extra_metadata: Value,
    spec: Value,
) -> Case {
    let mut metadata = json!({"name": name, "uid": "0b8a8c5e-2d6c-4d8e-9a51-3f1f7c0a1b2c",
        "creationTimestamp": "2026-01-02T03:04:05Z"});
    if !namespace.is_empty() {
        metadata["namespace"] = json!(namespace);
    }
    if let (Some(m), Some(extra)) = (metadata.as_object_mut(), extra_metadata.as_object()) {
        for (k, v) in extra {
            m.insert(k.clone(), v.clone());
        }
    }
    Case {
        kind,
        namespace,
        name,
        revision: "4711",
        value: json!({"apiVersion": "projectcalico.org/v3", "kind": kind,
            "metadata": metadata, "spec": spec}),
    }
}

/// Rules exercising every rule field.
fn every_rule_field() -> Value {
    json!([
        {"action": "Allow", "protocol": "TCP",
         "source": {"selector": "app == 'web'", "namespaceSelector": "team in {'a', 'b'}",
                    "nets": ["10.1.2.3/16", "10.9.0.1"], "notNets": ["10.1.5.0/24"],
                    "ports": [1024, "2000:3000", "metrics"], "notPorts": [1100]},
         "destination": {"ports": [80, "443", "8080:8090", "http"], "notPorts": ["9000:9100"],
                         "nets": ["10.2.0.0/16"], "notNets": ["10.2.3.0/24"],
                         "notSelector": "role == 'canary'",
                         "serviceAccounts": {"names": ["sa-b", "sa-a"], "selector": "tier == 'x'"}},
         "http": {"methods": ["GET", "POST"], "paths": [{"exact": "/a"}, {"prefix": "/b"}]},
         "metadata": {"annotations": {"note": "first"}}},
        {"action": "Deny", "protocol": "UDP", "notProtocol": "TCP",
         "destination": {"ports": [53], "services": {"name": "dns", "namespace": "kube-system"}}},
        {"action": "Log", "protocol": "ICMP", "icmp": {"type": 8, "code": 0},
         "notICMP": {"type": 3}, "source": {"notSelector": "has(x)"}},
        {"action": "Pass", "protocol": 132, "destination": {"ports": [9999]}},
        {"action": "Allow", "protocol": "17", "source": {"serviceAccounts": {"names": ["only"]}}},
        {"action": "Allow", "ipVersion": 4, "protocol": "ICMP",
         "source": {"namespaceSelector": "global()"}},
        {"action": "Deny", "source": {"services": {"name": "svc"}}, "metadata": {}},
        {"action": "Allow", "destination": {"namespaceSelector": "all()", "selector": "all()"}},
    ])
}

fn corpus() -> Vec<Case> {
    vec![
        // WorkloadEndpoints, as the Kubernetes datastore makes them of pods.
        case_meta(
            "WorkloadEndpoint",
            "ns1",
            "node1-k8s-web--1-eth0",
            json!({"generateName": "web-", "labels": {"app": "web",
                "projectcalico.org/namespace": "ns1", "projectcalico.org/orchestrator": "k8s",
                "projectcalico.org/serviceaccount": "old", "pcns.team": "a", "pcsa.role": "x"},
                "annotations": {"cni.projectcalico.org/podIP": "10.0.0.5/32"}}),
            json!({"orchestrator": "k8s", "node": "node1", "pod": "web-1", "endpoint": "eth0",
                "containerID": "abc", "serviceAccountName": "web-sa",
                "ipNetworks": ["10.0.0.5/32", "fd00:1::5/128"],
                "ipNATs": [{"internalIP": "10.0.0.5", "externalIP": "192.168.1.5"},
                           {"internalIP": "fd00:1::5", "externalIP": "2001:db8::5"}],
                "ipv4Gateway": "10.0.0.1", "ipv6Gateway": "fd00:1::1",
                "profiles": ["kns.ns1", "ksa.ns1.web-sa"], "interfaceName": "cali0123456789a",
                "mac": "0A:1B:2C:3D:4E:5F",
                "ports": [{"name": "http", "protocol": "TCP", "port": 8080, "hostPort": 80},
                          {"name": "dns", "protocol": "UDP", "port": 53},
                          {"name": "sctp-port", "protocol": "SCTP", "port": 9000},
                          {"name": "", "protocol": "TCP", "port": 81}],
                "allowSpoofedSourcePrefixes": ["8.8.8.0/24", "9.9.9.9"],
                "qosControls": {"ingressBandwidth": 1000000, "egressBurst": 4000000,
                    "egressPacketRate": 0, "dscp": "AF11"}}),
        ),
        case(
            "WorkloadEndpoint",
            "ns1",
            "node1-k8s-minimal-eth0",
            json!({"orchestrator": "k8s", "node": "node1", "pod": "minimal", "endpoint": "eth0",
                "ipNetworks": ["10.0.0.7/24"], "interfaceName": "cali1"}),
        ),
        case(
            "WorkloadEndpoint",
            "ns1",
            "node1-k8s-v6only-eth0",
            json!({"ipNetworks": ["fd00:1::9"], "interfaceName": "cali9", "profiles": [],
                "qosControls": {"dscp": 12}}),
        ),
        case(
            "WorkloadEndpoint",
            "ns1",
            "node1-k8s-pending-eth0",
            json!({"interfaceName": "cali2", "profiles": ["kns.ns1"]}),
        ),
        case(
            "WorkloadEndpoint",
            "ns1",
            "node1-k8s-noiface-eth0",
            json!({"ipNetworks": ["10.0.0.8"]}),
        ),
        case(
            "WorkloadEndpoint",
            "ns1",
            "node1-k8s-numproto-eth0",
            json!({"ipNetworks": ["10.0.0.9"], "interfaceName": "cali3",
                "ports": [{"name": "x", "protocol": 6, "port": 80}]}),
        ),
        case(
            "WorkloadEndpoint",
            "ns2",
            "node--2-cni-container--id-eth--0",
            json!({"ipNetworks": ["10.0.1.1"], "interfaceName": "cali4"}),
        ),
        case(
            "WorkloadEndpoint",
            "ns3",
            "node1-k8s-plain-eth0",
            json!({"ipNetworks": ["10.0.3.1/32"], "interfaceName": "cali5",
                "ipv4Gateway": "fd00::1", "ipNATs": [{"internalIP": "10.0.3.1", "externalIP": "bogus"}]}),
        ),
        case(
            "WorkloadEndpoint",
            "ns3",
            "node1-k8s-badip-eth0",
            json!({"ipNetworks": ["10.0.3.300"], "interfaceName": "cali6"}),
        ),
        case(
            "WorkloadEndpoint",
            "ns3",
            "node1-k8s-badmac-eth0",
            json!({"ipNetworks": ["10.0.3.2"], "interfaceName": "cali7", "mac": "zz:zz"}),
        ),
        case(
            "WorkloadEndpoint",
            "ns3",
            "node1-k8s-badport-eth0",
            json!({"ipNetworks": ["10.0.3.3"], "interfaceName": "cali8",
                "ports": [{"name": "has space", "protocol": "TCP", "port": 80}]}),
        ),
        case(
            "WorkloadEndpoint",
            "ns3",
            "node1-k8s-zeroport-eth0",
            json!({"ipNetworks": ["10.0.3.4"], "interfaceName": "cali9",
                "ports": [{"name": "zero", "protocol": "UDP", "port": 0}]}),
        ),
        // HostEndpoints.
        case_meta(
            "HostEndpoint",
            "",
            "node1-eth0",
            json!({"labels": {"role": "gw"}, "annotations": {"qos.projectcalico.org/dscp": "af41"}}),
            json!({"node": "node1", "interfaceName": "eth0",
                "expectedIPs": ["192.168.0.1", "fd00::1", "bogus"],
                "profiles": ["kns.ns1"],
                "ports": [{"name": "ssh", "protocol": "TCP", "port": 22}]}),
        ),
        case_meta(
            "HostEndpoint",
            "",
            "node2-all",
            json!({"annotations": {"qos.projectcalico.org/dscp": "12"}}),
            json!({"node": "node2", "interfaceName": "*"}),
        ),
        case_meta(
            "HostEndpoint",
            "",
            "node3-ips",
            json!({"labels": {}, "annotations": {"qos.projectcalico.org/dscp": "bogus"}}),
            json!({"node": "node3", "expectedIPs": ["10.3.0.1"]}),
        ),
        case(
            "HostEndpoint",
            "",
            "long-iface",
            json!({"node": "node4", "interfaceName": "interface-too-long0"}),
        ),
        case(
            "HostEndpoint",
            "",
            "bad-profile",
            json!({"node": "node4", "interfaceName": "eth1", "profiles": ["bad name"]}),
        ),
        case("HostEndpoint", "", "nothing", json!({"node": "node5"})),
        // Profiles, as the Kubernetes datastore synthesizes them (from a namespace: the revision
        // is never the Profile's resource version), and a hand-written one.
        Case {
            revision: "",
            ..case(
                "Profile",
                "",
                "kns.ns1",
                json!({"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}],
                "labelsToApply": {"pcns.projectcalico.org/name": "ns1", "pcns.team": "a"}}),
            )
        },
        Case {
            revision: "",
            ..case(
                "Profile",
                "",
                "ksa.ns1.web-sa",
                json!({"labelsToApply": {"pcsa.projectcalico.org/name": "web-sa",
                "pcsa.role": "x"}}),
            )
        },
        case(
            "Profile",
            "",
            "rules-only",
            json!({"ingress": every_rule_field(), "egress": [{"action": "Deny"}]}),
        ),
        case(
            "Profile",
            "",
            "bad-rule",
            json!({"ingress": [{"action": "Allow", "destination": {"ports": [80]}}],
                "labelsToApply": {"a": "b"}}),
        ),
        // Calico policies.
        case(
            "NetworkPolicy",
            "ns1",
            "allow-web",
            json!({"order": 100, "selector": "app == 'web'", "types": ["Ingress", "Egress"],
                "serviceAccountSelector": "role == 'x'",
                "ingress": every_rule_field(),
                "egress": [{"action": "Allow", "protocol": "UDP",
                    "destination": {"selector": "k8s-app == 'kube-dns'",
                        "namespaceSelector": "projectcalico.org/name == 'kube-system'",
                        "ports": [53]}}],
                "performanceHints": ["AssumeNeededOnEveryNode"]}),
        ),
        case(
            "NetworkPolicy",
            "ns1",
            "sec.tiered",
            json!({"tier": "sec", "order": 10.5, "types": ["Ingress"],
                "ingress": [{"action": "Deny"}]}),
        ),
        case(
            "NetworkPolicy",
            "ns1",
            "bad-selector",
            json!({"selector": "app ==", "types": ["Ingress"]}),
        ),
        case(
            "NetworkPolicy",
            "ns1",
            "bad-dst-net",
            json!({"egress": [{"action": "Allow", "destination": {"nets": ["10.0.0.0/8"]},
                "source": {"nets": ["bogus"]}}]}),
        ),
        case(
            "NetworkPolicy",
            "ns1",
            "icmp-out-of-range",
            json!({"ingress": [{"action": "Allow", "protocol": "ICMP", "icmp": {"type": 255}}]}),
        ),
        case(
            "NetworkPolicy",
            "ns1",
            "bad-rule-selector",
            json!({"ingress": [{"action": "Allow", "source": {"selector": "a ==="}}]}),
        ),
        case(
            "NetworkPolicy",
            "ns1",
            "icmp-with-ports",
            json!({"ingress": [{"action": "Allow", "protocol": "ICMP", "destination": {"ports": [1]}}]}),
        ),
        case(
            "NetworkPolicy",
            "ns1",
            "port-zero",
            json!({"ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [0]}}]}),
        ),
        case(
            "NetworkPolicy",
            "ns1",
            "bad-port-name",
            json!({"ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": ["Http_Port"]}}]}),
        ),
        case(
            "NetworkPolicy",
            "ns1",
            "bad-protocol",
            json!({"ingress": [{"action": "Allow", "protocol": "bogus"}]}),
        ),
        case(
            "NetworkPolicy",
            "ns1",
            "protocol-zero",
            json!({"ingress": [{"action": "Allow", "protocol": 0}]}),
        ),
        case(
            "NetworkPolicy",
            "ns1",
            "ip-version-five",
            json!({"ingress": [{"action": "Allow", "ipVersion": 5}]}),
        ),
        case(
            "NetworkPolicy",
            "ns1",
            "hints",
            json!({"order": 0, "types": ["ingress"],
                "performanceHints": ["AssumeNeededOnEveryNode", "AssumeNeededOnEveryNode"]}),
        ),
        case(
            "NetworkPolicy",
            "ns1",
            "bad-hint",
            json!({"performanceHints": ["Sometimes"]}),
        ),
        case(
            "NetworkPolicy",
            "ns1",
            "http-no-protocol",
            json!({"order": 1e3, "ingress": [{"action": "Allow", "http": {"methods": ["GET"]}}]}),
        ),
        case(
            "GlobalNetworkPolicy",
            "",
            "global-deny",
            json!({"order": 2000, "selector": "has(projectcalico.org/namespace)",
                "namespaceSelector": "all()", "serviceAccountSelector": "all()",
                "types": ["Egress"], "applyOnForward": true,
                "egress": [{"action": "Deny", "ipVersion": 6, "protocol": "ICMPv6",
                    "destination": {"nets": ["fd00::/8"], "namespaceSelector": "global()"}}],
                "performanceHints": ["AssumeNeededOnEveryNode"]}),
        ),
        case(
            "GlobalNetworkPolicy",
            "",
            "host.protect",
            json!({"tier": "host", "selector": "role == 'gw'", "doNotTrack": true,
                "applyOnForward": true, "namespaceSelector": "team == 'a'",
                "ingress": every_rule_field(), "types": ["Ingress"]}),
        ),
        case(
            "GlobalNetworkPolicy",
            "",
            "prednat",
            json!({"preDNAT": true, "applyOnForward": true, "selector": "all()",
                "ingress": [{"action": "Allow", "source": {"nets": ["fd00::/64", "10.0.0.0/8"]}}]}),
        ),
        case(
            "StagedNetworkPolicy",
            "ns1",
            "staged-web",
            json!({"stagedAction": "Set", "selector": "app == 'web'",
                "ingress": [{"action": "Allow"}], "types": ["Ingress"]}),
        ),
        case(
            "StagedNetworkPolicy",
            "ns1",
            "staged-gone",
            json!({"stagedAction": "Delete", "selector": "app == 'web'"}),
        ),
        case(
            "StagedGlobalNetworkPolicy",
            "",
            "sec.staged-global",
            json!({"tier": "sec", "stagedAction": "Learn", "order": 5,
                "namespaceSelector": "team == 'b'", "egress": [{"action": "Deny"}]}),
        ),
        case(
            "StagedKubernetesNetworkPolicy",
            "ns1",
            "staged-k8s",
            json!({"stagedAction": "Set", "podSelector": {"matchLabels": {"app": "db"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                    "ports": [{"port": 5432}]}], "policyTypes": ["Ingress"]}),
        ),
        case(
            "GlobalNetworkPolicy",
            "",
            "all-and-ns",
            json!({"selector": "all()", "namespaceSelector": "!has(x) || all()"}),
        ),
        case(
            "StagedKubernetesNetworkPolicy",
            "ns1",
            "staged-k8s-gone",
            json!({"stagedAction": "Delete", "podSelector": {}}),
        ),
        case(
            "StagedNetworkPolicy",
            "ns1",
            "staged-no-action",
            json!({"selector": "app == 'x'"}),
        ),
        // Kubernetes NetworkPolicies as meshsync's Kubernetes datastore holds them.
        case(
            "KubernetesNetworkPolicy",
            "ns1",
            "default-deny",
            json!({"podSelector": {}}),
        ),
        case(
            "KubernetesNetworkPolicy",
            "ns1",
            "db-access",
            json!({"podSelector": {"matchLabels": {"app": "db", "tier": "data"},
                    "matchExpressions": [
                        {"key": "env", "operator": "In", "values": ["prod", "staging"]},
                        {"key": "track", "operator": "NotIn", "values": ["canary"]},
                        {"key": "owner", "operator": "Exists"},
                        {"key": "legacy", "operator": "DoesNotExist"}]},
                "ingress": [
                    {"from": [{"namespaceSelector": {}},
                              {"namespaceSelector": {"matchLabels": {"team": "a"}},
                               "podSelector": {"matchLabels": {"app": "web"}}},
                              {"ipBlock": {"cidr": "10.1.2.3/16", "except": ["10.1.5.0/24"]}}],
                     "ports": [{"port": 5432}, {"port": 5433}, {"protocol": "TCP", "port": 5434},
                               {"protocol": "UDP", "port": "dns"},
                               {"protocol": "SCTP", "port": 7000, "endPort": 7010}]},
                    {"ports": [{"protocol": "UDP"}, {"protocol": "UDP", "port": 53}]},
                    {}],
                "egress": [{"to": [{"ipBlock": {"cidr": "fd00::/64"}}]}],
                "policyTypes": ["Ingress", "Egress"]}),
        ),
        case(
            "KubernetesNetworkPolicy",
            "ns2",
            "egress-only",
            json!({"podSelector": {"matchLabels": {"app": "x"}},
                "egress": [{"ports": [{"port": 443}]}], "policyTypes": ["Egress"]}),
        ),
        case(
            "KubernetesNetworkPolicy",
            "ns3",
            "named-ports",
            json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}]},
                "ingress": [{"ports": [{"port": "http"}, {"port": 80}, {"port": 81, "endPort": 90},
                    {"protocol": "TCP", "port": 85}, {"protocol": "SCTP"}]}],
                "egress": [{"to": [{"namespaceSelector": {"matchExpressions":
                    [{"key": "team", "operator": "NotIn", "values": ["b", "a"]}]}}],
                    "ports": [{"protocol": "udp", "port": 53}]}],
                "policyTypes": ["Egress", "Ingress"]}),
        ),
        case(
            "KubernetesNetworkPolicy",
            "ns3",
            "bad-port",
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": "not a port"}]}]}),
        ),
        // Tiers.
        case(
            "Tier",
            "",
            "sec",
            json!({"order": 100, "defaultAction": "Pass"}),
        ),
        case("Tier", "", "default", json!({"order": 1000000})),
        case("Tier", "", "bare", json!({})),
        case(
            "Tier",
            "",
            "half",
            json!({"order": 100.5, "defaultAction": "Deny"}),
        ),
        case("Profile", "", "empty-labels", json!({"labelsToApply": {}})),
        // Network sets.
        case_meta(
            "NetworkSet",
            "ns1",
            "external",
            json!({"labels": {"role": "external"}}),
            json!({"nets": ["198.51.100.0/24", "203.0.113.7", "2001:db8::/32"]}),
        ),
        case("NetworkSet", "ns2", "empty", json!({})),
        case_meta(
            "GlobalNetworkSet",
            "",
            "blocklist",
            json!({"labels": {"list": "bad"}}),
            json!({"nets": ["192.0.2.0/24", "bogus", "2001:db8:1::1"]}),
        ),
        case(
            "GlobalNetworkSet",
            "",
            "unlabelled",
            json!({"nets": ["192.0.2.5"]}),
        ),
        case_meta(
            "GlobalNetworkSet",
            "",
            "empty-labels",
            json!({"labels": {}}),
            json!({}),
        ),
    ]
}

/// One conversion's result: key → value (`None`: deleted), v3 resource version per key, and
/// whether an error was reported.
#[derive(Debug, PartialEq)]
struct Outcome {
    updates: BTreeMap<String, (Option<Value>, String)>,
    error: bool,
}

fn parse_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn oracle(lines: &[Value]) -> Vec<Outcome> {
    let bin = peers_bin().join("calico-v1");
    let mut child = Command::new(&bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    let mut stdin = child.stdin.take().unwrap();
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "calico-v1 failed");
    let outcomes: Vec<Outcome> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            Outcome {
                updates: v["updates"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| {
                        (
                            u["key"].as_str().unwrap().to_owned(),
                            (
                                u["value"].as_str().map(parse_value),
                                u["v3_resource_version"].as_str().unwrap().to_owned(),
                            ),
                        )
                    })
                    .collect(),
                error: v.get("error").is_some(),
            }
        })
        .collect();
    assert_eq!(outcomes.len(), lines.len(), "one output line per input");
    outcomes
}

fn meshsync(case: &Case, deleted: bool) -> Outcome {
    let bytes = serde_json::to_vec(&case.value).unwrap();
    let converted = convert(
        Syncer::Felix,
        Dialect::V331,
        &Resource {
            kind: case.kind,
            namespace: case.namespace,
            name: case.name,
            value: &bytes,
            revision: case.revision,
        },
        deleted,
    );
    Outcome {
        updates: converted
            .updates
            .into_iter()
            .map(|u| {
                let value = u
                    .value
                    .map(|b| parse_value(std::str::from_utf8(&b).unwrap()));
                (u.key, (value, u.v3_resource_version))
            })
            .collect(),
        error: converted.error.is_some(),
    }
}

/// Whether meshsync's outcome is Calico's. Where Calico fails outright (no updates, an error: the
/// resource never reaches Felix), meshsync must send at most deletions, and report the error
/// unless it is converting a deletion (whose value it does not need to read).
fn agrees(calico: &Outcome, ours: &Outcome, deleted: bool) -> bool {
    if calico.error && calico.updates.is_empty() {
        return (ours.error || deleted) && ours.updates.values().all(|(v, _)| v.is_none());
    }
    calico.updates == ours.updates
}

#[test]
fn endpoints_profiles_policies_and_sets_convert_as_calico_does() {
    let corpus = corpus();
    let mut lines = Vec::new();
    for c in &corpus {
        for deleted in [false, true] {
            lines.push(
                json!({"syncer": "felix", "kind": c.kind, "namespace": c.namespace,
                "name": c.name, "value": c.value, "deleted": deleted, "revision": c.revision,
                "datastore": "kubernetes"}),
            );
        }
    }
    let calico = oracle(&lines);
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for (i, c) in corpus.iter().enumerate() {
        for (j, deleted) in [false, true].into_iter().enumerate() {
            let theirs = &calico[2 * i + j];
            let ours = meshsync(c, deleted);
            compared += theirs.updates.len();
            if !agrees(theirs, &ours, deleted) {
                mismatches.push(format!(
                    "{} {}/{} (deleted: {deleted})\n  calico:   {theirs:?}\n  meshsync: {ours:?}",
                    c.kind, c.namespace, c.name
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} conversions differ from Calico's:\n{}",
        mismatches.len(),
        lines.len(),
        mismatches.join("\n")
    );
    // The corpus really exercises the processors: most resources give keys with values.
    assert!(compared > corpus.len() * 2, "only {compared} keys compared");
}
