//! v3 resources Typha passes through as they are (under a v3 `ResourceKey`): BGPConfiguration and
//! BGPPeer (felix, bgp), BGPFilter (bgp), CalicoNodeStatus (node-status), and on the Kubernetes
//! datastore KubernetesService and KubernetesEndpointSlice (felix). Nodes pass through too for the
//! bgp and tunnel-ip-allocation syncers (see `node`).
//!
//! These kinds have no update processor: the syncer hands on the object Calico's backend decoded,
//! and Typha's `SerializeUpdate` moves its `metadata.resourceVersion` out of the JSON into the
//! update's `V3ResourceVersion` (so that a rewrite which changes nothing else is a no-op for
//! dedupe), then marshals the Go struct. So here: the value's metadata as Go's `ObjectMeta`
//! marshals it (known fields, `resourceVersion` dropped, `creationTimestamp` always present), the
//! rest of the object as the cache holds it, and the revision beside it (Calico's backends set
//! the resource version to the datastore revision).
//!
//! meshsync's Kubernetes driver stores KubernetesService and KubernetesEndpointSlice in a v3-like
//! shape (`apiVersion: projectcalico.org/v3`, the Service's `spec`, the slice's `addressType`,
//! `endpoints` and `ports` under `spec`). Calico's backend hands Felix the Kubernetes objects
//! themselves (as the typed client decodes them: no type meta), so they are turned back into that
//! shape here; a Service's `status` is not in the cache, so it is sent empty.
//!
//! Not reproduced: the rest of Go's re-marshalling (unknown fields dropped, empty `omitempty`
//! fields dropped, empty structs written out) — values already in Go's canonical form, as
//! Calico's own writers store them, come out identical — and Typha's v3 validator, which turns an
//! invalid resource into a deletion.

use serde_json::{Map, Value, json};

use super::emit::{deletion, failed, invalid, parse};
use super::v3read::object_meta_json;
use super::{Converted, Dialect, Resource, Syncer, V1Update, keys};

const KUBERNETES_SERVICE: &str = "KubernetesService";
const KUBERNETES_ENDPOINT_SLICE: &str = "KubernetesEndpointSlice";

pub(super) fn convert(
    syncer: Syncer,
    _dialect: Dialect,
    resource: &Resource<'_>,
    deleted: bool,
) -> Option<Converted> {
    let carried = match syncer {
        Syncer::Felix => matches!(
            resource.kind,
            "BGPConfiguration" | "BGPPeer" | KUBERNETES_SERVICE | KUBERNETES_ENDPOINT_SLICE
        ),
        Syncer::Bgp => matches!(resource.kind, "BGPConfiguration" | "BGPPeer" | "BGPFilter"),
        Syncer::TunnelIpAllocation => false,
        Syncer::NodeStatus => resource.kind == "CalicoNodeStatus",
    };
    carried.then(|| pass_through(resource, deleted))
}

