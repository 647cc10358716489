//! Kubernetes Node → Calico Node, as Calico's KDD derives it.
//!
//! Why: BGP, IPIP/VXLAN and Wireguard peers find each other through the Calico Node, and in KDD
//! Calico keeps its Node-only fields in `projectcalico.org/*` annotations of the Kubernetes Node.
//! Rules (Calico's Kubernetes Node → Calico Node conversion): labels are Calico's (round-tripped
//! through `projectcalico.org/labels`) with the Kubernetes labels merged over them, and the
//! Kubernetes labels alone kept in the annotation `projectcalico.org/kube-labels` (always, as Go
//! marshals them: Calico's writer uses it to tell inherited labels from its own); spec fields come from
//! the annotations, and an invalid value is ignored (never an error: one bad annotation must not
//! hide a node); `orchRefs` names the Kubernetes node; `addresses` are the BGP addresses
//! (`CalicoNodeIP`) then the node's InternalIP/ExternalIP; `status.podCIDRs` = `spec.podCIDRs`.
//! Not derived here: the usePodCIDR (host-local IPAM) tunnel addresses and synthetic blocks.

use std::net::IpAddr;

use serde_json::{Map, Value, json};

use super::convert::str_at;

const P: &str = "projectcalico.org/";

/// The Calico Node of a Kubernetes Node.
pub fn node_to_calico(node: &Value) -> Value {
    let name = str_at(node, "/metadata/name").unwrap_or("");
    let ann = CalicoAnnotations::of(node);
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("projectcalico.org/v3"));
    out.insert("kind".into(), json!("Node"));
    out.insert("metadata".into(), Value::Object(metadata(node, name, &ann)));
    out.insert("spec".into(), Value::Object(spec(node, name, &ann)));
    let status = status(node, &ann);
    if !status.is_empty() {
        out.insert("status".into(), Value::Object(status));
    }
    Value::Object(out)
}

/// The Kubernetes Node's `projectcalico.org/*` annotations, where KDD keeps Calico's Node fields.
struct CalicoAnnotations(Map<String, Value>);

impl CalicoAnnotations {
    fn of(node: &Value) -> Self {
        Self(
            node.pointer("/metadata/annotations")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        )
    }

    /// The trimmed value of `projectcalico.org/<key>`; `None` when absent or blank.
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(&format!("{P}{key}"))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// The BGP address of one family, when valid.
    fn bgp_address(&self, v6: bool) -> Option<&str> {
        let key = if v6 { "IPv6Address" } else { "IPv4Address" };
        self.get(key).filter(|s| is_cidr_or_ip(s, v6))
    }
}

/// Name, uid, creation time, labels (Calico's, with the Kubernetes labels merged over them) and
/// the Calico annotations.
fn metadata(node: &Value, name: &str, ann: &CalicoAnnotations) -> Map<String, Value> {
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(name));
    for field in ["uid", "creationTimestamp"] {
        if let Some(v) = node
            .pointer(&format!("/metadata/{field}"))
            .filter(|v| !v.is_null())
        {
            metadata.insert(field.into(), v.clone());
        }
    }
    let labels = labels(node, ann);
    if !labels.is_empty() {
        metadata.insert("labels".into(), Value::Object(labels));
    }
    let mut annotations: Map<String, Value> = ann
        .get("annotations")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    annotations.insert(
        KUBE_LABELS_ANNOTATION.into(),
        json!(go_json_string_map(node.pointer("/metadata/labels"))),
    );
    metadata.insert("annotations".into(), Value::Object(annotations));
    metadata
}

/// The annotation of a Calico Node holding its Kubernetes Node's labels.
pub const KUBE_LABELS_ANNOTATION: &str = "projectcalico.org/kube-labels";

