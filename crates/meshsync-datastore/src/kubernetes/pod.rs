//! Pod → WorkloadEndpoint, as Calico's KDD derives it.
//!
//! Why here and pure: every Pod in a cluster becomes (or stops being) an endpoint, so this is the
//! hottest conversion of the Kubernetes driver and the one agents' policy depends on most; keeping
//! it a function of the Pod's JSON alone makes it testable against Calico's documented rules
//! without an API server. Rules (Calico's Pod → WorkloadEndpoint conversion): host-network and
//! unscheduled pods have no endpoint; the name is `[node, "k8s", pod, "eth0"]` with `-` doubled in each segment; labels
//! gain `projectcalico.org/{namespace,orchestrator,serviceaccount}`; IPs come from the first
//! source that has any, in Calico's priority order; a finished pod keeps its endpoint without IPs.
//! The annotation-driven fields (`ipNATs`, `allowSpoofedSourcePrefixes`, QoS, the network status)
//! are in [`annotations`].

pub mod annotations;

use std::net::IpAddr;

use serde_json::{Map, Value, json};
use sha1::{Digest, Sha1};

/// Why a Pod could not be converted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PodError {
    #[error("pod has no metadata.name")]
    NoName,
    #[error("malformed pod IP {0:?} (from {1})")]
    MalformedIp(String, &'static str),
    #[error("annotation {0} {1}")]
    MalformedAnnotation(&'static str, &'static str),
}

/// The annotation Calico's CNI plugin writes with the container's ID.
pub const CONTAINER_ID_ANNOTATION: &str = "cni.projectcalico.org/containerID";

/// Label keys Calico adds to every WorkloadEndpoint.
pub const NAMESPACE_LABEL: &str = "projectcalico.org/namespace";
pub const ORCHESTRATOR_LABEL: &str = "projectcalico.org/orchestrator";
pub const SERVICE_ACCOUNT_LABEL: &str = "projectcalico.org/serviceaccount";

/// Calico's WorkloadEndpoint name: each segment with every `-` doubled, joined by single `-`.
pub fn workload_endpoint_name(
    node: &str,
    orchestrator: &str,
    workload: &str,
    endpoint: &str,
) -> String {
    [node, orchestrator, workload, endpoint]
        .iter()
        .map(|s| s.replace('-', "--"))
        .collect::<Vec<_>>()
        .join("-")
}

