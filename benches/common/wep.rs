//! Realistic data shared by the Criterion benches: Calico v3
//! WorkloadEndpoints as the Kubernetes datastore derives them from Pods.
#![allow(dead_code)]

use bytes::Bytes;
use meshsync_datastore::ResourceKey;

const APPS: &[(&str, &str, &str)] = &[
    ("frontend", "web", "storefront"),
    ("checkout", "payments", "storefront"),
    ("cart", "storefront", "storefront"),
    ("catalog", "storefront", "inventory"),
    ("postgres", "data", "platform"),
    ("redis", "data", "platform"),
    ("kafka", "streaming", "platform"),
    ("ingest-worker", "streaming", "analytics"),
    ("metrics-gateway", "observability", "platform"),
    ("auth", "identity", "security"),
];

pub fn mix(mut x: u64) -> u64 {
    // splitmix64: deterministic pseudo-random identifiers.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `-` doubled, as Calico does inside a WorkloadEndpoint name's segments.
fn esc(s: &str) -> String {
    s.replace('-', "--")
}

/// The key and ~1 KiB canonical JSON (keys sorted, as the datastores produce it) of workload
/// endpoint `i`; `generation` changes the value (its resourceVersion), never the key.
pub fn wep(i: usize, generation: u64) -> (ResourceKey, Bytes) {
    let (app, ns_base, team) = APPS[i % APPS.len()];
    let namespace = format!("{ns_base}-{:02}", (i / APPS.len()) % 40);
    let node = format!(
        "ip-10-{}-{}-{}.eu-west-1.compute.internal",
        (i / 64) % 4,
        (i / 16) % 256,
        i % 250
    );
    let h = mix(i as u64);
    let rs_hash = format!("{:08x}", h as u32 & 0x0fff_ffff);
    let pod = format!("{app}-{rs_hash}-{:05x}", (h >> 40) & 0xfffff);
    let name = format!("{}-k8s-{}-eth0", esc(&node), esc(&pod));
    let sa = format!("{app}-sa");
    let uid = format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        h as u32,
        (h >> 32) & 0xffff,
        (h >> 48) & 0xfff,
        mix(h) & 0xfff,
        mix(h + 1) & 0xffff_ffff_ffff
    );
    let container = format!(
        "{h:016x}{:016x}{:016x}{:016x}",
        mix(h),
        mix(h + 2),
        mix(h + 3)
    );
    let mac = format!(
        "0e:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        h & 0xff,
        (h >> 8) & 0xff,
        (h >> 16) & 0xff,
        (h >> 24) & 0xff,
        (h >> 32) & 0xff
    );
    let ipv4 = format!(
        "10.{}.{}.{}/32",
        64 + (i >> 16) % 64,
        (i >> 8) & 0xff,
        i & 0xff
    );
    let ipv6 = format!("fd00:10:{:x}::{:x}/128", (i >> 16) & 0xffff, i & 0xffff);
    let value = serde_json::json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "resourceVersion": (1_000_000 + i as u64 * 3 + generation * 7_919).to_string(),
            "creationTimestamp": "2025-03-14T09:26:53Z",
            "labels": {
                "app": app,
                "app.kubernetes.io/name": app,
                "pod-template-hash": rs_hash,
                "team": team,
                "projectcalico.org/namespace": namespace,
                "projectcalico.org/orchestrator": "k8s",
                "projectcalico.org/serviceaccount": sa,
            },
        },
        "spec": {
            "orchestrator": "k8s",
            "node": node,
            "pod": pod,
            "endpoint": "eth0",
            "containerID": container,
            "serviceAccountName": sa,
            "interfaceName": format!("cali{:011x}", mix(h + 4) & 0xfff_ffff_ffff),
            "mac": mac,
            "ipNetworks": [ipv4, ipv6],
            "profiles": [format!("kns.{namespace}"), format!("ksa.{namespace}.{sa}")],
            "ports": [
                {"name": "http", "port": 8080, "protocol": "TCP"},
                {"name": "metrics", "port": 9090, "protocol": "TCP"},
            ],
        },
    });
    let key = ResourceKey::new("", "WorkloadEndpoint", &namespace, &name);
    let value = serde_json::to_vec(&value).expect("JSON encodes");
    (key, Bytes::from(value))
}
