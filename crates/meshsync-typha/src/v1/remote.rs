//! Remote clusters in the felix syncer: how another cluster's resources are renamed so that an
//! unmodified Felix holds them beside the local cluster's without any collision.
//!
//! Calico Open Source has no remote-cluster keys: Felix only knows WorkloadEndpoints, Profiles,
//! Nodes, IP pools and IPAM blocks. Its calculation graph puts *every* endpoint it receives into
//! the IP sets of the selectors that match it, whatever host it is on, and (with VXLAN) routes to
//! every block of every Node it knows. So a remote cluster's data is sent as ordinary v1 data
//! after a rewrite of its v3 form, and then converted exactly as local data is:
//!
//! - **Names.** Node `N` of cluster `C` becomes `C.N`; so do its Profiles (`kns.prod` →
//!   `C.kns.prod`), IP pools and IPAM blocks. `C` is the RCC's name, a DNS-1123 subdomain, so the
//!   new names stay valid v3 names (Calico's validation) and can only equal a local name that
//!   literally starts with the cluster's name and a dot. A WorkloadEndpoint keeps its namespace,
//!   pod and interface; its host (the node part of its name and `spec.node`) is renamed, and its
//!   `profiles` with it. A HostEndpoint keeps its name (its key is under its renamed node). A
//!   network set `S` becomes `C.S` (a namespaced one stays in its namespace, with `C.kns.<ns>`
//!   as its profile).
//! - **Identity.** Every remote endpoint and network set carries the label [`CLUSTER_LABEL`] = `C`, so a policy
//!   selects a cluster's pods with `meshsync.io/cluster == "C"`. Local endpoints are sent as
//!   Typha sends them (no label): `!has(meshsync.io/cluster)` selects them.
//! - **Namespaces.** [`RemoteNamespaces::Same`] (the default) keeps a remote pod's
//!   `projectcalico.org/namespace` label: a namespaced policy's rules then select pods of the
//!   namespace of the same name in every cluster, as Kubernetes' multi-cluster "namespace
//!   sameness" has it. [`RemoteNamespaces::Distinct`] sets that label to `C.<namespace>`, a name
//!   no Kubernetes namespace can have (namespace names have no dots): the implicit
//!   `projectcalico.org/namespace == '<ns>'` of a namespaced policy's rules never matches remote
//!   pods, while Calico's `namespaceSelector: all()` (`has(projectcalico.org/namespace)`) and
//!   `global()` (its negation) keep their meaning, and namespace selectors match the namespace's
//!   labels, inherited from the renamed `kns.` profile.
//! - **Routing** (what the mesh lets through only with `overlayRoutingMode: Enabled`). A Node
//!   keeps its BGP address and VXLAN tunnel address and gets an explicit VTEP MAC computed from
//!   its **original** name when it has none (Felix derives a missing one from the name it knows,
//!   which would be the new one, not the MAC the remote node's device has). Its WireGuard key is
//!   dropped (cross-cluster WireGuard is not supported). A pool never masquerades (`natOutgoing`
//!   off: it only adds the remote CIDR to Felix's set of pools, so traffic to it is not
//!   masqueraded). A block's affinity and its borrowed addresses' `node` attributes name the
//!   renamed node.
//! - **Never merged**: every other kind (configuration, ClusterInformation, policies, tiers, BGP
//!   resources, Services, …) gives nothing; the mesh does not forward them either.

use serde_json::{Map, Value};

use super::{ConvertError, Resource};

/// The label every remote endpoint carries, with the name of its cluster (its RCC's name).
pub const CLUSTER_LABEL: &str = "meshsync.io/cluster";

/// Calico's label of a workload endpoint's namespace (what a namespaced policy's selectors are
/// restricted with).
const NAMESPACE_LABEL: &str = "projectcalico.org/namespace";

/// Whether a remote pod counts as a member of the local namespace of the same name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RemoteNamespaces {
    /// Namespace sameness: local namespaced policies select remote pods of the same-named
    /// namespace like local ones.
    #[default]
    Same,
    /// Remote pods are in no local namespace (their namespace label is `C.<ns>`): only global
    /// policies and namespace selectors reach them.
    Distinct,
}

/// The name a remote cluster's node, profile, pool or block has in the merged data.
pub fn remote_name(cluster: &str, name: &str) -> String {
    format!("{cluster}.{name}")
}

/// A remote resource rewritten into its local form; convert it as a local one.
#[derive(Debug)]
pub struct Localized {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub value: Vec<u8>,
}

