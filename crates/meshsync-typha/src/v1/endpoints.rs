//! WorkloadEndpoints and HostEndpoints: the keys Felix renders endpoints from.
//!
//! A WorkloadEndpoint's v1 key comes from its *name* (`<node>-<orchestrator>-<workload>-<endpoint>`
//! with dashes inside a part doubled), not from its spec, so it is known for a deletion too. Its
//! value is rewritten for Felix: `pcns.`/`pcsa.` labels are dropped (an endpoint must not be able
//! to claim another namespace's or service account's labels; those come from profiles), the
//! service account becomes a label, IP networks are split by family and masked, ports without a
//! name are dropped. An endpoint without IPs, or without an interface name (Typha's own
//! validation filter), is sent as a deletion: Felix cannot render rules for it yet.
//!
//! A HostEndpoint's key holds `spec.node`, so its key can change with its value; the deletion of
//! the old key on such a change is the caller's (it diffs the keys of the old and new versions).

use serde_json::{Map, Value};

use super::emit::{deletion, failed, invalid, one_key, parse, update};
use super::keys;
use super::rules::{LABEL_SERVICE_ACCOUNT, NAMESPACE_LABEL_PREFIX, SERVICE_ACCOUNT_LABEL_PREFIX};
use super::v3read::{
    Reason, is_v1_name, list, object, parse_cidr_or_ip, parse_ip, put_list, put_str, spec, string,
    string_map, strings,
};
use super::{Converted, Dialect, Resource, Syncer};

const WORKLOAD_ENDPOINT: &str = "WorkloadEndpoint";
const HOST_ENDPOINT: &str = "HostEndpoint";

/// The annotation a HostEndpoint's egress DSCP is set by.
const ANNOTATION_QOS_EGRESS_DSCP: &str = "qos.projectcalico.org/dscp";

pub(super) fn convert(
    syncer: Syncer,
    _dialect: Dialect,
    resource: &Resource<'_>,
    deleted: bool,
) -> Option<Converted> {
    if syncer != Syncer::Felix {
        return None;
    }
    match resource.kind {
        WORKLOAD_ENDPOINT => Some(workload_endpoint(resource, deleted)),
        HOST_ENDPOINT => Some(host_endpoint(resource, deleted)),
        _ => None,
    }
}

/// Calico's `extractParts`: splits a WorkloadEndpoint name on single dashes (a doubled dash is a
/// dash inside a part; the first byte never separates).
pub(super) fn dash_separated_parts(name: &str) -> Vec<String> {
    let bytes = name.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 1;
    while i < bytes.len() {
        if bytes[i] != b'-' {
            i += 1;
            continue;
        }
        if i + 1 < bytes.len() && bytes[i + 1] == b'-' {
            i += 2;
            continue;
        }
        parts.push(name[start..i].replace("--", "-"));
        start = i + 1;
        i += 1;
    }
    parts.push(name[start.min(name.len())..].replace("--", "-"));
    parts
}

/// `names.ConvertWorkloadEndpointV3KeyToV1Key` → the key path.
fn workload_endpoint_key(namespace: &str, name: &str) -> Option<String> {
    if name.len() < 7 || namespace.is_empty() {
        return None;
    }
    let parts = dash_separated_parts(name);
    let [node, orchestrator, workload, endpoint] = parts.as_slice() else {
        return None;
    };
    Some(keys::workload_endpoint(
        node,
        orchestrator,
        &format!("{namespace}/{workload}"),
        endpoint,
    ))
}

fn workload_endpoint(resource: &Resource<'_>, deleted: bool) -> Converted {
    let Some(key) = workload_endpoint_key(resource.namespace, resource.name) else {
        return failed(
            Vec::new(),
            invalid(
                resource,
                "name is not <node>-<orchestrator>-<workload>-<endpoint>".into(),
            ),
        );
    };
    one_key(resource, key, deleted, workload_endpoint_value)
}

