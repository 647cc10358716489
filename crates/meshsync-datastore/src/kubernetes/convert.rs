//! One watched object → the meshsync resources it stands for, as pure functions over JSON.
//!
//! Why one dispatcher: a source handles every resource alike (list, watch, relist, delete what
//! disappeared); only this step differs per resource ([`Conversion`]). Server-managed fields
//! (`resourceVersion`, `managedFields`, `generation`, `selfLink`) are dropped from values, so
//! a rewrite that changes nothing else (a status-only update, a relist) is byte-equal to what
//! agents already hold and the cache drops it: agents only ever see real differences. The
//! exception is the kinds in [`KEEPS_GENERATION_AND_MANAGED_FIELDS`]: Calico's Typha hands their
//! whole v3 metadata to its clients, and Calico's Kubernetes backend leaves those two fields in it,
//! so the cache keeps them for meshsync's Typha port to serve what calico-typha serves. The
//! revision of each resource is the object's `resourceVersion` (a Profile's is Calico's composite
//! `"<namespaceRV>/"` or `"/<serviceAccountRV>"`).
//!
//! Calico's backend never shows a `crd.projectcalico.org/v1` object's own `uid`: the v3 object
//! carries [`convert_uid`] of it (and so do the Profiles derived from Namespaces and
//! ServiceAccounts), so that a v3 object and the CR behind it never share a UID (Kubernetes'
//! garbage collector would confuse them).

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

/// How an object reached the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// In a listing (the first one or a relist).
    Listed,
    /// In a watch event.
    Watched,
}

/// The `metadata.resourceVersion` Calico's profile watcher leaves in the Profiles it emits for
/// watch events: it stamps each with `"<namespace rev>/<service account rev>"`, both sides taken
/// from the Profiles it emitted, which carry none, so `/` (a watch bookmark sets one side to the
/// bookmark's revision until the next event: not reproduced). Listed Profiles carry none. Typha
/// sends it beside the value.
pub const WATCHED_PROFILE_RESOURCE_VERSION: &str = "/";

/// The object's identity (namespace, name) in its resource, used to remember what it produced.
pub fn object_id(object: &Value) -> Option<(String, String)> {
    let name = str_at(object, "/metadata/name").filter(|n| !n.is_empty())?;
    let namespace = str_at(object, "/metadata/namespace").unwrap_or("");
    Some((namespace.to_string(), name.to_string()))
}

/// Converts one object of `resource`, delivered as `delivery` says.
pub fn convert(
    resource: &WatchedResource,
    object: &Value,
    options: &ConvertOptions,
    delivery: Delivery,
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
        Conversion::CalicoV1 { kind } => {
            // The v3 name may differ from the CR's (a policy's stored name).
            let value = calico_v1(kind, object)?;
            let v3_name = str_at(&value, "/metadata/name")
                .filter(|n| !n.is_empty())
                .unwrap_or(&name)
                .to_string();
            vec![Converted {
                name: v3_name,
                ..one(kind, value)
            }]
        }
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
            let profile = watched_profile(namespace_profile(object)?, delivery);
            vec![Converted {
                namespace: String::new(),
                name: format!("kns.{name}"),
                revision: format!("{revision}/"),
                ..one(meshsync_model::kinds::PROFILE, profile)
            }]
        }
        Conversion::ServiceAccount => {
            let profile = watched_profile(service_account_profile(object)?, delivery);
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
                out.push(one(kind, derived(kind, object, derived_spec(kind, object))));
            }
            out
        }
    })
}

/// The `spec` of the Calico kind derived from a built-in object: an EndpointSlice's top-level
/// fields gathered under it, any other object's own `spec`.
fn derived_spec(kind: &str, object: &Value) -> Option<Value> {
    if kind != "KubernetesEndpointSlice" {
        return object.get("spec").cloned();
    }
    let mut spec = Map::new();
    for field in ["addressType", "endpoints", "ports"] {
        if let Some(v) = object.get(field) {
            spec.insert(field.into(), v.clone());
        }
    }
    Some(Value::Object(spec))
}

/// A Profile derived from a Namespace or ServiceAccount, with the resource version Calico's
/// profile watcher gives it when `delivery` is a watch event.
fn watched_profile(mut profile: Value, delivery: Delivery) -> Value {
    if delivery == Delivery::Watched
        && let Some(metadata) = profile.get_mut("metadata").and_then(Value::as_object_mut)
    {
        metadata.insert(
            "resourceVersion".into(),
            json!(WATCHED_PROFILE_RESOURCE_VERSION),
        );
    }
    profile
}

