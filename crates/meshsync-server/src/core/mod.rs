//! The server core every front end shares: one [`ServerCore`], built once in
//! [`crate::BoundServer::serve`] and handed to each front end.
//!
//! A front end (gRPC today, Typha's protocol next) only speaks its wire: it reads a client's
//! request, asks the core to [admit](ServerCore::admit) it, and puts the items of the core's
//! [session](admission::Admitted::session) on its wire in its own [`meshsync_cache::Encoding`]. Everything
//! that protects the server and its agents lives here, so it holds for any front end by
//! construction:
//!
//! - [`accept`]: the accept loop (socket cap, backoff at the open-file limit, TLS with client
//!   identity, handshake timeout, the kill switch of a stalled connection);
//! - [`admission`]: connection limit and rebalancing share, the agent registry, the
//!   resume / anti-entropy / full snapshot decision and its private-repair budget ([`repairs`]);
//! - [`session`]: the position machine (snapshot → follow → coalesced catch-up → leave or
//!   shutdown) that yields neutral items;
//! - [`streams`]: the watcher that bounds what a stalled session pins and applies the write
//!   timeout; [`drain`]: the shutdown order; [`connections`] and [`agents`]: the counters and the
//!   registry `/metrics` and `Status` read; [`rebalance`]: the share among replicas.

pub(crate) mod accept;
pub(crate) mod admission;
pub(crate) mod agents;
pub(crate) mod connections;
pub(crate) mod drain;
pub(crate) mod rebalance;
pub(crate) mod repairs;
pub(crate) mod session;
pub(crate) mod streams;

use std::sync::Arc;

use meshsync_cache::SnapshotCache;
use tokio::sync::watch;

pub(crate) use admission::{Applicant, SyncPath};
pub(crate) use session::SessionItem;

/// Most clusters an agent may name (`required_clusters`, a report's clusters), and the longest
/// name (a Kubernetes object name).
pub const MAX_REQUIRED_CLUSTERS: usize = 256;
pub const MAX_CLUSTER_NAME_BYTES: usize = 253;

/// What every front end shares. See the module documentation.
pub(crate) struct ServerCore {
    pub(crate) cache: SnapshotCache,
    pub(crate) connections: Arc<connections::Connections>,
    /// The configured connection limit (rebalancing may lower the one in force, `limit`).
    pub(crate) max_connections: usize,
    pub(crate) limit: Arc<rebalance::Limit>,
    /// A session more than this many sequence numbers behind gets a coalesced difference.
    pub(crate) lag_limit: u64,
    /// Becomes true when every session must end (after the drain).
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Becomes true when the front ends must stop accepting (the drain began).
    pub(crate) stop_accepting: watch::Receiver<bool>,
    pub(crate) streams: Arc<streams::Streams>,
    /// TLS for every agents' port, when configured (rotated files reloaded by one task).
    pub(crate) tls: Option<Arc<crate::tls::TlsReloader>>,
    /// The accept loop's limits, the same on every port.
    pub(crate) accept: accept::AcceptConfig,
}

impl ServerCore {
    /// A front end's listener as a stream of accepted, guarded connections (see [`accept`]).
    pub(crate) fn incoming(
        &self,
        listener: tokio::net::TcpListener,
        listener_name: &'static str,
        preface: Option<accept::Preface>,
    ) -> impl futures::Stream<Item = Result<accept::GuardedIo, std::io::Error>> + Send + use<> {
        let config = accept::AcceptConfig {
            listener: listener_name,
            preface,
            ..self.accept.clone()
        };
        accept::incoming(
            listener,
            config,
            self.connections.clone(),
            self.tls.clone(),
            self.stop_accepting.clone(),
        )
    }
}
