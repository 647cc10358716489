//! The `meshsync.v1.Sync` gRPC service: its request checks, the hello, and the session items as
//! frames and statuses. Admission and the session itself are the core's.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use meshsync_cache::Subscription;
use meshsync_proto::{self as pb, Frame, LogSafe, server::sync_server};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::ConnInfo;
use super::frames::{GrpcFrames, hello_frame};
use crate::core::accept::ConnState;
use crate::core::{Applicant, ServerCore, SessionItem, SyncPath};

/// The server's version string, sent in the hello and the `Status` response.
pub const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Implements `Subscribe`, `Status` and `Report` on the server core.
pub struct SyncService {
    pub(crate) core: Arc<ServerCore>,
    /// Whether zstd may be negotiated.
    pub(crate) compression: bool,
}

/// Longest accepted `node_name`: a DNS name / Kubernetes node name.
pub const MAX_NODE_NAME_BYTES: usize = 253;
/// Longest accepted `client_version`.
pub const MAX_CLIENT_VERSION_BYTES: usize = 128;
/// Longest accepted `subscription` (the known types are far shorter).
pub const MAX_SUBSCRIPTION_BYTES: usize = 64;
pub use crate::core::{MAX_CLUSTER_NAME_BYTES, MAX_REQUIRED_CLUSTERS};
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

impl From<SyncPath> for pb::SyncPath {
    fn from(path: SyncPath) -> Self {
        match path {
            SyncPath::Full => pb::SyncPath::Full,
            SyncPath::Resume => pb::SyncPath::Resume,
            SyncPath::AntiEntropy => pb::SyncPath::AntiEntropy,
        }
    }
}

/// One agent's frames.
pub(crate) type FrameStream = Pin<Box<dyn Stream<Item = Result<Frame, Status>> + Send + 'static>>;

/// A session item on gRPC's wire: a frame, or the status the stream ends with. An agent that
/// understands `Reconnect` is told why it should go and where; others get `UNAVAILABLE`.
fn item_to_grpc(item: SessionItem<Frame>, reconnect_capable: bool) -> Result<Frame, Status> {
    match item {
        SessionItem::Send(frame) => Ok(frame),
        SessionItem::Shutdown => Err(Status::unavailable("server is shutting down; reconnect")),
        SessionItem::Leave { reason, elsewhere } if reconnect_capable => {
            Ok(Frame::encode(&pb::SyncEvent {
                event: Some(pb::sync_event::Event::Reconnect(pb::Reconnect {
                    reason,
                    elsewhere,
                })),
            }))
        }
        SessionItem::Leave { reason, elsewhere } => Err(Status::unavailable(format!(
            "{reason}; reconnect to another replica{}",
            if elsewhere.is_empty() {
                String::new()
            } else {
                format!(" (e.g. {elsewhere})")
            }
        ))),
    }
}

impl SyncService {
    /// Validates a subscription, has the core admit it, and opens its stream (hello, snapshot,
    /// status, live frames).
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
        let node = LogSafe(&req.node_name).to_string();
        let sub = Subscription::by_name(&req.subscription).map_err(|e| {
            warn!(peer = %peer, node = %node, error = %LogSafe(&e.to_string()),
                "subscription refused");
            Status::invalid_argument(e.to_string())
        })?;
        let reconnect_capable = req.capabilities.iter().any(|c| c == CAPABILITY_RECONNECT);
        let admitted = self
            .core
            .admit(Applicant {
                peer,
                node: &node,
                sub,
                protocol: "grpc",
                conn,
                resume: req.resume.as_ref().map(|t| (t.epoch, t.seq)),
                has_mirror: !req.mirror.is_empty(),
                reconnect_capable,
            })
            .map_err(|refused| Status::resource_exhausted(refused.0))?;
        let compression = negotiate(self.compression, &req.accept_compression);
        let path = pb::SyncPath::from(admitted.path);
        info!(peer = %peer, node = %node, subscription = %sub,
            client_version = %LogSafe(&req.client_version),
            compression = compression.as_str_name(), path = admitted.path.name(),
            resume = admitted.not_resumed.as_deref().unwrap_or("from the retained history"),
            "new subscription");
        let hello = hello_frame(pb::Hello {
            epoch: admitted.epoch,
            server_version: SERVER_VERSION.to_string(),
            subscription: sub.name().to_string(),
            resumed: path == pb::SyncPath::Resume,
            compression: compression as i32,
            path: path as i32,
            stream_id: admitted.stream_id,
        });
        let session = admitted.session(
            &self.core,
            GrpcFrames::new(compression),
            vec![hello],
            Some(req.mirror),
        );
        Ok(Box::pin(
            session.map(move |item| item_to_grpc(item, reconnect_capable)),
        ))
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
        let (cache, connections) = (&self.core.cache, &self.core.connections);
        let head = cache.head();
        let asked = request.get_ref();
        let agents = if asked.agents {
            let limit = match usize::try_from(asked.agents_limit) {
                Ok(0) | Err(_) => crate::core::agents::MAX_LISTED_AGENTS,
                Ok(n) => n.min(crate::core::agents::MAX_LISTED_AGENTS),
            };
            connections.agents.list(head.seq, limit)
        } else {
            Vec::new()
        };
        Ok(Response::new(pb::StatusResponse {
            status: Some(head.status.to_proto(Subscription::ALL)),
            epoch: cache.epoch(),
            connections: u32::try_from(connections.active()).unwrap_or(u32::MAX),
            server_version: SERVER_VERSION.to_string(),
            agents,
            agents_total: u32::try_from(connections.agents.len()).unwrap_or(u32::MAX),
        }))
    }

    async fn report(
        &self,
        request: Request<pb::AgentReport>,
    ) -> Result<Response<pb::ReportAck>, Status> {
        use crate::core::agents::ReportError;
        // The connection it came on: only the stream's own may report for it.
        let conn = request.extensions().get::<ConnInfo>().map(|c| c.0.clone());
        let connections = &self.core.connections;
        let result = connections
            .agents
            .report(&self.core.cache, request.get_ref(), conn.as_ref());
        let status = match result {
            Ok(()) => return Ok(Response::new(pb::ReportAck {})),
            Err(e @ ReportError::UnknownStream(_)) => return Err(Status::not_found(e.to_string())),
            Err(e @ ReportError::NotOwner(_)) => Status::permission_denied(e.to_string()),
            Err(e) => Status::invalid_argument(e.to_string()),
        };
        connections
            .refused_reports
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(more) = connections.report_log.hit() {
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
