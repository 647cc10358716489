//! One agent's session, whatever its protocol: its first units (the front end's hello), the
//! snapshot, the status, then every later breadcrumb's shared units — as neutral
//! [`SessionItem`]s in the front end's [`Encoding`], which the front end puts on its wire.
//!
//! The session is pulled by the front end only when the connection can take more bytes, so a slow
//! agent simply stops pulling (flow control, or a full socket). Its position is shared with the stream watcher
//! (`streams.rs`), which releases the breadcrumbs a stalled stream pins and closes a connection
//! that makes no progress, whether or not the stream is polled. An agent that falls more than
//! `lag_limit` sequence numbers behind the head, or whose breadcrumbs were released, skips the
//! intermediate breadcrumbs and receives one coalesced difference (latest value per key) instead.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::Stream;
use meshsync_cache::{
    Breadcrumb, Encoding, Follower, Repair, Snapshot, SnapshotCache, Subscription, SyncState,
    diff_units,
};
use tracing::{debug, info};

use crate::core::connections::{ConnectionGuard, Connections};
use crate::core::repairs::RepairSlot;
use crate::core::streams::{Position, StreamShared};

/// What a session yields; the front end puts it on its wire.
#[derive(Debug)]
pub enum SessionItem<U> {
    /// The next unit to send.
    Send(U),
    /// The server asks the agent to go (drain, rebalancing): the session's last item. The front
    /// end tells the agent (gRPC: `Reconnect` when the agent understands it, else `UNAVAILABLE`)
    /// or closes the connection.
    Leave { reason: String, elsewhere: String },
    /// The server is shutting down: the session's last item.
    Shutdown,
}

/// Everything a session needs.
pub(crate) struct Session<E: Encoding> {
    pub(crate) shared: Arc<StreamShared>,
    pub(crate) sub: Subscription,
    /// The front end's wire form (for gRPC: plain or zstd frames, negotiated in the hello).
    pub(crate) encoding: E,
    pub(crate) cache: SnapshotCache,
    /// The front end's first units (its hello), sent before anything else.
    pub(crate) first: Vec<E::Unit>,
    /// Anti-entropy: the agent's bucket digests, when the stream starts by repairing its mirror
    /// instead of sending a full snapshot (for encodings with a bucket replacement).
    pub(crate) mirror: Option<Vec<meshsync_proto::BucketDigests>>,
    /// A resume's reservation of a private repair, taken before the hello (see `repairs.rs`).
    pub(crate) repair: Option<RepairSlot>,
    /// Where anti-entropy reserves its private repair.
    pub(crate) connections: Arc<Connections>,
    pub(crate) lag_limit: u64,
    /// Becomes true when the server shuts down: the session ends with [`SessionItem::Shutdown`].
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
    /// Held for the stream's lifetime: the connection count drops when tonic drops the stream.
    pub(crate) _guard: ConnectionGuard,
    /// Likewise the agent's entry in the registry.
    pub(crate) _registered: crate::core::agents::Registered,
}

/// The stream between two polls. Where it is in the breadcrumb chain is not here but in the
/// [`Position`] it shares with the watcher: snapshot pending (`Start`), following (`At`),
/// catching up after a release (`Released`).
enum State<E: Encoding> {
    /// Sending: queued units first, then the next step from the position.
    Open(Box<Open<E>>),
    /// The stream sent its last item (the shutdown status); the next poll ends it.
    Ended,
}

/// An open stream.
struct Open<E: Encoding> {
    follower: Follower,
    /// Units queued and not yet handed to the front end (their count is mirrored in
    /// `shared.pending`).
    pending: VecDeque<E::Unit>,
    /// The last step waited at the head for the next breadcrumb.
    waited: bool,
    /// The reservation of the private repair queued in `pending`: given back once its last frame
    /// is handed to the front end (a stalled stream keeps it until it ends).
    repair_queued: Option<RepairSlot>,
    client: Session<E>,
}

/// The next step, read from the shared position (copied out: the lock is not held across an
/// await).
enum Step {
    /// Nothing sent but the hello: send the subscription's snapshot.
    Snapshot,
    /// Following: send the breadcrumb after this one, or a coalesced difference when lagging.
    Follow(Arc<Breadcrumb>),
    /// The watcher released the breadcrumbs: send one coalesced difference from this snapshot.
    CatchUp { seq: u64, snapshot: Snapshot },
}

