//! The data every system serves: realistic ~1 KiB Calico WorkloadEndpoint JSON under Calico's
//! etcdv3 layout, each value stamped with a generation and its write time so receivers can
//! measure write→receipt latency without any side channel.
//!
//! The stamp is written twice: as the first two top-level fields (`benchGen`, `benchTs`: what
//! [`stamp`] reads without parsing the rest) and as the label `bench-stamp: "<gen>.<ts_ns>"`.
//! Typha converts each v3 WorkloadEndpoint into Felix's v1 model, which drops unknown top-level
//! fields but keeps the labels, so its clients read the label.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// The etcd prefix every system lists and watches.
pub const PREFIX: &str = "/calico/resources/v3/projectcalico.org/workloadendpoints/bench/";

/// Nanoseconds since the Unix epoch (the processes share the machine's clock).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The pod name of key `i`.
fn pod(i: usize) -> String {
    format!("app-{:x}-{i}", i % 97)
}

/// The etcd key of WorkloadEndpoint `i`.
pub fn key(i: usize) -> String {
    let node = i % 1000;
    format!(
        "{PREFIX}node--{node}-k8s-{}-eth0",
        pod(i).replace('-', "--")
    )
}

/// WorkloadEndpoint `i` as Calico v3 JSON (~1 KiB), stamped with `generation` and `ts_ns`. The
/// stamp comes first so [`stamp`] finds it without parsing the rest, and again in the label
/// `bench-stamp` (`"<generation>.<write time ns>"`), which survives Typha's conversion to the v1 model.
pub fn value(i: usize, generation: u64, ts_ns: u64) -> Bytes {
    let node = i % 1000;
    let pod = pod(i);
    let app = i % 50;
    Bytes::from(format!(
        concat!(
            r#"{{"benchGen":{gen},"benchTs":{ts},"apiVersion":"projectcalico.org/v3","kind":"WorkloadEndpoint","#,
            r#""metadata":{{"name":"node--{node}-k8s-{podname}-eth0","namespace":"bench","uid":"{uid:032x}","#,
            r#""creationTimestamp":"2026-11-27T10:00:00Z","labels":{{"app":"app-{app}","tier":"backend","#,
            r#""version":"v{ver}","projectcalico.org/namespace":"bench","projectcalico.org/orchestrator":"k8s","#,
            r#""projectcalico.org/serviceaccount":"default","pod-template-hash":"{hash:08x}","#,
            r#""bench-stamp":"{gen}.{ts}"}}}},"#,
            r#""spec":{{"orchestrator":"k8s","node":"node-{node}","pod":"{pod}","endpoint":"eth0","#,
            r#""serviceAccountName":"default","containerID":"{cid:064x}","interfaceName":"cali{iface:011x}","#,
            r#""ipNetworks":["10.{a}.{b}.{c}/32"],"profiles":["kns.bench","ksa.bench.default"],"#,
            r#""ports":[{{"name":"http","protocol":"TCP","port":8080}},{{"name":"metrics","protocol":"TCP","port":9090}},"#,
            r#"{{"name":"grpc","protocol":"TCP","port":50051}}]}}}}"#
        ),
        gen = generation,
        ts = ts_ns,
        node = node,
        podname = pod.replace('-', "--"),
        pod = pod,
        uid = (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
        app = app,
        ver = i % 7,
        hash = (i as u32).wrapping_mul(2_654_435_761),
        cid = (i as u128).wrapping_mul(0x2545_f491_4f6c_dd1d_9e37_79b9_7f4a_7c15) ^ (u128::MAX >> 3),
        iface = (i as u64).wrapping_mul(0x9e37_79b9) & 0xfff_ffff_ffff,
        a = 64 + (i >> 16) % 64,
        b = (i >> 8) & 0xff,
        c = i & 0xff,
    ))
}

/// `(generation, write time ns)` of a value written by [`value`].
pub fn stamp(value: &[u8]) -> Option<(u64, u64)> {
    let rest = value.strip_prefix(br#"{"benchGen":"#)?;
    let (generation, rest) = number(rest)?;
    let rest = rest.strip_prefix(br#","benchTs":"#)?;
    let (ts, _) = number(rest)?;
    Some((generation, ts))
}

fn number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let end = bytes.iter().position(|b| !b.is_ascii_digit())?;
    let n = std::str::from_utf8(&bytes[..end]).ok()?.parse().ok()?;
    Some((n, &bytes[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_json_of_about_a_kibibyte_and_stamped() {
        let v = value(12345, 7, 1_700_000_000_123_456_789);
        let parsed: serde_json::Value = serde_json::from_slice(&v).unwrap();
        assert_eq!(parsed["kind"], "WorkloadEndpoint");
        assert!((800..1300).contains(&v.len()), "{} bytes", v.len());
        assert_eq!(stamp(&v), Some((7, 1_700_000_000_123_456_789)));
        assert_eq!(
            parsed["metadata"]["labels"]["bench-stamp"],
            "7.1700000000123456789"
        );
        assert_eq!(parsed["spec"]["ipNetworks"][0], "10.64.48.57/32");
        assert_eq!(stamp(b"{}"), None);
        assert!(key(5).starts_with(PREFIX));
        assert_ne!(key(5), key(6));
    }
}
