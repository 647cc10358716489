//! One watched object → the meshsync resources it stands for, as pure functions over JSON.
//!
//! Why one dispatcher: a source handles every resource alike (list, watch, relist, delete what
//! disappeared); only this step differs per resource ([`Conversion`]). Server-managed fields
//! (`resourceVersion`, `managedFields`, `generation`, `selfLink`) are dropped from every value, so
//! a rewrite that changes nothing else (a status-only update, a relist) is byte-equal to what
//! agents already hold and the cache drops it: agents only ever see real differences. The
//! revision of each resource is the object's `resourceVersion` (a Profile's is Calico's composite
//! `"<namespaceRV>/"` or `"/<serviceAccountRV>"`).

use serde_json::{Map, Value, json};

use super::node::node_to_calico;
use super::pod::{PodError, pod_to_workload_endpoint};
use super::profile::{namespace_profile, service_account_profile};
use super::resources::{Conversion, WatchedResource};

/// The annotation in which Calico's v1 CRDs keep the v3 object's labels and annotations.
pub const CALICO_METADATA_ANNOTATION: &str = "projectcalico.org/metadata";

/// One resource an object stands for.
#[derive(Clone, Debug, PartialEq)]
pub struct Converted {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub value: Value,
    pub revision: String,
}

/// Why an object could not be converted (its resources are then not served).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConvertError {
    #[error("object has no metadata.name")]
    NoName,
    #[error(transparent)]
    Pod(#[from] PodError),
    #[error("{0}")]
    Invalid(String),
}

/// What a Kubernetes source converts with.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// Felix's interface prefix (first entry of `FELIX_INTERFACEPREFIX`), `cali` by default.
    pub interface_prefix: String,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            interface_prefix: "cali".into(),
        }
    }
}

/// The object's identity (namespace, name) in its resource, used to remember what it produced.
pub fn object_id(object: &Value) -> Option<(String, String)> {
    let name = str_at(object, "/metadata/name").filter(|n| !n.is_empty())?;
    let namespace = str_at(object, "/metadata/namespace").unwrap_or("");
    Some((namespace.to_string(), name.to_string()))
}

/// Converts one object of `resource`.
pub fn convert(
    resource: &WatchedResource,
    object: &Value,
    options: &ConvertOptions,
) -> Result<Vec<Converted>, ConvertError> {
    let (namespace, name) = object_id(object).ok_or(ConvertError::NoName)?;
    let revision = str_at(object, "/metadata/resourceVersion")
        .unwrap_or("")
        .to_string();
    let one = |kind: &'static str, value: Value| Converted {
        kind,
        namespace: namespace.clone(),
        name: name.clone(),
        value,
        revision: revision.clone(),
    };
    Ok(match &resource.conversion {
        Conversion::CalicoV1 { kind } => vec![one(kind, calico_v1(kind, object))],
        Conversion::CalicoV3 { kind } => vec![one(kind, calico_v3(kind, object))],
        Conversion::Pod => match pod_to_workload_endpoint(object, &options.interface_prefix)? {
            Some(wep) => {
                let wep_name = str_at(&wep, "/metadata/name").unwrap_or("").to_string();
                vec![Converted {
                    name: wep_name,
                    ..one(meshsync_model::kinds::WORKLOAD_ENDPOINT, wep)
                }]
            }
            None => vec![],
        },
        Conversion::Namespace => {
            let profile = namespace_profile(object);
            vec![Converted {
                namespace: String::new(),
                name: format!("kns.{name}"),
                revision: format!("{revision}/"),
                ..one(meshsync_model::kinds::PROFILE, profile)
            }]
        }
        Conversion::ServiceAccount => {
            let profile = service_account_profile(object);
            let ns = if namespace.is_empty() {
                "default"
            } else {
                &namespace
            };
            vec![Converted {
                namespace: String::new(),
                name: format!("ksa.{ns}.{name}"),
                revision: format!("/{revision}"),
                ..one(meshsync_model::kinds::PROFILE, profile)
            }]
        }
        Conversion::Node => vec![one("Node", node_to_calico(object))],
        Conversion::NetworkPolicy => vec![one(
            "KubernetesNetworkPolicy",
            derived(
                "KubernetesNetworkPolicy",
                object,
                object.get("spec").cloned(),
            ),
        )],
        Conversion::Builtin {
            builtin,
            derived: derived_kind,
        } => {
            let mut out = Vec::new();
            if let Some(kind) = builtin {
                out.push(one(
                    kind,
                    builtin_value(kind, &resource.api.api_version, object),
                ));
            }
            if let Some(kind) = derived_kind {
                let spec = if kind == &"KubernetesEndpointSlice" {
                    let mut spec = Map::new();
                    for field in ["addressType", "endpoints", "ports"] {
                        if let Some(v) = object.get(field) {
                            spec.insert(field.into(), v.clone());
                        }
                    }
                    Some(Value::Object(spec))
                } else {
                    object.get("spec").cloned()
                };
                out.push(one(kind, derived(kind, object, spec)));
            }
            out
        }
    })
}

