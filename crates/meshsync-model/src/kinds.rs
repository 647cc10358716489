//! The kinds registry: every fact meshsync knows about a kind, in one table.
//!
//! Which subscriptions carry a kind, whether remote clusters contribute it, where it lives in
//! etcd and where in the Kubernetes API used to be spread over the cache, the mesh, the etcd
//! driver and the federation controller. Each of them now asks this table, so adding a kind (or
//! a datastore) is one row here. Kinds not in the table are still served (by the `all`
//! subscription, from file datastores); they just have no other fact attached.

use crate::subscription::Subscription;

/// Names of the kinds some stage handles by name (the rest are data to every stage).
pub const WORKLOAD_ENDPOINT: &str = "WorkloadEndpoint";
pub const HOST_ENDPOINT: &str = "HostEndpoint";
pub const PROFILE: &str = "Profile";
/// Consumed by the mesh, never forwarded.
pub const REMOTE_CLUSTER_CONFIGURATION: &str = "RemoteClusterConfiguration";
/// Consumed by the mesh, never forwarded: node agents have no business with them.
pub const SECRET: &str = "Secret";
pub const SERVICE: &str = "Service";
pub const ENDPOINTS: &str = "Endpoints";
pub const ENDPOINT_SLICE: &str = "EndpointSlice";
/// Read from its own IPAM key layout in etcd, its value converted there.
pub const BLOCK_AFFINITY: &str = "BlockAffinity";

/// Whether remote clusters contribute a kind to the mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteSync {
    /// Only the local cluster's objects of this kind are served.
    Never,
    /// Every remote contributes it (WorkloadEndpoints, HostEndpoints, network sets, Profiles
    /// without rules).
    Always,
    /// Remotes with `overlayRoutingMode: Enabled` contribute it (Nodes, IPPools, IPAM blocks).
    Overlay,
    /// Every remote contributes it for the `federation` subscription (Services and endpoints).
    Federation,
}

