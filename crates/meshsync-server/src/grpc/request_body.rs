//! Bounds on request bodies a client sends but does not finish.
//!
//! A request is read whole before it is served (a `SubscribeRequest`, a `Report`, a `Status`
//! call; each up to [`MAX_REQUEST_BYTES`]). Without bounds a client that starts many requests on
//! one connection (up to the stream limit) and never finishes them makes the server hold what it
//! sent for as long as the connection lives. So every request body:
//! - must arrive completely within the request deadline (the handshake timeout, 10 s by
//!   default), else the request is refused with `DEADLINE_EXCEEDED` and what it sent is freed;
//! - counts against its connection's budget of request bytes read and not yet done with
//!   ([`MAX_CONNECTION_REQUEST_BYTES`]): past it, the request is refused with
//!   `RESOURCE_EXHAUSTED` at once.
//!
//! A refused request's stream is reset by HTTP/2 (its unread data discarded); the connection and
//! its other streams go on. Each cause is one rate-limited log line.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Sleep;
use tonic::Status;
use tonic::body::Body;
use tracing::info;

use crate::core::accept::{ConnState, RateLimit};

/// Largest accepted request message (Typha caps inbound messages at 1 MiB too).
pub(crate) const MAX_REQUEST_BYTES: usize = 1 << 20;

/// Request bytes one connection may have read and not yet done with: two of the largest requests
/// at once (with their gRPC framing); an agent's requests are a few KiB.
pub(crate) const MAX_CONNECTION_REQUEST_BYTES: usize = 2 * (MAX_REQUEST_BYTES + 5);

static DEADLINE_LOG: RateLimit = RateLimit::new();
static BUDGET_LOG: RateLimit = RateLimit::new();

/// A request body with a deadline, counted against its connection's budget.
pub(crate) struct BoundedBody {
    inner: Body,
    /// Until the body's end has arrived.
    deadline: Option<Pin<Box<Sleep>>>,
    conn: Option<Arc<ConnState>>,
    /// Bytes of this body counted in the connection's total (given back on drop).
    counted: usize,
}

impl BoundedBody {
    pub(crate) fn new(inner: Body, timeout: Duration, conn: Option<Arc<ConnState>>) -> Self {
        BoundedBody {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            conn,
            counted: 0,
        }
    }

    fn peer(&self) -> String {
        self.conn
            .as_ref()
            .map(|c| c.peer.to_string())
            .unwrap_or_default()
    }
}

impl http_body::Body for BoundedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if let Some(deadline) = this.deadline.as_mut()
                    && deadline.as_mut().poll(cx).is_ready()
                {
                    this.deadline = None;
                    if let Some(more) = DEADLINE_LOG.hit() {
                        info!(peer = %this.peer(), also_refused_since_last_line = more,
                            "refusing a request: request body not complete within the request deadline");
                    }
                    return Poll::Ready(Some(Err(Status::deadline_exceeded(
                        "request body not complete within the request deadline",
                    ))));
                }
                return Poll::Pending;
            }
        };
        match &frame {
            None => this.deadline = None,
            Some(Ok(frame)) => {
                if let (Some(conn), Some(data)) = (&this.conn, frame.data_ref()) {
                    let total = conn
                        .request_bytes
                        .fetch_add(data.len(), Ordering::AcqRel)
                        .saturating_add(data.len());
                    this.counted += data.len();
                    if total > MAX_CONNECTION_REQUEST_BYTES {
                        if let Some(more) = BUDGET_LOG.hit() {
                            info!(peer = %this.peer(), budget = MAX_CONNECTION_REQUEST_BYTES,
                                also_refused_since_last_line = more,
                                "refusing a request: request bodies of one connection above their budget");
                        }
                        return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                            "request bodies of this connection above {MAX_CONNECTION_REQUEST_BYTES} bytes"
                        )))));
                    }
                }
                if this.inner.is_end_stream() {
                    this.deadline = None;
                }
            }
            Some(Err(_)) => this.deadline = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for BoundedBody {
    fn drop(&mut self) {
        if let Some(conn) = &self.conn {
            conn.request_bytes.fetch_sub(self.counted, Ordering::AcqRel);
        }
    }
}
