//! `meshsync serve`: one source per datastore → the snapshot cache → the gRPC server.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

use meshsync_agent::AgentConfig;
use meshsync_cache::{CacheConfig, HistoryConfig, SnapshotCache};
use meshsync_datastore::kubernetes::SecretWatches;
use meshsync_datastore::validate::ValueLimits;
use meshsync_datastore::{
    DatastoreSpec, DatastoreUrl, LOCAL_CLUSTER, SourceCommon, SourceCounters, SourceStream,
};
use meshsync_federation::controller::{self, ControllerConfig, LocalDatastore};
use meshsync_mesh::{MeshConfig, RemoteLimits};
use meshsync_server::RemoteNamespaces;
use meshsync_server::{BoundServer, ServerConfig};
use tracing::{error, info};

use super::etcd_flags::EtcdFlags;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The local cluster's datastore: `file:DIR` (a directory of YAML/JSON manifests, watched
    /// live), `etcd://host:port[,host:port…][?prefix=/calico]`, or `kubernetes[:KUBECONFIG]` (the
    /// Kubernetes API: that kubeconfig, else `$KUBECONFIG`/`~/.kube/config`, else in-cluster).
    #[arg(long, env = "MESHSYNC_DATASTORE")]
    datastore: DatastoreUrl,
    #[command(flatten)]
    etcd: EtcdFlags,
    #[command(flatten)]
    tls: super::tls_flags::ServerTlsFlags,
    /// gRPC listen address (Typha's port).
    #[arg(long, default_value = "0.0.0.0:5473", env = "MESHSYNC_LISTEN")]
    listen: SocketAddr,
    /// Also serve Typha's protocol (Felix, confd, calico-node) on this address; off when not
    /// given. Typha's port is 5473: to take Typha's place, move gRPC with `--listen`.
    #[arg(long, env = "MESHSYNC_TYPHA_LISTEN")]
    typha_listen: Option<SocketAddr>,
    /// Whether a remote cluster's pods count as members of the local namespace of the same name
    /// for Felix's namespaced policies: `same` (namespace sameness, the default) or `distinct`
    /// (only GlobalNetworkPolicies and namespaceSelectors reach remote pods).
    #[arg(
        long,
        value_enum,
        default_value = "same",
        env = "MESHSYNC_REMOTE_NAMESPACES"
    )]
    remote_namespaces: RemoteNamespacesArg,
    /// Health endpoints (`/liveness`, `/readiness`) listen address.
    #[arg(long, default_value = "0.0.0.0:9098", env = "MESHSYNC_HEALTH_LISTEN")]
    health_listen: SocketAddr,
    /// Disable the health endpoints.
    #[arg(long, env = "MESHSYNC_NO_HEALTH")]
    no_health: bool,
    /// Serve Prometheus `/metrics` on this address (Typha's port is 9093); off when not given.
    #[arg(long, env = "MESHSYNC_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Refuse subscriptions above this many connected agents.
    #[arg(long, default_value_t = 20_000, env = "MESHSYNC_MAX_CONNECTIONS")]
    max_connections: usize,
    /// Objects larger than this many bytes are refused (logged, previous value kept).
    #[arg(long, default_value_t = 1 << 20, env = "MESHSYNC_MAX_VALUE_BYTES")]
    max_value_bytes: usize,
    /// Keepalive ping interval towards agents, seconds: HTTP/2 pings on the gRPC port, `MsgPing`
    /// on the Typha port (Typha's default is also 10 s).
    #[arg(long, default_value_t = 10.0, env = "MESHSYNC_KEEPALIVE_INTERVAL")]
    keepalive_interval: f64,
    /// Close an agent's connection when a ping is unanswered this long (Typha: no pong), seconds.
    #[arg(long, default_value_t = 60.0, env = "MESHSYNC_KEEPALIVE_TIMEOUT")]
    keepalive_timeout: f64,
    /// Close a connection that has not completed a request this long after it was accepted,
    /// seconds. Also how long a request body (gRPC) or request head (health, metrics) may take
    /// to arrive whole.
    #[arg(long, default_value_t = 10.0, env = "MESHSYNC_HANDSHAKE_TIMEOUT")]
    handshake_timeout: f64,
    /// Most gRPC sockets open at once (further ones are closed at once). Default: derived from
    /// --max-connections (+10 % and 64 for tools), capped by the open-file limit less a reserve.
    #[arg(long, env = "MESHSYNC_MAX_SOCKETS")]
    max_sockets: Option<usize>,
    /// Close an agent's connection when its stream has data to send but has sent nothing for
    /// this long (it stopped reading), seconds.
    #[arg(long, default_value_t = 120.0, env = "MESHSYNC_WRITE_TIMEOUT")]
    write_timeout: f64,
    /// A stream that is not keeping up releases the breadcrumbs it holds once it is more than
    /// this many bytes of changes behind; it later catches up with one coalesced difference.
    #[arg(long, default_value_t = 4 << 20, env = "MESHSYNC_MAX_BACKLOG_BYTES")]
    max_backlog_bytes: u64,
    /// Compression offered to agents that accept it: `zstd` (each update frame compressed once and
    /// the same bytes sent to every such agent) or `none`.
    #[arg(long, value_enum, default_value_t = super::common::CompressionFlag::Zstd,
        env = "MESHSYNC_COMPRESSION")]
    compression: super::common::CompressionFlag,
    /// History kept so that a reconnecting agent of this server resumes with only what changed:
    /// at most this many bytes of changes (0: no resume, every reconnect is a full snapshot).
    #[arg(long, default_value_t = 64 << 20, env = "MESHSYNC_RESUME_HISTORY_BYTES")]
    resume_history_bytes: u64,
    /// … and at most this old, seconds.
    #[arg(long, default_value_t = 600.0, env = "MESHSYNC_RESUME_HISTORY_AGE")]
    resume_history_age: f64,
    /// Most source events applied as one batch.
    #[arg(long, default_value_t = 1000, env = "MESHSYNC_MAX_BATCH")]
    max_batch: usize,
    /// On SIGTERM: `/readiness` goes 503, new connections are refused, and agents are asked to
    /// reconnect elsewhere one by one, spread over this many seconds (Typha's graceful period);
    /// then the server exits 0.
    #[arg(
        long,
        default_value_t = 300.0,
        env = "MESHSYNC_SHUTDOWN_DRAIN",
        value_name = "SECS"
    )]
    shutdown_drain: f64,
    /// Rebalance agents across the replicas of this Kubernetes Service (`NAMESPACE/NAME`), as
    /// Typha's `ConnectionRebalancingMode=kubernetes`: this replica's limit becomes its share
    /// (from the local cluster's Nodes and the Service's EndpointSlices, as the cache holds them)
    /// and agents above it are asked to move, one per second.
    #[arg(
        long,
        env = "MESHSYNC_REBALANCE_SERVICE",
        value_name = "NAMESPACE/NAME"
    )]
    rebalance_service: Option<String>,
    /// The port name of the agents' port in that Service's EndpointSlices.
    #[arg(long, default_value = "meshsync", env = "MESHSYNC_REBALANCE_PORT_NAME")]
    rebalance_port_name: String,
    /// The smallest share when rebalancing (Typha's lower limit).
    #[arg(
        long,
        default_value_t = 400,
        env = "MESHSYNC_REBALANCE_MIN_CONNECTIONS"
    )]
    rebalance_min_connections: usize,
    /// Also run the federated services controller (`meshsync federate`) in-process, subscribed to
    /// this server and writing into the same local datastore (`file:DIR`: under `DIR/generated/`;
    /// `kubernetes`: through the API with server-side apply).
    #[arg(long, env = "MESHSYNC_FEDERATION")]
    federation: bool,
    /// Read settings from this YAML file: serve's flags without `--` as keys
    /// (`max-connections: 5000`). Flags and `MESHSYNC_*` variables win over it.
    #[arg(long, env = "MESHSYNC_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective configuration (each setting, its value and where it came from;
    /// secrets redacted) and exit.
    #[arg(long)]
    print_config: bool,
}

