//! The [`RemoteClusterManager`]: consumes RemoteClusterConfigurations and Secrets from the local
//! source, runs one remote source per valid RCC, merges everything into one fair stream, and holds
//! the local in-sync back until the remotes known at that moment are in sync or have failed.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::path::PathBuf;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use meshsync_datastore::{ClusterName, LOCAL_CLUSTER, SourceEvent, SourceStatus};
use tokio::time::Instant;
use tokio_stream::StreamMap;
use tracing::{debug, error, info, warn};

use crate::rcc::{LostClusterPolicy, Rcc, RemoteConfig, SecretRef, Secrets, validate_cluster_name};
use crate::remote::{self, RemoteLimits, SourceStream};

/// A remote source as the manager holds it: its events, then one `None` when it ends. A source
/// never ends on its own (it retries forever), so that `None` means its task died.
type Supervised = std::pin::Pin<Box<dyn Stream<Item = Option<SourceEvent>> + Send>>;

fn supervised(stream: SourceStream) -> Supervised {
    Box::pin(
        stream
            .map(Some)
            .chain(futures::stream::once(async { None })),
    )
}
use crate::secret::SecretData;

/// The RCC kind, consumed here and never forwarded.
pub const RCC_KIND: &str = "RemoteClusterConfiguration";
/// Secrets are consumed here and never forwarded: node agents have no business with them.
pub const SECRET_KIND: &str = "Secret";

/// Starts the reason of an RCC refused because its datastore is already in the mesh.
const DUPLICATE: &str = "duplicate cluster";

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
}

/// The state of one RCC.
struct Remote {
    rcc: Rcc,
    /// The resolved configuration, or why it is incomplete.
    config: Result<RemoteConfig, String>,
    /// A source is running (its stream is in `sources`).
    running: bool,
    /// Released its hold on the local in-sync (first InSync, first failure, or stopped).
    released: bool,
    /// The last status its source reported.
    status: Option<SourceStatus>,
    /// When a `withdraw` policy deletes its data, while it is lost.
    withdraw_at: Option<Instant>,
    withdrawn: bool,
}

