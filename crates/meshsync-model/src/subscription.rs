//! Subscription types ("syncer types", as in Typha): the names agents ask for, and which kinds
//! each carries.
//!
//! A subscription is a filter over the one cache, never a second copy of the data. Which kinds a
//! subscription carries is a column of the kinds registry ([`crate::kinds`]); this module names the
//! types and answers "does this subscription carry that kind".

use std::fmt;

use crate::kinds;

/// The subscription types, in the order of [`Subscription`] indices. An empty name means `felix`.
pub const SUBSCRIPTION_NAMES: [&str; 6] = [
    "felix",
    "bgp",
    "tunnel-ip-allocation",
    "node-status",
    "federation",
    "all",
];

/// Number of subscription types (size of per-subscription frame arrays).
pub const SUBSCRIPTION_COUNT: usize = SUBSCRIPTION_NAMES.len();

/// A subscription type: an index into [`SUBSCRIPTION_NAMES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subscription(usize);

/// An unknown subscription name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownSubscription(pub String);

impl fmt::Display for UnknownSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown subscription type {:?}; expected one of: {}",
            self.0,
            SUBSCRIPTION_NAMES.join(", ")
        )
    }
}

impl std::error::Error for UnknownSubscription {}

impl Subscription {
    /// Felix's syncer (Typha passes isLeader=true), plus the Kubernetes kinds Felix consumes in
    /// KDD mode and IPAM blocks for Calico IPAM.
    pub const FELIX: Subscription = Subscription(0);
    /// confd's BGP syncer.
    pub const BGP: Subscription = Subscription(1);
    /// calico-node's tunnel address allocator.
    pub const TUNNEL_IP_ALLOCATION: Subscription = Subscription(2);
    /// calico-node's status reporter.
    pub const NODE_STATUS: Subscription = Subscription(3);
    /// The federated services controller: Services and their endpoints from every cluster.
    pub const FEDERATION: Subscription = Subscription(4);
    /// Every kind, including kinds no other type knows.
    pub const ALL: Subscription = Subscription(5);

    /// Every subscription type.
    pub fn all_types() -> impl Iterator<Item = Subscription> {
        (0..SUBSCRIPTION_COUNT).map(Subscription)
    }

    /// Looks a subscription up by name. An empty name means `felix`, as in Typha.
    pub fn by_name(name: &str) -> Result<Subscription, UnknownSubscription> {
        let name = if name.is_empty() { "felix" } else { name };
        SUBSCRIPTION_NAMES
            .iter()
            .position(|s| *s == name)
            .map(Subscription)
            .ok_or_else(|| UnknownSubscription(name.to_string()))
    }

    /// Index into per-subscription arrays.
    pub fn index(self) -> usize {
        self.0
    }

    /// This subscription's bit in [`kinds::KindInfo::subscriptions`].
    pub(crate) const fn bit(self) -> u8 {
        1 << self.0
    }

    pub fn name(self) -> &'static str {
        SUBSCRIPTION_NAMES[self.0]
    }

    /// True if this subscription carries resources of `kind`.
    pub fn includes(self, kind: &str) -> bool {
        self == Subscription::ALL
            || kinds::lookup(kind).is_some_and(|k| k.subscriptions & self.bit() != 0)
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
        assert_eq!(felix, Subscription::FELIX);
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
        for (i, name) in SUBSCRIPTION_NAMES.iter().enumerate() {
            assert_eq!(Subscription::by_name(name).unwrap().index(), i);
        }
    }
}
