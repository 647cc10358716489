//! The Typha front end: Typha's protocol on the core's accepted connections, so that Calico's
//! unmodified clients — Felix (`felix`), confd (`bgp`), calico-node's tunnel address allocator
//! (`tunnel-ip-allocation`) and status reporter (`node-status`) — can use meshsync in place of
//! Typha.
//!
//! What is Typha's own lives here: the per-connection protocol ([`connection`]: hello, server
//! hello, decoder restart into snappy, pings and pongs), the wire bytes ([`wire`], over
//! `meshsync-typha`'s gob and snappy), and the [`encoding`] of the cache's v3 resources as
//! Calico's v1 key/value pairs. Admission, sessions, the accept loop with TLS and every
//! per-connection protection are the core's, exactly as for gRPC.

pub(crate) mod connection;
pub(crate) mod encoding;
pub(crate) mod wire;

use std::sync::Arc;

use futures::StreamExt;
use tokio::net::TcpListener;
use tracing::info;

use crate::core::ServerCore;

pub(crate) use connection::Settings;

/// Serves Typha's protocol on `listener` until the core stops accepting; each connection then
/// ends with its session (drain, shutdown) or when the core closes it.
pub(crate) async fn serve(core: Arc<ServerCore>, listener: TcpListener, settings: Settings) {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    info!(addr = %addr, "Typha server listening");
    // Typha's protocol has no fixed first bytes to check (a gob stream starts with a length).
    let mut incoming = std::pin::pin!(core.incoming(listener, "typha", None));
    let mut stop = core.stop_accepting.clone();
    loop {
        let accepted = tokio::select! {
            accepted = incoming.next() => accepted,
            // Draining: the accept loop has closed the listener; the connections carry on.
            _ = stop.wait_for(|stop| *stop) => return,
        };
        match accepted {
            Some(Ok(io)) => {
                tokio::spawn(connection::serve(core.clone(), io, settings));
            }
            // The core's accept loop never yields an error; skip one if it ever did.
            Some(Err(_)) => {}
            None => return,
        }
    }
}
