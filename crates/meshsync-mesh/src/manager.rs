//! The [`RemoteClusterManager`]: consumes RemoteClusterConfigurations and Secrets from the local
//! source, runs one remote source per valid RCC, merges everything into one fair stream, and holds
//! the local in-sync back until the remotes known at that moment are in sync or have failed.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::path::PathBuf;

use futures::{Stream, StreamExt};
use meshsync_datastore::kubernetes::SecretWatches;
use meshsync_model::{ClusterName, LOCAL_CLUSTER, SourceEvent, SourceStatus};
use tokio::time::Instant;
use tokio_stream::StreamMap;
use tracing::{debug, error, info, warn};

use crate::collisions::CollisionGuard;
use crate::error::SecretError;
use crate::rcc::{SecretRef, Secrets};
use crate::remote::{RemoteLimits, SourceStream};
use crate::secret::SecretData;
use crate::state::{LocalGate, Remote};

/// A remote source as the manager holds it: its events, then one `None` when it ends. A source
/// never ends on its own (it retries forever), so that `None` means its task died.
type Supervised = std::pin::Pin<Box<dyn Stream<Item = Option<SourceEvent>> + Send>>;

pub(crate) fn supervised(stream: SourceStream) -> Supervised {
    Box::pin(
        stream
            .map(Some)
            .chain(futures::stream::once(async { None })),
    )
}
/// The RCC kind, consumed here and never forwarded.
pub const RCC_KIND: &str = meshsync_model::kinds::REMOTE_CLUSTER_CONFIGURATION;
/// Secrets are consumed here and never forwarded: node agents have no business with them.
pub const SECRET_KIND: &str = meshsync_model::kinds::SECRET;

/// Settings of the mesh stage.
#[derive(Clone, Debug, Default)]
pub struct MeshConfig {
    /// What identifies the local datastore ([`crate::etcd_identity`], [`crate::file_identity`]):
    /// an RCC pointing at it is refused instead of serving every local endpoint a second time.
    pub local_identities: Vec<String>,
    /// Anchors relative `filePath`s of `datastoreType: file` remotes (the local file datastore's
    /// directory).
    pub base_dir: Option<PathBuf>,
    pub limits: RemoteLimits,
    /// Where the mesh asks the local source for the Secrets its RCCs name: the handle of a local
    /// Kubernetes source ([`KubeSourceConfig::secrets`]), which watches Secrets only by name.
    /// The file and etcd sources list every Secret they hold: for them the default (a handle no
    /// source reads) is right.
    ///
    /// [`KubeSourceConfig::secrets`]: meshsync_datastore::kubernetes::KubeSourceConfig::secrets
    pub local_secrets: SecretWatches,
}

/// See the module documentation.
pub struct RemoteClusterManager<L> {
    local: L,
    /// The local stream ended, or a remote source died: the mesh ends.
    local_ended: bool,
    pub(crate) config: MeshConfig,
    pub(crate) remotes: BTreeMap<String, Remote>,
    pub(crate) secrets: Secrets,
    pub(crate) sources: StreamMap<String, Supervised>,
    pub(crate) out: VecDeque<SourceEvent>,
    /// During a local relist: RCC names and Secrets not seen again yet.
    local_unseen: Option<(BTreeSet<String>, BTreeSet<SecretRef>)>,
    gate: LocalGate,
    /// What would collide across clusters is held back here on its way out.
    guard: CollisionGuard,
    /// Events past the guard, for the cache.
    ready: VecDeque<SourceEvent>,
}

