//! Breadcrumbs: the immutable, linked record of every batch the cache applied.
//!
//! Each batch the writer applies becomes one [`Breadcrumb`]: the snapshot after the batch (a
//! persistent map, O(1) to keep), the batch's deltas, the status, and a `next` link set once when
//! the following batch is published. Followers walk the chain without locks and wait only at its
//! end. Frames for the deltas and the status are encoded lazily, once per subscription type, by
//! whichever follower gets there first; every other follower sends the same bytes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use meshsync_model::{ResourceKey, Revision};
use meshsync_proto::{Compression, Frame, compression};

use crate::change::Change;
use crate::frames::{FrameBuilder, status_frame};
use crate::status::SyncStatus;
use meshsync_model::{SUBSCRIPTION_COUNT, Subscription};

/// What the cache holds for one key.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The object as JSON.
    pub value: Bytes,
    pub revision: Revision,
    /// `meshsync_proto::digest::entry_hash` of key and value.
    pub hash: u64,
    /// The sequence number of the change that produced this value.
    pub seq: u64,
}

impl PartialEq for Entry {
    /// Two entries of one key are the same version iff they came from the same change.
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq && self.hash == other.hash
    }
}

/// The cache's content at one point: every key of every cluster.
pub type Snapshot = imbl::OrdMap<ResourceKey, Entry>;

/// One change in a batch.
#[derive(Clone, Debug)]
pub struct Delta {
    pub seq: u64,
    pub key: ResourceKey,
    pub change: Change,
    /// The new value; empty for deletes.
    pub value: Bytes,
    pub revision: Revision,
}

/// Breadcrumbs alive in this process (created and not yet dropped), for metrics and tests: a
/// follower that pins the chain behind it shows up here.
static LIVE_BREADCRUMBS: AtomicUsize = AtomicUsize::new(0);

/// The number of breadcrumbs alive in this process.
pub fn live_breadcrumbs() -> usize {
    LIVE_BREADCRUMBS.load(Ordering::Relaxed)
}

/// Approximate bytes a delta holds (key, value, revision and bookkeeping), for backlog accounting.
fn delta_bytes(d: &Delta) -> u64 {
    const OVERHEAD: usize = 64;
    let key =
        d.key.cluster().len() + d.key.kind().len() + d.key.namespace().len() + d.key.name().len();
    (key + d.value.len() + d.revision.len() + OVERHEAD) as u64
}

/// One published batch. See the module documentation.
pub struct Breadcrumb {
    /// Everything up to and including this sequence number is in `snapshot`.
    pub seq: u64,
    /// Running total of [`delta_bytes`] over every batch up to and including this one: the
    /// difference between two crumbs is the size of the changes between them (what a follower at
    /// the older one still has to be sent, and pins).
    pub bytes: u64,
    pub snapshot: Snapshot,
    pub deltas: Vec<Delta>,
    pub status: Arc<SyncStatus>,
    /// True if the states in `status` differ from the previous breadcrumb's.
    pub status_changed: bool,
    pub created: Instant,
    frames: [OnceLock<Arc<[Frame]>>; SUBSCRIPTION_COUNT],
    /// `frames` compressed with zstd, once, for the agents that asked for it.
    zstd_frames: [OnceLock<Arc<[Frame]>>; SUBSCRIPTION_COUNT],
    status_frames: [OnceLock<Frame>; SUBSCRIPTION_COUNT],
    pub(crate) next: OnceLock<Arc<Breadcrumb>>,
}

impl Breadcrumb {
    pub(crate) fn new(
        seq: u64,
        prev_bytes: u64,
        snapshot: Snapshot,
        deltas: Vec<Delta>,
        status: Arc<SyncStatus>,
        status_changed: bool,
    ) -> Self {
        LIVE_BREADCRUMBS.fetch_add(1, Ordering::Relaxed);
        Breadcrumb {
            seq,
            bytes: prev_bytes + deltas.iter().map(delta_bytes).sum::<u64>(),
            snapshot,
            deltas,
            status,
            status_changed,
            created: Instant::now(),
            frames: std::array::from_fn(|_| OnceLock::new()),
            zstd_frames: std::array::from_fn(|_| OnceLock::new()),
            status_frames: std::array::from_fn(|_| OnceLock::new()),
            next: OnceLock::new(),
        }
    }

    /// The breadcrumb published after this one, if any yet.
    pub fn next(&self) -> Option<&Arc<Breadcrumb>> {
        self.next.get()
    }

    /// This batch's deltas for `sub`, encoded once and shared. Empty if none match.
    pub fn frames(&self, sub: Subscription) -> Arc<[Frame]> {
        self.frames[sub.index()]
            .get_or_init(|| {
                let mut builder = FrameBuilder::new();
                for d in self.deltas.iter().filter(|d| sub.includes(d.key.kind())) {
                    builder.push(d.seq, &d.key, d.change, &d.value, &d.revision);
                }
                builder.finish_at(self.seq).into()
            })
            .clone()
    }

