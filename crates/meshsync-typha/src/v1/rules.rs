//! v3 rules → v1 rules, and the selector rewriting that goes with them (Calico's
//! `updateprocessors/rules.go` and `selectors.go`), shared by policies and profiles.
//!
//! Felix never sees a v3 `EntityRule`: the processors fold a rule's `selector`,
//! `namespaceSelector` and `serviceAccounts` into one v1 selector over labels that the
//! WorkloadEndpoint and Profile conversions provide (`pcns.`/`pcsa.` prefixed namespace and
//! service-account labels, `projectcalico.org/namespace`), and keep the originals in `orig_*`
//! fields. Which parts are re-rendered in canonical form and which are pasted in verbatim matters
//! byte for byte (Felix hashes selectors by their text), so this file follows the processors
//! step by step: prefixed selectors are parsed and rendered canonically, the rule's own
//! `selector` and the policy's `selector` are pasted as written.
//!
//! Then the v1 validator's checks on a `model.Rule` (ports only with TCP/UDP/SCTP, valid port
//! ranges and names, protocol names, ICMP ranges, IP version 4 or 6, valid selectors): a rule that
//! fails them makes Typha drop the whole policy (its key is sent as a deletion), so they are
//! reported as errors here. (Mixed IPv4/IPv6 nets are *not* refused: that check is on the old v1
//! API's rule type, which Typha never validates.)

use meshsync_selector::Expr;
use serde_json::{Map, Value};

use super::v3read::{
    self, Port, Reason, int, object, parse_cidr_or_ip, protocol_supports_ports, protocol_v1,
    put_list, put_str, string, strings,
};

/// The label a WorkloadEndpoint's namespace is exposed as.
pub(super) const LABEL_NAMESPACE: &str = "projectcalico.org/namespace";
/// The label a WorkloadEndpoint's service account is exposed as.
pub(super) const LABEL_SERVICE_ACCOUNT: &str = "projectcalico.org/serviceaccount";
/// Prefix of a namespace's labels as its profile applies them to endpoints.
pub(super) const NAMESPACE_LABEL_PREFIX: &str = "pcns.";
/// Prefix of a service account's labels as its profile applies them to endpoints.
pub(super) const SERVICE_ACCOUNT_LABEL_PREFIX: &str = "pcsa.";

/// `parseSelectorAttachPrefix`: every label name in `selector` gets `prefix`, rendered in
/// canonical form; a selector that does not parse becomes `""` (Calico logs and drops it).
pub(super) fn prefixed_selector(selector: &str, prefix: &str) -> String {
    match meshsync_selector::parse(selector) {
        Ok(parsed) => {
            let expr = prefix_labels(parsed.into_expr(), prefix);
            meshsync_selector::Selector::from_expr(expr).canonical()
        }
        Err(_) => String::new(),
    }
}

fn prefix_labels(expr: Expr, prefix: &str) -> Expr {
    let p = |k: String| format!("{prefix}{k}");
    match expr {
        Expr::All | Expr::Global => expr,
        Expr::Has(k) => Expr::Has(p(k)),
        Expr::Eq(k, v) => Expr::Eq(p(k), v),
        Expr::Ne(k, v) => Expr::Ne(p(k), v),
        Expr::Contains(k, v) => Expr::Contains(p(k), v),
        Expr::StartsWith(k, v) => Expr::StartsWith(p(k), v),
        Expr::EndsWith(k, v) => Expr::EndsWith(p(k), v),
        Expr::In(k, set) => Expr::In(p(k), set),
        Expr::NotIn(k, set) => Expr::NotIn(p(k), set),
        Expr::Not(inner) => Expr::Not(Box::new(prefix_labels(*inner, prefix))),
        Expr::And(ops) => Expr::And(ops.into_iter().map(|e| prefix_labels(e, prefix)).collect()),
        Expr::Or(ops) => Expr::Or(ops.into_iter().map(|e| prefix_labels(e, prefix)).collect()),
    }
}