impl ServeArgs {
    pub fn print_config(&self) -> bool {
        self.print_config
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.max_connections > 0,
        "--max-connections must be at least 1"
    );
    anyhow::ensure!(args.max_batch > 0, "--max-batch must be at least 1");
    anyhow::ensure!(
        args.max_sockets != Some(0),
        "--max-sockets must be at least 1"
    );
    let tls = args.tls.files()?;
    anyhow::ensure!(
        !(args.federation && tls.is_some()),
        "--federation with TLS on the agents' port is not supported yet: run `meshsync federate` with --tls-* flags beside the server"
    );
    // One set of counters for every source of the process (local and remote), on `/metrics`.
    let counters = std::sync::Arc::new(meshsync_datastore::SourceCounters::default());
    let server_config = server_config(&args, &counters)?;
    if let Some((old, new)) = meshsync_server::raise_open_file_limit() {
        info!(
            from = old,
            to = new,
            "raised the open-file limit to its hard limit"
        );
    }
    // The URL with the etcd flags: the one description the source, the mesh's duplicate check and
    // the federation controller all use (bad etcd flags fail the start here).
    let datastore = args.datastore.spec(|e| args.etcd.etcd_config(e))?;
    // The mesh asks the local source for the Secrets its RCCs name through this handle.
    let local_secrets = SecretWatches::default();
    let local = local_source(&datastore, &args, &counters, &local_secrets)?;
    let source = meshsync_mesh::mesh(
        local,
        MeshConfig {
            // An RCC pointing back at the local datastore is refused. The same kubeconfig as an
            // RCC's is recognised; another kubeconfig for this API server is not (its address is
            // only known once the kubeconfig is read); see ARCHITECTURE.md.
            local_identities: datastore.identities(),
            // Relative remote `filePath`s are resolved from the local file datastore's directory.
            base_dir: datastore.dir().map(PathBuf::from),
            limits: RemoteLimits {
                max_value_bytes: args.max_value_bytes,
                counters: counters.clone(),
            },
            local_secrets,
        },
    );
    let cache = SnapshotCache::spawn(
        source,
        CacheConfig {
            max_batch: args.max_batch,
            max_value_bytes: args.max_value_bytes,
            history: HistoryConfig {
                max_bytes: args.resume_history_bytes,
                max_age: super::seconds("--resume-history-age", args.resume_history_age, true)?,
            },
            ..CacheConfig::default()
        },
    );
    let supervised = cache.clone();
    let server = BoundServer::bind(cache, server_config).await?;
    let grpc_addr = server.grpc_addr()?;
    // The TLS files are read at each connection attempt, by the source and the controller alike.
    let federation = args
        .federation
        .then(|| super::federate::controller_datastore(&datastore));
    info!(grpc = %grpc_addr, typha = ?server.typha_addr(), health = ?server.health_addr(), metrics = ?server.metrics_addr(), version = meshsync_server::SERVER_VERSION,
        "meshsync serving");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let controller = federation.map(|datastore| spawn_controller(grpc_addr, datastore, &stop_rx));
    let mut writer_failed = None;
    let result = server
        .serve(async {
            tokio::select! {
                _ = super::shutdown_signal() => {}
                reason = supervised.supervisor().failed() => writer_failed = Some(reason),
            }
            let _ = stop_tx.send(true);
        })
        .await;
    let _ = stop_tx.send(true);
    if let Some(task) = controller {
        let _ = task.await;
    }
    result?;
    if let Some(reason) = writer_failed {
        error!(error = %reason, "meshsync stopped because the cache writer stopped");
        return Ok(ExitCode::FAILURE);
    }
    info!("meshsync stopped");
    Ok(ExitCode::SUCCESS)
}

