//! Policies and tiers: what Felix enforces.
//!
//! Every policy kind becomes a `PolicyKey` with a `model.Policy` value. The value is where the
//! kinds differ: a namespaced policy's selector gets `projectcalico.org/namespace == '<ns>'`
//! appended (so it only ever selects its own namespace's endpoints) and its rules are scoped to
//! the namespace; a global policy's `namespaceSelector`/`serviceAccountSelector` are folded into
//! its selector over the `pcns.`/`pcsa.` labels; a staged policy is sent under a `staged:` name
//! with its `staged_action` (and a staged *deletion* is a deletion); a Kubernetes NetworkPolicy is
//! first converted to the Calico NetworkPolicy Calico's Kubernetes datastore makes of it
//! ([`kubernetes`]).
//!
//! The key has two dialects. v3.31 clients parse `/calico/v1/policy/tier/<tier>/policy/<name>`,
//! where the tier comes from the *name* (`<tier>.<name>`, `knp.default.` → `default`, …) and the
//! v1 name encodes namespace and staging. v3.32 clients (`SupportsModernPolicyKeys`) parse
//! `/calico/v1/policy/<kind>/<namespace>/<name>` and read the tier from the value's `tier` field.
//! The modern form follows the documented v3.32 key and value changes; it is not checked against
//! v3.32's code.

mod kubernetes;

use serde_json::{Map, Value};

use super::emit::{deleted, failed, invalid, parse, set};
use super::keys;
use super::rules::{
    LABEL_NAMESPACE, LABEL_SERVICE_ACCOUNT, NAMESPACE_LABEL_PREFIX, SERVICE_ACCOUNT_LABEL_PREFIX,
    prefix_and_append, rules_to_v1, validate_selector,
};
use super::v3read::{Reason, boolean, float, list, spec, string, strings};
use super::{Converted, Dialect, Resource, Syncer};

const NETWORK_POLICY: &str = "NetworkPolicy";
const GLOBAL_NETWORK_POLICY: &str = "GlobalNetworkPolicy";
const STAGED_NETWORK_POLICY: &str = "StagedNetworkPolicy";
const STAGED_GLOBAL_NETWORK_POLICY: &str = "StagedGlobalNetworkPolicy";
const STAGED_KUBERNETES_NETWORK_POLICY: &str = "StagedKubernetesNetworkPolicy";
/// meshsync's kind for a `networking.k8s.io` NetworkPolicy (its `spec` as Kubernetes has it).
const KUBERNETES_NETWORK_POLICY: &str = "KubernetesNetworkPolicy";
const TIER: &str = "Tier";

/// Calico's name prefix for policies converted from Kubernetes NetworkPolicies.
const K8S_NETWORK_POLICY_PREFIX: &str = "knp.default.";
/// Prefix of a staged policy's v1 name.
const STAGED_PREFIX: &str = "staged:";

/// The kinds of policy, as the processors tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PolicyKind {
    Namespaced,
    Global,
    StagedNamespaced,
    StagedGlobal,
    StagedKubernetes,
    Kubernetes,
}

impl PolicyKind {
    fn of(kind: &str) -> Option<PolicyKind> {
        Some(match kind {
            NETWORK_POLICY => PolicyKind::Namespaced,
            GLOBAL_NETWORK_POLICY => PolicyKind::Global,
            STAGED_NETWORK_POLICY => PolicyKind::StagedNamespaced,
            STAGED_GLOBAL_NETWORK_POLICY => PolicyKind::StagedGlobal,
            STAGED_KUBERNETES_NETWORK_POLICY => PolicyKind::StagedKubernetes,
            KUBERNETES_NETWORK_POLICY => PolicyKind::Kubernetes,
            _ => return None,
        })
    }

    fn namespaced(self) -> bool {
        !matches!(self, PolicyKind::Global | PolicyKind::StagedGlobal)
    }

    fn staged(self) -> bool {
        matches!(
            self,
            PolicyKind::StagedNamespaced | PolicyKind::StagedGlobal | PolicyKind::StagedKubernetes
        )
    }
}

pub(super) fn convert(
    syncer: Syncer,
    dialect: Dialect,
    resource: &Resource<'_>,
    deleted: bool,
) -> Option<Converted> {
    if syncer != Syncer::Felix {
        return None;
    }
    if resource.kind == TIER {
        return Some(tier(resource, deleted));
    }
    let kind = PolicyKind::of(resource.kind)?;
    Some(policy(dialect, kind, resource, deleted))
}

