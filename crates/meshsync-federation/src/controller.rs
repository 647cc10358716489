//! The federated services controller: subscribes to a meshsync server with the `federation`
//! subscription, computes the desired federated Endpoints/EndpointSlices with
//! [`crate::desired_endpoints`] and reconciles them into the **local** datastore: etcd, or a file
//! datastore's `generated/` directory ([`LocalDatastore`]). The planning is shared; only the
//! [`Writer`] differs.
//!
//! * Recalculation waits until the mirror is in sync, then runs after every batch of updates
//!   (debounced by [`ControllerConfig::debounce`]).
//! * The mirror tells what the datastore holds; an object is only written (or deleted) when the
//!   mirror's copy differs from what it should be. Every write re-reads the key from etcd and is a
//!   compare-and-swap (`version == 0` to create, `mod_revision` to update or delete), retried on
//!   conflict up to [`ControllerConfig::max_attempts`] times.
//! * Only objects that [`crate::is_managed`] says are ours are updated or deleted. An unmanaged
//!   object in the way is left alone (logged).
//! * An update keeps the existing object's other metadata (labels, annotations, uid, …): it
//!   replaces the data fields (`subsets`; `addressType`/`endpoints`/`ports`) and merges our
//!   annotations and labels.
//! * A failed reconciliation (etcd unreachable) is retried after [`ControllerConfig::retry_delay`]
//!   even without new updates.
//!
//!
//! # File datastores
//!
//! With [`LocalDatastore::Files`] each managed object is one pretty-printed JSON file in
//! `DIR/generated/` (created when missing): `endpoints_<ns>_<name>.json` and
//! `endpointslice_<ns>_<name>.json` (`_` never occurs in a part: anything but `[a-z0-9.-]` is
//! `%XX`-escaped, so every object has its own file; files named as earlier versions did,
//! `endpoints-<ns>-<name>.json`, are removed at start when managed, and rewritten). The file datastore watches `DIR` recursively, so the generated
//! files come back through the subscription and the mirror tells what the datastore holds, exactly
//! as with etcd. A file is written atomically (a hidden temp file in `generated/`, which the
//! datastore ignores, then a rename) and only when its content differs; an unneeded object is
//! deleted by removing its file. Nothing outside `generated/` is ever written, and an unmanaged
//! object of the same kind, namespace and name defined elsewhere blocks the write (warned once).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use meshsync_agent::{Agent, AgentConfig, AgentError, AgentEvent, Mirror};
use meshsync_datastore::layout::key_path;
use meshsync_etcd::{EtcdClient, EtcdConfig, EtcdError, pb};
use serde_json::{Map, Value};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::{
    EndpointsInfo, LOCAL_CLUSTER, SERVICE_NAME_LABEL, ServiceInfo, desired_endpoints, is_managed,
};

const SERVICE: &str = "Service";
const ENDPOINTS: &str = "Endpoints";
const ENDPOINT_SLICE: &str = "EndpointSlice";

/// The subscription type the controller uses.
pub const SUBSCRIPTION: &str = "federation";

/// How to run the controller.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// The meshsync server(s) to subscribe to; the subscription is forced to `federation`.
    pub agent: AgentConfig,
    /// The local datastore the objects are written to.
    pub datastore: LocalDatastore,
    /// Wait this long after the first update of a batch before recalculating.
    pub debounce: Duration,
    /// Compare-and-swap attempts per object (etcd).
    pub max_attempts: u32,
    /// Retry a reconciliation that failed (etcd or file-system errors) after this long.
    pub retry_delay: Duration,
}

/// Where the controller writes its objects.
#[derive(Clone, Debug)]
pub enum LocalDatastore {
    /// An etcd datastore; objects are written with compare-and-swap under `prefix`.
    Etcd { config: EtcdConfig, prefix: String },
    /// A file datastore's directory; objects are written as files under `dir/generated/`.
    Files { dir: PathBuf },
}

