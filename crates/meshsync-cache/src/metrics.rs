//! The cache's counters, kept apart from the handle and the writer because both update them: the
//! writer counts changes, the handle counts the snapshots it encodes or reuses. The server's
//! `/metrics` reads them.

use std::sync::atomic::AtomicU64;

/// Counters the cache keeps (rendered by the server's `/metrics`).
#[derive(Debug, Default)]
pub struct CacheMetrics {
    /// Changes accepted.
    pub updates: AtomicU64,
    /// Upserts dropped because the value was unchanged.
    pub skipped: AtomicU64,
    /// Upserts refused (too large).
    pub rejected: AtomicU64,
    /// Shared snapshots taken for new clients.
    pub snapshots_generated: AtomicU64,
    /// New clients served an already taken (and usually already encoded) snapshot.
    pub snapshots_reused: AtomicU64,
    /// Encodings of shared snapshots made (one per snapshot and encoding clients asked for).
    pub snapshot_encodings: AtomicU64,
}
