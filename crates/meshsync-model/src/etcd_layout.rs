//! Calico's etcdv3 key layout and meshsync's layout for Kubernetes objects
//! in etcd mode.
//!
//! - Calico v3 resources: `<prefix>/resources/v3/projectcalico.org/<plural>/<name>` for global
//!   kinds, `…/<plural>/<namespace>/<name>` for namespaced ones.
//! - Kubernetes core objects (meshsync's own layout, documented in the README):
//!   `<prefix>/resources/v3/k8s/<lowercase plural>/<namespace>/<name>`, values as Kubernetes JSON.
//! - IPAM blocks: `<prefix>/ipam/v2/assignment/ipv4/block/10.65.0.0-26` (and `ipv6`), kind
//!   `IPAMBlock`, named as Calico names block CRDs (`10-65-0-0-26`).
//!
//! Name segments are escaped (`%`→`%25`, `/`→`%2f`) so cluster-qualified names stay one segment.

use crate::kinds::{EtcdLayout, KINDS, KindInfo};

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
    /// host affinities, plurals meshsync does not know (kinds of a newer Calico).
    Ignored,
}

/// `(kind, namespace, name)` of an etcd key, or `None` for keys meshsync does not serve (v1
/// Felix keys, IPAM handles and affinities, unknown plurals, malformed paths).
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
    KeyClass::Ignored
}

/// The etcd key of a resource (the inverse of [`parse_key`] for Calico and Kubernetes kinds).
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
            "/calico/ipam/v2/host/node1/ipv4/block/10.65.0.0-26",
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
