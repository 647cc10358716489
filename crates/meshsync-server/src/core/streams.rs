//! Every open stream's position, watched by one task so that a stream costs bounded memory
//! whether or not HTTP/2 polls it.
//!
//! A stream that is not polled (its peer stopped reading, so flow control holds it) keeps the
//! breadcrumb it last sent, and with it every later breadcrumb: the whole churn since it stalled.
//! The lag limit could only act when the stream is polled. The watcher checks each stream once per
//! tick: a stream that has not caught up with the head since the previous tick and holds more than
//! `max_backlog_bytes` of changes behind the head releases its breadcrumb, keeping only the
//! snapshot at its position (which shares structure with the head and holds at most the old
//! versions of the keys changed since, never the churn); when polled again it sends one coalesced
//! difference. A stream with something to send that has sent nothing for `write_timeout` gets its
//! connection closed.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use meshsync_cache::{Breadcrumb, Snapshot, SnapshotCache};
use tracing::{info, warn};

use crate::core::accept::ConnState;
use crate::core::connections::Connections;

/// Where a stream is in the chain.
pub(crate) enum Position {
    /// Nothing sent yet but the hello.
    Start,
    /// Sent everything up to this breadcrumb (pending frames aside).
    At(Arc<Breadcrumb>),
    /// Released by the watcher: the client has (or is being sent) this snapshot.
    Released { seq: u64, snapshot: Snapshot },
}

/// What a stream shares with the watcher.
pub(crate) struct StreamShared {
    pub(crate) peer: String,
    /// Escaped for logging.
    pub(crate) node: String,
    pub(crate) conn: Option<Arc<ConnState>>,
    pub(crate) position: Mutex<Position>,
    /// Frames handed to HTTP/2.
    pub(crate) progress: AtomicU64,
    /// Times the stream found itself at the head with nothing left to send.
    pub(crate) caught_up: AtomicU64,
    /// Frames queued in the stream and not yet handed to HTTP/2.
    pub(crate) pending: AtomicUsize,
    watch: Mutex<Watch>,
    /// The agent understands `Reconnect` (it advertised the capability).
    pub(crate) reconnect_capable: bool,
    /// When its snapshot was queued (the drain moves the oldest first).
    snapshot_at: Mutex<Option<Instant>>,
    /// The server asked this stream to end (drain, shedding).
    leave: std::sync::atomic::AtomicBool,
    /// Why, and another replica to suggest (for the `Reconnect` message).
    leave_reason: Mutex<Option<(String, String)>>,
    pub(crate) leave_notify: tokio::sync::Notify,
}

/// The watcher's own memory of a stream.
#[derive(Default)]
struct Watch {
    progress: u64,
    caught_up: u64,
    stalled_since: Option<Instant>,
}

impl StreamShared {
    pub(crate) fn new(
        peer: String,
        node: String,
        conn: Option<Arc<ConnState>>,
        reconnect_capable: bool,
    ) -> Self {
        StreamShared {
            reconnect_capable,
            snapshot_at: Mutex::new(None),
            leave: std::sync::atomic::AtomicBool::new(false),
            leave_reason: Mutex::new(None),
            leave_notify: tokio::sync::Notify::new(),
            peer,
            node,
            conn,
            position: Mutex::new(Position::Start),
            progress: AtomicU64::new(0),
            caught_up: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
            watch: Mutex::new(Watch::default()),
        }
    }

    /// Notes that the stream's snapshot was queued now.
    pub(crate) fn snapshot_sent(&self) {
        *self.snapshot_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// When the snapshot was queued; streams that have none yet sort last.
    pub(crate) fn snapshot_at(&self) -> (bool, Option<Instant>) {
        let at = *self.snapshot_at.lock().unwrap_or_else(|e| e.into_inner());
        (at.is_none(), at)
    }

    /// Asks the stream to end: it sends `Reconnect` (when the agent understands it) and closes.
    pub(crate) fn ask_to_leave(&self) {
        self.ask_to_leave_with("server is draining", None);
    }

    /// [`Self::ask_to_leave`] with the reason and another replica the `Reconnect` carries.
    pub(crate) fn ask_to_leave_with(&self, reason: &str, elsewhere: Option<String>) {
        *self.leave_reason.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((reason.to_string(), elsewhere.unwrap_or_default()));
        self.leave.store(true, Ordering::Release);
        self.leave_notify.notify_one();
    }

    /// Why the stream was asked to leave, and where to go.
    pub(crate) fn leave_reason(&self) -> (String, String) {
        self.leave_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| ("server is draining".into(), String::new()))
    }