/// `names.TierFromPolicyName`: the tier a v3.31 policy name puts the policy in.
fn tier_from_policy_name(name: &str) -> &str {
    if name.starts_with(K8S_NETWORK_POLICY_PREFIX) || name.starts_with("ossg.default.") {
        return "default";
    }
    if name.starts_with("kanp.adminnetworkpolicy.") {
        return "adminnetworkpolicy";
    }
    if name.starts_with("kbanp.baselineadminnetworkpolicy.") {
        return "baselineadminnetworkpolicy";
    }
    match name.split_once('.') {
        Some((tier, _)) => tier,
        None => "default",
    }
}

/// The policy's key in `dialect`, and its tier.
fn policy_key(
    dialect: Dialect,
    kind: PolicyKind,
    resource: &Resource<'_>,
) -> Option<(String, String)> {
    let ns = resource.namespace;
    if resource.name.is_empty() || (kind.namespaced() && ns.is_empty()) {
        return None;
    }
    // The v3 name the processors work with.
    let v3_name = match kind {
        PolicyKind::Kubernetes | PolicyKind::StagedKubernetes => {
            format!("{K8S_NETWORK_POLICY_PREFIX}{}", resource.name)
        }
        _ => resource.name.to_owned(),
    };
    let tier = tier_from_policy_name(&v3_name).to_owned();
    let staged = if kind.staged() { STAGED_PREFIX } else { "" };
    let v1_name = if kind.namespaced() {
        format!("{ns}/{staged}{v3_name}")
    } else {
        format!("{staged}{v3_name}")
    };
    let modern_name = match kind {
        PolicyKind::Kubernetes => v3_name.as_str(),
        _ => resource.name,
    };
    let key = keys::policy(
        dialect,
        &tier,
        &v1_name,
        resource.kind,
        if kind.namespaced() { ns } else { "" },
        modern_name,
    );
    Some((key, tier))
}

fn policy(
    dialect: Dialect,
    kind: PolicyKind,
    resource: &Resource<'_>,
    is_deleted: bool,
) -> Converted {
    let Some((key, tier)) = policy_key(dialect, kind, resource) else {
        return failed(
            Vec::new(),
            invalid(resource, "missing name or namespace".into()),
        );
    };
    if is_deleted {
        return Converted {
            updates: vec![deleted(key)],
            error: None,
        };
    }
    let v3 = match parse(resource) {
        Ok(v) => v,
        Err(error) => return failed(vec![key], error),
    };
    match policy_value(kind, resource.namespace, &v3) {
        Ok(Some(mut value)) => {
            if dialect == Dialect::Modern
                && let Value::Object(m) = &mut value
            {
                m.insert("tier".into(), Value::String(tier));
            }
            match set(resource, key.clone(), &value) {
                Ok(update) => Converted {
                    updates: vec![update],
                    error: None,
                },
                Err(error) => failed(vec![key], error),
            }
        }
        Ok(None) => Converted {
            updates: vec![deleted(key)],
            error: None,
        },
        Err(reason) => failed(vec![key], invalid(resource, reason)),
    }
}

/// The `model.Policy` of a policy, `None` when the processor filters it out (a staged deletion).
fn policy_value(kind: PolicyKind, ns: &str, v3: &Value) -> Result<Option<Value>, Reason> {
    let spec = spec(v3)?;
    let staged_action = if kind.staged() {
        let action = string(&spec, "stagedAction")?;
        if action == "Delete" {
            return Ok(None);
        }
        action.to_owned()
    } else {
        String::new()
    };
    let mut value = match kind {
        PolicyKind::Namespaced | PolicyKind::StagedNamespaced => namespaced_policy(&spec, ns)?,
        PolicyKind::Global | PolicyKind::StagedGlobal => global_policy(&spec)?,
        PolicyKind::Kubernetes | PolicyKind::StagedKubernetes => {
            namespaced_policy(&kubernetes::to_calico_spec(&spec)?, ns)?
        }
    };
    if !staged_action.is_empty() {
        value.insert("staged_action".into(), Value::String(staged_action));
    }
    validate_policy(&value)?;
    Ok(Some(Value::Object(value)))
}

/// `ConvertNetworkPolicyV3ToV1Value`.
fn namespaced_policy(spec: &Value, ns: &str) -> Result<Map<String, Value>, Reason> {
    let mut selector = string(spec, "selector")?.to_owned();
    if !ns.is_empty() {
        let ns_selector = format!("{LABEL_NAMESPACE} == '{ns}'");
        selector = if selector.is_empty() {
            ns_selector
        } else {
            format!("({selector}) && {ns_selector}")
        };
    }
    let selector = prefix_and_append(
        selector,
        string(spec, "serviceAccountSelector")?,
        SERVICE_ACCOUNT_LABEL_PREFIX,
    );
    let mut out = common(spec, ns, selector)?;
    if !ns.is_empty() {
        out.insert("namespace".into(), Value::String(ns.into()));
    }
    Ok(out)
}

