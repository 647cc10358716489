//! The gRPC front end's [`Encoding`]: `SyncEvent` frames, plain or zstd-compressed, made once
//! per breadcrumb and shared snapshot by the cache's memo and shared by every stream.
//!
//! A frame carries at most [`MAX_UPDATES_PER_FRAME`] updates and, unless a single value is larger,
//! about [`TARGET_FRAME_BYTES`] bytes, so no frame comes near gRPC's default 4 MiB message limit and
//! a large snapshot streams in pieces.

use std::sync::LazyLock;

use bytes::Bytes;
use meshsync_cache::{
    Batch, Breadcrumb, Change, Encoding, EncodingSlot, ReplacedBuckets, SnapshotEncodings,
    Subscription, SyncStatus, UpdateRef,
};
use meshsync_model::{ResourceKey, Revision};
use meshsync_proto::{self as pb, Compression, Frame, compression, sync_event};

/// The wire's `UpdateType` of a change.
fn update_type(change: Change) -> pb::UpdateType {
    match change {
        Change::New => pb::UpdateType::New,
        Change::Updated => pb::UpdateType::Updated,
        Change::Deleted => pb::UpdateType::Deleted,
    }
}

/// Frames as an agent that negotiated `compression` receives them: the plain frames, or each
/// compressed once with zstd (from the plain frames, which are memoized too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrpcFrames {
    compression: Compression,
}

static PLAIN_SLOT: LazyLock<EncodingSlot> = LazyLock::new(|| EncodingSlot::allocate("grpc"));
static ZSTD_SLOT: LazyLock<EncodingSlot> = LazyLock::new(|| EncodingSlot::allocate("grpc+zstd"));

impl GrpcFrames {
    pub const PLAIN: GrpcFrames = GrpcFrames {
        compression: Compression::None,
    };

    pub fn new(compression: Compression) -> Self {
        GrpcFrames { compression }
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    fn compressed(&self, frames: Vec<Frame>) -> Vec<Frame> {
        match self.compression {
            Compression::None => frames,
            Compression::Zstd => compression::compress_frames(frames.iter()),
        }
    }
}

impl Encoding for GrpcFrames {
    type Unit = Frame;

    fn slot(&self) -> EncodingSlot {
        match self.compression {
            Compression::None => *PLAIN_SLOT,
            Compression::Zstd => *ZSTD_SLOT,
        }
    }

    fn updates<'a>(
        &self,
        updates: impl Iterator<Item = UpdateRef<'a>>,
        batch: Batch,
    ) -> Vec<Frame> {
        let mut builder = match batch {
            Batch::Breadcrumb { .. } => FrameBuilder::new(),
            Batch::Unordered => FrameBuilder::unordered(),
        };
        for u in updates {
            builder.push(u.seq, u.key, u.change, u.value, u.revision);
        }
        let frames = match batch {
            Batch::Breadcrumb { seq } => builder.finish_at(seq),
            Batch::Unordered => builder.finish(),
        };
        self.compressed(frames)
    }

    fn status(&self, status: &SyncStatus, sub: Subscription) -> Frame {
        status_frame(&status.to_proto(sub))
    }

    fn replace(&self, replaced: &[ReplacedBuckets]) -> Option<Frame> {
        let replace = pb::Replace {
            clusters: replaced
                .iter()
                .map(|r| pb::ReplacedBuckets {
                    cluster: r.cluster.clone(),
                    buckets: r.buckets,
                    bucket: r.bucket.clone(),
                })
                .collect(),
        };
        Some(Frame::encode(&pb::SyncEvent {
            event: Some(sync_event::Event::Replace(replace)),
        }))
    }

    fn breadcrumb(&self, crumb: &Breadcrumb, sub: Subscription) -> Vec<Frame> {
        match self.compression {
            Compression::None => meshsync_cache::breadcrumb_units(self, crumb, sub),
            Compression::Zstd => {
                compression::compress_frames(crumb.encoded(&Self::PLAIN, sub).iter())
            }
        }
    }

    fn snapshot(&self, snapshot: &SnapshotEncodings) -> Vec<Frame> {
        match self.compression {
            Compression::None => {
                meshsync_cache::snapshot_units(self, &snapshot.crumb.snapshot, snapshot.sub)
            }
            Compression::Zstd => {
                compression::compress_frames(snapshot.encoded_blocking(&Self::PLAIN).iter())
            }
        }
    }
}