/// The subdirectory of a file datastore the controller writes to.
pub const GENERATED_DIR: &str = "generated";

impl ControllerConfig {
    /// Writes into etcd under the default prefix `/calico`.
    pub fn new(agent: AgentConfig, etcd: EtcdConfig) -> Self {
        Self::with_datastore(
            agent,
            LocalDatastore::Etcd {
                config: etcd,
                prefix: "/calico".into(),
            },
        )
    }

    /// Writes files under `dir/generated/` (a file datastore's directory).
    pub fn files(agent: AgentConfig, dir: PathBuf) -> Self {
        Self::with_datastore(agent, LocalDatastore::Files { dir })
    }

    pub fn with_datastore(agent: AgentConfig, datastore: LocalDatastore) -> Self {
        ControllerConfig {
            agent,
            datastore,
            debounce: Duration::from_millis(50),
            max_attempts: 5,
            retry_delay: Duration::from_secs(1),
        }
    }
}

/// Errors that stop the controller.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Agent(#[from] AgentError),
}

/// What one reconciliation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileStats {
    pub written: usize,
    pub deleted: usize,
    /// Objects in the way that the controller does not manage.
    pub skipped_unmanaged: usize,
    pub failed: usize,
}

/// One object to bring to its desired state (`None`: delete it if managed).
#[derive(Clone, Debug)]
struct Action {
    kind: &'static str,
    namespace: String,
    name: String,
    desired: Option<Value>,
}

/// Runs the controller until `shutdown` completes (`Ok`) or a fatal subscription error.
pub async fn run(
    config: ControllerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ControllerError> {
    let mut agent_config = config.agent.clone();
    agent_config.subscription = SUBSCRIPTION.into();
    let mut agent = Agent::new(agent_config)?;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut writer = Writer::new(&config);
    let mut log_state = LogState::default();
    // When to recalculate next (None: nothing pending).
    let mut deadline: Option<Instant> = None;
    let mut was_in_sync = false;

    loop {
        let wake = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = &mut shutdown => {
                info!("federation controller shutting down");
                return Ok(());
            }
            event = agent.next() => {
                match event? {
                    AgentEvent::Connected { server, .. } => {
                        info!(%server, "federation controller subscribed");
                    }
                    AgentEvent::Disconnected { server, error, retry_in } => {
                        warn!(%server, %error, ?retry_in, "federation subscription lost; retrying");
                    }
                    AgentEvent::DigestMismatch(m) => {
                        warn!(clusters = m.len(), "mirror digest mismatch; resubscribing");
                    }
                    AgentEvent::Update(_) | AgentEvent::Removed(_) | AgentEvent::Status { .. } => {}
                }
                let in_sync = agent.mirror().in_sync();
                if in_sync && !was_in_sync {
                    info!("federation mirror in sync; reconciling federated endpoints");
                }
                was_in_sync = in_sync;
                if deadline.is_none() {
                    deadline = Some(Instant::now() + config.debounce);
                }
            }
            _ = tokio::time::sleep_until(wake), if deadline.is_some() => {
                deadline = None;
                if !agent.mirror().in_sync() {
                    continue;
                }
                if let Err(e) = writer.prepare().await {
                    warn!(error = %e, "the local datastore is not writable; will retry");
                    deadline = Some(Instant::now() + config.retry_delay);
                    continue;
                }
                let actions = plan(agent.mirror(), &mut log_state);
                let stats = apply(&writer, &actions).await;
                if stats.written + stats.deleted + stats.failed > 0 {
                    info!(written = stats.written, deleted = stats.deleted,
                        failed = stats.failed, unmanaged = stats.skipped_unmanaged,
                        "reconciled federated endpoints");
                }
                if stats.failed > 0 {
                    deadline = Some(Instant::now() + config.retry_delay);
                }
            }
        }
    }
}