/// A `crd.projectcalico.org/v1` object in v3 layout, as Calico's Kubernetes backend reads it
/// (`ConvertK8sResourceToCalicoResource`): `spec` (and `status`) as they are; the `uid` through
/// [`convert_uid`]. Without the `projectcalico.org/metadata` annotation (an object written by
/// `kubectl`), the metadata is the CR's. With it (written by Calico's clients), the metadata is
/// the one stored there, with the CR's name unless one is stored (Calico stores a policy's v3
/// name: its CR's is `default.<name>` in the default tier; without a stored name, that prefix is
/// dropped), the CR's namespace and uid, the CR's labels
/// and annotations with the stored ones merged over them, the CR's creation time unless one is
/// stored, and owner references to Calico objects turned into their v3 form.
pub fn calico_v1(kind: &str, object: &Value) -> Result<Value, ConvertError> {
    let source = object
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let stored = source
        .get("annotations")
        .and_then(|a| a.get(CALICO_METADATA_ANNOTATION))
        .and_then(Value::as_str)
        .map(|s| {
            serde_json::from_str::<Map<String, Value>>(s).map_err(|e| {
                ConvertError::Invalid(format!("annotation {CALICO_METADATA_ANNOTATION}: {e}"))
            })
        })
        .transpose()?;
    let mut metadata = match stored {
        None => source,
        Some(stored) => {
            let tier = str_at(object, "/spec/tier").unwrap_or("");
            stored_calico_metadata(kind, tier, source, stored)?
        }
    };
    if let Some(uid) = metadata
        .get("uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
    {
        let uid = convert_uid(uid)?;
        metadata.insert("uid".into(), json!(uid));
    }
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("projectcalico.org/v3"));
    out.insert("kind".into(), json!(kind));
    out.insert(
        "metadata".into(),
        Value::Object(clean_metadata_of(kind, metadata)),
    );
    for field in ["spec", "status"] {
        if let Some(v) = object.get(field) {
            out.insert(field.into(), v.clone());
        }
    }
    Ok(Value::Object(out))
}

/// The v3 metadata of a v1 CR from the metadata Calico stored in its annotation (see
/// [`calico_v1`]).
fn stored_calico_metadata(
    kind: &str,
    tier: &str,
    source: Map<String, Value>,
    mut stored: Map<String, Value>,
) -> Result<Map<String, Value>, ConvertError> {
    let string_map = |m: &Map<String, Value>, field: &str| -> Result<Map<String, Value>, _> {
        match m.get(field) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(o)) if o.values().all(Value::is_string) => Ok(o.clone()),
            Some(_) => Err(ConvertError::Invalid(format!(
                "annotation {CALICO_METADATA_ANNOTATION}: {field} is not a map of strings"
            ))),
        }
    };
    let mut labels = string_map(&source, "labels")?;
    labels.extend(string_map(&stored, "labels")?);
    let mut annotations = string_map(&source, "annotations")?;
    annotations.remove(CALICO_METADATA_ANNOTATION);
    annotations.extend(string_map(&stored, "annotations")?);
    for (field, value) in [("labels", labels), ("annotations", annotations)] {
        if value.is_empty() {
            stored.remove(field);
        } else {
            stored.insert(field.into(), Value::Object(value));
        }
    }
    if stored
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        let name = source.get("name").and_then(Value::as_str).unwrap_or("");
        let policy = matches!(
            kind,
            "GlobalNetworkPolicy"
                | "NetworkPolicy"
                | "StagedGlobalNetworkPolicy"
                | "StagedNetworkPolicy"
        );
        let name = match name.strip_prefix("default.") {
            Some(short) if policy && matches!(tier, "" | "default") => short,
            _ => name,
        };
        stored.insert("name".into(), json!(name));
    }
    for field in ["namespace", "uid"] {
        match source.get(field) {
            Some(v) => stored.insert(field.into(), v.clone()),
            None => stored.remove(field),
        };
    }
    if stored.get("creationTimestamp").is_none_or(Value::is_null) {
        match source.get("creationTimestamp") {
            Some(v) => stored.insert("creationTimestamp".into(), v.clone()),
            None => stored.remove("creationTimestamp"),
        };
    }
    if let Some(refs) = stored
        .get_mut("ownerReferences")
        .and_then(Value::as_array_mut)
    {
        for r in refs.iter_mut().filter_map(Value::as_object_mut) {
            let calico = matches!(
                r.get("apiVersion").and_then(Value::as_str),
                Some("crd.projectcalico.org/v1" | "projectcalico.org/v3")
            );
            if calico {
                r.insert("apiVersion".into(), json!("projectcalico.org/v3"));
                let uid = r.get("uid").and_then(Value::as_str).unwrap_or("");
                let uid = convert_uid(uid)?;
                r.insert("uid".into(), json!(uid));
            }
        }
    }
    Ok(stored)
}

