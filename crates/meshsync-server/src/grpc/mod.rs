//! The gRPC front end: `meshsync.v1.Sync` over HTTP/2 on the core's accepted connections.
//!
//! What is gRPC's own lives here: the HTTP/2 preface check, the routes that hand HTTP/2 the
//! shared frames without tonic's per-stream encoder ([`routes`]), the bound on request bodies
//! ([`request_body`]), the request checks, hello, `Status` and `Report` ([`service`]), and the
//! frames — plain and zstd — as the cache's [`meshsync_cache::Encoding`] ([`frames`]). Admission,
//! sessions, the accept loop and every per-connection protection are the core's
//! ([`crate::core`]).

pub(crate) mod frames;
pub(crate) mod request_body;
pub(crate) mod routes;
pub(crate) mod service;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::Connected;

use crate::core::ServerCore;
use crate::core::accept::{ConnState, GuardedIo, Preface};

/// The request extension tonic attaches for connections the core accepted.
#[derive(Clone, Debug)]
pub(crate) struct ConnInfo(pub(crate) Arc<ConnState>);

impl Connected for GuardedIo {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        ConnInfo(self.state.clone())
    }
}

/// What every HTTP/2 client sends first.
const PREFACE: Preface = Preface {
    bytes: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    protocol: "gRPC (HTTP/2)",
    refusal: not_http2,
};

/// Why bytes that are not the HTTP/2 preface were sent (for the one log line per cause).
fn not_http2(offset: usize, bytes: &[u8]) -> &'static str {
    if offset == 0 && bytes.starts_with(&[0x16, 0x03]) {
        return "a TLS client on the plaintext gRPC port (serve has no --tls-cert-file)";
    }
    if offset == 0
        && [
            &b"GET "[..],
            b"POST ",
            b"PUT ",
            b"HEAD ",
            b"DELETE ",
            b"OPTIONS ",
            b"PATCH ",
            b"CONNECT ",
        ]
        .iter()
        .any(|m| bytes.starts_with(m))
    {
        return "an HTTP/1.x request on the gRPC port";
    }
    "bytes that are not an HTTP/2 client preface (garbage)"
}

/// gRPC's own settings.
#[derive(Clone, Debug)]
pub(crate) struct GrpcConfig {
    pub(crate) keepalive_interval: Duration,
    pub(crate) keepalive_timeout: Duration,
    pub(crate) max_streams_per_connection: u32,
    /// Every request body must arrive whole this long after its request.
    pub(crate) request_timeout: Duration,
    /// Offer zstd to agents that accept it.
    pub(crate) compression: bool,
}

/// Serves gRPC on `listener` until `shutdown` completes (the core's drain order runs inside it).
pub(crate) async fn serve(
    core: Arc<ServerCore>,
    listener: TcpListener,
    config: GrpcConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    // The core's accept loop: TCP_NODELAY and keepalive per socket, the socket cap, backoff at
    // the open-file limit, TLS, the handshake timeout and the kill switch of stalled connections.
    let incoming = core.incoming(listener, "grpc", Some(PREFACE));
    let service = service::SyncService {
        core,
        compression: config.compression,
    };
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(config.keepalive_interval))
        .http2_keepalive_timeout(Some(config.keepalive_timeout))
        .max_concurrent_streams(Some(config.max_streams_per_connection))
        .add_service(routes::SyncRoutes::new(
            Arc::new(service),
            config.request_timeout,
        ))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
