//! The [`SnapshotCache`] handle: start the writer, read the head, follow breadcrumbs, and get a
//! new client's snapshot (encoded once per encoding, shared by everyone who connects while
//! current).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::Stream;
use meshsync_model::SourceEvent;
use tokio::sync::{Mutex, watch};
use tracing::debug;

use crate::anti_entropy::{AntiEntropyStats, BucketTable, layout_of};
use crate::breadcrumb::{Breadcrumb, Snapshot};
use crate::encoding::{Encoding, Memo, Units};
use crate::history::{History, HistoryConfig};
use crate::metrics::CacheMetrics;
use crate::status::SyncStatus;
use crate::supervisor::Supervisor;
use crate::writer::Writer;
use meshsync_model::{SUBSCRIPTION_COUNT, Subscription};

/// Tuning knobs of the cache.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// Most source events applied in one batch (one breadcrumb).
    pub max_batch: usize,
    /// How long a computed snapshot is offered to newly connecting clients after a newer
    /// breadcrumb exists (Typha: 1 s). They catch up through the deltas.
    pub snapshot_reuse: Duration,
    /// Values larger than this are refused (logged; the previous value is kept).
    pub max_value_bytes: usize,
    /// Under load only (some stream found its next breadcrumb already published), the writer
    /// waits up to this long for more events before publishing, so that one breadcrumb carries
    /// many changes and every connection wakes once for them. A quiet cache never waits. Zero
    /// disables it.
    pub max_linger: Duration,
    /// The breadcrumbs kept for agents that resume (see [`HistoryConfig`]).
    pub history: HistoryConfig,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_batch: 1000,
            snapshot_reuse: Duration::from_secs(1),
            max_value_bytes: 1 << 20,
            max_linger: Duration::from_millis(2),
            history: HistoryConfig::default(),
        }
    }
}

/// A repair (a resume's coalesced difference, anti-entropy's differing buckets) is encoded for
/// one stream and held by it until sent, while a full snapshot's frames are shared by every
/// stream. A repair carrying more than this fraction (1/N) of the subscription's entries is
/// replaced by the shared full snapshot: a stream's private repair frames never exceed about half
/// the snapshot, however many streams ask, and the fallback never sends more than twice what the
/// repair would have.
pub const REPAIR_SHARE_DIVISOR: u64 = 2;

/// The most entries of `sub` a private repair may carry at `status`.
fn repair_limit(status: &SyncStatus, sub: Subscription) -> usize {
    let keys: u64 = status.clusters.values().map(|c| c.view(sub).keys).sum();
    usize::try_from(keys / REPAIR_SHARE_DIVISOR).unwrap_or(usize::MAX)
}

/// What anti-entropy sends a stream.
pub enum Repair<U> {
    /// The replacement of the differing buckets and their entries, encoded for this stream.
    Buckets(Vec<U>),
    /// A replacement of every cluster as one bucket: the stream then sends the shared full
    /// snapshot and its status.
    Everything(U),
}

/// A new client's snapshot: the breadcrumb it was taken at, shared by every client that connects
/// while it is current, with its encodings made once each.
#[derive(Clone)]
pub struct SharedSnapshot {
    /// The client continues with this breadcrumb's successors.
    pub crumb: Arc<Breadcrumb>,
    encodings: Arc<SnapshotEncodings>,
    built: Instant,
}

/// A shared snapshot's encodings: made by the first client that asks for each, off the async
/// workers, while later ones of the same encoding wait; shared by every later one.
pub struct SnapshotEncodings {
    /// The breadcrumb whose snapshot this is.
    pub crumb: Arc<Breadcrumb>,
    pub sub: Subscription,
    memo: Memo,
    /// Held while one encoding is made, so concurrent clients wait instead of encoding too.
    making: Mutex<()>,
    metrics: Arc<CacheMetrics>,
}

impl SnapshotEncodings {
    /// The snapshot in `encoding`, made here (blocking) if nobody made it yet. For derived
    /// encodings, from [`Encoding::snapshot`].
    pub fn encoded_blocking<E: Encoding>(&self, encoding: &E) -> Units<E::Unit> {
        self.memo.get_or_make(encoding.slot(), 0, 1, || {
            let units = Units::<E::Unit>::from(encoding.snapshot(self));
            self.metrics
                .snapshot_encodings
                .fetch_add(1, Ordering::Relaxed);
            debug!(subscription = %self.sub, seq = self.crumb.seq, units = units.len(),
                "snapshot encoded");
            units
        })
    }
}