/// `convertWorkloadEndpointV2ToV1Value` plus Typha's validation: `Ok(None)` is filtered out.
fn workload_endpoint_value(v3: &Value) -> Result<Option<Value>, Reason> {
    let metadata = super::v3read::metadata(v3)?;
    let spec = spec(v3)?;
    let ip_networks = strings(&spec, "ipNetworks")?.unwrap_or_default();
    if ip_networks.is_empty() {
        return Ok(None);
    }
    let (v4_nets, v6_nets) = nets_by_family(&ip_networks)?;
    let (v4_nat, v6_nat) = nats_by_family(&spec)?;
    let ipv4_gateway = gateway_address(&spec, "ipv4Gateway")?;
    let ipv6_gateway = gateway_address(&spec, "ipv6Gateway")?;
    let mac = mac_value(&spec)?;
    let ports = named_ports(&spec)?;
    let labels = endpoint_labels(&metadata, &spec)?;
    let allowed = allowed_spoofed_source_ips(&spec)?;
    let interface = string(&spec, "interfaceName")?;
    if interface.is_empty() {
        // Typha's validation filter: a WorkloadEndpoint without an interface name is missing.
        return Ok(None);
    }

    let mut out = Map::new();
    out.insert("state".into(), Value::String("active".into()));
    out.insert("name".into(), Value::String(interface.into()));
    out.insert("active_instance_id".into(), Value::String(String::new()));
    out.insert("mac".into(), mac);
    out.insert(
        "profile_ids".into(),
        strings(&spec, "profiles")?.map_or(Value::Null, |p| {
            Value::Array(p.into_iter().map(Value::String).collect())
        }),
    );
    out.insert("ipv4_nets".into(), nullable(v4_nets));
    out.insert("ipv6_nets".into(), nullable(v6_nets));
    put_list(&mut out, "ipv4_nat", v4_nat);
    put_list(&mut out, "ipv6_nat", v6_nat);
    // `uniquelabels.Map` is a struct: `omitempty` never drops it.
    out.insert("labels".into(), Value::Object(labels));
    if let Some(gw) = ipv4_gateway {
        out.insert("ipv4_gateway".into(), gw);
    }
    if let Some(gw) = ipv6_gateway {
        out.insert("ipv6_gateway".into(), gw);
    }
    put_list(&mut out, "ports", ports);
    put_str(
        &mut out,
        "generate_name",
        string(&metadata, "generateName")?,
    );
    put_list(&mut out, "allow_spoofed_source_ips", allowed);
    if let Some(annotations) = string_map(&metadata, "annotations")?.filter(|a| !a.is_empty()) {
        out.insert("annotations".into(), Value::Object(annotations));
    }
    if let Some(qos) = object(&spec, "qosControls")? {
        out.insert("qosControls".into(), qos_controls(qos)?);
    }
    Ok(Some(Value::Object(out)))
}

/// `ipNetworks` split into the IPv4 and IPv6 nets; one that does not parse is an error.
fn nets_by_family(ip_networks: &[String]) -> Result<(Vec<Value>, Vec<Value>), Reason> {
    let mut v4_nets = Vec::new();
    let mut v6_nets = Vec::new();
    for n in ip_networks {
        let cidr = parse_cidr_or_ip(n).ok_or_else(|| format!("invalid IP network {n}"))?;
        let net = Value::String(cidr.to_go_string());
        if cidr.version() == 4 {
            v4_nets.push(net);
        } else {
            v6_nets.push(net);
        }
    }
    Ok((v4_nets, v6_nets))
}

