//! The scanner: walks the directory, keeps a per-file cache and turns each scan into the minimal
//! list of `Upsert`/`Delete` events.
//!
//! All of it is blocking file-system work; the driver runs [`Scanner::scan`] on a blocking thread.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tracing::{debug, error, warn};

use super::parse::{Object, parse_file};
use crate::validate::ValueLimits;
use crate::{ClusterName, ResourceKey, Revision, SourceCounters, SourceEvent};

/// A file whose mtime is this close to "now" may still be written to within the same timestamp
/// tick (file-system timestamps are coarse), so its stat data is not trusted: it is re-read (and
/// re-hashed, not re-parsed unless the hash changed) at the next scan. Git's "racy clean" problem.
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Directory depth limit, a last guard against symlink loops where inodes are unavailable.
const MAX_DEPTH: usize = 64;

/// What `stat` says about a file; equal stamps mean "unchanged, do not read it again".
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime: Option<SystemTime>,
    #[cfg(unix)]
    unix: (u64, u64, i64, i64),
}

impl Stamp {
    fn of(metadata: &Metadata) -> Stamp {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Stamp {
            len: metadata.len(),
            mtime: metadata.modified().ok(),
            #[cfg(unix)]
            unix: (
                metadata.dev(),
                metadata.ino(),
                metadata.ctime(),
                metadata.ctime_nsec(),
            ),
        }
    }

    /// Whether the file was last modified long enough before `now` for the stamp to be reliable.
    fn trusted(&self, now: SystemTime) -> bool {
        self.mtime
            .and_then(|mtime| mtime.checked_add(RACY_WINDOW))
            .is_some_and(|settled| settled < now)
    }
}

/// A directory's identity (device, inode) where the platform has one.
#[cfg(unix)]
type DirId = (u64, u64);
#[cfg(not(unix))]
type DirId = ();

fn dir_id(metadata: &Metadata) -> Option<DirId> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((metadata.dev(), metadata.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        None
    }
}

/// The cache entry of one file.
#[derive(Debug)]
struct FileEntry {
    /// Stamp of the content last read; `None` forces a re-read (untrusted or never read).
    stamp: Option<Stamp>,
    /// Hash of the content last read, good or broken; `None` if it could not be read.
    hash: Option<u64>,
    /// The objects of the last content that parsed. A broken file keeps them.
    objects: Vec<Object>,
}

/// The value the source last reported for a key.
#[derive(Clone, Debug)]
struct Current {
    value: Bytes,
    revision: Revision,
}

/// The result of one scan.
pub(super) enum ScanOutcome {
    /// The directory itself cannot be listed: the source is down until it can.
    Failed(String),
    Scanned {
        /// In a full scan every live object as an `Upsert`, otherwise only the differences with
        /// the previous scan; sorted by key either way.
        events: Vec<SourceEvent>,
        /// The directory was replaced (another inode) since the previous scan, so the watcher is
        /// watching the old one.
        root_replaced: bool,
    },
}

pub(super) struct Scanner {
    root: PathBuf,
    cluster: ClusterName,
    limits: ValueLimits,
    max_file_bytes: u64,
    counters: Arc<SourceCounters>,
    files: BTreeMap<PathBuf, FileEntry>,
    /// Some entry's objects changed since `current` was computed.
    dirty: bool,
    /// What the source has reported: the effective object of every live key.
    current: BTreeMap<ResourceKey, Current>,
    /// Keys defined by several files (winner first), to warn once per change.
    conflicts: BTreeMap<ResourceKey, Vec<PathBuf>>,
    root_id: Option<DirId>,
}

impl Scanner {
    pub(super) fn new(
        root: PathBuf,
        cluster: ClusterName,
        limits: ValueLimits,
        max_file_bytes: u64,
        counters: Arc<SourceCounters>,
    ) -> Scanner {
        Scanner {
            root,
            cluster,
            limits,
            max_file_bytes,
            counters,
            files: BTreeMap::new(),
            dirty: true,
            current: BTreeMap::new(),
            conflicts: BTreeMap::new(),
            root_id: None,
        }
    }

