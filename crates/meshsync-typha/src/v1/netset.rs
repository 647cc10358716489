//! NetworkSets and GlobalNetworkSets: named groups of CIDRs that rules select by label.
//!
//! Both become a `NetworkSetKey`: `<ns>/<name>` for a namespaced set, the name for a global one.
//! A namespaced set is given its namespace the way endpoints are — the
//! `projectcalico.org/namespace` label and the namespace's profile `kns.<ns>` (so it inherits the
//! namespace's labels) — which a namespaced policy's selectors rely on.

use serde_json::{Map, Value};

use super::emit::one_key;
use super::keys;
use super::rules::LABEL_NAMESPACE;
use super::v3read::{Reason, metadata, parse_cidr_or_ip, spec, string_map, strings};
use super::{Converted, Dialect, Resource, Syncer};

const NETWORK_SET: &str = "NetworkSet";
const GLOBAL_NETWORK_SET: &str = "GlobalNetworkSet";

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
        NETWORK_SET => {
            let ns = resource.namespace;
            let key = keys::network_set(&format!("{ns}/{}", resource.name));
            Some(one_key(resource, key, deleted, |v3| {
                network_set_value(v3, ns).map(Some)
            }))
        }
        GLOBAL_NETWORK_SET => {
            let key = keys::network_set(resource.name);
            Some(one_key(resource, key, deleted, |v3| {
                global_network_set_value(v3).map(Some)
            }))
        }
        _ => None,
    }
}

/// `convertNetworkSetV2ToV1Value`. Calico dereferences an unparsable CIDR (and panics); here it
/// is an invalid value instead.
fn network_set_value(v3: &Value, ns: &str) -> Result<Value, Reason> {
    let mut nets = Vec::new();
    for n in strings(&spec(v3)?, "nets")?.unwrap_or_default() {
        let cidr = parse_cidr_or_ip(&n).ok_or_else(|| format!("invalid CIDR {n}"))?;
        nets.push(Value::String(cidr.to_go_string()));
    }
    let mut labels = string_map(&metadata(v3)?, "labels")?.unwrap_or_default();
    labels.insert(LABEL_NAMESPACE.into(), Value::String(ns.into()));
    let mut out = Map::new();
    if !nets.is_empty() {
        out.insert("nets".into(), Value::Array(nets));
    }
    out.insert("labels".into(), Value::Object(labels));
    out.insert(
        "profile_ids".into(),
        Value::Array(vec![Value::String(format!("kns.{ns}"))]),
    );
    Ok(Value::Object(out))
}

/// `convertGlobalNetworkSetV3ToV1`: unparsable CIDRs are skipped.
fn global_network_set_value(v3: &Value) -> Result<Value, Reason> {
    let nets: Vec<Value> = strings(&spec(v3)?, "nets")?
        .unwrap_or_default()
        .iter()
        .filter_map(|n| parse_cidr_or_ip(n))
        .map(|c| Value::String(c.to_go_string()))
        .collect();
    let mut out = Map::new();
    if !nets.is_empty() {
        out.insert("nets".into(), Value::Array(nets));
    }
    // `uniquelabels.Map` is a struct: never omitted, nil is `null`.
    out.insert(
        "labels".into(),
        string_map(&metadata(v3)?, "labels")?.map_or(Value::Null, Value::Object),
    );
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(kind: &str, ns: &str, name: &str, value: Value) -> Value {
        let bytes = serde_json::to_vec(&value).unwrap();
        let out = convert(
            Syncer::Felix,
            Dialect::V331,
            &Resource {
                kind,
                namespace: ns,
                name,
                value: &bytes,
                revision: "1",
            },
            false,
        )
        .unwrap();
        let [update] = out.updates.as_slice() else {
            panic!("{out:?}")
        };
        json!({
            "key": update.key,
            "value": update.value.as_ref().map(|v| serde_json::from_slice::<Value>(v).unwrap())
        })
    }

    #[test]
    fn namespaced_sets_carry_their_namespace() {
        let got = run(
            NETWORK_SET,
            "ns1",
            "set1",
            json!({"metadata": {"labels": {"a": "b"}}, "spec": {"nets": ["10.1.2.3/24", "fd00::1"]}}),
        );
        assert_eq!(
            got,
            json!({"key": "/calico/v1/netset/ns1%2fset1", "value": {
                "nets": ["10.1.2.0/24", "fd00::1/128"],
                "labels": {"a": "b", "projectcalico.org/namespace": "ns1"},
                "profile_ids": ["kns.ns1"]}})
        );
    }

    #[test]
    fn global_sets_skip_bad_cidrs() {
        let got = run(
            GLOBAL_NETWORK_SET,
            "",
            "gset",
            json!({"spec": {"nets": ["10.0.0.0/8", "bogus"]}}),
        );
        assert_eq!(
            got,
            json!({"key": "/calico/v1/netset/gset", "value": {"nets": ["10.0.0.0/8"], "labels": null}})
        );
    }
}
