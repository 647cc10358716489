//! IP pools, IPAM blocks and block affinities: where pod addresses come from and which host has
//! which block.
//!
//! - IPPool (felix, bgp, tunnel-ip-allocation): Calico's IP pool processor turns the v3 pool into
//!   the v1 `model.IPPool` under `/calico/v1/ipam/v<4|6>/pool/<cidr>` — the key is the *CIDR*,
//!   not the name. Calico keeps state there that a stateless conversion cannot: when two pools
//!   have the same CIDR only the first by name is sent (and deleting it sends the other), and a
//!   pool whose CIDR changes deletes its old key first. Here each pool maps to its own key; the
//!   caller must diff the keys of a resource's old and new versions to delete a changed CIDR.
//! - IPAMBlock (felix): passed through by the syncer as the v1 `model.AllocationBlock` under
//!   `/calico/ipam/v2/assignment/ipv<4|6>/block/<cidr>`. The cache holds either Calico's etcd
//!   form (that JSON itself) or the Kubernetes datastore's IPAMBlock resource (the same fields
//!   under `spec`), which Calico's KDD backend converts (`IPAMBlockV3toV1`); both are re-marshalled
//!   as Go's struct does (every field written, `null` for nil).
//! - BlockAffinity (bgp): the KDD backend's v1 `model.BlockAffinity` (`state`, `deleted`) under
//!   `/calico/ipam/v2/<host|virtual>/<node>/ipv<4|6>/block/<cidr>`. Only the BlockAffinity
//!   resource form is converted: the etcd driver turns Calico's etcd affinities (stored under that
//!   v1 path) into it at ingest, as the Kubernetes datastore gives them.
//!
//! In every case the key comes from the value (for a deletion, the last value), so a value whose
//! CIDR does not parse gives no key at all: Calico's backend cannot decode it either.

use std::net::IpAddr;

use serde_json::{Map, Value, json};

use super::emit::{deletion, failed, invalid, parse, update};
use super::keys::Cidr;
use super::v3read::{Reason, parse_ip};
use super::{Converted, Dialect, Resource, Syncer, keys};

const IP_POOL: &str = "IPPool";
const IPAM_BLOCK: &str = "IPAMBlock";
const BLOCK_AFFINITY: &str = "BlockAffinity";

pub(super) fn convert(
    syncer: Syncer,
    _dialect: Dialect,
    resource: &Resource<'_>,
    deleted: bool,
) -> Option<Converted> {
    match (syncer, resource.kind) {
        (Syncer::Felix | Syncer::Bgp | Syncer::TunnelIpAllocation, IP_POOL) => {
            Some(keyed_by_value(resource, deleted, ip_pool))
        }
        (Syncer::Felix, IPAM_BLOCK) => Some(keyed_by_value(resource, deleted, block)),
        (Syncer::Bgp, BLOCK_AFFINITY) => Some(keyed_by_value(resource, deleted, block_affinity)),
        _ => None,
    }
}

/// A resource whose one key comes from its value: `convert` gives the key and the v1 value.
fn keyed_by_value(
    resource: &Resource<'_>,
    is_deleted: bool,
    convert: fn(&Value) -> Result<(String, Value), Reason>,
) -> Converted {
    let v3 = match parse(resource) {
        Ok(v) => v,
        Err(error) => return failed(Vec::new(), error),
    };
    match convert(&v3) {
        Ok((key, _)) if is_deleted => deletion(key),
        Ok((key, value)) => update(resource, key, &value),
        Err(reason) => failed(Vec::new(), invalid(resource, reason)),
    }
}

/// The object at `v[name]` (`None` for absent or `null`).
fn object<'a>(v: &'a Value, name: &str) -> Result<Option<&'a Map<String, Value>>, Reason> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(format!("{name}: not an object")),
    }
}

/// The string at `m[name]` (absent or `null`: `""`).
fn text<'a>(m: &'a Map<String, Value>, name: &str) -> Result<&'a str, Reason> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("{name}: not a string")),
    }
}

/// The bool at `m[name]` (absent or `null`: false).
fn flag(m: &Map<String, Value>, name: &str) -> Result<bool, Reason> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("{name}: not a bool")),
    }
}

fn cidr(text: &str) -> Result<Cidr, Reason> {
    Cidr::parse(text).ok_or_else(|| format!("invalid CIDR address: {text}"))
}

/// How Calico's `net.IPNet` decodes from JSON (`ParseCIDROrIP`, keeping the address as
/// written): `10.0.0.7/26` stays that, a lone address is a /32 or /128.
fn ip_net(text: &str) -> Result<Cidr, Reason> {
    let invalid = || format!("invalid CIDR address: {text}");
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, _)) => (addr, Cidr::parse(text).ok_or_else(invalid)?.prefix),
        None => (text, 0),
    };
    let addr = parse_ip(addr).ok_or_else(invalid)?;
    let prefix = match (text.contains('/'), addr) {
        (true, _) => prefix,
        (false, IpAddr::V4(_)) => 32,
        (false, IpAddr::V6(_)) => 128,
    };
    Ok(Cidr { addr, prefix })
}

