//! One subscription's stream as the agent receives it: the messages queued until their events
//! are handed out, and the checks that make a message an honest server never sends at that point
//! (a second hello, an unexpected `Replace`, a batch over the limits) cost the server its stream,
//! never the agent its memory or CPU. Apart from the reconnecting state machine in [`super`], so
//! that each reads on its own.

use std::collections::VecDeque;

use meshsync_proto::compression::{CompressionError, decompress_batch};
use meshsync_proto::limits::LimitError;
use meshsync_proto::{self as pb, sync_client::SyncClient, sync_event};
use tonic::transport::Channel;
use tracing::debug;

use crate::codec::Received;

/// A message received from the server, not yet applied.
pub(super) enum Incoming {
    Hello(pb::Hello),
    /// An update, and whether it came in seq order (see `UpdateBatch.unordered`).
    Update(pb::Update, bool),
    Status(pb::Status),
    Reconnect(pb::Reconnect),
    Replace(pb::Replace),
    /// The batch before this ended a breadcrumb: the mirror holds the cut at this seq.
    Cut(u64),
}

/// One subscription's stream and what has been received on it.
pub(super) struct Subscribed {
    pub(super) stream: tonic::Streaming<Received>,
    /// For `Report`s, on the same connection.
    pub(super) client: SyncClient<Channel>,
    /// From the hello: names this stream in reports.
    pub(super) stream_id: u64,
    /// When the next periodic report is due: one timer per stream, reset when a report is sent
    /// (not a new timer per received message).
    pub(super) report_timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// Received but not yet applied.
    pub(super) received: VecDeque<Incoming>,
    pub(super) snapshot: SnapshotPhase,
    /// What this stream accepts in a `CompressedBatch`: offered in the request, and at most
    /// `max_bytes` once decompressed.
    pub(super) compression: Accepted,
    /// The path of the hello received on this stream (`None`: none yet).
    pub(super) hello_path: Option<i32>,
    /// An anti-entropy hello was received and neither its `Replace` nor a status yet.
    pub(super) replace_expected: bool,
}

/// Why the agent drops a stream on what its server sent (and resubscribes).
#[derive(Debug, thiserror::Error)]
pub(super) enum Violation {
    #[error("unreadable compressed batch: {0}")]
    Compressed(#[from] CompressionError),
    #[error("refused a message: {0}")]
    Refused(#[from] LimitError),
    #[error("a second hello on the same stream")]
    SecondHello,
    #[error("a replace that is not the one after an anti-entropy hello")]
    UnexpectedReplace,
}

/// The compressed batches a stream accepts.
#[derive(Clone, Copy)]
pub(super) struct Accepted {
    pub(super) zstd: bool,
    pub(super) max_bytes: usize,
}

/// How far the server's snapshot has come on this stream.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum SnapshotPhase {
    /// Subscribed; no hello applied yet.
    AwaitingHello,
    /// The hello is applied and the snapshot is arriving: the next status ends it, and the
    /// mirror's digests are checked against that status.
    Receiving,
    /// Past the snapshot: live updates.
    Following,
}

impl Subscribed {
    /// Moves the next report to `at`.
    pub(super) fn report_at(&mut self, at: tokio::time::Instant) {
        self.report_timer.as_mut().reset(at);
    }

    /// Queues a received message; it is applied to the mirror only when its events are returned,
    /// so the mirror always equals the fold of the events handed out so far. A compressed batch
    /// that cannot be read is an error (its updates would be lost), and so is a message an honest
    /// server never sends at that point: a second hello (each would restart the snapshot, an
    /// O(mirror) step, for a few bytes), or a `Replace` other than the one after an anti-entropy
    /// hello (each costs a pass over the mirror).
    pub(super) fn receive(&mut self, event: pb::SyncEvent) -> Result<(), Violation> {
        match event.event {
            Some(sync_event::Event::Hello(hello)) => {
                if self.hello_path.is_some() {
                    return Err(Violation::SecondHello);
                }
                self.hello_path = Some(hello.path);
                self.replace_expected = hello.path == pb::SyncPath::AntiEntropy as i32;
                self.received.push_back(Incoming::Hello(hello))
            }
            Some(sync_event::Event::Updates(batch)) => self.receive_batch(batch),
            Some(sync_event::Event::Status(status)) => {
                self.replace_expected = false;
                self.received.push_back(Incoming::Status(status))
            }
            Some(sync_event::Event::Reconnect(reconnect)) => {
                self.received.push_back(Incoming::Reconnect(reconnect))
            }
            Some(sync_event::Event::Replace(replace)) => {
                if !std::mem::take(&mut self.replace_expected) {
                    return Err(Violation::UnexpectedReplace);
                }
                self.received.push_back(Incoming::Replace(replace))
            }
            Some(sync_event::Event::Compressed(compressed)) => {
                if !self.compression.zstd {
                    return Err(CompressionError::Unsupported(compressed.algorithm).into());
                }
                let batch = decompress_batch(&compressed, self.compression.max_bytes)?;
                self.receive_batch(batch);
            }
            None => debug!("ignoring an empty or unknown event"),
        }
        Ok(())
    }

    fn receive_batch(&mut self, batch: pb::UpdateBatch) {
        let ordered = !batch.unordered;
        self.received.extend(
            batch
                .updates
                .into_iter()
                .map(|u| Incoming::Update(u, ordered)),
        );
        if batch.cut_seq > 0 {
            self.received.push_back(Incoming::Cut(batch.cut_seq));
        }
    }
}

/// The path a hello announces: `full`, `resume` or `anti-entropy`.
pub fn sync_path_name(hello: &pb::Hello) -> &'static str {
    if hello.path == pb::SyncPath::AntiEntropy as i32 {
        "anti-entropy"
    } else if is_resume(hello) {
        "resume"
    } else {
        "full"
    }
}

/// Whether the hello announces a resume (servers before `path` set only `resumed`).
pub(super) fn is_resume(hello: &pb::Hello) -> bool {
    hello.path == pb::SyncPath::Resume as i32
        || (hello.path == pb::SyncPath::Unspecified as i32 && hello.resumed)
}