/// The host-side interface name: `prefix` + the first 11 hex digits of SHA-1(`"<ns>.<pod>"`).
pub fn interface_name(prefix: &str, namespace: &str, pod: &str) -> String {
    let digest = Sha1::digest(format!("{namespace}.{pod}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{}", &hex[..11])
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// A CIDR or a bare IP (as /32 or /128), or `None` when it is neither.
fn ip_network(s: &str) -> Option<String> {
    let s = s.trim();
    match s.split_once('/') {
        Some((ip, len)) => {
            let ip: IpAddr = ip.parse().ok()?;
            let len: u8 = len.parse().ok()?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            (len <= max).then(|| format!("{ip}/{len}"))
        }
        None => {
            let ip: IpAddr = s.parse().ok()?;
            Some(if ip.is_ipv4() {
                format!("{ip}/32")
            } else {
                format!("{ip}/128")
            })
        }
    }
}

/// The pod's IPs from the first source that has any: `status.podIPs`, `status.podIP`, then the
/// Calico CNI and AWS annotations.
fn pod_ips(pod: &Value) -> Result<Vec<String>, PodError> {
    let annotation = |k: &str| str_at(pod, &["metadata", "annotations", k]);
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    let from_status: Vec<String> = pod
        .pointer("/status/podIPs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| e.get("ip").and_then(Value::as_str))
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let candidates: [(&'static str, Vec<String>); 5] = [
        ("status.podIPs", from_status),
        (
            "status.podIP",
            str_at(pod, &["status", "podIP"])
                .map(split)
                .unwrap_or_default(),
        ),
        (
            "cni.projectcalico.org/podIPs",
            annotation("cni.projectcalico.org/podIPs")
                .map(split)
                .unwrap_or_default(),
        ),
        (
            "cni.projectcalico.org/podIP",
            annotation("cni.projectcalico.org/podIP")
                .map(split)
                .unwrap_or_default(),
        ),
        (
            "vpc.amazonaws.com/pod-ips",
            annotation("vpc.amazonaws.com/pod-ips")
                .map(split)
                .unwrap_or_default(),
        ),
    ];
    let Some((source, ips)) = candidates.into_iter().find(|(_, ips)| !ips.is_empty()) else {
        return Ok(Vec::new());
    };
    ips.iter()
        .map(|s| ip_network(s).ok_or_else(|| PodError::MalformedIp(s.clone(), source)))
        .collect()
}

/// Phase Failed/Succeeded/Completed, or being deleted with its IP already released.
fn finished(pod: &Value) -> bool {
    if matches!(
        str_at(pod, &["status", "phase"]),
        Some("Failed" | "Succeeded" | "Completed")
    ) {
        return true;
    }
    let deleting = pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    let released = |v: Option<&str>| v.is_some_and(|s| s.is_empty());
    deleting
        && (released(str_at(pod, &["status", "podIP"]))
            || released(str_at(
                pod,
                &["metadata", "annotations", "vpc.amazonaws.com/pod-ips"],
            )))
}

/// Container and init-container ports with a non-zero `containerPort` and a name or a host port.
fn ports(pod: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for list in ["containers", "initContainers"] {
        let containers = pod
            .pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array);
        for c in containers.into_iter().flatten() {
            let ports = c.get("ports").and_then(Value::as_array);
            for p in ports.into_iter().flatten() {
                let port = p.get("containerPort").and_then(Value::as_u64).unwrap_or(0);
                let name = p.get("name").and_then(Value::as_str).unwrap_or("");
                let host_port = p.get("hostPort").and_then(Value::as_u64).unwrap_or(0);
                if port == 0 || (name.is_empty() && host_port == 0) {
                    continue;
                }
                let protocol = match p.get("protocol").and_then(Value::as_str) {
                    None | Some("") => "tcp".to_string(),
                    Some(proto) => proto.to_ascii_lowercase(),
                };
                let mut entry = Map::new();
                entry.insert("name".into(), json!(name));
                entry.insert("protocol".into(), json!(protocol));
                entry.insert("port".into(), json!(port));
                if host_port != 0 {
                    entry.insert("hostPort".into(), json!(host_port));
                    if let Some(ip) = p.get("hostIP").and_then(Value::as_str) {
                        entry.insert("hostIP".into(), json!(ip));
                    }
                }
                out.push(Value::Object(entry));
            }
        }
    }
    out
}

/// The WorkloadEndpoint Calico derives from `pod` (a Pod as the API serves it), or `None` for a
/// pod that has none (host network, not scheduled). `interface_prefix` is the first entry of
/// Felix's interface prefix (`cali` by default).
pub fn pod_to_workload_endpoint(
    pod: &Value,
    interface_prefix: &str,
) -> Result<Option<Value>, PodError> {
    if pod.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true) {
        return Ok(None);
    }
    let node = str_at(pod, &["spec", "nodeName"]).unwrap_or("");
    if node.is_empty() {
        return Ok(None);
    }
    let name = str_at(pod, &["metadata", "name"])
        .filter(|n| !n.is_empty())
        .ok_or(PodError::NoName)?;
    let id = PodId {
        node,
        name,
        namespace: str_at(pod, &["metadata", "namespace"]).unwrap_or("default"),
        service_account: str_at(pod, &["spec", "serviceAccountName"]).unwrap_or(""),
    };
    let pod_annotations: Map<String, Value> = pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let metadata = metadata(pod, &id, &pod_annotations);
    let spec = spec(pod, &id, interface_prefix, &pod_annotations)?;
    Ok(Some(json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": Value::Object(metadata),
        "spec": Value::Object(spec),
    })))
}

