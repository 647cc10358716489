//! The Kubernetes source task: one client, discovery, then one kube-runtime watcher per API
//! resource, merged into one stream of [`SourceEvent`]s.
//!
//! The watchers do the Kubernetes part (paged or streaming initial list, bookmarks, `410 Gone` →
//! relist, resuming a broken watch at its resourceVersion, with our jittered backoff between
//! failed attempts). This task does the meshsync part, per resource: it remembers which keys each
//! object produced, so a relist of one resource (`Init` … `InitDone`) deletes exactly the keys of
//! the objects it no longer lists (the cache drops the unchanged upserts: agents see only the real
//! differences), and an object whose conversion changes the keys it stands for deletes the old
//! ones. The first listing of every resource is one `ResyncStart` … `ResyncDone`, then `InSync`.
//!
//! **Status.** A watcher's error makes the cluster `ConnectionFailed` with the API's own message
//! (`pods is forbidden: User … cannot watch …`). A watcher does not say when it works again (a
//! resumed watch emits nothing until something changes), so while any resource is failed the task
//! probes each failed one every [`KubeSourceConfig::probe_interval`] with what its watcher needs (a
//! one-item LIST and a WATCH start); when every failed resource passes, the cluster is `InSync`
//! again (or still `ResyncInProgress` if a first listing is missing).
//!
//! **Secrets** are watched by name (one watcher with a `metadata.name` field selector per Secret an
//! RCC names): meshsync never lists the cluster's secrets. A Secret that cannot be read (RBAC) is
//! reported to the mesh as a Secret value carrying the API's error
//! ([`UNREADABLE_SECRET_FIELD`]), so the RCC that needs it is `ConfigIncomplete` with that message;
//! Secrets stop at the mesh and never reach agents.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use kube::api::{Api, DynamicObject, ListParams, WatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use meshsync_model::{error_chain, jittered_backoff, kinds};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::StreamMap;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, info, warn};

use super::access::KubeAccess;
use super::convert::{ConvertOptions, convert, object_id};
use super::profile::{DEFAULT_ALLOW_PROFILE, default_allow_profile};
use super::resources::{
    CalicoMode, Conversion, Served, WatchedResource, api_resource, discovery_group_versions, plan,
};
use crate::validate::{ValueLimits, validate_value};
use crate::{ClusterName, ResourceKey, SourceCounters, SourceEvent, SourceStatus};

/// The field of a Secret value that says the Secret could not be read, and why.
pub const UNREADABLE_SECRET_FIELD: &str = "meshsyncReadError";

/// How a watcher lists before it watches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InitialList {
    /// The streaming list (`sendInitialEvents`) where the server offers it, else paged.
    #[default]
    Auto,
    /// Always the paged LIST.
    Paged,
}

/// Configuration of a Kubernetes source.
#[derive(Clone, Debug)]
pub struct KubeSourceConfig {
    pub access: KubeAccess,
    pub cluster: ClusterName,
    /// Only these kinds are watched and emitted (`None`: every kind).
    pub kinds: Option<HashSet<String>>,
    pub max_value_bytes: usize,
    pub max_value_depth: usize,
    /// Objects per LIST page.
    pub page_size: u32,
    pub initial_list: InitialList,
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// How often failed resources are probed.
    pub probe_interval: Duration,
    pub convert: ConvertOptions,
    pub counters: Arc<SourceCounters>,
}

impl KubeSourceConfig {
    pub fn new(access: KubeAccess, cluster: ClusterName) -> Self {
        KubeSourceConfig {
            access,
            cluster,
            kinds: None,
            max_value_bytes: crate::validate::DEFAULT_MAX_VALUE_BYTES,
            max_value_depth: crate::validate::DEFAULT_MAX_DEPTH,
            page_size: 500,
            initial_list: InitialList::Auto,
            retry_min: Duration::from_millis(500),
            retry_max: Duration::from_secs(10),
            probe_interval: Duration::from_secs(2),
            convert: ConvertOptions::default(),
            counters: Arc::default(),
        }
    }
}