/// A `map[string]string` as Go's `json.Marshal` writes it: keys sorted, `<`, `>`, `&`, U+2028
/// and U+2029 escaped as `\u` sequences, `null` for no map. Non-string values (no API server
/// serves them in labels) are skipped.
fn go_json_string_map(labels: Option<&Value>) -> String {
    let Some(labels) = labels.and_then(Value::as_object) else {
        return "null".into();
    };
    let sorted: std::collections::BTreeMap<&str, &str> = labels
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
        .collect();
    let plain = serde_json::to_string(&sorted).unwrap_or_else(|_| "null".into());
    let mut out = String::with_capacity(plain.len());
    for c in plain.chars() {
        match c {
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out
}

/// Calico's labels, with the Kubernetes labels merged over them.
fn labels(node: &Value, ann: &CalicoAnnotations) -> Map<String, Value> {
    let mut labels: Map<String, Value> = ann
        .get("labels")
        .and_then(|s| serde_json::from_str::<Map<String, Value>>(s).ok())
        .unwrap_or_default();
    if let Some(k8s) = node.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in k8s {
            labels.insert(k.clone(), v.clone());
        }
    }
    labels
}

/// BGP, VXLAN, Wireguard, interfaces, `orchRefs` and addresses.
fn spec(node: &Value, name: &str, ann: &CalicoAnnotations) -> Map<String, Value> {
    let mut spec = Map::new();
    let bgp = bgp(ann);
    if !bgp.is_empty() {
        spec.insert("bgp".into(), Value::Object(bgp));
    }
    for (annotation, field, check) in [
        (
            "IPv4VXLANTunnelAddr",
            "ipv4VXLANTunnelAddr",
            Check::Ip(false),
        ),
        ("VXLANTunnelMACAddr", "vxlanTunnelMACAddr", Check::Mac),
        (
            "IPv6VXLANTunnelAddr",
            "ipv6VXLANTunnelAddr",
            Check::Ip(true),
        ),
        ("VXLANTunnelMACAddrV6", "vxlanTunnelMACAddrV6", Check::Mac),
    ] {
        if let Some(v) = ann.get(annotation).filter(|s| check.ok(s)) {
            spec.insert(field.into(), json!(v));
        }
    }
    let wireguard = wireguard(ann);
    if !wireguard.is_empty() {
        spec.insert("wireguard".into(), Value::Object(wireguard));
    }
    if let Some(interfaces) = ann
        .get("Interfaces")
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        && interfaces.is_array()
    {
        spec.insert("interfaces".into(), interfaces);
    }
    spec.insert(
        "orchRefs".into(),
        json!([{"nodeName": name, "orchestrator": "k8s"}]),
    );
    let addresses = addresses(node, ann);
    if !addresses.is_empty() {
        spec.insert("addresses".into(), Value::Array(addresses));
    }
    spec
}

/// `spec.bgp`: addresses, AS number, route reflector cluster and IPIP tunnel address.
fn bgp(ann: &CalicoAnnotations) -> Map<String, Value> {
    let mut bgp = Map::new();
    if let Some(v) = ann.bgp_address(false) {
        bgp.insert("ipv4Address".into(), json!(v));
    }
    if let Some(v) = ann.bgp_address(true) {
        bgp.insert("ipv6Address".into(), json!(v));
    }
    if let Some(asn) = ann.get("ASNumber").and_then(parse_asn) {
        bgp.insert("asNumber".into(), json!(asn));
    }
    if let Some(v) = ann
        .get("RouteReflectorClusterID")
        .filter(|s| s.parse::<std::net::Ipv4Addr>().is_ok())
    {
        bgp.insert("routeReflectorClusterID".into(), json!(v));
    }
    if let Some(v) = ann.get("IPv4IPIPTunnelAddr").filter(|s| is_ip(s, false)) {
        bgp.insert("ipv4IPIPTunnelAddr".into(), json!(v));
    }
    bgp
}

/// `spec.wireguard`: the Wireguard interface addresses.
fn wireguard(ann: &CalicoAnnotations) -> Map<String, Value> {
    let mut wireguard = Map::new();
    if let Some(v) = ann
        .get("IPv4WireguardInterfaceAddr")
        .filter(|s| is_ip(s, false))
    {
        wireguard.insert("interfaceIPv4Address".into(), json!(v));
    }
    if let Some(v) = ann
        .get("IPv6WireguardInterfaceAddr")
        .filter(|s| is_ip(s, true))
    {
        wireguard.insert("interfaceIPv6Address".into(), json!(v));
    }
    wireguard
}

/// `spec.addresses`: the BGP addresses (`CalicoNodeIP`) then the node's InternalIP/ExternalIP.
fn addresses(node: &Value, ann: &CalicoAnnotations) -> Vec<Value> {
    let mut addresses: Vec<Value> = [ann.bgp_address(false), ann.bgp_address(true)]
        .into_iter()
        .flatten()
        .map(|a| json!({"address": a, "type": "CalicoNodeIP"}))
        .collect();
    if let Some(list) = node.pointer("/status/addresses").and_then(Value::as_array) {
        for a in list {
            let kind = a.get("type").and_then(Value::as_str).unwrap_or("");
            if let ("InternalIP" | "ExternalIP", Some(address)) =
                (kind, a.get("address").and_then(Value::as_str))
            {
                addresses.push(json!({"address": address, "type": kind}));
            }
        }
    }
    addresses
}

/// `status`: the Wireguard public keys and `podCIDRs` (= `spec.podCIDRs`).
fn status(node: &Value, ann: &CalicoAnnotations) -> Map<String, Value> {
    let mut status = Map::new();
    for (annotation, field) in [
        ("WireguardPublicKey", "wireguardPublicKey"),
        ("WireguardPublicKeyV6", "wireguardPublicKeyV6"),
    ] {
        if let Some(v) = ann.get(annotation) {
            status.insert(field.into(), json!(v));
        }
    }
    if let Some(cidrs) = node.pointer("/spec/podCIDRs").filter(|v| v.is_array()) {
        status.insert("podCIDRs".into(), cidrs.clone());
    }
    status
}

#[derive(Clone, Copy)]
enum Check {
    Ip(bool),
    Mac,
}

impl Check {
    fn ok(self, s: &str) -> bool {
        match self {
            Check::Ip(v6) => is_ip(s, v6),
            Check::Mac => is_mac(s),
        }
    }
}

fn is_ip(s: &str, v6: bool) -> bool {
    s.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6() == v6)
}

