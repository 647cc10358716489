//! ClusterInformation and FelixConfiguration: one global or host config key per spec field, and
//! the ready flag.
//!
//! Felix reads its datastore config as a flat map of raw strings (the v1 model predates v3's
//! typed spec), so Calico's config processor (`configurationprocessor.go`,
//! `felixconfigprocessor.go`, `clusterinfoprocessor.go`) sends one key per *field of the spec
//! type*, whether set or not: set fields carry their value rendered the way Felix parses it,
//! unset ones are deletions (so unsetting a field reverts Felix to its default). `default`
//! configures every host (`/calico/v1/config/<Name>`), `node.<host>` one host
//! (`/calico/v1/host/<host>/config/<Name>`); any other name gives nothing. The field table below
//! lists the spec type's fields in order with their v1 names (`confignamev1`) and how each is
//! rendered; it was generated from the pinned Calico's `FelixConfigurationSpec` with
//! `calico-v1 -config-fields` (peers/calico/cmd/calico-v1).
//!
//! The renderings are Go's: durations as float seconds (or milliseconds for `…Millis` fields) in
//! `%v` form (`1e+06` for a million), lists comma-joined, `numorstring.Port`s as `String()`,
//! slices of them in `%v` form (`[80 1000:2000]`), maps as `k=v,` per entry, and the few fields
//! with a converter of their own (failsafe ports, route table ranges, health timeout overrides,
//! BPF conntrack timeouts). A non-pointer string field set to `""` is unset; a pointer field set
//! to an empty value (`""`, `[]`, `{}`) is sent as the empty string.
//!
//! FelixConfiguration annotations `config.projectcalico.org/<Name>` override a field's value or
//! add a key of their own. Calico remembers the extra names it has seen (in the processor) to
//! delete them later; statelessly, the deletion of a resource deletes the extra names of its last
//! value, and dropping an annotation from a live resource relies on the caller diffing the keys
//! of the old and new versions.
//!
//! Map-valued fields (`bpfLogFilters`) are rendered in key order; Go iterates its map in random
//! order, so Typha itself sends a random order for maps of more than one entry.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::emit::{deleted, invalid, parse};
use super::v3read::{Port, Reason, parse_cidr_or_ip};
use super::{ConvertError, Converted, Dialect, Resource, Syncer, V1Update, keys};

mod fields;
mod go_text;

use fields::{CLUSTER_INFO_FIELDS, FELIX_FIELDS};
use go_text::*;

const FELIX_CONFIGURATION: &str = "FelixConfiguration";
const CLUSTER_INFORMATION: &str = "ClusterInformation";
/// The annotation prefix of FelixConfiguration overrides.
const ANNOTATION_PREFIX: &str = "config.projectcalico.org/";
/// ClusterInformation's field that is the ready flag (global only: no host key).
const DATASTORE_READY: &str = "DatastoreReady";

pub(super) fn convert(
    syncer: Syncer,
    _dialect: Dialect,
    resource: &Resource<'_>,
    deleted: bool,
) -> Option<Converted> {
    if syncer != Syncer::Felix {
        return None;
    }
    let kind = match resource.kind {
        FELIX_CONFIGURATION => &FELIX,
        CLUSTER_INFORMATION => &CLUSTER_INFO,
        _ => return None,
    };
    Some(convert_config(kind, resource, deleted))
}