/// The actions that bring the local datastore to the desired state, as far as the mirror shows.
/// Logs a warning for each misconfigured federated service (once per reason).
fn plan(mirror: &Mirror, state: &mut LogState) -> Vec<Action> {
    let warned = &mut state.invalid;
    let mut services = Vec::new();
    let mut endpoints = Vec::new();
    // Local Endpoints / EndpointSlices as the mirror holds them.
    let mut local: BTreeMap<(&'static str, String, String), Value> = BTreeMap::new();
    for (key, entry) in mirror.resources() {
        match key.kind.as_str() {
            SERVICE => match ServiceInfo::from_json(&key.cluster, &entry.value) {
                Ok(svc) => services.push(svc),
                Err(e) => debug!(cluster = %key.cluster, name = %key.name, error = %e,
                    "ignoring unparseable Service"),
            },
            ENDPOINTS => {
                match EndpointsInfo::from_json(&key.cluster, &entry.value) {
                    Ok(eps) => endpoints.push(eps),
                    Err(e) => debug!(cluster = %key.cluster, name = %key.name, error = %e,
                        "ignoring unparseable Endpoints"),
                }
                if key.cluster == LOCAL_CLUSTER
                    && let Ok(v) = serde_json::from_slice::<Value>(&entry.value)
                {
                    local.insert((ENDPOINTS, key.namespace.clone(), key.name.clone()), v);
                }
            }
            ENDPOINT_SLICE if key.cluster == LOCAL_CLUSTER => {
                if let Ok(v) = serde_json::from_slice::<Value>(&entry.value) {
                    local.insert((ENDPOINT_SLICE, key.namespace.clone(), key.name.clone()), v);
                }
            }
            _ => {}
        }
    }

    let desired = desired_endpoints(&services, &endpoints);
    let mut wanted: BTreeMap<(&'static str, String, String), Value> = BTreeMap::new();
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
                    warn!(namespace = %ns, service = %name, %reason,
                        "federated service will not be included in federation; its managed endpoints are removed");
                    warned.insert(key.clone(), reason.clone());
                }
                still_invalid.insert(key);
            }
        }
    }
    warned.retain(|k, _| still_invalid.contains(k));

    let mut actions = Vec::new();
    let mut blocked = BTreeSet::new();
    for ((kind, ns, name), want) in &wanted {
        let current = local.get(&(*kind, ns.clone(), name.clone()));
        let needs_write = match current {
            None => true,
            Some(cur) if !is_managed(cur) => {
                let id = (*kind, ns.clone(), name.clone());
                if !state.blocked.contains(&id) {
                    warn!(kind, namespace = %ns, name = %name,
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
    for ((kind, ns, name), cur) in &local {
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

/// What was already logged, so that a persisting condition is logged once.
#[derive(Default)]
struct LogState {
    /// Misconfigured federated services and the reason logged.
    invalid: BTreeMap<(String, String), String>,
    /// Unmanaged objects in the way of a federated object.
    blocked: BTreeSet<(&'static str, String, String)>,
}

/// Writes the planned objects into the local datastore: etcd (compare-and-swap) or files.
enum Writer {
    Etcd {
        config: EtcdConfig,
        prefix: String,
        max_attempts: u32,
        /// Boxed: a client is large.
        client: Option<Box<EtcdClient>>,
    },
    Files {
        /// `DIR/generated`.
        dir: PathBuf,
    },
}

impl Writer {
    fn new(config: &ControllerConfig) -> Writer {
        match &config.datastore {
            LocalDatastore::Etcd {
                config: etcd,
                prefix,
            } => Writer::Etcd {
                config: etcd.clone(),
                prefix: prefix.clone(),
                max_attempts: config.max_attempts,
                client: None,
            },
            LocalDatastore::Files { dir } => Writer::Files {
                dir: dir.join(GENERATED_DIR),
            },
        }
    }

    /// Connects to etcd / creates `generated/` if not done yet.
    async fn prepare(&mut self) -> Result<(), String> {
        match self {
            Writer::Etcd { config, client, .. } => {
                if client.is_none() {
                    *client =
                        Some(Box::new(EtcdClient::connect(config).await.map_err(
                            |e| format!("cannot connect to the local etcd: {e}"),
                        )?));
                }
                Ok(())
            }
            Writer::Files { dir } => {
                tokio::fs::create_dir_all(&*dir)
                    .await
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                remove_legacy_files(dir).await.map(|_| ())
            }
        }
    }

    async fn apply_one(&self, action: &Action) -> Result<Outcome, ApplyError> {
        match self {
            Writer::Etcd {
                prefix,
                max_attempts,
                client,
                ..
            } => {
                let client = client.as_deref().ok_or(ApplyError::NotConnected)?;
                // A `/` in a part would put the object under another namespace's path.
                check_name(&action.namespace)?;
                check_name(&action.name)?;
                let key = key_path(prefix, action.kind, &action.namespace, &action.name)
                    .ok_or(ApplyError::NoLayout(action.kind))?;
                apply_one_etcd(client, *max_attempts, &key, action).await
            }
            Writer::Files { dir } => apply_one_file(dir, action).await,
        }
    }
}

/// Applies `actions` to the local datastore.
async fn apply(writer: &Writer, actions: &[Action]) -> ReconcileStats {
    let mut stats = ReconcileStats::default();
    for action in actions {
        match writer.apply_one(action).await {
            Ok(Outcome::Written) => {
                info!(kind = action.kind, namespace = %action.namespace, name = %action.name,
                "wrote federated object");
                stats.written += 1;
            }
            Ok(Outcome::Deleted) => {
                info!(kind = action.kind, namespace = %action.namespace, name = %action.name,
                "deleted federated object");
                stats.deleted += 1;
            }
            Ok(Outcome::Unchanged) => {}
            Ok(Outcome::Unmanaged) => stats.skipped_unmanaged += 1,
            Err(e) => {
                warn!(kind = action.kind, namespace = %action.namespace, name = %action.name,
                error = %e, "failed to reconcile federated object");
                stats.failed += 1;
            }
        }
    }
    stats
}

enum Outcome {
    Written,
    Deleted,
    Unchanged,
    Unmanaged,
}

#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error("cannot encode the object: {0}")]
    Encode(String),
    #[error("still conflicting after {0} compare-and-swap attempts")]
    Conflict(u32),
    #[error("not connected to etcd")]
    NotConnected,
    #[error("no etcd key layout for kind {0}")]
    NoLayout(&'static str),
    #[error("{0}")]
    Io(String),
    #[error("{0:?} cannot be used in a file name")]
    BadName(String),
}

async fn apply_one_etcd(
    client: &EtcdClient,
    max_attempts: u32,
    key: &str,
    action: &Action,
) -> Result<Outcome, ApplyError> {
    let key = Bytes::copy_from_slice(key.as_bytes());
    for attempt in 1..=max_attempts.max(1) {
        let response = client
            .range(pb::RangeRequest {
                key: key.clone(),
                ..Default::default()
            })
            .await?;
        let current = response.kvs.into_iter().next();
        let (compare, op) = match (&current, &action.desired) {
            (None, None) => return Ok(Outcome::Unchanged),
            (None, Some(want)) => {
                let mut want = want.clone();
                remove_server_fields(&mut want);
                (compare_version_zero(&key), put_op(&key, &want)?)
            }
            (Some(kv), desired) => {
                let existing: Value = match serde_json::from_slice(&kv.value) {
                    Ok(v) => v,
                    Err(_) => {
                        warn!(key = %String::from_utf8_lossy(&key),
                            "unparseable object in the way of a federated object; leaving it alone");
                        return Ok(Outcome::Unmanaged);
                    }
                };
                if !is_managed(&existing) {
                    info!(kind = action.kind, namespace = %action.namespace, name = %action.name,
                        "object not managed by the federation controller (no selector annotation); leaving it alone");
                    return Ok(Outcome::Unmanaged);
                }
                match desired {
                    None => (compare_mod(&key, kv.mod_revision), delete_op(&key)),
                    Some(want) => {
                        let Some(mut merged) = merge(&existing, want) else {
                            return Ok(Outcome::Unmanaged);
                        };
                        if strip(&existing) == strip(&merged) {
                            return Ok(Outcome::Unchanged);
                        }
                        remove_server_fields(&mut merged);
                        (compare_mod(&key, kv.mod_revision), put_op(&key, &merged)?)
                    }
                }
            }
        };
        let txn = client
            .txn(pb::TxnRequest {
                compare: vec![compare],
                success: vec![op],
                failure: vec![],
            })
            .await?;
        if txn.succeeded {
            return Ok(if action.desired.is_some() {
                Outcome::Written
            } else {
                Outcome::Deleted
            });
        }
        debug!(key = %String::from_utf8_lossy(&key), attempt, "compare-and-swap conflict; re-reading");
    }
    Err(ApplyError::Conflict(max_attempts))
}

/// Refuses names that are not names: empty, path-like, or hidden-file-like. Kubernetes would never
/// accept them (namespaces are DNS-1123 labels, names DNS-1123 subdomains); a file datastore might
/// hold them.
fn check_name(part: &str) -> Result<(), ApplyError> {
    if part.is_empty() || part.contains(['/', '\\', '\0']) || part.starts_with('.') {
        return Err(ApplyError::BadName(part.to_string()));
    }
    Ok(())
}

/// One part of a generated file name: `[a-z0-9.-]` as they are (every valid Kubernetes name is
/// written as itself), anything else `%XX`-escaped, so `_` never occurs inside a part.
fn file_name_part(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for b in part.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The file of a managed object in `generated/`: `<kind>_<namespace>_<name>.json` (kind lower-
/// cased, parts as [`file_name_part`] writes them). `_` cannot occur in a part, so every
/// (kind, namespace, name) has its own file: `col/x-y` and `col-x/y` no longer share one.
fn generated_file(dir: &Path, action: &Action) -> Result<PathBuf, ApplyError> {
    check_name(&action.namespace)?;
    check_name(&action.name)?;
    Ok(dir.join(format!(
        "{}_{}_{}.json",
        action.kind.to_ascii_lowercase(),
        file_name_part(&action.namespace),
        file_name_part(&action.name)
    )))
}

/// Files an earlier version wrote (`endpoints-<ns>-<name>.json`, `endpointslice-<ns>-<name>.json`:
/// ambiguous, since `-` occurs in names). Removed at start when they are ours (managed), so the
/// objects they hold are written again under their unambiguous names.
async fn remove_legacy_files(dir: &Path) -> Result<usize, String> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
    };
    let mut removed = 0;
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name().to_string_lossy().into_owned();
        let legacy = (name.starts_with("endpoints-") || name.starts_with("endpointslice-"))
            && name.ends_with(".json");
        if !legacy {
            continue;
        }
        let path = entry.path();
        let managed = tokio::fs::read(&path)
            .await
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .is_some_and(|v| is_managed(&v));
        if managed && tokio::fs::remove_file(&path).await.is_ok() {
            info!(path = %path.display(), "removed a federated object file with an old, ambiguous name; it is written again under its new name");
            removed += 1;
        }
    }
    Ok(removed)
}

/// Brings one object's file in `generated/` to its desired state.
async fn apply_one_file(dir: &Path, action: &Action) -> Result<Outcome, ApplyError> {
    let path = generated_file(dir, action)?;
    let io =
        |what: &str, e: std::io::Error| ApplyError::Io(format!("{what} {}: {e}", path.display()));
    let existing = match tokio::fs::read(&path).await {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io("reading", e)),
    };
    let content = match (&existing, &action.desired) {
        (None, None) => return Ok(Outcome::Unchanged),
        (None, Some(want)) => {
            let mut want = want.clone();
            remove_server_fields(&mut want);
            want
        }
        (Some(bytes), desired) => {
            let Ok(current) = serde_json::from_slice::<Value>(bytes) else {
                warn!(path = %path.display(),
                    "unparseable file in the way of a federated object; leaving it alone");
                return Ok(Outcome::Unmanaged);
            };
            if !is_managed(&current) {
                info!(path = %path.display(),
                    "object not managed by the federation controller (no selector annotation); leaving it alone");
                return Ok(Outcome::Unmanaged);
            }
            match desired {
                None => {
                    return match tokio::fs::remove_file(&path).await {
                        Ok(()) => Ok(Outcome::Deleted),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            Ok(Outcome::Unchanged)
                        }
                        Err(e) => Err(io("removing", e)),
                    };
                }
                Some(want) => {
                    let Some(mut merged) = merge(&current, want) else {
                        return Ok(Outcome::Unmanaged);
                    };
                    remove_server_fields(&mut merged);
                    merged
                }
            }
        }
    };
    let mut bytes =
        serde_json::to_vec_pretty(&content).map_err(|e| ApplyError::Encode(e.to_string()))?;
    bytes.push(b'\n');
    if existing.as_deref() == Some(bytes.as_slice()) {
        return Ok(Outcome::Unchanged);
    }
    // Hidden, so the file datastore ignores it until the rename.
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{file_name}.tmp"));
    if let Err(e) = tokio::fs::write(&tmp, &bytes).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(io("writing", e));
    }
    if let Err(e) = tokio::fs::rename(&tmp, &path).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(io("renaming into", e));
    }
    Ok(Outcome::Written)
}

fn compare_version_zero(key: &Bytes) -> pb::Compare {
    pb::Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Version as i32,
        key: key.clone(),
        target_union: Some(pb::compare::TargetUnion::Version(0)),
        ..Default::default()
    }
}

fn compare_mod(key: &Bytes, mod_revision: i64) -> pb::Compare {
    pb::Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Mod as i32,
        key: key.clone(),
        target_union: Some(pb::compare::TargetUnion::ModRevision(mod_revision)),
        ..Default::default()
    }
}

