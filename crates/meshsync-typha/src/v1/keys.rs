//! Key paths of the v1 model and their escaping, as Calico's `model.KeyToDefaultPath` renders
//! them.
//!
//! Typha sends every key as the string `KeyToDefaultPath` makes of it, and the clients' dedupe
//! buffers key on that exact string, so a path that differs only in escaping is a *different*
//! key to Felix (it would never delete the other one). Hence one function per key type here, and
//! nothing else in the crate builds a path.
//!
//! Calico's escaping is not uniform, and these functions follow it segment by segment:
//! - `escape_name` (`%` → `%25`, then `/` → `%2f`) applies to workload endpoint orchestrator,
//!   workload and endpoint ids, host endpoint ids, profile names, v3.31 policy names and
//!   network set names;
//! - hostnames, config names, tier names, v3.32 policy key segments and v3 resource names are
//!   written as they are (a `/` in them would make an unparsable key, which Calico's own
//!   validation prevents upstream);
//! - CIDRs (pools, blocks, affinities) are written in Go's canonical form with the `/` of the
//!   prefix turned into `-`, under `v4`/`v6` from the address family.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Dialect;

/// Calico's `escapeName`: `%` becomes `%25`, then `/` becomes `%2f` (lower case, as Calico
/// writes it).
pub fn escape_name(name: &str) -> String {
    name.replace('%', "%25").replace('/', "%2f")
}

/// `WorkloadEndpointKey`: `/calico/v1/host/<host>/workload/<orch>/<workload>/endpoint/<ep>`. The
/// host is not escaped; the other three segments are.
pub fn workload_endpoint(host: &str, orchestrator: &str, workload: &str, endpoint: &str) -> String {
    format!(
        "/calico/v1/host/{host}/workload/{}/{}/endpoint/{}",
        escape_name(orchestrator),
        escape_name(workload),
        escape_name(endpoint)
    )
}

/// `HostEndpointKey`: `/calico/v1/host/<host>/endpoint/<escaped id>`.
pub fn host_endpoint(host: &str, endpoint: &str) -> String {
    format!("/calico/v1/host/{host}/endpoint/{}", escape_name(endpoint))
}

/// `ProfileKey`, the common parent of a profile's labels and rules keys.
pub fn profile(name: &str) -> String {
    format!("/calico/v1/policy/profile/{}", escape_name(name))
}

/// `ProfileLabelsKey`: `/calico/v1/policy/profile/<escaped name>/labels`.
pub fn profile_labels(name: &str) -> String {
    format!("{}/labels", profile(name))
}

/// `ProfileRulesKey`: `/calico/v1/policy/profile/<escaped name>/rules`.
pub fn profile_rules(name: &str) -> String {
    format!("{}/rules", profile(name))
}

/// v3.31's `PolicyKey{Tier, Name}`: `/calico/v1/policy/tier/<tier>/policy/<escaped name>`, where
/// the v1 name is what the policy processors make of the v3 one (`<ns>/<name>` for namespaced
/// kinds, `staged:` in front for staged kinds, …) — the caller's business.
pub fn policy_v331(tier: &str, v1_name: &str) -> String {
    format!(
        "/calico/v1/policy/tier/{tier}/policy/{}",
        escape_name(v1_name)
    )
}

/// v3.32's `PolicyKey{Kind, Namespace, Name}`: `/calico/v1/policy/<kind>/<namespace>/<name>`,
/// nothing escaped; a global policy has an empty namespace segment (`…/GlobalNetworkPolicy//gnp`).
pub fn policy_modern(kind: &str, namespace: &str, name: &str) -> String {
    format!("/calico/v1/policy/{kind}/{namespace}/{name}")
}