/// Starts the source task and returns its event stream; the task ends when the stream is dropped.
pub fn watch(config: KubeSourceConfig) -> ReceiverStream<SourceEvent> {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        let mut source = KubeSource {
            config,
            tx,
            status: None,
        };
        let _ = source.run().await;
        debug!(cluster = %source.config.cluster, "kubernetes source stopped");
    });
    ReceiverStream::new(rx)
}

/// The receiver went away: stop.
struct Closed;

type EventStream = Pin<Box<dyn Stream<Item = Result<Event<DynamicObject>, watcher::Error>> + Send>>;

/// Where the source is (kube-runtime's `watcher::State` style).
enum Phase {
    /// No client yet: build one and discover what the server serves.
    Connecting { attempt: u32 },
    /// Discovered: watch.
    Running {
        client: kube::Client,
        resources: Vec<WatchedResource>,
    },
    /// Building the client or discovery failed: report, back off, try again.
    Failed { reason: String, attempt: u32 },
}

struct KubeSource {
    config: KubeSourceConfig,
    tx: mpsc::Sender<SourceEvent>,
    status: Option<SourceStatus>,
}

impl KubeSource {
    async fn run(&mut self) -> Result<(), Closed> {
        self.set_status(SourceStatus::Connecting).await?;
        let mut phase = Phase::Connecting { attempt: 0 };
        loop {
            phase = match phase {
                Phase::Connecting { attempt } => match self.connect().await {
                    Ok((client, resources)) => Phase::Running { client, resources },
                    Err(reason) => Phase::Failed { reason, attempt },
                },
                Phase::Running { client, resources } => {
                    let fingerprint = self.config.access.fingerprint();
                    let mut running = Running::new(self, client, resources, fingerprint);
                    running.run().await?;
                    // The kubeconfig (or a certificate) changed: connect anew; the relist sends
                    // agents only the differences.
                    Phase::Connecting { attempt: 0 }
                }
                Phase::Failed { reason, attempt } => {
                    warn!(cluster = %self.config.cluster, error = %reason,
                        "cannot reach the Kubernetes API; will retry");
                    self.set_status(SourceStatus::ConnectionFailed(reason))
                        .await?;
                    let delay =
                        jittered_backoff(self.config.retry_min, self.config.retry_max, attempt);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.tx.closed() => return Err(Closed),
                    }
                    Phase::Connecting {
                        attempt: attempt.saturating_add(1),
                    }
                }
            };
        }
    }

    /// Builds the client and finds the resources to watch.
    async fn connect(&self) -> Result<(kube::Client, Vec<WatchedResource>), String> {
        let client = self
            .config
            .access
            .client()
            .await
            .map_err(|e| e.to_string())?;
        let mut served = Served::new();
        for gv in discovery_group_versions() {
            let listed = if gv == "v1" {
                client.list_core_api_resources("v1").await
            } else {
                client.list_api_group_resources(&gv).await
            };
            match listed {
                Ok(list) => {
                    let resources = list
                        .resources
                        .into_iter()
                        .filter(|r| !r.name.contains('/'))
                        .map(|r| (r.name, r.namespaced))
                        .collect();
                    served.insert(gv, resources);
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(format!("discovery of {gv} failed: {}", api_message(&e))),
            }
        }
        let (mode, resources, missing) = plan(&served, self.config.kinds.as_ref());
        let names: Vec<String> = resources.iter().map(WatchedResource::name).collect();
        info!(cluster = %self.config.cluster, calico_crds = ?mode, watches = names.len(),
            resources = ?names, "connected to the Kubernetes API");
        if mode == CalicoMode::None {
            warn!(cluster = %self.config.cluster,
                "no Calico CRDs are served (neither crd.projectcalico.org/v1 nor projectcalico.org/v3); only the kinds derived from core objects are synced");
        }
        if !missing.is_empty() {
            debug!(cluster = %self.config.cluster, kinds = ?missing, "kinds this cluster does not serve");
        }
        Ok((client, resources))
    }

    async fn send(&self, event: SourceEvent) -> Result<(), Closed> {
        self.tx.send(event).await.map_err(|_| Closed)
    }

    async fn set_status(&mut self, status: SourceStatus) -> Result<(), Closed> {
        if self.status.as_ref() == Some(&status) {
            return Ok(());
        }
        self.status = Some(status.clone());
        self.send(SourceEvent::Status {
            cluster: self.config.cluster.clone(),
            status,
        })
        .await
    }
}