/// `prefixAndAppendSelector`: `(<current>) && <prefixed new>`.
pub(super) fn prefix_and_append(current: String, new: &str, prefix: &str) -> String {
    if new.is_empty() {
        return current;
    }
    let prefixed = prefixed_selector(new, prefix);
    if prefixed.is_empty() {
        current
    } else if current.is_empty() {
        prefixed
    } else {
        format!("({current}) && {prefixed}")
    }
}

/// `parseServiceAccounts`: the selector of a `serviceAccounts` match.
fn service_account_selector(names: Option<&[String]>, selector: &str) -> String {
    let updated = if selector.is_empty() {
        String::new()
    } else {
        prefixed_selector(selector, SERVICE_ACCOUNT_LABEL_PREFIX)
    };
    let Some(names) = names.filter(|n| !n.is_empty()) else {
        return updated;
    };
    let text = format!("{LABEL_SERVICE_ACCOUNT} in {{ '{}' }}", names.join("', '"));
    let Ok(parsed) = meshsync_selector::parse(&text) else {
        return String::new();
    };
    let names = parsed.canonical();
    if updated.is_empty() {
        names
    } else {
        format!("({updated}) && ({names})")
    }
}

/// `getEndpointSelector`: one selector for what an entity rule matches, scoped to the policy's
/// namespace `ns` (empty for global policies and profiles).
fn endpoint_selector(
    namespace_selector: &str,
    endpoint_selector: &str,
    service_account_selector: &str,
    not_selector: &str,
    ns: &str,
) -> String {
    let ns_selector = if !namespace_selector.is_empty() {
        prefixed_selector(namespace_selector, NAMESPACE_LABEL_PREFIX)
            .replace("all()", &format!("has({LABEL_NAMESPACE})"))
            .replace("global()", &format!("!has({LABEL_NAMESPACE})"))
    } else if !ns.is_empty() {
        format!("{LABEL_NAMESPACE} == '{ns}'")
    } else {
        String::new()
    };
    let parts: Vec<&str> = [service_account_selector, endpoint_selector]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    let selector = match parts.as_slice() {
        [] => String::new(),
        [one] => (*one).to_owned(),
        many => format!("({})", many.join(") && (")),
    };
    if !ns_selector.is_empty()
        && (!selector.is_empty() || !not_selector.is_empty() || !namespace_selector.is_empty())
    {
        if selector.is_empty() {
            ns_selector
        } else {
            format!("({ns_selector}) && ({selector})")
        }
    } else {
        selector
    }
}

/// One side (`source` or `destination`) of a v3 rule, decoded.
struct Entity {
    nets: Option<Vec<String>>,
    not_nets: Option<Vec<String>>,
    selector: String,
    not_selector: String,
    namespace_selector: String,
    ports: Option<Vec<Port>>,
    not_ports: Option<Vec<Port>>,
    sa_names: Option<Vec<String>>,
    sa_selector: String,
    has_service_accounts: bool,
    service: Option<(String, String)>,
}

impl Entity {
    fn decode(rule: &Value, side: &str) -> Result<Entity, Reason> {
        let v = object(rule, side)?.map_or(Value::Null, |m| Value::Object(m.clone()));
        let sa = object(&v, "serviceAccounts")?.map(|m| Value::Object(m.clone()));
        let services = object(&v, "services")?.map(|m| Value::Object(m.clone()));
        Ok(Entity {
            nets: strings(&v, "nets")?,
            not_nets: strings(&v, "notNets")?,
            selector: string(&v, "selector")?.to_owned(),
            not_selector: string(&v, "notSelector")?.to_owned(),
            namespace_selector: string(&v, "namespaceSelector")?.to_owned(),
            ports: v3read::ports(&v, "ports")?,
            not_ports: v3read::ports(&v, "notPorts")?,
            sa_names: sa
                .as_ref()
                .map(|s| strings(s, "names"))
                .transpose()?
                .flatten(),
            sa_selector: sa
                .as_ref()
                .map(|s| string(s, "selector").map(str::to_owned))
                .transpose()?
                .unwrap_or_default(),
            has_service_accounts: sa.is_some(),
            service: services
                .as_ref()
                .map(|s| -> Result<_, Reason> {
                    Ok((
                        string(s, "name")?.to_owned(),
                        string(s, "namespace")?.to_owned(),
                    ))
                })
                .transpose()?,
        })
    }

