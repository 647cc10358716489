//! Criterion micro-benchmarks of the cache's hot paths, with realistic ~1 KiB
//! Calico v3 WorkloadEndpoint JSON values:
//!
//! - `apply/*`: 1000 upserts into a cache holding 10k keys, end to end through
//!   `SnapshotCache::spawn` fed by a channel, until the head's seq reaches the batch's last seq;
//!   once as one burst (one batch, one breadcrumb) and once as a trickle (1000 single-event
//!   batches, so per-batch overhead shows).
//! - `frames/*`: encoding one 1000-delta batch with `FrameBuilder` (exactly what
//!   `Breadcrumb::frames` does, over a real breadcrumb's deltas; `frames` itself is memoized), and
//!   a new client's snapshot (`snapshot_units` in the gRPC encoding) of 10k and 100k keys.
//! - `diff/*`: `diff_units` between two 100k-key snapshots that differ in 1% of the keys (the
//!   coalesced catch-up a lagging client gets).
//!
//! Snapshots are taken from a running cache's head after loading keys through its input stream,
//! so they have the same shape (and structural sharing) as in production.
//!
//! `cargo bench --bench cache` for numbers; `cargo bench --bench cache -- --test` runs every
//! benchmark once as a smoke test.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use futures::channel::mpsc;
use meshsync_cache::{
    CacheConfig, Delta, Snapshot, SnapshotCache, Subscription, SyncState, diff_units,
    snapshot_units,
};
use meshsync_datastore::{ResourceKey, Revision, SourceEvent, SourceStatus};
use meshsync_server::{FrameBuilder, GrpcFrames};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Updates per measured batch.
const BATCH: usize = 1000;
/// Keys held by the cache that `apply` writes into.
const APPLY_KEYS: usize = 10_000;
/// Keys of the large snapshot.
const LARGE_KEYS: usize = 100_000;

// ---------------------------------------------------------------------------------------------
// Realistic data: Calico v3 WorkloadEndpoints as the Kubernetes datastore derives them from Pods.

#[path = "common/wep.rs"]
mod wep;
use wep::wep;

fn upsert(key: &ResourceKey, value: &Bytes, revision: u64) -> SourceEvent {
    SourceEvent::Upsert {
        key: key.clone(),
        value: value.clone(),
        revision: Revision::from(revision.to_string()),
    }
}

fn status(status: SourceStatus) -> SourceEvent {
    SourceEvent::Status {
        cluster: "".into(),
        status,
    }
}

// ---------------------------------------------------------------------------------------------
// A running cache fed by a channel.

struct LoadedCache {
    rt: tokio::runtime::Runtime,
    cache: SnapshotCache,
    tx: mpsc::UnboundedSender<SourceEvent>,
    keys: Vec<ResourceKey>,
}

impl LoadedCache {
    /// A cache on a current-thread runtime (so the numbers are one core's work, and a burst
    /// already in the channel is applied as one batch), loaded with `n` workload endpoints of
    /// generation 0 and in sync.
    fn new(n: usize) -> LoadedCache {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (tx, rx) = mpsc::unbounded();
        let cache = rt.block_on(async { SnapshotCache::spawn(rx, CacheConfig::default()) });
        let started = Instant::now();
        let mut keys = Vec::with_capacity(n);
        let mut value_bytes = 0;
        tx.unbounded_send(status(SourceStatus::ResyncInProgress))
            .unwrap();
        tx.unbounded_send(SourceEvent::ResyncStart { cluster: "".into() })
            .unwrap();
        for i in 0..n {
            let (key, value) = wep(i, 0);
            value_bytes += value.len();
            tx.unbounded_send(upsert(&key, &value, i as u64 + 1))
                .unwrap();
            keys.push(key);
        }
        tx.unbounded_send(SourceEvent::ResyncDone { cluster: "".into() })
            .unwrap();
        tx.unbounded_send(status(SourceStatus::InSync)).unwrap();
        let loaded = LoadedCache {
            rt,
            cache,
            tx,
            keys,
        };
        loaded.wait_seq(n as u64);
        assert_eq!(loaded.cache.status().overall, SyncState::InSync);
        assert_eq!(loaded.cache.status().total_keys(), n as u64);
        eprintln!(
            "(setup: {n} WorkloadEndpoints of {} JSON bytes on average loaded in {:.0?})",
            value_bytes / n,
            started.elapsed()
        );
        loaded
    }

    fn seq(&self) -> u64 {
        self.cache.head().seq
    }

    fn wait_seq(&self, seq: u64) {
        let ok = self
            .rt
            .block_on(self.cache.wait_for_status(|s| s.seq >= seq));
        assert!(ok, "cache stopped");
        assert_eq!(self.seq(), seq, "unexpected seq (deduplicated update?)");
    }

    /// Sends `events` and waits until the head reaches `target`; returns the elapsed time.
    async fn apply_timed(&self, events: Vec<SourceEvent>, target: u64, trickle: bool) -> Duration {
        let start = Instant::now();
        if trickle {
            // One event at a time: each is applied as its own batch (its own breadcrumb).
            let first = target + 1 - events.len() as u64;
            for (seq, event) in (first..=target).zip(events) {
                self.tx.unbounded_send(event).unwrap();
                self.cache.wait_for_status(|s| s.seq >= seq).await;
            }
        } else {
            for event in events {
                self.tx.unbounded_send(event).unwrap();
            }
            self.cache.wait_for_status(|s| s.seq >= target).await;
        }
        start.elapsed()
    }
}

/// Rewrites a rotating chunk of `BATCH` keys; every value differs from the one it replaces (the
/// chunk `round % chunks` alternates between generations 1 and 2, the initial load is 0).
struct Rewriter {
    values: [Vec<Bytes>; 2],
    round: usize,
}

