//! Calico's host block affinities in etcd, served as the `BlockAffinity` resource.
//!
//! On etcd, Calico's IPAM keeps an affinity as its v1 `BlockAffinity` — the value
//! `{"state": "confirmed", "deleted": false}` under `<prefix>/ipam/v2/host/<node>/ipv4/block/<cidr>`
//! — and keeps the node and the block only in the key. The Kubernetes datastore serves the same
//! affinity as a `BlockAffinity` resource with everything in `spec`. The cache holds one form per
//! kind, so that every consumer (agents, the Typha front end's v1 conversion) reads affinities
//! alike whichever datastore they came from: the etcd driver builds the resource at ingest, as
//! Calico's KDD backend writes it (`toV3`), from the key ([`BlockAffinityKey`]) and the value:
//!
//! ```json
//! {"apiVersion": "projectcalico.org/v3", "kind": "BlockAffinity",
//!  "metadata": {"name": "node-1-10-65-0-0-26"},
//!  "spec": {"state": "confirmed", "node": "node-1", "cidr": "10.65.0.0/26", "type": "host",
//!           "deleted": "false"}}
//! ```
//!
//! `spec.deleted` is a string there (`"true"`/`"false"`), as in Calico's CRD. The labels Calico's
//! KDD backend adds (hashes of the node, the type, the IP version: list selectors of its own)
//! are not made up. The stored value is read as Go's `encoding/json` reads it into the v1 struct
//! for the fields Calico writes: `state` a string, `deleted` a bool, either absent or `null` for
//! the zero value, other fields ignored; field names must match exactly (Go would also take
//! `"State"`). A value that is not that is invalid, like any other invalid value.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::ResourceKey;
use crate::layout::BlockAffinityKey;
use crate::validate::{InvalidValue, ValueLimits, precheck, validate_value};
use meshsync_model::kinds::BLOCK_AFFINITY;

/// The `BlockAffinity` resource for the stored v1 value `stored` of the affinity `affinity`
/// (whose resource key is `key`), checked by [`validate_value`].
pub(super) fn resource(
    affinity: &BlockAffinityKey,
    key: &ResourceKey,
    stored: &[u8],
    limits: &ValueLimits,
) -> Result<Bytes, InvalidValue> {
    let text = precheck(stored, limits)?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| InvalidValue::NotJson(e.to_string()))?;
    let Value::Object(fields) = value else {
        return Err(InvalidValue::NotAnObject(type_name(&value)));
    };
    let state = match fields.get("state") {
        None | Some(Value::Null) => "",
        Some(Value::String(state)) => state,
        Some(other) => return Err(wrong_type("state", other, "a string")),
    };
    let deleted = flag(&fields, "deleted")?;
    let resource = json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": BLOCK_AFFINITY,
        "metadata": {"name": affinity.name},
        "spec": {
            "state": state,
            "node": affinity.node,
            "cidr": affinity.cidr,
            "type": "host",
            "deleted": if deleted { "true" } else { "false" },
        },
    });
    let bytes = serde_json::to_vec(&resource).map_err(|e| InvalidValue::NotJson(e.to_string()))?;
    validate_value(key, &bytes, limits)?;
    Ok(Bytes::from(bytes))
}

/// The bool at `fields[name]` (absent or `null`: false).
fn flag(fields: &Map<String, Value>, name: &'static str) -> Result<bool, InvalidValue> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(wrong_type(name, other, "a boolean")),
    }
}

fn wrong_type(field: &'static str, found: &Value, expected: &'static str) -> InvalidValue {
    InvalidValue::WrongType {
        field,
        found: type_name(found),
        expected,
    }
}

/// The JSON type of `value`, for messages (never the value itself).
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::block_affinity_key;

    const KEY: &str = "/calico/ipam/v2/host/node-1/ipv4/block/10.65.0.0-26";

    fn convert(stored: &str) -> Result<Value, InvalidValue> {
        convert_at(KEY, stored, &ValueLimits::default())
    }

    fn convert_at(path: &str, stored: &str, limits: &ValueLimits) -> Result<Value, InvalidValue> {
        let affinity = block_affinity_key("/calico", path).unwrap();
        let key = ResourceKey::new("", BLOCK_AFFINITY, "", &affinity.name);
        let bytes = resource(&affinity, &key, stored.as_bytes(), limits)?;
        Ok(serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn the_v1_value_becomes_the_kubernetes_datastores_resource() {
        assert_eq!(
            convert(r#"{"state":"confirmed","deleted":false}"#).unwrap(),
            json!({"apiVersion": "projectcalico.org/v3", "kind": "BlockAffinity",
                "metadata": {"name": "node-1-10-65-0-0-26"},
                "spec": {"state": "confirmed", "node": "node-1", "cidr": "10.65.0.0/26",
                    "type": "host", "deleted": "false"}})
        );
        assert_eq!(
            convert_at(
                "/calico/ipam/v2/host/node-2/ipv6/block/fd00:65::-122",
                r#"{"state":"pendingDeletion","deleted":true}"#,
                &ValueLimits::default()
            )
            .unwrap()["spec"],
            json!({"state": "pendingDeletion", "node": "node-2", "cidr": "fd00:65::/122",
                "type": "host", "deleted": "true"})
        );
    }

    #[test]
    fn absent_and_null_fields_are_go_zero_values_and_others_are_ignored() {
        for stored in [
            "{}",
            r#"{"state":null,"deleted":null}"#,
            r#"{"other":[1,{"x":2}],"State":"confirmed"}"#,
        ] {
            let spec = &convert(stored).unwrap()["spec"];
            assert_eq!(
                (&spec["state"], &spec["deleted"]),
                (&json!(""), &json!("false"))
            );
        }
    }

    #[test]
    fn values_calico_could_not_decode_are_invalid_without_quoting_them() {
        for (stored, reason) in [
            (r#"{"state":7}"#, "state is a number, not a string"),
            (
                r#"{"deleted":"true"}"#,
                "deleted is a string, not a boolean",
            ),
            (r#"{"state":"secret-ish""#, "value is not valid JSON"),
            (r#"["confirmed"]"#, "value is an array, not a JSON object"),
            ("", "value is empty"),
        ] {
            let error = convert(stored).unwrap_err().to_string();
            assert!(error.starts_with(reason), "{stored}: {error}");
            assert!(!error.contains("secret-ish"), "{error}");
        }
    }

    #[test]
    fn the_stored_value_is_held_to_the_limits() {
        let limits = ValueLimits {
            max_bytes: 64,
            max_depth: 3,
        };
        let long = format!(r#"{{"state":"confirmed","pad":"{}"}}"#, "x".repeat(64));
        assert!(matches!(
            convert_at(KEY, &long, &limits),
            Err(InvalidValue::TooLarge { .. })
        ));
        assert!(matches!(
            convert_at(KEY, r#"{"a":{"b":{"c":{}}}}"#, &limits),
            Err(InvalidValue::TooDeep { max: 3 })
        ));
    }
}