    /// `GetEntityRuleSelector`.
    fn selector(&self, ns: &str) -> String {
        let sa = if self.has_service_accounts {
            service_account_selector(self.sa_names.as_deref(), &self.sa_selector)
        } else {
            String::new()
        };
        endpoint_selector(
            &self.namespace_selector,
            &self.selector,
            &sa,
            &self.not_selector,
            ns,
        )
    }
}

/// `ConvertStringsToNets`: unparsable entries are skipped.
fn nets_skipping_bad(nets: Option<&Vec<String>>) -> Vec<Value> {
    nets.into_iter()
        .flatten()
        .filter_map(|n| parse_cidr_or_ip(n))
        .map(|c| Value::String(c.to_go_string()))
        .collect()
}

/// `NormalizeIPNets`: unparsable entries stay, as `null`.
fn nets_keeping_bad(nets: Option<&Vec<String>>) -> Vec<Value> {
    nets.into_iter()
        .flatten()
        .map(|n| parse_cidr_or_ip(n).map_or(Value::Null, |c| Value::String(c.to_go_string())))
        .collect()
}

fn ports_json(ports: Option<&Vec<Port>>) -> Vec<Value> {
    ports.into_iter().flatten().map(Port::to_json).collect()
}

/// `RulesAPIV3ToBackend` over a list of v3 rules (`None`/empty gives no rules).
pub(super) fn rules_to_v1(rules: Option<&Vec<Value>>, ns: &str) -> Result<Vec<Value>, Reason> {
    rules
        .into_iter()
        .flatten()
        .map(|r| rule_to_v1(r, ns))
        .collect()
}

/// `RuleAPIV3ToBackend` for one rule, followed by the v1 validator's checks on the result.
pub(super) fn rule_to_v1(rule: &Value, ns: &str) -> Result<Value, Reason> {
    let mut out = Map::new();
    put_action(&mut out, rule)?;
    put_ip_version(&mut out, rule)?;
    let protocol = put_protocols(&mut out, rule)?;
    put_icmp(&mut out, rule)?;

    let src = Entity::decode(rule, "source")?;
    let dst = Entity::decode(rule, "destination")?;
    validate_ports(&src, &dst, protocol.as_ref())?;
    put_entity_matches(&mut out, &src, &dst, ns);
    put_original_matches(&mut out, &src, &dst);

    put_http(&mut out, rule)?;
    put_metadata(&mut out, rule)?;
    validate_selectors(&out)?;
    Ok(Value::Object(out))
}

/// `action`: v3's `Pass` is v1's `next-tier`, the others are lower-cased.
fn put_action(out: &mut Map<String, Value>, rule: &Value) -> Result<(), Reason> {
    let action = string(rule, "action")?;
    let v1 = if action == "Pass" {
        "next-tier".to_owned()
    } else {
        action.to_lowercase()
    };
    put_str(out, "action", &v1);
    Ok(())
}

/// `ip_version`, which the v1 validator allows only as 4 or 6.
fn put_ip_version(out: &mut Map<String, Value>, rule: &Value) -> Result<(), Reason> {
    if let Some(v) = int(rule, "ipVersion")? {
        if v != 4 && v != 6 {
            return Err(format!("invalid ipVersion {v}"));
        }
        out.insert("ip_version".into(), Value::from(v));
    }
    Ok(())
}

/// `protocol` and `!protocol`, validated; returns the (positive) protocol, which decides whether
/// the rule may match on ports.
fn put_protocols(out: &mut Map<String, Value>, rule: &Value) -> Result<Option<Value>, Reason> {
    let protocol = protocol_v1(rule, "protocol")?;
    let not_protocol = protocol_v1(rule, "notProtocol")?;
    for (field, p) in [("protocol", &protocol), ("!protocol", &not_protocol)] {
        if let Some(p) = p {
            validate_protocol(p)?;
            out.insert(field.into(), p.clone());
        }
    }
    Ok(protocol)
}