/// The policy key in `dialect`: v3.31's from `tier` and `v1_name`, the modern one from `kind`,
/// `namespace` and the v3 `name`.
pub fn policy(
    dialect: Dialect,
    tier: &str,
    v1_name: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> String {
    match dialect {
        Dialect::V331 => policy_v331(tier, v1_name),
        Dialect::Modern => policy_modern(kind, namespace, name),
    }
}

/// `TierKey`: `/calico/v1/policy/tier/<tier>/metadata` (tier name not escaped).
pub fn tier(name: &str) -> String {
    format!("/calico/v1/policy/tier/{name}/metadata")
}

/// `NetworkSetKey`: `/calico/v1/netset/<escaped name>` (`<ns>/<name>` for a namespaced set).
pub fn network_set(name: &str) -> String {
    format!("/calico/v1/netset/{}", escape_name(name))
}

/// `GlobalConfigKey`: `/calico/v1/config/<name>`.
pub fn global_config(name: &str) -> String {
    format!("/calico/v1/config/{name}")
}

/// `HostConfigKey`: `/calico/v1/host/<host>/config/<name>`.
pub fn host_config(host: &str, name: &str) -> String {
    format!("/calico/v1/host/{host}/config/{name}")
}

/// `HostIPKey`: `/calico/v1/host/<host>/bird_ip`.
pub fn host_ip(host: &str) -> String {
    format!("/calico/v1/host/{host}/bird_ip")
}

/// `ReadyFlagKey`: `/calico/v1/Ready`.
pub fn ready_flag() -> String {
    "/calico/v1/Ready".to_owned()
}

/// `WireguardKey`: `/calico/v1/host/<node>/wireguard`.
pub fn wireguard(node: &str) -> String {
    format!("/calico/v1/host/{node}/wireguard")
}

/// `IPPoolKey`: `/calico/v1/ipam/v<4|6>/pool/<cidr with - for />`; `None` if `cidr` is not a
/// CIDR Go's `net.ParseCIDR` accepts.
pub fn ip_pool(cidr: &str) -> Option<String> {
    let cidr = Cidr::parse(cidr)?;
    Some(format!(
        "/calico/v1/ipam/v{}/pool/{}",
        cidr.version(),
        cidr.segment()
    ))
}

/// `BlockKey`: `/calico/ipam/v2/assignment/ipv<4|6>/block/<cidr with - for />`.
pub fn block(cidr: &str) -> Option<String> {
    let cidr = Cidr::parse(cidr)?;
    Some(format!(
        "/calico/ipam/v2/assignment/ipv{}/block/{}",
        cidr.version(),
        cidr.segment()
    ))
}

/// `BlockAffinityKey`: `/calico/ipam/v2/<type>/<host>/ipv<4|6>/block/<cidr with - for />`, the
/// type being `host` when empty (Calico's default) or `virtual`.
pub fn block_affinity(affinity_type: &str, host: &str, cidr: &str) -> Option<String> {
    let cidr = Cidr::parse(cidr)?;
    let affinity_type = if affinity_type.is_empty() {
        "host"
    } else {
        affinity_type
    };
    Some(format!(
        "/calico/ipam/v2/{affinity_type}/{host}/ipv{}/block/{}",
        cidr.version(),
        cidr.segment()
    ))
}

/// A v3 `ResourceKey`: `/calico/resources/v3/projectcalico.org/<plural>/[<namespace>/]<name>`.
/// `kind` is the v3 kind (`Node`, `BGPPeer`, `KubernetesService`, …); `None` for a kind Calico
/// has no plural for (its `KeyToDefaultPath` fails, so Typha sends nothing). Whether the
/// namespace segment is present depends on the kind, not on `namespace` being empty, as in
/// Calico's `namespace.IsNamespaced`.
pub fn resource(kind: &str, namespace: &str, name: &str) -> Option<String> {
    let plural = resource_plural(kind)?;
    Some(if resource_is_namespaced(kind) {
        format!("/calico/resources/v3/projectcalico.org/{plural}/{namespace}/{name}")
    } else {
        format!("/calico/resources/v3/projectcalico.org/{plural}/{name}")
    })
}

/// The plural Calico registers for a v3 kind (looked up case-insensitively, as Calico does).
pub fn resource_plural(kind: &str) -> Option<&'static str> {
    const PLURALS: [(&str, &str); 28] = [
        ("BGPPeer", "bgppeers"),
        ("BGPConfiguration", "bgpconfigurations"),
        ("ClusterInformation", "clusterinformations"),
        ("FelixConfiguration", "felixconfigurations"),
        ("GlobalNetworkPolicy", "globalnetworkpolicies"),
        ("StagedGlobalNetworkPolicy", "stagedglobalnetworkpolicies"),
        ("HostEndpoint", "hostendpoints"),
        ("GlobalNetworkSet", "globalnetworksets"),
        (
            "KubernetesAdminNetworkPolicy",
            "kubernetesadminnetworkpolicies",
        ),
        (
            "KubernetesBaselineAdminNetworkPolicy",
            "kubernetesbaselineadminnetworkpolicies",
        ),
        ("IPPool", "ippools"),
        ("IPReservation", "ipreservations"),
        ("NetworkPolicy", "networkpolicies"),
        ("StagedNetworkPolicy", "stagednetworkpolicies"),
        ("KubernetesNetworkPolicy", "kubernetesnetworkpolicies"),
        (
            "StagedKubernetesNetworkPolicy",
            "stagedkubernetesnetworkpolicies",
        ),
        ("KubernetesEndpointSlice", "kubernetesendpointslices"),
        ("NetworkSet", "networksets"),
        ("Tier", "tiers"),
        ("Node", "nodes"),
        ("CalicoNodeStatus", "caliconodestatuses"),
        ("Profile", "profiles"),
        ("WorkloadEndpoint", "workloadendpoints"),
        ("IPAMConfig", "ipamconfigs"),
        (
            "KubeControllersConfiguration",
            "kubecontrollersconfigurations",
        ),
        // Sic: Calico registers the singular.
        ("KubernetesService", "kubernetesservice"),
        ("BlockAffinity", "blockaffinities"),
        ("BGPFilter", "bgpfilters"),
    ];
    PLURALS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(kind))
        .map(|(_, plural)| *plural)
}

