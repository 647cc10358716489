//! A Kubernetes NetworkPolicy's spec → the Calico NetworkPolicy spec Calico's Kubernetes
//! datastore makes of it (`conversion.K8sNetworkPolicyToCalico`), for the NetworkPolicy
//! processor to take from there.
//!
//! The shape of the result is Calico's, not the obvious one: order 1000, the pod selector ANDed
//! with `projectcalico.org/orchestrator == 'k8s'`, one Allow rule per (protocol, peer) pair with
//! the protocol's ports merged into ranges, an empty namespace selector meaning all namespaces,
//! and `Ingress` as the only type when the policy names none. A rule whose port cannot be parsed
//! fails the whole policy: Calico's converter reports it (meaning to drop just that rule), but its
//! callers — the Kubernetes datastore's NetworkPolicy client and the staged processor — do not
//! recognise the error and drop the policy (the Kubernetes API validates ports, so this only
//! matters for hand-written objects).

use serde_json::{Map, Value, json};

use super::super::v3read::{Port, Reason, list, object, string, strings};

/// The label every Kubernetes pod's endpoint carries with value `k8s`.
const LABEL_ORCHESTRATOR: &str = "projectcalico.org/orchestrator";

/// The v3 NetworkPolicy spec for a Kubernetes NetworkPolicy spec.
pub(super) fn to_calico_spec(spec: &Value) -> Result<Value, Reason> {
    let mut ingress = Vec::new();
    for rule in list(spec, "ingress")?.into_iter().flatten() {
        ingress.extend(rule_to_calico(rule, "from", true)?);
    }
    let mut egress = Vec::new();
    for rule in list(spec, "egress")?.into_iter().flatten() {
        egress.extend(rule_to_calico(rule, "to", false)?);
    }
    let policy_types = strings(spec, "policyTypes")?.unwrap_or_default();
    let mut types = Vec::new();
    if policy_types.iter().any(|t| t == "Ingress") {
        types.push(json!("Ingress"));
    }
    if policy_types.iter().any(|t| t == "Egress") {
        types.push(json!("Egress"));
    }
    if types.is_empty() {
        types.push(json!("Ingress"));
    }
    let pod_selector = object(spec, "podSelector")?.map(|m| Value::Object(m.clone()));
    let mut out = Map::new();
    out.insert("order".into(), json!(1000));
    out.insert(
        "selector".into(),
        Value::String(selector_to_calico(pod_selector.as_ref(), true)?),
    );
    if !ingress.is_empty() {
        out.insert("ingress".into(), Value::Array(ingress));
    }
    if !egress.is_empty() {
        out.insert("egress".into(), Value::Array(egress));
    }
    out.insert("types".into(), Value::Array(types));
    Ok(Value::Object(out))
}

/// `k8sSelectorToCalico`: a label selector in Calico's syntax; `pod` selectors are ANDed with the
/// orchestrator label, an empty namespace selector is `all()`.
fn selector_to_calico(selector: Option<&Value>, pod: bool) -> Result<String, Reason> {
    let mut parts = Vec::new();
    if pod {
        parts.push(format!("{LABEL_ORCHESTRATOR} == 'k8s'"));
    }
    let Some(selector) = selector else {
        return Ok(parts.join(" && "));
    };
    let match_labels =
        super::super::v3read::string_map(selector, "matchLabels")?.unwrap_or_default();
    let expressions = list(selector, "matchExpressions")?;
    if !pod && match_labels.is_empty() && expressions.is_none_or(|e| e.is_empty()) {
        return Ok("all()".into());
    }
    // serde_json's map is ordered by key, as Calico sorts them.
    for (k, v) in &match_labels {
        parts.push(format!("{k} == '{}'", v.as_str().unwrap_or_default()));
    }
    for e in expressions.into_iter().flatten() {
        let key = string(e, "key")?;
        let values = strings(e, "values")?.unwrap_or_default().join("', '");
        match string(e, "operator")? {
            "In" => parts.push(format!("{key} in {{ '{values}' }}")),
            "NotIn" => parts.push(format!("{key} not in {{ '{values}' }}")),
            "Exists" => parts.push(format!("has({key})")),
            "DoesNotExist" => parts.push(format!("! has({key})")),
            _ => {}
        }
    }
    Ok(parts.join(" && "))
}

/// A peer as rule fields: selector, namespace selector, nets, not-nets.
#[derive(Default)]
struct Peer {
    selector: String,
    namespace_selector: String,
    nets: Vec<String>,
    not_nets: Vec<String>,
}

