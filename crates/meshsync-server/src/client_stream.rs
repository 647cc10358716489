//! One agent's stream: hello, snapshot, status, then every later breadcrumb's shared frames.
//!
//! The stream is pulled by tonic only when the connection can take more bytes, so a slow agent
//! simply stops pulling (HTTP/2 flow control). Its position is shared with the stream watcher
//! (`streams.rs`), which releases the breadcrumbs a stalled stream pins and closes a connection
//! that makes no progress, whether or not the stream is polled. An agent that falls more than
//! `lag_limit` sequence numbers behind the head, or whose breadcrumbs were released, skips the
//! intermediate breadcrumbs and receives one coalesced difference (latest value per key) instead.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::Stream;
use meshsync_cache::{Follower, SnapshotCache, Subscription, diff_frames};
use meshsync_proto::Frame;
use tracing::{debug, info};

use crate::connections::ConnectionGuard;
use crate::streams::{Position, StreamShared};

/// Everything a client stream needs.
pub(crate) struct ClientStream {
    pub(crate) shared: Arc<StreamShared>,
    pub(crate) sub: Subscription,
    pub(crate) cache: SnapshotCache,
    pub(crate) hello: Frame,
    pub(crate) lag_limit: u64,
    /// Becomes true when the server shuts down: the stream ends with `UNAVAILABLE`.
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
    /// Held for the stream's lifetime: the connection count drops when tonic drops the stream.
    pub(crate) _guard: ConnectionGuard,
}

struct State {
    follower: Follower,
    ended: bool,
    pending: VecDeque<Frame>,
    client: ClientStream,
}

/// Where the stream goes next, read from the shared position.
enum Next {
    Snapshot,
    After(Arc<meshsync_cache::Breadcrumb>),
    CatchUp(u64, meshsync_cache::Snapshot),
}

impl ClientStream {
    /// The frames of this client's stream, ending when the cache stops.
    pub(crate) fn into_stream(self) -> impl Stream<Item = Result<Frame, tonic::Status>> + Send {
        let state = State {
            follower: self.cache.follower(),
            ended: false,
            pending: VecDeque::from([self.hello.clone()]),
            client: self,
        };
        state.client.shared.pending.store(1, Ordering::Release);
        futures::stream::unfold(state, |mut state| async move {
            if state.ended {
                return None;
            }
            loop {
                if *state.client.shutdown.borrow() {
                    state.ended = true;
                    let status = tonic::Status::unavailable("server is shutting down; reconnect");
                    return Some((Err(status), state));
                }
                if let Some(frame) = state.pending.pop_front() {
                    let shared = &state.client.shared;
                    shared.pending.store(state.pending.len(), Ordering::Release);
                    shared.progress.fetch_add(1, Ordering::AcqRel);
                    return Some((Ok(frame), state));
                }
                let mut shutdown = state.client.shutdown.clone();
                let advanced = tokio::select! {
                    advanced = state.advance() => advanced,
                    _ = shutdown.wait_for(|stop| *stop) => continue,
                };
                state
                    .client
                    .shared
                    .pending
                    .store(state.pending.len(), Ordering::Release);
                if !advanced {
                    debug!(node = %state.client.shared.node, "cache stopped; ending stream");
                    return None;
                }
            }
        })
    }
}

impl State {
    /// Queues the next frames. Returns false when there will be no more.
    async fn advance(&mut self) -> bool {
        let sub = self.client.sub;
        let shared = self.client.shared.clone();
        let next = match &*shared.position() {
            Position::Start => Next::Snapshot,
            Position::At(crumb) => Next::After(crumb.clone()),
            Position::Released { seq, snapshot } => Next::CatchUp(*seq, snapshot.clone()),
        };
        let crumb = match next {
            Next::Snapshot => {
                let snap = self.client.cache.snapshot(sub).await;
                debug!(node = %shared.node, subscription = %sub, seq = snap.crumb.seq,
                    frames = snap.frames.len(), "sending snapshot to new client");
                self.pending.extend(snap.frames.iter().cloned());
                self.pending.push_back(snap.crumb.status_frame(sub));
                *shared.position() = Position::At(snap.crumb);
                return true;
            }
            Next::CatchUp(seq, snapshot) => {
                let head = self.follower.head();
                info!(node = %shared.node, from_seq = seq, to_seq = head.seq,
                    "stream resumed after releasing its breadcrumbs; sending a coalesced difference");
                self.pending
                    .extend(diff_frames(&snapshot, &head.snapshot, sub));
                self.pending.push_back(head.status_frame(sub));
                *shared.position() = Position::At(head);
                return true;
            }
            Next::After(crumb) => crumb,
        };
        if crumb.next().is_none() {
            shared.caught_up.fetch_add(1, Ordering::AcqRel);
        }
        let Some(next) = self.follower.next(&crumb).await else {
            return false;
        };
        let head = self.follower.head();
        if head.seq.saturating_sub(crumb.seq) > self.client.lag_limit {
            info!(node = %shared.node, behind = head.seq - crumb.seq, to_seq = head.seq,
                "client lagging; sending a coalesced difference instead of every update");
            self.pending
                .extend(diff_frames(&crumb.snapshot, &head.snapshot, sub));
            self.pending.push_back(head.status_frame(sub));
            *shared.position() = Position::At(head);
            return true;
        }
        self.pending.extend(next.frames(sub).iter().cloned());
        if next.status_changed {
            self.pending.push_back(next.status_frame(sub));
        }
        *shared.position() = Position::At(next);
        true
    }
}