/// Most updates in one frame.
pub const MAX_UPDATES_PER_FRAME: usize = 1000;
// Agents refuse a batch of more updates than their limit (`meshsync_proto::limits`).
const _: () = assert!(MAX_UPDATES_PER_FRAME <= meshsync_proto::limits::MAX_UPDATES_PER_BATCH);
/// A frame is closed once its values add up to this many bytes. Small enough that each stream's
/// transient buffers (tonic's encode buffer, h2's send queue) stay small during a snapshot, large
/// enough that per-frame overhead is noise.
pub const TARGET_FRAME_BYTES: usize = 64 << 10;

/// Collects updates and cuts them into frames.
#[derive(Default)]
pub struct FrameBuilder {
    frames: Vec<Frame>,
    batch: Vec<pb::Update>,
    bytes: usize,
    unordered: bool,
    /// Set on the last frame by [`FrameBuilder::finish_at`].
    cut_seq: u64,
}

impl FrameBuilder {
    /// A builder for a batch's deltas, in seq order.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder for a snapshot or a coalesced difference: updates in key order (see
    /// `UpdateBatch.unordered`).
    pub fn unordered() -> Self {
        FrameBuilder {
            unordered: true,
            ..Self::default()
        }
    }

    /// Adds one update.
    pub fn push(
        &mut self,
        seq: u64,
        key: &ResourceKey,
        change: Change,
        value: &Bytes,
        revision: &Revision,
    ) {
        let value_len = if change == Change::Deleted {
            0
        } else {
            value.len()
        };
        self.bytes += value_len + key.name().len() + key.namespace().len() + 32;
        self.batch.push(pb::Update {
            seq,
            cluster: key.cluster().to_string(),
            kind: key.kind().to_string(),
            namespace: key.namespace().to_string(),
            name: key.name().to_string(),
            r#type: update_type(change) as i32,
            value: if change == Change::Deleted {
                Bytes::new()
            } else {
                value.clone()
            },
            revision: revision.to_string(),
        });
        if self.batch.len() >= MAX_UPDATES_PER_FRAME || self.bytes >= TARGET_FRAME_BYTES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let updates = std::mem::take(&mut self.batch);
        self.bytes = 0;
        self.frames.push(Frame::encode(&pb::SyncEvent {
            event: Some(sync_event::Event::Updates(pb::UpdateBatch {
                updates,
                unordered: self.unordered,
                cut_seq: self.cut_seq,
            })),
        }));
    }

    /// The frames, in order.
    pub fn finish(mut self) -> Vec<Frame> {
        self.flush();
        self.frames
    }

    /// The frames, the last one marked as ending a breadcrumb: a receiver that has applied it
    /// holds the cut at `seq` (`UpdateBatch.cut_seq`).
    pub fn finish_at(mut self, seq: u64) -> Vec<Frame> {
        self.cut_seq = seq;
        self.finish()
    }
}

/// Encodes a status message.
pub fn status_frame(status: &pb::Status) -> Frame {
    Frame::encode(&pb::SyncEvent {
        event: Some(sync_event::Event::Status(status.clone())),
    })
}

/// Encodes a hello.
pub fn hello_frame(hello: pb::Hello) -> Frame {
    Frame::encode(&pb::SyncEvent {
        event: Some(sync_event::Event::Hello(hello)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn frames_are_cut_by_count_and_bytes() {
        let mut b = FrameBuilder::new();
        let rev: Revision = "1".into();
        let small = Bytes::from_static(b"{}");
        for i in 0..(MAX_UPDATES_PER_FRAME + 1) {
            let key = ResourceKey::new("", "Node", "", &format!("n{i}"));
            b.push(i as u64, &key, Change::New, &small, &rev);
        }
        let big = Bytes::from(vec![b'x'; TARGET_FRAME_BYTES]);
        let key = ResourceKey::new("", "Node", "", "big");
        b.push(9999, &key, Change::Updated, &big, &rev);
        b.push(10000, &key, Change::Deleted, &big, &rev);
        let frames = b.finish();
        assert_eq!(frames.len(), 3);
        let last = pb::SyncEvent::decode(frames[2].message()).unwrap();
        let Some(sync_event::Event::Updates(batch)) = last.event else {
            panic!("not updates")
        };
        assert_eq!(batch.updates.len(), 1);
        assert!(batch.updates[0].value.is_empty(), "deletes carry no value");
    }
}
