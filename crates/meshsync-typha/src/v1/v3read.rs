//! Reading v3 JSON the way Calico's Go structs decode it, for the endpoint, profile, policy and
//! network set families.
//!
//! Calico's update processors see typed v3 structs: a field of the wrong JSON type fails the
//! whole decode (the resource never reaches the processor), an absent field and a `null` one are
//! the zero value, and `omitempty` on the v1 side drops empty strings and empty lists. These
//! helpers give exactly those three outcomes on `serde_json::Value`, so the family files read like
//! the processors they mirror. Values that Go would reject are an `Err(reason)`; the caller turns
//! it into a [`super::ConvertError`] and the deletion of the resource's keys.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::keys::Cidr;

pub(super) type Reason = String;

/// The object at `v[name]`; absent or `null` is `None`.
pub(super) fn object<'a>(
    v: &'a Value,
    name: &str,
) -> Result<Option<&'a Map<String, Value>>, Reason> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(format!("{name}: not an object")),
    }
}

/// The string at `v[name]`; absent or `null` is `""`.
pub(super) fn string<'a>(v: &'a Value, name: &str) -> Result<&'a str, Reason> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("{name}: not a string")),
    }
}

/// The bool at `v[name]`; absent or `null` is `false`.
pub(super) fn boolean(v: &Value, name: &str) -> Result<bool, Reason> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("{name}: not a bool")),
    }
}

/// The list at `v[name]`; `None` when absent or `null` (Go's nil slice), `Some(empty)` for `[]`.
pub(super) fn list<'a>(v: &'a Value, name: &str) -> Result<Option<&'a Vec<Value>>, Reason> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(_) => Err(format!("{name}: not a list")),
    }
}

/// A list of strings (`None` for nil).
pub(super) fn strings(v: &Value, name: &str) -> Result<Option<Vec<String>>, Reason> {
    let Some(items) = list(v, name)? else {
        return Ok(None);
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(s.clone()),
            Value::Null => Ok(String::new()),
            _ => Err(format!("{name}: not a list of strings")),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// A `map[string]string` (`None` for nil).
pub(super) fn string_map(v: &Value, name: &str) -> Result<Option<Map<String, Value>>, Reason> {
    let Some(m) = object(v, name)? else {
        return Ok(None);
    };
    let mut out = Map::new();
    for (k, val) in m {
        match val {
            Value::String(_) => {
                out.insert(k.clone(), val.clone());
            }
            Value::Null => {
                out.insert(k.clone(), Value::String(String::new()));
            }
            _ => return Err(format!("{name}.{k}: not a string")),
        }
    }
    Ok(Some(out))
}

/// A number that must fit Go's `int` (`*int` fields: ipVersion, ICMP type and code).
pub(super) fn int(v: &Value, name: &str) -> Result<Option<i64>, Reason> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("{name}: not an integer")),
        Some(_) => Err(format!("{name}: not a number")),
    }
}

/// A float (`*float64`: policy and tier orders).
pub(super) fn float(v: &Value, name: &str) -> Result<Option<Value>, Reason> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(n @ Value::Number(_)) => Ok(Some(n.clone())),
        Some(_) => Err(format!("{name}: not a number")),
    }
}

/// Inserts `value` under `name` unless it is an empty string (Go's `omitempty`).
pub(super) fn put_str(out: &mut Map<String, Value>, name: &str, value: &str) {
    if !value.is_empty() {
        out.insert(name.into(), Value::String(value.into()));
    }
}

/// Inserts a list unless it is empty (Go's `omitempty`).
pub(super) fn put_list(out: &mut Map<String, Value>, name: &str, items: Vec<Value>) {
    if !items.is_empty() {
        out.insert(name.into(), Value::Array(items));
    }
}