/// `icmp_type`/`icmp_code` from `icmp`, and their `!` forms from `notICMP`, range-checked.
fn put_icmp(out: &mut Map<String, Value>, rule: &Value) -> Result<(), Reason> {
    for (v3, prefix) in [("icmp", ""), ("notICMP", "!")] {
        if let Some(icmp) = object(rule, v3)? {
            let icmp = Value::Object(icmp.clone());
            let icmp_type = int(&icmp, "type")?;
            let icmp_code = int(&icmp, "code")?;
            if let Some(t) = icmp_type {
                if !(0..255).contains(&t) {
                    return Err(format!("ICMP type {t} out of range"));
                }
                out.insert(format!("{prefix}icmp_type"), Value::from(t));
            }
            if let Some(c) = icmp_code {
                if !(0..=255).contains(&c) {
                    return Err(format!("ICMP code {c} out of range"));
                }
                out.insert(format!("{prefix}icmp_code"), Value::from(c));
            }
        }
    }
    Ok(())
}

/// The v1 validator: ports need a protocol that has them, and each port must be valid.
fn validate_ports(src: &Entity, dst: &Entity, protocol: Option<&Value>) -> Result<(), Reason> {
    let has_ports = [&src.ports, &src.not_ports, &dst.ports, &dst.not_ports]
        .iter()
        .any(|p| p.as_ref().is_some_and(|p| !p.is_empty()));
    if has_ports && !protocol_supports_ports(protocol) {
        return Err("rules that specify ports must set protocol to TCP or UDP or SCTP".into());
    }
    for port in [&src.ports, &src.not_ports, &dst.ports, &dst.not_ports]
        .into_iter()
        .flatten()
        .flatten()
    {
        port.validate()?;
    }
    Ok(())
}

/// What each side matches in v1: nets, the combined selector (scoped to `ns`), ports and
/// service, then the negated nets, selector and ports. Source nets drop entries that do not parse
/// (`ConvertStringsToNets`), destination nets keep them as `null` (`NormalizeIPNets`).
fn put_entity_matches(out: &mut Map<String, Value>, src: &Entity, dst: &Entity, ns: &str) {
    put_list(out, "src_nets", nets_skipping_bad(src.nets.as_ref()));
    put_str(out, "src_selector", &src.selector(ns));
    put_list(out, "src_ports", ports_json(src.ports.as_ref()));
    if let Some((name, namespace)) = &src.service {
        put_str(out, "src_service", name);
        put_str(out, "src_service_ns", namespace);
    }
    put_list(out, "dst_nets", nets_keeping_bad(dst.nets.as_ref()));
    put_str(out, "dst_selector", &dst.selector(ns));
    put_list(out, "dst_ports", ports_json(dst.ports.as_ref()));
    if let Some((name, namespace)) = &dst.service {
        put_str(out, "dst_service", name);
        put_str(out, "dst_service_ns", namespace);
    }
    put_list(out, "!src_nets", nets_skipping_bad(src.not_nets.as_ref()));
    put_str(out, "!src_selector", &src.not_selector);
    put_list(out, "!src_ports", ports_json(src.not_ports.as_ref()));
    put_list(out, "!dst_nets", nets_keeping_bad(dst.not_nets.as_ref()));
    put_str(out, "!dst_selector", &dst.not_selector);
    put_list(out, "!dst_ports", ports_json(dst.not_ports.as_ref()));
}

/// The `orig_*` fields: each side's selectors and service-account match as written in v3.
fn put_original_matches(out: &mut Map<String, Value>, src: &Entity, dst: &Entity) {
    put_str(out, "orig_src_selector", &src.selector);
    put_str(out, "orig_src_namespace_selector", &src.namespace_selector);
    put_str(out, "orig_dst_selector", &dst.selector);
    put_str(out, "orig_dst_namespace_selector", &dst.namespace_selector);
    put_str(out, "!orig_src_selector", &src.not_selector);
    put_str(out, "!orig_dst_selector", &dst.not_selector);
    put_list(
        out,
        "orig_src_service_acct_names",
        string_values(src.sa_names.as_ref()),
    );
    put_str(out, "orig_src_service_acct_selector", &src.sa_selector);
    put_list(
        out,
        "orig_dst_service_acct_names",
        string_values(dst.sa_names.as_ref()),
    );
    put_str(out, "orig_dst_service_acct_selector", &dst.sa_selector);
}