/// `k8sPeerToCalicoFields`.
fn peer_to_calico(peer: &Value) -> Result<Peer, Reason> {
    if let Some(block) = object(peer, "ipBlock")? {
        let block = Value::Object(block.clone());
        let mut out = Peer::default();
        let Some(cidr) = super::super::keys::Cidr::parse(string(&block, "cidr")?) else {
            return Ok(out);
        };
        out.nets.push(cidr.to_go_string());
        for except in strings(&block, "except")?.unwrap_or_default() {
            let Some(cidr) = super::super::keys::Cidr::parse(&except) else {
                return Ok(out);
            };
            out.not_nets.push(cidr.to_go_string());
        }
        return Ok(out);
    }
    let pod = object(peer, "podSelector")?.map(|m| Value::Object(m.clone()));
    let ns = object(peer, "namespaceSelector")?.map(|m| Value::Object(m.clone()));
    Ok(Peer {
        selector: selector_to_calico(pod.as_ref(), true)?,
        namespace_selector: match ns {
            Some(ns) => selector_to_calico(Some(&ns), false)?,
            None => String::new(),
        },
        ..Peer::default()
    })
}

/// Calico's protocol names, matched case-insensitively as `ProtocolFromString` does.
fn canonical_protocol(p: &str) -> String {
    const NAMES: [&str; 6] = ["UDP", "TCP", "ICMP", "ICMPv6", "SCTP", "UDPLite"];
    NAMES
        .iter()
        .find(|n| n.eq_ignore_ascii_case(p))
        .map_or_else(|| p.to_owned(), |n| (*n).to_owned())
}

/// One Kubernetes port: its protocol, and its ports (`None`: all ports).
fn port_to_calico(port: &Value) -> Result<(String, Option<Vec<Port>>), Reason> {
    let protocol = match string(port, "protocol")? {
        "" => "TCP".to_owned(),
        p => canonical_protocol(p),
    };
    let text = match port.get("port") {
        None | Some(Value::Null) => return Ok((protocol, None)),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("port: not a number or string".into()),
    };
    let text = match port.get("endPort") {
        None | Some(Value::Null) => text,
        Some(Value::Number(n)) => format!("{text}:{n}"),
        Some(_) => return Err("endPort: not a number".into()),
    };
    let parsed = Port::parse(&text).map_err(|e| format!("failed to parse k8s port: {e}"))?;
    Ok((protocol, Some(vec![parsed])))
}

/// `k8sRuleToCalico`: one rule per (protocol, peer), protocols in sorted order.
fn rule_to_calico(rule: &Value, peers_field: &str, ingress: bool) -> Result<Vec<Value>, Reason> {
    let peers: Vec<Option<Peer>> = match list(rule, peers_field)? {
        Some(p) if !p.is_empty() => p
            .iter()
            .map(|p| peer_to_calico(p).map(Some))
            .collect::<Result<_, _>>()?,
        _ => vec![None],
    };
    // Protocol → ports (`None`: all ports); the empty protocol is "any protocol".
    let mut by_protocol: Vec<(String, Option<Vec<Port>>)> = Vec::new();
    match list(rule, "ports")? {
        Some(ports) if !ports.is_empty() => {
            for port in ports {
                let (protocol, ports) = port_to_calico(port)?;
                match by_protocol.iter_mut().find(|(p, _)| *p == protocol) {
                    None => by_protocol.push((protocol, ports)),
                    Some((_, existing)) => match ports {
                        None => *existing = None,
                        Some(ports) => {
                            if let Some(existing) = existing.as_mut().filter(|e| !e.is_empty()) {
                                existing.extend(ports);
                            }
                        }
                    },
                }
            }
        }
        _ => by_protocol.push((String::new(), None)),
    }
    by_protocol.sort_by(|a, b| a.0.cmp(&b.0));

    let mut rules = Vec::new();
    for (protocol, ports) in by_protocol {
        let ports: Vec<Value> = simplify_ports(ports.unwrap_or_default())
            .iter()
            .map(Port::to_json)
            .collect();
        for peer in &peers {
            let mut entity = Map::new();
            if let Some(peer) = peer {
                if !peer.selector.is_empty() {
                    entity.insert("selector".into(), json!(peer.selector));
                }
                if !peer.namespace_selector.is_empty() {
                    entity.insert("namespaceSelector".into(), json!(peer.namespace_selector));
                }
                if !peer.nets.is_empty() {
                    entity.insert("nets".into(), json!(peer.nets));
                }
                if !peer.not_nets.is_empty() {
                    entity.insert("notNets".into(), json!(peer.not_nets));
                }
            }
            let mut r = Map::new();
            r.insert("action".into(), json!("Allow"));
            if !protocol.is_empty() {
                r.insert("protocol".into(), json!(protocol));
            }
            if ingress {
                r.insert("source".into(), Value::Object(entity));
                let mut dst = Map::new();
                if !ports.is_empty() {
                    dst.insert("ports".into(), Value::Array(ports.clone()));
                }
                r.insert("destination".into(), Value::Object(dst));
            } else {
                if !ports.is_empty() {
                    entity.insert("ports".into(), Value::Array(ports.clone()));
                }
                r.insert("destination".into(), Value::Object(entity));
            }
            rules.push(Value::Object(r));
        }
    }
    Ok(rules)
}