impl<E: Encoding> Session<E> {
    /// The session's items, ending when the cache stops.
    pub(crate) fn into_stream(mut self) -> impl Stream<Item = SessionItem<E::Unit>> + Send {
        let first = std::mem::take(&mut self.first);
        self.shared.pending.store(first.len(), Ordering::Release);
        let open = Open {
            follower: self.cache.follower(),
            pending: VecDeque::from(first),
            waited: false,
            repair_queued: None,
            client: self,
        };
        futures::stream::unfold(State::Open(Box::new(open)), |state| async move {
            let State::Open(mut open) = state else {
                return None;
            };
            loop {
                if *open.client.shutdown.borrow() {
                    return Some((SessionItem::Shutdown, State::Ended));
                }
                if open.client.shared.asked_to_leave() {
                    let shared = &open.client.shared;
                    info!(node = %shared.node, peer = %shared.peer, capable = shared.reconnect_capable,
                        "asking the agent to reconnect elsewhere; closing its stream");
                    let (reason, elsewhere) = shared.leave_reason();
                    return Some((SessionItem::Leave { reason, elsewhere }, State::Ended));
                }
                if let Some(unit) = open.pending.pop_front() {
                    if open.pending.is_empty() {
                        open.repair_queued = None;
                    }
                    let shared = &open.client.shared;
                    shared.pending.store(open.pending.len(), Ordering::Release);
                    shared.progress.fetch_add(1, Ordering::AcqRel);
                    return Some((SessionItem::Send(unit), State::Open(open)));
                }
                let mut shutdown = open.client.shutdown.clone();
                let shared = open.client.shared.clone();
                let advanced = tokio::select! {
                    advanced = open.advance() => advanced,
                    _ = shutdown.wait_for(|stop| *stop) => continue,
                    _ = shared.leave_notify.notified() => continue,
                };
                open.client
                    .shared
                    .pending
                    .store(open.pending.len(), Ordering::Release);
                if !advanced {
                    debug!(node = %open.client.shared.node, "cache stopped; ending stream");
                    return None;
                }
            }
        })
    }
}

impl<E: Encoding> Open<E> {
    /// Queues the next units. Returns false when there will be no more.
    async fn advance(&mut self) -> bool {
        let step = match &*self.client.shared.position() {
            Position::Start => Step::Snapshot,
            Position::At(crumb) => Step::Follow(crumb.clone()),
            Position::Released { seq, snapshot } => Step::CatchUp {
                seq: *seq,
                snapshot: snapshot.clone(),
            },
        };
        match step {
            Step::Snapshot => match self.client.mirror.take() {
                Some(mirror) => self.send_anti_entropy(mirror).await,
                None => {
                    self.send_snapshot().await;
                    true
                }
            },
            Step::CatchUp { seq, snapshot } => {
                let head = self.follower.head();
                info!(node = %self.client.shared.node, from_seq = seq, to_seq = head.seq,
                    "sending a coalesced difference (agent resumed, or its stream released its breadcrumbs)");
                self.send_difference(&snapshot, head);
                self.repair_queued = self.client.repair.take();
                true
            }
            Step::Follow(crumb) => self.follow(crumb).await,
        }
    }

    /// Queues the subscription's snapshot and its status.
    async fn send_snapshot(&mut self) {
        let (sub, shared) = (self.client.sub, &self.client.shared);
        let snap = self.client.cache.snapshot(sub).await;
        let units = snap.encoded(&self.client.encoding).await;
        debug!(node = %shared.node, subscription = %sub, seq = snap.crumb.seq,
            units = units.len(), "sending snapshot to new client");
        self.pending.extend(units.iter().cloned());
        self.pending
            .push_back(snap.crumb.encoded_status(&self.client.encoding, sub));
        *shared.position() = Position::At(snap.crumb);
        shared.snapshot_sent();
    }

