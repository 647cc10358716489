//! Calico's etcdv3 key layout and meshsync's layout for Kubernetes objects
//! in etcd mode.
//!
//! - Calico v3 resources: `<prefix>/resources/v3/projectcalico.org/<plural>/<name>` for global
//!   kinds, `…/<plural>/<namespace>/<name>` for namespaced ones.
//! - Kubernetes core objects (meshsync's own layout, documented in the README):
//!   `<prefix>/resources/v3/k8s/<lowercase plural>/<namespace>/<name>`, values as Kubernetes JSON.
//! - IPAM blocks: `<prefix>/ipam/v2/assignment/ipv4/block/10.65.0.0-26` (and `ipv6`), kind
//!   `IPAMBlock`, named as Calico names block CRDs (`10-65-0-0-26`).
//! - Host block affinities: `<prefix>/ipam/v2/host/<node>/ipv4/block/10.65.0.0-26` (and `ipv6`),
//!   Calico's v1 `BlockAffinityKey`, kind `BlockAffinity`, named as Calico's Kubernetes datastore
//!   names BlockAffinity objects (`<node>-10-65-0-0-26`, see [`BlockAffinityKey`]). The node is
//!   written as it is (Calico does not escape it). Only `host` affinities: Calico's BGP syncer on
//!   etcd lists `<prefix>/ipam/v2/host/` and nothing else, so `virtual` ones are ignored. The
//!   value there is the v1 `{"state", "deleted"}`; the etcd driver turns it into the BlockAffinity
//!   resource, with the node and CIDR from this key.
//!
//! Name segments are escaped (`%`→`%25`, `/`→`%2f`) so cluster-qualified names stay one segment.

use crate::kinds::{BLOCK_AFFINITY, EtcdLayout, KINDS, KindInfo};

/// The kind kept under `plural` in Calico's v3 layout.
fn calico_kind(plural: &str) -> Option<&'static KindInfo> {
    KINDS
        .iter()
        .find(|k| matches!(k.etcd, EtcdLayout::CalicoV3 { plural: p } if p == plural))
}

/// The kind kept under `plural` in meshsync's layout for Kubernetes objects.
fn kubernetes_kind(plural: &str) -> Option<&'static KindInfo> {
    KINDS
        .iter()
        .find(|k| matches!(k.etcd, EtcdLayout::Kubernetes { plural: p } if p == plural))
}

/// What an etcd key is to meshsync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyClass {
    /// A served resource: `(kind, namespace, name)`.
    Served(&'static str, String, String),
    /// A key of a served layout (a known Calico plural, a known Kubernetes plural, an IPAM block)
    /// that does not have the layout's shape: extra or missing path segments, an empty name or
    /// namespace. Not served; worth a log line, because a writer got something wrong.
    Malformed {
        kind: &'static str,
        reason: &'static str,
    },
    /// Not served and nothing wrong with it: other prefixes, Calico's v1 keys, IPAM handles and
    /// virtual affinities, plurals meshsync does not know (kinds of a newer Calico).
    Ignored,
}

/// A host block affinity's etcd key, `<prefix>/ipam/v2/host/<node>/ipv<4|6>/block/<cidr>` with
/// the CIDR's `/` written as `-` (Calico's `BlockAffinityKey`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockAffinityKey {
    /// The node, as the key writes it.
    pub node: String,
    /// The block in Go's canonical form (`10.65.0.0/26`, `fd00:65::/122`).
    pub cidr: String,
    /// The name Calico's Kubernetes datastore gives the BlockAffinity object: `<node>-<cidr with
    /// '.', ':' and '/' as '-'>`; from 253 bytes on, the node is cut and 11 hex digits of a
    /// SHA-256 of `<node>+<cidr name>` are appended, so the name stays under 253 bytes.
    pub name: String,
}

/// The affinity an etcd key names, or `None` for any other key (and malformed affinity keys).
pub fn block_affinity_key(prefix: &str, key: &str) -> Option<BlockAffinityKey> {
    let tail = key.strip_prefix(prefix)?.strip_prefix(HOST_AFFINITIES)?;
    parse_host_affinity(tail).ok()
}

/// Where host affinities live under the prefix.
const HOST_AFFINITIES: &str = "/ipam/v2/host/";