/// `--remote-namespaces`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum RemoteNamespacesArg {
    Same,
    Distinct,
}

/// The server's configuration from the flags (the times checked here).
fn server_config(
    args: &ServeArgs,
    counters: &std::sync::Arc<meshsync_datastore::SourceCounters>,
) -> anyhow::Result<ServerConfig> {
    Ok(ServerConfig {
        listen: args.listen,
        typha_listen: args.typha_listen,
        typha_remote_namespaces: match args.remote_namespaces {
            RemoteNamespacesArg::Same => RemoteNamespaces::Same,
            RemoteNamespacesArg::Distinct => RemoteNamespaces::Distinct,
        },
        typha_v3_resource_versions: matches!(
            args.datastore,
            meshsync_datastore::DatastoreUrl::Kubernetes { .. }
        ),
        health_listen: (!args.no_health).then_some(args.health_listen),
        metrics_listen: args.metrics_listen,
        max_connections: args.max_connections,
        keepalive_interval: super::seconds("--keepalive-interval", args.keepalive_interval, true)?,
        keepalive_timeout: super::seconds("--keepalive-timeout", args.keepalive_timeout, true)?,
        handshake_timeout: super::seconds("--handshake-timeout", args.handshake_timeout, true)?,
        max_sockets: args.max_sockets,
        write_timeout: super::seconds("--write-timeout", args.write_timeout, true)?,
        max_backlog_bytes: args.max_backlog_bytes,
        source_counters: counters.clone(),
        tls: args.tls.files()?,
        shutdown_drain: super::seconds("--shutdown-drain", args.shutdown_drain, false)?,
        compression: args.compression == super::common::CompressionFlag::Zstd,
        rebalance: match &args.rebalance_service {
            None => None,
            Some(service) => {
                let (namespace, name) = service
                    .split_once('/')
                    .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "--rebalance-service must be NAMESPACE/NAME, got {service:?}"
                        )
                    })?;
                let mut config = meshsync_server::RebalanceConfig::new(namespace, name);
                config.port_name = args.rebalance_port_name.clone();
                config.lower = args.rebalance_min_connections;
                Some(config)
            }
        },
        ..ServerConfig::default()
    })
}

