//! The file datastore (`--datastore file:DIR`): a directory of YAML/JSON manifests, watched live.
//!
//! # How it works, and why
//!
//! The directory is the datastore, and people edit it with editors, `git pull`, `kubectl get -o
//! yaml > x.yaml` or ConfigMap volume updates. None of those tell us *what* changed, and many of
//! them produce a burst of intermediate states (truncate then write, write a temp file then
//! rename, swap a `..data` symlink). So the driver never interprets individual file-system events:
//! an event only means "something may have changed". After [`FileSourceConfig::debounce`] of quiet
//! (at most [`MAX_DEBOUNCE`] in total, so a directory that never stops changing still makes
//! progress) it rescans the whole tree and diffs the *result* against what it has already
//! reported. Whatever the sequence of events, consumers see only real differences:
//!
//! - **Content identity.** Every object is reduced to canonical JSON (sorted keys, compact,
//!   `metadata.resourceVersion` and `metadata.managedFields` removed) and its revision is the
//!   xxh3 hash of those bytes. Reformatting a file, reordering keys, converting YAML to JSON or
//!   rewriting identical content produces no event, and revisions are stable across restarts.
//! - **Cheap rescans.** A per-file cache keeps each file's stat data (length, mtime, ctime, inode),
//!   content hash and parsed objects. An unchanged file is not read; a rewritten file with the same
//!   hash is not re-parsed. Files modified within the last two seconds are re-read at the next scan
//!   anyway, because timestamps are coarse enough for two writes to share one ("racy" stat data).
//! - **Broken files are not deletions.** An editor's half-written file, or a typo, fails to parse.
//!   Deleting its objects would ripple through the whole mesh and back, so the whole file is
//!   skipped (logged at `error` with the parser's line and column) and its previous objects stay
//!   until it parses again. Only removing the file removes its objects. Single bad objects in an
//!   otherwise valid file (no `kind`, no `metadata.name`, too large) are logged and skipped alone.
//! - **Deterministic duplicates.** A key defined by several files is taken from the file whose path
//!   sorts first (component by component); when that file drops it, the next file's definition
//!   takes over as an `Upsert`, never a `Delete`.
//! - **Safety nets.** inotify queues can overflow and watches can be lost (the directory replaced,
//!   a new subdirectory created a moment before its watch), so the tree is also rescanned every
//!   [`FileSourceConfig::rescan_interval`], and the watcher is recreated when the directory's inode
//!   changes. If the directory cannot be listed, the source reports `ConnectionFailed` once, keeps
//!   retrying (with [`SourceCommon::backoff`]), and relists everything (a full resync) when it is
//!   back. A directory that does not exist yet is the same case: [`start`] waits for it (a remote
//!   cluster's directory may appear later), so the stream never ends on its own; [`watch`] is the
//!   strict entry point that refuses a missing directory at once (the local datastore of `serve`).
//!
//! File-system work runs on tokio's blocking pool; events go out through a bounded channel, so a
//! slow consumer slows the scanner rather than growing a queue. The task ends when the stream is
//! dropped.
//!
//! Files: `*.yaml`, `*.yml` (multi-document) and `*.json` (one or more concatenated values) below
//! the directory, recursively, following symlinks; hidden entries (`.git`, `..data`) and backup
//! files (`*~`, `*.swp`) are ignored. A `kind: …List` document with an `items` array contributes
//! its items.
//!
//! Limits: a file larger than [`FileSourceConfig::max_file_bytes`] (default 64 MiB) is refused
//! whole from its metadata, before it is read (and the read itself is bounded, so a file growing
//! meanwhile cannot slip through); it is logged, counted ([`crate::SourceCounters::refused_files`]) and
//! serves no objects until it shrinks. A YAML file may hold up to 100,000 documents; serde-saphyr's
//! other budgets per file stay at their defaults (250,000 nodes, 1,000,000 parser events, 50,000
//! aliases and anchors, depth 64, 64 MiB of scalars), which is what refuses a YAML bomb. Every
//! object then passes [`crate::validate::validate_value`] (1 MiB, depth 64 by default).

mod parse;
mod scan;

/// Parses one manifest file's bytes as the file datastore does (YAML or JSON by `name`'s
/// extension, several documents, `kind: List` items, canonical JSON values, validation), for
/// tools and the fuzzer: the objects' keys (cluster `""`) and values, or why the file is refused.
pub fn parse_manifest(
    name: &str,
    bytes: &[u8],
) -> Result<Vec<(crate::ResourceKey, bytes::Bytes)>, String> {
    let counters = crate::SourceCounters::default();
    parse::parse_file(
        std::path::Path::new(name),
        bytes,
        "",
        &crate::validate::ValueLimits::default(),
        &counters,
    )
    .map(|objects| objects.into_iter().map(|o| (o.key, o.value)).collect())
}

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, error, info, warn};

use self::scan::{ScanOutcome, Scanner};
use crate::common::{Closed, SourceCommon, SourceTx};
use crate::{ClusterName, SourceEvent, SourceStatus};