/// `IPPoolV3ToV1`: the pool's CIDR key and its `model.IPPool`.
fn ip_pool(v3: &Value) -> Result<(String, Value), Reason> {
    let empty = Map::new();
    let spec = object(v3, "spec")?.unwrap_or(&empty);
    let pool = cidr(text(spec, "cidr")?)?;
    let (ipip, ipip_mode) = match text(spec, "ipipMode")? {
        "Always" => ("tunl0", "always"),
        "CrossSubnet" => ("tunl0", "cross-subnet"),
        _ => ("", ""),
    };
    let vxlan_mode = match text(spec, "vxlanMode")? {
        "Always" => "always",
        "CrossSubnet" => "cross-subnet",
        _ => "",
    };
    let assignment_mode = match spec.get("assignmentMode") {
        None | Some(Value::Null) => "Automatic",
        Some(Value::String(s)) => s,
        Some(_) => return Err("assignmentMode: not a string".into()),
    };
    let disabled = flag(spec, "disabled")?;
    let key = keys::ip_pool(&pool.to_go_string()).ok_or("unrenderable pool CIDR")?;
    Ok((
        key,
        json!({
            "cidr": pool.to_go_string(),
            "ipip": ipip,
            "ipip_mode": ipip_mode,
            "vxlan_mode": vxlan_mode,
            "masquerade": flag(spec, "natOutgoing")?,
            "ipam": !disabled,
            "disabled": disabled,
            "disableBGPExport": flag(spec, "disableBGPExport")?,
            "assignment_mode": assignment_mode,
        }),
    ))
}

/// An IPAM block's key and its `model.AllocationBlock`, from either form the cache holds.
fn block(value: &Value) -> Result<(String, Value), Reason> {
    // The IPAMBlock resource keeps the block's fields under `spec`; Calico's etcd layout stores
    // them at the top.
    let resource_form = value.get("kind").is_some_and(|k| k == IPAM_BLOCK);
    let fields = if resource_form {
        object(value, "spec")?.cloned().unwrap_or_default()
    } else {
        value
            .as_object()
            .cloned()
            .ok_or("an IPAM block is an object")?
    };
    let block = if resource_form {
        cidr(text(&fields, "cidr")?)?
    } else {
        ip_net(text(&fields, "cidr")?)?
    };
    let key = keys::block(&block.to_go_string()).ok_or("unrenderable block CIDR")?;
    let attributes = block_attributes(&fields, resource_form)?;
    let sequence_number = match fields.get("sequenceNumber") {
        None | Some(Value::Null) => json!(0),
        Some(Value::Number(n)) if n.is_u64() => json!(n),
        Some(_) => return Err("sequenceNumber: not a uint64".into()),
    };
    let sequence_numbers = sequence_numbers_for_allocation(&fields)?;
    let mut out = Map::new();
    out.insert("cidr".into(), json!(block.to_go_string()));
    out.insert("affinity".into(), nullable_string(&fields, "affinity")?);
    out.insert(
        "allocations".into(),
        int_list(&fields, "allocations", true)?,
    );
    out.insert(
        "unallocated".into(),
        int_list(&fields, "unallocated", false)?,
    );
    out.insert("attributes".into(), attributes);
    out.insert("sequenceNumber".into(), sequence_number);
    out.insert("sequenceNumberForAllocation".into(), sequence_numbers);
    out.insert("deleted".into(), json!(flag(&fields, "deleted")?));
    // The deprecated `hostAffinity` (etcd form only; `omitempty`).
    if !resource_form && let Value::String(host) = nullable_string(&fields, "hostAffinity")? {
        out.insert("hostAffinity".into(), json!(host));
    }
    Ok((key, Value::Object(out)))
}

/// A block's `*string` field: `null` when unset.
fn nullable_string(fields: &Map<String, Value>, name: &str) -> Result<Value, Reason> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(s @ Value::String(_)) => Ok(s.clone()),
        Some(_) => Err(format!("{name}: not a string")),
    }
}

/// A block's list of ints (`allocations` holds `*int`s, so `null` items stay there; elsewhere
/// they are 0); `null` when unset.
fn int_list(
    fields: &Map<String, Value>,
    name: &str,
    nullable_items: bool,
) -> Result<Value, Reason> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::Null if nullable_items => Ok(Value::Null),
                Value::Null => Ok(json!(0)),
                Value::Number(n) if n.is_i64() => Ok(i.clone()),
                _ => Err(format!("{name}: not a list of ints")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Some(_) => Err(format!("{name}: not a list")),
    }
}

