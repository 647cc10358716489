//! Encode once, per encoding: the cache memoizes what a front end makes of each breadcrumb and
//! each shared snapshot, without knowing any wire protocol.
//!
//! A front end describes its wire form as an [`Encoding`]: how a run of updates, a status and
//! (optionally) a bucket replacement become units it can send (gRPC frames, Typha messages). The
//! cache calls it at most once per (breadcrumb, encoding, subscription) and once per (shared
//! snapshot, encoding), by whichever stream gets there first, and hands every later stream the
//! same units. A derived encoding (the zstd twin of the gRPC frames) overrides
//! [`Encoding::breadcrumb`] and [`Encoding::snapshot`] to build on its base's memoized units
//! instead of encoding the updates again.
//!
//! Memo cells are indexed by an [`EncodingSlot`], handed out once per encoding at start-up: a
//! lookup on the hot path is two array indexes and a type check, no lock and no hashing.

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use meshsync_model::{ResourceKey, Revision, SUBSCRIPTION_COUNT, Subscription};

use crate::change::Change;
use crate::status::SyncStatus;

/// How many encodings one process may memoize (each has a slot). Beyond it an encoding still
/// works but encodes for every stream (one warning names it).
pub const MAX_ENCODINGS: usize = 8;

/// One update as an encoding sees it: borrowed from the breadcrumb or snapshot it comes from.
#[derive(Clone, Copy, Debug)]
pub struct UpdateRef<'a> {
    pub seq: u64,
    pub key: &'a ResourceKey,
    pub change: Change,
    /// The new value; callers pass the old one for deletes, encodings decide what to send.
    pub value: &'a Bytes,
    pub revision: &'a Revision,
}

/// What a run of updates is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batch {
    /// One breadcrumb's deltas in seq order; a receiver that applied them holds the cut at `seq`.
    Breadcrumb { seq: u64 },
    /// A snapshot or a coalesced difference: updates in key order, each key once.
    Unordered,
}

/// A cluster's buckets that anti-entropy replaces (see `anti_entropy.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplacedBuckets {
    pub cluster: String,
    /// The agent's bucket count for this cluster.
    pub buckets: u32,
    /// The replaced buckets' indexes.
    pub bucket: Vec<u32>,
}

/// A wire form of the cache's content. See the module documentation.
pub trait Encoding: Clone + Send + Sync + 'static {
    /// What the front end sends: a frame, a message's bytes.
    type Unit: Clone + Send + Sync + 'static;

    /// This encoding's memo slot (from [`EncodingSlot::allocate`], kept in a static).
    fn slot(&self) -> EncodingSlot;

    /// Encodes a run of updates.
    fn updates<'a>(
        &self,
        updates: impl Iterator<Item = UpdateRef<'a>>,
        batch: Batch,
    ) -> Vec<Self::Unit>;

    /// Encodes the status as an agent of `sub` sees it.
    fn status(&self, status: &SyncStatus, sub: Subscription) -> Self::Unit;

    /// Encodes anti-entropy's bucket replacement; `None` for protocols that have none (their
    /// streams never start with anti-entropy).
    fn replace(&self, _replaced: &[ReplacedBuckets]) -> Option<Self::Unit> {
        None
    }

    /// A breadcrumb's deltas for `sub`. Memoized by [`crate::Breadcrumb::encoded`].
    fn breadcrumb(&self, crumb: &crate::Breadcrumb, sub: Subscription) -> Vec<Self::Unit> {
        crate::breadcrumb::breadcrumb_units(self, crumb, sub)
    }

    /// Every entry of a shared snapshot as `New`. Memoized by [`crate::SharedSnapshot::encoded`];
    /// runs off the async workers.
    fn snapshot(&self, snapshot: &crate::SnapshotEncodings) -> Vec<Self::Unit> {
        crate::breadcrumb::snapshot_units(self, &snapshot.crumb.snapshot, snapshot.sub)
    }
}

/// An encoding's index into the memo tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodingSlot(usize);

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

impl EncodingSlot {
    /// A new slot for the encoding `name`: call once per encoding (keep it in a `static`).
    pub fn allocate(name: &'static str) -> EncodingSlot {
        let slot = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
        if slot >= MAX_ENCODINGS {
            tracing::warn!(
                encoding = name,
                max = MAX_ENCODINGS,
                "too many encodings to memoize; this one is encoded for every stream"
            );
        }
        EncodingSlot(slot)
    }

    fn index(self) -> Option<usize> {
        (self.0 < MAX_ENCODINGS).then_some(self.0)
    }
}

type Cell = OnceLock<Box<dyn Any + Send + Sync>>;

/// The memo of one value (a breadcrumb, a shared snapshot): per encoding, `width` cells (one per
/// subscription and kind of unit, or one), allocated when the first stream of that encoding asks,
/// so a breadcrumb costs one empty slot per encoding nobody uses, and nothing more when every
/// follower skipped it.
#[derive(Default)]
pub(crate) struct Memo {
    encodings: [OnceLock<Box<[Cell]>>; MAX_ENCODINGS],
}