/// Default for the file source's largest value ([`crate::validate::ValueLimits::max_bytes`]): 1 MiB.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1 << 20;
/// Default for [`FileSourceConfig::max_file_bytes`]: 64 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 << 20;
/// Default for [`FileSourceConfig::debounce`].
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(50);
/// Default for [`FileSourceConfig::rescan_interval`].
pub const DEFAULT_RESCAN_INTERVAL: Duration = Duration::from_secs(30);
/// The longest a burst of file-system events can postpone a rescan.
pub const MAX_DEBOUNCE: Duration = Duration::from_secs(1);
/// Lower bound for the rescan interval, so a zero cannot spin.
const MIN_RESCAN_INTERVAL: Duration = Duration::from_millis(10);

/// Configuration of a file source.
#[derive(Clone, Debug)]
pub struct FileSourceConfig {
    /// The directory of manifests.
    pub dir: PathBuf,
    /// Cluster, kinds, value limits (objects whose canonical JSON is larger or deeper are skipped
    /// with an error log), backoff while the directory is unavailable, counters (invalid objects,
    /// oversized files).
    pub common: SourceCommon,
    /// Quiet time after a file-system event before rescanning. Default 50 ms.
    pub debounce: Duration,
    /// Periodic safety-net rescan (inotify can overflow). Default 30 s.
    pub rescan_interval: Duration,
    /// Files larger than this are refused whole (checked before reading). Default 64 MiB.
    pub max_file_bytes: u64,
}

impl FileSourceConfig {
    /// A configuration with the default limits and timings.
    pub fn new(dir: impl Into<PathBuf>, cluster: ClusterName) -> Self {
        FileSourceConfig {
            dir: dir.into(),
            common: SourceCommon::new(cluster),
            debounce: DEFAULT_DEBOUNCE,
            rescan_interval: DEFAULT_RESCAN_INTERVAL,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

/// Why a file source could not start.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("datastore directory {} does not exist", path.display())]
    NotFound { path: PathBuf },
    #[error("datastore path {} is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("cannot access datastore directory {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot watch datastore directory {}: {source}", path.display())]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("the file datastore must be started from within a tokio runtime")]
    NoRuntime,
}

/// Starts the source strictly: checks the directory and starts watching it (either failing is an
/// error), then spawns the task that lists and follows it and returns the event stream. The task
/// ends when the stream is dropped; a directory that goes away later is waited for, as in [`start`].
///
/// Must be called from within a tokio runtime.
pub fn watch(config: FileSourceConfig) -> Result<ReceiverStream<SourceEvent>, FileSourceError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| FileSourceError::NoRuntime)?;
    check_dir(&config.dir)?;
    let (fs_tx, fs_rx) = mpsc::channel(1);
    let watcher =
        start_watcher(&config.dir, fs_tx.clone()).map_err(|source| FileSourceError::Watch {
            path: config.dir.clone(),
            source,
        })?;
    Ok(spawn(
        &runtime,
        config,
        (fs_tx, fs_rx),
        Some(watcher),
        Phase::Listing,
    ))
}

/// Starts the source whether or not its directory exists yet: `Connecting`, then (while the
/// directory is missing or unreadable) `ConnectionFailed`, retried with the backoff, and a full
/// listing once it is there. The stream never ends on its own; the task ends when it is dropped.
///
/// Must be called from within a tokio runtime (it panics otherwise, as `tokio::spawn` does).
pub fn start(config: FileSourceConfig) -> ReceiverStream<SourceEvent> {
    let runtime = tokio::runtime::Handle::current();
    spawn(&runtime, config, mpsc::channel(1), None, Phase::Connecting)
}

fn spawn(
    runtime: &tokio::runtime::Handle,
    config: FileSourceConfig,
    (fs_tx, fs_rx): (mpsc::Sender<()>, mpsc::Receiver<()>),
    watcher: Option<RecommendedWatcher>,
    phase: Phase,
) -> ReceiverStream<SourceEvent> {
    let (tx, rx) = SourceTx::channel(config.common.cluster.clone());
    let common = &config.common;
    let driver = Driver {
        scanner: Some(Scanner::new(
            config.dir.clone(),
            common.cluster.clone(),
            common.limits,
            config.max_file_bytes,
            common.counters.clone(),
        )),
        config,
        tx,
        fs_tx,
        fs_rx,
        watcher,
        phase,
        failures: 0,
    };
    runtime.spawn(driver.run());
    rx
}

/// Why the directory cannot serve as a file datastore now (missing, not a directory,
/// unreadable), for callers that refuse to start without it.
pub fn check_dir(dir: &Path) -> Result<(), FileSourceError> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(FileSourceError::NotADirectory {
            path: dir.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(FileSourceError::NotFound {
            path: dir.to_path_buf(),
        }),
        Err(source) => Err(FileSourceError::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// A recursive watcher whose events become "rescan" signals. The signal channel has room for one:
/// a pending signal already covers any later event, so a burst costs nothing.
fn start_watcher(dir: &Path, signal: mpsc::Sender<()>) -> notify::Result<RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            // Our own reads open files: those events must not trigger rescans.
            Ok(event)
                if matches!(event.kind, EventKind::Access(kind)
                    if kind != AccessKind::Close(AccessMode::Write)) => {}
            Ok(_) => {
                let _ = signal.try_send(());
            }
            Err(e) => {
                warn!(error = %e, "file watcher error; rescanning");
                let _ = signal.try_send(());
            }
        }
    })?;
    watcher.watch(dir, RecursiveMode::Recursive)?;
    Ok(watcher)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Started without knowing the directory: `Connecting` is sent, then as `Listing`.
    Connecting,
    /// The next successful scan is reported as a full listing.
    Listing,
    /// Listed; scans report differences.
    Synced,
    /// The directory is unavailable; `ConnectionFailed` has been sent.
    Failed,
}

