//! The planner: from the mirror (every cluster's Services and Endpoints, and the local
//! Endpoints/EndpointSlices as the datastore holds them) to the [`Action`]s that bring the local
//! datastore to the desired state.
//!
//! Planning is pure and the same for every datastore; only the writer differs. It decides from the
//! mirror's copy alone, and each writer checks again against the datastore when it writes, so a
//! stale mirror costs at most an unneeded re-read.

use std::collections::{BTreeMap, BTreeSet};

use meshsync_agent::Mirror;
use serde_json::Value;
use tracing::{debug, warn};

use super::LOG_TARGET;
use super::merge::{merge, strip};
use crate::{EndpointsInfo, LOCAL_CLUSTER, ServiceInfo, desired_endpoints, is_managed};

const SERVICE: &str = "Service";
pub(super) const ENDPOINTS: &str = "Endpoints";
const ENDPOINT_SLICE: &str = "EndpointSlice";

/// An object's identity in the local datastore: (kind, namespace, name).
type ObjectId = (&'static str, String, String);

/// One object to bring to its desired state (`None`: delete it if managed).
#[derive(Clone, Debug)]
pub(super) struct Action {
    pub(super) kind: &'static str,
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) desired: Option<Value>,
}

/// What was already logged, so that a persisting condition is logged once.
#[derive(Default)]
pub(super) struct LogState {
    /// Misconfigured federated services and the reason logged.
    invalid: BTreeMap<(String, String), String>,
    /// Unmanaged objects in the way of a federated object.
    blocked: BTreeSet<ObjectId>,
}

impl LogState {
    /// How many wanted objects the last plan found in the way and not managed (left alone).
    pub(super) fn blocked_count(&self) -> usize {
        self.blocked.len()
    }
}

/// What the mirror holds, parsed: every cluster's Services and Endpoints, and the local
/// Endpoints / EndpointSlices as JSON.
struct Snapshot {
    services: Vec<ServiceInfo>,
    endpoints: Vec<EndpointsInfo>,
    local: BTreeMap<ObjectId, Value>,
}

/// The actions that bring the local datastore to the desired state, as far as the mirror shows.
/// Logs a warning for each misconfigured federated service (once per reason).
pub(super) fn plan(mirror: &Mirror, state: &mut LogState) -> Vec<Action> {
    let snapshot = read_mirror(mirror);
    let wanted = wanted_objects(&snapshot, &mut state.invalid);
    let local = &snapshot.local;

    let mut actions = Vec::new();
    let mut blocked = BTreeSet::new();
    for ((kind, ns, name), want) in &wanted {
        let current = local.get(&(*kind, ns.clone(), name.clone()));
        let needs_write = match current {
            None => true,
            Some(cur) if !is_managed(cur) => {
                let id = (*kind, ns.clone(), name.clone());
                if !state.blocked.contains(&id) {
                    warn!(target: LOG_TARGET, kind, namespace = %ns, name = %name,
                        "an object the federation controller does not manage (no selector annotation) is in the way; leaving it alone");
                }
                blocked.insert(id);
                false
            }
            Some(cur) => match merge(cur, want) {
                Some(merged) => strip(cur) != strip(&merged),
                None => true,
            },
        };
        if needs_write {
            actions.push(Action {
                kind,
                namespace: ns.clone(),
                name: name.clone(),
                desired: Some(want.clone()),
            });
        }
    }
    for ((kind, ns, name), cur) in local {
        if wanted.contains_key(&(*kind, ns.clone(), name.clone())) || !is_managed(cur) {
            continue;
        }
        actions.push(Action {
            kind,
            namespace: ns.clone(),
            name: name.clone(),
            desired: None,
        });
    }
    state.blocked = blocked;
    actions
}

fn read_mirror(mirror: &Mirror) -> Snapshot {
    let mut snapshot = Snapshot {
        services: Vec::new(),
        endpoints: Vec::new(),
        local: BTreeMap::new(),
    };
    for (key, entry) in mirror.resources() {
        match key.kind.as_str() {
            SERVICE => match ServiceInfo::from_json(&key.cluster, &entry.value) {
                Ok(svc) => snapshot.services.push(svc),
                Err(e) => {
                    debug!(target: LOG_TARGET, cluster = %key.cluster, name = %key.name, error = %e,
                    "ignoring unparseable Service")
                }
            },
            ENDPOINTS => {
                match EndpointsInfo::from_json(&key.cluster, &entry.value) {
                    Ok(eps) => snapshot.endpoints.push(eps),
                    Err(e) => {
                        debug!(target: LOG_TARGET, cluster = %key.cluster, name = %key.name, error = %e,
                        "ignoring unparseable Endpoints")
                    }
                }
                if key.cluster == LOCAL_CLUSTER
                    && let Ok(v) = serde_json::from_slice::<Value>(&entry.value)
                {
                    let id = (ENDPOINTS, key.namespace.clone(), key.name.clone());
                    snapshot.local.insert(id, v);
                }
            }
            ENDPOINT_SLICE if key.cluster == LOCAL_CLUSTER => {
                if let Ok(v) = serde_json::from_slice::<Value>(&entry.value) {
                    let id = (ENDPOINT_SLICE, key.namespace.clone(), key.name.clone());
                    snapshot.local.insert(id, v);
                }
            }
            _ => {}
        }
    }
    snapshot
}

/// The federated objects that should exist. A misconfigured federated service has none (so its
/// managed objects are removed) and is warned about once per reason (`warned`).
fn wanted_objects(
    snapshot: &Snapshot,
    warned: &mut BTreeMap<(String, String), String>,
) -> BTreeMap<ObjectId, Value> {
    let desired = desired_endpoints(&snapshot.services, &snapshot.endpoints);
    let mut wanted = BTreeMap::new();
    let mut still_invalid = BTreeSet::new();
    for ((ns, name), result) in &desired {
        match result {
            Ok(d) => {
                wanted.insert((ENDPOINTS, ns.clone(), name.clone()), d.to_endpoints_json());
                for slice in d.to_endpoint_slices_json() {
                    if let Some(slice_name) = slice["metadata"]["name"].as_str() {
                        wanted.insert((ENDPOINT_SLICE, ns.clone(), slice_name.to_owned()), slice);
                    }
                }
            }
            Err(reason) => {
                let key = (ns.clone(), name.clone());
                if warned.get(&key) != Some(reason) {
                    warn!(target: LOG_TARGET, namespace = %ns, service = %name, %reason,
                        "federated service will not be included in federation; its managed endpoints are removed");
                    warned.insert(key.clone(), reason.clone());
                }
                still_invalid.insert(key);
            }
        }
    }
    warned.retain(|k, _| still_invalid.contains(k));
    wanted
}
