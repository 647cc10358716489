//! A port of Kubernetes' `RepackSubsets` (`pkg/api/v1/endpoints/util.go`).
//!
//! The algorithm, as in Kubernetes:
//! 1. Expand every subset to (port → address → ready). Addresses are identified by
//!    (IP, `targetRef.uid`); the first occurrence of an identity supplies the stored address (its
//!    hostname, nodeName and targetRef). A subset without ports is kept under a sentinel "no port".
//! 2. Readiness per (port, address) is merged with Kubernetes' rule: the first occurrence is
//!    recorded, and a later occurrence overwrites it only while the recorded state is ready — so
//!    **not-ready wins over ready** (the code comment upstream: "not ready always trumps ready").
//!    See [`merge_ready`].
//! 3. Ports whose (address, ready) sets are identical are grouped into one subset. Ports with no
//!    addresses disappear, and so do subsets without addresses.
//!
//! Kubernetes sorts ports and subsets by an MD5 of their Go `spew` dump, which cannot be
//! reproduced meaningfully; this port uses a documented total order instead:
//! * addresses (ready and not-ready lists separately) by (IP, uid), byte-wise;
//! * ports by (name, port, protocol, appProtocol), an absent name first;
//! * subsets by their first address (the first ready address, or the first not-ready one when
//!   there are no ready ones, by (IP, uid)), then their port list, then the full ready and
//!   not-ready address lists as tie-breakers.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use crate::types::{EndpointAddress, EndpointPort, EndpointSubset};

/// Readiness of an (address, port) seen again: Kubernetes keeps `false` once recorded.
fn merge_ready(recorded: bool, seen: bool) -> bool {
    recorded && seen
}

/// Identity of an address: (IP, targetRef UID or "").
type AddrKey = (String, String);

fn addr_key(addr: &EndpointAddress) -> AddrKey {
    (addr.ip.clone(), addr.uid().to_owned())
}

fn cmp_addr(a: &EndpointAddress, b: &EndpointAddress) -> Ordering {
    a.ip.as_bytes()
        .cmp(b.ip.as_bytes())
        .then_with(|| a.uid().as_bytes().cmp(b.uid().as_bytes()))
}

/// Repacks `subsets` into the canonical layout (see the module docs). The result is sorted, so
/// two equivalent inputs give equal outputs.
pub fn repack_subsets(subsets: &[EndpointSubset]) -> Vec<EndpointSubset> {
    // Stored addresses by identity (first occurrence wins).
    let mut all_addrs: BTreeMap<AddrKey, EndpointAddress> = BTreeMap::new();
    // port (None = the "no ports" sentinel) → address identity → ready.
    let mut by_port: BTreeMap<Option<EndpointPort>, BTreeMap<AddrKey, bool>> = BTreeMap::new();

    let mut record = |port: &Option<EndpointPort>, addr: &EndpointAddress, ready: bool| {
        let key = addr_key(addr);
        all_addrs.entry(key.clone()).or_insert_with(|| addr.clone());
        let per_port = by_port.entry(port.clone()).or_default();
        match per_port.entry(key) {
            Entry::Vacant(v) => {
                v.insert(ready);
            }
            Entry::Occupied(mut o) => {
                let merged = merge_ready(*o.get(), ready);
                o.insert(merged);
            }
        }
    };

    for subset in subsets {
        let ports: Vec<Option<EndpointPort>> = if subset.ports.is_empty() {
            vec![None]
        } else {
            subset.ports.iter().cloned().map(Some).collect()
        };
        for port in &ports {
            for addr in &subset.addresses {
                record(port, addr, true);
            }
            for addr in &subset.not_ready_addresses {
                record(port, addr, false);
            }
        }
    }

    // Group ports by their (address, ready) set. The BTreeMap iteration makes the key canonical.
    let mut groups: BTreeMap<Vec<(AddrKey, bool)>, Vec<EndpointPort>> = BTreeMap::new();
    for (port, addrs) in by_port {
        let key: Vec<(AddrKey, bool)> = addrs.into_iter().collect();
        let ports = groups.entry(key).or_default();
        if let Some(port) = port {
            ports.push(port);
        }
    }

    let mut out: Vec<EndpointSubset> = groups
        .into_iter()
        .map(|(addrs, mut ports)| {
            let mut subset = EndpointSubset::default();
            for (key, ready) in addrs {
                let addr = all_addrs[&key].clone();
                if ready {
                    subset.addresses.push(addr);
                } else {
                    subset.not_ready_addresses.push(addr);
                }
            }
            subset.addresses.sort_by(cmp_addr);
            subset.not_ready_addresses.sort_by(cmp_addr);
            ports.sort();
            ports.dedup();
            subset.ports = ports;
            subset
        })
        .collect();
    out.sort_by(cmp_subset);
    out
}

fn first_address(subset: &EndpointSubset) -> Option<&EndpointAddress> {
    subset
        .addresses
        .first()
        .or_else(|| subset.not_ready_addresses.first())
}

fn cmp_addr_lists(a: &[EndpointAddress], b: &[EndpointAddress]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let c = cmp_addr(x, y);
        if c != Ordering::Equal {
            return c;
        }
    }
    a.len().cmp(&b.len())
}

