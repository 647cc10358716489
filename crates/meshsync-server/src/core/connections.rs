//! Counting connected agents and refusing new ones above the limit.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::core::accept::{ConnState, RateLimit};

/// The number of streaming agents, shared by the service and the `Status` call, and the
/// counters of what the server did to protect itself (exported as metrics).
#[derive(Debug, Default)]
pub struct Connections {
    active: AtomicUsize,
    /// gRPC sockets open (streaming or not).
    pub(crate) sockets: AtomicUsize,
    /// Sockets closed at once because `max_sockets` were open.
    pub(crate) refused_sockets: AtomicU64,
    /// Connections closed for completing no request within the handshake timeout.
    pub(crate) closed_handshake: AtomicU64,
    /// Connections closed because a stream made no write progress within the write timeout.
    pub(crate) closed_stalled: AtomicU64,
    /// Times a stalled stream released the breadcrumbs it pinned.
    pub(crate) released: AtomicU64,
    /// The largest backlog (bytes of changes) any stream pinned at the last check.
    pub(crate) backlog_max: AtomicU64,
    /// Subscriptions accepted, refused at the connection limit, and asked to move (rebalancing).
    pub(crate) accepted: AtomicU64,
    pub(crate) refused_limit: AtomicU64,
    pub(crate) shed: AtomicU64,
    /// Subscriptions that resumed from the retained history, and that were sent a full snapshot.
    pub(crate) resumed: AtomicU64,
    pub(crate) full_snapshots: AtomicU64,
    /// Subscriptions repaired by anti-entropy (another epoch, with bucket digests).
    pub(crate) anti_entropy: AtomicU64,
    /// Private repairs in flight (per client and in total), and the repairs sent as the shared
    /// snapshot because that budget was taken.
    pub(crate) repairs: crate::core::repairs::RepairBudget,
    pub(crate) repairs_shared_fallback: AtomicU64,
    /// Connections refused for a failed TLS handshake (no TLS, wrong CA, identity not allowed,
    /// expired, timeout).
    pub(crate) refused_tls: AtomicU64,
    /// Plaintext connections whose first bytes were not the HTTP/2 preface (TLS, HTTP/1.x,
    /// garbage).
    pub(crate) refused_protocol: AtomicU64,
    pub(crate) refused_log: RateLimit,
    pub(crate) handshake_log: RateLimit,
    /// One rate limit per kind of TLS refusal, so each cause is logged (not once per packet).
    pub(crate) tls_log: [RateLimit; crate::tls::REFUSAL_KINDS],
    pub(crate) release_log: RateLimit,
    /// Every streaming agent and its last report.
    pub(crate) agents: Arc<crate::core::agents::AgentRegistry>,
    /// Agent reports refused: for a stream of another connection, or malformed.
    pub(crate) refused_reports: AtomicU64,
    pub(crate) report_log: RateLimit,
    /// Every accepted gRPC connection, so that the end of a drain closes what is left.
    open: Mutex<Vec<Weak<ConnState>>>,
}

/// Held by a stream while it is open; dropping it releases the slot.
#[derive(Debug)]
pub struct ConnectionGuard {
    connections: Arc<Connections>,
}

impl Connections {
    /// Takes a slot unless `limit` are already taken.
    pub fn try_acquire(self: &Arc<Self>, limit: usize) -> Option<ConnectionGuard> {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnectionGuard {
                connections: self.clone(),
            })
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// gRPC sockets currently open.
    pub fn sockets(&self) -> usize {
        self.sockets.load(Ordering::Acquire)
    }

    /// The largest number of bytes of changes a stream held behind the head at the last check.
    pub fn backlog_max(&self) -> u64 {
        self.backlog_max.load(Ordering::Relaxed)
    }

    /// Times a stalled stream released the breadcrumbs it pinned.
    pub fn released(&self) -> u64 {
        self.released.load(Ordering::Relaxed)
    }

    /// Connections closed by the write timeout.
    pub fn refused_tls(&self) -> u64 {
        self.refused_tls.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn closed_stalled(&self) -> u64 {
        self.closed_stalled.load(Ordering::Relaxed)
    }

    /// Remembers an accepted connection for [`Connections::close_all`].
    pub(crate) fn track(&self, conn: &Arc<ConnState>) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        // Forget closed connections whenever the list would grow: amortised O(1), and the list
        // stays within twice the open connections.
        if open.len() == open.capacity() {
            open.retain(|c| c.strong_count() > 0);
        }
        open.push(Arc::downgrade(conn));
    }

    /// Closes every gRPC connection still open (whatever its streams are doing); returns how
    /// many.
    pub(crate) fn close_all(&self) -> usize {
        let open = std::mem::take(&mut *self.open.lock().unwrap_or_else(|p| p.into_inner()));
        open.iter()
            .filter_map(Weak::upgrade)
            .map(|conn| conn.kill())
            .count()
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.connections.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_and_release() {
        let c = Arc::new(Connections::default());
        let a = c.try_acquire(2).unwrap();
        let _b = c.try_acquire(2).unwrap();
        assert!(c.try_acquire(2).is_none());
        drop(a);
        assert_eq!(c.active(), 1);
        assert!(c.try_acquire(2).is_some());
    }
}
