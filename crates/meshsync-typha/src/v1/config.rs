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

const NANOS_PER_SECOND: i64 = 1_000_000_000;
const NANOS_PER_MILLI: i64 = 1_000_000;

/// `fmt.Sprintf("%v", d.Seconds())`.
fn go_seconds(d: i64) -> String {
    let secs = d / NANOS_PER_SECOND;
    let nanos = d % NANOS_PER_SECOND;
    go_float(secs as f64 + nanos as f64 / 1e9)
}

/// The milliseconds form: `float64(d/ms) + float64(d%ms)/1e6` in `%v`.
fn go_millis(d: i64) -> String {
    let ms = d / NANOS_PER_MILLI;
    let rest = d % NANOS_PER_MILLI;
    go_float(ms as f64 + rest as f64 / 1e6)
}

/// Go's `%v` of a float64: the shortest digits that round-trip, in `%e` form when the decimal
/// exponent is below -4 or at least 6 (`1e+06`, `1.5e-05`), else in `%f` form.
fn go_float(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    if !x.is_finite() {
        return if x.is_nan() {
            "NaN"
        } else if x > 0.0 {
            "+Inf"
        } else {
            "-Inf"
        }
        .to_owned();
    }
    // Rust's `{:e}` is the shortest round-tripping form too: `-1.2345e6`.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if x < 0.0 { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{dot}e{exp_sign}{:02}", exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    let n = digits.len() as i32;
    let body = if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point >= n {
        format!("{digits}{}", "0".repeat((point - n) as usize))
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{int}.{frac}")
    };
    format!("{sign}{body}")
}

/// The largest magnitude of a Go duration in nanoseconds (`1<<63`, for `-1<<63`).
const DURATION_LIMIT: u64 = 1 << 63;

/// Go's `time.ParseDuration` (`[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or `0`), in nanoseconds.
fn go_parse_duration(text: &str) -> Option<i64> {
    let mut s = text.as_bytes();
    let mut neg = false;
    if let Some((&c, rest)) = s.split_first()
        && (c == b'-' || c == b'+')
    {
        neg = c == b'-';
        s = rest;
    }
    if s == b"0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        let (v, rest) = duration_segment(s)?;
        s = rest;
        // Go's uint64 wraps here (two segments of exactly 2^63 ns add up to 0); so does this.
        total = total.wrapping_add(v);
        if total > DURATION_LIMIT {
            return None;
        }
    }
    if neg {
        // -(1<<63) is representable.
        return Some((total as i64).wrapping_neg());
    }
    i64::try_from(total).ok()
}

/// One `<number><unit>` segment of a duration (the body of `ParseDuration`'s loop): its value in
/// nanoseconds and the text after it.
fn duration_segment(s: &[u8]) -> Option<(u64, &[u8])> {
    if !s.first().is_some_and(|&c| c == b'.' || c.is_ascii_digit()) {
        return None;
    }
    // The integer part.
    let (mut v, digits) = leading_int(s)?;
    let pre = digits > 0;
    let mut s = &s[digits..];
    // The fraction.
    let (mut f, mut scale, mut post) = (0, 1.0, false);
    if s.first() == Some(&b'.') {
        let digits;
        (f, scale, digits) = leading_fraction(&s[1..]);
        post = digits > 0;
        s = &s[1 + digits..];
    }
    if !pre && !post {
        return None;
    }
    // The unit.
    let end = s
        .iter()
        .position(|&c| c == b'.' || c.is_ascii_digit())
        .unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    let unit = duration_unit(&s[..end])?;
    if v > DURATION_LIMIT / unit {
        return None;
    }
    v *= unit;
    if f > 0 {
        v += (f as f64 * (unit as f64 / scale)) as u64;
        if v > DURATION_LIMIT {
            return None;
        }
    }
    Some((v, &s[end..]))
}

/// Go's `leadingInt`: the value of the leading digits and how many there are; `None` past 1<<63.
fn leading_int(s: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut i = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        if v > DURATION_LIMIT / 10 {
            return None;
        }
        v = v * 10 + u64::from(s[i] - b'0');
        if v > DURATION_LIMIT {
            return None;
        }
        i += 1;
    }
    Some((v, i))
}

