//! The health and metrics HTTP/1.1 servers, with what `axum::serve` lacks against clients that
//! open sockets and never finish a request:
//! - a header-read timeout (the handshake timeout): a connection that has not sent a complete
//!   request head this long after it was accepted, or after its previous request, is closed;
//! - a socket cap per port ([`MAX_SOCKETS_PER_PORT`], counted out of the agents' port's share of
//!   the open-file limit). At the cap the newcomer is served and the oldest connection that is
//!   not in the middle of a request is closed instead — one that never completed a request first —
//!   so a kubelet probe still gets through while someone holds many slow sockets;
//! - the accept backoff of the gRPC listener ([`crate::core::accept::accept_with_backoff`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tower::ServiceExt;
use tracing::info;

use crate::core::accept::{RateLimit, accept_with_backoff};

/// Most sockets open at once on each HTTP port: kubelet probes and a few Prometheus scrapers need
/// a handful.
pub(crate) const MAX_SOCKETS_PER_PORT: usize = 32;

/// One open connection, as the cap sees it.
struct Slot {
    id: u64,
    /// The connection completed a request.
    served: Arc<AtomicBool>,
    /// Requests being handled now.
    busy: Arc<AtomicUsize>,
    /// Closes the connection.
    close: oneshot::Sender<()>,
}

/// The open connections of one port, oldest first.
#[derive(Default)]
struct Open {
    next_id: u64,
    slots: VecDeque<Slot>,
}

impl Open {
    /// The connection to close to make room: the oldest without a request in progress that never
    /// completed one, else the oldest without a request in progress.
    fn victim(&self) -> Option<usize> {
        let idle = |s: &Slot| s.busy.load(Ordering::Acquire) == 0;
        self.slots
            .iter()
            .position(|s| idle(s) && !s.served.load(Ordering::Acquire))
            .or_else(|| self.slots.iter().position(idle))
    }
}

/// Counts a request in progress while alive.
struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `app` on `listener` until `stop` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    what: &'static str,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let open = Arc::new(Mutex::new(Open::default()));
    let evict_log = RateLimit::new();
    let timeout_log = Arc::new(RateLimit::new());
    loop {
        let (socket, peer) = tokio::select! {
            accepted = accept_with_backoff(&listener, what) => accepted,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (id, closed, served, busy) = {
            let mut open = open.lock().unwrap_or_else(|p| p.into_inner());
            if open.slots.len() >= MAX_SOCKETS_PER_PORT {
                let Some(victim) = open.victim().and_then(|i| open.slots.remove(i)) else {
                    // Every connection is in the middle of a request: refuse the newcomer.
                    drop(socket);
                    continue;
                };
                let _ = victim.close.send(());
                if let Some(more) = evict_log.hit() {
                    info!(listener = what, max_sockets = MAX_SOCKETS_PER_PORT, peer = %peer,
                        also_closed_since_last_line = more,
                        "HTTP socket limit reached; closing the oldest connection without a request in progress");
                }
            }
            let id = open.next_id;
            open.next_id += 1;
            let (close, closed) = oneshot::channel();
            let served = Arc::new(AtomicBool::new(false));
            let busy = Arc::new(AtomicUsize::new(0));
            open.slots.push_back(Slot {
                id,
                served: served.clone(),
                busy: busy.clone(),
                close,
            });
            (id, closed, served, busy)
        };
        let app = app.clone();
        let open = open.clone();
        let timeout_log = timeout_log.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let conn = serve_connection(
                socket,
                peer,
                app,
                what,
                header_timeout,
                served,
                busy,
                &timeout_log,
            );
            // Closed to make room, or the server stops: the connection is dropped.
            tokio::select! {
                _ = conn => {}
                _ = closed => {}
                _ = stop.wait_for(|s| *s) => {}
            }
            let mut open = open.lock().unwrap_or_else(|p| p.into_inner());
            open.slots.retain(|s| s.id != id);
        });
    }
}

/// One connection until it ends, with the header-read timeout.
#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    what: &'static str,
    header_timeout: Duration,
    served: Arc<AtomicBool>,
    busy: Arc<AtomicUsize>,
    timeout_log: &RateLimit,
) {
    let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        busy.fetch_add(1, Ordering::AcqRel);
        let guard = Busy(busy.clone());
        let served = served.clone();
        let response = app.clone().oneshot(req);
        async move {
            let response = response.await;
            served.store(true, Ordering::Release);
            drop(guard);
            response
        }
    });
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(socket), service)
        .await;
    if let Err(e) = result
        && e.is_timeout()
        && let Some(more) = timeout_log.hit()
    {
        info!(listener = what, peer = %peer, also_closed_since_last_line = more,
            "closing an HTTP connection that sent no complete request head within the header timeout");
    }
}