/// How a field's value becomes Felix's raw string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// `string`: `""` is unset.
    Text,
    /// `*string` or a pointer to a named string type: any value, `""` included.
    SetText,
    Bool,
    /// Go's `int` (64 bits).
    Int,
    Uint32,
    /// `*metav1.Duration` in float seconds.
    Seconds,
    /// `*metav1.Duration` in float milliseconds (`configv1timescale:"milliseconds"`).
    Millis,
    /// `*[]string`, comma-joined.
    List,
    /// `*[]ProtoPort` (`protoPortSliceToString`): `none` when empty.
    ProtoPorts,
    /// `*numorstring.Port`.
    Port,
    /// `*[]numorstring.Port`, in Go's `%v` slice form.
    PortList,
    /// `*map[string]string`: `k=v,` per entry.
    Map,
    /// `[]HealthTimeoutOverride`: `name=<Go duration>` comma-joined; empty is unset.
    HealthTimeoutOverrides,
    /// `*RouteTableRanges`: `min-max` comma-joined.
    RouteTableRanges,
    /// `*RouteTableRange`: `min-max`.
    RouteTableRange,
    /// `*BPFConntrackTimeouts`: `<GoField>=<value>` per set field, comma-joined.
    BpfConntrackTimeouts,
}

/// One spec field: its JSON name, its v1 config name, its rendering.
struct Field {
    json: &'static str,
    v1: &'static str,
    format: Format,
}

impl Field {
    const fn new(json: &'static str, v1: &'static str, format: Format) -> Field {
        Field { json, v1, format }
    }
}

/// A config kind: its spec fields, and whether annotations may override them.
struct ConfigKind {
    fields: &'static [Field],
    annotations: bool,
    /// ClusterInformation: `DatastoreReady` is the ready flag.
    ready_flag: bool,
}

static FELIX: ConfigKind = ConfigKind {
    fields: &FELIX_FIELDS,
    annotations: true,
    ready_flag: false,
};

static CLUSTER_INFO: ConfigKind = ConfigKind {
    fields: &CLUSTER_INFO_FIELDS,
    annotations: false,
    ready_flag: true,
};

/// Which keys a config resource sets: every host's or one host's.
#[derive(Clone, Copy)]
enum Scope<'a> {
    Global,
    Host(&'a str),
}

/// Calico's `extractNode`: `default`, or `node.<host>` (an empty host is the global scope, as in
/// Calico).
fn scope(name: &str) -> Option<Scope<'_>> {
    if name == "default" {
        return Some(Scope::Global);
    }
    match name.strip_prefix("node.")? {
        "" => Some(Scope::Global),
        host => Some(Scope::Host(host)),
    }
}

impl ConfigKind {
    /// The key of config `name` in `scope`; `None` where Calico has none (the ready flag on a
    /// host) or cannot render one (an empty name).
    fn key(&self, scope: Scope<'_>, name: &str) -> Option<String> {
        if name.is_empty() {
            return None;
        }
        match scope {
            Scope::Global if self.ready_flag && name == DATASTORE_READY => Some(keys::ready_flag()),
            Scope::Host(_) if self.ready_flag && name == DATASTORE_READY => None,
            Scope::Global => Some(keys::global_config(name)),
            Scope::Host(host) => Some(keys::host_config(host, name)),
        }
    }
}

fn convert_config(kind: &ConfigKind, resource: &Resource<'_>, is_deleted: bool) -> Converted {
    let Some(scope) = scope(resource.name) else {
        return Converted {
            updates: Vec::new(),
            error: Some(invalid(
                resource,
                "the name is neither `default` nor `node.<name>`".into(),
            )),
        };
    };
    let field_keys = || {
        kind.fields
            .iter()
            .filter_map(|f| kind.key(scope, f.v1))
            .collect::<Vec<_>>()
    };
    let value = match parse(resource) {
        Ok(value) => value,
        Err(error) => return fail(field_keys(), error),
    };
    let overrides = match overrides(kind, &value) {
        Ok(o) => o,
        Err(reason) => return fail(field_keys(), invalid(resource, reason)),
    };
    let extra_names = overrides
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !kind.fields.iter().any(|f| f.v1 == *name));
    if is_deleted {
        let mut keys = field_keys();
        keys.extend(extra_names.filter_map(|name| kind.key(scope, name)));
        return Converted {
            updates: keys.into_iter().map(deleted).collect(),
            error: None,
        };
    }
    let spec = match value.get("spec") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(spec)) => spec.clone(),
        Some(_) => {
            return fail(
                field_keys(),
                invalid(resource, "spec: not an object".into()),
            );
        }
    };
    let mut updates = Vec::new();
    for field in kind.fields {
        let Some(key) = kind.key(scope, field.v1) else {
            continue;
        };
        let rendered = match overrides.iter().find(|(name, _)| name == field.v1) {
            Some((_, text)) => Some(text.clone()),
            None => match render(field, spec.get(field.json)) {
                Ok(text) => text,
                Err(reason) => return fail(field_keys(), invalid(resource, reason)),
            },
        };
        updates.push(raw(key, rendered));
    }
    for name in extra_names {
        if let Some(key) = kind.key(scope, name) {
            let text = overrides
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, text)| text.clone());
            updates.push(raw(key, text));
        }
    }
    Converted {
        updates,
        error: None,
    }
}

