//! Expectations derived from what the test wrote, and what an agent's mirror and events hold.

use std::collections::{BTreeMap, BTreeSet};

use meshsync_agent::{AgentEvent, Mirror, MirrorKey};
use meshsync_proto as pb;
use serde_json::Value;

use super::{Cluster, NOT_FELIX, OVERLAY_KINDS, RCC, REMOTE_KINDS, SECRET};

pub fn mkey(cluster: &str, kind: &str, ns: &str, name: &str) -> MirrorKey {
    MirrorKey {
        cluster: cluster.into(),
        kind: kind.into(),
        namespace: ns.into(),
        name: name.into(),
    }
}

pub fn key_of(u: &pb::Update) -> MirrorKey {
    mkey(&u.cluster, &u.kind, &u.namespace, &u.name)
}

/// A remote cluster as the local mesh names it.
pub struct Remote<'a> {
    pub name: &'a str,
    pub cluster: &'a Cluster,
    pub overlay: bool,
}

pub fn remote<'a>(name: &'a str, cluster: &'a Cluster, overlay: bool) -> Remote<'a> {
    Remote {
        name,
        cluster,
        overlay,
    }
}

/// Remotes `(RCC name, cluster)` with overlay routing disabled (the default).
pub fn remotes_without_overlay<'a>(remotes: &[(&'a str, &'a Cluster)]) -> Vec<Remote<'a>> {
    remotes
        .iter()
        .map(|&(name, cluster)| remote(name, cluster, false))
        .collect()
}

/// Every key of `keys` as a change of type `type_name` ("New", "Updated", "Deleted").
pub fn all_as(keys: impl IntoIterator<Item = MirrorKey>, type_name: &'static str) -> Vec<Change> {
    keys.into_iter().map(|k| (k, type_name)).collect()
}

pub fn without_resource_version(value: &Value) -> Value {
    let mut value = value.clone();
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    value
}

/// What an `all` agent must hold: the local keys minus RCCs and Secrets, and each remote's keys of
/// the synced kinds under the RCC name, its Profiles without rules.
pub fn expected(local: &Cluster, remotes: &[Remote<'_>]) -> BTreeMap<MirrorKey, Value> {
    let mut out = BTreeMap::new();
    for ((kind, ns, name), (_, value)) in &local.data {
        if kind == RCC || kind == SECRET {
            continue;
        }
        out.insert(mkey("", kind, ns, name), without_resource_version(value));
    }
    for r in remotes {
        for ((kind, ns, name), (_, value)) in &r.cluster.data {
            let synced = REMOTE_KINDS.contains(&kind.as_str())
                || (r.overlay && OVERLAY_KINDS.contains(&kind.as_str()));
            if !synced {
                continue;
            }
            let mut value = without_resource_version(value);
            if kind == "Profile"
                && let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut)
            {
                spec.remove("ingress");
                spec.remove("egress");
            }
            out.insert(mkey(r.name, kind, ns, name), value);
        }
    }
    out
}