    /// Queues the `Replace` and the content of the agent's differing buckets against the head,
    /// then the head's status — once this server is in sync: compared with a cache still listing
    /// its datastore, the agent would drop (and later get back) every key not listed yet. Until
    /// then the agent keeps its mirror. False once the cache stopped.
    async fn send_anti_entropy(&mut self, mirror: Vec<meshsync_proto::BucketDigests>) -> bool {
        let mut head = self.follower.head();
        if head.status.overall != SyncState::InSync {
            info!(node = %self.client.shared.node, "anti-entropy waits until this server is in sync");
        }
        while head.status.overall != SyncState::InSync {
            if self.follower.next(&head).await.is_none() {
                return false;
            }
            head = self.follower.head();
        }
        let (sub, shared) = (self.client.sub, &self.client.shared);
        let mut slot = None;
        let reserve = |stats: &meshsync_cache::AntiEntropyStats| {
            let reserved = self.client.connections.reserve_private_repair(
                &shared.peer,
                &shared.node,
                "anti-entropy",
                stats.sent as u64,
                head.status.total_keys(),
            );
            slot = reserved.ok();
            slot.is_some()
        };
        let encoding = &self.client.encoding;
        let repair = self
            .client
            .cache
            .anti_entropy(encoding, &head, sub, &mirror, reserve);
        let units = match repair {
            None => {
                // The encoding has no bucket replacement: the full snapshot repairs as well.
                self.send_snapshot().await;
                return true;
            }
            Some((Repair::Buckets(units), stats)) => {
                info!(node = %shared.node, seq = head.seq, buckets = stats.buckets,
                    replaced = stats.replaced, sent = stats.sent,
                    "anti-entropy: sending the agent's differing buckets only");
                units
            }
            Some((Repair::Everything(replace), stats)) => {
                info!(node = %shared.node, seq = head.seq, buckets = stats.buckets,
                    replaced = stats.replaced, differing_entries = stats.sent,
                    "anti-entropy: too much differs, or the private repair budget is taken; replacing every bucket with the shared snapshot");
                self.pending.push_back(replace);
                self.send_snapshot().await;
                return true;
            }
        };
        self.pending.extend(units);
        self.pending
            .push_back(head.encoded_status(&self.client.encoding, sub));
        self.repair_queued = slot;
        *shared.position() = Position::At(head);
        shared.snapshot_sent();
        true
    }

    /// Queues the units of the breadcrumb after `crumb`, or one coalesced difference to the head
    /// when the stream is more than `lag_limit` behind. At the head, waits for the next breadcrumb
    /// holding no reference to `crumb` (see [`Follower::wait_past`]): the position is read again
    /// afterwards, since the watcher may have released it meanwhile. False once the cache stopped.
    async fn follow(&mut self, crumb: Arc<Breadcrumb>) -> bool {
        let sub = self.client.sub;
        let shared = self.client.shared.clone();
        let next = match crumb.next() {
            // Published while the stream waited: not a sign of load (the writer lingers when
            // followers find their next breadcrumb already there).
            Some(next) if std::mem::take(&mut self.waited) => next.clone(),
            Some(_) => match self.follower.next(&crumb).await {
                Some(next) => next,
                None => return false,
            },
            None => {
                shared.caught_up.fetch_add(1, Ordering::AcqRel);
                let weak = Arc::downgrade(&crumb);
                drop(crumb);
                self.waited = true;
                return self.follower.wait_past(weak).await;
            }
        };
        let head = self.follower.head();
        if head.seq.saturating_sub(crumb.seq) > self.client.lag_limit {
            info!(node = %shared.node, behind = head.seq - crumb.seq, to_seq = head.seq,
                "client lagging; sending a coalesced difference instead of every update");
            self.send_difference(&crumb.snapshot, head);
            return true;
        }
        let encoding = &self.client.encoding;
        self.pending
            .extend(next.encoded(encoding, sub).iter().cloned());
        if next.status_changed {
            self.pending.push_back(next.encoded_status(encoding, sub));
        }
        *shared.position() = Position::At(next);
        true
    }

    /// Queues the latest value of every key that differs between `from` and `head`, then the
    /// head's status, and moves the position to the head.
    fn send_difference(&mut self, from: &Snapshot, head: Arc<Breadcrumb>) {
        let (sub, encoding) = (self.client.sub, &self.client.encoding);
        self.pending
            .extend(diff_units(encoding, from, &head.snapshot, sub));
        self.pending.push_back(head.encoded_status(encoding, sub));
        *self.client.shared.position() = Position::At(head);
    }
}