fn put_op(key: &Bytes, value: &Value) -> Result<pb::RequestOp, ApplyError> {
    let bytes = serde_json::to_vec(value).map_err(|e| ApplyError::Encode(e.to_string()))?;
    Ok(pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: key.clone(),
            value: Bytes::from(bytes),
            ..Default::default()
        })),
    })
}

fn delete_op(key: &Bytes) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestDeleteRange(
            pb::DeleteRangeRequest {
                key: key.clone(),
                ..Default::default()
            },
        )),
    }
}

/// Data fields the controller owns, per kind (replaced on update, removed when not desired).
fn owned_fields(kind: Option<&str>) -> &'static [&'static str] {
    match kind {
        Some("EndpointSlice") => &["addressType", "endpoints", "ports"],
        _ => &["subsets"],
    }
}

/// `existing` updated to `desired`: the owned data fields replaced, our annotations and labels
/// merged into the existing ones, everything else kept. `None` if `existing` is not an object
/// with object metadata.
fn merge(existing: &Value, desired: &Value) -> Option<Value> {
    let mut out = existing.clone();
    let obj = out.as_object_mut()?;
    for field in owned_fields(desired["kind"].as_str()) {
        match desired.get(*field) {
            Some(v) => {
                obj.insert((*field).to_owned(), v.clone());
            }
            None => {
                obj.remove(*field);
            }
        }
    }
    for field in ["apiVersion", "kind"] {
        if let Some(v) = desired.get(field) {
            obj.insert(field.to_owned(), v.clone());
        }
    }
    let metadata = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()?;
    for field in ["annotations", "labels"] {
        let Some(want) = desired["metadata"][field].as_object() else {
            continue;
        };
        let target = metadata
            .entry(field)
            .or_insert_with(|| Value::Object(Map::new()));
        if !target.is_object() {
            *target = Value::Object(Map::new());
        }
        let target = target.as_object_mut()?;
        for (k, v) in want {
            target.insert(k.clone(), v.clone());
        }
    }
    Some(out)
}

