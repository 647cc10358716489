//! The `meshsync.v1.Sync` routes, with `Subscribe` served without tonic's per-stream encoder.
//!
//! tonic encodes each response item into a per-stream buffer; with pre-encoded frames that is a
//! copy per agent, and the buffer keeps the size of the largest frame for the life of the
//! connection (tens of KiB per agent). `Subscribe` is therefore served here directly: the request is
//! decoded from its gRPC framing, and the response body hands HTTP/2 the shared, already
//! gRPC-framed [`Frame`] bytes (a reference-count bump per agent), ending with `grpc-status`
//! trailers. `Status` and anything else go to the generated tonic service.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use meshsync_proto::{self as pb, server::sync_server::SyncServer};
use prost::Message;
use tonic::Status;
use tonic::body::Body;
use tonic::server::NamedService;
use tower::Service;

use super::ConnInfo;
use crate::grpc::request_body::{BoundedBody, MAX_REQUEST_BYTES};
use crate::grpc::service::{FrameStream, SyncService};

const SUBSCRIBE_PATH: &str = "/meshsync.v1.Sync/Subscribe";

/// The service registered with tonic's router.
#[derive(Clone)]
pub struct SyncRoutes {
    service: Arc<SyncService>,
    generated: SyncServer<SyncService>,
    /// Every request body must have arrived whole this long after the request
    /// ([`crate::grpc::request_body`]).
    request_timeout: std::time::Duration,
}

impl SyncRoutes {
    pub fn new(service: Arc<SyncService>, request_timeout: std::time::Duration) -> Self {
        SyncRoutes {
            generated: SyncServer::from_arc(service.clone())
                .max_decoding_message_size(MAX_REQUEST_BYTES),
            service,
            request_timeout,
        }
    }
}

impl NamedService for SyncRoutes {
    const NAME: &'static str = "meshsync.v1.Sync";
}

impl Service<http::Request<Body>> for SyncRoutes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let conn = req.extensions().get::<ConnInfo>().map(|c| c.0.clone());
        let timeout = self.request_timeout;
        let req = req.map(|body| Body::new(BoundedBody::new(body, timeout, conn)));
        if req.uri().path() == SUBSCRIBE_PATH {
            let service = self.service.clone();
            Box::pin(async move { Ok(subscribe(service, req).await) })
        } else {
            let conn = req.extensions().get::<ConnInfo>().cloned();
            let mut generated = self.generated.clone();
            Box::pin(async move {
                let response = generated.call(req).await;
                // A request completed: the connection is past its handshake.
                if let Some(ConnInfo(conn)) = conn {
                    conn.handshake_done();
                }
                response
            })
        }
    }
}

async fn subscribe(service: Arc<SyncService>, req: http::Request<Body>) -> http::Response<Body> {
    let conn = req.extensions().get::<ConnInfo>().map(|c| c.0.clone());
    let peer = conn
        .as_ref()
        .map(|c| c.peer.to_string())
        .unwrap_or_default();
    let request = match read_request(req.into_body()).await {
        Ok(r) => r,
        Err(status) => return status.into_http(),
    };
    match service.open_stream(&peer, conn.clone(), request) {
        Ok(stream) => {
            // Only a subscription that is served ends the handshake: a client refused (unknown
            // type, limits, bad fields) is closed at the handshake timeout unless it tries again.
            if let Some(conn) = &conn {
                conn.handshake_done();
            }
            let mut response = http::Response::new(Body::new(FrameBody::new(stream)));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/grpc"),
            );
            response
        }
        Err(status) => status.into_http(),
    }
}

/// Reads one gRPC-framed `SubscribeRequest` from the request body.
async fn read_request(mut body: Body) -> Result<pb::SubscribeRequest, Status> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > MAX_REQUEST_BYTES + 5 {
                return Err(Status::resource_exhausted(format!(
                    "SubscribeRequest larger than {MAX_REQUEST_BYTES} bytes"
                )));
            }
            buf.extend_from_slice(&data);
        }
    }
    let mut bytes = buf.freeze();
    if bytes.len() < 5 {
        return Err(Status::invalid_argument("missing SubscribeRequest"));
    }
    let compressed = bytes.get_u8();
    let len = bytes.get_u32() as usize;
    if compressed != 0 {
        return Err(Status::unimplemented(
            "compressed requests are not supported",
        ));
    }
    if bytes.len() < len {
        return Err(Status::invalid_argument("truncated SubscribeRequest"));
    }
    pb::SubscribeRequest::decode(bytes.slice(..len))
        .map_err(|e| Status::invalid_argument(format!("malformed SubscribeRequest: {e}")))
}

