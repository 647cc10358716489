//! The `meshsync.v1.Sync` gRPC service.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use meshsync_cache::{SnapshotCache, Subscription, hello_frame};
use meshsync_proto::{self as pb, Frame, LogSafe, server::sync_server};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::client_stream::ClientStream;
use crate::connections::Connections;
use crate::incoming::{ConnInfo, ConnState};
use crate::repairs::RepairSlot;
use crate::streams::{Position, StreamShared, Streams};

/// The server's version string, sent in the hello and the `Status` response.
pub const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Implements `Subscribe` and `Status` on top of the cache.
pub struct SyncService {
    pub(crate) cache: SnapshotCache,
    pub(crate) connections: Arc<Connections>,
    pub(crate) max_connections: usize,
    /// The limit in force (rebalancing lowers it below `max_connections`).
    pub(crate) limit: Arc<crate::rebalance::Limit>,
    pub(crate) lag_limit: u64,
    /// Whether zstd may be negotiated.
    pub(crate) compression: bool,
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
    pub(crate) streams: Arc<Streams>,
}

/// Longest accepted `node_name`: a DNS name / Kubernetes node name.
pub const MAX_NODE_NAME_BYTES: usize = 253;
/// Longest accepted `client_version`.
pub const MAX_CLIENT_VERSION_BYTES: usize = 128;
/// Longest accepted `subscription` (the known types are far shorter).
pub const MAX_SUBSCRIPTION_BYTES: usize = 64;
/// Most `required_clusters` entries, and the longest one (a Kubernetes object name).
pub const MAX_REQUIRED_CLUSTERS: usize = 256;
pub const MAX_CLUSTER_NAME_BYTES: usize = 253;
/// The capability of agents that understand `Reconnect` (meshsync-agent's).
pub const CAPABILITY_RECONNECT: &str = "reconnect";

/// Most `capabilities` entries, and the longest one.
pub const MAX_CAPABILITIES: usize = 64;
pub const MAX_CAPABILITY_BYTES: usize = 64;
/// Most `accept_compression` entries (there are two algorithms; repeats are harmless but bounded).
pub const MAX_ACCEPT_COMPRESSION: usize = 8;

/// Refuses a request whose client-supplied strings are absurdly long or many, naming the field and
/// its limit. Runs before anything of the request is logged.
pub fn check_subscribe_request(req: &pb::SubscribeRequest) -> Result<(), Status> {
    let too_long = |field: &str, len: usize, limit: usize| {
        Status::invalid_argument(format!(
            "{field} is {len} bytes; the limit is {limit} bytes"
        ))
    };
    for (field, value, limit) in [
        ("node_name", &req.node_name, MAX_NODE_NAME_BYTES),
        (
            "client_version",
            &req.client_version,
            MAX_CLIENT_VERSION_BYTES,
        ),
        ("subscription", &req.subscription, MAX_SUBSCRIPTION_BYTES),
    ] {
        if value.len() > limit {
            return Err(too_long(field, value.len(), limit));
        }
    }
    for (field, values, count, limit) in [
        (
            "required_clusters",
            &req.required_clusters,
            MAX_REQUIRED_CLUSTERS,
            MAX_CLUSTER_NAME_BYTES,
        ),
        (
            "capabilities",
            &req.capabilities,
            MAX_CAPABILITIES,
            MAX_CAPABILITY_BYTES,
        ),
    ] {
        if values.len() > count {
            return Err(Status::invalid_argument(format!(
                "{field} has {} entries; the limit is {count}",
                values.len()
            )));
        }
        if let Some(v) = values.iter().find(|v| v.len() > limit) {
            return Err(too_long(&format!("{field} entry"), v.len(), limit));
        }
    }
    check_mirror_digests(&req.mirror)?;
    if req.accept_compression.len() > MAX_ACCEPT_COMPRESSION {
        return Err(Status::invalid_argument(format!(
            "accept_compression has {} entries; the limit is {MAX_ACCEPT_COMPRESSION}",
            req.accept_compression.len()
        )));
    }
    Ok(())
}