/// A copy without the fields the datastore sets, for comparisons.
fn strip(value: &Value) -> Value {
    let mut v = value.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in ["resourceVersion", "uid", "creationTimestamp"] {
            m.remove(f);
        }
    }
    v
}

/// Removes `metadata.resourceVersion` (etcd's revision is the version) before writing.
fn remove_server_fields(value: &mut Value) {
    if let Some(m) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
}

/// The service an EndpointSlice belongs to (its `kubernetes.io/service-name` label).
pub fn slice_service(slice: &Value) -> Option<&str> {
    slice["metadata"]["labels"][SERVICE_NAME_LABEL].as_str()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_keeps_foreign_metadata_and_replaces_subsets() {
        let existing = json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "x", "namespace": "d", "uid": "u1",
                "annotations": {"other": "keep", "federation.tigera.io/serviceSelector": "old"}},
            "subsets": [{"addresses": [{"ip": "1.1.1.1"}]}]
        });
        let desired = json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "x", "namespace": "d",
                "annotations": {"federation.tigera.io/serviceSelector": "new"}}
        });
        let merged = merge(&existing, &desired).expect("object");
        assert_eq!(merged["metadata"]["annotations"]["other"], "keep");
        assert_eq!(
            merged["metadata"]["annotations"]["federation.tigera.io/serviceSelector"],
            "new"
        );
        assert_eq!(merged["metadata"]["uid"], "u1");
        assert!(merged.get("subsets").is_none());
        // Idempotent.
        assert_eq!(merge(&merged, &desired), Some(merged.clone()));
    }

    #[test]
    fn strip_ignores_server_fields() {
        let a = json!({"metadata": {"name": "x", "resourceVersion": "5", "uid": "u"}});
        let b = json!({"metadata": {"name": "x"}});
        assert_eq!(strip(&a), strip(&b));
    }

    fn action(desired: Option<Value>) -> Action {
        Action {
            kind: ENDPOINTS,
            namespace: "default".into(),
            name: "fed".into(),
            desired,
        }
    }

    /// Issue 8 item 3: `col/x-y` and `col-x/y` shared `endpoints-col-x-y.json`, so each overwrote
    /// the other's endpoints. Every (kind, namespace, name) now has its own file.
    #[tokio::test]
    async fn file_names_never_collide_across_namespaces() {
        let dir = tempfile::tempdir().unwrap();
        let object = |ns: &str, name: &str, ip: &str| Action {
            kind: ENDPOINTS,
            namespace: ns.into(),
            name: name.into(),
            desired: Some(json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": name, "namespace": ns,
                    "annotations": {"federation.tigera.io/serviceSelector": "all()"}},
                "subsets": [{"addresses": [{"ip": ip}]}]})),
        };
        let pairs = [
            ("col", "x-y", "10.0.0.1"),
            ("col-x", "y", "10.0.0.2"),
            ("c_o", "l", "10.0.0.3"),
            ("c", "o_l", "10.0.0.4"),
        ];
        for (ns, name, ip) in pairs {
            let outcome = apply_one_file(dir.path(), &object(ns, name, ip)).await;
            assert!(matches!(outcome, Ok(Outcome::Written)), "{ns}/{name}");
        }
        for (ns, name, ip) in pairs {
            let path = generated_file(dir.path(), &object(ns, name, ip)).unwrap();
            let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            assert_eq!(v["metadata"]["namespace"], ns);
            assert_eq!(v["metadata"]["name"], name);
            assert_eq!(
                v["subsets"][0]["addresses"][0]["ip"],
                ip,
                "{}",
                path.display()
            );
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), pairs.len());
        assert_eq!(file_name_part("my-app.v1"), "my-app.v1");
        assert_eq!(file_name_part("A_b c"), "%41%5Fb%20c");
    }

    /// Files named as before (ambiguous) are removed at start when they are ours, and only then.
    #[tokio::test]
    async fn legacy_file_names_are_removed_when_managed() {
        let dir = tempfile::tempdir().unwrap();
        let managed = r#"{"kind":"Endpoints","metadata":{"name":"a","namespace":"b","annotations":{"federation.tigera.io/serviceSelector":"all()"}}}"#;
        let unmanaged = r#"{"kind":"Endpoints","metadata":{"name":"c","namespace":"d"}}"#;
        std::fs::write(dir.path().join("endpoints-b-a.json"), managed).unwrap();
        std::fs::write(dir.path().join("endpoints-d-c.json"), unmanaged).unwrap();
        std::fs::write(dir.path().join("endpoints_b_a.json"), managed).unwrap();
        assert_eq!(remove_legacy_files(dir.path()).await, Ok(1));
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["endpoints-d-c.json", "endpoints_b_a.json"]);
    }

    /// The file writer: creates, leaves identical content alone, rewrites on change, never
    /// overwrites or removes an unmanaged file, deletes managed files, refuses path-like names.
    #[tokio::test]
    async fn file_writer() {
        let dir = std::env::temp_dir().join(format!(
            "meshsync-federation-file-writer-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let want = |ip: &str| {
            json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "fed", "namespace": "default",
                    "annotations": {"federation.tigera.io/serviceSelector": "run == 'x'"}},
                "subsets": [{"addresses": [{"ip": ip}]}]})
        };
        let path = dir.join("endpoints_default_fed.json");
        let outcome = apply_one_file(&dir, &action(Some(want("1.1.1.1")))).await;
        assert!(matches!(outcome, Ok(Outcome::Written)));
        let first = std::fs::read_to_string(&path).unwrap();
        assert!(
            first.ends_with("}\n") && first.contains("\n  \"subsets\""),
            "{first}"
        );
        let outcome = apply_one_file(&dir, &action(Some(want("1.1.1.1")))).await;
        assert!(matches!(outcome, Ok(Outcome::Unchanged)));
        let outcome = apply_one_file(&dir, &action(Some(want("2.2.2.2")))).await;
        assert!(matches!(outcome, Ok(Outcome::Written)));
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["subsets"][0]["addresses"][0]["ip"], "2.2.2.2");
        let outcome = apply_one_file(&dir, &action(None)).await;
        assert!(matches!(outcome, Ok(Outcome::Deleted)));
        assert!(!path.exists());
        let outcome = apply_one_file(&dir, &action(None)).await;
        assert!(matches!(outcome, Ok(Outcome::Unchanged)));

        let mine = r#"{"kind": "Endpoints", "metadata": {"name": "fed", "namespace": "default"}}"#;
        std::fs::write(&path, mine).unwrap();
        for desired in [Some(want("1.1.1.1")), None] {
            let outcome = apply_one_file(&dir, &action(desired)).await;
            assert!(matches!(outcome, Ok(Outcome::Unmanaged)));
            assert_eq!(std::fs::read_to_string(&path).unwrap(), mine);
        }

        for name in ["../escape", "", ".hidden", "a\\b", "a\0b"] {
            let mut bad = action(Some(want("1.1.1.1")));
            bad.name = name.into();
            assert!(
                matches!(
                    apply_one_file(&dir, &bad).await,
                    Err(ApplyError::BadName(_))
                ),
                "{name:?}"
            );
        }
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["endpoints_default_fed.json"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
