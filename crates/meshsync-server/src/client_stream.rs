//! One agent's stream: hello, snapshot, status, then every later breadcrumb's shared frames.
//!
//! The stream is pulled by tonic only when the connection can take more bytes, so a slow agent
//! simply stops pulling (HTTP/2 flow control) and costs nothing but the breadcrumbs it still
//! references. An agent that falls more than `lag_limit` sequence numbers behind the head skips the
//! intermediate breadcrumbs and receives one coalesced difference (latest value per key) instead,
//! which also lets the breadcrumbs it was holding be freed.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::Stream;
use meshsync_cache::{Breadcrumb, Follower, SnapshotCache, Subscription, diff_frames};
use meshsync_proto::Frame;
use tracing::{debug, info};

use crate::connections::ConnectionGuard;

/// Everything a client stream needs.
pub(crate) struct ClientStream {
    pub(crate) node: String,
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
    crumb: Option<Arc<Breadcrumb>>,
    pending: VecDeque<Frame>,
    client: ClientStream,
}

impl ClientStream {
    /// The frames of this client's stream, ending when the cache stops.
    pub(crate) fn into_stream(self) -> impl Stream<Item = Result<Frame, tonic::Status>> + Send {
        let state = State {
            follower: self.cache.follower(),
            ended: false,
            crumb: None,
            pending: VecDeque::from([self.hello.clone()]),
            client: self,
        };
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
                    return Some((Ok(frame), state));
                }
                let mut shutdown = state.client.shutdown.clone();
                let advanced = tokio::select! {
                    advanced = state.advance() => advanced,
                    _ = shutdown.wait_for(|stop| *stop) => continue,
                };
                if !advanced {
                    debug!(node = %state.client.node, "cache stopped; ending stream");
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
        let Some(crumb) = self.crumb.clone() else {
            let shared = self.client.cache.snapshot(sub).await;
            debug!(node = %self.client.node, subscription = %sub, seq = shared.crumb.seq,
                frames = shared.frames.len(), "sending snapshot to new client");
            self.pending.extend(shared.frames.iter().cloned());
            self.pending.push_back(shared.crumb.status_frame(sub));
            self.crumb = Some(shared.crumb);
            return true;
        };
        let Some(next) = self.follower.next(&crumb).await else {
            return false;
        };
        let head = self.follower.head();
        if head.seq.saturating_sub(crumb.seq) > self.client.lag_limit {
            info!(node = %self.client.node, behind = head.seq - crumb.seq, to_seq = head.seq,
                "client lagging; sending a coalesced difference instead of every update");
            self.pending
                .extend(diff_frames(&crumb.snapshot, &head.snapshot, sub));
            self.pending.push_back(head.status_frame(sub));
            self.crumb = Some(head);
            return true;
        }
        self.pending.extend(next.frames(sub).iter().cloned());
        if next.status_changed {
            self.pending.push_back(next.status_frame(sub));
        }
        self.crumb = Some(next);
        true
    }
}
