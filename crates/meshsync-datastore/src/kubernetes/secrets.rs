//! Secrets, watched by name for whoever consumes the source.
//!
//! meshsync never lists a cluster's Secrets: a Kubernetes source watches only the Secrets its
//! consumer names through [`SecretWatches`] (one watcher with a `metadata.name` field selector
//! each), and stops watching those it no longer names (their keys are deleted). Which Secrets are
//! needed, and why, is the consumer's business: the datastore knows no RemoteClusterConfiguration.
//! A Secret the source may not read (RBAC) is reported as [`SourceEvent::Unreadable`] with the
//! API's message; such a watch never holds the source's sync, and never fails the cluster.
//!
//! Only the Kubernetes source takes a [`SecretWatches`]: the file and etcd sources list everything
//! they hold, Secrets included, and their consumer filters. A handle no source reads (the default
//! of a consumer whose local source is not Kubernetes) makes [`SecretWatches::set`] a no-op.

use std::collections::BTreeSet;
use std::sync::Arc;

use meshsync_model::kinds;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::running::{Closed, Running};
use super::watched::Target;
use crate::{ResourceKey, SourceEvent};

/// A Secret by (namespace, name).
pub type SecretName = (String, String);

/// Which Secrets a Kubernetes source watches by name; clones share one set. Give a clone to the
/// source ([`KubeSourceConfig::secrets`](super::KubeSourceConfig)) and [`set`](Self::set) it
/// whenever the set of Secrets needed changes; the source follows at once, even while connecting
/// (a reconnected source watches the current set from its first listing).
#[derive(Clone, Debug)]
pub struct SecretWatches {
    wanted: Arc<watch::Sender<BTreeSet<SecretName>>>,
}

impl Default for SecretWatches {
    fn default() -> Self {
        SecretWatches {
            wanted: Arc::new(watch::channel(BTreeSet::new()).0),
        }
    }
}

impl SecretWatches {
    /// The Secrets to watch from now on (any others stop being watched).
    pub fn set(&self, secrets: impl IntoIterator<Item = SecretName>) {
        let new: BTreeSet<SecretName> = secrets.into_iter().collect();
        self.wanted.send_if_modified(|current| {
            if *current == new {
                return false;
            }
            *current = new;
            true
        });
    }

    /// The Secrets watched now.
    pub fn get(&self) -> BTreeSet<SecretName> {
        self.wanted.borrow().clone()
    }

    /// Follows the set (the source's side).
    pub(super) fn subscribe(&self) -> watch::Receiver<BTreeSet<SecretName>> {
        self.wanted.subscribe()
    }
}

impl Running<'_> {
    /// Starts a watch for every Secret wanted now and stops (and deletes) the others.
    pub(super) async fn update_secret_watches(&mut self) -> Result<(), Closed> {
        let wanted = self.secret_watches.borrow_and_update().clone();
        let stale: Vec<SecretName> = self
            .secret_streams
            .keys()
            .filter(|s| !wanted.contains(*s))
            .cloned()
            .collect();
        for secret in stale {
            let Some(id) = self.secret_streams.remove(&secret) else {
                continue;
            };
            self.streams.remove(&id);
            if let Some(w) = self.watched.remove(&id) {
                for key in w.produced.into_keys() {
                    self.source
                        .tx
                        .send(SourceEvent::Delete {
                            key,
                            revision: "".into(),
                        })
                        .await?;
                }
            }
            debug!(cluster = %self.cluster(), namespace = %secret.0, name = %secret.1,
                "Secret no longer wanted; stopped watching it");
        }
        for secret in wanted {
            if self.secret_streams.contains_key(&secret) {
                continue;
            }
            info!(cluster = %self.cluster(), namespace = %secret.0, name = %secret.1,
                "watching a Secret by name");
            let (namespace, name) = secret.clone();
            let id = self.add(Target::Secret { namespace, name });
            self.secret_streams.insert(secret, id);
        }
        // A Secret no longer wanted may have been the last listing the first sync waited for.
        self.check_synced().await
    }

    /// The Secret watch `id` failed with `message`: the Secret is unreadable (a failed Secret
    /// watch does not hold the sync; its consumer says why it misses it).
    pub(super) async fn secret_unreadable(
        &mut self,
        id: usize,
        message: String,
    ) -> Result<(), Closed> {
        let cluster = self.cluster();
        let Some(w) = self.watched.get_mut(&id) else {
            return Ok(());
        };
        let Target::Secret { namespace, name } = &*w.target else {
            return Ok(());
        };
        w.initial_done = true;
        if w.failed.as_deref() == Some(message.as_str()) {
            return self.check_synced().await;
        }
        w.failed = Some(message.clone());
        warn!(cluster = %cluster, namespace = %namespace, name = %name, error = %message,
            "cannot read a Secret watched by name");
        let key = ResourceKey::new(&cluster, kinds::SECRET, namespace, name);
        // Noted as produced, so a relist that finds it absent deletes it: the consumer then
        // knows it is missing, no longer unreadable.
        w.produced
            .replace((namespace.clone(), name.clone()), vec![key.clone()]);
        self.source
            .tx
            .send(SourceEvent::Unreadable {
                key,
                reason: message,
            })
            .await?;
        self.check_synced().await
    }
}