/// `ConvertGlobalNetworkPolicyV3ToV1Value`.
fn global_policy(spec: &Value) -> Result<Map<String, Value>, Reason> {
    let mut selector = string(spec, "selector")?.to_owned();
    let ns_selector = string(spec, "namespaceSelector")?;
    if !ns_selector.is_empty() {
        selector = prefix_and_append(selector, ns_selector, NAMESPACE_LABEL_PREFIX)
            .replace("all()", &format!("has({LABEL_NAMESPACE})"));
    }
    let sa_selector = string(spec, "serviceAccountSelector")?;
    if !sa_selector.is_empty() {
        selector = prefix_and_append(selector, sa_selector, SERVICE_ACCOUNT_LABEL_PREFIX)
            .replace("all()", &format!("has({LABEL_SERVICE_ACCOUNT})"));
    }
    let mut out = common(spec, "", selector)?;
    for (v3, v1) in [
        ("doNotTrack", "untracked"),
        ("preDNAT", "pre_dnat"),
        ("applyOnForward", "apply_on_forward"),
    ] {
        if boolean(spec, v3)? {
            out.insert(v1.into(), Value::Bool(true));
        }
    }
    Ok(out)
}

/// The fields every policy kind fills alike.
fn common(spec: &Value, ns: &str, selector: String) -> Result<Map<String, Value>, Reason> {
    let mut out = Map::new();
    if let Some(order) = float(spec, "order")? {
        out.insert("order".into(), go_float(&order));
    }
    let inbound = rules_to_v1(list(spec, "ingress")?, ns)?;
    let outbound = rules_to_v1(list(spec, "egress")?, ns)?;
    if !inbound.is_empty() {
        out.insert("inbound_rules".into(), Value::Array(inbound));
    }
    if !outbound.is_empty() {
        out.insert("outbound_rules".into(), Value::Array(outbound));
    }
    out.insert("selector".into(), Value::String(selector));
    let types: Vec<Value> = strings(spec, "types")?
        .unwrap_or_default()
        .iter()
        .map(|t| Value::String(t.to_lowercase()))
        .collect();
    if !types.is_empty() {
        out.insert("types".into(), Value::Array(types));
    }
    if let Some(hints) = strings(spec, "performanceHints")?.filter(|h| !h.is_empty()) {
        out.insert(
            "performance_hints".into(),
            Value::Array(hints.into_iter().map(Value::String).collect()),
        );
    }
    Ok(out)
}

/// The v1 validator's checks on a `model.Policy` beyond its rules (checked when converted).
fn validate_policy(value: &Map<String, Value>) -> Result<(), Reason> {
    if let Some(selector) = value.get("selector").and_then(Value::as_str) {
        validate_selector(selector)?;
    }
    if let Some(hints) = value.get("performance_hints").and_then(Value::as_array) {
        for (i, hint) in hints.iter().enumerate() {
            if hint.as_str() != Some("AssumeNeededOnEveryNode") {
                return Err(format!("invalid performance hint {hint}"));
            }
            if hints[..i].contains(hint) {
                return Err(format!("performance hint {hint} repeated"));
            }
        }
    }
    Ok(())
}

/// A `float64` as Go's encoder writes it: integral values without a fraction.
fn go_float(n: &Value) -> Value {
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => Value::from(f as i64),
        _ => n.clone(),
    }
}