struct Driver {
    config: FileSourceConfig,
    tx: SourceTx,
    /// Kept so that `fs_rx` never closes, and to re-arm new watchers.
    fs_tx: mpsc::Sender<()>,
    fs_rx: mpsc::Receiver<()>,
    watcher: Option<RecommendedWatcher>,
    /// `None` only while a scan runs on the blocking pool.
    scanner: Option<Scanner>,
    phase: Phase,
    /// Failed scans in a row: the backoff's attempt.
    failures: u32,
}

impl Driver {
    async fn run(mut self) {
        if self.phase == Phase::Connecting
            && self.tx.set_status(SourceStatus::Connecting).await.is_err()
        {
            return;
        }
        loop {
            // Before the scan, so that nothing changed after the scan goes unnoticed.
            let watch_error = match &self.watcher {
                Some(_) => None,
                None => match start_watcher(&self.config.dir, self.fs_tx.clone()) {
                    Ok(watcher) => {
                        self.watcher = Some(watcher);
                        None
                    }
                    Err(e) => Some(e),
                },
            };
            let full = self.phase != Phase::Synced;
            let Some(outcome) = self.scan(full).await else {
                return;
            };
            if let Some(e) = watch_error {
                let dir = self.config.dir.display();
                if matches!(outcome, ScanOutcome::Failed(_)) {
                    debug!(dir = %dir, error = %e, "cannot watch directory yet");
                } else {
                    warn!(dir = %dir, error = %e,
                        "cannot watch the directory; changes are seen at the periodic rescan only");
                }
            }
            if self.report(outcome, full).await.is_err() {
                debug!(dir = %self.config.dir.display(), "event stream dropped; file source stops");
                return;
            }
            if !self.wait_for_change().await {
                debug!(dir = %self.config.dir.display(), "event stream dropped; file source stops");
                return;
            }
        }
    }

    /// Runs one scan on the blocking pool. `None` if it could not run (a panic, or the runtime is
    /// shutting down): the source then stops.
    async fn scan(&mut self, full: bool) -> Option<ScanOutcome> {
        let mut scanner = self.scanner.take()?;
        match tokio::task::spawn_blocking(move || {
            let outcome = scanner.scan(full);
            (scanner, outcome)
        })
        .await
        {
            Ok((scanner, outcome)) => {
                self.scanner = Some(scanner);
                Some(outcome)
            }
            Err(e) => {
                error!(dir = %self.config.dir.display(), error = %e, "file datastore scan failed; the source stops");
                None
            }
        }
    }

    /// Sends what a scan found. `Err` when the stream has been dropped.
    async fn report(&mut self, outcome: ScanOutcome, full: bool) -> Result<(), Closed> {
        let cluster = self.tx.cluster().clone();
        if matches!(outcome, ScanOutcome::Failed(_)) {
            self.failures = self.failures.saturating_add(1);
        } else {
            self.failures = 0;
        }
        match outcome {
            ScanOutcome::Failed(reason) => {
                // The watch is dead or useless; a new one is made before each retry.
                self.watcher = None;
                if self.phase == Phase::Failed {
                    return Ok(());
                }
                error!(dir = %self.config.dir.display(), reason, "file datastore directory unavailable; retrying");
                self.phase = Phase::Failed;
                self.tx
                    .set_status(SourceStatus::ConnectionFailed(reason))
                    .await
            }
            ScanOutcome::Scanned {
                events,
                root_replaced,
            } => {
                if !full {
                    if root_replaced {
                        info!(dir = %self.config.dir.display(), "directory replaced; watching the new one");
                        self.watcher = None;
                        // Rescan right after the new watch is in place, for changes in between.
                        let _ = self.fs_tx.try_send(());
                    }
                    for event in events {
                        self.send(event).await?;
                    }
                    return Ok(());
                }
                info!(dir = %self.config.dir.display(), objects = events.len(), "file datastore listed");
                self.phase = Phase::Synced;
                self.tx.set_status(SourceStatus::ResyncInProgress).await?;
                self.tx
                    .send(SourceEvent::ResyncStart {
                        cluster: cluster.clone(),
                    })
                    .await?;
                for event in events {
                    self.send(event).await?;
                }
                self.tx.send(SourceEvent::ResyncDone { cluster }).await?;
                self.tx.set_status(SourceStatus::InSync).await
            }
        }
    }

    /// Sends one object event, unless its kind is not wanted.
    async fn send(&self, event: SourceEvent) -> Result<(), Closed> {
        if !self.config.common.wants_event(&event) {
            return Ok(());
        }
        self.tx.send(event).await
    }