/// `<node>/ipv<4|6>/block/<cidr>`. Only Calico's own rendering of the CIDR is accepted (the
/// address masked to the prefix, the family segment matching), so one affinity has exactly one
/// key: Calico would also read `10.65.0.5-26` under `ipv6/` as `10.65.0.0/26`, and two such keys
/// would be one cached object that either key's deletion removes.
fn parse_host_affinity(tail: &str) -> Result<BlockAffinityKey, &'static str> {
    let segments: Vec<&str> = tail.split('/').collect();
    let [node, family, "block", cidr_segment] = segments.as_slice() else {
        return Err("an affinity's key is <node>/ipv4|ipv6/block/<cidr> after host/");
    };
    if node.is_empty() {
        return Err("empty node");
    }
    let cidr = canonical_cidr(&cidr_segment.replacen('-', "/", 1))
        .ok_or("the block is not a CIDR in Calico's canonical form")?;
    let expected_family = if cidr.contains(':') { "ipv6" } else { "ipv4" };
    if *family != expected_family {
        return Err("the address family segment does not match the block");
    }
    let name = affinity_name(node, &block_name(&cidr));
    Ok(BlockAffinityKey {
        node: (*node).to_owned(),
        cidr,
        name,
    })
}

/// `text` if it is a CIDR exactly as Go's `IPNet.String` renders it (address masked to the
/// prefix; IPv4-mapped IPv6 refused, as Go would render it as IPv4).
fn canonical_cidr(text: &str) -> Option<String> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let (addr, prefix) = text.split_once('/')?;
    let prefix: u8 = prefix.parse().ok()?;
    let masked = match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) if prefix <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) if prefix <= 128 && v6.to_ipv4_mapped().is_none() => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        _ => return None,
    };
    let canonical = format!("{masked}/{prefix}");
    (canonical == text).then_some(canonical)
}

/// Calico's KDD name of an affinity (`blockAffinityClient.parseKey`).
fn affinity_name(node: &str, cidr_name: &str) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let name = format!("{node}-{cidr_name}");
    if name.len() < 253 {
        return name;
    }
    // Calico cuts the node to 252 - len(cidr name) - 13 bytes (Go slices bytes; here the cut
    // moves back to a character boundary, which only differs for names Kubernetes refuses).
    let mut cut = 252usize
        .saturating_sub(cidr_name.len() + 13)
        .min(node.len());
    while !node.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = Sha256::digest(format!("{node}+{cidr_name}").as_bytes());
    let mut hash = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hash, "{byte:02x}");
    }
    format!("{}-{cidr_name}-{}", &node[..cut], &hash[..11])
}

/// `(kind, namespace, name)` of an etcd key, or `None` for keys meshsync does not serve (v1
/// Felix keys, IPAM handles, virtual affinities, unknown plurals, malformed paths).
pub fn parse_key(prefix: &str, key: &str) -> Option<(&'static str, String, String)> {
    match classify_key(prefix, key) {
        KeyClass::Served(kind, namespace, name) => Some((kind, namespace, name)),
        KeyClass::Malformed { .. } | KeyClass::Ignored => None,
    }
}

