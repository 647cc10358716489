//! The federated services controller: subscribes to a meshsync server with the `federation`
//! subscription, computes the desired federated Endpoints/EndpointSlices with
//! [`crate::desired_endpoints`] and reconciles them into the **local** datastore: etcd, a file
//! datastore's `generated/` directory, or the Kubernetes API ([`LocalDatastore`]). This file is
//! the run loop; the planning ([`plan`]) is shared, only the writer ([`writer`]) differs per
//! datastore, and [`merge`] says how a desired object is laid over an existing one.
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
//! # Kubernetes datastores
//!
//! With [`LocalDatastore::Kubernetes`] objects are written through the API with server-side apply
//! as the field manager [`FIELD_MANAGER`] (`meshsync-federation`), never forced: the apply carries
//! only the fields the controller owns, and the read `resourceVersion` as a precondition; deletes
//! carry the read `uid` and `resourceVersion`. The managed rule is the same as for etcd (an object
//! without the selector annotation, or an EndpointSlice without our managed-by label, is left
//! alone). Another field manager owning one of our fields with another value is a conflict: logged
//! with the managers and fields the API names, counted as failed, retried after
//! [`ControllerConfig::retry_delay`], never forced. The client comes from a [`KubeConnect`] (the
//! binary builds it from a kubeconfig), again after the API answers 401; this crate never reads
//! Kubernetes access configuration.
//!
//! # File datastores
//!
//! With [`LocalDatastore::Files`] each managed object is one pretty-printed JSON file in
//! `DIR/generated/` (created when missing): `endpoints_<ns>_<name>.json` and
//! `endpointslice_<ns>_<name>.json` (`_` never occurs in a part: anything but `[a-z0-9.-]` is
//! `%XX`-escaped, so every object has its own file; files named as earlier versions did,
//! `endpoints-<ns>-<name>.json`, are removed at start when managed, and rewritten). The file
//! datastore watches `DIR` recursively, so the generated files come back through the subscription
//! and the mirror tells what the datastore holds, exactly as with etcd. A file is written
//! atomically (a hidden temp file in `generated/`, which the datastore ignores, then a rename) and
//! only when its content differs; an unneeded object is deleted by removing its file. Nothing
//! outside `generated/` is ever written, and an unmanaged object of the same kind, namespace and
//! name defined elsewhere blocks the write (warned once).

mod merge;
mod plan;
mod writer;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use meshsync_agent::{Agent, AgentConfig, AgentError, AgentEvent};
use meshsync_etcd::{EtcdConfig, TlsFiles};
use tokio::time::Instant;
use tracing::{info, warn};

use self::plan::{LogState, plan};
use self::writer::{Writer, apply};

/// The target of every log line of the controller, whichever of its files writes it: the one the
/// lines had before the controller was split into files, so that log filters keep matching.
const LOG_TARGET: &str = "meshsync_federation::controller";

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
    /// Compare-and-swap attempts per object (etcd); attempts per object when it changed between
    /// the read and the write (Kubernetes: `resourceVersion` and `uid` preconditions).
    pub max_attempts: u32,
    /// Retry a reconciliation that failed (etcd or file-system errors) after this long.
    pub retry_delay: Duration,
}

/// Where the controller writes its objects.
///
/// The same places a source reads (`meshsync_datastore::DatastoreSpec`, from which the binary
/// resolves it), described for a writer, and kept apart on purpose: a writer needs other things
/// (a file datastore is written under `generated/`, the Kubernetes API through a client the
/// caller builds, [`KubeConnect`]), and this crate would otherwise depend on every reading driver
/// (file watching, kube-runtime watchers) it never runs.
#[derive(Clone, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "built once per controller; boxing would only complicate its construction"
)]
pub enum LocalDatastore {
    /// An etcd datastore; objects are written with compare-and-swap under `prefix`. The TLS
    /// files are read at each connection attempt, over `config.tls`.
    Etcd {
        config: EtcdConfig,
        prefix: String,
        tls_files: TlsFiles,
    },
    /// A file datastore's directory; objects are written as files under `dir/generated/`.
    Files { dir: PathBuf },
    /// The Kubernetes API; objects are written with server-side apply (field manager
    /// [`FIELD_MANAGER`]) through the client `connect` gives.
    Kubernetes { connect: KubeConnect },
}

/// The field manager the controller applies its objects as (server-side apply), and the value of
/// the EndpointSlices' managed-by label.
pub const FIELD_MANAGER: &str = crate::MANAGED_BY_VALUE;

/// The error a [`KubeConnect`] returns when it cannot build a client.
pub type KubeConnectError = Box<dyn std::error::Error + Send + Sync>;

type ConnectFn =
    dyn Fn() -> BoxFuture<'static, Result<kube::Client, KubeConnectError>> + Send + Sync;

/// How the controller gets its Kubernetes client: called at each connection attempt until one
/// succeeds (the binary reads the kubeconfig there, so a kubeconfig that appears or is fixed later
/// is picked up). This crate does not know how access is configured; the caller does.
#[derive(Clone)]
pub struct KubeConnect(Arc<ConnectFn>);

impl KubeConnect {
    /// Builds the client with `connect` at each attempt.
    pub fn new<F, Fut>(connect: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<kube::Client, KubeConnectError>> + Send + 'static,
    {
        KubeConnect(Arc::new(move || Box::pin(connect())))
    }

    /// Always this client.
    pub fn client(client: kube::Client) -> Self {
        Self::new(move || {
            let client = client.clone();
            async move { Ok(client) }
        })
    }

    pub(crate) async fn connect(&self) -> Result<kube::Client, KubeConnectError> {
        (self.0)().await
    }
}

impl fmt::Debug for KubeConnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KubeConnect(..)")
    }
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
                tls_files: TlsFiles::default(),
            },
        )
    }

    /// Writes files under `dir/generated/` (a file datastore's directory).
    pub fn files(agent: AgentConfig, dir: PathBuf) -> Self {
        Self::with_datastore(agent, LocalDatastore::Files { dir })
    }

    /// Writes through the Kubernetes API (server-side apply) with the client `connect` gives.
    pub fn kubernetes(agent: AgentConfig, connect: KubeConnect) -> Self {
        Self::with_datastore(agent, LocalDatastore::Kubernetes { connect })
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
                        let error = meshsync_agent::LogSafe(&error);
                        warn!(%server, %error, ?retry_in, "federation subscription lost; retrying");
                    }
                    AgentEvent::DigestMismatch(m) => {
                        warn!(clusters = m.len(), "mirror digest mismatch; resubscribing");
                    }
                    AgentEvent::Reconnect { server, reason } => {
                        let reason = meshsync_agent::LogSafe(&reason);
                        info!(%server, %reason, "the server asked the federation controller to reconnect");
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
                let mut stats = apply(&writer, &actions).await;
                // The unmanaged objects the plan already left alone count too.
                stats.skipped_unmanaged += log_state.blocked_count();
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
