//! The meshsync server: one protocol-neutral core ([`core`]: accept loop, admission, sessions,
//! the stream watcher, drain, counters) shared by every front end — today gRPC ([`grpc`]:
//! `Subscribe` streams of frames the cache encoded once, the unary `Status` and `Report`) — and
//! the health and metrics ports.

mod core;
mod grpc;
mod health;
mod http;
mod metrics;
mod small_file;
mod tls;
mod typha;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meshsync_cache::SnapshotCache;
use tokio::net::TcpListener;
use tracing::info;

pub use crate::core::accept::raise_open_file_limit;
pub use crate::core::connections::Connections;
pub use crate::core::rebalance::{RebalanceConfig, target as rebalance_target};
pub use crate::core::repairs::{MAX_PRIVATE_REPAIRS_PER_CLIENT, PRIVATE_REPAIR_SNAPSHOTS};
pub use grpc::frames::{
    FrameBuilder, GrpcFrames, MAX_UPDATES_PER_FRAME, hello_frame, status_frame,
};
pub use grpc::service::{
    CAPABILITY_RECONNECT, MAX_CAPABILITIES, MAX_CAPABILITY_BYTES, MAX_CLIENT_VERSION_BYTES,
    MAX_CLUSTER_NAME_BYTES, MAX_NODE_NAME_BYTES, MAX_REQUIRED_CLUSTERS, MAX_SUBSCRIPTION_BYTES,
    SERVER_VERSION, SyncService, check_subscribe_request,
};
pub use meshsync_typha::v1::remote::RemoteNamespaces;
pub use small_file::{MAX_SMALL_FILE_BYTES, read_small_file};
pub use tls::{TlsError, TlsFiles};

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// gRPC listen address (Typha's port 5473 by default).
    pub listen: SocketAddr,
    /// Typha's protocol, for Calico's own clients, on this address; `None`: off.
    pub typha_listen: Option<SocketAddr>,
    /// Typha's clients see v3 values with their resource version (the local datastore is
    /// Kubernetes, whose syncer keeps it; Calico's etcd syncer leaves it empty).
    pub typha_v3_resource_versions: bool,
    /// Whether remote pods count as members of the local namespace of the same name for Typha's
    /// clients (Felix's namespaced policies).
    pub typha_remote_namespaces: meshsync_typha::v1::remote::RemoteNamespaces,
    /// Health listen address (9098 by default); `None` disables the health endpoints.
    pub health_listen: Option<SocketAddr>,
    /// Prometheus `/metrics` listen address (off by default, as Typha; its port is 9093).
    pub metrics_listen: Option<SocketAddr>,
    /// Subscriptions above this number are refused with `RESOURCE_EXHAUSTED`.
    pub max_connections: usize,
    /// A client more than this many sequence numbers behind gets a coalesced difference.
    pub lag_limit: u64,
    /// HTTP/2 keepalive ping interval, to find dead peers; also Typha's ping interval.
    pub keepalive_interval: Duration,
    /// Time to wait for a keepalive ack (Typha: a pong) before closing the connection.
    pub keepalive_timeout: Duration,
    /// A connection that has not completed a request this long after it was accepted is closed
    /// (Typha: 10 s), so sockets that send nothing, or only the HTTP/2 preface, do not linger.
    /// Also the time a gRPC request body has to arrive whole, and a health or metrics request
    /// head (after the connection was accepted or its previous request answered).
    pub handshake_timeout: Duration,
    /// Most gRPC sockets open at once; further ones are accepted and closed at once. `None`
    /// derives it: `max_connections` plus 10 % (and 64) for tools, never more than the open-file
    /// limit leaves after a reserve for everything else the process needs (health, datastores).
    pub max_sockets: Option<usize>,
    /// A connection whose stream has data to send but has sent nothing for this long is closed
    /// (the peer stopped reading, even if it still answers HTTP/2 pings).
    pub write_timeout: Duration,
    /// A stream that is not keeping up and whose unsent backlog (bytes of changes between its
    /// position and the head) exceeds this releases the breadcrumbs it pins; when it is polled
    /// again it skips ahead with one coalesced difference.
    pub max_backlog_bytes: u64,
    /// What the sources refused (invalid values, malformed keys, refused files), shared with
    /// every source of the process; rendered on `/metrics`.
    pub source_counters: Arc<meshsync_model::SourceCounters>,
    /// TLS on the gRPC port (with client identity when a client CA is given); `None`: plaintext.
    pub tls: Option<tls::TlsFiles>,
    /// On shutdown, `/readiness` goes 503, the listener stops accepting, and the streams are
    /// closed (with `Reconnect`) spread over this period. Zero: all at once.
    pub shutdown_drain: Duration,
    /// Rebalance agents across the replicas of this Service (Typha's kubernetes mode): the limit
    /// follows this replica's share, and agents above it are asked to move.
    pub rebalance: Option<RebalanceConfig>,
    /// Most concurrent HTTP/2 streams one connection may open (an agent needs one, a tool a few):
    /// a client cannot multiply its weight by multiplexing. Refused streams get `REFUSED_STREAM`.
    pub max_streams_per_connection: u32,
    /// Offer zstd to agents that accept it (each frame compressed once, shared); `false`: every
    /// agent gets plain frames.
    pub compression: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 5473)),
            typha_listen: None,
            typha_v3_resource_versions: false,
            typha_remote_namespaces: Default::default(),
            health_listen: Some(SocketAddr::from(([0, 0, 0, 0], 9098))),
            metrics_listen: None,
            max_connections: 20_000,
            lag_limit: 100_000,
            keepalive_interval: Duration::from_secs(10),
            // Generous: the ping's answer queues behind whatever the peer has not read yet, and a
            // slow reader in the middle of a large snapshot is alive, not dead (Typha: 60 s).
            keepalive_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            max_sockets: None,
            // Typha's default write timeout.
            write_timeout: Duration::from_secs(120),
            max_backlog_bytes: 4 << 20,
            source_counters: Arc::default(),
            tls: None,
            shutdown_drain: Duration::ZERO,
            rebalance: None,
            max_streams_per_connection: 16,
            compression: true,
        }
    }
}