    /// Rescans the directory. With `full`, returns every live object (for a resync) rather than
    /// the differences.
    pub(super) fn scan(&mut self, full: bool) -> ScanOutcome {
        let root_meta = match fs::metadata(&self.root) {
            Ok(meta) if meta.is_dir() => meta,
            Ok(_) => {
                return ScanOutcome::Failed(format!("{} is not a directory", self.root.display()));
            }
            Err(e) => return ScanOutcome::Failed(format!("{}: {e}", self.root.display())),
        };
        let root_id = dir_id(&root_meta);
        let root_replaced = self.root_id.is_some() && root_id.is_some() && self.root_id != root_id;
        self.root_id = root_id;

        let mut walk = Walk::default();
        if let Some(id) = root_id {
            walk.dirs_seen.insert(id);
        }
        let root = self.root.clone();
        if let Err(e) = walk.dir(&root, 0) {
            return ScanOutcome::Failed(format!("{}: {e}", self.root.display()));
        }

        let now = SystemTime::now();
        let mut present = HashSet::with_capacity(walk.files.len());
        for (path, metadata) in walk.files {
            if self.refresh(&path, &metadata, now) {
                present.insert(path);
            }
        }
        // Files that are gone take their objects with them, unless we merely could not look.
        let unknown = &walk.unknown;
        let before = self.files.len();
        self.files.retain(|path, _| {
            present.contains(path) || unknown.iter().any(|u| path.starts_with(u))
        });
        if self.files.len() != before {
            self.dirty = true;
        }

        let events = if full || self.dirty {
            self.update_current(full)
        } else {
            Vec::new()
        };
        self.dirty = false;
        ScanOutcome::Scanned {
            events,
            root_replaced,
        }
    }

    /// Brings the cache entry of one file up to date. Returns false if the file vanished.
    fn refresh(&mut self, path: &Path, metadata: &Metadata, now: SystemTime) -> bool {
        let stamp = Stamp::of(metadata);
        let entry = self
            .files
            .entry(path.to_path_buf())
            .or_insert_with(|| FileEntry {
                stamp: None,
                hash: None,
                objects: Vec::new(),
            });
        if entry.stamp.as_ref() == Some(&stamp) {
            return true;
        }
        let trusted = stamp.trusted(now).then_some(stamp);
        // Refused from its metadata, before anything is read; the read is bounded too, so a file
        // that grows after the stat cannot slip through.
        let size = metadata.len();
        let bytes = match (size <= self.max_file_bytes)
            .then(|| read_bounded(path, self.max_file_bytes, size))
        {
            Some(Ok(Some(bytes))) => bytes,
            None | Some(Ok(None)) => {
                // Logged once per stamp, like an unreadable file. Its objects go: a fresh source
                // would not serve them either.
                self.counters.count_refused_file();
                error!(
                    file = %path.display(),
                    size,
                    max_file_bytes = self.max_file_bytes,
                    dropped_objects = entry.objects.len(),
                    "file larger than the file-size limit; refused whole, its objects are not served"
                );
                entry.stamp = trusted;
                entry.hash = None;
                if !entry.objects.is_empty() {
                    entry.objects.clear();
                    self.dirty = true;
                }
                return true;
            }
            Some(Err(e)) if e.kind() == io::ErrorKind::NotFound => return false,
            Some(Err(e)) => {
                // Logged once per stamp: a chmod or a write changes the stamp and brings a retry.
                error!(file = %path.display(), error = %e, "cannot read file; keeping its previous objects");
                entry.stamp = trusted;
                entry.hash = None;
                return true;
            }
        };
        let hash = xxhash_rust::xxh3::xxh3_64(&bytes);
        entry.stamp = trusted;
        if entry.hash == Some(hash) {
            return true;
        }
        entry.hash = Some(hash);
        match parse_file(path, &bytes, &self.cluster, &self.limits, &self.counters) {
            Ok(objects) => {
                debug!(file = %path.display(), objects = objects.len(), "parsed file");
                if objects != entry.objects {
                    entry.objects = objects;
                    self.dirty = true;
                }
            }
            Err(reason) => {
                error!(
                    file = %path.display(),
                    reason,
                    kept_objects = entry.objects.len(),
                    "cannot parse file; ignoring it and keeping its previous objects until it parses again"
                );
            }
        }
        true
    }

