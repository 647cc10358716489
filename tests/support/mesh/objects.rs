//! Calico v3 and Kubernetes objects as the fixtures write them, and RemoteClusterConfigurations.

use serde_json::{Value, json};

use super::RCC;

pub fn wep(ns: &str, name: &str, node: &str, ip: &str, profile: &str) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {
                "app": "web",
                "projectcalico.org/namespace": ns,
                "projectcalico.org/orchestrator": "k8s"
            }
        },
        "spec": {
            "orchestrator": "k8s",
            "node": node,
            "pod": name,
            "endpoint": "eth0",
            "interfaceName": "cali0123456789a",
            "ipNetworks": [format!("{ip}/32")],
            "profiles": [profile]
        }
    })
}

pub fn hep(name: &str, node: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "HostEndpoint",
        "metadata": {"name": name, "labels": {"role": "gateway"}},
        "spec": {"node": node, "interfaceName": "eth0", "expectedIPs": [ip]}
    })
}

/// A Profile with rules: remote copies must arrive without `spec.ingress` / `spec.egress`.
pub fn profile(name: &str, label: &str) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "Profile",
        "metadata": {"name": name},
        "spec": {
            "ingress": [{"action": "Allow", "source": {"selector": "all()"}}],
            "egress": [{"action": "Deny", "destination": {"nets": ["0.0.0.0/0"]}}],
            "labelsToApply": {"pcns.projectcalico.org/name": label}
        }
    })
}

pub fn node(name: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {"bgp": {"ipv4Address": format!("{ip}/24")}, "ipv4VXLANTunnelAddr": ip}
    })
}

pub fn ippool(name: &str, cidr: &str) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {"cidr": cidr, "vxlanMode": "Always", "ipipMode": "Never", "natOutgoing": true}
    })
}

/// A v1 IPAM block value as Calico's IPAM writes it.
pub fn block(cidr: &str, node: &str) -> Value {
    json!({
        "cidr": cidr,
        "affinity": format!("host:{node}"),
        "strictAffinity": false,
        "allocations": [0, null, null, null],
        "unallocated": [1, 2, 3],
        "attributes": [{"handle_id": "k8s-pod-network.abc", "secondary": {"node": node}}],
        "deleted": false
    })
}

pub fn gnp(name: &str) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": name},
        "spec": {"selector": "all()", "types": ["Ingress"], "ingress": [{"action": "Deny"}]}
    })
}

pub fn plain(kind: &str, ns: &str, name: &str) -> Value {
    let mut metadata = json!({"name": name});
    if !ns.is_empty() {
        metadata["namespace"] = json!(ns);
    }
    json!({"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": metadata, "spec": {}})
}

/// A Kubernetes Secret with base64 `data`.
pub fn secret_data(ns: &str, name: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), json!(base64(v.as_bytes()))))
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": ns}, "data": data})
}

/// A Kubernetes Secret with `stringData`.
pub fn secret_string_data(ns: &str, name: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": ns}, "stringData": data})
}

pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn rcc(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": RCC, "metadata": {"name": name}, "spec": spec})
}

pub fn etcd_spec(url: &str) -> Value {
    json!({"datastoreType": "etcdv3", "etcdEndpoints": url})
}

pub fn with_overlay(mut spec: Value, mode: &str) -> Value {
    spec["syncOptions"] = json!({"overlayRoutingMode": mode});
    spec
}