/// See the module documentation.
pub struct RemoteClusterManager<L> {
    local: L,
    local_ended: bool,
    config: MeshConfig,
    remotes: BTreeMap<String, Remote>,
    secrets: Secrets,
    sources: StreamMap<String, Supervised>,
    out: VecDeque<SourceEvent>,
    /// During a local relist: RCC names and Secrets not seen again yet.
    local_unseen: Option<(BTreeSet<String>, BTreeSet<SecretRef>)>,
    /// `None` until the local source first reports InSync; then the remotes it waits for.
    gate: Option<HashSet<String>>,
    /// A local InSync is being held back.
    held_in_sync: bool,
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
            gate: None,
            held_in_sync: false,
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
            if let Some(event) = self.out.pop_front() {
                return Some(event);
            }
            if self.local_ended {
                return None;
            }
            let deadline = self.remotes.values().filter_map(|r| r.withdraw_at).min();
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
                self.secret_changed(reference, Some(&value));
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
        if self.gate.is_none() {
            let waiting: HashSet<String> = self
                .remotes
                .iter()
                .filter(|(_, r)| r.running && !r.released)
                .map(|(name, _)| name.clone())
                .collect();
            if !waiting.is_empty() {
                info!(remotes = ?waiting, "Local datastore is synced, waiting for remotes.");
                self.gate = Some(waiting);
                self.held_in_sync = true;
                return;
            }
            self.gate = Some(HashSet::new());
        }
        if self.held_in_sync {
            return;
        }
        self.out.push_back(SourceEvent::Status { cluster, status });
    }

    /// A remote stops blocking the local in-sync (once).
    fn release(&mut self, name: &str) {
        let Some(remote) = self.remotes.get_mut(name) else {
            return;
        };
        if remote.released {
            return;
        }
        remote.released = true;
        debug!(cluster = name, "--> Finish processing for remote cluster");
        if let Some(gate) = self.gate.as_mut()
            && gate.remove(name)
            && gate.is_empty()
            && self.held_in_sync
        {
            info!("--> Remote datastores are synced.");
            self.held_in_sync = false;
            self.out.push_back(SourceEvent::Status {
                cluster: LOCAL_CLUSTER.into(),
                status: SourceStatus::InSync,
            });
        }
    }

    fn on_remote(&mut self, cluster: &str, mut event: SourceEvent) {
        let Some(remote) = self.remotes.get_mut(cluster) else {
            return;
        };
        // While its data is withdrawn, every failure says so (not only the first one).
        if remote.withdrawn
            && let SourceEvent::Status {
                status: SourceStatus::ConnectionFailed(reason),
                ..
            } = &mut event
        {
            *reason = withdrawn_reason(reason);
        }
        if let SourceEvent::Status { status, .. } = &event {
            remote.status = Some(status.clone());
            let policy = remote.config.as_ref().map(|c| c.policy).ok();
            match status {
                SourceStatus::InSync => {
                    remote.withdraw_at = None;
                    remote.withdrawn = false;
                    self.release(cluster);
                }
                SourceStatus::ConnectionFailed(reason) => {
                    warn!(cluster, error = %reason, "Sending connection failed update for RemoteClusterConfiguration({cluster})");
                    if let Some(LostClusterPolicy::Withdraw { grace }) = policy
                        && remote.withdraw_at.is_none()
                        && !remote.withdrawn
                    {
                        remote.withdraw_at = Some(Instant::now() + grace);
                    }
                    self.release(cluster);
                }
                SourceStatus::ResyncInProgress | SourceStatus::Connecting => {}
                SourceStatus::ConfigIncomplete(_) => self.release(cluster),
            }
        }
        self.out.push_back(event);
    }

    /// Applies the `withdraw` policy to clusters lost for longer than their grace period.
    fn withdraw_due(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .remotes
            .iter()
            .filter(|(_, r)| r.withdraw_at.is_some_and(|t| t <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            let Some(remote) = self.remotes.get_mut(&name) else {
                continue;
            };
            remote.withdraw_at = None;
            remote.withdrawn = true;
            let reason = remote
                .status
                .as_ref()
                .map(|s| s.error().to_string())
                .unwrap_or_default();
            warn!(cluster = %name, "remote cluster lost for longer than its grace period; withdrawing its data (lost-cluster policy withdraw)");
            let cluster: ClusterName = name.as_str().into();
            self.out.push_back(SourceEvent::ResyncStart {
                cluster: cluster.clone(),
            });
            self.out.push_back(SourceEvent::ResyncDone {
                cluster: cluster.clone(),
            });
            self.out.push_back(SourceEvent::Status {
                cluster,
                status: SourceStatus::ConnectionFailed(withdrawn_reason(&reason)),
            });
        }
    }

    fn rcc_upserted(&mut self, name: &str, value: &Bytes) {
        if let Err(reason) = validate_cluster_name(name) {
            // Not a cluster at all: no source, no status row, no keys.
            warn!(error = %reason, "ignoring RemoteClusterConfiguration with an invalid name");
            return;
        }
        let rcc = Rcc::parse(name, value);
        let is_new = !self.remotes.contains_key(name);
        if is_new {
            info!(
                cluster = name,
                "Handling new RCC update: Adding RCC to remotes RemoteClusterConfiguration({name})"
            );
            self.remotes.insert(
                name.to_string(),
                Remote {
                    rcc: rcc.clone(),
                    config: Err(String::new()),
                    running: false,
                    released: false,
                    status: None,
                    withdraw_at: None,
                    withdrawn: false,
                },
            );
            self.out.push_back(SourceEvent::Status {
                cluster: name.into(),
                status: SourceStatus::Connecting,
            });
        } else if let Some(remote) = self.remotes.get_mut(name) {
            if remote.rcc == rcc {
                return;
            }
            info!(cluster = name, "Handling modified RCC update");
            remote.rcc = rcc;
        }
        self.reconfigure(name, if is_new { "new RCC" } else { "modified RCC" });
    }

    /// Recomputes a remote's configuration and starts, restarts or stops its source.
    fn reconfigure(&mut self, name: &str, why: &str) {
        let Some(remote) = self.remotes.get(name) else {
            return;
        };
        let config = remote
            .rcc
            .resolve(&self.secrets, self.config.base_dir.as_deref())
            .and_then(|config| match self.duplicate_of(name, &config) {
                Some(reason) => Err(reason),
                None => Ok(config),
            });
        let Some(remote) = self.remotes.get_mut(name) else {
            return;
        };
        let unchanged = remote.running && remote.config.as_ref().ok() == config.as_ref().ok();
        let was_valid = remote.config.is_ok();
        let was_running = remote.running;
        remote.config = config.clone();
        match config {
            Ok(_) if unchanged => {}
            Ok(config) => {
                info!(
                    cluster = name,
                    reason = why,
                    "Handling {why} as a valid RCC: Creating syncer for RemoteClusterConfiguration({name})"
                );
                let stream = remote::start(name, &config, &self.config.limits);
                remote.running = true;
                remote.withdraw_at = None;
                remote.withdrawn = false;
                // A restarted source relists; the cache turns that into the differences.
                self.sources.insert(name.to_string(), supervised(stream));
                if was_running {
                    self.retry_duplicates(name);
                }
            }
            Err(reason) => {
                if was_running {
                    info!(
                        cluster = name,
                        reason = why,
                        "Handling {why} as invalidating remote cluster: Stop syncer for RemoteClusterConfiguration({name})"
                    );
                    self.sources.remove(name);
                    remote.running = false;
                    remote.withdraw_at = None;
                    let cluster: ClusterName = name.into();
                    self.out.push_back(SourceEvent::ResyncStart {
                        cluster: cluster.clone(),
                    });
                    self.out.push_back(SourceEvent::ResyncDone { cluster });
                    self.retry_duplicates(name);
                }
                let reason = if was_valid && was_running {
                    format!("Config is incomplete, stopping watch remote: {reason}")
                } else {
                    reason
                };
                warn!(cluster = name, error = %reason, "RemoteClusterConfiguration({name}) is incomplete");
                self.out.push_back(SourceEvent::Status {
                    cluster: name.into(),
                    status: SourceStatus::ConfigIncomplete(reason),
                });
                self.release(name);
            }
        }
    }

    /// Why `config` must not run for `name`: it points at the local datastore, or at the datastore
    /// of a remote that already runs (every endpoint would be served twice, under two names).
    fn duplicate_of(&self, name: &str, config: &RemoteConfig) -> Option<String> {
        let ids = config.datastore.identities();
        if let Some(id) = ids
            .iter()
            .find(|id| self.config.local_identities.contains(id))
        {
            return Some(format!(
                "{DUPLICATE}: it points at the local cluster's own datastore ({id}), whose data is already served as the local cluster"
            ));
        }
        self.remotes
            .iter()
            .filter(|(other, r)| other.as_str() != name && r.running)
            .find_map(|(other, r)| {
                let theirs = r.config.as_ref().ok()?.datastore.identities();
                let id = ids.iter().find(|id| theirs.contains(id))?;
                Some(format!(
                    "{DUPLICATE}: it points at the same datastore ({id}) as RemoteClusterConfiguration({other})"
                ))
            })
    }

    /// After `freed` stopped or changed datastore: RCCs refused as its duplicates may run now.
    fn retry_duplicates(&mut self, freed: &str) {
        let waiting: Vec<String> = self
            .remotes
            .iter()
            .filter(|(n, r)| {
                n.as_str() != freed
                    && !r.running
                    && r.config.as_ref().is_err_and(|e| e.contains(DUPLICATE))
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in waiting {
            self.reconfigure(&name, "duplicate freed");
        }
    }

    fn rcc_deleted(&mut self, name: &str) {
        if !self.remotes.contains_key(name) {
            return;
        }
        info!(
            cluster = name,
            "RemoteClusterConfiguration({name}) deleted: removing its data and status"
        );
        self.sources.remove(name);
        self.release(name);
        self.remotes.remove(name);
        self.out.push_back(SourceEvent::ClusterRemoved {
            cluster: name.into(),
        });
        self.retry_duplicates(name);
    }

    fn secret_changed(&mut self, reference: SecretRef, value: Option<&Bytes>) {
        let new = value.map(|v| {
            SecretData::parse(v).inspect_err(|e| {
                warn!(secret = %format!("{}/{}", reference.0, reference.1), error = %e,
                    "malformed Secret; RemoteClusterConfigurations that use it report ConfigIncomplete");
            })
        });
        let old = match &new {
            Some(s) => self.secrets.insert(reference.clone(), s.clone()),
            None => self.secrets.remove(&reference),
        };
        if old == new {
            return;
        }
        let users: Vec<String> = self
            .remotes
            .iter()
            .filter(|(_, r)| r.rcc.secret_ref().as_ref() == Some(&reference))
            .map(|(n, _)| n.clone())
            .collect();
        for name in users {
            self.reconfigure(&name, "Secret update");
        }
    }
}

/// A lost cluster's failure reason, announcing that its data was withdrawn.
fn withdrawn_reason(reason: &str) -> String {
    const SUFFIX: &str = "; data withdrawn (lost-cluster policy withdraw)";
    if reason.ends_with(SUFFIX) {
        reason.to_string()
    } else {
        format!("{reason}{SUFFIX}")
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