/// The resource under its v3 `ResourceKey`, its resource version moved beside it.
pub(super) fn pass_through(resource: &Resource<'_>, deleted: bool) -> Converted {
    let Some(key) = keys::resource(resource.kind, resource.namespace, resource.name) else {
        return failed(
            Vec::new(),
            invalid(resource, "Calico has no resource key for this kind".into()),
        );
    };
    if deleted {
        return deletion(key);
    }
    let v3 = match parse(resource) {
        Ok(v) => v,
        Err(error) => return failed(vec![key], error),
    };
    let Value::Object(mut object) = v3 else {
        return failed(vec![key], invalid(resource, "not an object".into()));
    };
    let metadata = object.remove("metadata").unwrap_or(Value::Null);
    let resource_version = if resource.revision.is_empty() {
        metadata
            .get("resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    } else {
        resource.revision.to_owned()
    };
    let mut out = Map::new();
    match resource.kind {
        KUBERNETES_SERVICE => {
            out.insert("metadata".into(), object_meta_json(&metadata));
            out.insert(
                "spec".into(),
                object.remove("spec").unwrap_or_else(|| json!({})),
            );
            out.insert(
                "status".into(),
                object
                    .remove("status")
                    .unwrap_or_else(|| json!({"loadBalancer": {}})),
            );
        }
        KUBERNETES_ENDPOINT_SLICE => {
            let mut spec = match object.remove("spec") {
                Some(Value::Object(spec)) => spec,
                _ => object,
            };
            out.insert("metadata".into(), object_meta_json(&metadata));
            out.insert(
                "addressType".into(),
                spec.remove("addressType").unwrap_or_else(|| json!("")),
            );
            for field in ["endpoints", "ports"] {
                out.insert(field.into(), spec.remove(field).unwrap_or(Value::Null));
            }
        }
        kind => {
            out = object;
            out.insert("metadata".into(), object_meta_json(&metadata));
            // Go writes struct fields even when empty: every Calico kind has a `spec`, these
            // also a `status`.
            let structs: &[&str] = match kind {
                "Node" | "CalicoNodeStatus" => &["spec", "status"],
                _ => &["spec"],
            };
            for field in structs {
                if out.get(*field).is_none_or(Value::is_null) {
                    out.insert((*field).into(), json!({}));
                }
            }
        }
    }
    match serde_json::to_vec(&Value::Object(out)) {
        Ok(bytes) => Converted {
            updates: vec![V1Update {
                key,
                value: Some(bytes.into()),
                v3_resource_version: resource_version,
            }],
            error: None,
        },
        Err(source) => failed(
            vec![key],
            super::ConvertError::Json {
                kind: resource.kind.into(),
                name: resource.name.into(),
                source,
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(syncer: Syncer, kind: &str, ns: &str, value: Value, deleted: bool) -> Option<Converted> {
        let bytes = serde_json::to_vec(&value).unwrap();
        convert(
            syncer,
            Dialect::V331,
            &Resource {
                kind,
                namespace: ns,
                name: "x",
                value: &bytes,
                revision: "12",
            },
            deleted,
        )
    }

    #[test]
    fn resource_version_moves_beside_the_value() {
        let peer = json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer",
            "metadata": {"name": "x", "resourceVersion": "3"}, "spec": {"asNumber": 64512}});
        let out = run(Syncer::Bgp, "BGPPeer", "", peer, false).unwrap();
        let [u] = out.updates.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(u.key, "/calico/resources/v3/projectcalico.org/bgppeers/x");
        assert_eq!(u.v3_resource_version, "12");
        let v: Value = serde_json::from_slice(u.value.as_ref().unwrap()).unwrap();
        assert_eq!(
            v["metadata"],
            json!({"name": "x", "creationTimestamp": null})
        );
        assert_eq!(v["spec"], json!({"asNumber": 64512}));
    }

    #[test]
    fn syncers_carry_their_kinds_only() {
        let v = json!({"metadata": {"name": "x"}});
        assert!(run(Syncer::Felix, "BGPFilter", "", v.clone(), false).is_none());
        assert!(run(Syncer::Bgp, "BGPFilter", "", v.clone(), false).is_some());
        assert!(run(Syncer::NodeStatus, "BGPPeer", "", v.clone(), false).is_none());
        let out = run(Syncer::NodeStatus, "CalicoNodeStatus", "", v, true).unwrap();
        assert_eq!(out.updates[0].value, None);
    }

    #[test]
    fn endpoint_slices_get_their_kubernetes_shape_back() {
        let slice = json!({"apiVersion": "projectcalico.org/v3", "kind": "KubernetesEndpointSlice",
            "metadata": {"name": "x", "namespace": "ns1"},
            "spec": {"addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}]}});
        let out = run(
            Syncer::Felix,
            KUBERNETES_ENDPOINT_SLICE,
            "ns1",
            slice,
            false,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(out.updates[0].value.as_ref().unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"metadata": {"name": "x", "namespace": "ns1", "creationTimestamp": null},
                "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": null})
        );
        assert_eq!(
            out.updates[0].key,
            "/calico/resources/v3/projectcalico.org/kubernetesendpointslices/ns1/x"
        );
    }
}