/// What one watched stream is for.
enum Target {
    Resource(WatchedResource),
    /// One Secret, watched by name.
    Secret {
        namespace: String,
        name: String,
    },
}

/// One watched stream's bookkeeping.
struct Watched {
    /// Shared, so the per-object path takes it without copying the resource's names.
    target: Arc<Target>,
    /// Per object (namespace, name): the keys it produced, as last sent.
    produced: HashMap<(String, String), Vec<ResourceKey>>,
    /// During a relist: the objects listed so far.
    relisting: Option<HashSet<(String, String)>>,
    listed_since: Option<Instant>,
    /// The first listing is complete (or, for a Secret, failed: it does not hold the sync).
    initial_done: bool,
    /// The last error, while the stream is failing.
    failed: Option<String>,
    /// The stream runs a streaming list (falls back to paged if the server refuses it).
    streaming: bool,
}

/// The running phase: every watcher, merged.
struct Running<'a> {
    source: &'a mut KubeSource,
    client: kube::Client,
    streams: StreamMap<usize, EventStream>,
    watched: BTreeMap<usize, Watched>,
    next_id: usize,
    /// RCC name → the Secret it names; Secret → its stream.
    rcc_secrets: BTreeMap<String, (String, String)>,
    secret_streams: BTreeMap<(String, String), usize>,
    synced: bool,
    /// The server refused a streaming list: new watches list in pages.
    streaming_refused: bool,
    /// [`KubeAccess::fingerprint`] when connected.
    fingerprint: Option<u64>,
    /// Objects whose conversion failed, logged once per object and reason.
    logged_errors: HashSet<(usize, String, String)>,
}

impl<'a> Running<'a> {
    fn new(
        source: &'a mut KubeSource,
        client: kube::Client,
        resources: Vec<WatchedResource>,
        fingerprint: Option<u64>,
    ) -> Self {
        let mut running = Running {
            source,
            client,
            streams: StreamMap::new(),
            watched: BTreeMap::new(),
            next_id: 0,
            rcc_secrets: BTreeMap::new(),
            secret_streams: BTreeMap::new(),
            synced: false,
            streaming_refused: false,
            fingerprint,
            logged_errors: HashSet::new(),
        };
        for resource in resources {
            running.add(Target::Resource(resource));
        }
        running
    }

    fn cluster(&self) -> ClusterName {
        self.source.config.cluster.clone()
    }

    /// Starts watching `target`.
    fn add(&mut self, target: Target) -> usize {
        let id = self.next_id;
        self.next_id += 1;
        let streaming = self.source.config.initial_list == InitialList::Auto
            && !self.streaming_refused
            && matches!(target, Target::Resource(_));
        let stream = self.stream(&target, streaming);
        self.streams.insert(id, stream);
        self.watched.insert(
            id,
            Watched {
                target: Arc::new(target),
                produced: HashMap::new(),
                relisting: None,
                listed_since: None,
                initial_done: false,
                failed: None,
                streaming,
            },
        );
        id
    }