impl Rewriter {
    fn new(n: usize) -> Rewriter {
        Rewriter {
            values: [1, 2].map(|g| (0..n).map(|i| wep(i, g).1).collect()),
            round: 0,
        }
    }

    fn next_batch(&mut self, keys: &[ResourceKey]) -> Vec<SourceEvent> {
        let chunks = keys.len() / BATCH;
        let chunk = self.round % chunks;
        let generation = (self.round / chunks) % 2;
        self.round += 1;
        (chunk * BATCH..(chunk + 1) * BATCH)
            .map(|i| upsert(&keys[i], &self.values[generation][i], 0))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Benchmarks.

fn bench_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(BATCH as u64));
    let mut state: Option<(LoadedCache, Rewriter)> = None;
    for (name, trickle) in [
        ("upsert_1000_into_10k_burst", false),
        ("upsert_1000_into_10k_trickle", true),
    ] {
        group.bench_function(name, |b| {
            let (loaded, rewriter) = state
                .get_or_insert_with(|| (LoadedCache::new(APPLY_KEYS), Rewriter::new(APPLY_KEYS)));
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let events = rewriter.next_batch(&loaded.keys);
                    let target = loaded.seq() + events.len() as u64;
                    total += loaded
                        .rt
                        .block_on(loaded.apply_timed(events, target, trickle));
                    assert_eq!(loaded.seq(), target);
                }
                total
            });
        });
    }
    if let Some((loaded, _)) = &state {
        let metrics = loaded.cache.metrics();
        assert_eq!(
            metrics.skipped.load(std::sync::atomic::Ordering::Relaxed),
            0,
            "every benchmarked upsert must change its value"
        );
    }
    group.finish();
}

/// Encodes deltas the way the gRPC encoding of a breadcrumb does.
fn encode_deltas(deltas: &[Delta], sub: Subscription) -> usize {
    let mut builder = FrameBuilder::new();
    for d in deltas.iter().filter(|d| sub.includes(d.key.kind())) {
        builder.push(d.seq, &d.key, d.change, &d.value, &d.revision);
    }
    builder.finish().len()
}

fn bench_frames(c: &mut Criterion) {
    let felix = Subscription::by_name("felix").unwrap();
    let mut group = c.benchmark_group("frames");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));

    // One real 1000-delta breadcrumb from a 10k-key cache, and that cache's snapshot.
    let mut small: Option<(Vec<Delta>, Snapshot)> = None;
    let mut small_data = || {
        small
            .get_or_insert_with(|| {
                let loaded = LoadedCache::new(APPLY_KEYS);
                let mut rewriter = Rewriter::new(APPLY_KEYS);
                let events = rewriter.next_batch(&loaded.keys);
                let target = loaded.seq() + events.len() as u64;
                loaded
                    .rt
                    .block_on(loaded.apply_timed(events, target, false));
                let head = loaded.cache.head();
                assert_eq!(head.deltas.len(), BATCH, "the burst is one breadcrumb");
                (head.deltas.clone(), head.snapshot.clone())
            })
            .clone()
    };

    group.throughput(Throughput::Elements(BATCH as u64));
    let mut deltas: Option<Vec<Delta>> = None;
    group.bench_function("frame_builder_1000_deltas", |b| {
        let deltas = deltas.get_or_insert_with(|| small_data().0);
        b.iter(|| black_box(encode_deltas(black_box(deltas), felix)));
    });

    group.throughput(Throughput::Elements(APPLY_KEYS as u64));
    let mut snapshot: Option<Snapshot> = None;
    group.bench_function("snapshot_frames_10k", |b| {
        let snapshot = snapshot.get_or_insert_with(|| small_data().1);
        b.iter(|| black_box(snapshot_units(&GrpcFrames::PLAIN, black_box(snapshot), felix).len()));
    });
    group.finish();

    let mut group = c.benchmark_group("frames_large");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(LARGE_KEYS as u64));
    group.bench_function("snapshot_frames_100k", |b| {
        let (snapshot, _) = large_snapshots();
        b.iter(|| black_box(snapshot_units(&GrpcFrames::PLAIN, black_box(snapshot), felix).len()));
    });
    group.finish();
}

/// A 100k-key snapshot, and the snapshot after 1% of its keys (spread at random over the key
/// space) got a new value; loaded once, only if a benchmark that needs them runs.
fn large_snapshots() -> &'static (Snapshot, Snapshot) {
    static LARGE: OnceLock<(Snapshot, Snapshot)> = OnceLock::new();
    LARGE.get_or_init(|| {
        let loaded = LoadedCache::new(LARGE_KEYS);
        let from = loaded.cache.head().snapshot.clone();
        let mut rng = StdRng::seed_from_u64(7);
        let picked = rand::seq::index::sample(&mut rng, LARGE_KEYS, LARGE_KEYS / 100);
        let target = loaded.seq() + picked.len() as u64;
        for i in picked.iter() {
            let (_, value) = wep(i, 1);
            loaded
                .tx
                .unbounded_send(upsert(&loaded.keys[i], &value, 0))
                .unwrap();
        }
        loaded.wait_seq(target);
        let to = loaded.cache.head().snapshot.clone();
        assert_eq!(to.len(), LARGE_KEYS);
        (from, to)
    })
}

fn bench_diff(c: &mut Criterion) {
    let felix = Subscription::by_name("felix").unwrap();
    let mut group = c.benchmark_group("diff");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("diff_frames_100k_1pct", |b| {
        let (from, to) = large_snapshots();
        b.iter(|| {
            black_box(diff_units(&GrpcFrames::PLAIN, black_box(from), black_box(to), felix).len())
        });
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_apply, bench_frames, bench_diff
}
criterion_main!(benches);