/// Classifies an etcd key: served (with its kind, namespace and name), malformed, or ignored.
pub fn classify_key(prefix: &str, key: &str) -> KeyClass {
    let Some(rest) = key.strip_prefix(prefix) else {
        return KeyClass::Ignored;
    };
    let malformed = |kind, reason| KeyClass::Malformed { kind, reason };
    if let Some(rest) = rest.strip_prefix("/resources/v3/projectcalico.org/") {
        let segments: Vec<&str> = rest.split('/').collect();
        let Some((plural, tail)) = segments.split_first() else {
            return KeyClass::Ignored;
        };
        let Some(info) = calico_kind(plural) else {
            return KeyClass::Ignored;
        };
        let (kind, namespaced) = (info.name, info.namespaced);
        return match (namespaced, tail) {
            (false, [name]) if !name.is_empty() => {
                KeyClass::Served(kind, String::new(), unescape(name))
            }
            (false, [_]) => malformed(kind, "empty name"),
            (false, _) => malformed(
                kind,
                "a global kind's key has exactly one segment (the name) after the plural",
            ),
            (true, [ns, name]) if !ns.is_empty() && !name.is_empty() => {
                KeyClass::Served(kind, unescape(ns), unescape(name))
            }
            (true, [_, _]) => malformed(kind, "empty namespace or name"),
            (true, _) => malformed(
                kind,
                "a namespaced kind's key has exactly two segments (namespace, name) after the plural",
            ),
        };
    }
    if let Some(rest) = rest.strip_prefix("/resources/v3/k8s/") {
        let segments: Vec<&str> = rest.split('/').collect();
        let Some((plural, tail)) = segments.split_first() else {
            return KeyClass::Ignored;
        };
        let Some(kind) = kubernetes_kind(plural).map(|k| k.name) else {
            return KeyClass::Ignored;
        };
        return match tail {
            [ns, name] if !ns.is_empty() && !name.is_empty() => {
                KeyClass::Served(kind, unescape(ns), unescape(name))
            }
            [_, _] => malformed(kind, "empty namespace or name"),
            _ => malformed(
                kind,
                "a Kubernetes object's key has exactly two segments (namespace, name) after the plural",
            ),
        };
    }
    for family in ["ipv4", "ipv6"] {
        let block_prefix = format!("/ipam/v2/assignment/{family}/block/");
        if let Some(cidr) = rest.strip_prefix(block_prefix.as_str()) {
            if cidr.is_empty() {
                return malformed("IPAMBlock", "empty block name");
            }
            if cidr.contains('/') {
                return malformed(
                    "IPAMBlock",
                    "a block's key has exactly one segment (the CIDR) after block/",
                );
            }
            return KeyClass::Served("IPAMBlock", String::new(), block_name(cidr));
        }
    }
    if let Some(tail) = rest.strip_prefix(HOST_AFFINITIES) {
        return match parse_host_affinity(tail) {
            Ok(affinity) => KeyClass::Served(BLOCK_AFFINITY, String::new(), affinity.name),
            Err(reason) => malformed(BLOCK_AFFINITY, reason),
        };
    }
    KeyClass::Ignored
}

/// The etcd key of a resource (the inverse of [`parse_key`] for Calico and Kubernetes kinds). An
/// IPAM block or a block affinity gets its v3 resource path, not its IPAM key: an affinity's name
/// does not give back its node and CIDR (it may be cut and hashed), and meshsync writes neither.
pub fn key_path(prefix: &str, kind: &str, namespace: &str, name: &str) -> Option<String> {
    let info = crate::kinds::lookup(kind)?;
    match info.etcd {
        EtcdLayout::CalicoV3 { plural } if info.namespaced => Some(format!(
            "{prefix}/resources/v3/projectcalico.org/{plural}/{}/{}",
            escape(namespace),
            escape(name)
        )),
        EtcdLayout::CalicoV3 { plural } => Some(format!(
            "{prefix}/resources/v3/projectcalico.org/{plural}/{}",
            escape(name)
        )),
        EtcdLayout::Kubernetes { plural } => Some(format!(
            "{prefix}/resources/v3/k8s/{plural}/{}/{}",
            escape(namespace),
            escape(name)
        )),
        EtcdLayout::None => None,
    }
}

/// A block key's CIDR segment (`10.65.0.0-26`, `fd00::-122`) as Calico's CIDRToName.
fn block_name(cidr_segment: &str) -> String {
    cidr_segment.replace(['.', ':', '/'], "-")
}

/// `%`→`%25` first, then `/`→`%2f`.
pub fn escape(segment: &str) -> String {
    segment.replace('%', "%25").replace('/', "%2f")
}

