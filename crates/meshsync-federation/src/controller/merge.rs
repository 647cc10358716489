//! How a desired object is laid over the one the datastore holds.
//!
//! The controller owns only part of an Endpoints or EndpointSlice: the data fields and its own
//! annotations and labels. Everything else (other labels and annotations, `uid`, …) may have been
//! set by someone else and is kept, so an update is a merge, not a replacement; and fields the
//! datastore sets itself are ignored when deciding whether anything changed.

use serde_json::{Map, Value};

/// Data fields the controller owns, per kind (replaced on update, removed when not desired).
fn owned_fields(kind: Option<&str>) -> &'static [&'static str] {
    match kind {
        Some("EndpointSlice") => &["addressType", "endpoints", "ports"],
        _ => &["subsets"],
    }
}

/// `existing` updated to `desired`: the owned data fields replaced, our annotations and labels
/// merged into the existing ones, everything else kept. `None` if `existing` is not an object
/// with object metadata.
pub(super) fn merge(existing: &Value, desired: &Value) -> Option<Value> {
    let mut out = existing.clone();
    let obj = out.as_object_mut()?;
    for field in owned_fields(desired["kind"].as_str()) {
        match desired.get(*field) {
            Some(v) => {
                obj.insert((*field).to_owned(), v.clone());
            }
            None => {
                obj.remove(*field);
            }
        }
    }
    for field in ["apiVersion", "kind"] {
        if let Some(v) = desired.get(field) {
            obj.insert(field.to_owned(), v.clone());
        }
    }
    let metadata = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()?;
    for field in ["annotations", "labels"] {
        let Some(want) = desired["metadata"][field].as_object() else {
            continue;
        };
        let target = metadata
            .entry(field)
            .or_insert_with(|| Value::Object(Map::new()));
        if !target.is_object() {
            *target = Value::Object(Map::new());
        }
        let target = target.as_object_mut()?;
        for (k, v) in want {
            target.insert(k.clone(), v.clone());
        }
    }
    Some(out)
}

/// A copy without the fields the datastore sets, for comparisons.
pub(super) fn strip(value: &Value) -> Value {
    let mut v = value.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in ["resourceVersion", "uid", "creationTimestamp"] {
            m.remove(f);
        }
    }
    v
}

/// Removes `metadata.resourceVersion` (etcd's revision is the version) before writing.
pub(super) fn remove_server_fields(value: &mut Value) {
    if let Some(m) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_keeps_foreign_metadata_and_replaces_subsets() {
        let existing = json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "x", "namespace": "d", "uid": "u1",
                "annotations": {"other": "keep", "federation.tigera.io/serviceSelector": "old"}},
            "subsets": [{"addresses": [{"ip": "1.1.1.1"}]}]
        });
        let desired = json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "x", "namespace": "d",
                "annotations": {"federation.tigera.io/serviceSelector": "new"}}
        });
        let merged = merge(&existing, &desired).expect("object");
        assert_eq!(merged["metadata"]["annotations"]["other"], "keep");
        assert_eq!(
            merged["metadata"]["annotations"]["federation.tigera.io/serviceSelector"],
            "new"
        );
        assert_eq!(merged["metadata"]["uid"], "u1");
        assert!(merged.get("subsets").is_none());
        // Idempotent.
        assert_eq!(merge(&merged, &desired), Some(merged.clone()));
    }

    #[test]
    fn strip_ignores_server_fields() {
        let a = json!({"metadata": {"name": "x", "resourceVersion": "5", "uid": "u"}});
        let b = json!({"metadata": {"name": "x"}});
        assert_eq!(strip(&a), strip(&b));
    }
}