fn cmp_subset(a: &EndpointSubset, b: &EndpointSubset) -> Ordering {
    let first = match (first_address(a), first_address(b)) {
        (Some(x), Some(y)) => cmp_addr(x, y),
        (x, y) => x.is_some().cmp(&y.is_some()),
    };
    first
        .then_with(|| a.ports.cmp(&b.ports))
        .then_with(|| cmp_addr_lists(&a.addresses, &b.addresses))
        .then_with(|| cmp_addr_lists(&a.not_ready_addresses, &b.not_ready_addresses))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{addr, subset};

    fn addr_uid(ip: &str, uid: &str, name: &str) -> EndpointAddress {
        EndpointAddress {
            ip: ip.to_owned(),
            target_ref: Some(crate::ObjectReference {
                kind: Some("Pod".into()),
                name: Some(name.into()),
                uid: Some(uid.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn port(name: &str, p: i32) -> EndpointPort {
        EndpointPort {
            name: Some(name.to_owned()),
            port: p,
            protocol: "TCP".into(),
            app_protocol: None,
        }
    }

    #[test]
    fn empty_input_gives_no_subsets() {
        assert!(repack_subsets(&[]).is_empty());
    }

    #[test]
    fn identical_subsets_collapse() {
        let s = subset(&[addr("1.1.1.1")], &[addr("1.1.1.2")], &[port("a", 80)]);
        assert_eq!(repack_subsets(&[s.clone(), s.clone()]), vec![s]);
    }

    #[test]
    fn addresses_with_same_port_set_are_regrouped() {
        let (a, b) = (port("a", 80), port("b", 81));
        let input = [
            subset(&[addr("10.0.0.2")], &[], std::slice::from_ref(&a)),
            subset(&[addr("10.0.0.1")], &[], &[b.clone(), a.clone()]),
            subset(&[addr("10.0.0.2")], &[], std::slice::from_ref(&b)),
        ];
        assert_eq!(
            repack_subsets(&input),
            vec![subset(&[addr("10.0.0.1"), addr("10.0.0.2")], &[], &[a, b])]
        );
    }

    #[test]
    fn different_port_sets_stay_apart_and_sort_by_first_address() {
        let (a, b) = (port("a", 80), port("b", 81));
        let input = [
            subset(&[addr("2.0.0.1")], &[], std::slice::from_ref(&b)),
            subset(&[addr("1.0.0.1")], &[], std::slice::from_ref(&a)),
        ];
        assert_eq!(
            repack_subsets(&input),
            vec![
                subset(&[addr("1.0.0.1")], &[], &[a]),
                subset(&[addr("2.0.0.1")], &[], &[b]),
            ]
        );
    }

    #[test]
    fn not_ready_wins_over_ready_in_either_order() {
        let a = port("a", 80);
        let ready = subset(&[addr("1.0.0.1")], &[], std::slice::from_ref(&a));
        let not_ready = subset(&[], &[addr("1.0.0.1")], std::slice::from_ref(&a));
        let expected = vec![not_ready.clone()];
        assert_eq!(
            repack_subsets(&[ready.clone(), not_ready.clone()]),
            expected
        );
        assert_eq!(repack_subsets(&[not_ready, ready]), expected);
    }

    #[test]
    fn readiness_is_per_port() {
        let (a, b) = (port("a", 80), port("b", 81));
        let input = [
            subset(&[addr("1.0.0.1")], &[], std::slice::from_ref(&a)),
            subset(&[], &[addr("1.0.0.1")], std::slice::from_ref(&b)),
        ];
        let out = repack_subsets(&input);
        assert_eq!(
            out,
            vec![
                subset(&[addr("1.0.0.1")], &[], &[a]),
                subset(&[], &[addr("1.0.0.1")], &[b]),
            ]
        );
    }

    #[test]
    fn same_ip_different_uid_are_distinct_and_first_occurrence_is_kept() {
        let a = port("a", 80);
        let x = addr_uid("1.0.0.1", "u1", "pod-x");
        let y = addr_uid("1.0.0.1", "u2", "pod-y");
        let x_again = addr_uid("1.0.0.1", "u1", "renamed");
        let input = [
            subset(&[y.clone(), x.clone()], &[], std::slice::from_ref(&a)),
            subset(&[x_again], &[], std::slice::from_ref(&a)),
        ];
        assert_eq!(repack_subsets(&input), vec![subset(&[x, y], &[], &[a])]);
    }

    #[test]
    fn subsets_without_ports_are_kept_and_without_addresses_dropped() {
        let a = port("a", 80);
        let input = [
            subset(&[addr("1.0.0.1")], &[], &[]),
            subset(&[], &[], std::slice::from_ref(&a)),
        ];
        assert_eq!(
            repack_subsets(&input),
            vec![subset(&[addr("1.0.0.1")], &[], &[])]
        );
    }

    #[test]
    fn result_is_independent_of_input_order() {
        let (a, b) = (port("a", 80), port("b", 81));
        let input = vec![
            subset(
                &[addr("3.0.0.1")],
                &[addr("3.0.0.2")],
                std::slice::from_ref(&a),
            ),
            subset(&[addr("1.0.0.1")], &[], &[b.clone(), a.clone()]),
            subset(&[addr("2.0.0.1")], &[], std::slice::from_ref(&b)),
        ];
        let forward = repack_subsets(&input);
        let mut reversed = input.clone();
        reversed.reverse();
        assert_eq!(repack_subsets(&reversed), forward);
        assert_eq!(repack_subsets(&forward), forward, "repack is idempotent");
    }
}