/// The response body: shared frames as DATA, then `grpc-status` trailers.
///
/// Frames that are ready together (a connection that is behind, a breadcrumb of several frames)
/// go out as one DATA frame of up to [`COALESCE_BYTES`]: h2 writes each large DATA frame with its
/// own syscall, so one frame per ready batch costs one write instead of one per frame. That is one
/// copy of the shared bytes into the batch, never a re-encode; a frame of [`LARGE_FRAME`] or more
/// (a snapshot's) is passed through untouched, never copied per stream.
struct FrameBody {
    stream: FrameStream,
    /// A large frame taken from the stream while gathering small ones: sent next, on its own.
    large: Option<Bytes>,
    /// The trailers to send after the data already handed over (the stream ended while a batch
    /// was being gathered).
    held_trailers: Option<http::HeaderMap>,
    done: bool,
}

/// The most bytes gathered into one DATA frame (h2's default max frame size is 16 KiB; h2 splits
/// larger ones itself, still in one write).
const COALESCE_BYTES: usize = 64 * 1024;

/// Frames this large go out as they are: copying them would cost more than the write it saves,
/// and a copy per stream of a snapshot's frames would be memory per agent.
const LARGE_FRAME: usize = 16 * 1024;

impl FrameBody {
    fn new(stream: FrameStream) -> Self {
        FrameBody {
            stream,
            large: None,
            held_trailers: None,
            done: false,
        }
    }

    fn finish(
        &mut self,
        status: &Status,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.done = true;
        Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers(status)))))
    }
}

impl http_body::Body for FrameBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        if let Some(held) = self.held_trailers.take() {
            self.done = true;
            return Poll::Ready(Some(Ok(http_body::Frame::trailers(held))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        let first = match self.large.take() {
            Some(large) => large,
            None => match self.stream.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => frame.grpc_bytes(),
                Poll::Ready(Some(Err(status))) => return self.finish(&status),
                Poll::Ready(None) => return self.finish(&Status::ok("")),
            },
        };
        if first.len() >= LARGE_FRAME {
            return Poll::Ready(Some(Ok(http_body::Frame::data(first))));
        }
        let mut batch: Option<BytesMut> = None;
        while batch.as_ref().map_or(first.len(), BytesMut::len) < COALESCE_BYTES {
            match self.stream.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(frame))) if frame.grpc_bytes().len() >= LARGE_FRAME => {
                    self.large = Some(frame.grpc_bytes());
                    break;
                }
                Poll::Ready(Some(Ok(frame))) => {
                    let batch = batch.get_or_insert_with(|| {
                        let mut b = BytesMut::with_capacity(COALESCE_BYTES.min(4 * first.len()));
                        b.extend_from_slice(&first);
                        b
                    });
                    batch.extend_from_slice(&frame.grpc_bytes());
                }
                Poll::Ready(Some(Err(status))) => {
                    self.held_trailers = Some(trailers(&status));
                    break;
                }
                Poll::Ready(None) => {
                    self.held_trailers = Some(trailers(&Status::ok("")));
                    break;
                }
                Poll::Pending => break,
            }
        }
        let data = batch.map_or(first, BytesMut::freeze);
        Poll::Ready(Some(Ok(http_body::Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

fn trailers(status: &Status) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    if status.add_header(&mut map).is_err() {
        map.insert("grpc-status", http::HeaderValue::from_static("13"));
    }
    map
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::pin::Pin;

    use bytes::Bytes;
    use http_body::Body as _;
    use meshsync_proto::Frame;

    use super::{FrameBody, LARGE_FRAME};

    /// A frame whose encoded message is `n` bytes of `b`.
    fn frame(n: usize) -> Frame {
        Frame::encode(&Bytes::from(vec![7u8; n]))
    }

    async fn next_data(body: &mut FrameBody) -> Option<Bytes> {
        let frame = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await?;
        frame.ok()?.into_data().ok()
    }

    /// Small frames ready together leave as one DATA frame; a large one is never copied (its
    /// bytes are the shared frame's own), not even when it follows small ones.
    #[tokio::test]
    async fn small_frames_coalesce_and_large_ones_pass_untouched() {
        let (a, b, large, c) = (frame(10), frame(20), frame(LARGE_FRAME + 1), frame(30));
        let shared = large.grpc_bytes();
        let items = vec![a.clone(), b.clone(), large, c.clone()];
        let stream = futures::stream::iter(items.into_iter().map(Ok));
        let mut body = FrameBody::new(Box::pin(stream));
        let first = next_data(&mut body).await.expect("first batch");
        assert_eq!(first.len(), a.grpc_bytes().len() + b.grpc_bytes().len());
        let second = next_data(&mut body).await.expect("the large frame");
        assert_eq!(
            second.as_ptr(),
            shared.as_ptr(),
            "the large frame was copied"
        );
        assert_eq!(second.len(), shared.len());
        let third = next_data(&mut body).await.expect("the last frame");
        assert_eq!(third, c.grpc_bytes());
        // Then the trailers, then the end.
        let trailers = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert!(trailers.is_some_and(|f| f.is_ok_and(|f| f.is_trailers())));
        assert!(
            poll_fn(|cx| Pin::new(&mut body).poll_frame(cx))
                .await
                .is_none()
        );
    }
}
