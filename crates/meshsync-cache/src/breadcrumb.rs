//! Breadcrumbs: the immutable, linked record of every batch the cache applied.
//!
//! Each batch the writer applies becomes one [`Breadcrumb`]: the snapshot after the batch (a
//! persistent map, O(1) to keep), the batch's deltas, the status, and a `next` link set once when
//! the following batch is published. Followers walk the chain without locks and wait only at its
//! end. The deltas and the status are encoded lazily, once per (encoding, subscription type), by
//! whichever follower gets there first; every other follower sends the same units
//! ([`crate::encoding`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use meshsync_model::{ResourceKey, Revision};

use crate::change::Change;
use crate::encoding::{
    BREADCRUMB_COLUMNS, Batch, Encoding, Memo, Units, UpdateRef, deltas_column, status_column,
};
use crate::status::SyncStatus;
use meshsync_model::Subscription;

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
    /// The new value; for deletes, the last value the key had (encodings decide what to send).
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
    /// The deltas and the status as each encoding sends them, per subscription type.
    memo: Memo,
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
            memo: Memo::default(),
            next: OnceLock::new(),
        }
    }

    /// The breadcrumb published after this one, if any yet.
    pub fn next(&self) -> Option<&Arc<Breadcrumb>> {
        self.next.get()
    }

    /// This batch's deltas for `sub` in `encoding`, encoded once and shared by every stream.
    /// Empty if none match.
    pub fn encoded<E: Encoding>(&self, encoding: &E, sub: Subscription) -> Units<E::Unit> {
        self.memo.get_or_make(
            encoding.slot(),
            deltas_column(sub),
            BREADCRUMB_COLUMNS,
            || Units::<E::Unit>::from(encoding.breadcrumb(self, sub)),
        )
    }

    /// `encoded`, if some stream already made it (for derived encodings and tests).
    pub fn encoded_if_made<E: Encoding>(
        &self,
        encoding: &E,
        sub: Subscription,
    ) -> Option<Units<E::Unit>> {
        self.memo
            .get(encoding.slot(), deltas_column(sub), BREADCRUMB_COLUMNS)
    }

    /// The status at this breadcrumb as `sub` sees it (its key counts and digests) in `encoding`,
    /// encoded once.
    pub fn encoded_status<E: Encoding>(&self, encoding: &E, sub: Subscription) -> E::Unit {
        self.memo.get_or_make(
            encoding.slot(),
            status_column(sub),
            BREADCRUMB_COLUMNS,
            || encoding.status(&self.status, sub),
        )
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

/// A breadcrumb's deltas for `sub` in `encoding`, in seq order (what [`Encoding::breadcrumb`]
/// does unless an encoding derives its units from another's).
pub fn breadcrumb_units<E: Encoding>(
    encoding: &E,
    crumb: &Breadcrumb,
    sub: Subscription,
) -> Vec<E::Unit> {
    encoding.updates(
        crumb
            .deltas
            .iter()
            .filter(|d| sub.includes(d.key.kind()))
            .map(|d| UpdateRef {
                seq: d.seq,
                key: &d.key,
                change: d.change,
                value: &d.value,
                revision: &d.revision,
            }),
        Batch::Breadcrumb { seq: crumb.seq },
    )
}

/// Units that bring a client from nothing to `snapshot`, every entry of `sub` as `New`.
pub fn snapshot_units<E: Encoding>(
    encoding: &E,
    snapshot: &Snapshot,
    sub: Subscription,
) -> Vec<E::Unit> {
    encoding.updates(
        snapshot
            .iter()
            .filter(|(k, _)| sub.includes(k.kind()))
            .map(|(key, entry)| UpdateRef {
                seq: entry.seq,
                key,
                change: Change::New,
                value: &entry.value,
                revision: &entry.revision,
            }),
        Batch::Unordered,
    )
}

/// Coalesced units that bring a client holding `from` to `to`: the latest value of every key that
/// differs, never the intermediate ones. Shared structure is skipped, so this is cheap when the two
/// snapshots are close.
pub fn diff_units<E: Encoding>(
    encoding: &E,
    from: &Snapshot,
    to: &Snapshot,
    sub: Subscription,
) -> Vec<E::Unit> {
    let updates = from.diff(to).map(|item| match item {
        imbl::ordmap::DiffItem::Add(k, e) => (k, e, Change::New),
        imbl::ordmap::DiffItem::Update { new: (k, e), .. } => (k, e, Change::Updated),
        imbl::ordmap::DiffItem::Remove(k, e) => (k, e, Change::Deleted),
    });
    encoding.updates(
        updates
            .filter(|(k, _, _)| sub.includes(k.kind()))
            .map(|(key, e, change)| UpdateRef {
                seq: e.seq,
                key,
                change,
                value: &e.value,
                revision: &e.revision,
            }),
        Batch::Unordered,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::test_encoding::{Derived, TestEncoding, Unit};

    fn crumb(n: usize) -> Breadcrumb {
        let deltas = (0..n)
            .map(|i| Delta {
                seq: i as u64 + 1,
                key: ResourceKey::new("", "WorkloadEndpoint", "default", &format!("pod-{i}")),
                change: Change::New,
                value: Bytes::from(format!(r#"{{"metadata":{{"name":"pod-{i}"}}}}"#)),
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

    #[test]
    fn each_encoding_is_made_once_per_subscription_and_shared() {
        let crumb = crumb(5);
        let sub = Subscription::FELIX;
        let enc = TestEncoding { per_unit: 2 };
        assert!(crumb.encoded_if_made(&enc, sub).is_none());
        let units = crumb.encoded(&enc, sub);
        // Encode once, send many: every later stream gets the very same units.
        assert!(Arc::ptr_eq(&units, &crumb.encoded(&enc, sub)));
        assert_eq!(units.len(), 3);
        let Unit::Updates { batch, updates } = &units[2] else {
            panic!("not updates: {:?}", units[2]);
        };
        assert_eq!(*batch, Batch::Breadcrumb { seq: 5 });
        assert_eq!(updates[0].name, "pod-4");
        // A derived encoding builds on its base's memo: the base is not encoded again.
        assert_eq!(&crumb.encoded(&Derived, sub)[..], &[3]);
        assert!(Arc::ptr_eq(
            &units,
            &crumb.encoded_if_made(&enc, sub).unwrap()
        ));
        // Deltas no subscriber of this type receives stay empty.
        assert!(crumb.encoded(&enc, Subscription::BGP).is_empty());
        assert_eq!(crumb.encoded_status(&enc, sub), Unit::Status { keys: 0 });
    }

    #[test]
    fn differences_carry_the_latest_value_of_each_changed_key() {
        let entry = |v: &str, seq| Entry {
            value: Bytes::from(v.to_string()),
            revision: "1".into(),
            hash: seq,
            seq,
        };
        let key = |n: &str| ResourceKey::new("", "WorkloadEndpoint", "default", n);
        let mut from = Snapshot::new();
        from.insert(key("a"), entry("a1", 1));
        from.insert(key("b"), entry("b1", 2));
        from.insert(ResourceKey::new("", "BGPFilter", "", "f"), entry("f", 3));
        let mut to = from.clone();
        to.insert(key("a"), entry("a2", 4));
        to.remove(&key("b"));
        to.insert(key("c"), entry("c1", 5));
        to.remove(&ResourceKey::new("", "BGPFilter", "", "f"));
        let enc = TestEncoding { per_unit: 100 };
        let units = diff_units(&enc, &from, &to, Subscription::FELIX);
        let [Unit::Updates { batch, updates }] = &units[..] else {
            panic!("{units:?}");
        };
        assert_eq!(*batch, Batch::Unordered);
        let got: Vec<_> = updates
            .iter()
            .map(|u| (u.name.as_str(), u.change, u.value.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", Change::Updated, Bytes::from("a2")),
                ("b", Change::Deleted, Bytes::from("b1")),
                ("c", Change::New, Bytes::from("c1")),
            ]
        );
        let snapshot = snapshot_units(&enc, &to, Subscription::FELIX);
        assert_eq!(snapshot.len(), 1);
    }
}