/// A `map[string]string` (`null` values become `""`); `null` when unset.
fn nullable_string_map(v: Option<&Value>, name: &str) -> Result<Value, Reason> {
    match v {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(_) => Ok((k.clone(), v.clone())),
                Value::Null => Ok((k.clone(), json!(""))),
                _ => Err(format!("{name}.{k}: not a string")),
            })
            .collect::<Result<Map<_, _>, _>>()
            .map(Value::Object),
        Some(_) => Err(format!("{name}: not an object")),
    }
}

/// The block's `attributes`: `{handle_id, secondary}` per allocation attribute.
fn block_attributes(fields: &Map<String, Value>, resource_form: bool) -> Result<Value, Reason> {
    Ok(match fields.get("attributes") {
        // The KDD conversion always builds a list; the etcd form keeps a nil one.
        None | Some(Value::Null) if resource_form => json!([]),
        None | Some(Value::Null) => Value::Null,
        Some(Value::Array(items)) => items
            .iter()
            .map(|a| {
                if !a.is_object() && !a.is_null() {
                    return Err("attributes: not a list of objects".to_owned());
                }
                let handle = match a.get("handle_id") {
                    None | Some(Value::Null) => Value::Null,
                    Some(s @ Value::String(_)) => s.clone(),
                    Some(_) => return Err("attributes.handle_id: not a string".into()),
                };
                Ok(json!({
                    "handle_id": handle,
                    "secondary": nullable_string_map(a.get("secondary"), "attributes.secondary")?,
                }))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array)?,
        Some(_) => return Err("attributes: not a list".into()),
    })
}

/// The block's `sequenceNumberForAllocation` (`map[string]uint64`); `null` when unset.
fn sequence_numbers_for_allocation(fields: &Map<String, Value>) -> Result<Value, Reason> {
    Ok(match fields.get("sequenceNumberForAllocation") {
        None | Some(Value::Null) => Value::Null,
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::Number(n) if n.is_u64() => Ok((k.clone(), v.clone())),
                Value::Null => Ok((k.clone(), json!(0))),
                _ => Err(format!("sequenceNumberForAllocation.{k}: not a uint64")),
            })
            .collect::<Result<Map<_, _>, _>>()
            .map(Value::Object)?,
        Some(_) => return Err("sequenceNumberForAllocation: not an object".into()),
    })
}

/// Go's `strconv.ParseBool`.
fn go_parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The KDD block-affinity client's `toV1`: key from `spec.{type,node,cidr}`, value
/// `{state, deleted}` (`spec.deleted` is a string there).
fn block_affinity(v3: &Value) -> Result<(String, Value), Reason> {
    if v3.get("kind").and_then(Value::as_str) != Some(BLOCK_AFFINITY) {
        return Err("a block affinity must be a BlockAffinity resource".into());
    }
    let empty = Map::new();
    let spec = object(v3, "spec")?.unwrap_or(&empty);
    let block = cidr(text(spec, "cidr")?)?;
    let deleted = match text(spec, "deleted")? {
        "" => false,
        t => {
            go_parse_bool(t).ok_or_else(|| format!("Failed to parse deleted value as bool: {t}"))?
        }
    };
    let node = text(spec, "node")?;
    if node.is_empty() {
        // `BlockAffinityKey` needs a host: Typha cannot serialize the key and drops the update.
        return Err("block affinity without a node".into());
    }
    let key = keys::block_affinity(text(spec, "type")?, node, &block.to_go_string())
        .ok_or("unrenderable block CIDR")?;
    Ok((
        key,
        json!({"state": text(spec, "state")?, "deleted": deleted}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_key_by_cidr_and_map_modes() {
        let (key, value) = ip_pool(
            &json!({"spec": {"cidr": "fd00:10::/64", "ipipMode": "Never",
            "vxlanMode": "CrossSubnet", "natOutgoing": true, "disabled": true}}),
        )
        .unwrap();
        assert_eq!(key, "/calico/v1/ipam/v6/pool/fd00:10::-64");
        assert_eq!(
            value,
            json!({"cidr": "fd00:10::/64", "ipip": "", "ipip_mode": "", "vxlan_mode": "cross-subnet",
                "masquerade": true, "ipam": false, "disabled": true, "disableBGPExport": false,
                "assignment_mode": "Automatic"})
        );
        assert!(ip_pool(&json!({"spec": {"cidr": "10.0.0.0/33"}})).is_err());
    }

    #[test]
    fn affinities_parse_deleted_like_go() {
        let v = |deleted: &str| {
            block_affinity(
                &json!({"kind": "BlockAffinity", "spec": {"state": "confirmed",
                "node": "n1", "cidr": "10.0.1.0/26", "deleted": deleted}}),
            )
        };
        assert_eq!(
            v("True").unwrap().1,
            json!({"state": "confirmed", "deleted": true})
        );
        assert_eq!(
            v("").unwrap().1,
            json!({"state": "confirmed", "deleted": false})
        );
        assert!(v("yes").is_err());
        assert_eq!(
            v("0").unwrap().0,
            "/calico/ipam/v2/host/n1/ipv4/block/10.0.1.0-26"
        );
    }
}
