//! Calico's v1 data model: what Typha's syncers send Felix, confd and calico-node.
//!
//! Typha does not forward v3 resources as they are: each syncer runs Calico's *update processors*,
//! which turn one v3 resource into zero or more v1 key/value pairs (per-field config keys, host IP
//! keys, workload endpoint keys with profile ids, policy keys with the namespace selector
//! appended, …), and clients parse keys by their path. [`convert`] does the same, statelessly:
//! the same v3 resource always gives the same keys, and a deleted resource gives the deletions of
//! every key it could have produced, computed from its key and its last value.
//!
//! Files by concept: [`keys`] (key paths and their escaping), and one file per family of kinds,
//! each with a `convert` that answers for the kinds it knows (`None` for the others).

mod config;
mod emit;
mod endpoints;
mod ipam;
pub mod keys;
mod netset;
mod node;
mod passthrough;
mod policy;
mod profile;
pub mod remote;
mod rules;
mod v3read;

use bytes::Bytes;

/// The four syncer types of Typha's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Syncer {
    Felix,
    Bgp,
    TunnelIpAllocation,
    NodeStatus,
}

impl Syncer {
    /// The syncer named in a client hello (empty means `felix`, as in Typha).
    pub fn by_name(name: &str) -> Option<Syncer> {
        match name {
            "" | "felix" => Some(Syncer::Felix),
            "bgp" => Some(Syncer::Bgp),
            "tunnel-ip-allocation" => Some(Syncer::TunnelIpAllocation),
            "node-status" => Some(Syncer::NodeStatus),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Syncer::Felix => "felix",
            Syncer::Bgp => "bgp",
            Syncer::TunnelIpAllocation => "tunnel-ip-allocation",
            Syncer::NodeStatus => "node-status",
        }
    }
}

/// Which policy keys a client parses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Calico v3.31: `/calico/v1/policy/tier/<tier>/policy/<name>`.
    V331,
    /// Calico v3.32+ (`SupportsModernPolicyKeys` in the hello): `/calico/v1/policy/<kind>/<ns>/<name>`.
    Modern,
}

/// A v3 resource as the cache holds it: its key and its JSON value.
#[derive(Clone, Copy, Debug)]
pub struct Resource<'a> {
    /// The kind, as meshsync's keys name it (`WorkloadEndpoint`, `FelixConfiguration`, …).
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    /// The v3 JSON; for a deletion, the last value the cache held.
    pub value: &'a [u8],
    /// The datastore revision of this version.
    pub revision: &'a str,
}

/// One v1 key/value pair; `value: None` is a deletion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V1Update {
    /// The key path, exactly as Calico's `KeyToDefaultPath` renders it.
    pub key: String,
    /// The serialized value (JSON, or a raw string for config, host IP and ready-flag keys).
    pub value: Option<Bytes>,
    /// For v3 resources passed through: their resource version, moved out of the JSON as Typha
    /// does; empty otherwise.
    pub v3_resource_version: String,
}

/// Why a resource could not be converted. Its keys are still deleted (as Typha's validation
/// filter turns an invalid value into a deletion), and the error is logged by the caller.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{kind} {name}: value is not valid JSON: {source}")]
    Json {
        kind: String,
        name: String,
        source: serde_json::Error,
    },
    #[error("{kind} {name}: {reason}")]
    Invalid {
        kind: String,
        name: String,
        reason: String,
    },
}

/// What [`convert`] made of one resource.
#[derive(Debug, Default)]
pub struct Converted {
    pub updates: Vec<V1Update>,
    pub error: Option<ConvertError>,
}

/// The v1 updates `syncer` sends for `resource` (`deleted`: its deletion) in `dialect`. Kinds the
/// syncer does not carry give nothing.
pub fn convert(
    syncer: Syncer,
    dialect: Dialect,
    resource: &Resource<'_>,
    deleted: bool,
) -> Converted {
    const FAMILIES: [Family; 8] = [
        config::convert,
        node::convert,
        ipam::convert,
        passthrough::convert,
        endpoints::convert,
        profile::convert,
        policy::convert,
        netset::convert,
    ];
    FAMILIES
        .iter()
        .find_map(|family| family(syncer, dialect, resource, deleted))
        .unwrap_or_default()
}

/// A family's conversion: `None` when the kind is not one of its kinds (or not one `syncer`
/// carries).
type Family = fn(Syncer, Dialect, &Resource<'_>, bool) -> Option<Converted>;

/// What the felix syncer sends for `resource` of the remote cluster `cluster`: the resource
/// renamed and relabelled by [`remote::localize`], then converted as a local one. Other syncers,
/// and kinds never merged from a remote, give nothing.
pub fn convert_remote(
    dialect: Dialect,
    cluster: &str,
    namespaces: remote::RemoteNamespaces,
    resource: &Resource<'_>,
    deleted: bool,
) -> Converted {
    match remote::localize(cluster, namespaces, resource) {
        Ok(Some(local)) => {
            let mut converted = convert(
                Syncer::Felix,
                dialect,
                &local.resource(resource.revision),
                deleted,
            );
            if local.kind == "NetworkSet" {
                remote::rename_profiles(cluster, namespaces, &mut converted);
            }
            converted
        }
        Ok(None) => Converted::default(),
        Err(error) => Converted {
            updates: Vec::new(),
            error: Some(error),
        },
    }
}