fn is_cidr_or_ip(s: &str, v6: bool) -> bool {
    let (ip, len) = s.split_once('/').unwrap_or((s, ""));
    let max = if v6 { 128 } else { 32 };
    is_ip(ip, v6) && (len.is_empty() || len.parse::<u8>().is_ok_and(|l| l <= max))
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A BGP AS number: plain (`64512`) or dotted (`1.10` = 1 × 65536 + 10).
fn parse_asn(s: &str) -> Option<u64> {
    match s.split_once('.') {
        None => s.parse::<u32>().ok().map(u64::from),
        Some((hi, lo)) => {
            let (hi, lo) = (hi.parse::<u16>().ok()?, lo.parse::<u16>().ok()?);
            Some(u64::from(hi) * 65536 + u64::from(lo))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_become_spec_fields_and_bad_ones_are_ignored() {
        let node = json!({
            "metadata": {"name": "node-1", "uid": "u", "labels": {"kubernetes.io/os": "linux"},
                "annotations": {
                    "projectcalico.org/IPv4Address": "10.0.0.5/24",
                    "projectcalico.org/ASNumber": "1.10",
                    "projectcalico.org/IPv4VXLANTunnelAddr": "not-an-ip",
                    "projectcalico.org/VXLANTunnelMACAddr": "66:aa:bb:cc:dd:ee",
                    "projectcalico.org/labels": "{\"calico\":\"x\",\"kubernetes.io/os\":\"old\"}",
                    "projectcalico.org/WireguardPublicKey": "key=",
                    "unrelated": "y"
                }},
            "spec": {"podCIDRs": ["10.1.0.0/24"]},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.5"},
                                     {"type": "Hostname", "address": "node-1"}]}
        });
        let out = node_to_calico(&node);
        assert_eq!(
            out,
            json!({
                "apiVersion": "projectcalico.org/v3", "kind": "Node",
                "metadata": {"name": "node-1", "uid": "u",
                    "labels": {"calico": "x", "kubernetes.io/os": "linux"},
                    "annotations": {"projectcalico.org/kube-labels": "{\"kubernetes.io/os\":\"linux\"}"}},
                "spec": {
                    "bgp": {"ipv4Address": "10.0.0.5/24", "asNumber": 65546},
                    "vxlanTunnelMACAddr": "66:aa:bb:cc:dd:ee",
                    "orchRefs": [{"nodeName": "node-1", "orchestrator": "k8s"}],
                    "addresses": [{"address": "10.0.0.5/24", "type": "CalicoNodeIP"},
                                  {"address": "192.168.0.5", "type": "InternalIP"}]
                },
                "status": {"wireguardPublicKey": "key=", "podCIDRs": ["10.1.0.0/24"]}
            })
        );
    }

    #[test]
    fn kubernetes_labels_are_kept_in_the_kube_labels_annotation_as_go_marshals_them() {
        let node = json!({"metadata": {"name": "n", "labels": {"z": "1", "a": "<&>"},
            "annotations": {"projectcalico.org/annotations": "{\"mine\":\"yes\"}"}}});
        assert_eq!(
            node_to_calico(&node)["metadata"]["annotations"],
            json!({"mine": "yes",
                KUBE_LABELS_ANNOTATION: "{\"a\":\"\\u003c\\u0026\\u003e\",\"z\":\"1\"}"})
        );
        // A node without labels: Go marshals the nil map as `null`.
        let node = json!({"metadata": {"name": "n"}});
        assert_eq!(
            node_to_calico(&node)["metadata"]["annotations"],
            json!({KUBE_LABELS_ANNOTATION: "null"})
        );
    }
}