/// `ipNATs` as IPv4 and IPv6 `{int_ip, ext_ip}` pairs (by the internal address's family); a pair
/// with an address that does not parse is skipped.
fn nats_by_family(spec: &Value) -> Result<(Vec<Value>, Vec<Value>), Reason> {
    let mut v4_nat = Vec::new();
    let mut v6_nat = Vec::new();
    for nat in list(spec, "ipNATs")?.into_iter().flatten() {
        let (Some(int_ip), Some(ext_ip)) = (
            parse_ip(string(nat, "internalIP")?),
            parse_ip(string(nat, "externalIP")?),
        ) else {
            continue;
        };
        let mut m = Map::new();
        m.insert("int_ip".into(), Value::String(int_ip.to_string()));
        m.insert("ext_ip".into(), Value::String(ext_ip.to_string()));
        if int_ip.is_ipv4() {
            v4_nat.push(Value::Object(m));
        } else {
            v6_nat.push(Value::Object(m));
        }
    }
    Ok((v4_nat, v6_nat))
}

/// A gateway field (`ipv4Gateway`/`ipv6Gateway`) as an address, `None` when unset. Calico does
/// not check a gateway's family (nor does Typha's validation).
fn gateway_address(spec: &Value, field: &str) -> Result<Option<Value>, Reason> {
    let text = string(spec, field)?;
    if text.is_empty() {
        return Ok(None);
    }
    let cidr = parse_cidr_or_ip(text).ok_or_else(|| format!("invalid {field} {text}"))?;
    // `ParseCIDROrIP` returns the address as written (not masked) when given a CIDR.
    let ip = text
        .split_once('/')
        .and_then(|(ip, _)| parse_ip(ip))
        .unwrap_or(cidr.addr);
    Ok(Some(Value::String(ip.to_string())))
}

/// `mac` in Go's form, `null` when unset.
fn mac_value(spec: &Value) -> Result<Value, Reason> {
    Ok(match string(spec, "mac")? {
        "" => Value::Null,
        text => Value::String(parse_mac(text).ok_or_else(|| format!("invalid MAC {text}"))?),
    })
}

/// The endpoint's `ports` that have a name (unnamed ones are dropped).
fn named_ports(spec: &Value) -> Result<Vec<Value>, Reason> {
    let mut ports = Vec::new();
    for port in list(spec, "ports")?.into_iter().flatten() {
        let name = string(port, "name")?;
        if name.is_empty() {
            continue;
        }
        ports.push(endpoint_port(port, name)?);
    }
    Ok(ports)
}

/// The endpoint's own labels (not the namespace's or service account's, which its profiles
/// apply) plus its service account's name.
fn endpoint_labels(metadata: &Value, spec: &Value) -> Result<Map<String, Value>, Reason> {
    let mut labels = Map::new();
    for (k, v) in string_map(metadata, "labels")?.unwrap_or_default() {
        if !k.starts_with(NAMESPACE_LABEL_PREFIX) && !k.starts_with(SERVICE_ACCOUNT_LABEL_PREFIX) {
            labels.insert(k, v);
        }
    }
    let service_account = string(spec, "serviceAccountName")?;
    if !service_account.is_empty() {
        labels.insert(
            LABEL_SERVICE_ACCOUNT.into(),
            Value::String(service_account.into()),
        );
    }
    Ok(labels)
}

/// `allowSpoofedSourcePrefixes` as nets; one that does not parse is an error.
fn allowed_spoofed_source_ips(spec: &Value) -> Result<Vec<Value>, Reason> {
    let mut allowed = Vec::new();
    for prefix in strings(spec, "allowSpoofedSourcePrefixes")?.unwrap_or_default() {
        let cidr = parse_cidr_or_ip(&prefix)
            .ok_or_else(|| format!("failed to parse AllowSpoofedSourcePrefix ({prefix})"))?;
        allowed.push(Value::String(cidr.to_go_string()));
    }
    Ok(allowed)
}

/// A Go nil slice marshals as `null`.
fn nullable(items: Vec<Value>) -> Value {
    if items.is_empty() {
        Value::Null
    } else {
        Value::Array(items)
    }
}

