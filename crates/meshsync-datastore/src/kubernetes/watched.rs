//! What one watcher of the Kubernetes source is for, and which keys its objects produced.
//!
//! A Kubernetes object does not map to one key: a Pod stands for a WorkloadEndpoint only while it
//! is networked, a Namespace for a Profile, a Node for several kinds. So each watch remembers, per
//! object (namespace, name), the keys it last sent. That is what lets a relist of one resource
//! (`Init` … `InitDone`) delete exactly the keys of the objects it no longer lists, and an object
//! whose conversion changes the keys it stands for delete the old ones — without comparing whole
//! snapshots. The bookkeeping is pure ([`Produced`]) so it is tested on its own.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use super::resources::WatchedResource;
use crate::ResourceKey;

/// An object of one watch: its (namespace, name).
pub(super) type ObjectId = (String, String);

/// What one watched stream is for.
pub(super) enum Target {
    Resource(WatchedResource),
    /// One Secret, watched by name (see [`super::secrets`]).
    Secret {
        namespace: String,
        name: String,
    },
}

/// One watched stream's state.
pub(super) struct Watched {
    /// Shared, so the per-object path takes it without copying the resource's names.
    pub(super) target: Arc<Target>,
    pub(super) produced: Produced,
    pub(super) listed_since: Option<Instant>,
    /// The first listing is complete (or, for a Secret, failed: it does not hold the sync).
    pub(super) initial_done: bool,
    /// The last error, while the stream is failing.
    pub(super) failed: Option<String>,
    /// The stream runs a streaming list (falls back to paged if the server refuses it).
    pub(super) streaming: bool,
}

impl Watched {
    pub(super) fn new(target: Target, streaming: bool) -> Self {
        Watched {
            target: Arc::new(target),
            produced: Produced::default(),
            listed_since: None,
            initial_done: false,
            failed: None,
            streaming,
        }
    }
}

/// Per object, the keys it produced as last sent; during a relist, the objects listed so far.
#[derive(Debug, Default)]
pub(super) struct Produced {
    by_object: HashMap<ObjectId, Vec<ResourceKey>>,
    relisting: Option<HashSet<ObjectId>>,
}

impl Produced {
    /// Records that `object` now produces `keys`; returns the keys it produced before and no
    /// longer does (to delete).
    pub(super) fn replace(&mut self, object: ObjectId, keys: Vec<ResourceKey>) -> Vec<ResourceKey> {
        let old = if keys.is_empty() {
            self.by_object.remove(&object)
        } else {
            self.by_object.insert(object, keys.clone())
        };
        old.unwrap_or_default()
            .into_iter()
            .filter(|k| !keys.contains(k))
            .collect()
    }

    /// `object` is gone: the keys it produced (to delete).
    pub(super) fn remove(&mut self, object: &ObjectId) -> Vec<ResourceKey> {
        self.by_object.remove(object).unwrap_or_default()
    }

    /// A relist begins.
    pub(super) fn begin_relist(&mut self) {
        self.relisting = Some(HashSet::new());
    }

    /// The relist listed `object`; how many objects it listed so far (`None` outside a relist).
    pub(super) fn listed(&mut self, object: ObjectId) -> Option<usize> {
        let set = self.relisting.as_mut()?;
        set.insert(object);
        Some(set.len())
    }

    /// The relist is complete: how many objects it listed, and the objects that produced keys
    /// before it and were not listed again (gone while the watch was not looking).
    pub(super) fn end_relist(&mut self) -> (usize, Vec<ObjectId>) {
        let listed = self.relisting.take().unwrap_or_default();
        let gone = self
            .by_object
            .keys()
            .filter(|object| !listed.contains(*object))
            .cloned()
            .collect();
        (listed.len(), gone)
    }

    /// Every key produced (the watch stops).
    pub(super) fn into_keys(self) -> impl Iterator<Item = ResourceKey> {
        self.by_object.into_values().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str) -> ObjectId {
        ("ns".to_string(), name.to_string())
    }

    fn key(kind: &str, name: &str) -> ResourceKey {
        ResourceKey::new("", kind, "ns", name)
    }

    #[test]
    fn a_relist_deletes_only_what_vanished() {
        let mut produced = Produced::default();
        for name in ["a", "b", "c"] {
            assert!(
                produced
                    .replace(object(name), vec![key("WorkloadEndpoint", name)])
                    .is_empty()
            );
        }
        produced.begin_relist();
        assert_eq!(produced.listed(object("a")), Some(1));
        assert_eq!(produced.listed(object("c")), Some(2));
        assert!(
            produced
                .replace(object("c"), vec![key("WorkloadEndpoint", "c")])
                .is_empty()
        );
        // A new object listed during the relist is not gone either.
        assert_eq!(produced.listed(object("d")), Some(3));
        produced.replace(object("d"), vec![key("WorkloadEndpoint", "d")]);
        let (listed, gone) = produced.end_relist();
        assert_eq!(listed, 3);
        assert_eq!(gone, vec![object("b")]);
        assert_eq!(
            produced.remove(&object("b")),
            vec![key("WorkloadEndpoint", "b")]
        );
        // Outside a relist nothing is counted; an empty relist finds every object gone.
        assert_eq!(produced.listed(object("a")), None);
        produced.begin_relist();
        let (listed, mut gone) = produced.end_relist();
        gone.sort();
        assert_eq!(listed, 0);
        assert_eq!(gone, vec![object("a"), object("c"), object("d")]);
    }

    #[test]
    fn changed_keys_delete_only_the_old_ones() {
        let mut produced = Produced::default();
        let both = vec![key("Node", "n"), key("HostEndpoint", "n")];
        assert!(produced.replace(object("n"), both).is_empty());
        assert_eq!(
            produced.replace(object("n"), vec![key("Node", "n")]),
            vec![key("HostEndpoint", "n")]
        );
        // An object that produces nothing any more is forgotten: its keys go, and a relist that
        // does not list it finds nothing to delete.
        assert_eq!(
            produced.replace(object("n"), vec![]),
            vec![key("Node", "n")]
        );
        produced.begin_relist();
        assert_eq!(produced.end_relist(), (0, vec![]));
        assert!(produced.remove(&object("n")).is_empty());
    }

    #[test]
    fn a_stopped_watch_yields_every_key() {
        let mut produced = Produced::default();
        produced.replace(object("a"), vec![key("Secret", "a")]);
        produced.replace(object("b"), vec![key("Profile", "b"), key("Profile", "c")]);
        let mut keys: Vec<ResourceKey> = produced.into_keys().collect();
        keys.sort();
        assert_eq!(keys.len(), 3);
    }
}