/// Starts the in-process federated services controller, subscribed to this server's gRPC
/// address (loopback when it listens on every address); it stops when `stop` turns true.
fn spawn_controller(
    grpc_addr: SocketAddr,
    datastore: LocalDatastore,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let ip = if grpc_addr.ip().is_unspecified() {
        if grpc_addr.is_ipv4() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        }
    } else {
        grpc_addr.ip()
    };
    let url = format!("http://{}", SocketAddr::new(ip, grpc_addr.port()));
    let mut agent = AgentConfig::new(url.clone());
    agent.servers = vec![url.clone()];
    agent.node_name = "meshsync-federation".into();
    let config = ControllerConfig::with_datastore(agent, datastore);
    info!(server = %url, "starting the in-process federated services controller");
    let mut stop = stop.clone();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = controller::run(config, shutdown).await {
            error!(error = %e, "the federated services controller stopped");
        }
    })
}

/// The local datastore's source. It must exist at start (a mistyped directory fails loudly);
/// once started it is retried like any source. A Kubernetes source watches the Secrets set in
/// `secrets`; the others list every Secret they hold.
fn local_source(
    datastore: &DatastoreSpec,
    args: &ServeArgs,
    counters: &std::sync::Arc<SourceCounters>,
    secrets: &SecretWatches,
) -> anyhow::Result<SourceStream> {
    datastore
        .check()
        .with_context(|| format!("local datastore {datastore}"))?;
    let common = SourceCommon {
        limits: ValueLimits::new(args.max_value_bytes),
        counters: counters.clone(),
        ..SourceCommon::new(LOCAL_CLUSTER.into())
    };
    info!(datastore = %datastore, "starting the local datastore");
    Ok(datastore.start_watching_secrets(common, secrets))
}