/// The annotation overrides (`config.projectcalico.org/<Name>` → value) of a kind that allows
/// them, in key order.
fn overrides(kind: &ConfigKind, value: &Value) -> Result<Vec<(String, String)>, Reason> {
    let annotations = match value.get("metadata").and_then(|m| m.get("annotations")) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(a)) => a,
        Some(_) => return Err("metadata.annotations: not an object".into()),
    };
    let mut out = Vec::new();
    for (k, v) in annotations {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            _ => return Err(format!("metadata.annotations.{k}: not a string")),
        };
        if let Some(name) = k.strip_prefix(ANNOTATION_PREFIX)
            && kind.annotations
        {
            out.push((name.to_owned(), text));
        }
    }
    out.sort();
    Ok(out)
}

/// A raw-string config update (`None`: a deletion).
fn raw(key: String, text: Option<String>) -> V1Update {
    V1Update {
        key,
        value: text.map(Bytes::from),
        v3_resource_version: String::new(),
    }
}

fn fail(keys: Vec<String>, error: ConvertError) -> Converted {
    Converted {
        updates: keys.into_iter().map(deleted).collect(),
        error: Some(error),
    }
}

/// A field's raw string, or `None` when it is unset.
fn render(field: &Field, value: Option<&Value>) -> Result<Option<String>, Reason> {
    let name = field.json;
    let value = match value {
        None | Some(Value::Null) => {
            return Ok(None);
        }
        Some(v) => v,
    };
    Ok(Some(match field.format {
        Format::Text => {
            let t = field_text(name, value)?;
            if t.is_empty() {
                return Ok(None);
            }
            t
        }
        Format::SetText => field_text(name, value)?,
        Format::Bool => match value {
            Value::Bool(b) => b.to_string(),
            _ => return Err(format!("{name}: not a bool")),
        },
        Format::Int => field_int(name, value)?.to_string(),
        Format::Uint32 => match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => n.to_string(),
            None => return Err(format!("{name}: not a uint32")),
        },
        Format::Seconds => go_seconds(field_duration(name, value)?),
        Format::Millis => go_millis(field_duration(name, value)?),
        Format::List => field_list(name, value)?
            .iter()
            .map(|v| field_text(name, v))
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        Format::ProtoPorts => proto_ports(name, value)?,
        Format::Port => port_string(&Port::decode(value)?),
        Format::PortList => port_list(name, value)?,
        Format::Map => key_value_map(name, value)?,
        Format::HealthTimeoutOverrides => return health_timeout_overrides(name, value),
        Format::RouteTableRanges => field_list(name, value)?
            .iter()
            .map(|r| route_table_range(name, r))
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        Format::RouteTableRange => route_table_range(name, value)?,
        Format::BpfConntrackTimeouts => bpf_conntrack_timeouts(name, value)?,
    }))
}

/// A string field's value (`null` is empty).
fn field_text(name: &str, v: &Value) -> Result<String, Reason> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        _ => Err(format!("{name}: not a string")),
    }
}

/// A list field's items.
fn field_list<'a>(name: &str, v: &'a Value) -> Result<&'a [Value], Reason> {
    match v {
        Value::Array(a) => Ok(a),
        _ => Err(format!("{name}: not a list")),
    }
}

