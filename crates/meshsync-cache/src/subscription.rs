//! Subscription types ("syncer types", as in Typha): which kinds each kind of agent receives.
//!
//! A subscription is a filter over the one cache, never a second copy of the data. This table is
//! the only place that says which kinds a subscription carries; frames are built once per batch per
//! subscription from it.

use std::fmt;

/// Kinds carried by the `felix` subscription: Felix's syncer (Typha passes isLeader=true), plus the
/// Kubernetes kinds Felix consumes in KDD mode and IPAM blocks for Calico IPAM.
const FELIX: &[&str] = &[
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

/// confd's BGP syncer.
const BGP: &[&str] = &[
    "IPPool",
    "BGPConfiguration",
    "Node",
    "BGPPeer",
    "BGPFilter",
    "BlockAffinity",
];

/// calico-node's tunnel address allocator.
const TUNNEL_IP_ALLOCATION: &[&str] = &["IPPool", "Node"];

/// calico-node's status reporter.
const NODE_STATUS: &[&str] = &["CalicoNodeStatus"];

/// The federated services controller: Services and their endpoints from every cluster.
const FEDERATION: &[&str] = &["Service", "Endpoints", "EndpointSlice"];

/// One row of the subscription table.
#[derive(Debug)]
pub struct SubscriptionSpec {
    /// The name agents put in `SubscribeRequest.subscription`.
    pub name: &'static str,
    /// The kinds carried; `None` carries every kind.
    kinds: Option<&'static [&'static str]>,
}

/// The subscription table, in the order of [`Subscription`] indices.
pub static SUBSCRIPTIONS: [SubscriptionSpec; 6] = [
    SubscriptionSpec {
        name: "felix",
        kinds: Some(FELIX),
    },
    SubscriptionSpec {
        name: "bgp",
        kinds: Some(BGP),
    },
    SubscriptionSpec {
        name: "tunnel-ip-allocation",
        kinds: Some(TUNNEL_IP_ALLOCATION),
    },
    SubscriptionSpec {
        name: "node-status",
        kinds: Some(NODE_STATUS),
    },
    SubscriptionSpec {
        name: "federation",
        kinds: Some(FEDERATION),
    },
    SubscriptionSpec {
        name: "all",
        kinds: None,
    },
];

/// Number of subscription types (size of per-subscription frame arrays).
pub const SUBSCRIPTION_COUNT: usize = SUBSCRIPTIONS.len();

/// A subscription type: an index into [`SUBSCRIPTIONS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subscription(usize);

/// An unknown subscription name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownSubscription(pub String);

impl fmt::Display for UnknownSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = SUBSCRIPTIONS.iter().map(|s| s.name).collect();
        write!(
            f,
            "unknown subscription type {:?}; expected one of: {}",
            self.0,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownSubscription {}

impl Subscription {
    /// The `all` subscription (every kind).
    pub const ALL: Subscription = Subscription(5);

    /// Every subscription type.
    pub fn all_types() -> impl Iterator<Item = Subscription> {
        (0..SUBSCRIPTION_COUNT).map(Subscription)
    }

    /// Looks a subscription up by name. An empty name means `felix`, as in Typha.
    pub fn by_name(name: &str) -> Result<Subscription, UnknownSubscription> {
        let name = if name.is_empty() { "felix" } else { name };
        SUBSCRIPTIONS
            .iter()
            .position(|s| s.name == name)
            .map(Subscription)
            .ok_or_else(|| UnknownSubscription(name.to_string()))
    }

    /// Index into per-subscription arrays.
    pub fn index(self) -> usize {
        self.0
    }

    pub fn name(self) -> &'static str {
        SUBSCRIPTIONS[self.0].name
    }

    /// True if this subscription carries resources of `kind`.
    pub fn includes(self, kind: &str) -> bool {
        match SUBSCRIPTIONS[self.0].kinds {
            None => true,
            Some(kinds) => kinds.contains(&kind),
        }
    }
}

impl fmt::Display for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_filter() {
        let felix = Subscription::by_name("").unwrap();
        assert_eq!(felix.name(), "felix");
        assert!(felix.includes("WorkloadEndpoint"));
        assert!(!felix.includes("BlockAffinity"));
        let bgp = Subscription::by_name("bgp").unwrap();
        assert!(bgp.includes("BlockAffinity"));
        let all = Subscription::by_name("all").unwrap();
        assert!(all.includes("AnythingAtAll"));
        assert_eq!(Subscription::ALL, all);
        let err = Subscription::by_name("nope").unwrap_err();
        assert!(err.to_string().contains("felix, bgp"));
        assert_eq!(Subscription::all_types().count(), SUBSCRIPTION_COUNT);
    }
}
