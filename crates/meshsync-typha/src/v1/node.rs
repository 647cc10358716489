//! Nodes: what Felix needs to know about every host, and the Node itself for BGP and tunnel
//! address allocation.
//!
//! For the felix syncer, Calico's `FelixNodeUpdateProcessor` splits a Node into the keys Felix
//! predates v3 with — the host IP (`bird_ip`: the BGP IPv4 address, else the first IPv4
//! InternalIP, else ExternalIP, as a raw address), the IPIP and VXLAN tunnel addresses and VXLAN
//! MACs as host config keys, the WireGuard key (interface addresses and public keys) — plus the
//! whole v3 Node (route resolution and BPF need it). Every key is always sent: an absent value is
//! a deletion, so clearing a tunnel address removes it from Felix. An address Calico cannot parse
//! leaves its key deleted and the processor reports an error (the other keys still go out).
//!
//! The bgp and tunnel-ip-allocation syncers pass the Node through as it is (see `passthrough`).
//!
//! Typha's validation filter runs Calico's v3 validator on the Node resource and sends an invalid
//! one as a deletion (its derived keys still go out). The checks mirrored here are those of the
//! Node's own scalar fields (name, tunnel and BGP addresses, MACs, WireGuard addresses and keys,
//! a non-empty `spec.bgp`); list elements (`addresses`, …) are not validated by Calico either
//! (no `dive`), and label and annotation syntax is not re-checked. `K8sUsePodCIDR` (IPAM blocks made from the Node's pod
//! CIDRs) is not supported: Typha's default is Calico IPAM.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::emit::{deleted, failed, invalid, parse};
use super::passthrough::pass_through;
use super::v3read::{Reason, parse_cidr_or_ip, parse_ip};
use super::{Converted, Dialect, Resource, Syncer, V1Update, keys};

const NODE: &str = "Node";

/// The host config keys made from a Node, in Calico's order.
const IPIP_TUNNEL_ADDR: &str = "IpInIpTunnelAddr";
const IPV4_VXLAN_TUNNEL_ADDR: &str = "IPv4VXLANTunnelAddr";
const VXLAN_TUNNEL_MAC: &str = "VXLANTunnelMACAddr";
const IPV6_VXLAN_TUNNEL_ADDR: &str = "IPv6VXLANTunnelAddr";
const VXLAN_TUNNEL_MAC_V6: &str = "VXLANTunnelMACAddrV6";

pub(super) fn convert(
    syncer: Syncer,
    _dialect: Dialect,
    resource: &Resource<'_>,
    deleted: bool,
) -> Option<Converted> {
    if resource.kind != NODE {
        return None;
    }
    match syncer {
        Syncer::Felix => Some(felix_node(resource, deleted)),
        Syncer::Bgp | Syncer::TunnelIpAllocation => Some(pass_through(resource, deleted)),
        Syncer::NodeStatus => None,
    }
}

/// The v1 keys of a Node for Felix, in Calico's order (the v3 Node's key is added by
/// [`pass_through`]).
fn felix_keys(name: &str) -> [String; 7] {
    [
        keys::host_ip(name),
        keys::host_config(name, IPIP_TUNNEL_ADDR),
        keys::host_config(name, IPV4_VXLAN_TUNNEL_ADDR),
        keys::host_config(name, VXLAN_TUNNEL_MAC),
        keys::host_config(name, IPV6_VXLAN_TUNNEL_ADDR),
        keys::host_config(name, VXLAN_TUNNEL_MAC_V6),
        keys::wireguard(name),
    ]
}