impl Localized {
    /// The rewritten resource, borrowing `revision` from the original.
    pub fn resource<'a>(&'a self, revision: &'a str) -> Resource<'a> {
        Resource {
            kind: self.kind,
            namespace: &self.namespace,
            name: &self.name,
            value: &self.value,
            revision,
        }
    }
}

/// `resource`, a resource of remote cluster `cluster`, in the form the felix syncer sends it;
/// `Ok(None)` for kinds never merged from a remote.
pub fn localize(
    cluster: &str,
    namespaces: RemoteNamespaces,
    resource: &Resource<'_>,
) -> Result<Option<Localized>, ConvertError> {
    let kind: &'static str = match resource.kind {
        "WorkloadEndpoint" => "WorkloadEndpoint",
        "HostEndpoint" => "HostEndpoint",
        "Profile" => "Profile",
        "Node" => "Node",
        "IPPool" => "IPPool",
        "IPAMBlock" => "IPAMBlock",
        "NetworkSet" => "NetworkSet",
        "GlobalNetworkSet" => "GlobalNetworkSet",
        _ => return Ok(None),
    };
    let invalid = |reason: String| ConvertError::Invalid {
        kind: resource.kind.to_owned(),
        name: format!("{cluster}/{}", resource.name),
        reason,
    };
    let mut v3: Value =
        serde_json::from_slice(resource.value).map_err(|source| ConvertError::Json {
            kind: resource.kind.to_owned(),
            name: format!("{cluster}/{}", resource.name),
            source,
        })?;
    let Some(object) = v3.as_object_mut() else {
        return Err(invalid("value is not an object".into()));
    };
    let name = match kind {
        "WorkloadEndpoint" => {
            let name = workload_endpoint_name(cluster, resource.name).ok_or_else(|| {
                invalid("name is not <node>-<orchestrator>-<workload>-<endpoint>".into())
            })?;
            endpoint(cluster, namespaces, object);
            name
        }
        "HostEndpoint" => {
            endpoint(cluster, namespaces, object);
            resource.name.to_owned()
        }
        "Node" => {
            node(cluster, resource.name, object);
            remote_name(cluster, resource.name)
        }
        "IPPool" => {
            if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert("natOutgoing".into(), Value::Bool(false));
            }
            remote_name(cluster, resource.name)
        }
        "IPAMBlock" => {
            block(cluster, object);
            remote_name(cluster, resource.name)
        }
        "NetworkSet" | "GlobalNetworkSet" => {
            endpoint(cluster, namespaces, object);
            remote_name(cluster, resource.name)
        }
        _ => remote_name(cluster, resource.name),
    };
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert("name".into(), Value::String(name.clone()));
    }
    let value = serde_json::to_vec(&v3).map_err(|e| invalid(e.to_string()))?;
    Ok(Some(Localized {
        kind,
        namespace: resource.namespace.to_owned(),
        name,
        value,
    }))
}

/// A WorkloadEndpoint's name with its node part renamed (Calico's names join the parts with `-`
/// and double the dashes inside a part).
fn workload_endpoint_name(cluster: &str, name: &str) -> Option<String> {
    let parts = super::endpoints::dash_separated_parts(name);
    let [node, rest @ ..] = parts.as_slice() else {
        return None;
    };
    if parts.len() != 4 || name.len() < 7 {
        return None;
    }
    let renamed = remote_name(cluster, node);
    Some(
        std::iter::once(renamed.as_str())
            .chain(rest.iter().map(String::as_str))
            .map(|part| part.replace('-', "--"))
            .collect::<Vec<_>>()
            .join("-"),
    )
}

/// A remote namespaced network set's v1 value names its namespace's profile (`kns.<ns>`, added
/// by the conversion): the remote one, `C.kns.<ns>`, so it inherits its own namespace's labels;
/// with [`RemoteNamespaces::Distinct`] it is in no local namespace.
pub(super) fn rename_profiles(
    cluster: &str,
    namespaces: RemoteNamespaces,
    converted: &mut super::Converted,
) {
    for update in &mut converted.updates {
        let Some(bytes) = &update.value else {
            continue;
        };
        let Ok(mut value) = serde_json::from_slice::<Value>(bytes) else {
            continue;
        };
        if let Some(Value::Array(ids)) = value.get_mut("profile_ids") {
            for id in ids.iter_mut() {
                if let Value::String(p) = id {
                    *p = remote_name(cluster, p);
                }
            }
        }
        if namespaces == RemoteNamespaces::Distinct
            && let Some(Value::Object(labels)) = value.get_mut("labels")
        {
            distinct_namespace(cluster, labels);
        }
        if let Ok(bytes) = serde_json::to_vec(&value) {
            update.value = Some(bytes.into());
        }
    }
}

