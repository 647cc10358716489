//! Graceful drain, as Typha's on SIGTERM: `/readiness` goes 503 first, the listener stops
//! accepting, and the open streams are closed one by one spread over the drain period — each
//! agent that advertised the capability is sent a `Reconnect` first, so it moves to another
//! replica at once — so agents land elsewhere without a reconnect storm.
//!
//! Spread as Typha: over 95 % of the drain period, but never slower than one stream per
//! [`MAX_INTERVAL`]; the streams snapshotted longest ago go first, the most recently snapshotted
//! last (they are the most expensive to move again).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tracing::info;

use crate::core::connections::Connections;
use crate::core::streams::Streams;

/// The slowest pace of a drain: one stream per second (Typha's `ShutdownMaxDropInterval`).
pub(crate) const MAX_INTERVAL: Duration = Duration::from_secs(1);

/// Shared by the health endpoint and the drain: true from the moment the drain begins.
#[derive(Debug, Default)]
pub(crate) struct Draining(AtomicBool);

impl Draining {
    pub(crate) fn begin(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Closes every open stream, spread over `period`, then waits (up to the end of `period`) for the
/// agents' connections to go.
pub(crate) async fn drain(streams: &Streams, connections: &Connections, period: Duration) {
    let start = Instant::now();
    let mut open = streams.open();
    open.sort_by_key(|s| s.snapshot_at());
    let n = open.len();
    let interval = if n == 0 {
        Duration::ZERO
    } else {
        (period.mul_f64(0.95) / u32::try_from(n).unwrap_or(u32::MAX)).min(MAX_INTERVAL)
    };
    info!(streams = n, period = ?period, interval = ?interval,
        "draining: readiness is 503, no new connections; closing streams one by one");
    for (i, stream) in open.iter().enumerate() {
        tokio::time::sleep_until(start + interval * u32::try_from(i).unwrap_or(u32::MAX)).await;
        stream.ask_to_leave();
    }
    let deadline = start + period.max(interval * u32::try_from(n).unwrap_or(u32::MAX));
    while connections.active() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    info!(
        left = connections.active(),
        took = ?start.elapsed(),
        "drain complete"
    );
}