/// Calico's `ConvertUID`: the UID of the v3 object that stands for a Kubernetes object of UID
/// `uid` (a Calico CR, a Namespace, a ServiceAccount). Every bit of the UUID's bytes is
/// reversed, except the version byte (7th) and the variant byte (9th), which stay as they are.
/// The mapping is its own inverse. Accepts the UUID forms Go's `uuid.Parse` accepts (plain,
/// `urn:uuid:`-prefixed, braced, or 32 hex digits); writes the plain lower-case form.
pub fn convert_uid(uid: &str) -> Result<String, ConvertError> {
    let bytes = parse_uuid(uid)
        .ok_or_else(|| ConvertError::Invalid(format!("metadata.uid {uid:?} is not a UUID")))?;
    let converted: Vec<u8> = bytes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if i == 6 || i == 8 {
                *b
            } else {
                b.reverse_bits()
            }
        })
        .collect();
    let hex: String = converted.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

/// The 16 bytes of a UUID in one of the forms Go's `uuid.Parse` accepts.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = match s.len() {
        36 => dashed(s)?,
        45 => dashed(
            s.get(..9)
                .filter(|p| p.eq_ignore_ascii_case("urn:uuid:"))
                .and(s.get(9..))?,
        )?,
        38 => dashed(s.strip_prefix('{')?.strip_suffix('}')?)?,
        32 if s.bytes().all(|c| c.is_ascii_hexdigit()) => s.to_string(),
        _ => return None,
    };
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The 32 hex digits of an `8-4-4-4-12` UUID.
fn dashed(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    (hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

/// A `projectcalico.org/v3` CRD object, with server fields dropped.
pub fn calico_v3(kind: &str, object: &Value) -> Value {
    let mut out = object.as_object().cloned().unwrap_or_default();
    out.insert("apiVersion".into(), json!("projectcalico.org/v3"));
    out.insert("kind".into(), json!(kind));
    out.insert(
        "metadata".into(),
        Value::Object(clean_metadata_of(kind, metadata_map(object))),
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
        Value::Object(clean_metadata_of(kind, metadata_map(object))),
    );
    out.insert("spec".into(), spec.unwrap_or_else(|| json!({})));
    Value::Object(out)
}

/// Metadata without the fields the server manages.
pub fn clean_metadata(metadata: Option<&Value>) -> Map<String, Value> {
    clean_metadata_of(
        "",
        metadata
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
    )
}

/// The kinds whose `metadata.generation` and `metadata.managedFields` the cache keeps: those
/// Calico's Typha passes through to its clients as its Kubernetes backend reads them (no update
/// processor; meshsync-typha's `v1::passthrough` serves them), where both fields are left in.
/// Every other kind's metadata reaches no Typha client whole (its update processor keeps the
/// spec and at most name and labels), so it sheds them: `managedFields` is often larger than
/// the rest of the object, and gRPC agents receive the cached value as it is.
pub const KEEPS_GENERATION_AND_MANAGED_FIELDS: [&str; 6] = [
    "BGPConfiguration",
    "BGPPeer",
    "BGPFilter",
    "CalicoNodeStatus",
    "KubernetesService",
    "KubernetesEndpointSlice",
];

/// `metadata` of a value of `kind` without the fields the server manages (`generation` and
/// `managedFields` kept for the kinds in [`KEEPS_GENERATION_AND_MANAGED_FIELDS`]).
fn clean_metadata_of(kind: &str, mut metadata: Map<String, Value>) -> Map<String, Value> {
    metadata.remove("resourceVersion");
    metadata.remove("selfLink");
    if !KEEPS_GENERATION_AND_MANAGED_FIELDS.contains(&kind) {
        metadata.remove("managedFields");
        metadata.remove("generation");
    }
    metadata
}

/// The object's `metadata` (empty when absent).
fn metadata_map(object: &Value) -> Map<String, Value> {
    object
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
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
            "metadata": {"name": "pool-a", "resourceVersion": "7",
                "uid": "0991d556-1cab-4bdb-9be7-b5e030aa75e1",
                "managedFields": [{}], "labels": {"crd": "label"},
                "annotations": {"projectcalico.org/metadata": "{\"labels\":{\"v3\":\"yes\"}}"}},
            "spec": {"cidr": "10.0.0.0/16"}
        });
        let r = resource(
            Conversion::CalicoV1 { kind: "IPPool" },
            "crd.projectcalico.org/v1",
            "ippools",
        );
        let out = convert(&r, &object, &ConvertOptions::default(), Delivery::Listed).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].revision, "7");
        // Calico's backend: the CR's labels with the stored ones merged over them, the CR's
        // uid converted, the server's fields gone (not in the stored metadata).
        assert_eq!(
            out[0].value,
            json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                "metadata": {"name": "pool-a", "uid": "9089ab6a-38d5-4bdb-9be7-ad070c55ae87",
                    "labels": {"crd": "label", "v3": "yes"}},
                "spec": {"cidr": "10.0.0.0/16"}})
        );
    }

    #[test]
    fn stored_metadata_keeps_its_fields_and_turns_calico_owners_into_v3() {
        let stored = json!({"name": "", "creationTimestamp": null, "finalizers": ["f"],
            "labels": {"l": "stored"}, "annotations": {"a": "stored"},
            "ownerReferences": [
                {"apiVersion": "crd.projectcalico.org/v1", "kind": "Tier", "name": "t",
                 "uid": "0991d556-1cab-4bdb-9be7-b5e030aa75e1"},
                {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "x"}]});
        let object = json!({"metadata": {"name": "pool-a", "resourceVersion": "7",
            "uid": "0991d556-1cab-4bdb-9be7-b5e030aa75e1", "generation": 3,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"l": "cr", "projectcalico.org/x": "y"},
            "annotations": {"projectcalico.org/metadata": stored.to_string(), "b": "cr"}},
            "spec": {}});
        let v = calico_v1("IPPool", &object).unwrap();
        assert_eq!(
            v["metadata"],
            json!({"name": "pool-a", "uid": "9089ab6a-38d5-4bdb-9be7-ad070c55ae87",
                "creationTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["f"],
                "labels": {"l": "stored", "projectcalico.org/x": "y"},
                "annotations": {"a": "stored", "b": "cr"},
                "ownerReferences": [
                    {"apiVersion": "projectcalico.org/v3", "kind": "Tier", "name": "t",
                     "uid": "9089ab6a-38d5-4bdb-9be7-ad070c55ae87"},
                    {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "x"}]})
        );
        let mut bad = object.clone();
        bad["metadata"]["annotations"]["projectcalico.org/metadata"] = json!("{");
        assert!(matches!(
            calico_v1("IPPool", &bad),
            Err(ConvertError::Invalid(_))
        ));
    }

    #[test]
    fn crs_without_stored_metadata_keep_theirs_and_typha_passthrough_kinds_keep_server_fields() {
        let object = json!({"metadata": {"name": "default", "resourceVersion": "7",
            "uid": "9089ab6a-38d5-4bdb-9be7-ad070c55ae87", "generation": 1,
            "managedFields": [{"manager": "kubectl"}], "labels": {"l": "1"}},
            "spec": {"asNumber": 64512}});
        let v = calico_v1("BGPConfiguration", &object).unwrap();
        assert_eq!(
            v["metadata"],
            json!({"name": "default", "uid": "0991d556-1cab-4bdb-9be7-b5e030aa75e1",
                "generation": 1, "managedFields": [{"manager": "kubectl"}], "labels": {"l": "1"}})
        );
        // Kinds whose metadata no Typha client sees shed them.
        let v = calico_v1("IPPool", &object).unwrap();
        assert!(v["metadata"].get("managedFields").is_none());
        assert!(v["metadata"].get("generation").is_none());
        let mut bad = object.clone();
        bad["metadata"]["uid"] = json!("zz");
        assert!(calico_v1("BGPPeer", &bad).is_err());
    }

    #[test]
    fn the_kubernetes_service_and_slice_keep_server_fields_the_builtins_do_not() {
        let object = json!({"metadata": {"name": "web", "namespace": "shop", "resourceVersion": "9",
            "uid": "u", "generation": 2, "managedFields": [{"manager": "m"}]},
            "spec": {"ports": [{"port": 80}]}});
        let r = resource(
            Conversion::Builtin {
                builtin: Some("Service"),
                derived: Some("KubernetesService"),
            },
            "v1",
            "services",
        );
        let out = convert(&r, &object, &ConvertOptions::default(), Delivery::Listed).unwrap();
        assert!(out[0].value["metadata"].get("managedFields").is_none());
        assert_eq!(
            out[1].value["metadata"],
            json!({"name": "web", "namespace": "shop", "uid": "u", "generation": 2,
                "managedFields": [{"manager": "m"}]})
        );
        let r = resource(
            Conversion::Builtin {
                builtin: None,
                derived: Some("KubernetesEndpointSlice"),
            },
            "discovery.k8s.io/v1",
            "endpointslices",
        );
        let out = convert(&r, &object, &ConvertOptions::default(), Delivery::Listed).unwrap();
        assert_eq!(
            out[0].value["metadata"]["managedFields"],
            json!([{"manager": "m"}])
        );
    }

    #[test]
    fn uids_convert_as_calicos_convert_uid() {
        let want = "9089ab6a-38d5-4bdb-9be7-ad070c55ae87";
        for form in [
            "0991d556-1cab-4bdb-9be7-b5e030aa75e1",
            "0991D556-1CAB-4BDB-9BE7-B5E030AA75E1",
            "urn:uuid:0991d556-1cab-4bdb-9be7-b5e030aa75e1",
            "{0991d556-1cab-4bdb-9be7-b5e030aa75e1}",
            "0991d5561cab4bdb9be7b5e030aa75e1",
        ] {
            assert_eq!(convert_uid(form).unwrap(), want, "{form}");
        }
        assert_eq!(
            convert_uid(want).unwrap(),
            "0991d556-1cab-4bdb-9be7-b5e030aa75e1"
        );
        for bad in [
            "",
            "u1",
            "0991d556x1cab-4bdb-9be7-b5e030aa75e1",
            "+991d5561cab4bdb9be7b5e030aa75e1",
            "0991d556-1cab-4bdb-9be7-b5e030aa75eé",
        ] {
            assert!(convert_uid(bad).is_err(), "{bad}");
        }
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
        let out = convert(&r, &object, &ConvertOptions::default(), Delivery::Listed).unwrap();
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
            convert(&r, &a, &ConvertOptions::default(), Delivery::Listed).unwrap(),
            convert(&r, &b, &ConvertOptions::default(), Delivery::Listed).unwrap(),
        );
        assert_eq!(ca[0].value, cb[0].value);
        assert_ne!(ca[0].revision, cb[0].revision);
    }

    #[test]
    fn profiles_from_watch_events_carry_calicos_watcher_resource_version() {
        let ns = json!({"metadata": {"name": "shop", "resourceVersion": "12",
            "uid": "0991d556-1cab-4bdb-9be7-b5e030aa75e1"}});
        let r = resource(Conversion::Namespace, "v1", "namespaces");
        let listed = convert(&r, &ns, &ConvertOptions::default(), Delivery::Listed).unwrap();
        assert!(listed[0].value["metadata"].get("resourceVersion").is_none());
        assert_eq!(listed[0].revision, "12/");
        let watched = convert(&r, &ns, &ConvertOptions::default(), Delivery::Watched).unwrap();
        assert_eq!(watched[0].value["metadata"]["resourceVersion"], "/");
        assert_eq!(watched[0].revision, "12/");
        let sa = json!({"metadata": {"name": "api", "namespace": "shop", "resourceVersion": "13"}});
        let r = resource(Conversion::ServiceAccount, "v1", "serviceaccounts");
        let watched = convert(&r, &sa, &ConvertOptions::default(), Delivery::Watched).unwrap();
        assert_eq!(watched[0].value["metadata"]["resourceVersion"], "/");
        assert_eq!(watched[0].revision, "/13");
    }

    #[test]
    fn stored_policy_names_win_and_default_tier_crs_drop_their_prefix() {
        let r = resource(
            Conversion::CalicoV1 {
                kind: "GlobalNetworkPolicy",
            },
            "crd.projectcalico.org/v1",
            "globalnetworkpolicies",
        );
        let gnp = |cr_name: &str, stored: Value, tier: &str| {
            json!({"metadata": {"name": cr_name, "resourceVersion": "3",
                "annotations": {"projectcalico.org/metadata": stored.to_string()}},
                "spec": {"tier": tier}})
        };
        let name = |object: Value| {
            let out = convert(&r, &object, &ConvertOptions::default(), Delivery::Listed).unwrap();
            assert_eq!(out[0].name, out[0].value["metadata"]["name"]);
            out[0].name.clone()
        };
        assert_eq!(
            name(gnp("default.allow", json!({"name": "allow"}), "default")),
            "allow"
        );
        assert_eq!(name(gnp("default.allow", json!({}), "default")), "allow");
        assert_eq!(name(gnp("default.allow", json!({}), "")), "allow");
        assert_eq!(name(gnp("sec.allow", json!({}), "sec")), "sec.allow");
        assert_eq!(
            name(gnp("default.allow", json!({}), "sec")),
            "default.allow"
        );
        // Without stored metadata the CR is taken as it is, name included.
        let plain = json!({"metadata": {"name": "default.allow"}, "spec": {"tier": "default"}});
        assert_eq!(name(plain), "default.allow");
    }
}