/// Most clusters in `SubscribeRequest.mirror`, and most buckets in all of them together.
pub const MAX_MIRROR_CLUSTERS: usize = MAX_REQUIRED_CLUSTERS;
pub const MAX_MIRROR_BUCKETS: usize = meshsync_proto::digest::MAX_TOTAL_BUCKETS;

/// An anti-entropy request's digests: bounded in clusters, buckets per cluster and in total.
fn check_mirror_digests(mirror: &[pb::BucketDigests]) -> Result<(), Status> {
    if mirror.len() > MAX_MIRROR_CLUSTERS {
        return Err(Status::invalid_argument(format!(
            "mirror has {} clusters; the limit is {MAX_MIRROR_CLUSTERS}",
            mirror.len()
        )));
    }
    let mut total = 0usize;
    for cluster in mirror {
        if cluster.cluster.len() > MAX_CLUSTER_NAME_BYTES {
            return Err(Status::invalid_argument(format!(
                "mirror cluster name is {} bytes; the limit is {MAX_CLUSTER_NAME_BYTES} bytes",
                cluster.cluster.len()
            )));
        }
        let n = cluster.digests.len();
        if n == 0 || n > meshsync_proto::digest::MAX_BUCKETS {
            return Err(Status::invalid_argument(format!(
                "mirror digests of a cluster: {n} buckets; between 1 and {} are accepted",
                meshsync_proto::digest::MAX_BUCKETS
            )));
        }
        total += n;
    }
    if total > MAX_MIRROR_BUCKETS {
        return Err(Status::invalid_argument(format!(
            "mirror has {total} buckets in all; the limit is {MAX_MIRROR_BUCKETS}"
        )));
    }
    Ok(())
}

/// The compression for a stream: zstd when the server offers it and the agent accepts it (unknown
/// algorithms in the agent's list are ignored, so newer agents can offer more).
fn negotiate(offer: bool, accepted: &[i32]) -> pb::Compression {
    if offer && accepted.contains(&(pb::Compression::Zstd as i32)) {
        pb::Compression::Zstd
    } else {
        pb::Compression::None
    }
}

/// `full` / `resume` / `anti-entropy`, for log lines.
fn path_name(path: pb::SyncPath) -> &'static str {
    match path {
        pb::SyncPath::Resume => "resume",
        pb::SyncPath::AntiEntropy => "anti-entropy",
        _ => "full",
    }
}

/// One agent's frames.
pub(crate) type FrameStream = Pin<Box<dyn Stream<Item = Result<Frame, Status>> + Send + 'static>>;

impl SyncService {
    /// Where a resuming agent continues from, with its reservation of a private repair (for the
    /// stream of `node` at `peer`), or why it gets a full snapshot.
    fn resume_point(
        &self,
        token: Option<&pb::ResumeToken>,
        sub: Subscription,
        peer: &str,
        node: &str,
    ) -> Result<(Arc<meshsync_cache::Breadcrumb>, RepairSlot), String> {
        let Some(token) = token else {
            return Err("no resume token".into());
        };
        if token.epoch != self.cache.epoch() {
            return Err("resume token of another server or an earlier run".into());
        }
        let from = self.cache.resume_point(token.seq).ok_or_else(|| {
            let (oldest, _) = self.cache.history_span();
            format!(
                "resume token seq {} is outside the retained history (seq {oldest} to {})",
                token.seq,
                self.cache.head().seq
            )
        })?;
        // The difference is encoded for this stream alone; the snapshot is shared.
        let Some(entries) = self.cache.private_resume_size(&from, sub) else {
            return Err(format!(
                "more than 1/{} of the snapshot changed since seq {}: the shared snapshot is cheaper",
                meshsync_cache::REPAIR_SHARE_DIVISOR,
                token.seq
            ));
        };
        let slot = self
            .connections
            .reserve_private_repair(
                peer,
                node,
                "resume",
                entries as u64,
                self.cache.head().status.total_keys(),
            )
            .map_err(|refusal| refusal.reason())?;
        Ok((from, slot))
    }

