//! What every client of the agents process records into: one latency histogram per shard of
//! clients (so clients rarely share a lock), the generation being counted, and the sync and
//! failure counters the progress lines report.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use hdrhistogram::Histogram;
use tokio::sync::Notify;
use tracing::warn;

use super::stall::StallControl;
use crate::model::{AgentsMessage, Latency};
use crate::workload::stamp;

/// Generation value meaning "no `reset` yet": nothing is counted.
pub(super) const NO_GENERATION: u64 = u64::MAX;
/// Latency histograms: shards, bounds and precision.
pub(super) const SHARDS: usize = 64;
pub(super) const MAX_LATENCY_US: u64 = 3_600_000_000;
pub(super) const SIGFIGS: u8 = 3;
/// Points of the CDF in a report.
pub(super) const CDF_POINTS: usize = 100;
/// First failures logged to stderr (the rest are only counted).
pub(super) const LOGGED_FAILURES: usize = 5;

pub(super) fn new_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGFIGS) {
        Ok(h) => h,
        // The bounds are constants that hdrhistogram accepts; never reached.
        Err(e) => unreachable!("invalid histogram bounds: {e:?}"),
    }
}

/// State shared by every client and the command loop.
pub(super) struct Recorder {
    /// The generation counted; read under a shard lock so `reset` cannot race a recording.
    pub(super) generation: AtomicU64,
    /// Latency histograms (µs); client `i` records into shard `i % SHARDS`.
    pub(super) shards: Box<[Mutex<Histogram<u64>>]>,
    pub(super) synced: AtomicUsize,
    pub(super) failed: AtomicUsize,
    /// Clients synced or failed (one counter, so exactly one client sees the last one).
    pub(super) finished: AtomicUsize,
    /// Synced clients that lost their connection and reconnected.
    pub(super) reconnects: AtomicUsize,
    pub(super) logged: AtomicUsize,
    pub(super) logged_reconnects: AtomicUsize,
    /// Seconds from `start` until each synced client held the snapshot.
    pub(super) sync_times: Mutex<Vec<f64>>,
    pub(super) start: Instant,
    pub(super) all_done: Notify,
    pub(super) n: usize,
    /// The `stalled` scenario's stalled clients and catch-up marker.
    pub(super) stall: StallControl,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Recorder {
    pub(super) fn new(n: usize) -> Self {
        Recorder {
            generation: AtomicU64::new(NO_GENERATION),
            shards: (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect(),
            synced: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            reconnects: AtomicUsize::new(0),
            logged: AtomicUsize::new(0),
            logged_reconnects: AtomicUsize::new(0),
            sync_times: Mutex::new(Vec::with_capacity(n)),
            start: Instant::now(),
            all_done: Notify::new(),
            n,
            stall: StallControl::new(n),
        }
    }

    /// Records the latency of every value stamped with the current generation, received at
    /// `now` (ns). One lock per call, so callers pass a whole batch.
    pub(super) fn record<'a>(
        &self,
        client: usize,
        now: u64,
        values: impl Iterator<Item = &'a [u8]>,
    ) {
        // A stalled client's deliveries are not the healthy clients' latency.
        if self.generation.load(Ordering::Relaxed) == NO_GENERATION || self.stall.is_stalled(client)
        {
            return;
        }
        let mut histogram = lock(&self.shards[client % SHARDS]);
        let generation = self.generation.load(Ordering::Relaxed);
        for value in values {
            if let Some((g, ts)) = stamp(value)
                && g == generation
            {
                histogram.saturating_record(now.saturating_sub(ts) / 1000);
            }
        }
    }

    pub(super) fn reset(&self, generation: u64) {
        self.generation.store(generation, Ordering::Relaxed);
        for shard in self.shards.iter() {
            lock(shard).reset();
        }
    }

    pub(super) fn merged(&self) -> Histogram<u64> {
        let mut total = new_histogram();
        for shard in self.shards.iter() {
            // Same bounds everywhere: adding cannot fail.
            let _ = total.add(&*lock(shard));
        }
        total
    }

    pub(super) fn received(&self) -> u64 {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    pub(super) fn mark_synced(&self) {
        let t = self.start.elapsed().as_secs_f64();
        lock(&self.sync_times).push(t);
        self.synced.fetch_add(1, Ordering::Relaxed);
        self.finished_one();
    }

    pub(super) fn mark_failed(&self, client: usize, error: &str) {
        if self.logged.fetch_add(1, Ordering::Relaxed) < LOGGED_FAILURES {
            warn!(client, "client failed: {error}");
        }
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.finished_one();
    }

    /// A synced client lost its connection (it reconnects; its resync is not counted).
    pub(super) fn lost_connection(&self, client: usize, error: &dyn std::fmt::Display) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
        if self.logged_reconnects.fetch_add(1, Ordering::Relaxed) < LOGGED_FAILURES {
            warn!(client, "synced client lost its connection: {error}");
        }
    }

    pub(super) fn finished_one(&self) {
        if self.finished.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.all_done.notify_one();
        }
    }