/// `%2f`→`/` first, then `%25`→`%`.
pub fn unescape(segment: &str) -> String {
    segment
        .replace("%2f", "/")
        .replace("%2F", "/")
        .replace("%25", "%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_calico_k8s_and_ipam_keys() {
        let p = "/calico";
        assert_eq!(
            parse_key(
                p,
                "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool"
            ),
            Some(("IPPool", String::new(), "default-ipv4-ippool".into()))
        );
        assert_eq!(
            parse_key(
                p,
                "/calico/resources/v3/projectcalico.org/workloadendpoints/default/node1-k8s-nginx-eth0"
            ),
            Some((
                "WorkloadEndpoint",
                "default".into(),
                "node1-k8s-nginx-eth0".into()
            ))
        );
        assert_eq!(
            parse_key(
                p,
                "/calico/resources/v3/projectcalico.org/profiles/c%2fkns.ns1"
            ),
            Some(("Profile", String::new(), "c/kns.ns1".into()))
        );
        assert_eq!(
            parse_key(p, "/calico/resources/v3/k8s/secrets/kube-system/remote-b"),
            Some(("Secret", "kube-system".into(), "remote-b".into()))
        );
        assert_eq!(
            parse_key(p, "/calico/ipam/v2/assignment/ipv4/block/10.65.0.0-26"),
            Some(("IPAMBlock", String::new(), "10-65-0-0-26".into()))
        );
        // Wrong arity, unknown plurals, other prefixes and v1 keys are not served.
        assert_eq!(
            parse_key(p, "/calico/resources/v3/projectcalico.org/ippools/a/b"),
            None
        );
        assert_eq!(
            parse_key(
                p,
                "/calico/resources/v3/projectcalico.org/workloadendpoints/x"
            ),
            None
        );
        assert_eq!(
            parse_key(p, "/calico/resources/v3/projectcalico.org/gadgets/x"),
            None
        );
        assert_eq!(
            parse_key(p, "/other/resources/v3/projectcalico.org/ippools/x"),
            None
        );
        assert_eq!(parse_key(p, "/calico/v1/host/node1/config/Foo"), None);
        assert_eq!(parse_key(p, "/calico/ipam/v2/handle/abc"), None);
    }

    #[test]
    fn malformed_keys_of_served_layouts_are_told_from_ignored_ones() {
        let p = "/calico";
        let class = |k: &str| classify_key(p, k);
        for key in [
            "/calico/resources/v3/projectcalico.org/ippools/a/b",
            "/calico/resources/v3/projectcalico.org/ippools/",
            "/calico/resources/v3/projectcalico.org/ippools",
            "/calico/resources/v3/projectcalico.org/workloadendpoints/x",
            "/calico/resources/v3/projectcalico.org/workloadendpoints//x",
            "/calico/resources/v3/projectcalico.org/workloadendpoints/ns/x/y",
            "/calico/resources/v3/k8s/secrets/ns/",
            "/calico/resources/v3/k8s/secrets/ns",
            "/calico/resources/v3/k8s/services/ns/a/b",
            "/calico/ipam/v2/assignment/ipv4/block/",
            "/calico/ipam/v2/assignment/ipv6/block/fd00::/122",
        ] {
            assert!(
                matches!(class(key), KeyClass::Malformed { .. }),
                "{key}: {:?}",
                class(key)
            );
        }
        for key in [
            "/calico/resources/v3/projectcalico.org/gadgets/x",
            "/calico/resources/v3/k8s/pods/default/p",
            "/calico/v1/host/node1/config/Foo",
            "/calico/ipam/v2/handle/abc",
            "/calico/ipam/v2/virtual/node1/ipv4/block/10.65.0.0-26",
            "/other/resources/v3/projectcalico.org/ippools/a/b",
        ] {
            assert_eq!(class(key), KeyClass::Ignored, "{key}");
        }
        assert_eq!(
            class("/calico/resources/v3/projectcalico.org/ippools/a"),
            KeyClass::Served("IPPool", String::new(), "a".into())
        );
    }

    #[test]
    fn host_affinity_keys_are_block_affinities_named_as_calico_names_them() {
        let p = "/calico";
        let affinity = |node: &str, cidr: &str, name: &str| BlockAffinityKey {
            node: node.into(),
            cidr: cidr.into(),
            name: name.into(),
        };
        for (key, expected) in [
            (
                "/calico/ipam/v2/host/node-1/ipv4/block/10.65.0.0-26",
                affinity("node-1", "10.65.0.0/26", "node-1-10-65-0-0-26"),
            ),
            (
                "/calico/ipam/v2/host/node-2/ipv6/block/fd00:65::40-122",
                affinity("node-2", "fd00:65::40/122", "node-2-fd00-65--40-122"),
            ),
            // The node is written as it is, `%` included.
            (
                "/calico/ipam/v2/host/n%2f1/ipv4/block/10.0.0.0-8",
                affinity("n%2f1", "10.0.0.0/8", "n%2f1-10-0-0-0-8"),
            ),
        ] {
            assert_eq!(block_affinity_key(p, key), Some(expected.clone()), "{key}");
            assert_eq!(
                classify_key(p, key),
                KeyClass::Served("BlockAffinity", String::new(), expected.name),
                "{key}"
            );
        }
        // Under another prefix.
        assert_eq!(
            classify_key("/c2", "/c2/ipam/v2/host/n/ipv4/block/10.0.0.0-8"),
            KeyClass::Served("BlockAffinity", String::new(), "n-10-0-0-0-8".into())
        );
        assert_eq!(
            block_affinity_key(p, "/calico/ipam/v2/assignment/ipv4/block/10.65.0.0-26"),
            None
        );
    }

    #[test]
    fn malformed_host_affinity_keys_are_told() {
        let p = "/calico";
        for key in [
            "/calico/ipam/v2/host/",
            "/calico/ipam/v2/host/node-1",
            "/calico/ipam/v2/host/node-1/ipv4/block/",
            "/calico/ipam/v2/host//ipv4/block/10.65.0.0-26",
            "/calico/ipam/v2/host/node-1/ipv4/blocks/10.65.0.0-26",
            "/calico/ipam/v2/host/node-1/ipv4/block/10.65.0.0-26/x",
            "/calico/ipam/v2/host/node-1/ipv4/block/10.65.0.0",
            "/calico/ipam/v2/host/node-1/ipv4/block/10.65.0.0-33",
            "/calico/ipam/v2/host/node-1/ipv4/block/10.65.0.0-026",
            "/calico/ipam/v2/host/node-1/ipv4/block/10.65.0.0-+26",
            "/calico/ipam/v2/host/node-1/ipv4/block/not-a-cidr",
            // Not Calico's rendering: host bits set, uncompressed IPv6, IPv4-mapped IPv6.
            "/calico/ipam/v2/host/node-1/ipv4/block/10.65.0.5-26",
            "/calico/ipam/v2/host/node-1/ipv6/block/fd00:65:0:0:0:0:0:0-122",
            "/calico/ipam/v2/host/node-1/ipv6/block/::ffff:10.0.0.0-120",
            // The family segment contradicts the block.
            "/calico/ipam/v2/host/node-1/ipv6/block/10.65.0.0-26",
            "/calico/ipam/v2/host/node-1/ipv4/block/fd00:65::-122",
            "/calico/ipam/v2/host/node-1/ipvx/block/10.65.0.0-26",
        ] {
            assert!(
                matches!(
                    classify_key(p, key),
                    KeyClass::Malformed {
                        kind: "BlockAffinity",
                        ..
                    }
                ),
                "{key}: {:?}",
                classify_key(p, key)
            );
            assert_eq!(block_affinity_key(p, key), None, "{key}");
        }
    }

    #[test]
    fn long_affinity_names_are_cut_and_hashed_as_calico_does() {
        // Calico v3.31's `parseKey`, for a 300-byte node and `10-65-0-0-26`: the node cut to
        // 252 - 12 - 13 = 227 bytes, then the CIDR name, then 11 hex digits of
        // sha256("<node>+10-65-0-0-26").
        let node = "n".repeat(300);
        let key = format!("/calico/ipam/v2/host/{node}/ipv4/block/10.65.0.0-26");
        let name = block_affinity_key("/calico", &key).unwrap().name;
        assert_eq!(name.len(), 252);
        assert_eq!(&name[..228], format!("{}-", "n".repeat(227)));
        assert_eq!(&name[228..241], "10-65-0-0-26-");
        // `printf '%s+10-65-0-0-26' $(printf 'n%.0s' {1..300}) | sha256sum | cut -c1-11`
        assert_eq!(&name[241..], "e6a4dc8f37b");
        // The longest name kept whole is 252 bytes.
        let node = "n".repeat(252 - 13);
        let key = format!("/calico/ipam/v2/host/{node}/ipv4/block/10.65.0.0-26");
        assert_eq!(
            block_affinity_key("/calico", &key).unwrap().name,
            format!("{node}-10-65-0-0-26")
        );
    }

    #[test]
    fn key_paths_round_trip() {
        for (kind, ns, name) in [
            ("WorkloadEndpoint", "default", "n-k8s-p-eth0"),
            ("Node", "", "cluster-b/node1"),
            ("Secret", "kube-system", "s%1"),
        ] {
            let path = key_path("/calico", kind, ns, name).unwrap();
            let (k, n, m) = parse_key("/calico", &path).unwrap();
            assert_eq!((k, n.as_str(), m.as_str()), (kind, ns, name), "{path}");
        }
        assert_eq!(key_path("/calico", "Gadget", "", "x"), None);
    }
}