    pub(crate) fn asked_to_leave(&self) -> bool {
        self.leave.load(Ordering::Acquire)
    }

    pub(crate) fn position(&self) -> std::sync::MutexGuard<'_, Position> {
        self.position.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The open streams.
#[derive(Default)]
pub(crate) struct Streams {
    streams: Mutex<Vec<Weak<StreamShared>>>,
}

/// Settings of the watcher.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WatchConfig {
    pub(crate) max_backlog_bytes: u64,
    pub(crate) write_timeout: Duration,
}

impl WatchConfig {
    /// How often every stream is looked at: often enough that a stalled stream pins at most a
    /// second of churn beyond the bound, and that the write timeout is met within a quarter.
    fn tick(&self) -> Duration {
        (self.write_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

impl Streams {
    pub(crate) fn register(&self, stream: &Arc<StreamShared>) {
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(stream));
    }

    /// The open streams.
    pub(crate) fn open(&self) -> Vec<Arc<StreamShared>> {
        self.live()
    }

    /// The open streams, dropping the entries of closed ones.
    fn live(&self) -> Vec<Arc<StreamShared>> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let mut live = Vec::with_capacity(streams.len());
        streams.retain(|w| match w.upgrade() {
            Some(s) => {
                live.push(s);
                true
            }
            None => false,
        });
        live
    }

    /// Checks every stream once. See the module documentation.
    fn check(&self, head: &Breadcrumb, config: WatchConfig, counters: &Connections) {
        let now = Instant::now();
        let mut backlog_max = 0u64;
        for stream in self.live() {
            let progress = stream.progress.load(Ordering::Acquire);
            let caught_up = stream.caught_up.load(Ordering::Acquire);
            let pending = stream.pending.load(Ordering::Acquire) > 0;
            let mut watch = stream.watch.lock().unwrap_or_else(|e| e.into_inner());
            let (behind, backlog) = {
                let mut position = stream.position();
                let (behind, backlog) = match &*position {
                    Position::Start => (pending, 0),
                    Position::At(crumb) => (
                        pending || !std::ptr::eq(Arc::as_ptr(crumb), head),
                        head.bytes.saturating_sub(crumb.bytes),
                    ),
                    Position::Released { .. } => (true, 0),
                };
                let stuck = caught_up == watch.caught_up;
                if backlog > config.max_backlog_bytes
                    && stuck
                    && let Position::At(crumb) = &*position
                {
                    let (seq, snapshot) = (crumb.seq, crumb.snapshot.clone());
                    *position = Position::Released { seq, snapshot };
                    counters.released.fetch_add(1, Ordering::Relaxed);
                    if let Some(more) = counters.release_log.hit() {
                        info!(peer = %stream.peer, node = %stream.node, seq, behind_bytes = backlog,
                            limit = config.max_backlog_bytes, also_released_since_last_line = more,
                            "stream not keeping up; releasing its breadcrumbs (it will get a coalesced difference)");
                    }
                    (behind, 0)
                } else {
                    (behind, backlog)
                }
            };
            backlog_max = backlog_max.max(backlog);
            if !behind || progress != watch.progress {
                watch.stalled_since = None;
            } else if watch.stalled_since.is_none() {
                watch.stalled_since = Some(now);
            }
            watch.progress = progress;
            watch.caught_up = caught_up;
            if let (Some(since), Some(conn)) = (watch.stalled_since, &stream.conn)
                && now.duration_since(since) >= config.write_timeout
                && !conn.is_killed()
            {
                counters.closed_stalled.fetch_add(1, Ordering::Relaxed);
                warn!(peer = %stream.peer, node = %stream.node, stalled_for = ?now.duration_since(since),
                    write_timeout = ?config.write_timeout,
                    "closing connection: its stream has sent nothing within the write timeout");
                conn.kill();
            }
        }
        counters.backlog_max.store(backlog_max, Ordering::Relaxed);
    }
}

/// Runs the watcher until `stop` becomes true or the cache and every stream are gone.
pub(crate) async fn watch(
    streams: Arc<Streams>,
    cache: SnapshotCache,
    config: WatchConfig,
    counters: Arc<Connections>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(config.tick());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let head = cache.head();
        streams.check(&head, config, &counters);
    }
}