    fn api(&self, target: &Target) -> Api<DynamicObject> {
        match target {
            Target::Resource(r) => Api::all_with(self.client.clone(), &r.api),
            Target::Secret { namespace, .. } => Api::namespaced_with(
                self.client.clone(),
                namespace,
                &api_resource("v1", "secrets", "Secret"),
            ),
        }
    }

    fn stream(&self, target: &Target, streaming: bool) -> EventStream {
        let api = self.api(target);
        let mut config = watcher::Config::default().page_size(self.source.config.page_size);
        if streaming {
            config = config.streaming_lists();
        }
        if let Target::Secret { name, .. } = target {
            config = config.fields(&format!("metadata.name={name}"));
        }
        let backoff = JitteredBackoff {
            min: self.source.config.retry_min,
            max: self.source.config.retry_max,
            attempt: 0,
        };
        Box::pin(watcher::watcher(api, config).backoff(backoff))
    }

    async fn run(&mut self) -> Result<(), Closed> {
        self.source
            .set_status(SourceStatus::ResyncInProgress)
            .await?;
        self.source
            .send(SourceEvent::ResyncStart {
                cluster: self.cluster(),
            })
            .await?;
        let mut probe = tokio::time::interval(self.source.config.probe_interval);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                item = self.streams.next() => match item {
                    Some((id, Ok(event))) => self.on_event(id, event).await?,
                    Some((id, Err(error))) => self.on_error(id, error).await?,
                    // Every watcher is endless; an empty map means nothing to watch at all.
                    None => {
                        self.check_synced().await?;
                        tokio::select! {
                            _ = self.source.tx.closed() => return Err(Closed),
                            _ = probe.tick() => {}
                        }
                    }
                },
                _ = probe.tick() => {
                    if self.access_changed() {
                        return Ok(());
                    }
                    self.probe_failed().await?
                }
                _ = self.source.tx.closed() => return Err(Closed),
            }
        }
    }

    fn access_changed(&self) -> bool {
        if self.fingerprint.is_none() {
            return false;
        }
        let now = self.source.config.access.fingerprint();
        if now != self.fingerprint {
            info!(cluster = %self.cluster(), access = ?self.source.config.access,
                "the kubeconfig or a certificate file changed; reconnecting");
            return true;
        }
        false
    }

    async fn on_event(&mut self, id: usize, event: Event<DynamicObject>) -> Result<(), Closed> {
        if let Some(w) = self.watched.get_mut(&id)
            && w.failed.take().is_some()
        {
            let recovered = self.watched.values().all(|w| w.failed.is_none());
            if recovered {
                self.update_status().await?;
            }
        }
        match event {
            Event::Init => {
                let Some(w) = self.watched.get_mut(&id) else {
                    return Ok(());
                };
                w.relisting = Some(HashSet::new());
                w.listed_since = Some(Instant::now());
                if let Target::Resource(r) = &*w.target
                    && r.conversion == Conversion::Namespace
                {
                    self.default_allow(id).await?;
                }
            }
            Event::InitApply(object) => {
                let object = to_json(&object);
                if let Some(oid) = object_id(&object) {
                    let count = self.watched.get_mut(&id).and_then(|w| {
                        let set = w.relisting.as_mut()?;
                        set.insert(oid.clone());
                        Some(set.len())
                    });
                    if let Some(n) = count.filter(|n| n % 10_000 == 0) {
                        info!(cluster = %self.cluster(), resource = %self.label(id), listed = n,
                            "listing");
                    }
                }
                self.apply(id, &object).await?;
            }
            Event::InitDone => self.init_done(id).await?,
            Event::Apply(object) => self.apply(id, &to_json(&object)).await?,
            Event::Delete(object) => {
                if let Some(oid) = object_id(&to_json(&object)) {
                    let revision = object.metadata.resource_version.clone().unwrap_or_default();
                    self.forget(id, &oid, &revision).await?;
                }
            }
        }
        Ok(())
    }

    /// The synthetic `projectcalico-default-allow` Profile, listed with the namespaces.
    async fn default_allow(&mut self, id: usize) -> Result<(), Closed> {
        let oid = (String::new(), format!("\0{DEFAULT_ALLOW_PROFILE}"));
        let key = ResourceKey::new(&self.cluster(), kinds::PROFILE, "", DEFAULT_ALLOW_PROFILE);
        if let Some(w) = self.watched.get_mut(&id) {
            w.produced.insert(oid.clone(), vec![key.clone()]);
            if let Some(set) = w.relisting.as_mut() {
                set.insert(oid);
            }
        }
        let value = Bytes::from(default_allow_profile().to_string());
        self.source
            .send(SourceEvent::Upsert {
                key,
                value,
                revision: "".into(),
            })
            .await
    }

    async fn init_done(&mut self, id: usize) -> Result<(), Closed> {
        let cluster = self.cluster();
        let label = self.label(id);
        let Some(w) = self.watched.get_mut(&id) else {
            return Ok(());
        };
        let listed = w.relisting.take().unwrap_or_default();
        let gone: Vec<(String, String)> = w
            .produced
            .keys()
            .filter(|oid| !listed.contains(*oid))
            .cloned()
            .collect();
        let first = !w.initial_done;
        w.initial_done = true;
        let took = w.listed_since.take().map(|t| t.elapsed());
        info!(cluster = %cluster, resource = %label, objects = listed.len(), removed = gone.len(),
            took = ?took.unwrap_or_default(), first, "listing complete");
        for oid in gone {
            self.forget(id, &oid, "").await?;
        }
        if first {
            self.check_synced().await?;
        }
        Ok(())
    }

    /// Sends `ResyncDone` and `InSync` once every first listing is complete.
    async fn check_synced(&mut self) -> Result<(), Closed> {
        if self.synced || !self.watched.values().all(|w| w.initial_done) {
            return Ok(());
        }
        self.synced = true;
        self.source
            .send(SourceEvent::ResyncDone {
                cluster: self.cluster(),
            })
            .await?;
        self.update_status().await
    }

    async fn update_status(&mut self) -> Result<(), Closed> {
        let failed = self
            .watched
            .iter()
            .filter(|(_, w)| matches!(*w.target, Target::Resource(_)))
            .find_map(|(id, w)| w.failed.as_ref().map(|e| (*id, e.clone())));
        let status = match failed {
            Some((id, error)) => {
                SourceStatus::ConnectionFailed(format!("{}: {error}", self.label(id)))
            }
            None if self.synced => SourceStatus::InSync,
            None => SourceStatus::ResyncInProgress,
        };
        self.source.set_status(status).await
    }

    /// Converts and sends one object; deletes the keys it no longer produces.
    async fn apply(&mut self, id: usize, object: &Value) -> Result<(), Closed> {
        let Some(oid) = object_id(object) else {
            return Ok(());
        };
        let Some(target) = self.watched.get(&id).map(|w| Arc::clone(&w.target)) else {
            return Ok(());
        };
        let cluster = self.cluster();
        let revision = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let converted = match &*target {
            Target::Resource(r) => {
                if r.conversion
                    == (Conversion::CalicoV1 {
                        kind: kinds::REMOTE_CLUSTER_CONFIGURATION,
                    })
                    || r.conversion
                        == (Conversion::CalicoV3 {
                            kind: kinds::REMOTE_CLUSTER_CONFIGURATION,
                        })
                {
                    self.rcc_seen(&oid.1, object);
                }
                convert(r, object, &self.source.config.convert).map_err(|e| e.to_string())
            }
            Target::Secret { .. } => Ok(vec![super::convert::Converted {
                kind: kinds::SECRET,
                namespace: oid.0.clone(),
                name: oid.1.clone(),
                value: super::convert::builtin_value(kinds::SECRET, "v1", object),
                revision: revision.clone(),
            }]),
        };
        let mut keys = Vec::new();
        let mut events = Vec::new();
        match converted {
            Ok(list) => {
                let limits = ValueLimits {
                    max_bytes: self.source.config.max_value_bytes,
                    max_depth: self.source.config.max_value_depth,
                };
                for c in list {
                    if !self.wanted(c.kind) {
                        continue;
                    }
                    let key = ResourceKey::new(&cluster, c.kind, &c.namespace, &c.name);
                    let bytes = Bytes::from(c.value.to_string());
                    if let Err(e) = validate_value(&key, &bytes, &limits) {
                        self.invalid(id, &oid, &e.to_string());
                        continue;
                    }
                    keys.push(key.clone());
                    events.push(SourceEvent::Upsert {
                        key,
                        value: bytes,
                        revision: c.revision.into(),
                    });
                }
            }
            Err(reason) => self.invalid(id, &oid, &reason),
        }
        let Some(w) = self.watched.get_mut(&id) else {
            return Ok(());
        };
        let old = w
            .produced
            .insert(oid.clone(), keys.clone())
            .unwrap_or_default();
        for key in old.into_iter().filter(|k| !keys.contains(k)) {
            events.push(SourceEvent::Delete {
                key,
                revision: revision.clone().into(),
            });
        }
        if keys.is_empty() {
            w.produced.remove(&oid);
        }
        for event in events {
            self.source.send(event).await?;
        }
        self.update_secret_watches().await
    }

    /// An object is gone: delete every key it produced.
    async fn forget(
        &mut self,
        id: usize,
        oid: &(String, String),
        revision: &str,
    ) -> Result<(), Closed> {
        let keys = self
            .watched
            .get_mut(&id)
            .and_then(|w| w.produced.remove(oid))
            .unwrap_or_default();
        if let Some(Target::Resource(r)) = self.watched.get(&id).map(|w| &*w.target)
            && matches!(r.conversion, Conversion::CalicoV1 { kind } | Conversion::CalicoV3 { kind } if kind == kinds::REMOTE_CLUSTER_CONFIGURATION)
        {
            self.rcc_secrets.remove(&oid.1);
        }
        for key in keys {
            self.source
                .send(SourceEvent::Delete {
                    key,
                    revision: revision.into(),
                })
                .await?;
        }
        self.update_secret_watches().await
    }

    fn invalid(&mut self, id: usize, oid: &(String, String), reason: &str) {
        self.source.config.counters.count_invalid_value();
        if self.logged_errors.len() < 1000
            && self
                .logged_errors
                .insert((id, format!("{}/{}", oid.0, oid.1), reason.to_string()))
        {
            warn!(cluster = %self.cluster(), resource = %self.label(id), namespace = %oid.0,
                name = %oid.1, reason, "cannot convert object; it is not served (deleted at the agents)");
        }
    }

    fn wanted(&self, kind: &str) -> bool {
        self.source
            .config
            .kinds
            .as_ref()
            .is_none_or(|k| k.contains(kind))
    }

    fn label(&self, id: usize) -> String {
        match self.watched.get(&id).map(|w| &*w.target) {
            Some(Target::Resource(r)) => r.name(),
            Some(Target::Secret { namespace, name }) => format!("secret {namespace}/{name}"),
            None => format!("watch {id}"),
        }
    }

    /// Notes the Secret an RCC names (the watches follow in `update_secret_watches`).
    fn rcc_seen(&mut self, rcc: &str, object: &Value) {
        let reference = object.pointer("/spec/clusterAccessSecret");
        let field = |f: &str| {
            reference
                .and_then(|r| r.get(f))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (namespace, name) = (field("namespace"), field("name"));
        if namespace.is_empty() || name.is_empty() {
            self.rcc_secrets.remove(rcc);
        } else {
            self.rcc_secrets.insert(rcc.to_string(), (namespace, name));
        }
    }

    /// Starts a watch for every Secret an RCC names and stops those no RCC names any more.
    async fn update_secret_watches(&mut self) -> Result<(), Closed> {
        let wanted: HashSet<(String, String)> = self.rcc_secrets.values().cloned().collect();
        let stale: Vec<(String, String)> = self
            .secret_streams
            .keys()
            .filter(|s| !wanted.contains(*s))
            .cloned()
            .collect();
        for secret in stale {
            if let Some(id) = self.secret_streams.remove(&secret) {
                self.streams.remove(&id);
                if let Some(w) = self.watched.remove(&id) {
                    for key in w.produced.into_values().flatten() {
                        self.source
                            .send(SourceEvent::Delete {
                                key,
                                revision: "".into(),
                            })
                            .await?;
                    }
                }
                debug!(cluster = %self.cluster(), namespace = %secret.0, name = %secret.1,
                    "no RemoteClusterConfiguration names this Secret any more; stopped watching it");
            }
        }
        for secret in wanted {
            if self.secret_streams.contains_key(&secret) {
                continue;
            }
            let (namespace, name) = secret.clone();
            info!(cluster = %self.cluster(), namespace = %namespace, name = %name,
                "watching the Secret a RemoteClusterConfiguration names");
            let id = self.add(Target::Secret { namespace, name });
            self.secret_streams.insert(secret, id);
        }
        Ok(())
    }

    async fn on_error(&mut self, id: usize, error: watcher::Error) -> Result<(), Closed> {
        let message = watcher_message(&error);
        let cluster = self.cluster();
        let label = self.label(id);
        let Some(w) = self.watched.get_mut(&id) else {
            return Ok(());
        };
        // A server without streaming lists refuses `sendInitialEvents`: list in pages instead.
        if w.streaming && !w.initial_done && refuses_streaming(&error) {
            w.streaming = false;
            let target_of_failed = Arc::clone(&w.target);
            if !self.streaming_refused {
                self.streaming_refused = true;
                info!(cluster = %cluster, resource = %label, error = %message,
                    "the API server does not offer streaming lists; listing in pages");
            }
            // Every watch still waiting for its streaming list lists in pages now, rather than
            // each waiting for its own refusal (slower for CRDs, seen 1.3 s).
            let pending: Vec<(usize, Arc<Target>)> = self
                .watched
                .iter_mut()
                .filter(|(_, w)| w.streaming && !w.initial_done)
                .map(|(other, w)| {
                    w.streaming = false;
                    (*other, Arc::clone(&w.target))
                })
                .chain(std::iter::once((id, target_of_failed)))
                .collect();
            for (other, target) in pending {
                let stream = self.stream(&target, false);
                self.streams.insert(other, stream);
            }
            return Ok(());
        }
        // A watch too old for the server's history (`410 Gone`): the watcher relists, and the
        // relist sends only the differences. Routine, not a failure.
        if is_gone(&error) {
            self.source.config.counters.count_expired_relist();
            info!(cluster = %cluster, resource = %label, error = %message,
                "watch history expired; relisting");
            return Ok(());
        }
        let first = w.failed.is_none();
        w.failed = Some(message.clone());
        if let Target::Secret { namespace, name } = &*w.target {
            // The RCC that needs it says why; the source itself is fine.
            let (namespace, name) = (namespace.clone(), name.clone());
            w.initial_done = true;
            if first {
                warn!(cluster = %cluster, namespace = %namespace, name = %name, error = %message,
                    "cannot read the Secret a RemoteClusterConfiguration names");
            }
            let key = ResourceKey::new(&cluster, kinds::SECRET, &namespace, &name);
            let value = json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace},
                UNREADABLE_SECRET_FIELD: message});
            w.produced.insert((namespace, name), vec![key.clone()]);
            self.source
                .send(SourceEvent::Upsert {
                    key,
                    value: Bytes::from(value.to_string()),
                    revision: "".into(),
                })
                .await?;
            return self.check_synced().await;
        }
        if first {
            warn!(cluster = %cluster, resource = %label, error = %message,
                "watch failed; retrying with backoff");
        }
        self.update_status().await
    }

    /// Probes every failed resource; the ones that pass are no longer failed.
    async fn probe_failed(&mut self) -> Result<(), Closed> {
        let failed: Vec<usize> = self
            .watched
            .iter()
            .filter(|(_, w)| w.failed.is_some() && matches!(*w.target, Target::Resource(_)))
            .map(|(id, _)| *id)
            .collect();
        if failed.is_empty() {
            return Ok(());
        }
        let mut changed = false;
        for id in failed {
            let Some(target) = self.watched.get(&id).map(|w| Arc::clone(&w.target)) else {
                continue;
            };
            let api = self.api(&target);
            let ok = tokio::time::timeout(Duration::from_secs(5), probe(&api))
                .await
                .unwrap_or(false);
            if ok && let Some(w) = self.watched.get_mut(&id) {
                w.failed = None;
                changed = true;
                info!(cluster = %self.cluster(), resource = %self.label(id), "the API answers again");
            }
        }
        if changed {
            self.update_status().await?;
        }
        Ok(())
    }
}

