//! The `meshsync.v1.Sync` gRPC service.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use meshsync_cache::{SnapshotCache, Subscription, hello_frame};
use meshsync_proto::{self as pb, Frame, server::sync_server};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::client_stream::ClientStream;
use crate::connections::Connections;

/// The server's version string, sent in the hello and the `Status` response.
pub const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Implements `Subscribe` and `Status` on top of the cache.
pub struct SyncService {
    pub(crate) cache: SnapshotCache,
    pub(crate) connections: Arc<Connections>,
    pub(crate) max_connections: usize,
    pub(crate) lag_limit: u64,
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
}

/// One agent's frames.
pub(crate) type FrameStream = Pin<Box<dyn Stream<Item = Result<Frame, Status>> + Send + 'static>>;

impl SyncService {
    /// Validates a subscription and opens its stream (hello, snapshot, status, live frames).
    pub(crate) fn open_stream(
        &self,
        peer: &str,
        req: pb::SubscribeRequest,
    ) -> Result<FrameStream, Status> {
        let sub = Subscription::by_name(&req.subscription).map_err(|e| {
            warn!(peer = %peer, node = %req.node_name, error = %e, "subscription refused");
            Status::invalid_argument(e.to_string())
        })?;
        let Some(guard) = self.connections.try_acquire(self.max_connections) else {
            warn!(peer = %peer, node = %req.node_name, limit = self.max_connections,
                "connection limit reached; subscription refused");
            return Err(Status::resource_exhausted(format!(
                "server is at its connection limit ({}); try another server",
                self.max_connections
            )));
        };
        info!(peer = %peer, node = %req.node_name, subscription = %sub,
            client_version = %req.client_version, "new subscription");
        let hello = hello_frame(pb::Hello {
            epoch: self.cache.epoch(),
            server_version: SERVER_VERSION.to_string(),
            subscription: sub.name().to_string(),
            resumed: false,
            compression: pb::Compression::None as i32,
        });
        let stream = ClientStream {
            node: req.node_name,
            sub,
            cache: self.cache.clone(),
            hello,
            lag_limit: self.lag_limit,
            shutdown: self.shutdown.clone(),
            _guard: guard,
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
        self.open_stream(&peer, request.into_inner())
            .map(Response::new)
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let status = self.cache.status();
        Ok(Response::new(pb::StatusResponse {
            status: Some(status.to_proto(Subscription::ALL)),
            epoch: self.cache.epoch(),
            connections: u32::try_from(self.connections.active()).unwrap_or(u32::MAX),
            server_version: SERVER_VERSION.to_string(),
        }))
    }
}