impl<L> RemoteClusterManager<L>
where
    L: Stream<Item = SourceEvent> + Unpin + Send,
{
    pub fn new(local: L, config: MeshConfig) -> Self {
        RemoteClusterManager {
            local,
            local_ended: false,
            config,
            remotes: BTreeMap::new(),
            secrets: BTreeMap::new(),
            sources: StreamMap::new(),
            out: VecDeque::new(),
            local_unseen: None,
            gate: LocalGate::Pending,
            guard: CollisionGuard::default(),
            ready: VecDeque::new(),
        }
    }

    /// The merged stream for the cache. Local and remote events are polled fairly (random start
    /// order; `StreamMap` rotates among remotes), so one cluster's big relist cannot starve the
    /// others' fresh updates.
    pub fn into_stream(self) -> impl Stream<Item = SourceEvent> + Send + Unpin
    where
        L: 'static,
    {
        Box::pin(futures::stream::unfold(self, |mut mesh| async move {
            let event = mesh.next().await?;
            Some((event, mesh))
        }))
    }

    /// The next event for the cache; `None` when the local source ended.
    pub async fn next(&mut self) -> Option<SourceEvent> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            if let Some(event) = self.out.pop_front() {
                self.guard.apply(event, &mut self.ready);
                continue;
            }
            if self.local_ended {
                return None;
            }
            let deadline = self.remotes.values().filter_map(Remote::withdraw_at).min();
            tokio::select! {
                event = self.local.next() => match event {
                    Some(event) => self.on_local(event),
                    None => {
                        info!("local datastore stream ended");
                        self.local_ended = true;
                    }
                },
                Some((cluster, event)) = self.sources.next(), if !self.sources.is_empty() => {
                    match event {
                        Some(event) => self.on_remote(&cluster, event),
                        None => {
                            // Ending the mesh stops the cache writer, whose supervisor fails
                            // liveness: a cluster that silently stops updating must not look fine.
                            error!(cluster = %cluster, "the source of RemoteClusterConfiguration({cluster}) stopped unexpectedly; stopping the mesh");
                            self.local_ended = true;
                        }
                    }
                }
                _ = sleep_until_opt(deadline), if deadline.is_some() => self.withdraw_due(),
            }
        }
    }

    fn on_local(&mut self, event: SourceEvent) {
        match event {
            SourceEvent::Upsert { key, value, .. } if key.kind() == RCC_KIND => {
                if let Some((rccs, _)) = self.local_unseen.as_mut() {
                    rccs.remove(key.name());
                }
                self.rcc_upserted(key.name(), &value);
            }
            SourceEvent::Delete { key, .. } if key.kind() == RCC_KIND => {
                self.rcc_deleted(key.name());
            }
            SourceEvent::Upsert { key, value, .. } if key.kind() == SECRET_KIND => {
                let reference = (key.namespace().to_string(), key.name().to_string());
                if let Some((_, secrets)) = self.local_unseen.as_mut() {
                    secrets.remove(&reference);
                }
                let secret = SecretData::parse(&value).inspect_err(|e| {
                    warn!(secret = %format!("{}/{}", reference.0, reference.1), error = %e,
                        "malformed Secret; RemoteClusterConfigurations that use it report ConfigIncomplete");
                });
                self.secret_changed(reference, Some(secret));
            }
            SourceEvent::Unreadable { key, reason } if key.kind() == SECRET_KIND => {
                let reference = (key.namespace().to_string(), key.name().to_string());
                if let Some((_, secrets)) = self.local_unseen.as_mut() {
                    secrets.remove(&reference);
                }
                warn!(secret = %format!("{}/{}", reference.0, reference.1), error = %reason,
                    "cannot read a Secret; RemoteClusterConfigurations that use it report ConfigIncomplete");
                self.secret_changed(reference, Some(Err(SecretError::Unreadable(reason))));
            }
            SourceEvent::Delete { key, .. } if key.kind() == SECRET_KIND => {
                let reference = (key.namespace().to_string(), key.name().to_string());
                self.secret_changed(reference, None);
            }
            SourceEvent::ResyncStart { cluster } => {
                self.local_unseen = Some((
                    self.remotes.keys().cloned().collect(),
                    self.secrets.keys().cloned().collect(),
                ));
                self.out.push_back(SourceEvent::ResyncStart { cluster });
            }
            SourceEvent::ResyncDone { cluster } => {
                if let Some((rccs, secrets)) = self.local_unseen.take() {
                    for reference in secrets {
                        self.secret_changed(reference, None);
                    }
                    for name in rccs {
                        self.rcc_deleted(&name);
                    }
                }
                self.out.push_back(SourceEvent::ResyncDone { cluster });
            }
            SourceEvent::Status { cluster, status } if &*cluster == LOCAL_CLUSTER => {
                self.local_status(cluster, status);
            }
            other => self.out.push_back(other),
        }
    }

    fn local_status(&mut self, cluster: ClusterName, status: SourceStatus) {
        if status != SourceStatus::InSync {
            self.out.push_back(SourceEvent::Status { cluster, status });
            return;
        }
        if matches!(self.gate, LocalGate::Pending) {
            let waiting: HashSet<String> = self
                .remotes
                .iter()
                .filter(|(_, r)| r.is_running() && r.holds_gate)
                .map(|(name, _)| name.clone())
                .collect();
            if waiting.is_empty() {
                self.gate = LocalGate::Open;
            } else {
                info!(remotes = ?waiting, "Local datastore is synced, waiting for remotes.");
                self.gate = LocalGate::Holding(waiting);
            }
        }
        if matches!(self.gate, LocalGate::Open) {
            self.out.push_back(SourceEvent::Status { cluster, status });
        }
    }

    /// A remote stops holding the local in-sync back (once).
    pub(crate) fn release(&mut self, name: &str) {
        let Some(remote) = self.remotes.get_mut(name) else {
            return;
        };
        if !remote.holds_gate {
            return;
        }
        remote.holds_gate = false;
        debug!(cluster = name, "--> Finish processing for remote cluster");
        if let LocalGate::Holding(waiting) = &mut self.gate
            && waiting.remove(name)
            && waiting.is_empty()
        {
            info!("--> Remote datastores are synced.");
            self.gate = LocalGate::Open;
            self.out.push_back(SourceEvent::Status {
                cluster: LOCAL_CLUSTER.into(),
                status: SourceStatus::InSync,
            });
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