/// What a `felix` agent must hold of `all`.
pub fn felix_view(all: &BTreeMap<MirrorKey, Value>) -> BTreeMap<MirrorKey, Value> {
    all.iter()
        .filter(|(k, _)| !NOT_FELIX.contains(&k.kind.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Keys per cluster.
pub fn counts(map: &BTreeMap<MirrorKey, Value>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for k in map.keys() {
        *out.entry(k.cluster.clone()).or_default() += 1;
    }
    out
}

pub fn cluster_keys(map: &BTreeMap<MirrorKey, Value>, cluster: &str) -> BTreeSet<MirrorKey> {
    map.keys()
        .filter(|k| k.cluster == cluster)
        .cloned()
        .collect()
}

/// The mirror's contents with values parsed.
pub fn mirror_map(m: &Mirror) -> BTreeMap<MirrorKey, Value> {
    m.resources()
        .iter()
        .map(|(k, e)| {
            let value = serde_json::from_slice(&e.value)
                .unwrap_or_else(|err| panic!("{k:?}: value is not JSON ({err})"));
            (k.clone(), value)
        })
        .collect()
}

pub fn holds(m: &Mirror, expected: &BTreeMap<MirrorKey, Value>) -> bool {
    m.len() == expected.len() && mirror_map(m) == *expected
}

pub fn assert_holds(m: &Mirror, expected: &BTreeMap<MirrorKey, Value>, what: &str) {
    let actual = mirror_map(m);
    if actual == *expected {
        return;
    }
    let mut report = String::new();
    for (k, v) in expected {
        match actual.get(k) {
            None => report.push_str(&format!("\n  missing  {k:?}")),
            Some(a) if a != v => {
                report.push_str(&format!("\n  differs  {k:?}\n    want {v}\n    got  {a}"))
            }
            _ => {}
        }
    }
    for k in actual.keys().filter(|k| !expected.contains_key(*k)) {
        report.push_str(&format!("\n  extra    {k:?}"));
    }
    panic!("{what}: the agent's mirror differs from the datastores:{report}");
}

/// An update as (key, type name).
pub type Change = (MirrorKey, &'static str);

pub fn type_name(t: pb::UpdateType) -> &'static str {
    match t {
        pb::UpdateType::New => "New",
        pb::UpdateType::Updated => "Updated",
        pb::UpdateType::Deleted => "Deleted",
        pb::UpdateType::Unspecified => "Unspecified",
    }
}

/// The updates among `events`, in order.
pub fn updates(events: &[AgentEvent]) -> Vec<pb::Update> {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Update(u) => Some(u.clone()),
            _ => None,
        })
        .collect()
}

/// The updates among `events` as sorted changes (duplicates kept, so they show).
pub fn changes(events: &[AgentEvent]) -> Vec<Change> {
    let mut out: Vec<Change> = updates(events)
        .iter()
        .map(|u| (key_of(u), type_name(u.r#type())))
        .collect();
    out.sort();
    out
}

/// The changes that turn `before` into `after`, sorted.
pub fn diff(
    before: &BTreeMap<MirrorKey, Value>,
    after: &BTreeMap<MirrorKey, Value>,
) -> Vec<Change> {
    let mut out = Vec::new();
    for (k, v) in after {
        match before.get(k) {
            None => out.push((k.clone(), "New")),
            Some(old) if old != v => out.push((k.clone(), "Updated")),
            _ => {}
        }
    }
    for k in before.keys().filter(|k| !after.contains_key(*k)) {
        out.push((k.clone(), "Deleted"));
    }
    out.sort();
    out
}

pub fn statuses(events: &[AgentEvent]) -> Vec<pb::Status> {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Status { status, .. } => Some(status.clone()),
            _ => None,
        })
        .collect()
}

pub fn state(m: &Mirror, cluster: &str) -> Option<pb::ClusterState> {
    m.clusters().get(cluster).map(|c| c.state)
}

pub fn is(m: &Mirror, cluster: &str, wanted: pb::ClusterState) -> bool {
    state(m, cluster) == Some(wanted)
}

pub fn error_of(m: &Mirror, cluster: &str) -> String {
    m.clusters()
        .get(cluster)
        .map(|c| c.error.clone())
        .unwrap_or_default()
}

pub fn status_cluster<'a>(s: &'a pb::Status, cluster: &str) -> Option<&'a pb::ClusterStatus> {
    s.clusters.iter().find(|c| c.cluster == cluster)
}

pub fn describe(m: &Mirror) -> String {
    let mut text = format!("overall {:?}, {} keys;", m.overall(), m.len());
    for (name, c) in m.clusters() {
        text.push_str(&format!(
            " [{name:?}: {:?} keys={} error={:?}]",
            c.state, c.keys, c.error
        ));
    }
    text
}

pub fn describe_statuses(list: &[pb::Status]) -> String {
    list.iter()
        .map(|s| {
            let clusters: Vec<String> = s
                .clusters
                .iter()
                .map(|c| format!("{:?}={:?}", c.cluster, c.state()))
                .collect();
            format!("\n  {:?} {}", s.overall(), clusters.join(" "))
        })
        .collect()
}