    /// Validates a subscription and opens its stream (hello, snapshot, status, live frames).
    pub(crate) fn open_stream(
        &self,
        peer: &str,
        conn: Option<Arc<ConnState>>,
        req: pb::SubscribeRequest,
    ) -> Result<FrameStream, Status> {
        if let Err(status) = check_subscribe_request(&req) {
            // Only the peer address and the reason: the oversized field itself is not logged.
            warn!(peer = %peer, error = %LogSafe(status.message()), "subscription refused");
            return Err(status);
        }
        let node = LogSafe(&req.node_name);
        let sub = Subscription::by_name(&req.subscription).map_err(|e| {
            warn!(peer = %peer, node = %node, error = %LogSafe(&e.to_string()),
                "subscription refused");
            Status::invalid_argument(e.to_string())
        })?;
        let limit = self.limit.get();
        let Some(guard) = self.connections.try_acquire(limit) else {
            self.connections
                .refused_limit
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            warn!(peer = %peer, node = %node, limit, max_connections = self.max_connections,
                "connection limit reached; subscription refused");
            let replicas = self
                .limit
                .replicas
                .load(std::sync::atomic::Ordering::Acquire);
            let share = if limit < self.max_connections && replicas > 1 {
                format!(", this replica's share among {replicas} replicas")
            } else {
                String::new()
            };
            let elsewhere = self
                .limit
                .elsewhere()
                .map(|a| format!(", e.g. {a}"))
                .unwrap_or_default();
            return Err(Status::resource_exhausted(format!(
                "server is at its connection limit ({limit}{share}); try another server{elsewhere}"
            )));
        };
        self.connections
            .accepted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let compression = negotiate(self.compression, &req.accept_compression);
        let resume = self.resume_point(req.resume.as_ref(), sub, peer, &node.to_string());
        let path = match &resume {
            Ok(_) => pb::SyncPath::Resume,
            Err(_) if !req.mirror.is_empty() => pb::SyncPath::AntiEntropy,
            Err(_) => pb::SyncPath::Full,
        };
        info!(peer = %peer, node = %node, subscription = %sub,
            client_version = %LogSafe(&req.client_version),
            compression = compression.as_str_name(), path = path_name(path),
            resume = resume.as_ref().err().map(|why| why.as_str()).unwrap_or("from the retained history"),
            "new subscription");
        let counter = match path {
            pb::SyncPath::Resume => &self.connections.resumed,
            pb::SyncPath::AntiEntropy => &self.connections.anti_entropy,
            _ => &self.connections.full_snapshots,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let registered =
            self.connections
                .agents
                .register(node.to_string(), peer.to_string(), sub, conn.clone());
        let hello = hello_frame(pb::Hello {
            epoch: self.cache.epoch(),
            server_version: SERVER_VERSION.to_string(),
            subscription: sub.name().to_string(),
            resumed: path == pb::SyncPath::Resume,
            compression: compression as i32,
            path: path as i32,
            stream_id: registered.id,
        });
        // The node is kept escaped: every later log line of this stream names it.
        let reconnect_capable = req.capabilities.iter().any(|c| c == CAPABILITY_RECONNECT);
        let shared = Arc::new(StreamShared::new(
            peer.to_string(),
            node.to_string(),
            conn,
            reconnect_capable,
        ));
        let repair = match resume {
            Ok((from, slot)) => {
                // The stream's first step sends one coalesced difference from there to the head.
                *shared.position() = Position::Released {
                    seq: from.seq,
                    snapshot: from.snapshot.clone(),
                };
                Some(slot)
            }
            Err(_) => None,
        };
        self.streams.register(&shared);
        let stream = ClientStream {
            shared,
            sub,
            compression,
            cache: self.cache.clone(),
            hello,
            mirror: (path == pb::SyncPath::AntiEntropy).then_some(req.mirror),
            repair,
            connections: self.connections.clone(),
            lag_limit: self.lag_limit,
            shutdown: self.shutdown.clone(),
            _guard: guard,
            _registered: registered,
        };
        Ok(Box::pin(stream.into_stream()))
    }
}

#[tonic::async_trait]
impl sync_server::Sync for SyncService {
    type SubscribeStream = FrameStream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        self.open_stream(&peer, None, request.into_inner())
            .map(Response::new)
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let head = self.cache.head();
        let asked = request.get_ref();
        let agents = if asked.agents {
            let limit = match usize::try_from(asked.agents_limit) {
                Ok(0) | Err(_) => crate::agents::MAX_LISTED_AGENTS,
                Ok(n) => n.min(crate::agents::MAX_LISTED_AGENTS),
            };
            self.connections.agents.list(head.seq, limit)
        } else {
            Vec::new()
        };
        Ok(Response::new(pb::StatusResponse {
            status: Some(head.status.to_proto(Subscription::ALL)),
            epoch: self.cache.epoch(),
            connections: u32::try_from(self.connections.active()).unwrap_or(u32::MAX),
            server_version: SERVER_VERSION.to_string(),
            agents,
            agents_total: u32::try_from(self.connections.agents.len()).unwrap_or(u32::MAX),
        }))
    }