/// One `model.EndpointPort`, with the v1 validator's checks (a v1 name, a port above 0, TCP,
/// UDP or SCTP by name).
fn endpoint_port(port: &Value, name: &str) -> Result<Value, Reason> {
    let protocol =
        super::v3read::protocol_v1(port, "protocol")?.unwrap_or(Value::String(String::new()));
    let number = match port.get("port") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| format!("invalid port {n}"))?,
        Some(_) => return Err("port: not a number".into()),
    };
    if !is_v1_name(name) {
        return Err(format!("invalid port name {name}"));
    }
    if number == 0 {
        return Err(format!("port {name} has no number"));
    }
    if !matches!(protocol.as_str(), Some("tcp" | "udp" | "sctp")) {
        return Err("EndpointPort protocol must be 'tcp' or 'udp' or 'sctp'.".into());
    }
    let mut m = Map::new();
    m.insert("name".into(), Value::String(name.into()));
    m.insert("protocol".into(), protocol);
    m.insert("port".into(), Value::from(number));
    Ok(Value::Object(m))
}

/// `v3.QoSControls` as Go re-marshals it: the known integer fields, zeros omitted, and the DSCP.
fn qos_controls(qos: &Map<String, Value>) -> Result<Value, Reason> {
    const FIELDS: [&str; 12] = [
        "ingressBandwidth",
        "ingressBurst",
        "ingressPeakrate",
        "ingressMinburst",
        "egressBandwidth",
        "egressBurst",
        "egressPeakrate",
        "egressMinburst",
        "ingressPacketRate",
        "ingressPacketBurst",
        "egressPacketRate",
        "egressPacketBurst",
    ];
    let mut out = Map::new();
    for field in FIELDS {
        match qos.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => {
                let n = n
                    .as_i64()
                    .ok_or_else(|| format!("{field}: not an integer"))?;
                if n != 0 {
                    out.insert(field.into(), Value::from(n));
                }
            }
            Some(_) => return Err(format!("{field}: not a number")),
        }
    }
    match qos.get("dscp") {
        None | Some(Value::Null) => {}
        Some(v) => {
            out.insert("dscp".into(), dscp_json(v)?);
        }
    }
    Ok(Value::Object(out))
}

/// A `numorstring.DSCP` decoded and re-marshalled: a number (or numeric string) as a number,
/// anything else as the string.
fn dscp_json(v: &Value) -> Result<Value, Reason> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .filter(|n| *n <= 255)
            .map(Value::from)
            .ok_or_else(|| "dscp out of range".into()),
        Value::String(s) => Ok(match s.parse::<u8>() {
            Ok(n) if s.bytes().all(|b| b.is_ascii_digit()) => Value::from(n),
            _ => Value::String(s.clone()),
        }),
        _ => Err("dscp: not a number or string".into()),
    }
}

/// The DSCP names Calico knows, with their values.
const DSCP_NAMES: [&str; 21] = [
    "DF", "EF", "AF11", "AF12", "AF13", "AF21", "AF22", "AF23", "AF31", "AF32", "AF33", "AF41",
    "AF42", "AF43", "CS0", "CS1", "CS2", "CS3", "CS4", "CS5", "CS6",
];

/// `handleQoSControlsAnnotations`: the HostEndpoint's DSCP annotation, if valid.
fn host_endpoint_qos(annotations: Option<&Map<String, Value>>) -> Option<Value> {
    let text = annotations?.get(ANNOTATION_QOS_EGRESS_DSCP)?.as_str()?;
    let dscp = if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() {
        Value::from(text.parse::<u8>().ok().filter(|n| *n <= 63)?)
    } else {
        let name = DSCP_NAMES.iter().find(|n| n.eq_ignore_ascii_case(text))?;
        Value::String((*name).into())
    };
    let mut m = Map::new();
    m.insert("dscp".into(), dscp);
    Some(Value::Object(m))
}