/// A `crd.projectcalico.org/v1` object in v3 layout: `spec` (and `status`) as they are, labels and
/// annotations from the `projectcalico.org/metadata` annotation when present.
pub fn calico_v1(kind: &str, object: &Value) -> Value {
    let mut metadata = clean_metadata(object.get("metadata"));
    let stored = metadata
        .get("annotations")
        .and_then(|a| a.get(CALICO_METADATA_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str::<Value>(s).ok());
    if let Some(annotations) = metadata
        .get_mut("annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(CALICO_METADATA_ANNOTATION);
        if annotations.is_empty() {
            metadata.remove("annotations");
        }
    }
    if let Some(stored) = stored {
        for field in ["labels", "annotations"] {
            match stored
                .get(field)
                .filter(|v| v.as_object().is_some_and(|o| !o.is_empty()))
            {
                Some(v) => {
                    metadata.insert(field.into(), v.clone());
                }
                None => {
                    metadata.remove(field);
                }
            }
        }
    }
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("projectcalico.org/v3"));
    out.insert("kind".into(), json!(kind));
    out.insert("metadata".into(), Value::Object(metadata));
    for field in ["spec", "status"] {
        if let Some(v) = object.get(field) {
            out.insert(field.into(), v.clone());
        }
    }
    Value::Object(out)
}

/// A `projectcalico.org/v3` CRD object, with server fields dropped.
pub fn calico_v3(kind: &str, object: &Value) -> Value {
    let mut out = object.as_object().cloned().unwrap_or_default();
    out.insert("apiVersion".into(), json!("projectcalico.org/v3"));
    out.insert("kind".into(), json!(kind));
    out.insert(
        "metadata".into(),
        Value::Object(clean_metadata(object.get("metadata"))),
    );
    Value::Object(out)
}

/// A built-in object as the API serves it, with server fields dropped and its type set (items of a
/// list may omit it).
pub fn builtin_value(kind: &str, api_version: &str, object: &Value) -> Value {
    let mut out = object.as_object().cloned().unwrap_or_default();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!(kind));
    out.insert(
        "metadata".into(),
        Value::Object(clean_metadata(object.get("metadata"))),
    );
    Value::Object(out)
}

/// A Calico kind derived from a built-in object: the object's metadata and `spec`.
fn derived(kind: &str, object: &Value, spec: Option<Value>) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("projectcalico.org/v3"));
    out.insert("kind".into(), json!(kind));
    out.insert(
        "metadata".into(),
        Value::Object(clean_metadata(object.get("metadata"))),
    );
    out.insert("spec".into(), spec.unwrap_or_else(|| json!({})));
    Value::Object(out)
}

/// Metadata without the fields the server manages.
pub fn clean_metadata(metadata: Option<&Value>) -> Map<String, Value> {
    let mut m = metadata
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for field in ["resourceVersion", "managedFields", "generation", "selfLink"] {
        m.remove(field);
    }
    m
}

pub(super) fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::resources::api_resource;

    fn resource(conversion: Conversion, api_version: &str, plural: &str) -> WatchedResource {
        WatchedResource {
            api: api_resource(api_version, plural, "X"),
            namespaced: true,
            conversion,
        }
    }

    #[test]
    fn calico_v1_objects_take_v3_metadata_from_the_annotation() {
        let object = json!({
            "apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
            "metadata": {"name": "pool-a", "resourceVersion": "7", "uid": "u1",
                "managedFields": [{}], "labels": {"crd": "label"},
                "annotations": {"projectcalico.org/metadata": "{\"labels\":{\"v3\":\"yes\"}}"}},
            "spec": {"cidr": "10.0.0.0/16"}
        });
        let r = resource(
            Conversion::CalicoV1 { kind: "IPPool" },
            "crd.projectcalico.org/v1",
            "ippools",
        );
        let out = convert(&r, &object, &ConvertOptions::default()).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].revision, "7");
        assert_eq!(
            out[0].value,
            json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                "metadata": {"name": "pool-a", "uid": "u1", "labels": {"v3": "yes"}},
                "spec": {"cidr": "10.0.0.0/16"}})
        );
    }

    #[test]
    fn services_yield_the_service_and_the_calico_kind() {
        let object = json!({"metadata": {"name": "web", "namespace": "shop", "resourceVersion": "9"},
            "spec": {"ports": [{"port": 80}]}});
        let r = resource(
            Conversion::Builtin {
                builtin: Some("Service"),
                derived: Some("KubernetesService"),
            },
            "v1",
            "services",
        );
        let out = convert(&r, &object, &ConvertOptions::default()).unwrap();
        let kinds: Vec<&str> = out.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, ["Service", "KubernetesService"]);
        assert_eq!(out[0].value["apiVersion"], "v1");
        assert_eq!(out[0].value["kind"], "Service");
        assert!(out[0].value["metadata"].get("resourceVersion").is_none());
        assert_eq!(out[1].value["spec"]["ports"][0]["port"], 80);
    }

    #[test]
    fn status_only_updates_convert_to_equal_values() {
        let a = json!({"metadata": {"name": "p", "namespace": "n", "resourceVersion": "1"},
            "spec": {"nodeName": "node-1"}, "status": {"podIP": "10.0.0.1", "conditions": []}});
        let mut b = a.clone();
        b["metadata"]["resourceVersion"] = json!("2");
        b["status"]["conditions"] = json!([{"type": "Ready"}]);
        let r = resource(Conversion::Pod, "v1", "pods");
        let (ca, cb) = (
            convert(&r, &a, &ConvertOptions::default()).unwrap(),
            convert(&r, &b, &ConvertOptions::default()).unwrap(),
        );
        assert_eq!(ca[0].value, cb[0].value);
        assert_ne!(ca[0].revision, cb[0].revision);
    }
}