/// Who a scheduled pod is: the fields its WorkloadEndpoint's name, labels and profiles come from.
struct PodId<'a> {
    node: &'a str,
    name: &'a str,
    namespace: &'a str,
    /// Empty when the pod names none.
    service_account: &'a str,
}

/// The endpoint's name, namespace, uid, creation time, generateName, labels and the network
/// status annotation.
fn metadata(pod: &Value, id: &PodId, pod_annotations: &Map<String, Value>) -> Map<String, Value> {
    let mut metadata = Map::new();
    metadata.insert(
        "name".into(),
        json!(workload_endpoint_name(id.node, "k8s", id.name, "eth0")),
    );
    metadata.insert("namespace".into(), json!(id.namespace));
    for field in ["uid", "creationTimestamp", "generateName"] {
        if let Some(v) = pod
            .pointer(&format!("/metadata/{field}"))
            .filter(|v| !v.is_null())
        {
            metadata.insert(field.into(), v.clone());
        }
    }
    metadata.insert("labels".into(), Value::Object(labels(pod, id)));
    if let Some(status) = pod_annotations.get(annotations::NETWORK_STATUS) {
        metadata.insert(
            "annotations".into(),
            json!({ annotations::NETWORK_STATUS: status }),
        );
    }
    metadata
}

/// The pod's labels plus Calico's namespace, orchestrator and service account labels.
fn labels(pod: &Value, id: &PodId) -> Map<String, Value> {
    let mut labels: Map<String, Value> = pod
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    labels.insert(NAMESPACE_LABEL.into(), json!(id.namespace));
    labels.insert(ORCHESTRATOR_LABEL.into(), json!("k8s"));
    let sa = id.service_account;
    if !sa.is_empty() && sa.len() < 63 {
        labels.insert(SERVICE_ACCOUNT_LABEL.into(), json!(sa));
    }
    labels
}

/// The endpoint's spec: where it is, its interface and addresses, the annotation-driven
/// settings (NATs, spoofed sources, QoS), its profiles and ports.
fn spec(
    pod: &Value,
    id: &PodId,
    interface_prefix: &str,
    pod_annotations: &Map<String, Value>,
) -> Result<Map<String, Value>, PodError> {
    let ips = if finished(pod) {
        Vec::new()
    } else {
        pod_ips(pod)?
    };
    let mut spec = Map::new();
    spec.insert("orchestrator".into(), json!("k8s"));
    spec.insert("node".into(), json!(id.node));
    spec.insert("pod".into(), json!(id.name));
    spec.insert("endpoint".into(), json!("eth0"));
    if let Some(cid) = str_at(pod, &["metadata", "annotations", CONTAINER_ID_ANNOTATION]) {
        spec.insert("containerID".into(), json!(cid));
    }
    spec.insert(
        "interfaceName".into(),
        json!(interface_name(interface_prefix, id.namespace, id.name)),
    );
    let nats = annotations::ip_nats(pod_annotations, &ips)?;
    let allowed = annotations::allowed_source_prefixes(pod_annotations)?;
    spec.insert("ipNetworks".into(), json!(ips));
    if !nats.is_empty() {
        spec.insert("ipNATs".into(), Value::Array(nats));
    }
    if !allowed.is_empty() {
        spec.insert("allowSpoofedSourcePrefixes".into(), json!(allowed));
    }
    if let Some(qos) = annotations::qos_controls(pod_annotations) {
        spec.insert("qosControls".into(), qos);
    }
    spec.insert("profiles".into(), Value::Array(profiles(id)));
    if !id.service_account.is_empty() {
        spec.insert("serviceAccountName".into(), json!(id.service_account));
    }
    let ports = ports(pod);
    if !ports.is_empty() {
        spec.insert("ports".into(), Value::Array(ports));
    }
    Ok(spec)
}

