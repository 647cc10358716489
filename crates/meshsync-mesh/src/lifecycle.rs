//! The RCC lifecycle: an RCC or its Secret added, changed or deleted starts, restarts or stops
//! that one cluster's source (no process restart, unlike Calico); an invalid one, or one whose
//! datastore is already in the mesh, reports `ConfigIncomplete` and runs nothing.

use bytes::Bytes;
use futures::Stream;
use meshsync_model::{ClusterName, SourceEvent, SourceStatus};
use tracing::{info, warn};

use crate::error::{ConfigError, SecretError};
use crate::manager::{RemoteClusterManager, supervised};
use crate::rcc::{Rcc, RemoteConfig, SecretRef, validate_cluster_name};
use crate::remote;
use crate::secret::SecretData;
use crate::state::{Link, Remote, RemoteState};

impl<L> RemoteClusterManager<L>
where
    L: Stream<Item = SourceEvent> + Unpin + Send,
{
    pub(crate) fn rcc_upserted(&mut self, name: &str, value: &Bytes) {
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
            self.remotes.insert(name.to_string(), Remote::new(rcc));
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
        self.request_secrets();
        self.reconfigure(name, if is_new { "new RCC" } else { "modified RCC" });
    }

    /// Tells the local source which Secrets the RCCs name now (see [`MeshConfig::local_secrets`]).
    ///
    /// [`MeshConfig::local_secrets`]: crate::MeshConfig::local_secrets
    fn request_secrets(&self) {
        self.config.local_secrets.set(
            self.remotes
                .values()
                .filter_map(|r| r.rcc.secret_ref())
                .filter(|(namespace, name)| !namespace.is_empty() && !name.is_empty()),
        );
    }

    /// Recomputes a remote's configuration and starts, restarts or stops its source.
    pub(crate) fn reconfigure(&mut self, name: &str, why: &str) {
        let Some(remote) = self.remotes.get(name) else {
            return;
        };
        let resolved = remote
            .rcc
            .resolve(&self.secrets, self.config.base_dir.as_deref())
            .and_then(|config| match self.duplicate_of(name, &config) {
                Some(reason) => Err(ConfigError::Duplicate(reason)),
                None => Ok(config),
            });
        let Some(remote) = self.remotes.get_mut(name) else {
            return;
        };
        let was_running = remote.is_running();
        match resolved {
            Ok(config) if remote.running_config() == Some(&config) => {}
            Ok(config) => {
                info!(
                    cluster = name,
                    reason = why,
                    "Handling {why} as a valid RCC: Creating syncer for RemoteClusterConfiguration({name})"
                );
                let stream = remote::start(name, &config, &self.config.limits);
                remote.state = RemoteState::Running {
                    config: Box::new(config),
                    link: Link::Up,
                };
                // A restarted source relists; the cache turns that into the differences.
                self.sources.insert(name.to_string(), supervised(stream));
                if was_running {
                    self.retry_duplicates(name);
                }
            }
            Err(reason) => {
                let reason = if was_running {
                    info!(
                        cluster = name,
                        reason = why,
                        "Handling {why} as invalidating remote cluster: Stop syncer for RemoteClusterConfiguration({name})"
                    );
                    ConfigError::Stopped(Box::new(reason))
                } else {
                    reason
                };
                remote.state = RemoteState::Incomplete(reason.clone());
                if was_running {
                    self.sources.remove(name);
                    let cluster: ClusterName = name.into();
                    self.out.push_back(SourceEvent::ResyncStart {
                        cluster: cluster.clone(),
                    });
                    self.out.push_back(SourceEvent::ResyncDone { cluster });
                    self.retry_duplicates(name);
                }
                warn!(cluster = name, error = %reason, "RemoteClusterConfiguration({name}) is incomplete");
                self.out.push_back(SourceEvent::Status {
                    cluster: name.into(),
                    status: SourceStatus::ConfigIncomplete(reason.to_string()),
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
                "the local cluster's own datastore ({id}), whose data is already served as the local cluster"
            ));
        }
        self.remotes
            .iter()
            .filter(|(other, _)| other.as_str() != name)
            .find_map(|(other, r)| {
                let theirs = r.running_config()?.datastore.identities();
                let id = ids.iter().find(|id| theirs.contains(id))?;
                Some(format!(
                    "the same datastore ({id}) as RemoteClusterConfiguration({other})"
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
                    && matches!(&r.state, RemoteState::Incomplete(e) if e.is_duplicate())
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in waiting {
            self.reconfigure(&name, "duplicate freed");
        }
    }

    pub(crate) fn rcc_deleted(&mut self, name: &str) {
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
        self.request_secrets();
        self.out.push_back(SourceEvent::ClusterRemoved {
            cluster: name.into(),
        });
        self.retry_duplicates(name);
    }

    /// A Secret was read (`Some`: decoded, or why not) or is gone (`None`): the RCCs that name
    /// it are reconfigured.
    pub(crate) fn secret_changed(
        &mut self,
        reference: SecretRef,
        new: Option<Result<SecretData, SecretError>>,
    ) {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use futures::FutureExt;
    use meshsync_datastore::kubernetes::SecretWatches;
    use meshsync_model::ResourceKey;
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::ReceiverStream;

    use super::*;
    use crate::MeshConfig;

    fn rcc(name: &str, secret: &str) -> SourceEvent {
        let spec = format!(
            r#"{{"clusterAccessSecret":{{"kind":"Secret","namespace":"ns","name":"{secret}"}}}}"#
        );
        SourceEvent::Upsert {
            key: ResourceKey::new("", crate::RCC_KIND, "", name),
            value: Bytes::from(format!(
                r#"{{"kind":"RemoteClusterConfiguration","metadata":{{"name":"{name}"}},"spec":{spec}}}"#
            )),
            revision: "1".into(),
        }
    }

    fn wanted(secrets: &[&str]) -> BTreeSet<(String, String)> {
        secrets
            .iter()
            .map(|s| ("ns".to_string(), s.to_string()))
            .collect()
    }

    /// Feeds `events` to the mesh and returns what it emits (the local source is a channel, so
    /// everything is ready at once: no waiting).
    fn feed(
        tx: &mpsc::Sender<SourceEvent>,
        mesh: &mut RemoteClusterManager<ReceiverStream<SourceEvent>>,
        events: Vec<SourceEvent>,
    ) -> Vec<SourceEvent> {
        for event in events {
            tx.try_send(event).expect("room in the channel");
        }
        std::iter::from_fn(|| mesh.next().now_or_never().flatten()).collect()
    }

    fn incomplete_reason(events: &[SourceEvent], cluster: &str) -> Option<String> {
        events.iter().rev().find_map(|e| match e {
            SourceEvent::Status {
                cluster: c,
                status: SourceStatus::ConfigIncomplete(reason),
            } if &**c == cluster => Some(reason.clone()),
            _ => None,
        })
    }

    #[test]
    fn the_mesh_asks_for_the_secrets_its_rccs_name_and_reports_unreadable_ones() {
        let local_secrets = SecretWatches::default();
        let (tx, rx) = mpsc::channel(16);
        let mut mesh = RemoteClusterManager::new(
            ReceiverStream::new(rx),
            MeshConfig {
                local_secrets: local_secrets.clone(),
                ..MeshConfig::default()
            },
        );
        feed(&tx, &mut mesh, vec![rcc("b", "s1"), rcc("c", "s2")]);
        assert_eq!(local_secrets.get(), wanted(&["s1", "s2"]));

        // An unreadable Secret: its RCC is incomplete with the API's reason; nothing is forwarded.
        let forbidden = "secrets \"s1\" is forbidden: User \"x\" cannot watch";
        let out = feed(
            &tx,
            &mut mesh,
            vec![SourceEvent::Unreadable {
                key: ResourceKey::new("", crate::SECRET_KIND, "ns", "s1"),
                reason: forbidden.to_string(),
            }],
        );
        let reason = incomplete_reason(&out, "b").expect("b is incomplete");
        assert!(reason.contains(forbidden), "{reason}");
        assert!(
            !out.iter()
                .any(|e| matches!(e, SourceEvent::Unreadable { .. }))
        );

        // A changed reference and a deleted RCC change what is asked for.
        feed(&tx, &mut mesh, vec![rcc("b", "s3")]);
        assert_eq!(local_secrets.get(), wanted(&["s2", "s3"]));
        feed(
            &tx,
            &mut mesh,
            vec![SourceEvent::Delete {
                key: ResourceKey::new("", crate::RCC_KIND, "", "c"),
                revision: "2".into(),
            }],
        );
        assert_eq!(local_secrets.get(), wanted(&["s3"]));
    }
}
