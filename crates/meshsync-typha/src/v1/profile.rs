//! Profiles: the labels and rules namespaces and service accounts give their endpoints.
//!
//! On the Kubernetes datastore Calico synthesizes a Profile per namespace (`kns.<ns>`) and per
//! service account (`ksa.<ns>.<sa>`); endpoints name them in `profile_ids`. The felix syncer
//! sends each Profile three times: its labels (`ProfileLabelsKey`, only when it applies labels),
//! its rules in v1 form (`ProfileRulesKey`), and the whole v3 Profile (`ResourceKey`), which
//! Felix's named-port index reads. All three keys come from the name alone, so a deletion deletes
//! all three.

use serde_json::{Map, Value};

use super::emit::{deleted, invalid, parse, set};
use super::keys;
use super::rules::{rule_v3_json, rules_to_v1, validate_v3_rule};
use super::v3read::{Reason, list, metadata, object_meta_json, spec, string_map};
use super::{Converted, Dialect, Resource, Syncer, V1Update};

const PROFILE: &str = "Profile";

pub(super) fn convert(
    syncer: Syncer,
    _dialect: Dialect,
    resource: &Resource<'_>,
    is_deleted: bool,
) -> Option<Converted> {
    if syncer != Syncer::Felix || resource.kind != PROFILE {
        return None;
    }
    Some(profile(resource, is_deleted))
}

fn profile(resource: &Resource<'_>, is_deleted: bool) -> Converted {
    let labels_key = keys::profile_labels(resource.name);
    let rules_key = keys::profile_rules(resource.name);
    let Some(v3_key) = keys::resource(PROFILE, "", resource.name) else {
        return Converted::default();
    };
    let all_deleted = |error| Converted {
        updates: vec![
            deleted(labels_key.clone()),
            deleted(rules_key.clone()),
            deleted(v3_key.clone()),
        ],
        error,
    };
    if is_deleted {
        return all_deleted(None);
    }
    let v3 = match parse(resource) {
        Ok(v) => v,
        Err(error) => return all_deleted(Some(error)),
    };
    let parts = match Parts::of(&v3) {
        Ok(parts) => parts,
        Err(reason) => return all_deleted(Some(invalid(resource, reason))),
    };
    let mut error = None;
    // Typha's validation filter drops invalid rules (and the v3 validator then the v3 Profile
    // too), or a v3 Profile its v3 validation refuses.
    let (rules, v3_value) = match (parts.rules, parts.v3) {
        (Ok(rules), Ok(v3)) => (Some(rules), Some(v3)),
        (Ok(rules), Err(reason)) => {
            error = Some(invalid(resource, reason));
            (Some(rules), None)
        }
        (Err(reason), _) => {
            error = Some(invalid(resource, reason));
            (None, None)
        }
    };
    let mut updates = Vec::with_capacity(3);
    let mut push = |key: String, value: Option<Value>| match value {
        None => updates.push(deleted(key)),
        Some(v) => match set(resource, key.clone(), &v) {
            Ok(u) => updates.push(u),
            Err(e) => {
                updates.push(deleted(key));
                error.get_or_insert(e);
            }
        },
    };
    push(
        labels_key,
        parts.labels.filter(|l| !l.is_empty()).map(Value::Object),
    );
    push(rules_key, rules);
    match v3_value {
        Some(v) => match set(resource, v3_key.clone(), &v) {
            // A Profile the Kubernetes datastore makes of a namespace or service account
            // (`kns.`, `ksa.`) carries no resource version when listed and Calico's profile
            // watcher's stamp (`/`) when watched: meshsync's Kubernetes driver leaves that in the
            // value's metadata. A stored one carries the version it is read at.
            Ok(u) => updates.push(V1Update {
                v3_resource_version: if resource.name.starts_with("kns.")
                    || resource.name.starts_with("ksa.")
                {
                    v3.pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned()
                } else {
                    resource.revision.to_owned()
                },
                ..u
            }),
            Err(e) => {
                updates.push(deleted(v3_key));
                error.get_or_insert(e);
            }
        },
        None => updates.push(deleted(v3_key)),
    }
    Converted { updates, error }
}

/// What a Profile converts to.
struct Parts {
    labels: Option<Map<String, Value>>,
    /// `model.ProfileRules`, or why Typha would drop it.
    rules: Result<Value, Reason>,
    /// The v3 Profile as Go re-marshals it, or why Typha's v3 validation drops it.
    v3: Result<Value, Reason>,
}