/// An integer field's value (`null` is 0).
fn field_int(name: &str, v: &Value) -> Result<i64, Reason> {
    match v {
        Value::Null => Ok(0),
        Value::Number(n) => n.as_i64().ok_or_else(|| format!("{name}: not an int")),
        _ => Err(format!("{name}: not a number")),
    }
}

/// A duration field (Go's duration text) in nanoseconds.
fn field_duration(name: &str, v: &Value) -> Result<i64, Reason> {
    let t = field_text(name, v)?;
    go_parse_duration(&t).ok_or_else(|| format!("{name}: invalid duration {t:?}"))
}

/// Failsafe ports: comma-joined `ProtoPort`s, `none` for an empty list.
fn proto_ports(name: &str, value: &Value) -> Result<String, Reason> {
    let ports = field_list(name, value)?;
    Ok(if ports.is_empty() {
        "none".to_owned()
    } else {
        ports
            .iter()
            .map(|p| proto_port(name, p))
            .collect::<Result<Vec<_>, _>>()?
            .join(",")
    })
}

/// A slice of `numorstring.Port`s in `%v` form: `[80 1000:2000]`.
fn port_list(name: &str, value: &Value) -> Result<String, Reason> {
    let ports = field_list(name, value)?
        .iter()
        .map(|p| Port::decode(p).map(|p| port_string(&p)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(format!("[{}]", ports.join(" ")))
}

/// A string map as `k=v,` per entry, in key order.
fn key_value_map(name: &str, value: &Value) -> Result<String, Reason> {
    let Value::Object(m) = value else {
        return Err(format!("{name}: not an object"));
    };
    let mut entries = m
        .iter()
        .map(|(k, v)| Ok((k.clone(), field_text(name, v)?)))
        .collect::<Result<Vec<_>, Reason>>()?;
    entries.sort();
    Ok(entries.iter().map(|(k, v)| format!("{k}={v},")).collect())
}

/// Health timeout overrides as `name=duration` comma-joined; an empty list is unset.
fn health_timeout_overrides(name: &str, value: &Value) -> Result<Option<String>, Reason> {
    let overrides = field_list(name, value)?;
    if overrides.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        overrides
            .iter()
            .map(|o| {
                let n = field_text(name, o.get("name").unwrap_or(&Value::Null))?;
                let d = field_duration(name, o.get("timeout").unwrap_or(&Value::Null))?;
                Ok(format!("{n}={}", go_duration_string(d)))
            })
            .collect::<Result<Vec<_>, Reason>>()?
            .join(","),
    ))
}

/// BPF conntrack timeouts as `GoName=value` comma-joined, set fields only, in Go's order.
fn bpf_conntrack_timeouts(name: &str, value: &Value) -> Result<String, Reason> {
    let Value::Object(m) = value else {
        return Err(format!("{name}: not an object"));
    };
    let mut parts = Vec::new();
    for (json, go) in BPF_CONNTRACK_TIMEOUTS {
        match m.get(json) {
            None | Some(Value::Null) => {}
            Some(v) => parts.push(format!("{go}={}", field_text(name, v)?)),
        }
    }
    Ok(parts.join(","))
}

/// `BPFConntrackTimeouts`' fields: JSON name and Go name, in Go's order.
const BPF_CONNTRACK_TIMEOUTS: [(&str, &str); 8] = [
    ("creationGracePeriod", "CreationGracePeriod"),
    ("tcpSynSent", "TCPSynSent"),
    ("tcpEstablished", "TCPEstablished"),
    ("tcpFinsSeen", "TCPFinsSeen"),
    ("tcpResetSeen", "TCPResetSeen"),
    ("udpTimeout", "UDPTimeout"),
    ("genericTimeout", "GenericTimeout"),
    ("icmpTimeout", "ICMPTimeout"),
];

