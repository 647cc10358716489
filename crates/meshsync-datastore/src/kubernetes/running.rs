//! The connected phase of the Kubernetes source: every watcher merged into one loop.
//!
//! The watchers do the Kubernetes part (paged or streaming initial list, bookmarks, `410 Gone` →
//! relist, resuming a broken watch at its resourceVersion, with our jittered backoff between
//! failed attempts). This loop does the meshsync part: it converts each object to the keys it
//! stands for ([`super::convert`]), keeps per watch which keys each object produced
//! ([`super::watched`]) so relists and changed conversions send only real differences, sends the
//! first listing of every watch as one `ResyncStart` … `ResyncDone`, and turns watcher errors
//! into the cluster's status ([`super::errors`], [`super::probe`]). It lasts until the receiver
//! goes away or the access (kubeconfig, certificates) changes, which reconnects.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use kube::api::{Api, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use meshsync_model::{jittered_backoff, kinds};
use serde_json::Value;
use tokio::sync::watch;
use tokio_stream::StreamMap;
use tracing::{info, warn};

use super::convert::{Converted, Delivery, builtin_value, convert, object_id};
use super::errors::{is_gone, refuses_streaming, watcher_message};
use super::profile::{DEFAULT_ALLOW_PROFILE, default_allow_profile};
use super::resources::{Conversion, WatchedResource, api_resource};
use super::secrets::SecretName;
use super::source::{InitialList, KubeSource};
use super::watched::{ObjectId, Target, Watched};
use crate::validate::validate_value;
use crate::{ClusterName, ResourceKey, Revision, SourceEvent, SourceStatus};

pub(super) use crate::common::Closed;

type EventStream = Pin<Box<dyn Stream<Item = Result<Event<DynamicObject>, watcher::Error>> + Send>>;

/// See the module documentation.
pub(super) struct Running<'a> {
    pub(super) source: &'a mut KubeSource,
    client: kube::Client,
    pub(super) streams: StreamMap<usize, EventStream>,
    pub(super) watched: BTreeMap<usize, Watched>,
    next_id: usize,
    /// The Secrets the consumer wants ([`super::SecretWatches`]), and the stream of each.
    pub(super) secret_watches: watch::Receiver<BTreeSet<SecretName>>,
    pub(super) secret_streams: BTreeMap<SecretName, usize>,
    synced: bool,
    /// The server refused a streaming list: new watches list in pages.
    streaming_refused: bool,
    /// [`KubeAccess::fingerprint`](super::KubeAccess::fingerprint) when connected.
    fingerprint: Option<u64>,
    /// Objects whose conversion failed, logged once per object and reason.
    logged_errors: HashSet<(usize, String, String)>,
}

impl<'a> Running<'a> {
    pub(super) fn new(
        source: &'a mut KubeSource,
        client: kube::Client,
        resources: Vec<WatchedResource>,
        fingerprint: Option<u64>,
    ) -> Self {
        let mut secret_watches = source.config.secrets.subscribe();
        let secrets = secret_watches.borrow_and_update().clone();
        let mut running = Running {
            source,
            client,
            streams: StreamMap::new(),
            watched: BTreeMap::new(),
            next_id: 0,
            secret_watches,
            secret_streams: BTreeMap::new(),
            synced: false,
            streaming_refused: false,
            fingerprint,
            logged_errors: HashSet::new(),
        };
        for resource in resources {
            running.add(Target::Resource(resource));
        }
        // Part of the first listing: a relist finds the Secrets wanted before it, too.
        for (namespace, name) in secrets {
            let id = running.add(Target::Secret {
                namespace: namespace.clone(),
                name: name.clone(),
            });
            running.secret_streams.insert((namespace, name), id);
        }
        running
    }

    pub(super) fn cluster(&self) -> ClusterName {
        self.source.config.common.cluster.clone()
    }