impl SharedSnapshot {
    /// The snapshot's units in `encoding`: encoded once, by the first client that asks for them,
    /// off the async workers; shared by every later one while this snapshot is reused.
    pub async fn encoded<E: Encoding>(&self, encoding: &E) -> Units<E::Unit> {
        let encodings = &self.encodings;
        if let Some(units) = encodings.memo.get(encoding.slot(), 0, 1) {
            return units;
        }
        let _making = encodings.making.lock().await;
        // Made by the client that held the lock before: no trip to the blocking pool.
        if let Some(units) = encodings.memo.get(encoding.slot(), 0, 1) {
            return units;
        }
        let (encodings, encoding) = (encodings.clone(), encoding.clone());
        match tokio::task::spawn_blocking(move || encodings.encoded_blocking(&encoding)).await {
            Ok(units) => units,
            // Encoding cannot fail; a panic there is a bug worth surfacing, not hiding.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

struct Inner {
    head_rx: watch::Receiver<Arc<Breadcrumb>>,
    epoch: u64,
    config: CacheConfig,
    metrics: Arc<CacheMetrics>,
    snapshots: [Mutex<Option<SharedSnapshot>>; SUBSCRIPTION_COUNT],
    supervisor: Arc<Supervisor>,
    behind: Arc<AtomicU64>,
    history: Arc<History>,
    /// The last anti-entropy table per subscription type (see [`SnapshotCache::anti_entropy`]).
    bucket_tables: [std::sync::Mutex<Option<Arc<BucketTable>>>; SUBSCRIPTION_COUNT],
}

/// A cheap-to-clone handle on the cache.
#[derive(Clone)]
pub struct SnapshotCache {
    inner: Arc<Inner>,
}

impl SnapshotCache {
    /// Starts the writer task on `events` (the merged stream of every source) and returns the
    /// handle. The writer stops when `events` ends; followers then see the end of the chain.
    pub fn spawn<S>(events: S, config: CacheConfig) -> SnapshotCache
    where
        S: Stream<Item = SourceEvent> + Unpin + Send + 'static,
    {
        let epoch = rand::random::<u64>();
        let genesis = Arc::new(Breadcrumb::new(
            0,
            0,
            Snapshot::new(),
            Vec::new(),
            Arc::new(SyncStatus::new()),
            false,
        ));
        let (head_tx, head_rx) = watch::channel(genesis.clone());
        let metrics = Arc::new(CacheMetrics::default());
        let behind = Arc::new(AtomicU64::new(0));
        let history = Arc::new(History::new(config.history, genesis.clone()));
        let writer = Writer::new(genesis, head_tx, metrics.clone(), config.max_value_bytes)
            .with_linger(config.max_linger, behind.clone())
            .with_history(history.clone());
        let max_batch = config.max_batch.max(1);
        let supervisor = Arc::new(Supervisor::new());
        let task = tokio::spawn(writer.run(events, max_batch));
        let watcher = supervisor.clone();
        tokio::spawn(async move { watcher.watch(task).await });
        let cache = SnapshotCache {
            inner: Arc::new(Inner {
                head_rx,
                epoch,
                config,
                metrics,
                snapshots: std::array::from_fn(|_| Mutex::new(None)),
                supervisor,
                behind,
                history,
                bucket_tables: std::array::from_fn(|_| std::sync::Mutex::new(None)),
            }),
        };
        tokio::spawn(expire_snapshots(Arc::downgrade(&cache.inner)));
        cache
    }

    /// This server's epoch: a random number chosen at start-up; `(epoch, seq)` names a cut.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch
    }

    /// The newest breadcrumb.
    pub fn head(&self) -> Arc<Breadcrumb> {
        self.inner.head_rx.borrow().clone()
    }

    /// Where an agent that holds this server's state at `seq` (of this epoch) resumes: the newest
    /// retained breadcrumb at or before `seq`; a coalesced difference from its snapshot to the
    /// head brings the agent up to date. `None` when `seq` is older than the retained history or
    /// newer than the head (a token this server never issued).
    pub fn resume_point(&self, seq: u64) -> Option<Arc<Breadcrumb>> {
        if seq > self.head().seq {
            return None;
        }
        self.inner.history.at_or_before(seq)
    }

    /// The entries of a resume from `from` to the head for an agent of `sub`, when it is worth
    /// sending: its coalesced difference, made for this stream alone, carries at most a
    /// [`REPAIR_SHARE_DIVISOR`]th of the subscription's entries. Otherwise (`None`) the agent is
    /// better served by the full snapshot, which every stream shares. Stops counting at the limit,
    /// so this costs no more than the difference it allows.
    pub fn private_resume_size(&self, from: &Breadcrumb, sub: Subscription) -> Option<usize> {
        let head = self.head();
        let limit = repair_limit(&head.status, sub);
        let size = from
            .snapshot
            .diff(&head.snapshot)
            .filter(|item| {
                let key = match item {
                    imbl::ordmap::DiffItem::Add(k, _) | imbl::ordmap::DiffItem::Remove(k, _) => k,
                    imbl::ordmap::DiffItem::Update { new: (k, _), .. } => k,
                };
                sub.includes(key.kind())
            })
            .take(limit.saturating_add(1))
            .count();
        (size <= limit).then_some(size)
    }

    /// Anti-entropy against `crumb` for an agent of `sub` whose mirror is described by `mirror`:
    /// the `Replace` and the differing buckets' content — or, when those buckets hold more than a
    /// [`REPAIR_SHARE_DIVISOR`]th of the subscription's entries, a `Replace` of everything, to be
    /// followed by the shared full snapshot (a private copy of most of the snapshot per stream is
    /// what a hostile or badly out-of-date agent could otherwise make the server hold). The
    /// bucket table is built once per (breadcrumb, subscription, layout) and shared by every agent
    /// that asks for the same, so a storm of reconnecting agents costs one pass over the
    /// snapshot, not one each. A repair small enough is made only if `private` agrees, given its
    /// size (the caller's budget of private repairs); otherwise it is the `Replace` of everything.
    /// `None` when `encoding` has no bucket replacement ([`Encoding::replace`]).
    pub fn anti_entropy<E: Encoding>(
        &self,
        encoding: &E,
        crumb: &Breadcrumb,
        sub: Subscription,
        mirror: &[meshsync_proto::BucketDigests],
        private: impl FnOnce(&AntiEntropyStats) -> bool,
    ) -> Option<(Repair<E::Unit>, AntiEntropyStats)> {
        let layout = layout_of(mirror);
        let table = {
            let mut slot = self.inner.bucket_tables[sub.index()]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match slot.as_ref() {
                Some(t) if t.matches(crumb.seq, sub, &layout) => t.clone(),
                _ => {
                    let t = Arc::new(BucketTable::build(&crumb.snapshot, crumb.seq, sub, layout));
                    *slot = Some(t.clone());
                    t
                }
            }
        };
        let size = table.repair_size(mirror);
        let limit = (table.entries() as u64) / REPAIR_SHARE_DIVISOR;
        if size.sent as u64 > limit || !private(&size) {
            return Some((Repair::Everything(table.replace_all(encoding)?), size));
        }
        let (units, stats) = table.repair(encoding, &crumb.snapshot, mirror)?;
        Some((Repair::Buckets(units), stats))
    }

    /// The oldest sequence number an agent can resume from, and how many breadcrumbs are kept.
    pub fn history_span(&self) -> (u64, usize) {
        self.inner.history.span()
    }

    /// The newest status.
    pub fn status(&self) -> Arc<SyncStatus> {
        self.head().status.clone()
    }

    /// The writer's supervisor: whether (and why) the cache can no longer move forward.
    pub fn supervisor(&self) -> &Supervisor {
        &self.inner.supervisor
    }

    pub fn metrics(&self) -> &CacheMetrics {
        &self.inner.metrics
    }

    /// A follower that can wait for the breadcrumb after any given one.
    pub fn follower(&self) -> Follower {
        Follower {
            rx: self.inner.head_rx.clone(),
            behind: self.inner.behind.clone(),
        }
    }

    /// Waits until the overall state satisfies `pred` (or the cache stops). For tests, benches
    /// and examples only (feature `test-support`).
    #[cfg(feature = "test-support")]
    pub async fn wait_for_status(&self, pred: impl Fn(&SyncStatus) -> bool) -> bool {
        let mut rx = self.inner.head_rx.clone();
        rx.wait_for(|c| pred(&c.status)).await.is_ok()
    }

    /// A new client's snapshot for `sub`. Reuses the one taken for an earlier client (with every
    /// encoding made of it) when it is of the current head, or younger than `snapshot_reuse`;
    /// otherwise takes the head's. Its encodings are made on demand, once each
    /// ([`SharedSnapshot::encoded`]).
    pub async fn snapshot(&self, sub: Subscription) -> SharedSnapshot {
        let mut slot = self.inner.snapshots[sub.index()].lock().await;
        let head = self.head();
        if let Some(shared) = slot.as_mut() {
            // The status a new client is sent right after the snapshot must be the state as of
            // now: a status-only breadcrumb keeps the seq, so frames of the head's seq are the
            // head's data but not necessarily its status.
            let reuse = if shared.crumb.seq == head.seq {
                shared.crumb = head.clone();
                true
            } else {
                shared.built.elapsed() < self.inner.config.snapshot_reuse
                    && shared.crumb.status.same_states(&head.status)
            };
            if reuse {
                self.inner
                    .metrics
                    .snapshots_reused
                    .fetch_add(1, Ordering::Relaxed);
                return shared.clone();
            }
        }
        self.inner
            .metrics
            .snapshots_generated
            .fetch_add(1, Ordering::Relaxed);
        let shared = SharedSnapshot {
            encodings: Arc::new(SnapshotEncodings {
                crumb: head.clone(),
                sub,
                memo: Memo::default(),
                making: Mutex::new(()),
                metrics: self.inner.metrics.clone(),
            }),
            crumb: head,
            built: Instant::now(),
        };
        *slot = Some(shared.clone());
        shared
    }
}

/// Drops stored snapshots once they can no longer be reused, so a stored snapshot never pins the
/// breadcrumb chain behind it.
async fn expire_snapshots(inner: std::sync::Weak<Inner>) {
    loop {
        let period = match inner.upgrade() {
            Some(inner) => {
                let head_seq = inner.head_rx.borrow().seq;
                for slot in &inner.snapshots {
                    if let Ok(mut slot) = slot.try_lock()
                        && slot.as_ref().is_some_and(|s| {
                            s.crumb.seq != head_seq
                                && s.built.elapsed() >= inner.config.snapshot_reuse
                        })
                    {
                        *slot = None;
                    }
                }
                inner.config.snapshot_reuse.max(Duration::from_millis(100))
            }
            None => return,
        };
        tokio::time::sleep(period).await;
    }
}

/// Waits for breadcrumbs. Walking `next` links needs no lock; only a follower at the end of the
/// chain waits (on the head channel).
pub struct Follower {
    rx: watch::Receiver<Arc<Breadcrumb>>,
    /// Counts followers that found their next breadcrumb already published (they are behind);
    /// the writer reads it to tell load (linger, batch more) from a quiet cache.
    behind: Arc<AtomicU64>,
}

impl Follower {
    /// The breadcrumb after `crumb`, waiting if there is none yet. `None` once the cache stopped.
    pub async fn next(&mut self, crumb: &Breadcrumb) -> Option<Arc<Breadcrumb>> {
        let mut first = true;
        loop {
            // Mark the current head as seen *before* looking at the link: if the writer links and
            // announces after this point, `changed()` returns at once.
            drop(self.rx.borrow_and_update());
            if let Some(next) = crumb.next() {
                if first {
                    self.behind.fetch_add(1, Ordering::Relaxed);
                }
                return Some(next.clone());
            }
            first = false;
            if self.rx.changed().await.is_err() {
                return crumb.next().cloned();
            }
        }
    }

    /// Waits until a breadcrumb follows `crumb`, holding no reference to it while waiting: a
    /// stream that stops being polled here (its peer stopped reading while it was at the head)
    /// must not pin every later breadcrumb, which it would with an `Arc` held across the wait.
    /// Returns at once when `crumb` is gone. False once the cache stopped with nothing after
    /// `crumb`.
    pub async fn wait_past(&mut self, crumb: Weak<Breadcrumb>) -> bool {
        loop {
            drop(self.rx.borrow_and_update());
            match crumb.upgrade() {
                Some(c) if c.next().is_none() => {}
                _ => return true,
            }
            if self.rx.changed().await.is_err() {
                return crumb.upgrade().is_none_or(|c| c.next().is_some());
            }
        }
    }

    /// The newest breadcrumb.
    pub fn head(&self) -> Arc<Breadcrumb> {
        self.rx.borrow().clone()
    }
}
