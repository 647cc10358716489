//! The [`SnapshotCache`] handle: start the writer, read the head, follow breadcrumbs, and get a
//! new client's snapshot frames (computed once, shared by everyone who connects while current).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::Stream;
use meshsync_model::SourceEvent;
use meshsync_proto::{Compression, Frame, compression};
use tokio::sync::{Mutex, watch};
use tracing::debug;

use crate::anti_entropy::{AntiEntropyStats, BucketTable, layout_of};
use crate::breadcrumb::{Breadcrumb, Snapshot, snapshot_frames};
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
pub enum Repair {
    /// The `Replace` of the differing buckets and their entries, encoded for this stream.
    Buckets(Vec<Frame>),
    /// A `Replace` of every cluster as one bucket: the stream then sends the shared full
    /// snapshot and its status.
    Everything(Frame),
}

/// A snapshot's frames and the breadcrumb they were computed from.
#[derive(Clone)]
pub struct SharedSnapshot {
    /// The client continues with this breadcrumb's successors.
    pub crumb: Arc<Breadcrumb>,
    /// Every entry of `crumb.snapshot` that the subscription carries, as `New` updates.
    pub frames: Arc<[Frame]>,
    /// `frames` compressed with zstd: made once, by the first agent that asks for it, off the
    /// async workers; shared by every later one while this snapshot is reused.
    zstd_frames: Arc<tokio::sync::OnceCell<Arc<[Frame]>>>,
    built: Instant,
}

impl SharedSnapshot {
    /// The snapshot's frames as an agent that negotiated `compression` receives them.
    pub async fn frames_for(&self, compression: Compression) -> Arc<[Frame]> {
        match compression {
            Compression::None => self.frames.clone(),
            Compression::Zstd => self
                .zstd_frames
                .get_or_init(|| {
                    let frames = self.frames.clone();
                    async move {
                        match tokio::task::spawn_blocking(move || {
                            Arc::<[Frame]>::from(compression::compress_frames(frames.iter()))
                        })
                        .await
                        {
                            Ok(frames) => frames,
                            // Compression cannot fail; a panic there is a bug worth surfacing.
                            Err(e) => std::panic::resume_unwind(e.into_panic()),
                        }
                    }
                })
                .await
                .clone(),
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
    pub fn anti_entropy(
        &self,
        crumb: &Breadcrumb,
        sub: Subscription,
        mirror: &[meshsync_proto::BucketDigests],
        private: impl FnOnce(&AntiEntropyStats) -> bool,
    ) -> (Repair, AntiEntropyStats) {
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
            return (Repair::Everything(table.replace_all_frame()), size);
        }
        let (frames, stats) = table.repair_frames(&crumb.snapshot, mirror);
        (Repair::Buckets(frames), stats)
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

    /// A new client's snapshot for `sub`. Reuses the frames computed for an earlier client when
    /// they are of the current head, or younger than `snapshot_reuse`; otherwise encodes the head's
    /// snapshot once (off the async workers) while other new clients of `sub` wait for it.
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
        let crumb = head.clone();
        let frames: Arc<[Frame]> = match tokio::task::spawn_blocking(move || {
            snapshot_frames(&crumb.snapshot, sub)
        })
        .await
        {
            Ok(frames) => frames.into(),
            // Encoding cannot fail; a panic there is a bug worth surfacing, not hiding.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        self.inner
            .metrics
            .snapshots_generated
            .fetch_add(1, Ordering::Relaxed);
        debug!(subscription = %sub, seq = head.seq, frames = frames.len(), "snapshot encoded");
        let shared = SharedSnapshot {
            crumb: head,
            frames,
            zstd_frames: Arc::default(),
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