    /// Waits until a rescan is due: file-system activity followed by `debounce` of quiet (capped at
    /// `MAX_DEBOUNCE`), or the rescan interval. False when the stream has been dropped.
    async fn wait_for_change(&mut self) -> bool {
        let interval = if self.phase == Phase::Failed {
            self.config
                .common
                .backoff
                .delay(self.failures.saturating_sub(1))
        } else {
            self.config.rescan_interval.max(MIN_RESCAN_INTERVAL)
        };
        tokio::select! {
            _ = self.tx.closed() => return false,
            _ = sleep_until(Instant::now() + interval) => return true,
            Some(()) = self.fs_rx.recv() => {}
        }
        let debounce = self.config.debounce;
        let cap = Instant::now() + debounce.max(MAX_DEBOUNCE);
        loop {
            let quiet = (Instant::now() + debounce).min(cap);
            tokio::select! {
                _ = self.tx.closed() => return false,
                _ = sleep_until(quiet) => return true,
                Some(()) = self.fs_rx.recv() => {
                    if Instant::now() >= cap {
                        return true;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
fn status_event(cluster: &ClusterName, status: SourceStatus) -> SourceEvent {
    SourceEvent::Status {
        cluster: cluster.clone(),
        status,
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::sync::Arc;

    use bytes::Bytes;
    use futures::StreamExt;
    use serde_json::{Value, json};
    use tokio::time::timeout;

    use super::parse::{parse_file, revision_of};
    use super::*;
    use crate::validate::ValueLimits;
    use crate::{ResourceKey, SourceCounters};

    const WAIT: Duration = Duration::from_secs(10);

    fn local() -> ClusterName {
        Arc::from("")
    }

    /// Tests must see the watcher at work, not the safety net.
    fn config(dir: &Path) -> FileSourceConfig {
        let mut config = FileSourceConfig::new(dir, local());
        config.rescan_interval = Duration::from_secs(3600);
        config
    }

    async fn next(stream: &mut ReceiverStream<SourceEvent>) -> SourceEvent {
        timeout(WAIT, stream.next())
            .await
            .expect("timed out waiting for an event")
            .expect("stream ended")
    }

    fn key(kind: &str, namespace: &str, name: &str) -> ResourceKey {
        ResourceKey::new("", kind, namespace, name)
    }

    fn upsert(key: ResourceKey, value: Value) -> SourceEvent {
        let bytes = serde_json::to_vec(&value).unwrap();
        SourceEvent::Upsert {
            key,
            revision: revision_of(&bytes),
            value: Bytes::from(bytes),
        }
    }

    fn delete(key: ResourceKey, value: Value) -> SourceEvent {
        let bytes = serde_json::to_vec(&value).unwrap();
        SourceEvent::Delete {
            key,
            revision: revision_of(&bytes),
        }
    }

    fn obj(kind: &str, namespace: &str, name: &str, spec: Value) -> Value {
        let mut metadata = json!({ "name": name });
        if !namespace.is_empty() {
            metadata["namespace"] = json!(namespace);
        }
        json!({ "apiVersion": "v1", "kind": kind, "metadata": metadata, "spec": spec })
    }

    /// The complete initial listing, asserting every marker and the exact upserts.
    async fn expect_listing(stream: &mut ReceiverStream<SourceEvent>, upserts: Vec<SourceEvent>) {
        let cluster = local();
        assert_eq!(
            next(stream).await,
            status_event(&cluster, SourceStatus::ResyncInProgress)
        );
        assert_eq!(
            next(stream).await,
            SourceEvent::ResyncStart {
                cluster: cluster.clone()
            }
        );
        for expected in upserts {
            assert_eq!(next(stream).await, expected);
        }
        assert_eq!(
            next(stream).await,
            SourceEvent::ResyncDone {
                cluster: cluster.clone()
            }
        );
        assert_eq!(
            next(stream).await,
            status_event(&cluster, SourceStatus::InSync)
        );
    }

    /// Writes atomically (hidden temporary file, then rename, as many editors do), so that no scan
    /// can see a half-written file unless a test means it to.
    fn write(path: &Path, content: &str) {
        let parent = path.parent().unwrap();
        fs::create_dir_all(parent).unwrap();
        let name = path.file_name().unwrap().to_string_lossy();
        let temp = parent.join(format!(".{name}.tmp"));
        fs::write(&temp, content).unwrap();
        fs::rename(&temp, path).unwrap();
    }

    /// Rewrites a file in place with the same bytes, without truncating it: the file changes
    /// (events, mtime) but its content is never anything else.
    fn rewrite_in_place(path: &Path) {
        use std::io::Write;
        let content = fs::read(path).unwrap();
        let mut file = fs::OpenOptions::new().write(true).open(path).unwrap();
        file.write_all(&content).unwrap();
        file.sync_all().unwrap();
    }

    #[tokio::test]
    async fn initial_listing_of_yaml_json_lists_and_nested_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(
            &d.join("a.yaml"),
            "---\n\
             apiVersion: v1\n\
             kind: ConfigMap\n\
             metadata:\n  name: one\n  namespace: ns\n  resourceVersion: \"42\"\n  managedFields: [{manager: x}]\n\
             data:\n  flag: yes\n  mode: 010\n  real: true\n\
             ---\n\
             ---\n\
             null\n\
             ---\n\
             kind: Node\n\
             metadata: {name: node-1}\n",
        );
        write(
            &d.join("b.json"),
            r#"{"kind":"Profile","metadata":{"name":"p1"}}
               {"kind":"Profile","metadata":{"name":"p2","namespace":""}} null"#,
        );
        write(
            &d.join("list.yml"),
            "apiVersion: v1\nkind: NodeList\nitems:\n- kind: Node\n  metadata: {name: node-2}\n- kind: Node\n  metadata: {name: node-3}\n",
        );
        write(
            &d.join("sub/deep/c.YAML"),
            "kind: IPPool\nmetadata: {name: pool}\n",
        );
        // Ignored: hidden files and dirs, backups, other extensions.
        write(
            &d.join(".hidden.yaml"),
            "kind: Node\nmetadata: {name: hidden}\n",
        );
        write(
            &d.join(".git/x.yaml"),
            "kind: Node\nmetadata: {name: git}\n",
        );
        write(&d.join("a.yaml~"), "kind: Node\nmetadata: {name: backup}\n");
        write(
            &d.join("a.yaml.swp"),
            "kind: Node\nmetadata: {name: swap}\n",
        );
        write(&d.join("notes.txt"), "kind: Node\nmetadata: {name: txt}\n");

        let mut stream = watch(config(d)).unwrap();
        let configmap = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "one", "namespace": "ns" },
            "data": { "flag": "yes", "mode": "010", "real": true },
        });
        expect_listing(
            &mut stream,
            vec![
                upsert(key("ConfigMap", "ns", "one"), configmap),
                upsert(
                    key("IPPool", "", "pool"),
                    json!({"kind": "IPPool", "metadata": {"name": "pool"}}),
                ),
                upsert(
                    key("Node", "", "node-1"),
                    json!({"kind": "Node", "metadata": {"name": "node-1"}}),
                ),
                upsert(
                    key("Node", "", "node-2"),
                    json!({"kind": "Node", "metadata": {"name": "node-2"}}),
                ),
                upsert(
                    key("Node", "", "node-3"),
                    json!({"kind": "Node", "metadata": {"name": "node-3"}}),
                ),
                upsert(
                    key("Profile", "", "p1"),
                    json!({"kind": "Profile", "metadata": {"name": "p1"}}),
                ),
                upsert(
                    key("Profile", "", "p2"),
                    json!({"kind": "Profile", "metadata": {"name": "p2", "namespace": ""}}),
                ),
            ],
        )
        .await;
        // Revisions are 16 lowercase hex digits.
        write(&d.join("z.yaml"), "kind: Node\nmetadata: {name: last}\n");
        match next(&mut stream).await {
            SourceEvent::Upsert {
                key: k, revision, ..
            } => {
                assert_eq!(k, key("Node", "", "last"));
                assert_eq!(revision.len(), 16);
                assert!(revision.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn invalid_objects_are_skipped_and_the_rest_flows() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(
            &d.join("mixed.yaml"),
            "kind: Node\nmetadata: {name: good-1}\n\
             ---\nmetadata: {name: no-kind}\n\
             ---\nkind: Node\nmetadata: {namespace: x}\n\
             ---\nkind: Node\nmetadata: {name: \"\"}\n\
             ---\njust a string\n\
             ---\n- a\n- list\n\
             ---\nkind: Node\nmetadata: {name: 5}\n\
             ---\nkind: Node\nmetadata: {name: good-2}\n",
        );
        let mut stream = watch(config(d)).unwrap();
        expect_listing(
            &mut stream,
            vec![
                upsert(
                    key("Node", "", "good-1"),
                    json!({"kind": "Node", "metadata": {"name": "good-1"}}),
                ),
                upsert(
                    key("Node", "", "good-2"),
                    json!({"kind": "Node", "metadata": {"name": "good-2"}}),
                ),
            ],
        )
        .await;
        write(
            &d.join("more.json"),
            r#"{"kind":"Node"} [1] {"kind":"Node","metadata":{"name":"good-3"}}"#,
        );
        assert_eq!(
            next(&mut stream).await,
            upsert(
                key("Node", "", "good-3"),
                json!({"kind": "Node", "metadata": {"name": "good-3"}})
            )
        );
    }

    #[tokio::test]
    async fn broken_file_keeps_its_objects_and_fixing_it_emits_only_the_diff() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let a = d.join("a.yaml");
        let x = obj("Node", "", "x", json!({"v": 1}));
        let y1 = obj("Node", "", "y", json!({"v": 1}));
        let y2 = obj("Node", "", "y", json!({"v": 2}));
        let z = obj("Node", "", "z", json!({"v": 1}));
        let yaml = |objects: &[&Value]| {
            objects
                .iter()
                .map(|o| serde_json::to_string(o).unwrap())
                .collect::<Vec<_>>()
                .join("\n---\n")
        };
        write(&a, &yaml(&[&x, &y1]));
        let mut stream = watch(config(d)).unwrap();
        expect_listing(
            &mut stream,
            vec![
                upsert(key("Node", "", "x"), x.clone()),
                upsert(key("Node", "", "y"), y1.clone()),
            ],
        )
        .await;

        // Half-written: the first document is fine, the second is cut off.
        write(
            &a,
            "kind: Node\nmetadata: {name: x}\nspec: {v: 1}\n---\nkind: Node\nmetadata: {name: [y\n",
        );
        // A scan that sees the probe also saw the broken file (written before it): the probe must
        // be the only event, so neither x nor y was deleted.
        let probe = obj("Node", "", "probe", json!({}));
        write(&d.join("probe.yaml"), &yaml(&[&probe]));
        assert_eq!(
            next(&mut stream).await,
            upsert(key("Node", "", "probe"), probe)
        );

        // Fixed, with y changed and z added: exactly those two, in key order.
        write(&a, &yaml(&[&x, &y2, &z]));
        assert_eq!(
            next(&mut stream).await,
            upsert(key("Node", "", "y"), y2.clone())
        );
        assert_eq!(
            next(&mut stream).await,
            upsert(key("Node", "", "z"), z.clone())
        );

        // Broken JSON is handled the same way.
        let b = d.join("b.json");
        let w = obj("Node", "", "w", json!({}));
        write(&b, &serde_json::to_string(&w).unwrap());
        assert_eq!(
            next(&mut stream).await,
            upsert(key("Node", "", "w"), w.clone())
        );
        write(&b, r#"{"kind": "Node", "metadata": {"#);
        fs::remove_file(d.join("probe.yaml")).unwrap();
        assert_eq!(
            next(&mut stream).await,
            delete(
                key("Node", "", "probe"),
                obj("Node", "", "probe", json!({}))
            )
        );
        // Deleting a broken file does delete its (previous) objects.
        fs::remove_file(&b).unwrap();
        assert_eq!(next(&mut stream).await, delete(key("Node", "", "w"), w));
    }

    #[tokio::test]
    async fn identical_rewrites_and_reformatting_emit_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let a = d.join("a.yaml");
        let content = "kind: Node\nmetadata:\n  name: n1\n  labels: {a: \"1\", b: \"2\"}\nspec: {x: 1}\n---\nkind: Node\nmetadata: {name: n2}\n";
        write(&a, content);
        let mut stream = watch(config(d)).unwrap();
        let n1 = json!({"kind": "Node", "metadata": {"name": "n1", "labels": {"a": "1", "b": "2"}}, "spec": {"x": 1}});
        let n2 = json!({"kind": "Node", "metadata": {"name": "n2"}});
        expect_listing(
            &mut stream,
            vec![
                upsert(key("Node", "", "n1"), n1.clone()),
                upsert(key("Node", "", "n2"), n2.clone()),
            ],
        )
        .await;

        // Same bytes (in place, then replaced), then the same objects reformatted, reordered, with
        // a new resourceVersion, then the same objects as JSON in another file replacing this one.
        rewrite_in_place(&a);
        write(&a, content);
        write(
            &a,
            "# comment\nmetadata:\n    resourceVersion: \"99\"\n    labels:\n        b: \"2\"\n        a: \"1\"\n    name: n1\nspec:\n    x: 1\nkind: Node\n---\n{kind: Node, metadata: {name: n2}}\n",
        );
        let j = d.join("a.json");
        write(&j, &format!("{n2}\n{n1}"));
        fs::remove_file(&a).unwrap();
        // The first real change is the very next event.
        write(
            &j,
            &format!(
                "{n2}\n{}",
                json!({"kind": "Node", "metadata": {"name": "n1"}, "spec": {"x": 2}})
            ),
        );
        assert_eq!(
            next(&mut stream).await,
            upsert(
                key("Node", "", "n1"),
                json!({"kind": "Node", "metadata": {"name": "n1"}, "spec": {"x": 2}})
            )
        );
    }

    #[tokio::test]
    async fn a_changed_file_emits_only_its_changed_objects_and_deleting_it_deletes_them() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let objs: Vec<Value> = (0..5)
            .map(|i| obj("Node", "", &format!("n{i}"), json!({"i": i})))
            .collect();
        let text = |objs: &[Value]| {
            objs.iter()
                .map(|o| o.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        };
        write(&d.join("nodes.json"), &text(&objs));
        let other = obj("Profile", "", "keep", json!({}));
        write(&d.join("other.json"), &other.to_string());
        let mut stream = watch(config(d)).unwrap();
        let mut listing: Vec<SourceEvent> = objs
            .iter()
            .enumerate()
            .map(|(i, o)| upsert(key("Node", "", &format!("n{i}")), o.clone()))
            .collect();
        listing.push(upsert(key("Profile", "", "keep"), other.clone()));
        expect_listing(&mut stream, listing).await;

        let mut changed = objs.clone();
        changed[3] = obj("Node", "", "n3", json!({"i": 33}));
        changed.remove(1);
        write(&d.join("nodes.json"), &text(&changed));
        assert_eq!(
            next(&mut stream).await,
            delete(key("Node", "", "n1"), objs[1].clone())
        );
        assert_eq!(
            next(&mut stream).await,
            upsert(key("Node", "", "n3"), changed[2].clone())
        );

        fs::remove_file(d.join("nodes.json")).unwrap();
        for (name, value) in [
            ("n0", &changed[0]),
            ("n2", &changed[1]),
            ("n3", &changed[2]),
            ("n4", &changed[3]),
        ] {
            assert_eq!(
                next(&mut stream).await,
                delete(key("Node", "", name), value.clone())
            );
        }
    }

    #[tokio::test]
    async fn duplicate_key_first_path_wins_and_the_other_takes_over() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let from_a = obj("Node", "", "dup", json!({"from": "a"}));
        let from_b = obj("Node", "", "dup", json!({"from": "b"}));
        let only_a = obj("Node", "", "only-a", json!({}));
        write(&d.join("a.yaml"), &format!("{from_a}\n---\n{only_a}"));
        write(&d.join("b/b.yaml"), &from_b.to_string());
        let mut stream = watch(config(d)).unwrap();
        expect_listing(
            &mut stream,
            vec![
                upsert(key("Node", "", "dup"), from_a.clone()),
                upsert(key("Node", "", "only-a"), only_a.clone()),
            ],
        )
        .await;

        // a.yaml drops it: b's definition takes over, as an upsert.
        write(&d.join("a.yaml"), &only_a.to_string());
        assert_eq!(
            next(&mut stream).await,
            upsert(key("Node", "", "dup"), from_b.clone())
        );
        // a.yaml defines it again: a wins again.
        write(&d.join("a.yaml"), &format!("{only_a}\n---\n{from_a}"));
        assert_eq!(
            next(&mut stream).await,
            upsert(key("Node", "", "dup"), from_a.clone())
        );
        // Removing the losing file changes nothing; removing the winner then deletes.
        fs::remove_file(d.join("b/b.yaml")).unwrap();
        write(&d.join("a.yaml"), &only_a.to_string());
        assert_eq!(
            next(&mut stream).await,
            delete(key("Node", "", "dup"), from_a)
        );
    }

    #[tokio::test]
    async fn oversized_values_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let small = obj("Node", "", "small", json!({}));
        let big = obj("Node", "", "big", json!({"blob": "x".repeat(300)}));
        write(&d.join("a.yaml"), &format!("{big}\n---\n{small}"));
        let mut config = config(d);
        config.common.limits.max_bytes = 200;
        let mut stream = watch(config).unwrap();
        expect_listing(
            &mut stream,
            vec![upsert(key("Node", "", "small"), small.clone())],
        )
        .await;
        // Shrinking it below the limit brings it in.
        let fits = obj("Node", "", "big", json!({"blob": "x"}));
        write(&d.join("a.yaml"), &format!("{fits}\n---\n{small}"));
        assert_eq!(
            next(&mut stream).await,
            upsert(key("Node", "", "big"), fits)
        );
    }

    #[tokio::test]
    async fn files_in_new_subdirectories_are_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut stream = watch(config(d)).unwrap();
        expect_listing(&mut stream, vec![]).await;
        let first = obj("Node", "", "first", json!({}));
        write(&d.join("new/deeper/first.yaml"), &first.to_string());
        assert_eq!(
            next(&mut stream).await,
            upsert(key("Node", "", "first"), first)
        );
        // Once the scan has seen the new directory, the watch covers it too.
        let second = obj("Node", "", "second", json!({}));
        write(&d.join("new/deeper/second.json"), &second.to_string());
        assert_eq!(
            next(&mut stream).await,
            upsert(key("Node", "", "second"), second)
        );
    }

    #[tokio::test]
    async fn a_vanished_directory_fails_once_then_resyncs() {
        let parent = tempfile::tempdir().unwrap();
        let d = parent.path().join("data");
        let n = obj("Node", "", "n", json!({}));
        write(&d.join("a.yaml"), &n.to_string());
        let mut config = config(&d);
        config.rescan_interval = Duration::from_millis(100);
        config.common.cluster = Arc::from("east");
        let cluster = config.common.cluster.clone();
        let mut stream = watch(config).unwrap();
        let east = |name: &str| ResourceKey::new("east", "Node", "", name);
        let listing = |names: Vec<(&str, &Value)>| {
            let mut expected = vec![
                status_event(&cluster, SourceStatus::ResyncInProgress),
                SourceEvent::ResyncStart {
                    cluster: cluster.clone(),
                },
            ];
            for (name, value) in names {
                let bytes = serde_json::to_vec(value).unwrap();
                expected.push(SourceEvent::Upsert {
                    key: east(name),
                    revision: revision_of(&bytes),
                    value: Bytes::from(bytes),
                });
            }
            expected.push(SourceEvent::ResyncDone {
                cluster: cluster.clone(),
            });
            expected.push(status_event(&cluster, SourceStatus::InSync));
            expected
        };
        for expected in listing(vec![("n", &n)]) {
            assert_eq!(next(&mut stream).await, expected);
        }

        let moved = parent.path().join("moved");
        fs::rename(&d, &moved).unwrap();
        match next(&mut stream).await {
            SourceEvent::Status {
                cluster: c,
                status: SourceStatus::ConnectionFailed(reason),
            } => {
                assert_eq!(c, cluster);
                assert!(reason.contains("data"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
        // Back, with one more object: a full resync, and no second failure report.
        let m = obj("Node", "", "m", json!({}));
        write(&moved.join("b.yaml"), &m.to_string());
        fs::rename(&moved, &d).unwrap();
        for expected in listing(vec![("m", &m), ("n", &n)]) {
            assert_eq!(next(&mut stream).await, expected);
        }
        // And live again.
        let o = obj("Node", "", "o", json!({}));
        write(&d.join("c.yaml"), &o.to_string());
        assert_eq!(next(&mut stream).await, upsert(east("o"), o));
    }

    #[tokio::test]
    async fn watch_checks_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(matches!(
            watch(FileSourceConfig::new(&missing, local())),
            Err(FileSourceError::NotFound { .. })
        ));
        let file = dir.path().join("f.yaml");
        write(&file, "");
        assert!(matches!(
            watch(FileSourceConfig::new(&file, local())),
            Err(FileSourceError::NotADirectory { .. })
        ));
    }

    /// `start` waits for a directory that does not exist yet (a remote cluster's may appear
    /// later): `Connecting`, one `ConnectionFailed`, then the listing once it is there. A driver
    /// that gave up would end the stream, and `next` would fail.
    #[tokio::test]
    async fn start_waits_for_a_missing_directory() {
        let parent = tempfile::tempdir().unwrap();
        let d = parent.path().join("later");
        let mut config = config(&d);
        config.common.backoff = crate::Backoff {
            min: Duration::from_millis(20),
            max: Duration::from_millis(100),
        };
        let cluster = config.common.cluster.clone();
        let mut stream = start(config);
        assert_eq!(
            next(&mut stream).await,
            status_event(&cluster, SourceStatus::Connecting)
        );
        match next(&mut stream).await {
            SourceEvent::Status {
                status: SourceStatus::ConnectionFailed(reason),
                ..
            } => assert!(reason.contains("later"), "{reason}"),
            other => panic!("unexpected {other:?}"),
        }
        // Several retries go by, silently (one failure report), and the stream stays open.
        assert!(
            timeout(Duration::from_millis(500), stream.next())
                .await
                .is_err(),
            "nothing more until the directory exists"
        );
        let n = obj("Node", "", "n", json!({}));
        write(&d.join("a.yaml"), &n.to_string());
        expect_listing(&mut stream, vec![upsert(key("Node", "", "n"), n)]).await;
        // And live: the watch is set up once the directory exists.
        let m = obj("Node", "", "m", json!({}));
        write(&d.join("b.yaml"), &m.to_string());
        assert_eq!(next(&mut stream).await, upsert(key("Node", "", "m"), m));
    }

    #[test]
    fn watch_outside_a_runtime_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            watch(FileSourceConfig::new(dir.path(), local())),
            Err(FileSourceError::NoRuntime)
        ));
    }

    #[test]
    fn parse_errors_carry_line_and_column() {
        let yaml = parse_file(
            Path::new("x.yaml"),
            b"kind: Node\nmetadata: {name: a}\n---\nkind: [\n  - b\n",
            "",
            &ValueLimits::default(),
            &SourceCounters::default(),
        )
        .unwrap_err();
        assert!(yaml.contains("line"), "{yaml}");
        let json = parse_file(
            Path::new("x.json"),
            b"{\"kind\": \"Node\"}\n{\"kind\": }",
            "",
            &ValueLimits::default(),
            &SourceCounters::default(),
        )
        .unwrap_err();
        assert!(json.contains("line 2 column"), "{json}");
    }

    #[test]
    fn canonical_values_ignore_format_and_order() {
        let parse = |path: &str, text: &str| {
            parse_file(
                Path::new(path),
                text.as_bytes(),
                "c",
                &ValueLimits::default(),
                &SourceCounters::default(),
            )
            .unwrap()
        };
        let a = parse(
            "a.yaml",
            "kind: K\nmetadata: {name: n, namespace: ns, resourceVersion: '1', generation: 3}\nspec: {b: [1, 2], a: x}\n",
        );
        let b = parse(
            "b.json",
            r#"{"spec":{"a":"x","b":[1,2]},"metadata":{"generation":3,"namespace":"ns","name":"n","resourceVersion":"7","managedFields":[]},"kind":"K"}"#,
        );
        assert_eq!(a, b);
        assert_eq!(a[0].key, ResourceKey::new("c", "K", "ns", "n"));
        assert_eq!(
            a[0].value,
            Bytes::from_static(br#"{"kind":"K","metadata":{"generation":3,"name":"n","namespace":"ns"},"spec":{"a":"x","b":[1,2]}}"#)
        );
        assert_eq!(a[0].revision, revision_of(&a[0].value));
    }

    #[test]
    fn namespaced_kinds_without_a_namespace_go_to_default() {
        let parse = |text: &str| {
            parse_file(
                Path::new("a.yaml"),
                text.as_bytes(),
                "c",
                &ValueLimits::default(),
                &SourceCounters::default(),
            )
            .unwrap()
        };
        let wep = parse("kind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {}\n");
        assert_eq!(
            wep[0].key,
            ResourceKey::new("c", "WorkloadEndpoint", "default", "w")
        );
        assert!(
            std::str::from_utf8(&wep[0].value)
                .unwrap()
                .contains(r#""namespace":"default""#)
        );
        // Cluster-scoped and unknown kinds keep no namespace.
        let pool = parse("kind: IPPool\nmetadata: {name: p}\n");
        assert_eq!(pool[0].key, ResourceKey::new("c", "IPPool", "", "p"));
        let other = parse("kind: Unknown\nmetadata: {name: u}\n");
        assert_eq!(other[0].key, ResourceKey::new("c", "Unknown", "", "u"));
    }
}