/// Where a kind lives in an etcd datastore (Calico's etcdv3 layout, and meshsync's own layout for
/// the Kubernetes objects it needs in etcd mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EtcdLayout {
    /// `<prefix>/resources/v3/projectcalico.org/<plural>/[<namespace>/]<name>`.
    CalicoV3 { plural: &'static str },
    /// `<prefix>/resources/v3/k8s/<plural>/<namespace>/<name>`, Kubernetes JSON.
    Kubernetes { plural: &'static str },
    /// Not kept in etcd by Calico (Kubernetes-only kinds).
    None,
}

/// Where a kind comes from in the Kubernetes API (the Kubernetes datastore).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KubeApi {
    /// A `crd.projectcalico.org/v1` custom resource of this plural (v3 fields in `spec`).
    CalicoCrd { plural: &'static str },
    /// A built-in API resource, served as it is.
    Builtin {
        api_version: &'static str,
        plural: &'static str,
    },
    /// Converted by Calico's Kubernetes datastore from a built-in resource, e.g. Pods →
    /// WorkloadEndpoints.
    DerivedFrom {
        api_version: &'static str,
        plural: &'static str,
    },
    /// Not in the Kubernetes datastore.
    None,
}

/// One row of the registry.
#[derive(Debug)]
pub struct KindInfo {
    /// The kind as in `kind:` and in every key.
    pub name: &'static str,
    /// Namespaced (true) or cluster-scoped.
    pub namespaced: bool,
    /// The subscriptions (other than `all`, which carries every kind) that carry it, as a bit set
    /// of [`Subscription`] indices.
    pub subscriptions: u8,
    pub remote: RemoteSync,
    pub etcd: EtcdLayout,
    pub kube: KubeApi,
}

impl KindInfo {
    /// True if `sub` carries this kind.
    pub fn carried_by(&self, sub: Subscription) -> bool {
        sub == Subscription::ALL || self.subscriptions & sub.bit() != 0
    }
}

const FELIX: u8 = Subscription::FELIX.bit();
const BGP: u8 = Subscription::BGP.bit();
const TUNNEL: u8 = Subscription::TUNNEL_IP_ALLOCATION.bit();
const NODE_STATUS: u8 = Subscription::NODE_STATUS.bit();
const FEDERATION: u8 = Subscription::FEDERATION.bit();

/// A Calico v3 kind: etcd plural = CRD plural.
const fn calico(
    name: &'static str,
    plural: &'static str,
    namespaced: bool,
    subscriptions: u8,
    remote: RemoteSync,
) -> KindInfo {
    KindInfo {
        name,
        namespaced,
        subscriptions,
        remote,
        etcd: EtcdLayout::CalicoV3 { plural },
        kube: KubeApi::CalicoCrd { plural },
    }
}

use RemoteSync::{Always, Federation, Never, Overlay};

/// Every kind meshsync knows. Order is irrelevant; names are unique.
pub static KINDS: &[KindInfo] = &[
    calico("BGPPeer", "bgppeers", false, FELIX | BGP, Never),
    calico(
        "BGPConfiguration",
        "bgpconfigurations",
        false,
        FELIX | BGP,
        Never,
    ),
    calico("BGPFilter", "bgpfilters", false, BGP, Never),
    calico("BlockAffinity", "blockaffinities", false, BGP, Never),
    calico(
        "CalicoNodeStatus",
        "caliconodestatuses",
        false,
        NODE_STATUS,
        Never,
    ),
    calico(
        "ClusterInformation",
        "clusterinformations",
        false,
        FELIX,
        Never,
    ),
    calico(
        "FelixConfiguration",
        "felixconfigurations",
        false,
        FELIX,
        Never,
    ),
    calico(
        "GlobalNetworkPolicy",
        "globalnetworkpolicies",
        false,
        FELIX,
        Never,
    ),
    calico(
        "StagedGlobalNetworkPolicy",
        "stagedglobalnetworkpolicies",
        false,
        FELIX,
        Never,
    ),
    calico(
        "GlobalNetworkSet",
        "globalnetworksets",
        false,
        FELIX,
        Always,
    ),
    calico(HOST_ENDPOINT, "hostendpoints", false, FELIX, Always),
    calico("IPPool", "ippools", false, FELIX | BGP | TUNNEL, Overlay),
    calico("IPReservation", "ipreservations", false, 0, Never),
    calico("IPAMConfig", "ipamconfigs", false, 0, Never),
    calico("IPAMConfiguration", "ipamconfigurations", false, 0, Never),
    calico(
        "KubeControllersConfiguration",
        "kubecontrollersconfigurations",
        false,
        0,
        Never,
    ),
    KindInfo {
        kube: KubeApi::DerivedFrom {
            api_version: "v1",
            plural: "nodes",
        },
        ..calico("Node", "nodes", false, FELIX | BGP | TUNNEL, Overlay)
    },
    KindInfo {
        kube: KubeApi::DerivedFrom {
            api_version: "v1",
            plural: "namespaces",
        },
        ..calico(PROFILE, "profiles", false, FELIX, Always)
    },
    // Consumed by the mesh, never forwarded.
    calico(
        REMOTE_CLUSTER_CONFIGURATION,
        "remoteclusterconfigurations",
        false,
        0,
        Never,
    ),
    calico("Tier", "tiers", false, FELIX, Never),
    // Also at `<prefix>/ipam/v2/assignment/ipv{4,6}/block/<cidr>` (Calico's own IPAM layout).
    calico("IPAMBlock", "ipamblocks", false, FELIX, Overlay),
    calico("NetworkPolicy", "networkpolicies", true, FELIX, Never),
    calico(
        "StagedNetworkPolicy",
        "stagednetworkpolicies",
        true,
        FELIX,
        Never,
    ),
    calico(
        "StagedKubernetesNetworkPolicy",
        "stagedkubernetesnetworkpolicies",
        true,
        FELIX,
        Never,
    ),
    calico("NetworkSet", "networksets", true, FELIX, Always),
    KindInfo {
        kube: KubeApi::DerivedFrom {
            api_version: "v1",
            plural: "pods",
        },
        ..calico(WORKLOAD_ENDPOINT, "workloadendpoints", true, FELIX, Always)
    },
    calico("LiveMigration", "livemigrations", true, FELIX, Never),
    KindInfo {
        kube: KubeApi::DerivedFrom {
            api_version: "networking.k8s.io/v1",
            plural: "networkpolicies",
        },
        ..calico(
            "KubernetesNetworkPolicy",
            "kubernetesnetworkpolicies",
            true,
            FELIX,
            Never,
        )
    },
    KindInfo {
        kube: KubeApi::DerivedFrom {
            api_version: "discovery.k8s.io/v1",
            plural: "endpointslices",
        },
        ..calico(
            "KubernetesEndpointSlice",
            "kubernetesendpointslices",
            true,
            FELIX,
            Never,
        )
    },
    KindInfo {
        kube: KubeApi::DerivedFrom {
            api_version: "v1",
            plural: "services",
        },
        ..calico("KubernetesService", "kubernetesservice", true, FELIX, Never)
    },
    KindInfo {
        name: "KubernetesClusterNetworkPolicy",
        namespaced: false,
        subscriptions: FELIX,
        remote: Never,
        etcd: EtcdLayout::None,
        kube: KubeApi::DerivedFrom {
            api_version: "policy.networking.k8s.io/v1alpha1",
            plural: "adminnetworkpolicies",
        },
    },
    kubernetes(SECRET, "v1", "secrets", 0, Never),
    kubernetes(SERVICE, "v1", "services", FEDERATION, Federation),
    kubernetes(ENDPOINTS, "v1", "endpoints", FEDERATION, Federation),
    kubernetes(
        ENDPOINT_SLICE,
        "discovery.k8s.io/v1",
        "endpointslices",
        FEDERATION,
        Federation,
    ),
];

/// A namespaced built-in Kubernetes kind, kept in etcd under meshsync's `k8s` layout.
const fn kubernetes(
    name: &'static str,
    api_version: &'static str,
    plural: &'static str,
    subscriptions: u8,
    remote: RemoteSync,
) -> KindInfo {
    KindInfo {
        name,
        namespaced: true,
        subscriptions,
        remote,
        etcd: EtcdLayout::Kubernetes { plural },
        kube: KubeApi::Builtin {
            api_version,
            plural,
        },
    }
}

/// The registry row of `kind`, if meshsync knows it.
pub fn lookup(kind: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.name == kind)
}