/// The namespace label of a remote resource in [`RemoteNamespaces::Distinct`]: `C.<ns>`.
fn distinct_namespace(cluster: &str, labels: &mut Map<String, Value>) {
    if let Some(Value::String(ns)) = labels.get_mut(NAMESPACE_LABEL) {
        *ns = remote_name(cluster, ns);
    }
}

/// A workload or host endpoint: renamed node and profiles, the cluster label, and (with
/// [`RemoteNamespaces::Distinct`]) its namespace label renamed.
fn endpoint(cluster: &str, namespaces: RemoteNamespaces, object: &mut Map<String, Value>) {
    if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
        if let Some(Value::String(node)) = spec.get_mut("node") {
            *node = remote_name(cluster, node);
        }
        if let Some(Value::Array(profiles)) = spec.get_mut("profiles") {
            for profile in profiles.iter_mut() {
                if let Value::String(p) = profile {
                    *p = remote_name(cluster, p);
                }
            }
        }
    }
    let metadata = object
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(metadata) = metadata.as_object_mut() else {
        return;
    };
    let labels = metadata
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if !labels.is_object() {
        *labels = Value::Object(Map::new());
    }
    if let Some(labels) = labels.as_object_mut() {
        labels.insert(CLUSTER_LABEL.into(), Value::String(cluster.into()));
        if namespaces == RemoteNamespaces::Distinct {
            distinct_namespace(cluster, labels);
        }
    }
}

/// Felix's MAC for a VXLAN device it knows no MAC of: `0x66` and the first five bytes of the
/// SHA-1 of the node's name (`-v6` appended for IPv6).
pub fn default_vtep_mac(node_name: &str, ipv6: bool) -> String {
    use sha1::{Digest, Sha1};
    let mut hasher = Sha1::new();
    hasher.update(node_name.as_bytes());
    if ipv6 {
        hasher.update(b"-v6");
    }
    let sha = hasher.finalize();
    let bytes = [0x66, sha[0], sha[1], sha[2], sha[3], sha[4]];
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A Node: explicit VTEP MACs from its original name, no WireGuard, orchestrator refs renamed.
fn node(cluster: &str, original: &str, object: &mut Map<String, Value>) {
    if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
        for (address, mac, ipv6) in [
            ("ipv4VXLANTunnelAddr", "vxlanTunnelMACAddr", false),
            ("ipv6VXLANTunnelAddr", "vxlanTunnelMACAddrV6", true),
        ] {
            let has_address = spec
                .get(address)
                .and_then(Value::as_str)
                .is_some_and(|a| !a.is_empty());
            let has_mac = spec
                .get(mac)
                .and_then(Value::as_str)
                .is_some_and(|m| !m.is_empty());
            if has_address && !has_mac {
                spec.insert(mac.into(), Value::String(default_vtep_mac(original, ipv6)));
            }
        }
        spec.remove("wireguard");
        if let Some(Value::Array(refs)) = spec.get_mut("orchRefs") {
            for r in refs.iter_mut() {
                if let Some(Value::String(n)) = r.get_mut("nodeName") {
                    *n = remote_name(cluster, n);
                }
            }
        }
    }
    if let Some(status) = object.get_mut("status").and_then(Value::as_object_mut) {
        status.remove("wireguardPublicKey");
        status.remove("wireguardPublicKeyV6");
    }
    if let Some(annotations) = object
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        annotations.retain(|k, _| !k.contains("wireguard"));
    }
}