    /// Recomputes the effective objects (the first file in path order wins each key) and returns
    /// the events that take a consumer from the previous state to the new one.
    fn update_current(&mut self, full: bool) -> Vec<SourceEvent> {
        let mut winners: BTreeMap<&ResourceKey, (&Object, &Path)> = BTreeMap::new();
        let mut conflicts: BTreeMap<ResourceKey, Vec<PathBuf>> = BTreeMap::new();
        for (path, entry) in &self.files {
            for object in &entry.objects {
                match winners.get(&object.key) {
                    None => {
                        winners.insert(&object.key, (object, path));
                    }
                    Some((_, winner)) => conflicts
                        .entry(object.key.clone())
                        .or_insert_with(|| vec![winner.to_path_buf()])
                        .push(path.clone()),
                }
            }
        }
        for (key, paths) in &conflicts {
            if self.conflicts.get(key) != Some(paths) {
                let others: Vec<String> =
                    paths[1..].iter().map(|p| p.display().to_string()).collect();
                warn!(
                    key = %key,
                    winner = %paths[0].display(),
                    ignored = ?others,
                    "object defined in several files; the first path wins"
                );
            }
        }
        self.conflicts = conflicts;

        let mut events = Vec::new();
        let mut old = std::mem::take(&mut self.current).into_iter().peekable();
        let mut new_current = BTreeMap::new();
        for (key, (object, _)) in winners {
            // Everything before `key` in the old state is gone.
            while let Some((old_key, _)) = old.peek() {
                if old_key >= key {
                    break;
                }
                if let Some((old_key, old_value)) = old.next()
                    && !full
                {
                    events.push(SourceEvent::Delete {
                        key: old_key,
                        revision: old_value.revision,
                    });
                }
            }
            let unchanged = match old.peek() {
                Some((old_key, old_value)) if old_key == key => {
                    let same = old_value.value == object.value;
                    old.next();
                    same
                }
                _ => false,
            };
            if full || !unchanged {
                events.push(SourceEvent::Upsert {
                    key: key.clone(),
                    value: object.value.clone(),
                    revision: object.revision.clone(),
                });
            }
            new_current.insert(
                key.clone(),
                Current {
                    value: object.value.clone(),
                    revision: object.revision.clone(),
                },
            );
        }
        if !full {
            events.extend(old.map(|(key, value)| SourceEvent::Delete {
                key,
                revision: value.revision,
            }));
        }
        self.current = new_current;
        events
    }
}

/// One directory walk: candidate files with their metadata, and the places we could not look into.
#[derive(Default)]
struct Walk {
    files: Vec<(PathBuf, Metadata)>,
    /// Directories or files whose state is unknown this scan: their cached objects are kept.
    unknown: Vec<PathBuf>,
    dirs_seen: HashSet<DirId>,
}

impl Walk {
    /// Lists `dir`. An error listing the root is returned (the source is down); below the root it
    /// is logged and the subtree's previous objects are kept.
    fn dir(&mut self, dir: &Path, depth: usize) -> io::Result<()> {
        let entries = fs::read_dir(dir)?;
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    warn!(dir = %dir.display(), error = %e, "cannot list directory completely; keeping the objects below it");
                    self.unknown.push(dir.to_path_buf());
                    return Ok(());
                }
            };
            let name = entry.file_name();
            if ignored_name(&name) {
                continue;
            }
            let path = entry.path();
            // A regular file with another extension needs no stat; symlinks are followed.
            if let Ok(file_type) = entry.file_type()
                && file_type.is_file()
                && super::parse::Format::of(&path).is_none()
            {
                continue;
            }
            let metadata = match fs::metadata(&path) {
                Ok(metadata) => metadata,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    debug!(path = %path.display(), "skipping vanished file or dangling symlink");
                    continue;
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "cannot stat; keeping its previous objects");
                    self.unknown.push(path);
                    continue;
                }
            };
            if metadata.is_dir() {
                if depth >= MAX_DEPTH {
                    warn!(dir = %path.display(), "directory nesting too deep; not descending");
                    continue;
                }
                if let Some(id) = dir_id(&metadata)
                    && !self.dirs_seen.insert(id)
                {
                    debug!(dir = %path.display(), "directory already scanned (symlink); skipping");
                    continue;
                }
                if let Err(e) = self.dir(&path, depth + 1) {
                    warn!(dir = %path.display(), error = %e, "cannot list directory; keeping the objects below it");
                    self.unknown.push(path);
                }
            } else if metadata.is_file() && super::parse::Format::of(&path).is_some() {
                self.files.push((path, metadata));
            }
        }
        Ok(())
    }
}

/// Reads at most `max` bytes of `path`: `None` if it holds more (it grew past the limit).
fn read_bounded(path: &Path, max: u64, size_hint: u64) -> io::Result<Option<Vec<u8>>> {
    let file = fs::File::open(path)?;
    let capacity = usize::try_from(size_hint.min(max)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

/// Hidden entries (`.git`, `..data` of ConfigMap volumes, editor lock files) and backup files.
fn ignored_name(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with('.') || name.ends_with('~') || name.ends_with(".swp")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_reads_refuse_what_grew_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        fs::write(&path, b"0123456789").unwrap();
        assert_eq!(
            read_bounded(&path, 10, 10).unwrap().as_deref(),
            Some(&b"0123456789"[..])
        );
        // The stat said 5 bytes, the file holds 10: refused, reading at most 10 + 1.
        assert_eq!(read_bounded(&path, 9, 5).unwrap(), None);
        assert!(read_bounded(&dir.path().join("missing"), 9, 0).is_err());
    }
}