/// `SimplifyPorts`: named ports first, as given; numeric ports merged into sorted ranges. With at
/// most one numeric port number in all, the list is returned as it was. Calico expands every
/// range into its port numbers first; merging the ranges gives the same result without the
/// 65536-entry lists a few wide ranges would cost.
fn simplify_ports(ports: Vec<Port>) -> Vec<Port> {
    if ports.len() <= 1 {
        return ports;
    }
    let mut out = Vec::new();
    let mut ranges: Vec<(u16, u16)> = Vec::new();
    let mut count = 0u32;
    for port in &ports {
        match port {
            Port::Named(_) => out.push(port.clone()),
            Port::Range(lo, hi) if lo <= hi => {
                ranges.push((*lo, *hi));
                count = count.saturating_add(u32::from(*hi - *lo) + 1);
            }
            Port::Range(..) => {}
        }
    }
    if count <= 1 {
        return ports;
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::new();
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    out.extend(merged.into_iter().map(|(lo, hi)| Port::Range(lo, hi)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_policy_becomes_calicos() {
        let spec = json!({
            "podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{
                "from": [{"namespaceSelector": {}}, {"ipBlock": {"cidr": "10.1.2.3/16", "except": ["10.1.5.0/24"]}}],
                "ports": [{"port": 5432}, {"port": 5433}, {"protocol": "UDP", "port": "dns"}]
            }],
            "policyTypes": ["Ingress", "Egress"]
        });
        let calico = to_calico_spec(&spec).unwrap();
        assert_eq!(
            calico,
            json!({
                "order": 1000,
                "selector": "projectcalico.org/orchestrator == 'k8s' && app == 'db'",
                "types": ["Ingress", "Egress"],
                "ingress": [
                    {"action": "Allow", "protocol": "TCP",
                     "source": {"selector": "projectcalico.org/orchestrator == 'k8s'", "namespaceSelector": "all()"},
                     "destination": {"ports": ["5432:5433"]}},
                    {"action": "Allow", "protocol": "TCP",
                     "source": {"nets": ["10.1.0.0/16"], "notNets": ["10.1.5.0/24"]},
                     "destination": {"ports": ["5432:5433"]}},
                    {"action": "Allow", "protocol": "UDP",
                     "source": {"selector": "projectcalico.org/orchestrator == 'k8s'", "namespaceSelector": "all()"},
                     "destination": {"ports": ["dns"]}},
                    {"action": "Allow", "protocol": "UDP",
                     "source": {"nets": ["10.1.0.0/16"], "notNets": ["10.1.5.0/24"]},
                     "destination": {"ports": ["dns"]}}
                ]
            })
        );
    }

    #[test]
    fn port_ranges_merge_as_calicos_expansion_does() {
        let r = |lo, hi| Port::Range(lo, hi);
        assert_eq!(
            simplify_ports(vec![
                r(90, 95),
                Port::Named("x".into()),
                r(80, 80),
                r(81, 91),
                r(97, 97)
            ]),
            vec![Port::Named("x".into()), r(80, 95), r(97, 97)]
        );
        assert_eq!(
            simplify_ports(vec![r(1, 65535), r(1, 65535)]),
            vec![r(1, 65535)]
        );
        // One port number in all: the list as it was.
        let one = vec![Port::Named("a".into()), r(5, 5)];
        assert_eq!(simplify_ports(one.clone()), one);
    }

    #[test]
    fn no_types_means_ingress_and_empty_rules_allow_all() {
        let calico = to_calico_spec(&json!({"podSelector": {}, "egress": [{}]})).unwrap();
        assert_eq!(calico["types"], json!(["Ingress"]));
        assert_eq!(
            calico["egress"],
            json!([{"action": "Allow", "destination": {}}])
        );
    }
}