/// Calico's `namespace.IsNamespaced` (exact kind names).
pub fn resource_is_namespaced(kind: &str) -> bool {
    matches!(
        kind,
        "WorkloadEndpoint"
            | "NetworkPolicy"
            | "StagedNetworkPolicy"
            | "StagedKubernetesNetworkPolicy"
            | "NetworkSet"
            | "KubernetesNetworkPolicy"
            | "KubernetesEndpointSlice"
            | "KubernetesService"
    )
}

/// A CIDR as Go's `net.ParseCIDR` returns it: the address masked to the prefix, and an
/// IPv4-mapped IPv6 network treated as the IPv4 one (Go's `IPNet.String` and Calico's
/// `Version` both do).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `x:…/n` as Go does: no zones, no leading zeros in IPv4 octets,
    /// but leading zeros in the prefix length are accepted (`/016` is `/16`).
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = text.split_once('/')?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let prefix = prefix
            .bytes()
            .try_fold(0u8, |n, digit| n.checked_mul(10)?.checked_add(digit - b'0'))?;
        let addr: IpAddr = addr.parse().ok()?;
        match addr {
            IpAddr::V4(v4) => {
                if prefix > 32 {
                    return None;
                }
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                Some(Cidr {
                    addr: IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask)),
                    prefix,
                })
            }
            IpAddr::V6(v6) => {
                if prefix > 128 {
                    return None;
                }
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                let masked = Ipv6Addr::from(u128::from(v6) & mask);
                Some(match masked.to_ipv4_mapped() {
                    Some(v4) => Cidr {
                        addr: IpAddr::V4(v4),
                        prefix: prefix.saturating_sub(96),
                    },
                    None => Cidr {
                        addr: IpAddr::V6(masked),
                        prefix,
                    },
                })
            }
        }
    }

    /// 4 or 6.
    pub fn version(&self) -> u8 {
        match self.addr {
            IpAddr::V4(_) => 4,
            IpAddr::V6(_) => 6,
        }
    }

    /// Go's `IPNet.String()` (`10.0.0.0/16`, `fd00::/64`).
    pub fn to_go_string(&self) -> String {
        format!("{}/{}", self.addr, self.prefix)
    }

    /// The key segment: Go's form with the `/` replaced by `-`.
    pub fn segment(&self) -> String {
        format!("{}-{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_name_escapes_percent_before_slash() {
        assert_eq!(escape_name("ns1/pod-a"), "ns1%2fpod-a");
        assert_eq!(escape_name("a%2fb"), "a%252fb");
        assert_eq!(escape_name("%/"), "%25%2f");
        assert_eq!(escape_name("plain.name"), "plain.name");
    }

    #[test]
    fn workload_endpoint_escapes_all_but_the_host() {
        assert_eq!(
            workload_endpoint("node/1", "k8s", "ns1/pod-a", "eth0"),
            "/calico/v1/host/node/1/workload/k8s/ns1%2fpod-a/endpoint/eth0"
        );
        assert_eq!(
            workload_endpoint("n", "o%", "w", "e/1"),
            "/calico/v1/host/n/workload/o%25/w/endpoint/e%2f1"
        );
    }

    #[test]
    fn host_endpoint_profile_netset_escape_names() {
        assert_eq!(
            host_endpoint("node1", "a/b"),
            "/calico/v1/host/node1/endpoint/a%2fb"
        );
        assert_eq!(
            profile_labels("kns.ns1"),
            "/calico/v1/policy/profile/kns.ns1/labels"
        );
        assert_eq!(
            profile_rules("a/b"),
            "/calico/v1/policy/profile/a%2fb/rules"
        );
        assert_eq!(network_set("ns1/set1"), "/calico/v1/netset/ns1%2fset1");
    }

    #[test]
    fn policy_keys_in_both_dialects() {
        assert_eq!(
            policy(
                Dialect::V331,
                "default",
                "ns1/knp.default.allow",
                "KubernetesNetworkPolicy",
                "ns1",
                "knp.default.allow"
            ),
            "/calico/v1/policy/tier/default/policy/ns1%2fknp.default.allow"
        );
        assert_eq!(
            policy(
                Dialect::Modern,
                "default",
                "ns1/knp.default.allow",
                "KubernetesNetworkPolicy",
                "ns1",
                "knp.default.allow"
            ),
            "/calico/v1/policy/KubernetesNetworkPolicy/ns1/knp.default.allow"
        );
        assert_eq!(
            policy_modern("GlobalNetworkPolicy", "", "gnp1"),
            "/calico/v1/policy/GlobalNetworkPolicy//gnp1"
        );
        assert_eq!(tier("default"), "/calico/v1/policy/tier/default/metadata");
    }

    #[test]
    fn config_and_host_keys_are_not_escaped() {
        assert_eq!(
            global_config("LogSeverityScreen"),
            "/calico/v1/config/LogSeverityScreen"
        );
        assert_eq!(
            host_config("node1", "RouteTableRange"),
            "/calico/v1/host/node1/config/RouteTableRange"
        );
        assert_eq!(host_ip("node1"), "/calico/v1/host/node1/bird_ip");
        assert_eq!(wireguard("node1"), "/calico/v1/host/node1/wireguard");
        assert_eq!(ready_flag(), "/calico/v1/Ready");
    }

    #[test]
    fn cidr_keys_use_go_canonical_form() {
        assert_eq!(
            ip_pool("10.0.0.0/16").as_deref(),
            Some("/calico/v1/ipam/v4/pool/10.0.0.0-16")
        );
        // Masked, as net.ParseCIDR does.
        assert_eq!(
            ip_pool("10.0.3.7/16").as_deref(),
            Some("/calico/v1/ipam/v4/pool/10.0.0.0-16")
        );
        assert_eq!(
            ip_pool("FD00:0:0:0::/64").as_deref(),
            Some("/calico/v1/ipam/v6/pool/fd00::-64")
        );
        assert_eq!(
            block("fd00:1:0:0:1::/122").as_deref(),
            Some("/calico/ipam/v2/assignment/ipv6/block/fd00:1:0:0:1::-122")
        );
        assert_eq!(
            block("::ffff:10.1.0.0/120").as_deref(),
            Some("/calico/ipam/v2/assignment/ipv4/block/10.1.0.0-24")
        );
        assert_eq!(
            block_affinity("", "node1", "10.0.1.0/26").as_deref(),
            Some("/calico/ipam/v2/host/node1/ipv4/block/10.0.1.0-26")
        );
        assert_eq!(
            block_affinity("virtual", "n", "10.0.1.0/26").as_deref(),
            Some("/calico/ipam/v2/virtual/n/ipv4/block/10.0.1.0-26")
        );
        assert_eq!(
            ip_pool("10.0.0.0/016").as_deref(),
            Some("/calico/v1/ipam/v4/pool/10.0.0.0-16")
        );
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "010.0.0.0/8",
            "x/8",
            "::/129",
            "fe80::%eth0/64",
        ] {
            assert_eq!(ip_pool(bad), None, "{bad}");
        }
    }

    #[test]
    fn resource_keys_follow_calico_plurals_and_namespacing() {
        assert_eq!(
            resource("Node", "", "node1").as_deref(),
            Some("/calico/resources/v3/projectcalico.org/nodes/node1")
        );
        assert_eq!(
            resource("BGPFilter", "", "f").as_deref(),
            Some("/calico/resources/v3/projectcalico.org/bgpfilters/f")
        );
        assert_eq!(
            resource("KubernetesService", "ns1", "svc").as_deref(),
            Some("/calico/resources/v3/projectcalico.org/kubernetesservice/ns1/svc")
        );
        assert_eq!(
            resource("KubernetesEndpointSlice", "ns1", "svc-abcde").as_deref(),
            Some("/calico/resources/v3/projectcalico.org/kubernetesendpointslices/ns1/svc-abcde")
        );
        // A cluster-scoped kind never gets a namespace segment.
        assert_eq!(
            resource("BGPPeer", "ignored", "p").as_deref(),
            Some("/calico/resources/v3/projectcalico.org/bgppeers/p")
        );
        assert_eq!(resource("Pod", "ns", "p"), None);
    }
}