    async fn report(
        &self,
        request: Request<pb::AgentReport>,
    ) -> Result<Response<pb::ReportAck>, Status> {
        use crate::agents::ReportError;
        // The connection it came on: only the stream's own may report for it.
        let conn = request.extensions().get::<ConnInfo>().map(|c| c.0.clone());
        let result = self
            .connections
            .agents
            .report(&self.cache, request.get_ref(), conn.as_ref());
        let status = match result {
            Ok(()) => return Ok(Response::new(pb::ReportAck {})),
            Err(e @ ReportError::UnknownStream(_)) => return Err(Status::not_found(e.to_string())),
            Err(e @ ReportError::NotOwner(_)) => Status::permission_denied(e.to_string()),
            Err(e) => Status::invalid_argument(e.to_string()),
        };
        self.connections
            .refused_reports
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(more) = self.connections.report_log.hit() {
            let peer = conn.map(|c| c.peer.to_string()).unwrap_or_default();
            warn!(peer = %peer, stream_id = request.get_ref().stream_id,
                error = %LogSafe(status.message()), also_refused_since_last_line = more,
                "report refused");
        }
        Err(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zstd_only_when_offered_and_accepted() {
        let zstd = pb::Compression::Zstd as i32;
        assert_eq!(negotiate(true, &[zstd]), pb::Compression::Zstd);
        assert_eq!(negotiate(true, &[99, zstd]), pb::Compression::Zstd);
        assert_eq!(negotiate(false, &[zstd]), pb::Compression::None);
        assert_eq!(negotiate(true, &[]), pb::Compression::None);
        assert_eq!(negotiate(true, &[99]), pb::Compression::None);
        let mut req = pb::SubscribeRequest {
            accept_compression: vec![zstd; MAX_ACCEPT_COMPRESSION],
            ..Default::default()
        };
        assert!(check_subscribe_request(&req).is_ok());
        req.accept_compression.push(zstd);
        assert!(check_subscribe_request(&req).is_err());
    }

    #[test]
    fn mirror_digests_are_bounded() {
        let cluster = |name: &str, n: usize| pb::BucketDigests {
            cluster: name.into(),
            digests: vec![0; n],
        };
        let req = |mirror| pb::SubscribeRequest {
            mirror,
            ..Default::default()
        };
        assert!(check_subscribe_request(&req(vec![cluster("", 1024), cluster("b", 1)])).is_ok());
        let refused = |r: pb::SubscribeRequest| {
            check_subscribe_request(&r)
                .unwrap_err()
                .message()
                .to_string()
        };
        assert!(refused(req(vec![cluster("", 0)])).contains("between 1 and"));
        assert!(
            refused(req(vec![cluster(
                "",
                meshsync_proto::digest::MAX_BUCKETS + 1
            )]))
            .contains("buckets")
        );
        assert!(refused(req(vec![cluster(&"x".repeat(300), 1)])).contains("cluster name"));
        let many: Vec<_> = (0..3).map(|i| cluster(&i.to_string(), 1 << 15)).collect();
        assert!(refused(req(many)).contains("in all"));
        let clusters: Vec<_> = (0..=MAX_MIRROR_CLUSTERS)
            .map(|i| cluster(&i.to_string(), 1))
            .collect();
        assert!(refused(req(clusters)).contains("clusters"));
    }
}