/// Errors starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("health server failed: {0}")]
    Health(std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
}

/// After the drain, how long the streams' last frames have to leave before every connection
/// still open is closed.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Thousands of agents may connect at once (after a restart); the default backlog of 128 would
/// overflow and leave them waiting for SYN retransmits.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds the gRPC listener with a deep accept queue.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Binds an HTTP listener (health, metrics) if an address is configured.
async fn bind_http(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, ServerError> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|source| ServerError::Bind { addr, source })
}

/// A server whose sockets are bound (so callers know the real ports) but not yet serving.
pub struct BoundServer {
    grpc: TcpListener,
    typha: Option<TcpListener>,
    health: Option<TcpListener>,
    metrics: Option<TcpListener>,
    config: ServerConfig,
    cache: SnapshotCache,
    connections: Arc<Connections>,
    tls: Option<Arc<tls::TlsReloader>>,
}

impl BoundServer {
    /// Binds the gRPC and health sockets.
    pub async fn bind(cache: SnapshotCache, config: ServerConfig) -> Result<Self, ServerError> {
        let grpc = listen(config.listen).map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
        let typha = match config.typha_listen {
            Some(addr) => Some(listen(addr).map_err(|source| ServerError::Bind { addr, source })?),
            None => None,
        };
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(tls::TlsReloader::new(files.clone())?)),
            None => None,
        };
        let health = bind_http(config.health_listen).await?;
        let metrics = bind_http(config.metrics_listen).await?;
        Ok(BoundServer {
            grpc,
            typha,
            health,
            metrics,
            config,
            cache,
            connections: Arc::new(Connections::default()),
            tls,
        })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> std::io::Result<SocketAddr> {
        self.grpc.local_addr()
    }

    /// The bound Typha address, if enabled.
    pub fn typha_addr(&self) -> Option<SocketAddr> {
        self.typha.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound health address, if enabled.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health.as_ref().and_then(|h| h.local_addr().ok())
    }

    /// The bound metrics address, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|h| h.local_addr().ok())
    }

    /// The connection counters, as `/metrics` renders them. For tests and examples only (feature
    /// `test-support`).
    #[cfg(feature = "test-support")]
    pub fn connections(&self) -> Arc<Connections> {
        self.connections.clone()
    }

    /// Serves until `shutdown` completes: builds the server core once and hands it to the
    /// front end.
    pub async fn serve(
        mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServerError> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let draining = Arc::new(core::drain::Draining::default());
        let (stop_accepting_tx, stop_accepting) = tokio::sync::watch::channel(false);
        let http_sockets = self.spawn_http_ports(&draining, &stop_rx);
        let streams = Arc::new(core::streams::Streams::default());
        let limit = Arc::new(core::rebalance::Limit::new(self.config.max_connections));
        self.spawn_watchers(&streams, &limit, &stop_rx);
        let accept = core::accept::AcceptConfig {
            listener: "agents",
            preface: None,
            max_sockets: core::accept::socket_cap(
                self.config.max_sockets,
                self.config.max_connections,
                http_sockets,
            ),
            handshake_timeout: self.config.handshake_timeout,
            tcp_keepalive: self.config.keepalive_interval,
        };
        info!(max_sockets = accept.max_sockets, handshake_timeout = ?accept.handshake_timeout,
            write_timeout = ?self.config.write_timeout,
            max_backlog_bytes = self.config.max_backlog_bytes, "connection limits");
        // Sessions never end by themselves, so tell them to stop first; then the front ends'
        // graceful shutdown can complete.
        let shutdown = drain_then_stop(
            shutdown,
            draining,
            stop_accepting_tx,
            streams.clone(),
            self.connections.clone(),
            self.config.shutdown_drain,
            stop_tx,
        );
        let core = Arc::new(core::ServerCore {
            cache: self.cache,
            connections: self.connections,
            max_connections: self.config.max_connections,
            limit,
            lag_limit: self.config.lag_limit,
            shutdown: stop_rx,
            stop_accepting,
            streams,
            tls: self.tls,
            accept,
        });
        info!(addr = %self.grpc.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            "gRPC server listening");
        let grpc = grpc::GrpcConfig {
            keepalive_interval: self.config.keepalive_interval,
            keepalive_timeout: self.config.keepalive_timeout,
            max_streams_per_connection: self.config.max_streams_per_connection,
            request_timeout: self.config.handshake_timeout,
            compression: self.config.compression,
        };
        if let Some(listener) = self.typha.take() {
            tokio::spawn(typha::serve(
                core.clone(),
                listener,
                typha::Settings {
                    v3_resource_versions: self.config.typha_v3_resource_versions,
                    remote_namespaces: self.config.typha_remote_namespaces,
                    handshake: self.config.handshake_timeout,
                    // Typha's defaults are the same 10 s and 60 s as HTTP/2's keepalive here.
                    ping_interval: self.config.keepalive_interval,
                    pong_timeout: self.config.keepalive_timeout,
                },
            ));
        }
        grpc::serve(core, self.grpc, grpc, shutdown)
            .await
            .map_err(ServerError::from)
    }

    /// Starts the health and metrics ports (each its own accept loop, [`http`]); returns how many
    /// sockets they may hold, which the agents' port leaves to them.
    fn spawn_http_ports(
        &mut self,
        draining: &Arc<core::drain::Draining>,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> usize {
        let health = self.health.take().map(|l| {
            let app = health::router(self.cache.clone(), draining.clone());
            (l, app, "health")
        });
        let metrics = self.metrics.take().map(|l| {
            let app = metrics::router(
                self.cache.clone(),
                self.connections.clone(),
                self.config.source_counters.clone(),
            );
            (l, app, "metrics")
        });
        let ports = [health, metrics];
        let sockets = ports.iter().flatten().count() * http::MAX_SOCKETS_PER_PORT;
        for (listener, app, what) in ports.into_iter().flatten() {
            let timeout = self.config.handshake_timeout;
            tokio::spawn(http::serve(listener, app, what, timeout, stop.clone()));
        }
        sockets
    }

    /// Starts the tasks beside the streams: the TLS files' reloader, the watcher of stalled
    /// streams and, when configured, the rebalancing governor.
    fn spawn_watchers(
        &self,
        streams: &Arc<core::streams::Streams>,
        limit: &Arc<core::rebalance::Limit>,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) {
        if let Some(tls) = &self.tls {
            tokio::spawn(tls.clone().watch(stop.clone()));
        }
        tokio::spawn(core::streams::watch(
            streams.clone(),
            self.cache.clone(),
            core::streams::WatchConfig {
                max_backlog_bytes: self.config.max_backlog_bytes,
                write_timeout: self.config.write_timeout,
            },
            self.connections.clone(),
            stop.clone(),
        ));
        if let Some(config) = self.config.rebalance.clone() {
            info!(service = %format!("{}/{}", config.service_namespace, config.service_name),
                port = %config.port_name, "rebalancing agents across the service's replicas");
            tokio::spawn(core::rebalance::govern(
                self.cache.clone(),
                config,
                self.config.max_connections,
                limit.clone(),
                streams.clone(),
                self.connections.clone(),
                stop.clone(),
            ));
        }
    }
}

/// The drain order once `shutdown` completes: readiness first, so load balancers and agents'
/// discovery stop sending new agents; then no new connections; then every stream, spread over the
/// drain period; then the streams are told to end, and a connection still open a moment later (a
/// request it never finishes, a peer that ignores GOAWAY) is closed, so nothing keeps the process
/// past its drain.
async fn drain_then_stop(
    shutdown: impl Future<Output = ()>,
    draining: Arc<core::drain::Draining>,
    stop_accepting: tokio::sync::watch::Sender<bool>,
    streams: Arc<core::streams::Streams>,
    connections: Arc<Connections>,
    period: Duration,
    stop: tokio::sync::watch::Sender<bool>,
) {
    shutdown.await;
    draining.begin();
    let _ = stop_accepting.send(true);
    core::drain::drain(&streams, &connections, period).await;
    info!("shutting down: ending every stream");
    let _ = stop.send(true);
    tokio::spawn(async move {
        tokio::time::sleep(CLOSE_GRACE).await;
        let left = connections.close_all();
        if left > 0 {
            info!(left, "drain over: closing the connections still open");
        }
    });
}