fn felix_node(resource: &Resource<'_>, is_deleted: bool) -> Converted {
    let name = resource.name;
    let [
        host_ip,
        ipip,
        vxlan,
        vxlan_mac,
        vxlan6,
        vxlan_mac6,
        wireguard,
    ] = felix_keys(name);
    let mut all_keys = felix_keys(name).to_vec();
    all_keys.extend(keys::resource(NODE, "", name));
    if is_deleted {
        return Converted {
            updates: all_keys.into_iter().map(deleted).collect(),
            error: None,
        };
    }
    let v3 = match parse(resource) {
        Ok(v) => v,
        Err(error) => return failed(all_keys, error),
    };
    let derived = match derive(&v3) {
        Ok(d) => d,
        Err(reason) => return failed(all_keys, invalid(resource, reason)),
    };
    let raw = |key: String, text: Option<String>| V1Update {
        key,
        value: text.map(Into::into),
        v3_resource_version: String::new(),
    };
    let mut updates = vec![
        raw(host_ip, derived.host_ip.map(|ip| ip.to_string())),
        raw(ipip, derived.ipip_tunnel_addr),
        raw(vxlan, derived.vxlan_tunnel_addr),
        raw(vxlan_mac, derived.vxlan_mac),
        raw(vxlan6, derived.vxlan_tunnel_addr_v6),
        raw(vxlan_mac6, derived.vxlan_mac_v6),
    ];
    let mut node = pass_through(resource, false);
    if let Err(reason) = validate(&v3) {
        // Typha's validation filter: an invalid v3 resource is sent as missing.
        node.updates.iter_mut().for_each(|u| {
            u.value = None;
            u.v3_resource_version.clear();
        });
        node.error.get_or_insert(invalid(resource, reason));
    }
    updates.append(&mut node.updates);
    updates.push(raw(
        wireguard,
        derived.wireguard.map(|w| Value::Object(w).to_string()),
    ));
    Converted {
        updates,
        error: derived
            .error
            .map(|reason| invalid(resource, reason))
            .or(node.error),
    }
}

/// What `FelixNodeUpdateProcessor` takes from a Node.
#[derive(Default)]
struct Derived {
    host_ip: Option<IpAddr>,
    ipip_tunnel_addr: Option<String>,
    vxlan_tunnel_addr: Option<String>,
    vxlan_mac: Option<String>,
    vxlan_tunnel_addr_v6: Option<String>,
    vxlan_mac_v6: Option<String>,
    wireguard: Option<Map<String, Value>>,
    /// The last address that failed to parse (Calico returns it beside the keys).
    error: Option<Reason>,
}

/// The string at a JSON pointer (absent or `null`: `""`); another type fails the Node's decode.
fn text<'a>(v: &'a Value, pointer: &str) -> Result<&'a str, Reason> {
    match v.pointer(pointer) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("{pointer}: not a string")),
    }
}

/// Go's `cnet.ParseCIDROrIP(text)`'s address: the address as written (a CIDR is not masked).
fn cidr_or_ip_address(text: &str) -> Option<IpAddr> {
    match text.split_once('/') {
        Some((addr, _)) => {
            parse_cidr_or_ip(text)?;
            parse_ip(addr)
        }
        None => parse_ip(text),
    }
}