    /// This batch's deltas for `sub` as an agent that negotiated `compression` receives them:
    /// compressed once (from the plain frames) and shared like them.
    pub fn frames_for(&self, sub: Subscription, compression: Compression) -> Arc<[Frame]> {
        match compression {
            Compression::None => self.frames(sub),
            Compression::Zstd => self.zstd_frames[sub.index()]
                .get_or_init(|| compression::compress_frames(self.frames(sub).iter()).into())
                .clone(),
        }
    }

    /// The status at this breadcrumb as `sub` sees it (its key counts and digests), encoded once.
    pub fn status_frame(&self, sub: Subscription) -> Frame {
        self.status_frames[sub.index()]
            .get_or_init(|| status_frame(&self.status.to_proto(sub)))
            .clone()
    }
}

impl Drop for Breadcrumb {
    /// Unlinks the chain iteratively: dropping the oldest crumb of a long chain that nobody else
    /// references must not recurse once per crumb.
    fn drop(&mut self) {
        LIVE_BREADCRUMBS.fetch_sub(1, Ordering::Relaxed);
        let mut next = self.next.take();
        while let Some(crumb) = next {
            match Arc::try_unwrap(crumb) {
                Ok(mut owned) => next = owned.next.take(),
                Err(_) => break,
            }
        }
    }
}

/// Frames that bring a client from nothing to `snapshot`, every entry as `New`.
pub fn snapshot_frames(snapshot: &Snapshot, sub: Subscription) -> Vec<Frame> {
    let mut builder = FrameBuilder::unordered();
    for (key, entry) in snapshot.iter().filter(|(k, _)| sub.includes(k.kind())) {
        builder.push(entry.seq, key, Change::New, &entry.value, &entry.revision);
    }
    builder.finish()
}

/// `frames` as an agent that negotiated `compression` receives them.
pub fn encode_for(frames: Vec<Frame>, compression: Compression) -> Vec<Frame> {
    match compression {
        Compression::None => frames,
        Compression::Zstd => compression::compress_frames(frames.iter()),
    }
}

/// Coalesced frames that bring a client holding `from` to `to`: the latest value of every key that
/// differs, never the intermediate ones. Shared structure is skipped, so this is cheap when the two
/// snapshots are close.
pub fn diff_frames(from: &Snapshot, to: &Snapshot, sub: Subscription) -> Vec<Frame> {
    let mut builder = FrameBuilder::unordered();
    for item in from.diff(to) {
        match item {
            imbl::ordmap::DiffItem::Add(k, e) if sub.includes(k.kind()) => {
                builder.push(e.seq, k, Change::New, &e.value, &e.revision)
            }
            imbl::ordmap::DiffItem::Update { new: (k, e), .. } if sub.includes(k.kind()) => {
                builder.push(e.seq, k, Change::Updated, &e.value, &e.revision)
            }
            imbl::ordmap::DiffItem::Remove(k, e) if sub.includes(k.kind()) => {
                builder.push(e.seq, k, Change::Deleted, &e.value, &e.revision)
            }
            _ => {}
        }
    }
    builder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshsync_proto::{self as pb, compression::decompress_batch, sync_event};
    use prost::Message;

    fn crumb(n: usize) -> Breadcrumb {
        let deltas = (0..n)
            .map(|i| Delta {
                seq: i as u64 + 1,
                key: ResourceKey::new("", "WorkloadEndpoint", "default", &format!("pod-{i}")),
                change: Change::New,
                value: Bytes::from(format!(
                    r#"{{"kind":"WorkloadEndpoint","metadata":{{"name":"pod-{i}"}},"spec":{{"node":"n{}"}}}}"#,
                    i % 3
                )),
                revision: "7".into(),
            })
            .collect();
        Breadcrumb::new(
            n as u64,
            0,
            Snapshot::new(),
            deltas,
            Arc::new(SyncStatus::default()),
            false,
        )
    }

    fn batch_of(frame: &Frame) -> pb::UpdateBatch {
        match pb::SyncEvent::decode(frame.message()).unwrap().event {
            Some(sync_event::Event::Updates(b)) => b,
            Some(sync_event::Event::Compressed(c)) => decompress_batch(&c, 1 << 20).unwrap(),
            other => panic!("not a batch: {other:?}"),
        }
    }

    #[test]
    fn compressed_frames_are_made_once_and_carry_the_plain_frames_batches() {
        let crumb = crumb(500);
        let sub = Subscription::FELIX;
        let plain = crumb.frames_for(sub, Compression::None);
        let zstd = crumb.frames_for(sub, Compression::Zstd);
        // Encode once, send many: every later stream gets the very same frames.
        assert!(Arc::ptr_eq(&plain, &crumb.frames(sub)));
        assert!(Arc::ptr_eq(
            &zstd,
            &crumb.frames_for(sub, Compression::Zstd)
        ));
        assert_eq!(plain.len(), zstd.len());
        for (p, z) in plain.iter().zip(zstd.iter()) {
            assert!(z.len() < p.len(), "{} !< {}", z.len(), p.len());
            assert_eq!(batch_of(p), batch_of(z));
        }
        // Deltas no subscriber of this type receives stay empty, compressed or not.
        assert!(
            crumb
                .frames_for(Subscription::BGP, Compression::Zstd)
                .is_empty()
        );
    }
}
