//! The WorkloadEndpoint fields Calico takes from a Pod's annotations: floating IPs (`ipNATs`),
//! allowed spoofed source prefixes, QoS controls and the Multus network status.
//!
//! Rules (as Calico's Pod conversion reads them): `cni.projectcalico.org/floatingIPs` is a JSON
//! list of IPs, each NATed to the pod's first IP of the same family (no such IP: none); a malformed list or IP is a
//! conversion error, as in Calico. `cni.projectcalico.org/allowedSourcePrefixes` is a JSON list of
//! CIDRs (malformed: an error). QoS comes from `kubernetes.io/{ingress,egress}-bandwidth`
//! (Kubernetes quantities, bits per second) and `qos.projectcalico.org/*` (integers); an invalid
//! QoS value is ignored (one bad annotation must not take the pod's endpoint away).
//! `k8s.v1.cni.cncf.io/network-status` is copied to the endpoint's annotations.

use std::net::IpAddr;

use serde_json::{Map, Value, json};

use super::{PodError, ip_network};

pub const FLOATING_IPS: &str = "cni.projectcalico.org/floatingIPs";
pub const ALLOWED_SOURCE_PREFIXES: &str = "cni.projectcalico.org/allowedSourcePrefixes";
pub const NETWORK_STATUS: &str = "k8s.v1.cni.cncf.io/network-status";

/// `spec.ipNATs`: each floating IP with the pod's first IP of its family.
pub fn ip_nats(
    annotations: &Map<String, Value>,
    ip_networks: &[String],
) -> Result<Vec<Value>, PodError> {
    let Some(text) = annotations.get(FLOATING_IPS).and_then(Value::as_str) else {
        return Ok(Vec::new());
    };
    let list: Vec<String> = serde_json::from_str(text)
        .map_err(|_| PodError::MalformedAnnotation(FLOATING_IPS, "not a JSON list of strings"))?;
    let pod_ips: Vec<IpAddr> = ip_networks
        .iter()
        .filter_map(|n| n.split('/').next()?.parse().ok())
        .collect();
    let mut out = Vec::new();
    for floating in list {
        let external: IpAddr = floating
            .trim()
            .split('/')
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or(PodError::MalformedAnnotation(
                FLOATING_IPS,
                "holds a malformed IP",
            ))?;
        if let Some(internal) = pod_ips.iter().find(|ip| ip.is_ipv4() == external.is_ipv4()) {
            out.push(
                json!({"internalIP": internal.to_string(), "externalIP": external.to_string()}),
            );
        }
    }
    Ok(out)
}

/// `spec.allowSpoofedSourcePrefixes`, normalised CIDRs.
pub fn allowed_source_prefixes(annotations: &Map<String, Value>) -> Result<Vec<String>, PodError> {
    let Some(text) = annotations
        .get(ALLOWED_SOURCE_PREFIXES)
        .and_then(Value::as_str)
    else {
        return Ok(Vec::new());
    };
    let list: Vec<String> = serde_json::from_str(text).map_err(|_| {
        PodError::MalformedAnnotation(ALLOWED_SOURCE_PREFIXES, "not a JSON list of strings")
    })?;
    list.iter()
        .map(|c| {
            ip_network(c).ok_or(PodError::MalformedAnnotation(
                ALLOWED_SOURCE_PREFIXES,
                "holds a malformed CIDR",
            ))
        })
        .collect()
}

/// `spec.qosControls`, or `None` when no QoS annotation has a valid value.
pub fn qos_controls(annotations: &Map<String, Value>) -> Option<Value> {
    let get = |k: &str| annotations.get(k).and_then(Value::as_str).map(str::trim);
    let mut qos = Map::new();
    for (annotation, field) in [
        ("kubernetes.io/ingress-bandwidth", "ingressBandwidth"),
        ("kubernetes.io/egress-bandwidth", "egressBandwidth"),
    ] {
        if let Some(v) = get(annotation).and_then(quantity) {
            qos.insert(field.into(), json!(v));
        }
    }
    for field in [
        "ingressBurst",
        "egressBurst",
        "ingressPeakrate",
        "egressPeakrate",
        "ingressMinburst",
        "egressMinburst",
        "ingressPacketRate",
        "egressPacketRate",
        "ingressPacketBurst",
        "egressPacketBurst",
        "ingressMaxConnections",
        "egressMaxConnections",
    ] {
        if let Some(v) = get(&format!("qos.projectcalico.org/{field}")).and_then(quantity) {
            qos.insert(field.into(), json!(v));
        }
    }
    (!qos.is_empty()).then_some(Value::Object(qos))
}

/// A Kubernetes quantity as a whole number (`10M` = 10,000,000; `1Ki` = 1024; `1500`), positive.
pub fn quantity(s: &str) -> Option<u64> {
    let digits = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    let value = number * factor;
    (value.is_finite() && value >= 1.0 && value < u64::MAX as f64).then(|| value.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect()
    }

    #[test]
    fn floating_ips_pair_with_the_pods_ip_of_their_family() {
        let a = annotations(&[(FLOATING_IPS, r#"["1.2.3.4", "2001:db8::9"]"#)]);
        let nats = ip_nats(&a, &["10.0.0.5/32".into()]).unwrap();
        assert_eq!(
            nats,
            vec![json!({"internalIP": "10.0.0.5", "externalIP": "1.2.3.4"})]
        );
        let bad = annotations(&[(FLOATING_IPS, r#"["1.2.3"]"#)]);
        assert!(ip_nats(&bad, &["10.0.0.5/32".into()]).is_err());
        assert!(ip_nats(&annotations(&[(FLOATING_IPS, "1.2.3.4")]), &[]).is_err());
    }

    #[test]
    fn allowed_prefixes_are_cidrs() {
        let a = annotations(&[(ALLOWED_SOURCE_PREFIXES, r#"["10.1.0.0/16", "192.0.2.7"]"#)]);
        assert_eq!(
            allowed_source_prefixes(&a).unwrap(),
            ["10.1.0.0/16", "192.0.2.7/32"]
        );
        let bad = annotations(&[(ALLOWED_SOURCE_PREFIXES, r#"["10.1.0.0/99"]"#)]);
        assert!(allowed_source_prefixes(&bad).is_err());
    }

    #[test]
    fn qos_from_bandwidth_and_calico_annotations_ignoring_bad_values() {
        let a = annotations(&[
            ("kubernetes.io/ingress-bandwidth", "10M"),
            ("kubernetes.io/egress-bandwidth", "lots"),
            ("qos.projectcalico.org/ingressBurst", "1Mi"),
            ("qos.projectcalico.org/egressPacketRate", "1000"),
        ]);
        assert_eq!(
            qos_controls(&a),
            Some(
                json!({"ingressBandwidth": 10_000_000u64, "ingressBurst": 1_048_576u64,
                "egressPacketRate": 1000u64})
            )
        );
        assert_eq!(qos_controls(&annotations(&[])), None);
        assert_eq!(quantity("0"), None);
        assert_eq!(quantity("1.5k"), Some(1500));
    }
}