/// True if the API lets us list and watch through `api` (what a watcher needs).
async fn probe(api: &Api<DynamicObject>) -> bool {
    if api
        .list_metadata(&ListParams::default().limit(1))
        .await
        .is_err()
    {
        return false;
    }
    api.watch_metadata(&WatchParams::default().timeout(1), "0")
        .await
        .is_ok()
}

fn to_json(object: &DynamicObject) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

/// The API's own message for an error (`pods is forbidden: …`), else the error chain.
pub fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            let mut text = status.message.clone();
            if status.code != 0 {
                text.push_str(&format!(" ({} {})", status.code, status.reason));
            }
            text
        }
        other => error_chain(other),
    }
}

fn watcher_message(error: &watcher::Error) -> String {
    match error {
        watcher::Error::InitialListFailed(e) => format!("list failed: {}", api_message(e)),
        watcher::Error::WatchStartFailed(e) => format!("watch failed: {}", api_message(e)),
        watcher::Error::WatchFailed(e) => format!("watch broke: {}", api_message(e)),
        watcher::Error::WatchError(status) => {
            format!(
                "watch error: {} ({} {})",
                status.message, status.code, status.reason
            )
        }
        other => error_chain(other),
    }
}

/// The watch's resourceVersion is older than the server's history (`410 Gone`, "too old resource
/// version"): the watcher relists.
fn is_gone(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::WatchError(s) => s.code == 410,
        watcher::Error::WatchStartFailed(kube::Error::Api(s)) => s.code == 410,
        _ => false,
    }
}

/// The server refused the streaming list: `sendInitialEvents` unknown or forbidden (400/422, the
/// WatchList feature off), or its storage cannot serve one (500 "a watch stream was requested by
/// the client but the required storage feature RequestWatchProgress is disabled", seen with etcd
/// 3.4 under the API server).
fn refuses_streaming(error: &watcher::Error) -> bool {
    let status = match error {
        watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::InitialListFailed(kube::Error::Api(s)) => s.as_ref(),
        watcher::Error::WatchError(s) => s.as_ref(),
        _ => return false,
    };
    matches!(status.code, 400 | 422)
        || status.message.contains("sendInitialEvents")
        || status.message.contains("watch stream was requested")
        || status.message.contains("RequestWatchProgress")
}

/// The backoff between a watcher's failed attempts: the jittered one every part of meshsync uses.
struct JitteredBackoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Iterator for JitteredBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = jittered_backoff(self.min, self.max, self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        Some(delay)
    }
}

impl Backoff for JitteredBackoff {
    fn reset(&mut self) {
        self.attempt = 0;
    }
}
