//! The objects written for a [`DesiredEndpoints`]: a `v1` `Endpoints` (what Calico writes) and
//! `discovery.k8s.io/v1` EndpointSlices (what current Kubernetes reads).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Map, Value, json};

use crate::SERVICE_SELECTOR_ANNOTATION;
use crate::compute::DesiredEndpoints;
use crate::types::{EndpointAddress, EndpointPort};

/// EndpointSlice label naming the Service the slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// EndpointSlice label naming the controller that manages the slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Our value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "meshsync-federation";

/// Whether an existing `Endpoints` or `EndpointSlice` object (JSON) is managed by the federation
/// controller, i.e. may be updated or deleted by it. As in Calico, an object is managed while it
/// carries the [`SERVICE_SELECTOR_ANNOTATION`] annotation; an EndpointSlice must additionally be
/// labelled `endpointslice.kubernetes.io/managed-by: meshsync-federation`. Removing the annotation
/// by hand hands the object back to the user.
pub fn is_managed(object: &Value) -> bool {
    let metadata = &object["metadata"];
    if metadata["annotations"][SERVICE_SELECTOR_ANNOTATION]
        .as_str()
        .is_none()
    {
        return false;
    }
    match object["kind"].as_str() {
        Some("EndpointSlice") => {
            metadata["labels"][MANAGED_BY_LABEL].as_str() == Some(MANAGED_BY_VALUE)
        }
        _ => true,
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn of(ip: &str) -> Family {
        match ip.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => Family::V4,
            Ok(IpAddr::V6(_)) => Family::V6,
            Err(_) if ip.contains(':') => Family::V6,
            Err(_) => Family::V4,
        }
    }

    fn address_type(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

fn slice_endpoint(addr: &EndpointAddress, ready: bool) -> Value {
    let mut ep = Map::new();
    ep.insert("addresses".into(), json!([addr.ip]));
    ep.insert("conditions".into(), json!({ "ready": ready }));
    if let Some(hostname) = &addr.hostname {
        ep.insert("hostname".into(), json!(hostname));
    }
    if let Some(target_ref) = &addr.target_ref {
        ep.insert("targetRef".into(), json!(target_ref));
    }
    if let Some(node_name) = &addr.node_name {
        ep.insert("nodeName".into(), json!(node_name));
    }
    Value::Object(ep)
}

impl DesiredEndpoints {
    fn annotations(&self) -> Value {
        json!({ SERVICE_SELECTOR_ANNOTATION: self.selector_annotation })
    }

    /// The `v1` `Endpoints` object: name and namespace of the federated Service, the selector
    /// annotation, and the subsets (the `subsets` field is omitted when there are none, as
    /// Kubernetes serialises it).
    pub fn to_endpoints_json(&self) -> Value {
        let mut obj = json!({
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "annotations": self.annotations(),
            },
        });
        if !self.subsets.is_empty() {
            obj["subsets"] = json!(self.subsets);
        }
        obj
    }

    /// `discovery.k8s.io/v1` EndpointSlices for the same endpoints: one per address family present
    /// and distinct port set.
    ///
    /// * Addresses are split by family (IPv4, IPv6); within a family, by the port set of the
    ///   subset they come from. An address in two subsets appears in both slices.
    /// * Naming: `<service>-federated-<ipv4|ipv6>` when the family has a single port set;
    ///   otherwise `<service>-federated-<family>-<n>` with `n` = 1, 2, … in port-set order
    ///   (ports compared as in [`crate::repack_subsets`]).
    /// * Labels `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by:
    ///   meshsync-federation`; the selector annotation as on the Endpoints.
    /// * Endpoints appear in subset order, ready before not-ready, each with `addresses: [ip]`,
    ///   `conditions.ready`, and `hostname`/`targetRef`/`nodeName` when set.
    ///
    /// With zero subsets there are no slices. Slices are returned IPv4 first.
    pub fn to_endpoint_slices_json(&self) -> Vec<Value> {
        let mut groups: BTreeMap<(Family, &[EndpointPort]), Vec<Value>> = BTreeMap::new();
        for subset in &self.subsets {
            let ports = subset.ports.as_slice();
            let all = subset
                .addresses
                .iter()
                .map(|a| (a, true))
                .chain(subset.not_ready_addresses.iter().map(|a| (a, false)));
            for (addr, ready) in all {
                groups
                    .entry((Family::of(&addr.ip), ports))
                    .or_default()
                    .push(slice_endpoint(addr, ready));
            }
        }

        let mut per_family: BTreeMap<Family, usize> = BTreeMap::new();
        for (family, _) in groups.keys() {
            *per_family.entry(*family).or_default() += 1;
        }

        let mut index: BTreeMap<Family, usize> = BTreeMap::new();
        groups
            .into_iter()
            .map(|((family, ports), endpoints)| {
                let n = index.entry(family).or_default();
                *n += 1;
                let name = if per_family[&family] == 1 {
                    format!("{}-federated-{}", self.name, family.suffix())
                } else {
                    format!("{}-federated-{}-{}", self.name, family.suffix(), n)
                };
                json!({
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": name,
                        "namespace": self.namespace,
                        "labels": {
                            SERVICE_NAME_LABEL: self.name,
                            MANAGED_BY_LABEL: MANAGED_BY_VALUE,
                        },
                        "annotations": self.annotations(),
                    },
                    "addressType": family.address_type(),
                    "endpoints": endpoints,
                    "ports": ports,
                })
            })
            .collect()
    }
}