fn string_values(names: Option<&Vec<String>>) -> Vec<Value> {
    names
        .into_iter()
        .flatten()
        .map(|s| Value::String(s.clone()))
        .collect()
}

/// The HTTP match: `methods`, and `paths` as `{exact, prefix}` objects (the same in v1 and v3).
fn put_http(out: &mut Map<String, Value>, rule: &Value) -> Result<(), Reason> {
    let Some(http) = object(rule, "http")? else {
        return Ok(());
    };
    let http = Value::Object(http.clone());
    let mut m = Map::new();
    if let Some(methods) = strings(&http, "methods")? {
        put_list(
            &mut m,
            "methods",
            methods.into_iter().map(Value::String).collect(),
        );
    }
    if let Some(paths) = v3read::list(&http, "paths")? {
        let mut out_paths = Vec::new();
        for p in paths {
            let mut path = Map::new();
            put_str(&mut path, "exact", string(p, "exact")?);
            put_str(&mut path, "prefix", string(p, "prefix")?);
            out_paths.push(Value::Object(path));
        }
        put_list(&mut m, "paths", out_paths);
    }
    out.insert("http".into(), Value::Object(m));
    Ok(())
}

/// The rule's `metadata`: only its annotations are kept.
fn put_metadata(out: &mut Map<String, Value>, rule: &Value) -> Result<(), Reason> {
    if let Some(metadata) = object(rule, "metadata")? {
        let metadata = Value::Object(metadata.clone());
        if let Some(annotations) = v3read::string_map(&metadata, "annotations")? {
            let mut m = Map::new();
            if !annotations.is_empty() {
                m.insert("annotations".into(), Value::Object(annotations));
            }
            out.insert("metadata".into(), Value::Object(m));
        }
    }
    Ok(())
}

/// The v1 rule's selector fields, all of which the v1 validator parses.
const SELECTOR_FIELDS: [&str; 12] = [
    "src_selector",
    "dst_selector",
    "!src_selector",
    "!dst_selector",
    "orig_src_selector",
    "orig_src_namespace_selector",
    "orig_dst_selector",
    "orig_dst_namespace_selector",
    "!orig_src_selector",
    "!orig_dst_selector",
    "orig_src_service_acct_selector",
    "orig_dst_service_acct_selector",
];

/// The v1 validator: every selector field must parse.
fn validate_selectors(out: &Map<String, Value>) -> Result<(), Reason> {
    for field in SELECTOR_FIELDS {
        if let Some(s) = out.get(field).and_then(Value::as_str) {
            validate_selector(s)?;
        }
    }
    Ok(())
}