/// Go's `net.HardwareAddr.String()` of a MAC `net.ParseMAC` accepts (the 6-byte forms).
fn parse_mac(text: &str) -> Option<String> {
    let bytes: Vec<u8> = if text.contains(':') || text.contains('-') {
        let sep = if text.contains(':') { ':' } else { '-' };
        let parts: Vec<&str> = text.split(sep).collect();
        if parts.len() != 6 && parts.len() != 8 && parts.len() != 20 {
            return None;
        }
        parts
            .iter()
            .map(|p| {
                (p.len() == 2)
                    .then(|| u8::from_str_radix(p, 16).ok())
                    .flatten()
            })
            .collect::<Option<_>>()?
    } else if text.contains('.') {
        let parts: Vec<&str> = text.split('.').collect();
        if parts.len() != 3 && parts.len() != 4 && parts.len() != 10 {
            return None;
        }
        let mut out = Vec::new();
        for p in parts {
            if p.len() != 4 {
                return None;
            }
            out.push(u8::from_str_radix(&p[..2], 16).ok()?);
            out.push(u8::from_str_radix(&p[2..], 16).ok()?);
        }
        out
    } else {
        return None;
    };
    Some(
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

fn host_endpoint(resource: &Resource<'_>, deleted: bool) -> Converted {
    let v3 = match parse(resource) {
        Ok(v) => v,
        Err(error) => return failed(Vec::new(), error),
    };
    let node = spec(&v3)
        .and_then(|s| string(&s, "node").map(str::to_owned))
        .unwrap_or_default();
    let key = keys::host_endpoint(&node, resource.name);
    if deleted {
        return deletion(key);
    }
    match host_endpoint_value(&v3) {
        Ok(value) => update(resource, key, &value),
        Err(reason) => failed(vec![key], invalid(resource, reason)),
    }
}

/// `convertHostEndpointV3ToV1`, with the v1 validator's checks on the result.
fn host_endpoint_value(v3: &Value) -> Result<Value, Reason> {
    let metadata = super::v3read::metadata(v3)?;
    let spec = spec(v3)?;
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    let expected = strings(&spec, "expectedIPs")?.unwrap_or_default();
    for ip in expected.iter().filter_map(|ip| parse_ip(ip)) {
        if ip.is_ipv4() {
            v4.push(Value::String(ip.to_string()));
        } else {
            v6.push(Value::String(ip.to_string()));
        }
    }
    let mut ports = Vec::new();
    for port in list(&spec, "ports")?.into_iter().flatten() {
        ports.push(endpoint_port(port, string(port, "name")?)?);
    }
    let interface = string(&spec, "interfaceName")?;
    if !interface.is_empty()
        && interface != "*"
        && !(interface.len() <= 15
            && interface
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')))
    {
        return Err(format!("invalid interface name {interface}"));
    }
    let profiles = strings(&spec, "profiles")?;
    if let Some(bad) = profiles.iter().flatten().find(|p| !is_v1_name(p)) {
        return Err(format!("invalid profile name {bad}"));
    }
    let mut out = Map::new();
    put_str(&mut out, "name", interface);
    put_list(&mut out, "expected_ipv4_addrs", v4);
    put_list(&mut out, "expected_ipv6_addrs", v6);
    // `uniquelabels.Map` is a struct: `omitempty` never drops it, and nil stays `null`.
    out.insert(
        "labels".into(),
        string_map(&metadata, "labels")?.map_or(Value::Null, Value::Object),
    );
    put_list(
        &mut out,
        "profile_ids",
        profiles.into_iter().flatten().map(Value::String).collect(),
    );
    put_list(&mut out, "ports", ports);
    if let Some(qos) = host_endpoint_qos(string_map(&metadata, "annotations")?.as_ref()) {
        out.insert("qosControls".into(), qos);
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(kind: &str, ns: &str, name: &str, value: Value, deleted: bool) -> Converted {
        let bytes = serde_json::to_vec(&value).unwrap();
        convert(
            Syncer::Felix,
            Dialect::V331,
            &Resource {
                kind,
                namespace: ns,
                name,
                value: &bytes,
                revision: "7",
            },
            deleted,
        )
        .unwrap()
    }

    #[test]
    fn workload_endpoint_names_split_on_single_dashes() {
        assert_eq!(
            dash_separated_parts("node--1-k8s-pod--a-eth0"),
            ["node-1", "k8s", "pod-a", "eth0"]
        );
        assert_eq!(
            workload_endpoint_key("ns1", "node1-k8s-pod--a-eth0").as_deref(),
            Some("/calico/v1/host/node1/workload/k8s/ns1%2fpod-a/endpoint/eth0")
        );
        assert_eq!(workload_endpoint_key("ns1", "node1-k8s-pod"), None);
        assert_eq!(workload_endpoint_key("", "node1-k8s-pod-eth0"), None);
    }

    #[test]
    fn workload_endpoint_value_is_felixs() {
        let wep = json!({
            "metadata": {"name": "node1-k8s-pod--a-eth0", "namespace": "ns1",
                "labels": {"app": "web", "pcns.team": "x", "pcsa.role": "y",
                           "projectcalico.org/namespace": "ns1"}},
            "spec": {"node": "node1", "orchestrator": "k8s", "pod": "pod-a", "endpoint": "eth0",
                "ipNetworks": ["10.0.0.5/32", "fd00::5"], "interfaceName": "cali123",
                "profiles": ["kns.ns1", "ksa.ns1.default"], "serviceAccountName": "default",
                "mac": "EE:EE:EE:EE:EE:EE",
                "ports": [{"name": "http", "protocol": "TCP", "port": 80}, {"name": "", "protocol": "TCP", "port": 81}]}
        });
        let out = run(
            WORKLOAD_ENDPOINT,
            "ns1",
            "node1-k8s-pod--a-eth0",
            wep,
            false,
        );
        assert!(out.error.is_none(), "{:?}", out.error);
        let [update] = out.updates.as_slice() else {
            panic!("{out:?}")
        };
        let value: Value = serde_json::from_slice(update.value.as_ref().unwrap()).unwrap();
        assert_eq!(
            value,
            json!({
                "state": "active", "name": "cali123", "active_instance_id": "",
                "mac": "ee:ee:ee:ee:ee:ee",
                "profile_ids": ["kns.ns1", "ksa.ns1.default"],
                "ipv4_nets": ["10.0.0.5/32"], "ipv6_nets": ["fd00::5/128"],
                "labels": {"app": "web", "projectcalico.org/namespace": "ns1",
                           "projectcalico.org/serviceaccount": "default"},
                "ports": [{"name": "http", "protocol": "tcp", "port": 80}]
            })
        );
    }

    #[test]
    fn workload_endpoints_without_ips_or_interface_are_deletions() {
        let wep = json!({"spec": {"interfaceName": "cali1"}});
        let out = run(WORKLOAD_ENDPOINT, "ns1", "n-k8s-p-eth0", wep, false);
        assert_eq!(out.updates[0].value, None);
        let wep = json!({"spec": {"ipNetworks": ["10.0.0.1"]}});
        let out = run(WORKLOAD_ENDPOINT, "ns1", "n-k8s-p-eth0", wep, false);
        assert_eq!(out.updates[0].value, None);
    }

    #[test]
    fn host_endpoint_key_is_node_and_name() {
        let hep = json!({"metadata": {"annotations": {"qos.projectcalico.org/dscp": "af11"}},
            "spec": {"node": "node1", "interfaceName": "eth0", "expectedIPs": ["10.0.0.1", "fd00::1"]}});
        let out = run(HOST_ENDPOINT, "", "hep1", hep.clone(), false);
        assert_eq!(out.updates[0].key, "/calico/v1/host/node1/endpoint/hep1");
        let value: Value = serde_json::from_slice(out.updates[0].value.as_ref().unwrap()).unwrap();
        assert_eq!(
            value,
            json!({"name": "eth0", "expected_ipv4_addrs": ["10.0.0.1"], "labels": null,
                   "expected_ipv6_addrs": ["fd00::1"], "qosControls": {"dscp": "AF11"}})
        );
        let out = run(HOST_ENDPOINT, "", "hep1", hep, true);
        assert_eq!(out.updates[0].value, None);
    }
}
