//! What the [`CollisionGuard`](super::CollisionGuard) reads from a resource: an address block,
//! a pool's encapsulation, a node name, a pod's addresses — parsed once when the resource arrives,
//! so that judging it again (when local pools or nodes change) never re-reads its value.

use std::net::IpAddr;

use serde_json::Value;

use super::{HOST_ENDPOINT, IP_POOL, IPAM_BLOCK, NODE, WORKLOAD_ENDPOINT};

/// An address block: family, network bits, prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cidr {
    pub(super) v6: bool,
    pub(super) bits: u128,
    pub(super) prefix: u8,
}

impl Cidr {
    pub(super) fn parse(text: &str) -> Option<Cidr> {
        let (ip, prefix) = text.split_once('/')?;
        let ip: IpAddr = ip.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let (v6, bits, width): (bool, u128, u8) = match ip {
            IpAddr::V4(a) => (false, u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (true, u128::from(a), 128),
        };
        let host_bits = width.checked_sub(prefix)?;
        Some(Cidr {
            v6,
            bits: mask(bits, host_bits),
            prefix,
        })
    }

    /// An address or a CIDR (an address alone is a host route: /32 or /128).
    pub(super) fn parse_net(text: &str) -> Option<Cidr> {
        if text.contains('/') {
            return Cidr::parse(text);
        }
        let ip: IpAddr = text.parse().ok()?;
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        Cidr::parse(&format!("{ip}/{prefix}"))
    }

    pub(super) fn render(self) -> String {
        let ip = if self.v6 {
            IpAddr::from(std::net::Ipv6Addr::from(self.bits))
        } else {
            IpAddr::from(std::net::Ipv4Addr::from(self.bits as u32))
        };
        format!("{ip}/{}", self.prefix)
    }

    pub(super) fn width(self) -> u8 {
        if self.v6 { 128 } else { 32 }
    }

    /// Whether `other` lies inside `self`.
    pub(super) fn contains(self, other: Cidr) -> bool {
        self.v6 == other.v6
            && self.prefix <= other.prefix
            && mask(other.bits, self.width() - self.prefix) == self.bits
    }

    pub(super) fn overlaps(self, other: Cidr) -> bool {
        self.contains(other) || other.contains(self)
    }
}

/// `bits` without its `host_bits` lowest bits.
fn mask(bits: u128, host_bits: u8) -> u128 {
    if host_bits >= 128 {
        0
    } else {
        bits & (u128::MAX << host_bits)
    }
}

/// A pool's encapsulation as Felix's encapsulation resolver counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Encapsulation {
    None,
    Ipip,
    Vxlan,
}

impl Encapsulation {
    pub(super) fn name(self) -> &'static str {
        match self {
            Encapsulation::None => "none",
            Encapsulation::Ipip => "IPIP",
            Encapsulation::Vxlan => "VXLAN",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Pool {
    pub(super) cidr: Cidr,
    pub(super) encapsulation: Encapsulation,
}

/// What the guard reads from a resource of a kind it judges.
#[derive(Clone, Debug)]
pub(super) enum Fact {
    Pool(Pool),
    Block(Cidr),
    /// The node a Node, WorkloadEndpoint or HostEndpoint is on (its original name), and a
    /// WorkloadEndpoint's addresses.
    Host {
        node: String,
        nets: Vec<Cidr>,
    },
    /// A pool or block whose CIDR could not be read: never forwarded.
    Unreadable(String),
}

impl Fact {
    pub(super) fn of(kind: &str, name: &str, value: &[u8]) -> Option<Fact> {
        let read = || serde_json::from_slice::<Value>(value).ok();
        let cidr = |v: &Value| {
            v.pointer("/spec/cidr")
                .or_else(|| v.get("cidr"))
                .and_then(Value::as_str)
                .and_then(Cidr::parse)
        };
        match kind {
            IP_POOL => Some(
                match read().as_ref().and_then(|v| cidr(v).map(|c| (v, c))) {
                    Some((v, cidr)) => {
                        let mode = |field: &str| {
                            matches!(
                                v.pointer(&format!("/spec/{field}")).and_then(Value::as_str),
                                Some("Always" | "CrossSubnet")
                            )
                        };
                        let encapsulation = if mode("vxlanMode") {
                            Encapsulation::Vxlan
                        } else if mode("ipipMode") {
                            Encapsulation::Ipip
                        } else {
                            Encapsulation::None
                        };
                        Fact::Pool(Pool {
                            cidr,
                            encapsulation,
                        })
                    }
                    None => Fact::Unreadable("its CIDR cannot be read".into()),
                },
            ),
            IPAM_BLOCK => Some(match read().as_ref().and_then(cidr) {
                Some(c) => Fact::Block(c),
                None => Fact::Unreadable("its CIDR cannot be read".into()),
            }),
            NODE => Some(Fact::Host {
                node: name.to_owned(),
                nets: Vec::new(),
            }),
            WORKLOAD_ENDPOINT => {
                let node = workload_endpoint_node(name)?;
                // Only the addresses are read (serde skips the rest without building it): this
                // runs for every remote pod event.
                let nets = serde_json::from_slice::<WorkloadAddresses<'_>>(value)
                    .map(|w| {
                        w.spec
                            .ip_networks
                            .iter()
                            .filter_map(|n| Cidr::parse_net(n))
                            .collect()
                    })
                    .unwrap_or_default();
                Some(Fact::Host { node, nets })
            }
            HOST_ENDPOINT => read()
                .and_then(|v| {
                    v.pointer("/spec/node")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .map(|node| Fact::Host {
                    node,
                    nets: Vec::new(),
                }),
            _ => None,
        }
    }
}

/// The part of a WorkloadEndpoint the guard reads.
#[derive(serde::Deserialize)]
struct WorkloadAddresses<'a> {
    #[serde(borrow, default)]
    spec: WorkloadSpec<'a>,
}

#[derive(serde::Deserialize, Default)]
struct WorkloadSpec<'a> {
    #[serde(borrow, default, rename = "ipNetworks")]
    ip_networks: Vec<std::borrow::Cow<'a, str>>,
}

/// The node part of a WorkloadEndpoint's name (`<node>-<orchestrator>-<workload>-<endpoint>`,
/// dashes inside a part doubled; the first byte never separates).
fn workload_endpoint_node(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        if bytes[i] == b'-' {
            if bytes.get(i + 1) == Some(&b'-') {
                i += 2;
                continue;
            }
            return Some(name[..i].replace("--", "-"));
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_contain_and_overlap_by_family() {
        let a = Cidr::parse("10.0.0.0/8").unwrap();
        let b = Cidr::parse("10.2.3.0/24").unwrap();
        let c = Cidr::parse("11.0.0.0/8").unwrap();
        let v6 = Cidr::parse("::a00:0/104").unwrap();
        assert!(a.contains(b) && !b.contains(a) && a.overlaps(b) && b.overlaps(a));
        assert!(!a.overlaps(c));
        assert!(!a.overlaps(v6));
        assert_eq!(Cidr::parse("10.2.3.4/24").unwrap(), b);
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(c));
    }
}