/// An IPAM block (the resource form keeps its fields under `spec`, etcd's at the top): the
/// affinity `host:N` and borrowed addresses' `node` attributes name the renamed node.
fn block(cluster: &str, object: &mut Map<String, Value>) {
    let fields = if object.contains_key("spec") {
        match object.get_mut("spec").and_then(Value::as_object_mut) {
            Some(spec) => spec,
            None => return,
        }
    } else {
        object
    };
    if let Some(Value::String(affinity)) = fields.get_mut("affinity")
        && let Some(host) = affinity.strip_prefix("host:")
    {
        *affinity = format!("host:{}", remote_name(cluster, host));
    }
    if let Some(Value::Array(attributes)) = fields.get_mut("attributes") {
        for attribute in attributes.iter_mut() {
            if let Some(Value::String(node)) = attribute
                .get_mut("secondary")
                .and_then(|s| s.get_mut("node"))
            {
                *node = remote_name(cluster, node);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::v1::{Dialect, Syncer, convert};

    fn localized(kind: &str, ns: &str, name: &str, value: Value) -> (Localized, Value) {
        let bytes = serde_json::to_vec(&value).unwrap();
        let resource = Resource {
            kind,
            namespace: ns,
            name,
            value: &bytes,
            revision: "7",
        };
        let l = localize("cluster-b", RemoteNamespaces::Same, &resource)
            .unwrap()
            .unwrap();
        let v = serde_json::from_slice(&l.value).unwrap();
        (l, v)
    }

    #[test]
    fn vtep_mac_is_felixs() {
        // Reference values from Python's hashlib: 0x66 and SHA-1("node-1")[0..5], and of
        // "node-1-v6" for IPv6.
        assert_eq!(default_vtep_mac("node-1", false), "66:b3:68:28:39:8e");
        assert_eq!(default_vtep_mac("node-1", true), "66:24:ac:63:df:6c");
    }

    #[test]
    fn workload_endpoint_is_renamed_and_labelled() {
        let (l, v) = localized(
            "WorkloadEndpoint",
            "prod",
            "node--1-k8s-db--0-eth0",
            json!({"kind": "WorkloadEndpoint",
                "metadata": {"name": "node--1-k8s-db--0-eth0", "namespace": "prod",
                    "labels": {"app": "db", "projectcalico.org/namespace": "prod"}},
                "spec": {"node": "node-1", "orchestrator": "k8s", "pod": "db-0", "endpoint": "eth0",
                    "interfaceName": "cali1", "ipNetworks": ["10.9.0.5/32"],
                    "profiles": ["kns.prod", "ksa.prod.default"]}}),
        );
        assert_eq!(l.name, "cluster--b.node--1-k8s-db--0-eth0");
        assert_eq!(v["spec"]["node"], "cluster-b.node-1");
        assert_eq!(
            v["spec"]["profiles"],
            json!(["cluster-b.kns.prod", "cluster-b.ksa.prod.default"])
        );
        assert_eq!(v["metadata"]["labels"][CLUSTER_LABEL], "cluster-b");
        assert_eq!(v["metadata"]["labels"][NAMESPACE_LABEL], "prod");
        let converted = convert(Syncer::Felix, Dialect::V331, &l.resource("7"), false);
        assert!(converted.error.is_none(), "{:?}", converted.error);
        assert_eq!(
            converted.updates[0].key,
            "/calico/v1/host/cluster-b.node-1/workload/k8s/prod%2fdb-0/endpoint/eth0"
        );
        let value: Value =
            serde_json::from_slice(converted.updates[0].value.as_ref().unwrap()).unwrap();
        assert_eq!(value["labels"][CLUSTER_LABEL], "cluster-b");
        assert_eq!(value["profile_ids"][0], "cluster-b.kns.prod");
    }

    #[test]
    fn distinct_namespaces_rename_the_namespace_label() {
        let bytes = serde_json::to_vec(&json!({"metadata": {"labels": {
            "projectcalico.org/namespace": "prod", "app": "db"}}, "spec": {"node": "n"}}))
        .unwrap();
        let resource = Resource {
            kind: "WorkloadEndpoint",
            namespace: "prod",
            name: "n-k8s-db-eth0",
            value: &bytes,
            revision: "",
        };
        let l = localize("b", RemoteNamespaces::Distinct, &resource)
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_slice(&l.value).unwrap();
        assert_eq!(
            v["metadata"]["labels"],
            json!({"app": "db", CLUSTER_LABEL: "b", NAMESPACE_LABEL: "b.prod"})
        );
    }

    #[test]
    fn node_gets_a_vtep_mac_from_its_original_name_and_no_wireguard() {
        let (l, v) = localized(
            "Node",
            "",
            "node-1",
            json!({"kind": "Node", "metadata": {"name": "node-1"},
                "spec": {"bgp": {"ipv4Address": "192.168.1.5/24"},
                    "ipv4VXLANTunnelAddr": "10.9.0.1",
                    "wireguard": {"interfaceIPv4Address": "10.9.0.2"},
                    "orchRefs": [{"nodeName": "node-1", "orchestrator": "k8s"}]},
                "status": {"wireguardPublicKey": "x"}}),
        );
        assert_eq!(l.name, "cluster-b.node-1");
        assert_eq!(v["metadata"]["name"], "cluster-b.node-1");
        assert_eq!(
            v["spec"]["vxlanTunnelMACAddr"],
            default_vtep_mac("node-1", false)
        );
        assert!(v["spec"].get("vxlanTunnelMACAddrV6").is_none());
        assert!(v["spec"].get("wireguard").is_none());
        assert!(v["status"].get("wireguardPublicKey").is_none());
        assert_eq!(v["spec"]["orchRefs"][0]["nodeName"], "cluster-b.node-1");
        let converted = convert(Syncer::Felix, Dialect::V331, &l.resource("7"), false);
        let mac = converted
            .updates
            .iter()
            .find(|u| u.key == "/calico/v1/host/cluster-b.node-1/config/VXLANTunnelMACAddr")
            .unwrap();
        assert_eq!(
            mac.value.as_deref(),
            Some(default_vtep_mac("node-1", false).as_bytes())
        );
    }

    #[test]
    fn an_explicit_mac_is_kept() {
        let (_, v) = localized(
            "Node",
            "",
            "n",
            json!({"spec": {"ipv4VXLANTunnelAddr": "10.9.0.1", "vxlanTunnelMACAddr": "66:00:00:00:00:01"}}),
        );
        assert_eq!(v["spec"]["vxlanTunnelMACAddr"], "66:00:00:00:00:01");
    }

    #[test]
    fn blocks_name_the_renamed_node_and_pools_never_masquerade() {
        let (_, v) = localized(
            "IPAMBlock",
            "",
            "10-9-0-0-26",
            json!({"kind": "IPAMBlock", "spec": {"cidr": "10.9.0.0/26", "affinity": "host:node-1",
                "attributes": [{"handle_id": "h", "secondary": {"node": "node-2"}}]}}),
        );
        assert_eq!(v["spec"]["affinity"], "host:cluster-b.node-1");
        assert_eq!(
            v["spec"]["attributes"][0]["secondary"]["node"],
            "cluster-b.node-2"
        );
        let (_, v) = localized(
            "IPAMBlock",
            "",
            "10.9.0.0-26",
            json!({"cidr": "10.9.0.0/26", "affinity": "host:node-1"}),
        );
        assert_eq!(v["affinity"], "host:cluster-b.node-1");
        let (l, v) = localized(
            "IPPool",
            "",
            "default-ipv4-ippool",
            json!({"kind": "IPPool", "spec": {"cidr": "10.9.0.0/16", "natOutgoing": true, "vxlanMode": "Always"}}),
        );
        assert_eq!(l.name, "cluster-b.default-ipv4-ippool");
        assert_eq!(v["spec"]["natOutgoing"], false);
    }

    #[test]
    fn network_sets_are_renamed_labelled_and_inherit_their_own_namespace() {
        let value = json!({"kind": "NetworkSet", "metadata": {"name": "dbs", "namespace": "prod",
            "labels": {"role": "db"}}, "spec": {"nets": ["10.9.1.0/24"]}});
        let bytes = serde_json::to_vec(&value).unwrap();
        let resource = Resource {
            kind: "NetworkSet",
            namespace: "prod",
            name: "dbs",
            value: &bytes,
            revision: "",
        };
        for (namespaces, namespace_label) in [
            (RemoteNamespaces::Same, Some("prod")),
            (RemoteNamespaces::Distinct, Some("b.prod")),
        ] {
            let converted =
                crate::v1::convert_remote(Dialect::V331, "b", namespaces, &resource, false);
            assert!(converted.error.is_none(), "{:?}", converted.error);
            assert_eq!(converted.updates[0].key, "/calico/v1/netset/prod%2fb.dbs");
            let v: Value =
                serde_json::from_slice(converted.updates[0].value.as_ref().unwrap()).unwrap();
            assert_eq!(v["profile_ids"], json!(["b.kns.prod"]));
            assert_eq!(v["labels"][CLUSTER_LABEL], "b");
            assert_eq!(v["labels"]["role"], "db");
            assert_eq!(
                v["labels"].get(NAMESPACE_LABEL).and_then(Value::as_str),
                namespace_label
            );
        }
    }

    #[test]
    fn other_kinds_are_never_merged() {
        for kind in [
            "FelixConfiguration",
            "ClusterInformation",
            "GlobalNetworkPolicy",
            "NetworkPolicy",
            "Tier",
            "BGPConfiguration",
            "KubernetesService",
        ] {
            let resource = Resource {
                kind,
                namespace: "",
                name: "default",
                value: b"{}",
                revision: "",
            };
            assert!(
                localize("b", RemoteNamespaces::Same, &resource)
                    .unwrap()
                    .is_none(),
                "{kind}"
            );
        }
    }
}