    pub(super) fn progress(&self) -> AgentsMessage {
        AgentsMessage::Progress {
            synced: self.synced.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            received: self.received(),
            stalled: self.stall.stalled(),
            caught_up: self.stall.caught_up(),
            reconnects: self.reconnects.load(Ordering::Relaxed),
        }
    }
}

/// The latency summary of `h` (µs), with [`CDF_POINTS`] log-spaced CDF points.
pub fn summarize(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    let lo = h.min().max(1);
    let hi = h.max().max(lo);
    let mut cdf: Vec<(u64, f64)> = Vec::with_capacity(CDF_POINTS + 1);
    let ratio = hi as f64 / lo as f64;
    for i in 0..CDF_POINTS {
        let x = lo as f64 * ratio.powf(i as f64 / (CDF_POINTS - 1) as f64);
        let v = (x.round() as u64).clamp(lo, hi);
        if cdf.last().is_some_and(|&(last, _)| last >= v) {
            continue;
        }
        cdf.push((v, h.quantile_below(v).min(1.0)));
    }
    if let Some(last) = cdf.last_mut() {
        last.1 = 1.0;
    }
    Latency {
        count: h.len(),
        p50_us: h.value_at_quantile(0.50),
        p90_us: h.value_at_quantile(0.90),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
        cdf,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{self, now_ns};

    #[test]
    fn latency_summary_of_a_histogram() {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let l = summarize(&h);
        assert_eq!(l.count, 10_000);
        assert!((4990..=5010).contains(&l.p50_us), "{}", l.p50_us);
        assert!((8990..=9010).contains(&l.p90_us), "{}", l.p90_us);
        assert!((9890..=9910).contains(&l.p99_us), "{}", l.p99_us);
        assert!((9980..=10_010).contains(&l.p999_us), "{}", l.p999_us);
        assert!((10_000..=10_010).contains(&l.max_us), "{}", l.max_us);
        assert!((60..=CDF_POINTS).contains(&l.cdf.len()), "{}", l.cdf.len());
        assert!(
            l.cdf
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
        );
        assert_eq!(l.cdf.first().map(|p| p.0), Some(1));
        assert_eq!(l.cdf.last().map(|p| p.1), Some(1.0));
        // Around the median, the CDF says one half.
        let mid = l.cdf.iter().find(|p| p.0 >= 5000).unwrap();
        assert!((0.45..0.6).contains(&mid.1), "{mid:?}");
        assert_eq!(summarize(&new_histogram()).count, 0);
        let mut one = new_histogram();
        one.record(42).unwrap();
        let l = summarize(&one);
        assert_eq!(l.cdf, vec![(42, 1.0)]);
    }

    #[test]
    fn only_the_current_generation_is_recorded_after_a_reset() {
        let shared = Recorder::new(2);
        let now = now_ns();
        let old = workload::value(1, 1, now - 5_000_000);
        let new = workload::value(2, 2, now - 3_000_000);
        shared.record(0, now, [&old[..], &new[..]].into_iter());
        assert_eq!(
            shared.received(),
            0,
            "nothing counts before the first reset"
        );
        shared.reset(2);
        shared.record(0, now, [&old[..], &new[..], b"{}"].into_iter());
        shared.record(65, now, std::iter::once(&new[..]));
        let h = shared.merged();
        assert_eq!(h.len(), 2);
        assert!((2990..=3010).contains(&h.max()), "{}", h.max());
        shared.reset(3);
        assert_eq!(shared.received(), 0);
    }
}