fn derive(v3: &Value) -> Result<Derived, Reason> {
    // The structs the processor reads must decode (Go fails the whole Node otherwise).
    for pointer in ["/spec", "/status", "/spec/bgp", "/spec/wireguard"] {
        match v3.pointer(pointer) {
            None | Some(Value::Null | Value::Object(_)) => {}
            Some(_) => return Err(format!("{pointer}: not an object")),
        }
    }
    let mut d = Derived::default();
    let mut parsed_ip = |pointer: &str, what: &str| -> Result<Option<String>, Reason> {
        let t = text(v3, pointer)?;
        if t.is_empty() {
            return Ok(None);
        }
        match parse_ip(t) {
            Some(ip) => Ok(Some(ip.to_string())),
            None => {
                d.error = Some(format!("failed to parse {what} as an IP address"));
                Ok(None)
            }
        }
    };
    let has_bgp = matches!(v3.pointer("/spec/bgp"), Some(Value::Object(_)));
    let mut ipip = None;
    if has_bgp {
        ipip = parsed_ip("/spec/bgp/ipv4IPIPTunnelAddr", "IPv4IPIPTunnelAddr")?;
    }
    let vxlan = parsed_ip("/spec/ipv4VXLANTunnelAddr", "IPv4VXLANTunnelAddr")?;
    let vxlan6 = parsed_ip("/spec/ipv6VXLANTunnelAddr", "IPv6VXLANTunnelAddr")?;
    let wg_v4 = parsed_ip(
        "/spec/wireguard/interfaceIPv4Address",
        "InterfaceIPv4Address",
    )?;
    let wg_v6 = parsed_ip(
        "/spec/wireguard/interfaceIPv6Address",
        "InterfaceIPv6Address",
    )?;
    (
        d.ipip_tunnel_addr,
        d.vxlan_tunnel_addr,
        d.vxlan_tunnel_addr_v6,
    ) = (ipip, vxlan, vxlan6);

    if has_bgp {
        let bgp_v4 = text(v3, "/spec/bgp/ipv4Address")?;
        if !bgp_v4.is_empty() {
            d.host_ip = cidr_or_ip_address(bgp_v4);
            if d.host_ip.is_none() {
                d.error = Some(format!("failed to parse IPv4Address {bgp_v4}"));
            }
        }
    }
    for wanted in ["InternalIP", "ExternalIP"] {
        if d.host_ip.is_some() {
            break;
        }
        d.host_ip = node_address(v3, wanted)?;
    }
    let mac = |pointer: &str| -> Result<Option<String>, Reason> {
        Ok(Some(text(v3, pointer)?.to_owned()).filter(|m| !m.is_empty()))
    };
    d.vxlan_mac = mac("/spec/vxlanTunnelMACAddr")?;
    d.vxlan_mac_v6 = mac("/spec/vxlanTunnelMACAddrV6")?;

    let public_key = text(v3, "/status/wireguardPublicKey")?;
    let public_key_v6 = text(v3, "/status/wireguardPublicKeyV6")?;
    if wg_v4.is_some() || !public_key.is_empty() || wg_v6.is_some() || !public_key_v6.is_empty() {
        let mut w = Map::new();
        if let Some(ip) = wg_v4 {
            w.insert("interfaceIPv4Addr".into(), Value::String(ip));
        }
        if !public_key.is_empty() {
            w.insert("publicKey".into(), Value::String(public_key.into()));
        }
        if let Some(ip) = wg_v6 {
            w.insert("interfaceIPv6Addr".into(), Value::String(ip));
        }
        if !public_key_v6.is_empty() {
            w.insert("publicKeyV6".into(), Value::String(public_key_v6.into()));
        }
        d.wireguard = Some(w);
    }
    Ok(d)
}

/// Calico's `FindNodeAddress(node, type, 4)`: the first address of `wanted` type that parses and
/// is IPv4.
fn node_address(v3: &Value, wanted: &str) -> Result<Option<IpAddr>, Reason> {
    let addresses = match v3.pointer("/spec/addresses") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) => a,
        Some(_) => return Err("spec.addresses: not a list".into()),
    };
    for a in addresses {
        if text(a, "/type")? != wanted {
            continue;
        }
        if let Some(ip) = cidr_or_ip_address(text(a, "/address")?)
            && ip.is_ipv4()
        {
            return Ok(Some(ip));
        }
    }
    Ok(None)
}