/// `numorstring.Port.String()`.
fn port_string(port: &Port) -> String {
    match port {
        Port::Named(name) => name.clone(),
        Port::Range(lo, hi) if lo == hi => lo.to_string(),
        Port::Range(lo, hi) => format!("{lo}:{hi}"),
    }
}

/// One failsafe `ProtoPort`: `proto:port`, `proto:net:port`, or `proto:[net]:port` for IPv6.
fn proto_port(name: &str, p: &Value) -> Result<String, Reason> {
    if !p.is_object() {
        return Err(format!("{name}: not a list of objects"));
    }
    let text = |field: &str| match p.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{name}.{field}: not a string")),
    };
    let port = match p.get("port") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| format!("{name}.port: not a uint16"))?,
    };
    let protocol = text("protocol")?.to_lowercase();
    let net = text("net")?;
    Ok(if net.is_empty() {
        format!("{protocol}:{port}")
    } else if parse_cidr_or_ip(&net).is_some_and(|c| c.version() == 6) {
        format!("{protocol}:[{net}]:{port}")
    } else {
        format!("{protocol}:{net}:{port}")
    })
}

/// `min-max` of a route table range.
fn route_table_range(name: &str, r: &Value) -> Result<String, Reason> {
    let Value::Object(m) = r else {
        return Err(format!("{name}: not an object"));
    };
    let bound = |field: &str| match m.get(field) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| format!("{name}.{field}: not an int")),
        Some(_) => Err(format!("{name}.{field}: not a number")),
    };
    Ok(format!("{}-{}", bound("min")?, bound("max")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_formats_like_percent_v() {
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (90.0, "90"),
            (0.05, "0.05"),
            (1.5, "1.5"),
            (123456.7, "123456.7"),
            (999999.0, "999999"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (-2.5, "-2.5"),
            (1e21, "1e+21"),
            (1e100, "1e+100"),
        ];
        for (x, want) in cases {
            assert_eq!(go_float(x), want, "{x}");
        }
    }

    #[test]
    fn durations_parse_like_go() {
        let cases = [
            ("0", Some(0)),
            ("90s", Some(90 * NANOS_PER_SECOND)),
            ("1m30s", Some(90 * NANOS_PER_SECOND)),
            ("1.5h", Some(5400 * NANOS_PER_SECOND)),
            ("-1.5s", Some(-1_500_000_000)),
            ("+2ms", Some(2_000_000)),
            ("100\u{b5}s", Some(100_000)),
            ("100\u{3bc}s", Some(100_000)),
            ("3us", Some(3_000)),
            ("7ns", Some(7)),
            (".5s", Some(500_000_000)),
            ("5.s", Some(5_000_000_000)),
            ("1h2m3s4ms", Some(3_723_004_000_000)),
            ("2562047h47m16.854775807s", Some(i64::MAX)),
            ("2562047h47m16.854775808s", None),
            ("-2562047h47m16.854775808s", Some(i64::MIN)),
            ("9223372036854775808ns9223372036854775808ns", Some(0)),
            ("", None),
            ("-", None),
            ("s", None),
            (".s", None),
            ("1", None),
            ("1d", None),
            ("1S", None),
            ("1 s", None),
        ];
        for (text, want) in cases {
            assert_eq!(go_parse_duration(text), want, "{text:?}");
        }
    }

    #[test]
    fn durations_print_like_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1\u{b5}s"),
            (2_200_000, "2.2ms"),
            (1_500_000_000, "1.5s"),
            (90 * NANOS_PER_SECOND, "1m30s"),
            (3600 * NANOS_PER_SECOND, "1h0m0s"),
            (3_723_004_000_000, "1h2m3.004s"),
            (-1_500_000_000, "-1.5s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration_string(d), want, "{d}");
        }
    }

    #[test]
    fn config_names_give_the_scope() {
        assert!(matches!(scope("default"), Some(Scope::Global)));
        assert!(matches!(scope("node.a"), Some(Scope::Host("a"))));
        assert!(matches!(scope("node."), Some(Scope::Global)));
        assert!(scope("other").is_none());
    }
}
