//! Resource keys: `(cluster, kind, namespace, name)`, cluster names and revisions.

use std::fmt;
use std::sync::Arc;

/// A cluster's name: `""` for the local cluster, the RemoteClusterConfiguration name otherwise.
pub type ClusterName = Arc<str>;

/// The source's own revision string (etcd `mod_revision`, Kubernetes `resourceVersion`, or a
/// content hash for the file datastore).
pub type Revision = Arc<str>;

/// The cluster name of the local datastore.
pub const LOCAL_CLUSTER: &str = "";

/// Whether `name` can name a remote cluster: a DNS-1123 subdomain (lower-case letters, digits,
/// `-` and `.`, each dot-separated label starting and ending with a letter or digit, at most 253
/// bytes), as the Kubernetes API requires of the RemoteClusterConfiguration whose name it is.
/// Such a name holds no control characters or spaces, and cannot be confused with the local
/// cluster or break a key's path.
pub fn is_remote_cluster_name(name: &str) -> bool {
    const MAX: usize = 253;
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX
        && bytes.iter().all(|&c| alnum(c) || c == b'-' || c == b'.')
        && name.split('.').all(|label| {
            let l = label.as_bytes();
            !l.is_empty() && alnum(l[0]) && alnum(l[l.len() - 1])
        })
}

/// The four parts joined by NUL bytes, with the part boundaries. NUL sorts below every other byte,
/// so comparing the joined strings orders keys exactly as comparing the parts in turn would, with
/// one `memcmp` instead of up to four.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct KeyParts {
    joined: Box<str>,
    /// Byte offsets of the three separators.
    seps: [u32; 3],
}

/// `(cluster, kind, namespace, name)`, ordered in that order. Cheap to clone (one reference count),
/// because the same key is held by the snapshot map, the deltas and the frames.
#[derive(Clone)]
pub struct ResourceKey(Arc<KeyParts>);

impl PartialEq for ResourceKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.joined == other.0.joined
    }
}

impl Eq for ResourceKey {}

impl PartialOrd for ResourceKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ResourceKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            return std::cmp::Ordering::Equal;
        }
        self.0.joined.as_bytes().cmp(other.0.joined.as_bytes())
    }
}

impl std::hash::Hash for ResourceKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.joined.hash(state);
    }
}

impl ResourceKey {
    /// A key; `namespace` is empty for cluster-scoped kinds. NUL bytes inside a part (never valid
    /// in Kubernetes names) are replaced, so the ordering invariant holds.
    pub fn new(cluster: &str, kind: &str, namespace: &str, name: &str) -> Self {
        let clean = |s: &str| -> String {
            if s.contains('\0') {
                s.replace('\0', "\u{fffd}")
            } else {
                s.to_string()
            }
        };
        let parts = [clean(cluster), clean(kind), clean(namespace), clean(name)];
        let mut joined = String::with_capacity(parts.iter().map(String::len).sum::<usize>() + 3);
        let mut seps = [0u32; 3];
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                seps[i - 1] = joined.len() as u32;
                joined.push('\0');
            }
            joined.push_str(part);
        }
        ResourceKey(Arc::new(KeyParts {
            joined: joined.into_boxed_str(),
            seps,
        }))
    }

    fn part(&self, i: usize) -> &str {
        let joined = &self.0.joined;
        let start = if i == 0 {
            0
        } else {
            self.0.seps[i - 1] as usize + 1
        };
        let end = if i == 3 {
            joined.len()
        } else {
            self.0.seps[i] as usize
        };
        &joined[start..end]
    }

    pub fn cluster(&self) -> &str {
        self.part(0)
    }

    pub fn kind(&self) -> &str {
        self.part(1)
    }

    pub fn namespace(&self) -> &str {
        self.part(2)
    }

    pub fn name(&self) -> &str {
        self.part(3)
    }
}

impl fmt::Display for ResourceKey {
    /// `cluster/Kind/namespace/name`, with `(local)` for the local cluster and no namespace segment
    /// for cluster-scoped kinds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cluster = if self.cluster().is_empty() {
            "(local)"
        } else {
            self.cluster()
        };
        if self.namespace().is_empty() {
            write!(f, "{cluster}/{}/{}", self.kind(), self.name())
        } else {
            write!(
                f,
                "{cluster}/{}/{}/{}",
                self.kind(),
                self.namespace(),
                self.name()
            )
        }
    }
}

impl fmt::Debug for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourceKey({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_and_order_is_tuple_order() {
        let k = ResourceKey::new("b", "WorkloadEndpoint", "ns", "n-1");
        assert_eq!(
            (k.cluster(), k.kind(), k.namespace(), k.name()),
            ("b", "WorkloadEndpoint", "ns", "n-1")
        );
        let e = ResourceKey::new("", "Node", "", "x");
        assert_eq!((e.cluster(), e.namespace()), ("", ""));
        let tuples = [
            ("", "Node", "", "a"),
            ("", "Node", "", "ab"),
            ("", "NodeX", "", ""),
            ("a", "", "", ""),
            ("a", "Node", "ns", "z"),
            ("ab", "A", "", ""),
        ];
        let keys: Vec<ResourceKey> = tuples
            .iter()
            .map(|(c, k, n, m)| ResourceKey::new(c, k, n, m))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(sorted, keys, "joined order equals tuple order");
        let nul = ResourceKey::new("", "Node", "", "a\0b");
        assert_eq!(nul.name(), "a\u{fffd}b");
    }
}