/// `ConvertTierV3ToV1Value`: the order, and `Pass` or `Deny` as the default action.
fn tier(resource: &Resource<'_>, is_deleted: bool) -> Converted {
    let key = keys::tier(resource.name);
    super::emit::one_key(resource, key, is_deleted, |v3| {
        let spec = spec(v3)?;
        let mut out = Map::new();
        if let Some(order) = float(&spec, "order")? {
            out.insert("order".into(), go_float(&order));
        }
        let action = if string(&spec, "defaultAction")? == "Pass" {
            "Pass"
        } else {
            "Deny"
        };
        out.insert("defaultAction".into(), Value::String(action.into()));
        Ok(Some(Value::Object(out)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(
        dialect: Dialect,
        kind: &str,
        ns: &str,
        name: &str,
        value: Value,
    ) -> (String, Option<Value>) {
        let bytes = serde_json::to_vec(&value).unwrap();
        let out = convert(
            Syncer::Felix,
            dialect,
            &Resource {
                kind,
                namespace: ns,
                name,
                value: &bytes,
                revision: "1",
            },
            false,
        )
        .unwrap();
        assert!(out.error.is_none(), "{:?}", out.error);
        let [update] = out.updates.as_slice() else {
            panic!("{out:?}")
        };
        (
            update.key.clone(),
            update
                .value
                .as_ref()
                .map(|v| serde_json::from_slice(v).unwrap()),
        )
    }

    #[test]
    fn namespaced_policy_selects_only_its_namespace() {
        let (key, value) = run(
            Dialect::V331,
            NETWORK_POLICY,
            "ns1",
            "sec.allow-db",
            json!({"spec": {"tier": "sec", "order": 100.0, "selector": "app == 'db'",
                "serviceAccountSelector": "role == 'x'", "types": ["Ingress"],
                "ingress": [{"action": "Allow", "source": {"selector": "app == 'web'"}}]}}),
        );
        assert_eq!(key, "/calico/v1/policy/tier/sec/policy/ns1%2fsec.allow-db");
        assert_eq!(
            value.unwrap(),
            json!({
                "namespace": "ns1", "order": 100,
                "selector": "((app == 'db') && projectcalico.org/namespace == 'ns1') && pcsa.role == \"x\"",
                "types": ["ingress"],
                "inbound_rules": [{"action": "allow",
                    "src_selector": "(projectcalico.org/namespace == 'ns1') && (app == 'web')",
                    "orig_src_selector": "app == 'web'"}]
            })
        );
    }

    #[test]
    fn staged_and_modern_keys() {
        let (key, value) = run(
            Dialect::V331,
            STAGED_GLOBAL_NETWORK_POLICY,
            "",
            "gnp1",
            json!({"spec": {"stagedAction": "Set", "namespaceSelector": "all()"}}),
        );
        assert_eq!(key, "/calico/v1/policy/tier/default/policy/staged:gnp1");
        assert_eq!(
            value.unwrap(),
            json!({"selector": "has(projectcalico.org/namespace)", "staged_action": "Set"})
        );
        let (key, value) = run(
            Dialect::Modern,
            GLOBAL_NETWORK_POLICY,
            "",
            "sec.gnp1",
            json!({"spec": {"selector": "all()"}}),
        );
        assert_eq!(key, "/calico/v1/policy/GlobalNetworkPolicy//sec.gnp1");
        assert_eq!(value.unwrap(), json!({"selector": "all()", "tier": "sec"}));
        let (key, _) = run(
            Dialect::Modern,
            KUBERNETES_NETWORK_POLICY,
            "ns1",
            "allow",
            json!({"spec": {"podSelector": {}}}),
        );
        assert_eq!(
            key,
            "/calico/v1/policy/KubernetesNetworkPolicy/ns1/knp.default.allow"
        );
        let (key, _) = run(
            Dialect::V331,
            KUBERNETES_NETWORK_POLICY,
            "ns1",
            "allow",
            json!({"spec": {"podSelector": {}}}),
        );
        assert_eq!(
            key,
            "/calico/v1/policy/tier/default/policy/ns1%2fknp.default.allow"
        );
    }

    /// The documented v3.32 examples: `<kind>/<namespace>/<name>` with the v3 name as it is (no
    /// `<ns>/` or `staged:` in it), an empty namespace segment for global kinds, and the tier in
    /// the value.
    #[test]
    fn modern_keys_name_kind_namespace_and_name() {
        let (key, value) = run(
            Dialect::Modern,
            NETWORK_POLICY,
            "ns1",
            "sec.allow",
            json!({"spec": {"selector": "app == 'a'"}}),
        );
        assert_eq!(key, "/calico/v1/policy/NetworkPolicy/ns1/sec.allow");
        assert_eq!(value.unwrap()["tier"], json!("sec"));
        let (key, value) = run(
            Dialect::Modern,
            STAGED_NETWORK_POLICY,
            "ns1",
            "p",
            json!({"spec": {"stagedAction": "Set"}}),
        );
        assert_eq!(key, "/calico/v1/policy/StagedNetworkPolicy/ns1/p");
        assert_eq!(value.unwrap()["tier"], json!("default"));
        let (key, _) = run(
            Dialect::Modern,
            STAGED_GLOBAL_NETWORK_POLICY,
            "",
            "g",
            json!({"spec": {}}),
        );
        assert_eq!(key, "/calico/v1/policy/StagedGlobalNetworkPolicy//g");
    }

    #[test]
    fn staged_deletions_are_deletions() {
        let (_, value) = run(
            Dialect::V331,
            STAGED_NETWORK_POLICY,
            "ns1",
            "p",
            json!({"spec": {"stagedAction": "Delete"}}),
        );
        assert_eq!(value, None);
    }

    #[test]
    fn tiers_default_to_deny() {
        let (key, value) = run(
            Dialect::V331,
            TIER,
            "",
            "sec",
            json!({"spec": {"order": 50}}),
        );
        assert_eq!(key, "/calico/v1/policy/tier/sec/metadata");
        assert_eq!(
            value.unwrap(),
            json!({"order": 50, "defaultAction": "Deny"})
        );
    }
}