/// Go's `cnet.ParseIP`: an address, IPv4-mapped IPv6 written as IPv4 (Go stores it in 4 bytes).
pub(super) fn parse_ip(text: &str) -> Option<IpAddr> {
    let ip: IpAddr = text.parse().ok()?;
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

/// Go's `cnet.ParseCIDROrIP(text)` followed by `Network()`: a CIDR masked to its prefix, or a
/// lone address as a /32 or /128.
pub(super) fn parse_cidr_or_ip(text: &str) -> Option<Cidr> {
    if let Some(cidr) = Cidr::parse(text) {
        return Some(cidr);
    }
    let addr = parse_ip(text)?;
    let prefix = match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    Some(Cidr { addr, prefix })
}

/// A `numorstring.Protocol` as its v1 form marshals: a number for a number or a numeric string,
/// otherwise the name in lower case (`ToV1`).
pub(super) fn protocol_v1(v: &Value, name: &str) -> Result<Option<Value>, Reason> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|n| *n <= 255)
            .map(|n| Some(Value::from(n)))
            .ok_or_else(|| format!("{name}: protocol number out of range")),
        Some(Value::String(s)) => Ok(Some(match s.parse::<u8>() {
            Ok(n) if s.bytes().all(|b| b.is_ascii_digit()) => Value::from(n),
            _ => Value::String(s.to_lowercase()),
        })),
        Some(_) => Err(format!("{name}: not a protocol")),
    }
}

/// Whether a v1 protocol value allows port matches (TCP, UDP, SCTP by name or number).
pub(super) fn protocol_supports_ports(protocol: Option<&Value>) -> bool {
    match protocol {
        Some(Value::Number(n)) => matches!(n.as_u64(), Some(6 | 17 | 132)),
        Some(Value::String(s)) => matches!(s.as_str(), "tcp" | "udp" | "sctp"),
        _ => false,
    }
}

/// One `numorstring.Port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Port {
    Range(u16, u16),
    Named(String),
}

impl Port {
    /// Decodes a port as Go's `Port.UnmarshalJSON` does.
    pub(super) fn decode(v: &Value) -> Result<Port, Reason> {
        match v {
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .map(|n| Port::Range(n, n))
                .ok_or_else(|| format!("invalid port {n}")),
            Value::String(s) => Port::parse(s),
            _ => Err("port: not a number or string".into()),
        }
    }

    /// `numorstring.PortFromString`.
    pub(super) fn parse(s: &str) -> Result<Port, Reason> {
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if digits(s) {
            return s
                .parse::<u16>()
                .map(|n| Port::Range(n, n))
                .map_err(|_| format!("invalid port format ({s})"));
        }
        if let Some((lo, hi)) = s.split_once(':')
            && digits(lo)
            && digits(hi)
        {
            let lo = lo
                .parse::<u16>()
                .map_err(|_| format!("invalid port range ({s})"))?;
            let hi = hi
                .parse::<u16>()
                .map_err(|_| format!("invalid port range ({s})"))?;
            if lo > hi {
                return Err(format!("invalid port range ({s})"));
            }
            return Ok(Port::Range(lo, hi));
        }
        let name_ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !name_ok {
            return Err(format!("invalid name for named port ({s})"));
        }
        Ok(Port::Named(s.into()))
    }

    /// Go's `Port.MarshalJSON`.
    pub(super) fn to_json(&self) -> Value {
        match self {
            Port::Named(n) => Value::String(n.clone()),
            Port::Range(lo, hi) if lo == hi => Value::from(*lo),
            Port::Range(lo, hi) => Value::String(format!("{lo}:{hi}")),
        }
    }

    /// The v1 validator's checks on a port (`validatePort` and the `portName` tag).
    pub(super) fn validate(&self) -> Result<(), Reason> {
        match self {
            Port::Range(lo, hi) if *lo == 0 || *hi == 0 || lo > hi => {
                Err("port range invalid".into())
            }
            Port::Range(..) => Ok(()),
            Port::Named(n) if is_iana_port_name(n) => Ok(()),
            Port::Named(n) => Err(format!("invalid port name {n}")),
        }
    }
}