/// The v3 validator's checks on a Node's own fields.
fn validate(v3: &Value) -> Result<(), Reason> {
    let name = text(v3, "/metadata/name")?;
    if !is_dns1123_subdomain(name) {
        return Err(format!("invalid name {name:?}"));
    }
    let check = |pointer: &str, ok: fn(&str) -> bool| -> Result<(), Reason> {
        let t = text(v3, pointer)?;
        if t.is_empty() || ok(t) {
            Ok(())
        } else {
            Err(format!("{pointer}: invalid value {t:?}"))
        }
    };
    let ipv4 = |t: &str| parse_ip(t).is_some_and(|ip| ip.is_ipv4());
    let ipv6 = |t: &str| parse_ip(t).is_some_and(|ip| ip.is_ipv6());
    check("/spec/ipv4VXLANTunnelAddr", ipv4)?;
    check("/spec/ipv6VXLANTunnelAddr", ipv6)?;
    check("/spec/vxlanTunnelMACAddr", is_go_mac)?;
    check("/spec/vxlanTunnelMACAddrV6", is_go_mac)?;
    check("/spec/wireguard/interfaceIPv4Address", ipv4)?;
    check("/spec/wireguard/interfaceIPv6Address", ipv6)?;
    check("/status/wireguardPublicKey", is_wireguard_key)?;
    check("/status/wireguardPublicKeyV6", is_wireguard_key)?;
    if let Some(Value::Object(bgp)) = v3.pointer("/spec/bgp") {
        let empty = |field: &str| match bgp.get(field) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(Value::Number(n)) => n.as_u64() == Some(0),
            Some(_) => false,
        };
        if [
            "ipv4Address",
            "ipv6Address",
            "ipv4IPIPTunnelAddr",
            "asNumber",
            "routeReflectorClusterID",
        ]
        .iter()
        .all(|f| empty(f))
        {
            return Err("Spec.BGP should not be empty".into());
        }
        check("/spec/bgp/ipv4Address", |t| {
            cidr_or_ip_address(t).is_some_and(|ip| ip.is_ipv4())
        })?;
        check("/spec/bgp/ipv6Address", |t| {
            cidr_or_ip_address(t).is_some_and(|ip| ip.is_ipv6())
        })?;
        check("/spec/bgp/ipv4IPIPTunnelAddr", ipv4)?;
        check("/spec/bgp/routeReflectorClusterID", ipv4)?;
    }
    Ok(())
}

/// Kubernetes' DNS-1123 subdomain: at most 253 bytes of dot-separated labels of `a-z0-9-`, each
/// starting and ending alphanumeric.
fn is_dns1123_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// Go's `net.ParseMAC` accepts it: 6, 8 or 20 bytes as `xx:xx:…`, `xx-xx-…` or `xxxx.xxxx.…`.
fn is_go_mac(text: &str) -> bool {
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    let sizes = [6, 8, 20];
    let b = text.as_bytes();
    if b.len() < 14 {
        return false;
    }
    if b[2] == b':' || b[2] == b'-' {
        let sep = char::from(b[2]);
        let groups: Vec<&str> = text.split(sep).collect();
        sizes.contains(&groups.len()) && groups.iter().all(|g| g.len() == 2 && hex(g))
    } else if b[4] == b'.' {
        let groups: Vec<&str> = text.split('.').collect();
        sizes.contains(&(groups.len() * 2)) && groups.iter().all(|g| g.len() == 4 && hex(g))
    } else {
        false
    }
}

/// `wgtypes.ParseKey`: standard base64 (padded) of exactly 32 bytes.
fn is_wireguard_key(text: &str) -> bool {
    // 32 bytes are 44 characters: 43 of the alphabet, the last of them with its low 2 bits zero,
    // and one `=`.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = text.as_bytes();
    b.len() == 44
        && b[43] == b'='
        && b[..43].iter().all(|c| ALPHABET.contains(c))
        && ALPHABET
            .iter()
            .position(|c| *c == b[42])
            .is_some_and(|i| i & 0b11 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_and_keys_validate_like_go() {
        assert!(is_go_mac("66:0a:1b:2c:3d:4e"));
        assert!(is_go_mac("66-0A-1B-2C-3D-4E"));
        assert!(is_go_mac("660a.1b2c.3d4e"));
        assert!(!is_go_mac("66:0a:1b:2c:3d"));
        assert!(!is_go_mac("66:0a-1b:2c:3d:4e"));
        assert!(is_wireguard_key(
            "jlkVyQYooZYzI2wFfNhSZez5eWh44yfq1wKVjLvSXgY="
        ));
        assert!(!is_wireguard_key(
            "jlkVyQYooZYzI2wFfNhSZez5eWh44yfq1wKVjLvSXgZ="
        ));
        assert!(!is_wireguard_key("x"));
        assert!(is_dns1123_subdomain("node-1.example"));
        assert!(!is_dns1123_subdomain("Node1"));
        assert!(!is_dns1123_subdomain("node_1"));
    }
}