/// A v3 rule as Go re-marshals it after decoding (for v3 resources passed through, such as
/// Profiles): `action`, `source` and `destination` always present, ports and protocols in their
/// canonical JSON form, unknown fields dropped.
pub(super) fn rule_v3_json(rule: &Value) -> Result<Value, Reason> {
    let mut out = Map::new();
    out.insert(
        "action".into(),
        Value::String(string(rule, "action")?.into()),
    );
    if let Some(v) = int(rule, "ipVersion")? {
        out.insert("ipVersion".into(), Value::from(v));
    }
    for field in ["protocol", "notProtocol"] {
        if let Some(p) = protocol_v3(rule, field)? {
            out.insert(field.into(), p);
        }
    }
    for field in ["icmp", "notICMP"] {
        if let Some(icmp) = object(rule, field)? {
            let icmp = Value::Object(icmp.clone());
            let mut m = Map::new();
            for f in ["type", "code"] {
                if let Some(n) = int(&icmp, f)? {
                    m.insert(f.into(), Value::from(n));
                }
            }
            out.insert(field.into(), Value::Object(m));
        }
    }
    for side in ["source", "destination"] {
        let v = object(rule, side)?.map_or(Value::Null, |m| Value::Object(m.clone()));
        let mut m = Map::new();
        for f in ["nets", "notNets"] {
            if let Some(nets) = strings(&v, f)? {
                put_list(&mut m, f, nets.into_iter().map(Value::String).collect());
            }
        }
        for f in ["selector", "namespaceSelector", "notSelector"] {
            put_str(&mut m, f, string(&v, f)?);
        }
        if let Some(services) = object(&v, "services")? {
            let services = Value::Object(services.clone());
            let mut s = Map::new();
            put_str(&mut s, "name", string(&services, "name")?);
            put_str(&mut s, "namespace", string(&services, "namespace")?);
            m.insert("services".into(), Value::Object(s));
        }
        for f in ["ports", "notPorts"] {
            put_list(&mut m, f, ports_json(v3read::ports(&v, f)?.as_ref()));
        }
        if let Some(sa) = object(&v, "serviceAccounts")? {
            let sa = Value::Object(sa.clone());
            let mut s = Map::new();
            if let Some(names) = strings(&sa, "names")? {
                put_list(
                    &mut s,
                    "names",
                    names.into_iter().map(Value::String).collect(),
                );
            }
            put_str(&mut s, "selector", string(&sa, "selector")?);
            m.insert("serviceAccounts".into(), Value::Object(s));
        }
        out.insert(side.into(), Value::Object(m));
    }
    put_http(&mut out, rule)?;
    if let Some(metadata) = object(rule, "metadata")? {
        let metadata = Value::Object(metadata.clone());
        let mut m = Map::new();
        if let Some(annotations) =
            v3read::string_map(&metadata, "annotations")?.filter(|a| !a.is_empty())
        {
            m.insert("annotations".into(), Value::Object(annotations));
        }
        out.insert("metadata".into(), Value::Object(m));
    }
    Ok(Value::Object(out))
}

/// A v3 `numorstring.Protocol` re-marshalled: a number for a number or numeric string, the
/// name as written otherwise.
fn protocol_v3(v: &Value, name: &str) -> Result<Option<Value>, Reason> {
    Ok(match v.get(name) {
        Some(Value::String(s))
            if s.parse::<u8>().is_err() || !s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(Value::String(s.clone()))
        }
        _ => protocol_v1(v, name)?,
    })
}

/// The part of Calico's v3 validator that a v3 rule passed through (a Profile's) must pass on
/// top of the v1 checks [`rule_to_v1`] makes: nets that parse and are masked (no catch-all in a
/// negation), ICMP and HTTP matches only with their protocol, the IP version ICMP implies, and
/// the `services` restrictions. Typha drops a v3 value that fails; the rest of the v3 validator
/// (label syntax, name formats, …) is not reproduced.
pub(super) fn validate_v3_rule(rule: &Value) -> Result<(), Reason> {
    let protocol = rule.get("protocol").and_then(Value::as_str);
    let not_protocol = rule.get("notProtocol").and_then(Value::as_str);
    if object(rule, "http")?.is_some()
        && rule.get("protocol").is_some_and(|p| !p.is_null())
        && protocol != Some("TCP")
    {
        return Err("HTTP match requires protocol TCP".into());
    }
    if object(rule, "icmp")?.is_some() && !matches!(protocol, Some("ICMP" | "ICMPv6")) {
        return Err("ICMP match requires protocol ICMP or ICMPv6".into());
    }
    let ip_version = int(rule, "ipVersion")?;
    if (protocol == Some("ICMP") || not_protocol == Some("ICMP"))
        && ip_version.is_some_and(|v| v != 4)
    {
        return Err("must set ipversion to '4' with protocol icmp".into());
    }
    if (protocol == Some("ICMPv6") || not_protocol == Some("ICMPv6"))
        && ip_version.is_some_and(|v| v != 6)
    {
        return Err("must set ipversion to '6' with protocol icmpv6".into());
    }
    for side in ["source", "destination"] {
        let v = object(rule, side)?.map_or(Value::Null, |m| Value::Object(m.clone()));
        for (field, negated) in [("nets", false), ("notNets", true)] {
            for net in strings(&v, field)?.unwrap_or_default() {
                let masked = parse_cidr_or_ip(&net).is_some_and(|c| {
                    net.split('/').next().and_then(v3read::parse_ip) == Some(c.addr)
                });
                if !masked {
                    return Err(format!("{side}.{field}: invalid or unmasked CIDR {net}"));
                }
                if negated && (net == "0.0.0.0/0" || net == "::/0") {
                    return Err(format!("{side}.{field}: catch-all CIDR in a negation"));
                }
            }
        }
        if let Some(services) = object(&v, "services")? {
            let has = |f: &str| {
                v.get(f)
                    .is_some_and(|x| !x.is_null() && x != "" && x != &Value::Array(Vec::new()))
            };
            if services
                .get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err("services must name a service".into());
            }
            if [
                "namespaceSelector",
                "selector",
                "notSelector",
                "serviceAccounts",
                "nets",
                "notNets",
            ]
            .iter()
            .any(|f| has(f))
                || (side == "destination" && (has("ports") || has("notPorts")))
            {
                return Err(format!("{side}.services combined with a field it excludes"));
            }
        }
    }
    Ok(())
}