/// Kubernetes' `IsValidPortName`: at most 15 characters of `a-z0-9-`, at least one letter, no
/// leading, trailing or doubled hyphen.
pub(super) fn is_iana_port_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// The ports of `v[name]` (`None` for nil).
pub(super) fn ports(v: &Value, name: &str) -> Result<Option<Vec<Port>>, Reason> {
    let Some(items) = list(v, name)? else {
        return Ok(None);
    };
    items
        .iter()
        .map(Port::decode)
        .collect::<Result<_, _>>()
        .map(Some)
}

/// Calico's v1 `name` validator: `^[a-zA-Z0-9_.-]{1,128}$`.
pub(super) fn is_v1_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The `metadata` object of a v3 resource (empty when absent).
pub(super) fn metadata(v: &Value) -> Result<Value, Reason> {
    Ok(object(v, "metadata")?.map_or(Value::Null, |m| Value::Object(m.clone())))
}

/// The `spec` object of a v3 resource (`null` when absent: every field then reads as zero).
pub(super) fn spec(v: &Value) -> Result<Value, Reason> {
    Ok(object(v, "spec")?.map_or(Value::Null, |m| Value::Object(m.clone())))
}

/// A v3 object's `metadata` as Go's `metav1.ObjectMeta` re-marshals it for Typha: the known
/// fields only, `resourceVersion` moved out (Typha sends it beside the value), and
/// `creationTimestamp` always present (`null` when unset: it is a struct, never omitted).
pub(super) fn object_meta_json(metadata: &Value) -> Value {
    const FIELDS: [&str; 13] = [
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "generation",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    ];
    let mut out = Map::new();
    for field in FIELDS {
        match metadata.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::Object(o)) if o.is_empty() => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(Value::Number(n)) if n.as_i64() == Some(0) => {}
            Some(v) => {
                out.insert(field.into(), v.clone());
            }
        }
    }
    out.insert(
        "creationTimestamp".into(),
        metadata
            .get("creationTimestamp")
            .cloned()
            .unwrap_or(Value::Null),
    );
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ports_decode_and_marshal_as_go() {
        assert_eq!(Port::decode(&json!(80)).unwrap().to_json(), json!(80));
        assert_eq!(Port::decode(&json!("80")).unwrap().to_json(), json!(80));
        assert_eq!(Port::decode(&json!("1:1")).unwrap().to_json(), json!(1));
        assert_eq!(
            Port::decode(&json!("80:90")).unwrap().to_json(),
            json!("80:90")
        );
        assert_eq!(
            Port::decode(&json!("http")).unwrap().to_json(),
            json!("http")
        );
        assert!(Port::decode(&json!("90:80")).is_err());
        assert!(Port::decode(&json!("70000")).is_err());
        assert!(Port::decode(&json!("a b")).is_err());
        assert!(Port::Range(0, 0).validate().is_err());
        assert!(Port::Named("Http".into()).validate().is_err());
    }

    #[test]
    fn protocols_marshal_in_v1_form() {
        let p = |v: Value| protocol_v1(&json!({ "p": v }), "p").unwrap();
        assert_eq!(p(json!("TCP")), Some(json!("tcp")));
        assert_eq!(p(json!("ICMPv6")), Some(json!("icmpv6")));
        assert_eq!(p(json!("17")), Some(json!(17)));
        assert_eq!(p(json!(132)), Some(json!(132)));
        assert!(protocol_supports_ports(Some(&json!(6))));
        assert!(!protocol_supports_ports(Some(&json!("icmp"))));
    }

    #[test]
    fn nets_are_masked_and_lone_addresses_are_host_routes() {
        let s = |t: &str| parse_cidr_or_ip(t).map(|c| c.to_go_string());
        assert_eq!(s("10.1.2.3/24").as_deref(), Some("10.1.2.0/24"));
        assert_eq!(s("10.1.2.3").as_deref(), Some("10.1.2.3/32"));
        assert_eq!(s("fd00::1").as_deref(), Some("fd00::1/128"));
        assert_eq!(s("::ffff:10.0.0.1").as_deref(), Some("10.0.0.1/32"));
        assert_eq!(s("nonsense"), None);
    }
}