/// The kinds a remote cluster contributes, with or without overlay routing.
pub fn remote_kinds(overlay: bool) -> impl Iterator<Item = &'static str> {
    KINDS
        .iter()
        .filter(move |k| match k.remote {
            Always | Federation => true,
            Overlay => overlay,
            Never => false,
        })
        .map(|k| k.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The subscription lists as they were before the registry (Typha's syncers), kind by kind.
    #[test]
    fn subscriptions_carry_exactly_their_syncers_kinds() {
        let felix = [
            "ClusterInformation",
            "FelixConfiguration",
            "GlobalNetworkPolicy",
            "StagedGlobalNetworkPolicy",
            "GlobalNetworkSet",
            "IPPool",
            "Node",
            "Profile",
            "WorkloadEndpoint",
            "NetworkPolicy",
            "StagedNetworkPolicy",
            "StagedKubernetesNetworkPolicy",
            "NetworkSet",
            "Tier",
            "HostEndpoint",
            "BGPConfiguration",
            "BGPPeer",
            "LiveMigration",
            "KubernetesNetworkPolicy",
            "KubernetesClusterNetworkPolicy",
            "KubernetesEndpointSlice",
            "KubernetesService",
            "IPAMBlock",
        ];
        let bgp = [
            "IPPool",
            "BGPConfiguration",
            "Node",
            "BGPPeer",
            "BGPFilter",
            "BlockAffinity",
        ];
        let expected: [(Subscription, &[&str]); 5] = [
            (Subscription::FELIX, &felix),
            (Subscription::BGP, &bgp),
            (Subscription::TUNNEL_IP_ALLOCATION, &["IPPool", "Node"]),
            (Subscription::NODE_STATUS, &["CalicoNodeStatus"]),
            (
                Subscription::FEDERATION,
                &["Service", "Endpoints", "EndpointSlice"],
            ),
        ];
        for (sub, kinds) in expected {
            let want: BTreeSet<&str> = kinds.iter().copied().collect();
            let got: BTreeSet<&str> = KINDS
                .iter()
                .filter(|k| k.carried_by(sub))
                .map(|k| k.name)
                .collect();
            assert_eq!(got, want, "{sub}");
        }
        assert!(KINDS.iter().all(|k| k.carried_by(Subscription::ALL)));
    }

    #[test]
    fn names_are_unique_and_remote_kinds_are_the_meshs() {
        let names: BTreeSet<&str> = KINDS.iter().map(|k| k.name).collect();
        assert_eq!(names.len(), KINDS.len());
        let plain: BTreeSet<&str> = remote_kinds(false).collect();
        assert_eq!(
            plain,
            BTreeSet::from([
                "WorkloadEndpoint",
                "HostEndpoint",
                "Profile",
                "NetworkSet",
                "GlobalNetworkSet",
                "Service",
                "Endpoints",
                "EndpointSlice"
            ])
        );
        let overlay: BTreeSet<&str> = remote_kinds(true).collect();
        assert_eq!(overlay.len(), plain.len() + 3);
        assert!(
            ["Node", "IPPool", "IPAMBlock"]
                .iter()
                .all(|k| overlay.contains(k))
        );
    }
}