impl Parts {
    fn of(v3: &Value) -> Result<Parts, Reason> {
        let spec = spec(v3)?;
        let ingress = list(&spec, "ingress")?;
        let egress = list(&spec, "egress")?;
        let labels = string_map(&spec, "labelsToApply")?;

        let rules = (|| -> Result<Value, Reason> {
            let mut m = Map::new();
            let inbound = rules_to_v1(ingress, "")?;
            let outbound = rules_to_v1(egress, "")?;
            if !inbound.is_empty() {
                m.insert("inbound_rules".into(), Value::Array(inbound));
            }
            if !outbound.is_empty() {
                m.insert("outbound_rules".into(), Value::Array(outbound));
            }
            Ok(Value::Object(m))
        })();

        let v3_valid = ingress
            .into_iter()
            .chain(egress)
            .flatten()
            .try_for_each(validate_v3_rule);
        let mut v3_spec = Map::new();
        for (field, rules) in [("ingress", ingress), ("egress", egress)] {
            let rules: Vec<Value> = rules
                .into_iter()
                .flatten()
                .map(rule_v3_json)
                .collect::<Result<_, _>>()?;
            if !rules.is_empty() {
                v3_spec.insert(field.into(), Value::Array(rules));
            }
        }
        if let Some(l) = labels.as_ref().filter(|l| !l.is_empty()) {
            v3_spec.insert("labelsToApply".into(), Value::Object(l.clone()));
        }
        let mut v3_out = Map::new();
        v3_out.insert("kind".into(), Value::String(PROFILE.into()));
        v3_out.insert(
            "apiVersion".into(),
            Value::String("projectcalico.org/v3".into()),
        );
        v3_out.insert("metadata".into(), object_meta_json(&metadata(v3)?));
        v3_out.insert("spec".into(), Value::Object(v3_spec));
        Ok(Parts {
            labels,
            rules,
            v3: v3_valid.map(|()| Value::Object(v3_out)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(name: &str, value: Value, is_deleted: bool) -> Converted {
        let bytes = serde_json::to_vec(&value).unwrap();
        convert(
            Syncer::Felix,
            Dialect::V331,
            &Resource {
                kind: PROFILE,
                namespace: "",
                name,
                value: &bytes,
                revision: "12/",
            },
            is_deleted,
        )
        .unwrap()
    }

    #[test]
    fn namespace_profile_gives_labels_rules_and_the_v3_profile() {
        let profile = json!({
            "apiVersion": "projectcalico.org/v3", "kind": "Profile",
            "metadata": {"name": "kns.ns1"},
            "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}],
                     "labelsToApply": {"pcns.projectcalico.org/name": "ns1"}}
        });
        let out = run("kns.ns1", profile.clone(), false);
        assert!(out.error.is_none());
        let keys: Vec<&str> = out.updates.iter().map(|u| u.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "/calico/v1/policy/profile/kns.ns1/labels",
                "/calico/v1/policy/profile/kns.ns1/rules",
                "/calico/resources/v3/projectcalico.org/profiles/kns.ns1"
            ]
        );
        let value = |i: usize| -> Value {
            serde_json::from_slice(out.updates[i].value.as_ref().unwrap()).unwrap()
        };
        assert_eq!(value(0), json!({"pcns.projectcalico.org/name": "ns1"}));
        assert_eq!(
            value(1),
            json!({"inbound_rules": [{"action": "allow"}], "outbound_rules": [{"action": "allow"}]})
        );
        assert_eq!(
            value(2)["metadata"],
            json!({"name": "kns.ns1", "creationTimestamp": null})
        );
        // A namespace's Profile: no resource version, whatever the revision, unless the
        // Kubernetes driver left the profile watcher's stamp in it (a watch event).
        assert_eq!(out.updates[2].v3_resource_version, "");
        let mut watched = profile.clone();
        watched["metadata"]["resourceVersion"] = json!("/");
        let out_watched = run("kns.ns1", watched, false);
        assert_eq!(out_watched.updates[2].v3_resource_version, "/");
        assert_eq!(out_watched.updates[2].value, out.updates[2].value);

        let out = run("kns.ns1", profile, true);
        assert!(out.updates.iter().all(|u| u.value.is_none()));
        assert_eq!(out.updates.len(), 3);
    }

    #[test]
    fn profile_without_labels_deletes_its_labels_key() {
        let out = run("p1", json!({"spec": {}}), false);
        assert_eq!(out.updates[0].value, None);
        assert!(out.updates[1].value.is_some());
    }
}