impl Memo {
    fn cell(&self, slot: EncodingSlot, column: usize, width: usize) -> Option<&Cell> {
        self.encodings
            .get(slot.index()?)?
            .get_or_init(|| (0..width).map(|_| Cell::new()).collect())
            .get(column)
    }

    /// The memoized value of type `T` in (`slot`, `column`), made by `make` if there is none.
    pub(crate) fn get_or_make<T: Clone + Send + Sync + 'static>(
        &self,
        slot: EncodingSlot,
        column: usize,
        width: usize,
        make: impl Fn() -> T,
    ) -> T {
        let Some(cell) = self.cell(slot, column, width) else {
            return make();
        };
        let stored = cell.get_or_init(|| Box::new(make()));
        match stored.downcast_ref::<T>() {
            Some(value) => value.clone(),
            // Two encodings of different unit types would have to share a slot: impossible with
            // allocated slots, but never worth a panic.
            None => make(),
        }
    }

    /// The memoized value in (`slot`, `column`), if made.
    pub(crate) fn get<T: Clone + 'static>(
        &self,
        slot: EncodingSlot,
        column: usize,
        width: usize,
    ) -> Option<T> {
        self.cell(slot, column, width)?
            .get()?
            .downcast_ref::<T>()
            .cloned()
    }
}

/// Memo columns of a breadcrumb: deltas and status per subscription.
pub(crate) const BREADCRUMB_COLUMNS: usize = 2 * SUBSCRIPTION_COUNT;

/// A breadcrumb's memo column for `sub`'s deltas, and for its status.
pub(crate) fn deltas_column(sub: Subscription) -> usize {
    sub.index()
}
pub(crate) fn status_column(sub: Subscription) -> usize {
    SUBSCRIPTION_COUNT + sub.index()
}

/// Units shared by every stream that sends them.
pub type Units<U> = Arc<[U]>;

/// An encoding for the cache's own tests: units that say what they carry, so tests read them
/// without any wire protocol.
#[cfg(test)]
pub(crate) mod test_encoding {
    use std::sync::LazyLock;

    use super::*;

    /// One update as the test encoding records it.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub(crate) struct Recorded {
        pub(crate) cluster: String,
        pub(crate) kind: String,
        pub(crate) namespace: String,
        pub(crate) name: String,
        pub(crate) change: Change,
        pub(crate) value: Bytes,
    }

    #[derive(Clone, Debug, PartialEq, Eq)]
    pub(crate) enum Unit {
        Updates {
            batch: Batch,
            updates: Vec<Recorded>,
        },
        Status {
            keys: u64,
        },
        Replace(Vec<ReplacedBuckets>),
    }

    /// Cuts runs of updates into units of at most `per_unit`.
    #[derive(Clone)]
    pub(crate) struct TestEncoding {
        pub(crate) per_unit: usize,
    }

    static SLOT: LazyLock<EncodingSlot> = LazyLock::new(|| EncodingSlot::allocate("test"));

    impl Encoding for TestEncoding {
        type Unit = Unit;

        fn slot(&self) -> EncodingSlot {
            *SLOT
        }

        fn updates<'a>(
            &self,
            updates: impl Iterator<Item = UpdateRef<'a>>,
            batch: Batch,
        ) -> Vec<Unit> {
            let all: Vec<Recorded> = updates
                .map(|u| Recorded {
                    cluster: u.key.cluster().to_string(),
                    kind: u.key.kind().to_string(),
                    namespace: u.key.namespace().to_string(),
                    name: u.key.name().to_string(),
                    change: u.change,
                    value: u.value.clone(),
                })
                .collect();
            all.chunks(self.per_unit.max(1))
                .map(|c| Unit::Updates {
                    batch,
                    updates: c.to_vec(),
                })
                .collect()
        }

        fn status(&self, status: &SyncStatus, sub: Subscription) -> Unit {
            Unit::Status {
                keys: status.clusters.values().map(|c| c.view(sub).keys).sum(),
            }
        }

        fn replace(&self, replaced: &[ReplacedBuckets]) -> Option<Unit> {
            Some(Unit::Replace(replaced.to_vec()))
        }
    }

    /// A derived encoding: the test encoding's units, counted, built on its memo.
    #[derive(Clone)]
    pub(crate) struct Derived;

    static DERIVED: LazyLock<EncodingSlot> = LazyLock::new(|| EncodingSlot::allocate("derived"));

    impl Encoding for Derived {
        type Unit = usize;

        fn slot(&self) -> EncodingSlot {
            *DERIVED
        }

        fn updates<'a>(
            &self,
            updates: impl Iterator<Item = UpdateRef<'a>>,
            batch: Batch,
        ) -> Vec<usize> {
            vec![TestEncoding { per_unit: 2 }.updates(updates, batch).len()]
        }

        fn status(&self, _: &SyncStatus, _: Subscription) -> usize {
            0
        }

        fn breadcrumb(&self, crumb: &crate::Breadcrumb, sub: Subscription) -> Vec<usize> {
            vec![crumb.encoded(&TestEncoding { per_unit: 2 }, sub).len()]
        }
    }
}