    /// Starts watching `target`.
    pub(super) fn add(&mut self, target: Target) -> usize {
        let id = self.next_id;
        self.next_id += 1;
        let streaming = self.source.config.initial_list == InitialList::Auto
            && !self.streaming_refused
            && matches!(target, Target::Resource(_));
        let stream = self.stream(&target, streaming);
        self.streams.insert(id, stream);
        self.watched.insert(id, Watched::new(target, streaming));
        id
    }

    pub(super) fn api(&self, target: &Target) -> Api<DynamicObject> {
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
            min: self.source.config.common.backoff.min,
            max: self.source.config.common.backoff.max,
            attempt: 0,
        };
        Box::pin(watcher::watcher(api, config).backoff(backoff))
    }

    pub(super) async fn run(&mut self) -> Result<(), Closed> {
        self.source
            .tx
            .set_status(SourceStatus::ResyncInProgress)
            .await?;
        self.source
            .tx
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
                            Ok(()) = self.secret_watches.changed() => {
                                self.update_secret_watches().await?
                            }
                            _ = probe.tick() => {}
                        }
                    }
                },
                Ok(()) = self.secret_watches.changed() => self.update_secret_watches().await?,
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
                w.produced.begin_relist();
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
                    let count = self
                        .watched
                        .get_mut(&id)
                        .and_then(|w| w.produced.listed(oid));
                    if let Some(n) = count.filter(|n| n % 10_000 == 0) {
                        info!(cluster = %self.cluster(), resource = %self.label(id), listed = n,
                            "listing");
                    }
                }
                self.apply(id, &object, Delivery::Listed).await?;
            }
            Event::InitDone => self.init_done(id).await?,
            Event::Apply(object) => self.apply(id, &to_json(&object), Delivery::Watched).await?,
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
            w.produced.replace(oid.clone(), vec![key.clone()]);
            w.produced.listed(oid);
        }
        let value = Bytes::from(default_allow_profile().to_string());
        self.source
            .tx
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
        let (listed, gone) = w.produced.end_relist();
        let first = !w.initial_done;
        w.initial_done = true;
        let took = w.listed_since.take().map(|t| t.elapsed());
        info!(cluster = %cluster, resource = %label, objects = listed, removed = gone.len(),
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
    pub(super) async fn check_synced(&mut self) -> Result<(), Closed> {
        if self.synced || !self.watched.values().all(|w| w.initial_done) {
            return Ok(());
        }
        self.synced = true;
        self.source
            .tx
            .send(SourceEvent::ResyncDone {
                cluster: self.cluster(),
            })
            .await?;
        self.update_status().await
    }

    pub(super) async fn update_status(&mut self) -> Result<(), Closed> {
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
        self.source.tx.set_status(status).await
    }

    /// Converts and sends one object; deletes the keys it no longer produces.
    async fn apply(&mut self, id: usize, object: &Value, delivery: Delivery) -> Result<(), Closed> {
        let Some(oid) = object_id(object) else {
            return Ok(());
        };
        let Some(target) = self.watched.get(&id).map(|w| Arc::clone(&w.target)) else {
            return Ok(());
        };
        let revision = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let converted = match &*target {
            Target::Resource(r) => {
                convert(r, object, &self.source.config.convert, delivery).map_err(|e| e.to_string())
            }
            Target::Secret { .. } => Ok(vec![Converted {
                kind: kinds::SECRET,
                namespace: oid.0.clone(),
                name: oid.1.clone(),
                value: builtin_value(kinds::SECRET, "v1", object),
                revision: revision.clone(),
            }]),
        };
        let upserts = match converted {
            Ok(list) => self.validated(id, &oid, list),
            Err(reason) => {
                self.invalid(id, &oid, &reason);
                Vec::new()
            }
        };
        let keys = upserts.iter().map(|(key, _, _)| key.clone()).collect();
        let Some(w) = self.watched.get_mut(&id) else {
            return Ok(());
        };
        let stale = w.produced.replace(oid, keys);
        for (key, value, revision) in upserts {
            self.source
                .tx
                .send(SourceEvent::Upsert {
                    key,
                    value,
                    revision,
                })
                .await?;
        }
        for key in stale {
            self.source
                .tx
                .send(SourceEvent::Delete {
                    key,
                    revision: revision.as_str().into(),
                })
                .await?;
        }
        Ok(())
    }

    /// The converted resources of one object that are wanted and within the value limits.
    fn validated(
        &mut self,
        id: usize,
        oid: &ObjectId,
        converted: Vec<Converted>,
    ) -> Vec<(ResourceKey, Bytes, Revision)> {
        let limits = self.source.config.common.limits;
        let cluster = self.cluster();
        let mut out = Vec::new();
        for c in converted {
            if !self.wanted(c.kind) {
                continue;
            }
            let key = ResourceKey::new(&cluster, c.kind, &c.namespace, &c.name);
            let bytes = Bytes::from(c.value.to_string());
            if let Err(e) = validate_value(&key, &bytes, &limits) {
                self.invalid(id, oid, &e.to_string());
                continue;
            }
            out.push((key, bytes, c.revision.into()));
        }
        out
    }

    /// An object is gone: delete every key it produced.
    async fn forget(&mut self, id: usize, oid: &ObjectId, revision: &str) -> Result<(), Closed> {
        let keys = self
            .watched
            .get_mut(&id)
            .map(|w| w.produced.remove(oid))
            .unwrap_or_default();
        for key in keys {
            self.source
                .tx
                .send(SourceEvent::Delete {
                    key,
                    revision: revision.into(),
                })
                .await?;
        }
        Ok(())
    }

    fn invalid(&mut self, id: usize, oid: &ObjectId, reason: &str) {
        self.source.config.common.counters.count_invalid_value();
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
            .common
            .kinds
            .as_ref()
            .is_none_or(|k| k.contains(kind))
    }

    pub(super) fn label(&self, id: usize) -> String {
        match self.watched.get(&id).map(|w| &*w.target) {
            Some(Target::Resource(r)) => r.name(),
            Some(Target::Secret { namespace, name }) => format!("secret {namespace}/{name}"),
            None => format!("watch {id}"),
        }
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
            if !self.streaming_refused {
                self.streaming_refused = true;
                info!(cluster = %cluster, resource = %label, error = %message,
                    "the API server does not offer streaming lists; listing in pages");
            }
            self.list_pending_in_pages();
            return Ok(());
        }
        // A watch too old for the server's history (`410 Gone`): the watcher relists, and the
        // relist sends only the differences. Routine, not a failure.
        if is_gone(&error) {
            self.source.config.common.counters.count_expired_relist();
            info!(cluster = %cluster, resource = %label, error = %message,
                "watch history expired; relisting");
            return Ok(());
        }
        if matches!(*w.target, Target::Secret { .. }) {
            return self.secret_unreadable(id, message).await;
        }
        let first = w.failed.is_none();
        w.failed = Some(message.clone());
        if first {
            warn!(cluster = %cluster, resource = %label, error = %message,
                "watch failed; retrying with backoff");
        }
        self.update_status().await
    }

    /// Every watch still waiting for its streaming list lists in pages now, rather than each
    /// waiting for its own refusal (slower for CRDs, seen 1.3 s).
    fn list_pending_in_pages(&mut self) {
        let pending: Vec<(usize, Arc<Target>)> = self
            .watched
            .iter_mut()
            .filter(|(_, w)| w.streaming && !w.initial_done)
            .map(|(id, w)| {
                w.streaming = false;
                (*id, Arc::clone(&w.target))
            })
            .collect();
        for (id, target) in pending {
            let stream = self.stream(&target, false);
            self.streams.insert(id, stream);
        }
    }
}

fn to_json(object: &DynamicObject) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
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