/// The v1 validator's `selector` check.
pub(super) fn validate_selector(selector: &str) -> Result<(), Reason> {
    meshsync_selector::parse(selector)
        .map(|_| ())
        .map_err(|e| format!("invalid selector {selector:?}: {e}"))
}

/// The v1 validator's protocol check: a number 1–255 or one of Calico's names.
fn validate_protocol(p: &Value) -> Result<(), Reason> {
    match p {
        Value::Number(n) if n.as_u64().is_some_and(|n| (1..=255).contains(&n)) => Ok(()),
        Value::String(s)
            if matches!(
                s.as_str(),
                "tcp" | "udp" | "icmp" | "icmpv6" | "sctp" | "udplite"
            ) =>
        {
            Ok(())
        }
        _ => Err(format!("invalid protocol {p}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn namespaced_rule_selectors_are_scoped_to_the_namespace() {
        let rule = json!({
            "action": "Allow",
            "source": {"selector": "app == 'db'"},
            "destination": {"namespaceSelector": "team == 'a'"}
        });
        let v1 = rule_to_v1(&rule, "ns1").unwrap();
        assert_eq!(
            v1["src_selector"],
            json!("(projectcalico.org/namespace == 'ns1') && (app == 'db')")
        );
        assert_eq!(v1["dst_selector"], json!("pcns.team == \"a\""));
        assert_eq!(v1["orig_src_selector"], json!("app == 'db'"));
        assert_eq!(v1["action"], json!("allow"));
    }

    #[test]
    fn service_accounts_and_all_namespaces() {
        let rule = json!({
            "action": "Pass",
            "source": {
                "namespaceSelector": "all()",
                "serviceAccounts": {"names": ["b", "a"], "selector": "role == 'x'"}
            }
        });
        let v1 = rule_to_v1(&rule, "").unwrap();
        assert_eq!(v1["action"], json!("next-tier"));
        assert_eq!(
            v1["src_selector"],
            json!(
                "(has(projectcalico.org/namespace)) && ((pcsa.role == \"x\") && (projectcalico.org/serviceaccount in {\"a\", \"b\"}))"
            )
        );
    }

    #[test]
    fn ports_need_a_protocol_with_ports() {
        let rule = json!({"action": "Allow", "destination": {"ports": [80]}});
        assert!(rule_to_v1(&rule, "").is_err());
        let rule = json!({"action": "Allow", "protocol": "TCP", "destination": {"ports": [80, "8080:8090", "http"]}});
        let v1 = rule_to_v1(&rule, "").unwrap();
        assert_eq!(v1["dst_ports"], json!([80, "8080:8090", "http"]));
        assert_eq!(v1["protocol"], json!("tcp"));
    }
}