/// Go's `leadingFraction`: the leading digits as a value and its scale (10^digits kept), and how
/// many digits there are. Digits past the point where the value would overflow are skipped.
fn leading_fraction(s: &[u8]) -> (u64, f64, usize) {
    let mut f: u64 = 0;
    let mut scale: f64 = 1.0;
    let mut i = 0;
    let mut overflow = false;
    while i < s.len() && s[i].is_ascii_digit() {
        if !overflow {
            if f > (DURATION_LIMIT - 1) / 10 {
                overflow = true;
            } else {
                let y = f * 10 + u64::from(s[i] - b'0');
                if y > DURATION_LIMIT {
                    overflow = true;
                } else {
                    f = y;
                    scale *= 10.0;
                }
            }
        }
        i += 1;
    }
    (f, scale, i)
}

/// Go's `unitMap`: a duration unit's length in nanoseconds.
fn duration_unit(unit: &[u8]) -> Option<u64> {
    Some(match unit {
        b"ns" => 1,
        // `µs` as U+00B5 and as U+03BC.
        b"us" | [0xc2, 0xb5, b's'] | [0xce, 0xbc, b's'] => 1_000,
        b"ms" => 1_000_000,
        b"s" => 1_000_000_000,
        b"m" => 60_000_000_000,
        b"h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
fn go_duration_string(d: i64) -> String {
    let neg = d < 0;
    let u = d.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    // `v / 10^prec` with the fraction's trailing zeros (and a bare point) dropped.
    let with_fraction = |v: u64, prec: u32| {
        let scale = 10u64.pow(prec);
        let (int, frac) = (v / scale, v % scale);
        if frac == 0 {
            int.to_string()
        } else {
            let frac = format!("{frac:0width$}", width = prec as usize);
            format!("{int}.{}", frac.trim_end_matches('0'))
        }
    };
    if u < 1_000_000_000 {
        let (prec, unit) = match u {
            0 => return "0s".to_owned(),
            1..=999 => (0, "ns"),
            1_000..=999_999 => (3, "\u{b5}s"),
            _ => (6, "ms"),
        };
        return format!("{sign}{}{unit}", with_fraction(u, prec));
    }
    let seconds = with_fraction(u % 60_000_000_000, 9);
    let minutes = u / 60_000_000_000;
    if minutes == 0 {
        return format!("{sign}{seconds}s");
    }
    let hours = minutes / 60;
    if hours == 0 {
        return format!("{sign}{}m{seconds}s", minutes % 60);
    }
    format!("{sign}{hours}h{}m{seconds}s", minutes % 60)
}

const CLUSTER_INFO_FIELDS: [Field; 5] = [
    Field::new("clusterGUID", "ClusterGUID", Format::Text),
    Field::new("clusterType", "ClusterType", Format::Text),
    Field::new("calicoVersion", "CalicoVersion", Format::Text),
    Field::new("datastoreReady", "DatastoreReady", Format::Bool),
    Field::new("variant", "Variant", Format::Text),
];

const FELIX_FIELDS: [Field; 168] = [
    Field::new(
        "useInternalDataplaneDriver",
        "UseInternalDataplaneDriver",
        Format::Bool,
    ),
    Field::new("dataplaneDriver", "DataplaneDriver", Format::Text),
    Field::new(
        "dataplaneWatchdogTimeout",
        "DataplaneWatchdogTimeout",
        Format::Seconds,
    ),
    Field::new("ipv6Support", "Ipv6Support", Format::Bool),
    Field::new(
        "routeRefreshInterval",
        "RouteRefreshInterval",
        Format::Seconds,
    ),
    Field::new(
        "interfaceRefreshInterval",
        "InterfaceRefreshInterval",
        Format::Seconds,
    ),
    Field::new(
        "iptablesRefreshInterval",
        "IptablesRefreshInterval",
        Format::Seconds,
    ),
    Field::new(
        "iptablesPostWriteCheckInterval",
        "IptablesPostWriteCheckIntervalSecs",
        Format::Seconds,
    ),
    Field::new("iptablesLockFilePath", "IptablesLockFilePath", Format::Text),
    Field::new(
        "iptablesLockTimeout",
        "IptablesLockTimeoutSecs",
        Format::Seconds,
    ),
    Field::new(
        "iptablesLockProbeInterval",
        "IptablesLockProbeIntervalMillis",
        Format::Millis,
    ),
    Field::new(
        "featureDetectOverride",
        "FeatureDetectOverride",
        Format::Text,
    ),
    Field::new("featureGates", "FeatureGates", Format::Text),
    Field::new(
        "ipsetsRefreshInterval",
        "IpsetsRefreshInterval",
        Format::Seconds,
    ),
    Field::new("maxIpsetSize", "MaxIpsetSize", Format::Int),
    Field::new("iptablesBackend", "IptablesBackend", Format::SetText),
    Field::new("xdpRefreshInterval", "XDPRefreshInterval", Format::Seconds),
    Field::new("netlinkTimeout", "NetlinkTimeoutSecs", Format::Seconds),
    Field::new("metadataAddr", "MetadataAddr", Format::Text),
    Field::new("metadataPort", "MetadataPort", Format::Int),
    Field::new("openstackRegion", "OpenstackRegion", Format::Text),
    Field::new("interfacePrefix", "InterfacePrefix", Format::Text),
    Field::new("interfaceExclude", "InterfaceExclude", Format::Text),
    Field::new("chainInsertMode", "ChainInsertMode", Format::Text),
    Field::new(
        "defaultEndpointToHostAction",
        "DefaultEndpointToHostAction",
        Format::Text,
    ),
    Field::new(
        "iptablesFilterAllowAction",
        "IptablesFilterAllowAction",
        Format::Text,
    ),
    Field::new(
        "iptablesMangleAllowAction",
        "IptablesMangleAllowAction",
        Format::Text,
    ),
    Field::new(
        "iptablesFilterDenyAction",
        "IptablesFilterDenyAction",
        Format::Text,
    ),
    Field::new("logPrefix", "LogPrefix", Format::Text),
    Field::new("logFilePath", "LogFilePath", Format::Text),
    Field::new("logSeverityFile", "LogSeverityFile", Format::Text),
    Field::new("logSeverityScreen", "LogSeverityScreen", Format::Text),
    Field::new("logSeveritySys", "LogSeveritySys", Format::Text),
    Field::new(
        "logDebugFilenameRegex",
        "LogDebugFilenameRegex",
        Format::Text,
    ),
    Field::new("ipipEnabled", "IpInIpEnabled", Format::Bool),
    Field::new("ipipMTU", "IpInIpMtu", Format::Int),
    Field::new("vxlanEnabled", "VXLANEnabled", Format::Bool),
    Field::new("vxlanMTU", "VXLANMTU", Format::Int),
    Field::new("vxlanMTUV6", "VXLANMTUV6", Format::Int),
    Field::new("vxlanPort", "VXLANPort", Format::Int),
    Field::new("vxlanVNI", "VXLANVNI", Format::Int),
    Field::new(
        "allowVXLANPacketsFromWorkloads",
        "AllowVXLANPacketsFromWorkloads",
        Format::Bool,
    ),
    Field::new(
        "allowIPIPPacketsFromWorkloads",
        "AllowIPIPPacketsFromWorkloads",
        Format::Bool,
    ),
    Field::new(
        "reportingInterval",
        "ReportingIntervalSecs",
        Format::Seconds,
    ),
    Field::new("reportingTTL", "ReportingTTLSecs", Format::Seconds),
    Field::new(
        "endpointReportingEnabled",
        "EndpointReportingEnabled",
        Format::Bool,
    ),
    Field::new(
        "endpointReportingDelay",
        "EndpointReportingDelaySecs",
        Format::Seconds,
    ),
    Field::new(
        "endpointStatusPathPrefix",
        "EndpointStatusPathPrefix",
        Format::Text,
    ),
    Field::new("iptablesMarkMask", "IptablesMarkMask", Format::Uint32),
    Field::new(
        "disableConntrackInvalidCheck",
        "DisableConntrackInvalidCheck",
        Format::Bool,
    ),
    Field::new("healthEnabled", "HealthEnabled", Format::Bool),
    Field::new("healthHost", "HealthHost", Format::SetText),
    Field::new("healthPort", "HealthPort", Format::Int),
    Field::new(
        "healthTimeoutOverrides",
        "HealthTimeoutOverrides",
        Format::HealthTimeoutOverrides,
    ),
    Field::new(
        "prometheusMetricsEnabled",
        "PrometheusMetricsEnabled",
        Format::Bool,
    ),
    Field::new(
        "prometheusMetricsHost",
        "PrometheusMetricsHost",
        Format::Text,
    ),
    Field::new(
        "prometheusMetricsPort",
        "PrometheusMetricsPort",
        Format::Int,
    ),
    Field::new(
        "prometheusGoMetricsEnabled",
        "PrometheusGoMetricsEnabled",
        Format::Bool,
    ),
    Field::new(
        "prometheusProcessMetricsEnabled",
        "PrometheusProcessMetricsEnabled",
        Format::Bool,
    ),
    Field::new(
        "prometheusWireGuardMetricsEnabled",
        "PrometheusWireGuardMetricsEnabled",
        Format::Bool,
    ),
    Field::new(
        "failsafeInboundHostPorts",
        "FailsafeInboundHostPorts",
        Format::ProtoPorts,
    ),
    Field::new(
        "failsafeOutboundHostPorts",
        "FailsafeOutboundHostPorts",
        Format::ProtoPorts,
    ),
    Field::new("kubeNodePortRanges", "KubeNodePortRanges", Format::PortList),
    Field::new("policySyncPathPrefix", "PolicySyncPathPrefix", Format::Text),
    Field::new(
        "usageReportingEnabled",
        "UsageReportingEnabled",
        Format::Bool,
    ),
    Field::new(
        "usageReportingInitialDelay",
        "UsageReportingInitialDelaySecs",
        Format::Seconds,
    ),
    Field::new(
        "usageReportingInterval",
        "UsageReportingIntervalSecs",
        Format::Seconds,
    ),
    Field::new("natPortRange", "NATPortRange", Format::Port),
    Field::new("natOutgoingAddress", "NATOutgoingAddress", Format::Text),
    Field::new(
        "natOutgoingExclusions",
        "NATOutgoingExclusions",
        Format::SetText,
    ),
    Field::new(
        "deviceRouteSourceAddress",
        "DeviceRouteSourceAddress",
        Format::Text,
    ),
    Field::new(
        "deviceRouteSourceAddressIPv6",
        "DeviceRouteSourceAddressIPv6",
        Format::Text,
    ),
    Field::new("deviceRouteProtocol", "DeviceRouteProtocol", Format::Int),
    Field::new("removeExternalRoutes", "RemoveExternalRoutes", Format::Bool),
    Field::new(
        "programClusterRoutes",
        "ProgramClusterRoutes",
        Format::SetText,
    ),
    Field::new("ipForwarding", "IPForwarding", Format::Text),
    Field::new("externalNodesList", "ExternalNodesCIDRList", Format::List),
    Field::new(
        "debugMemoryProfilePath",
        "DebugMemoryProfilePath",
        Format::Text,
    ),
    Field::new(
        "debugDisableLogDropping",
        "DebugDisableLogDropping",
        Format::Bool,
    ),
    Field::new(
        "debugSimulateCalcGraphHangAfter",
        "DebugSimulateCalcGraphHangAfter",
        Format::Seconds,
    ),
    Field::new(
        "debugSimulateDataplaneHangAfter",
        "DebugSimulateDataplaneHangAfter",
        Format::Seconds,
    ),
    Field::new(
        "debugSimulateDataplaneApplyDelay",
        "DebugSimulateDataplaneApplyDelay",
        Format::Seconds,
    ),
    Field::new("debugHost", "DebugHost", Format::SetText),
    Field::new("debugPort", "DebugPort", Format::Int),
    Field::new(
        "iptablesNATOutgoingInterfaceFilter",
        "IptablesNATOutgoingInterfaceFilter",
        Format::Text,
    ),
    Field::new(
        "sidecarAccelerationEnabled",
        "SidecarAccelerationEnabled",
        Format::Bool,
    ),
    Field::new("xdpEnabled", "XDPEnabled", Format::Bool),
    Field::new("genericXDPEnabled", "GenericXDPEnabled", Format::Bool),
    Field::new("nftablesMode", "NFTablesMode", Format::SetText),
    Field::new(
        "nftablesRefreshInterval",
        "NftablesRefreshInterval",
        Format::Seconds,
    ),
    Field::new(
        "nftablesFilterAllowAction",
        "NftablesFilterAllowAction",
        Format::Text,
    ),
    Field::new(
        "nftablesMangleAllowAction",
        "NftablesMangleAllowAction",
        Format::Text,
    ),
    Field::new(
        "nftablesFilterDenyAction",
        "NftablesFilterDenyAction",
        Format::Text,
    ),
    Field::new("nftablesMarkMask", "NftablesMarkMask", Format::Uint32),
    Field::new("bpfEnabled", "BPFEnabled", Format::Bool),
    Field::new(
        "bpfDisableUnprivileged",
        "BPFDisableUnprivileged",
        Format::Bool,
    ),
    Field::new("bpfJITHardening", "BPFJITHardening", Format::SetText),
    Field::new("bpfLogLevel", "BPFLogLevel", Format::Text),
    Field::new("bpfConntrackLogLevel", "BPFConntrackLogLevel", Format::Text),
    Field::new(
        "bpfConntrackMode",
        "BPFConntrackCleanupMode",
        Format::SetText,
    ),
    Field::new(
        "bpfConntrackTimeouts",
        "BPFConntrackTimeouts",
        Format::BpfConntrackTimeouts,
    ),
    Field::new("bpfLogFilters", "BPFLogFilters", Format::Map),
    Field::new("bpfCTLBLogFilter", "BPFCTLBLogFilter", Format::Text),
    Field::new("bpfDataIfacePattern", "BPFDataIfacePattern", Format::Text),
    Field::new("bpfL3IfacePattern", "BPFL3IfacePattern", Format::Text),
    Field::new(
        "bpfConnectTimeLoadBalancingEnabled",
        "BPFConnectTimeLoadBalancingEnabled",
        Format::Bool,
    ),
    Field::new(
        "bpfConnectTimeLoadBalancing",
        "BPFConnectTimeLoadBalancing",
        Format::SetText,
    ),
    Field::new(
        "bpfHostNetworkedNATWithoutCTLB",
        "BPFHostNetworkedNATWithoutCTLB",
        Format::SetText,
    ),
    Field::new(
        "bpfExternalServiceMode",
        "BPFExternalServiceMode",
        Format::Text,
    ),
    Field::new("bpfDSROptoutCIDRs", "BPFDSROptoutCIDRs", Format::List),
    Field::new(
        "bpfExtToServiceConnmark",
        "BPFExtToServiceConnmark",
        Format::Int,
    ),
    Field::new(
        "bpfKubeProxyIptablesCleanupEnabled",
        "BPFKubeProxyIptablesCleanupEnabled",
        Format::Bool,
    ),
    Field::new(
        "bpfKubeProxyMinSyncPeriod",
        "BPFKubeProxyMinSyncPeriod",
        Format::Seconds,
    ),
    Field::new(
        "bpfKubeProxyHealthzPort",
        "BPFKubeProxyHealthzPort",
        Format::Int,
    ),
    Field::new(
        "bpfKubeProxyEndpointSlicesEnabled",
        "BPFKubeProxyEndpointSlicesEnabled",
        Format::Bool,
    ),
    Field::new("bpfPSNATPorts", "BPFPSNATPorts", Format::Port),
    Field::new(
        "bpfMapSizeNATFrontend",
        "BPFMapSizeNATFrontend",
        Format::Int,
    ),
    Field::new("bpfMapSizeNATBackend", "BPFMapSizeNATBackend", Format::Int),
    Field::new(
        "bpfMapSizeNATAffinity",
        "BPFMapSizeNATAffinity",
        Format::Int,
    ),
    Field::new("bpfMapSizeRoute", "BPFMapSizeRoute", Format::Int),
    Field::new("bpfMapSizeConntrack", "BPFMapSizeConntrack", Format::Int),
    Field::new(
        "bpfMapSizePerCpuConntrack",
        "BPFMapSizePerCPUConntrack",
        Format::Int,
    ),
    Field::new(
        "bpfMapSizeConntrackScaling",
        "BPFMapSizeConntrackScaling",
        Format::Text,
    ),
    Field::new(
        "bpfMapSizeConntrackCleanupQueue",
        "BPFMapSizeConntrackCleanupQueue",
        Format::Int,
    ),
    Field::new("bpfMapSizeIPSets", "BPFMapSizeIPSets", Format::Int),
    Field::new("bpfMapSizeIfState", "BPFMapSizeIfState", Format::Int),
    Field::new(
        "bpfHostConntrackBypass",
        "BPFHostConntrackBypass",
        Format::Bool,
    ),
    Field::new("bpfEnforceRPF", "BPFEnforceRPF", Format::Text),
    Field::new(
        "bpfPolicyDebugEnabled",
        "BPFPolicyDebugEnabled",
        Format::Bool,
    ),
    Field::new(
        "bpfForceTrackPacketsFromIfaces",
        "BPFForceTrackPacketsFromIfaces",
        Format::List,
    ),
    Field::new(
        "bpfDisableGROForIfaces",
        "BPFDisableGROForIfaces",
        Format::Text,
    ),
    Field::new(
        "bpfExcludeCIDRsFromNAT",
        "BPFExcludeCIDRsFromNAT",
        Format::List,
    ),
    Field::new(
        "bpfExportBufferSizeMB",
        "BPFExportBufferSizeMB",
        Format::Int,
    ),
    Field::new("cgroupV2Path", "CgroupV2Path", Format::Text),
    Field::new(
        "flowLogsPolicyEvaluationMode",
        "FlowLogsPolicyEvaluationMode",
        Format::SetText,
    ),
    Field::new("bpfRedirectToPeer", "BPFRedirectToPeer", Format::Text),
    Field::new("bpfAttachType", "BPFAttachType", Format::SetText),
    Field::new(
        "flowLogsFlushInterval",
        "FlowLogsFlushInterval",
        Format::Seconds,
    ),
    Field::new(
        "flowLogsCollectorDebugTrace",
        "FlowLogsCollectorDebugTrace",
        Format::Bool,
    ),
    Field::new(
        "flowLogsGoldmaneServer",
        "FlowLogsGoldmaneServer",
        Format::SetText,
    ),
    Field::new(
        "flowLogsLocalReporter",
        "FlowLogsLocalReporter",
        Format::SetText,
    ),
    Field::new("bpfProfiling", "BPFProfiling", Format::Text),
    Field::new("routeSource", "RouteSource", Format::Text),
    Field::new(
        "routeTableRanges",
        "RouteTableRanges",
        Format::RouteTableRanges,
    ),
    Field::new(
        "routeTableRange",
        "RouteTableRange",
        Format::RouteTableRange,
    ),
    Field::new("routeSyncDisabled", "RouteSyncDisabled", Format::Bool),
    Field::new("wireguardEnabled", "WireguardEnabled", Format::Bool),
    Field::new("wireguardEnabledV6", "WireguardEnabledV6", Format::Bool),
    Field::new(
        "wireguardThreadingEnabled",
        "WireguardThreadingEnabled",
        Format::Bool,
    ),
    Field::new(
        "wireguardListeningPort",
        "WireguardListeningPort",
        Format::Int,
    ),
    Field::new(
        "wireguardListeningPortV6",
        "WireguardListeningPortV6",
        Format::Int,
    ),
    Field::new(
        "wireguardRoutingRulePriority",
        "WireguardRoutingRulePriority",
        Format::Int,
    ),
    Field::new(
        "wireguardInterfaceName",
        "WireguardInterfaceName",
        Format::Text,
    ),
    Field::new(
        "wireguardInterfaceNameV6",
        "WireguardInterfaceNameV6",
        Format::Text,
    ),
    Field::new("wireguardMTU", "WireguardMTU", Format::Int),
    Field::new("wireguardMTUV6", "WireguardMTUV6", Format::Int),
    Field::new(
        "wireguardHostEncryptionEnabled",
        "WireguardHostEncryptionEnabled",
        Format::Bool,
    ),
    Field::new(
        "wireguardKeepAlive",
        "WireguardPersistentKeepAlive",
        Format::Seconds,
    ),
    Field::new("awsSrcDstCheck", "AWSSrcDstCheck", Format::SetText),
    Field::new(
        "serviceLoopPrevention",
        "ServiceLoopPrevention",
        Format::Text,
    ),
    Field::new(
        "workloadSourceSpoofing",
        "WorkloadSourceSpoofing",
        Format::Text,
    ),
    Field::new("mtuIfacePattern", "MTUIfacePattern", Format::Text),
    Field::new("floatingIPs", "FloatingIPs", Format::SetText),
    Field::new(
        "windowsManageFirewallRules",
        "WindowsManageFirewallRules",
        Format::SetText,
    ),
    Field::new("goGCThreshold", "GoGCThreshold", Format::Int),
    Field::new("goMemoryLimitMB", "GoMemoryLimitMB", Format::Int),
    Field::new("goMaxProcs", "GoMaxProcs", Format::Int),
    Field::new("requireMTUFile", "RequireMTUFile", Format::Bool),
];

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
