//! The parts of Kubernetes `Service` and `Endpoints` objects that the federation rules read, with
//! Kubernetes JSON field names so they round-trip through the API representation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

fn tcp() -> String {
    "TCP".to_owned()
}

/// One entry of a Service's `spec.ports`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Port name; `""` when unnamed (Kubernetes allows that for single-port services).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `TCP`, `UDP` or `SCTP`; Kubernetes defaults it to `TCP`.
    #[serde(default = "tcp")]
    pub protocol: String,
    /// The service port number.
    pub port: i32,
    /// `targetPort` as given (a number or a named port), kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<serde_json::Value>,
}

/// A reference to the object (usually a Pod) behind an endpoint address.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// One address of an Endpoints subset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointAddress {
    pub ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<ObjectReference>,
}

impl EndpointAddress {
    /// The `targetRef.uid`, or `""` without one: the second half of the identity key that
    /// `RepackSubsets` de-duplicates addresses by.
    pub fn uid(&self) -> &str {
        self.target_ref
            .as_ref()
            .and_then(|r| r.uid.as_deref())
            .unwrap_or("")
    }
}

/// One port of an Endpoints subset. The derived order is (name, port, protocol, appProtocol),
/// the order ports are sorted in by [`crate::repack_subsets`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: i32,
    #[serde(default = "tcp")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

impl EndpointPort {
    /// The port name, `""` when unnamed.
    pub fn name_str(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}

/// One subset of an Endpoints object: every address offers every port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSubset {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<EndpointAddress>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ready_addresses: Vec<EndpointAddress>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

/// What the rules need of a Service, tagged with its cluster ([`crate::LOCAL_CLUSTER`] = `""`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceInfo {
    pub cluster: String,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `spec.selector` (empty when absent).
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<ServicePort>,
}

/// What the rules need of an Endpoints object, tagged with its cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointsInfo {
    pub cluster: String,
    pub namespace: String,
    pub name: String,
    pub subsets: Vec<EndpointSubset>,
}

#[derive(Deserialize)]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct ServiceSpec {
    selector: Option<BTreeMap<String, String>>,
    ports: Option<Vec<ServicePort>>,
}

#[derive(Deserialize)]
struct ServiceObject {
    metadata: Metadata,
    spec: Option<ServiceSpec>,
}

#[derive(Deserialize)]
struct EndpointsObject {
    metadata: Metadata,
    subsets: Option<Vec<EndpointSubset>>,
}

fn name_and_namespace(kind: &str, metadata: &mut Metadata) -> Result<(String, String), String> {
    let name = metadata
        .name
        .take()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("{kind} has no metadata.name"))?;
    let namespace = metadata
        .namespace
        .take()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("{kind} {name} has no metadata.namespace"))?;
    Ok((name, namespace))
}

impl ServiceInfo {
    /// Parses a Kubernetes `Service` (JSON) belonging to `cluster` (`""` for the local cluster).
    /// Fields the rules do not use are ignored; missing maps and lists read as empty.
    pub fn from_json(cluster: &str, value: &[u8]) -> Result<ServiceInfo, String> {
        let mut obj: ServiceObject =
            serde_json::from_slice(value).map_err(|e| format!("invalid Service JSON: {e}"))?;
        let (name, namespace) = name_and_namespace("Service", &mut obj.metadata)?;
        let spec = obj.spec.unwrap_or(ServiceSpec {
            selector: None,
            ports: None,
        });
        Ok(ServiceInfo {
            cluster: cluster.to_owned(),
            namespace,
            name,
            labels: obj.metadata.labels.unwrap_or_default(),
            annotations: obj.metadata.annotations.unwrap_or_default(),
            selector: spec.selector.unwrap_or_default(),
            ports: spec.ports.unwrap_or_default(),
        })
    }
}

impl EndpointsInfo {
    /// Parses a Kubernetes `Endpoints` (JSON) belonging to `cluster` (`""` for the local cluster).
    pub fn from_json(cluster: &str, value: &[u8]) -> Result<EndpointsInfo, String> {
        let mut obj: EndpointsObject =
            serde_json::from_slice(value).map_err(|e| format!("invalid Endpoints JSON: {e}"))?;
        let (name, namespace) = name_and_namespace("Endpoints", &mut obj.metadata)?;
        Ok(EndpointsInfo {
            cluster: cluster.to_owned(),
            namespace,
            name,
            subsets: obj.subsets.unwrap_or_default(),
        })
    }
}
