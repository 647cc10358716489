//! The Kubernetes source task: one client, discovery, then one kube-runtime watcher per API
//! resource, merged into one stream of [`SourceEvent`]s.
//!
//! This file holds the task's phases (connecting, running, failed with backoff) and its status;
//! the connected phase is `running.rs`, which relies on per-watch key bookkeeping (`watched.rs`),
//! watcher error classification (`errors.rs`), the probing of failed resources (`probe.rs`) and
//! the Secrets watched by name for the consumer ([`super::secrets`]). The first listing of every resource is one `ResyncStart` … `ResyncDone`,
//! then `InSync`; a relist sends only the differences.
//!
//! **Status.** A watcher's error makes the cluster `ConnectionFailed` with the API's own message
//! (`pods is forbidden: User … cannot watch …`); when every failed resource passes its probe, the
//! cluster is `InSync` again (or still `ResyncInProgress` if a first listing is missing).
//!
//! **Secrets** are watched only by name, as the consumer asks through
//! [`KubeSourceConfig::secrets`]: meshsync never lists the cluster's secrets. One that cannot be
//! read is a [`SourceEvent::Unreadable`] with the API's message.

use std::time::Duration;

use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, info, warn};

use super::access::KubeAccess;
use super::convert::ConvertOptions;
use super::errors::api_message;
use super::resources::{CalicoMode, Served, WatchedResource, discovery_group_versions, plan};
use super::running::Running;
use super::secrets::SecretWatches;
use crate::common::{Closed, SourceCommon, SourceTx};
use crate::{ClusterName, SourceEvent, SourceStatus};

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
    /// Cluster, kinds (`None`: every kind; only the resources they need are watched), value
    /// limits, backoff (also of each failed watcher), counters.
    pub common: SourceCommon,
    /// Objects per LIST page.
    pub page_size: u32,
    pub initial_list: InitialList,
    /// How often failed resources are probed.
    pub probe_interval: Duration,
    pub convert: ConvertOptions,
    /// The Secrets to watch by name (none unless a consumer sets some): keep a clone to set them.
    pub secrets: SecretWatches,
}

impl KubeSourceConfig {
    pub fn new(access: KubeAccess, cluster: ClusterName) -> Self {
        KubeSourceConfig {
            access,
            common: SourceCommon::new(cluster),
            page_size: 500,
            initial_list: InitialList::Auto,
            probe_interval: Duration::from_secs(2),
            convert: ConvertOptions::default(),
            secrets: SecretWatches::default(),
        }
    }
}

/// Starts the source task and returns its event stream; the task ends when the stream is dropped.
pub fn watch(config: KubeSourceConfig) -> ReceiverStream<SourceEvent> {
    let (tx, rx) = SourceTx::channel(config.common.cluster.clone());
    tokio::spawn(async move {
        let mut source = KubeSource { config, tx };
        let _ = source.run().await;
        debug!(cluster = %source.config.common.cluster, "kubernetes source stopped");
    });
    rx
}

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

/// The task's state across phases.
pub(super) struct KubeSource {
    pub(super) config: KubeSourceConfig,
    pub(super) tx: SourceTx,
}

impl KubeSource {
    async fn run(&mut self) -> Result<(), Closed> {
        self.tx.set_status(SourceStatus::Connecting).await?;
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
                    warn!(cluster = %self.config.common.cluster, error = %reason,
                        "cannot reach the Kubernetes API; will retry");
                    self.tx
                        .set_status(SourceStatus::ConnectionFailed(reason))
                        .await?;
                    self.tx
                        .sleep(self.config.common.backoff.delay(attempt))
                        .await?;
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
        let (mode, resources, missing) = plan(&served, self.config.common.kinds.as_ref());
        let names: Vec<String> = resources.iter().map(WatchedResource::name).collect();
        info!(cluster = %self.config.common.cluster, calico_crds = ?mode, watches = names.len(),
            resources = ?names, "connected to the Kubernetes API");
        if mode == CalicoMode::None {
            warn!(cluster = %self.config.common.cluster,
                "no Calico CRDs are served (neither crd.projectcalico.org/v1 nor projectcalico.org/v3); only the kinds derived from core objects are synced");
        }
        if !missing.is_empty() {
            debug!(cluster = %self.config.common.cluster, kinds = ?missing, "kinds this cluster does not serve");
        }
        Ok((client, resources))
    }
}
