//! Namespaces and ServiceAccounts → Profiles, as Calico's KDD derives them.
//!
//! Why: policy selects pods by their namespace's and service account's labels through Profiles'
//! `labelsToApply` (`pcns.`/`pcsa.` prefixed), and a namespace's Profile carries the allow-all
//! rules Kubernetes semantics need. Rules (Calico's Namespace/ServiceAccount → Profile
//! conversion): `kns.<ns>` gets every namespace label with the `pcns.` prefix plus `pcns.projectcalico.org/name=<ns>`, and allow rules both
//! ways; `ksa.<ns>.<sa>` gets every SA label with the `pcsa.` prefix plus
//! `pcsa.projectcalico.org/name=<sa>`, and no rules. Both carry the source's creation time and,
//! as their `uid`, Calico's conversion of the source's ([`convert_uid`]: never the same UID as the
//! Kubernetes object; an object without a uid, which no API server serves, gives a Profile without
//! one). The source adds Calico's synthetic `projectcalico-default-allow` Profile
//! ([`default_allow_profile`]) with the namespaces.

use serde_json::{Map, Value, json};

use super::convert::{ConvertError, convert_uid, str_at};

/// The name of Calico's synthetic allow-all Profile.
pub const DEFAULT_ALLOW_PROFILE: &str = "projectcalico-default-allow";

/// The Profile `kns.<ns>` of a Namespace.
pub fn namespace_profile(namespace: &Value) -> Result<Value, ConvertError> {
    let name = str_at(namespace, "/metadata/name").unwrap_or("");
    let labels = prefixed_labels(namespace, "pcns.", name);
    let mut spec = Map::new();
    spec.insert("ingress".into(), json!([{"action": "Allow"}]));
    spec.insert("egress".into(), json!([{"action": "Allow"}]));
    spec.insert("labelsToApply".into(), Value::Object(labels));
    profile(&format!("kns.{name}"), namespace, spec)
}

/// The Profile `ksa.<ns>.<sa>` of a ServiceAccount.
pub fn service_account_profile(sa: &Value) -> Result<Value, ConvertError> {
    let name = str_at(sa, "/metadata/name").unwrap_or("");
    let ns = str_at(sa, "/metadata/namespace")
        .filter(|n| !n.is_empty())
        .unwrap_or("default");
    let labels = prefixed_labels(sa, "pcsa.", name);
    let mut spec = Map::new();
    spec.insert("labelsToApply".into(), Value::Object(labels));
    profile(&format!("ksa.{ns}.{name}"), sa, spec)
}

/// Calico's synthetic `projectcalico-default-allow` Profile (allow all, no labels).
pub fn default_allow_profile() -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "Profile",
        "metadata": {"name": DEFAULT_ALLOW_PROFILE},
        "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}
    })
}

/// `<prefix><label>` for every label of `object`, plus `<prefix>projectcalico.org/name=<name>`.
fn prefixed_labels(object: &Value, prefix: &str, name: &str) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(labels) = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
    {
        for (k, v) in labels {
            out.insert(format!("{prefix}{k}"), v.clone());
        }
    }
    out.insert(format!("{prefix}projectcalico.org/name"), json!(name));
    out
}

fn profile(name: &str, source: &Value, spec: Map<String, Value>) -> Result<Value, ConvertError> {
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(name));
    if let Some(ts) = source
        .pointer("/metadata/creationTimestamp")
        .filter(|v| !v.is_null())
    {
        metadata.insert("creationTimestamp".into(), ts.clone());
    }
    if let Some(uid) = str_at(source, "/metadata/uid").filter(|u| !u.is_empty()) {
        metadata.insert("uid".into(), json!(convert_uid(uid)?));
    }
    Ok(json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "Profile",
        "metadata": metadata,
        "spec": spec,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_labels_are_prefixed_and_rules_allow() {
        let ns = json!({"metadata": {"name": "shop", "labels": {"team": "a"},
            "creationTimestamp": "2026-01-01T00:00:00Z"}});
        assert_eq!(
            namespace_profile(&ns).unwrap(),
            json!({"apiVersion": "projectcalico.org/v3", "kind": "Profile",
                "metadata": {"name": "kns.shop", "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}],
                    "labelsToApply": {"pcns.team": "a", "pcns.projectcalico.org/name": "shop"}}})
        );
    }

    #[test]
    fn service_accounts_have_labels_and_no_rules() {
        let sa = json!({"metadata": {"name": "api", "namespace": "shop", "labels": {"tier": "x"}}});
        let p = service_account_profile(&sa).unwrap();
        assert_eq!(p["metadata"]["name"], "ksa.shop.api");
        assert_eq!(
            p["spec"],
            json!({"labelsToApply": {"pcsa.tier": "x", "pcsa.projectcalico.org/name": "api"}})
        );
    }

    #[test]
    fn profiles_carry_calicos_conversion_of_the_source_uid() {
        // UIDs as a real API server gave them, and the Profiles' UIDs calico-typha served for
        // them (bits of every byte reversed but the version and variant bytes).
        let ns =
            json!({"metadata": {"name": "shop", "uid": "0991d556-1cab-4bdb-9be7-b5e030aa75e1"}});
        assert_eq!(
            namespace_profile(&ns).unwrap()["metadata"]["uid"],
            "9089ab6a-38d5-4bdb-9be7-ad070c55ae87"
        );
        let sa = json!({"metadata": {"name": "api", "namespace": "shop",
            "uid": "9089ab6a-38d5-4bdb-9be7-ad070c55ae87"}});
        assert_eq!(
            service_account_profile(&sa).unwrap()["metadata"]["uid"],
            "0991d556-1cab-4bdb-9be7-b5e030aa75e1"
        );
        let bad = json!({"metadata": {"name": "shop", "uid": "not-a-uuid"}});
        assert!(matches!(
            namespace_profile(&bad),
            Err(ConvertError::Invalid(_))
        ));
        let none = json!({"metadata": {"name": "shop"}});
        assert!(
            namespace_profile(&none).unwrap()["metadata"]
                .get("uid")
                .is_none()
        );
    }
}