/// The namespace's profile `kns.<ns>`, then the service account's `ksa.<ns>.<sa>` if any.
fn profiles(id: &PodId) -> Vec<Value> {
    let mut profiles = vec![json!(format!("kns.{}", id.namespace))];
    let sa = id.service_account;
    if !sa.is_empty() {
        let ns = if id.namespace.is_empty() {
            "default"
        } else {
            id.namespace
        };
        profiles.push(json!(format!("ksa.{ns}.{sa}")));
    }
    profiles
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "nginx-abc", "namespace": "default", "uid": "u-1",
                "creationTimestamp": "2026-12-01T00:00:00Z", "generateName": "nginx-",
                "labels": {"app": "nginx"},
                "annotations": {"cni.projectcalico.org/containerID": "c0ffee"}
            },
            "spec": {
                "nodeName": "node-1", "serviceAccountName": "web",
                "containers": [{"name": "c", "ports": [
                    {"name": "http", "containerPort": 80, "protocol": "TCP"},
                    {"containerPort": 81},
                    {"containerPort": 82, "hostPort": 8082, "protocol": "UDP"},
                    {"name": "zero", "containerPort": 0}
                ]}],
                "initContainers": [{"name": "i", "ports": [{"name": "s", "containerPort": 90, "protocol": "SCTP"}]}]
            },
            "status": {"phase": "Running", "podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}]}
        })
    }

    #[test]
    fn names_and_interface_follow_calico() {
        assert_eq!(
            workload_endpoint_name("node-1", "k8s", "nginx-abc", "eth0"),
            "node--1-k8s-nginx--abc-eth0"
        );
        assert_eq!(
            interface_name("cali", "default", "nginx"),
            "calic440f455693"
        );
    }

    #[test]
    fn a_running_pod_becomes_its_endpoint() {
        let wep = pod_to_workload_endpoint(&pod(), "cali").unwrap().unwrap();
        assert_eq!(wep["metadata"]["name"], "node--1-k8s-nginx--abc-eth0");
        assert_eq!(wep["metadata"]["namespace"], "default");
        assert_eq!(wep["metadata"]["uid"], "u-1");
        assert_eq!(wep["metadata"]["generateName"], "nginx-");
        let labels = &wep["metadata"]["labels"];
        assert_eq!(labels["app"], "nginx");
        assert_eq!(labels[NAMESPACE_LABEL], "default");
        assert_eq!(labels[ORCHESTRATOR_LABEL], "k8s");
        assert_eq!(labels[SERVICE_ACCOUNT_LABEL], "web");
        let spec = &wep["spec"];
        assert_eq!(spec["node"], "node-1");
        assert_eq!(spec["pod"], "nginx-abc");
        assert_eq!(spec["containerID"], "c0ffee");
        assert_eq!(
            spec["interfaceName"],
            interface_name("cali", "default", "nginx-abc")
        );
        // status.podIPs wins over status.podIP.
        assert_eq!(spec["ipNetworks"], json!(["10.0.0.5/32", "fd00::5/128"]));
        assert_eq!(spec["profiles"], json!(["kns.default", "ksa.default.web"]));
        // Named or host ports only; protocols lower-cased, empty = tcp; init containers too.
        assert_eq!(
            spec["ports"],
            json!([
                {"name": "http", "protocol": "tcp", "port": 80},
                {"name": "", "protocol": "udp", "port": 82, "hostPort": 8082},
                {"name": "s", "protocol": "sctp", "port": 90}
            ])
        );
    }

    #[test]
    fn host_network_and_unscheduled_pods_have_no_endpoint() {
        let mut p = pod();
        p["spec"]["hostNetwork"] = json!(true);
        assert_eq!(pod_to_workload_endpoint(&p, "cali"), Ok(None));
        let mut p = pod();
        p["spec"]["nodeName"] = json!("");
        assert_eq!(pod_to_workload_endpoint(&p, "cali"), Ok(None));
        let mut p = pod();
        p["spec"].as_object_mut().unwrap().remove("nodeName");
        assert_eq!(pod_to_workload_endpoint(&p, "cali"), Ok(None));
    }

    #[test]
    fn ips_come_from_the_first_source_that_has_any() {
        let mut p = pod();
        p["status"].as_object_mut().unwrap().remove("podIPs");
        let wep = pod_to_workload_endpoint(&p, "cali").unwrap().unwrap();
        assert_eq!(wep["spec"]["ipNetworks"], json!(["10.0.0.9/32"]));
        p["status"].as_object_mut().unwrap().remove("podIP");
        p["metadata"]["annotations"]["cni.projectcalico.org/podIPs"] =
            json!("10.1.0.1/26, fd00::1");
        p["metadata"]["annotations"]["cni.projectcalico.org/podIP"] = json!("10.9.9.9");
        let wep = pod_to_workload_endpoint(&p, "cali").unwrap().unwrap();
        assert_eq!(
            wep["spec"]["ipNetworks"],
            json!(["10.1.0.1/26", "fd00::1/128"])
        );
        p["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove("cni.projectcalico.org/podIPs");
        p["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove("cni.projectcalico.org/podIP");
        p["metadata"]["annotations"]["vpc.amazonaws.com/pod-ips"] = json!("10.2.0.2");
        let wep = pod_to_workload_endpoint(&p, "cali").unwrap().unwrap();
        assert_eq!(wep["spec"]["ipNetworks"], json!(["10.2.0.2/32"]));
    }

    #[test]
    fn a_malformed_ip_is_an_error_naming_its_source() {
        let mut p = pod();
        p["status"]["podIPs"] = json!([{"ip": "10.0.0.300"}]);
        assert_eq!(
            pod_to_workload_endpoint(&p, "cali"),
            Err(PodError::MalformedIp("10.0.0.300".into(), "status.podIPs"))
        );
        p["status"]["podIPs"] = json!([{"ip": "10.0.0.1/33"}]);
        assert!(pod_to_workload_endpoint(&p, "cali").is_err());
    }

    #[test]
    fn finished_pods_keep_their_endpoint_without_ips() {
        for phase in ["Failed", "Succeeded", "Completed"] {
            let mut p = pod();
            p["status"]["phase"] = json!(phase);
            let wep = pod_to_workload_endpoint(&p, "cali").unwrap().unwrap();
            assert_eq!(wep["spec"]["ipNetworks"], json!([]), "{phase}");
        }
        let mut p = pod();
        p["metadata"]["deletionTimestamp"] = json!("2026-12-01T00:01:00Z");
        p["status"]["podIP"] = json!("");
        let wep = pod_to_workload_endpoint(&p, "cali").unwrap().unwrap();
        assert_eq!(wep["spec"]["ipNetworks"], json!([]));
        // Being deleted but still holding its IP: still has it.
        let mut p = pod();
        p["metadata"]["deletionTimestamp"] = json!("2026-12-01T00:01:00Z");
        let wep = pod_to_workload_endpoint(&p, "cali").unwrap().unwrap();
        assert_eq!(
            wep["spec"]["ipNetworks"],
            json!(["10.0.0.5/32", "fd00::5/128"])
        );
    }

    #[test]
    fn service_account_label_only_when_short_and_profiles_follow_the_account() {
        let mut p = pod();
        let long = "a".repeat(63);
        p["spec"]["serviceAccountName"] = json!(long.clone());
        let wep = pod_to_workload_endpoint(&p, "cali").unwrap().unwrap();
        assert!(
            wep["metadata"]["labels"]
                .get(SERVICE_ACCOUNT_LABEL)
                .is_none()
        );
        assert_eq!(
            wep["spec"]["profiles"][1],
            json!(format!("ksa.default.{long}"))
        );
        p["spec"]
            .as_object_mut()
            .unwrap()
            .remove("serviceAccountName");
        let wep = pod_to_workload_endpoint(&p, "cali").unwrap().unwrap();
        assert_eq!(wep["spec"]["profiles"], json!(["kns.default"]));
        p["metadata"].as_object_mut().unwrap().remove("name");
        assert_eq!(pod_to_workload_endpoint(&p, "cali"), Err(PodError::NoName));
    }
}
