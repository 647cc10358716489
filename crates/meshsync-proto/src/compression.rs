//! zstd compression of update frames, negotiated in the hello.
//!
//! gRPC's own per-message compression would compress every message once per stream, undoing
//! "encode once, send many". Instead the server compresses an encoded `UpdateBatch` once and
//! sends the result as a [`CompressedBatch`] inside an ordinary, uncompressed gRPC message; every
//! agent that asked for zstd gets the same bytes by reference count. Frames too small to gain
//! anything, and frames that are not update batches (hello, status, reconnect), stay plain, so an
//! agent that asked for zstd must accept both.
//!
//! Decompression is bounded: the receiver names the most bytes it accepts, the batch states its
//! uncompressed length, and data that expands differently, or an algorithm the receiver did not
//! ask for, is an error (the agent treats it as a broken stream and resubscribes), never a guess.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use prost::Message;

use crate::{CompressedBatch, Compression, Frame, SyncEvent, UpdateBatch, sync_event};

/// zstd's level for shared frames. Each frame is compressed once for every agent, so a level above
/// the fastest pays for itself; higher levels cost far more CPU for a few percent.
pub const ZSTD_LEVEL: i32 = 3;

/// Messages shorter than this are sent plain: zstd's frame header and the extra envelope would eat
/// most of the gain.
pub const MIN_COMPRESSED_MESSAGE: usize = 256;

/// Protobuf key of `SyncEvent.updates` (field 2, length-delimited).
const UPDATES_KEY: u8 = (2 << 3) | 2;

/// What this process compressed, for `/metrics`. Process-wide, because frames are compressed
/// where they are shared (breadcrumbs, snapshots), which know no metrics registry; a process has
/// one cache.
#[derive(Debug, Default)]
pub struct CompressionCounters {
    /// Update frames compressed (each once, however many agents receive it).
    pub frames: AtomicU64,
    /// Their size before (encoded `SyncEvent`s) and after compression, bytes.
    pub input_bytes: AtomicU64,
    pub output_bytes: AtomicU64,
}

/// This process's [`CompressionCounters`].
pub static COUNTERS: CompressionCounters = CompressionCounters {
    frames: AtomicU64::new(0),
    input_bytes: AtomicU64::new(0),
    output_bytes: AtomicU64::new(0),
};

/// Why a compressed batch could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompressionError {
    #[error("compressed with {0:?}, which this receiver did not ask for")]
    Unsupported(i32),
    #[error("batch claims {claimed} uncompressed bytes, more than the {limit} accepted")]
    TooLarge { claimed: u64, limit: usize },
    #[error("zstd data is corrupt: {0}")]
    Corrupt(String),
    #[error("batch expanded to {actual} bytes, not the {claimed} it claimed")]
    LengthMismatch { claimed: u32, actual: usize },
    #[error("the decompressed batch is not an UpdateBatch: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("the decompressed batch is refused: {0}")]
    Limit(#[from] crate::limits::LimitError),
}

/// The zstd form of `frame`, when `frame` is an update batch worth compressing and compression
/// makes it smaller; otherwise `frame` itself. The result is what every zstd agent is sent.
pub fn compress_frame(frame: &Frame) -> Frame {
    let message = frame.message();
    let Some(batch) = updates_payload(&message) else {
        return frame.clone();
    };
    if message.len() < MIN_COMPRESSED_MESSAGE {
        return frame.clone();
    }
    let Ok(uncompressed_len) = u32::try_from(batch.len()) else {
        return frame.clone();
    };
    let Ok(data) = zstd::bulk::compress(&batch, ZSTD_LEVEL) else {
        return frame.clone();
    };
    let compressed = SyncEvent {
        event: Some(sync_event::Event::Compressed(CompressedBatch {
            algorithm: Compression::Zstd as i32,
            data: Bytes::from(data),
            uncompressed_len,
        })),
    };
    if compressed.encoded_len() >= message.len() {
        return frame.clone();
    }
    let out = Frame::encode(&compressed);
    COUNTERS.frames.fetch_add(1, Ordering::Relaxed);
    COUNTERS
        .input_bytes
        .fetch_add(message.len() as u64, Ordering::Relaxed);
    COUNTERS
        .output_bytes
        .fetch_add(out.message().len() as u64, Ordering::Relaxed);
    out
}

/// [`compress_frame`] over a sequence, in order.
pub fn compress_frames<'a>(frames: impl IntoIterator<Item = &'a Frame>) -> Vec<Frame> {
    frames.into_iter().map(compress_frame).collect()
}

/// The encoded `UpdateBatch` inside an encoded `SyncEvent { updates }`, or `None` for any other
/// event. Reads only the outer key and length: the batch's bytes are compressed as they are.
fn updates_payload(message: &Bytes) -> Option<Bytes> {
    if message.first() != Some(&UPDATES_KEY) {
        return None;
    }
    let mut rest = &message[1..];
    let len = usize::try_from(prost::encoding::decode_varint(&mut rest).ok()?).ok()?;
    if len != rest.len() {
        return None;
    }
    Some(message.slice(message.len() - len..))
}

/// Decompresses `batch` (which must be zstd), accepting at most `limit` uncompressed bytes and
/// [`crate::limits::MAX_UPDATES_PER_BATCH`] updates.
pub fn decompress_batch(
    batch: &CompressedBatch,
    limit: usize,
) -> Result<UpdateBatch, CompressionError> {
    if batch.algorithm != Compression::Zstd as i32 {
        return Err(CompressionError::Unsupported(batch.algorithm));
    }
    let claimed = batch.uncompressed_len;
    if claimed as u64 > limit as u64 {
        return Err(CompressionError::TooLarge {
            claimed: claimed.into(),
            limit,
        });
    }
    // `decompress` never writes past the capacity it is given, so a lying header cannot make it
    // allocate more than `claimed` bytes.
    let data = zstd::bulk::decompress(&batch.data, claimed as usize)
        .map_err(|e| CompressionError::Corrupt(e.to_string()))?;
    if data.len() != claimed as usize {
        return Err(CompressionError::LengthMismatch {
            claimed,
            actual: data.len(),
        });
    }
    // Counted before decoding: a few bytes per empty update would otherwise become millions of
    // structs (`limits`).
    crate::limits::check_batch(&data)?;
    Ok(UpdateBatch::decode(data.as_slice())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Hello, Update};

    fn batch(n: usize) -> UpdateBatch {
        UpdateBatch {
            updates: (0..n)
                .map(|i| Update {
                    seq: i as u64,
                    kind: "WorkloadEndpoint".into(),
                    namespace: "default".into(),
                    name: format!("pod-{i}"),
                    r#type: crate::UpdateType::New as i32,
                    value: Bytes::from(format!(
                        r#"{{"kind":"WorkloadEndpoint","metadata":{{"name":"pod-{i}","labels":{{"app":"web"}}}},"spec":{{"node":"node-{}"}}}}"#,
                        i % 7
                    )),
                    revision: format!("{}", 1000 + i),
                    ..Default::default()
                })
                .collect(),
            unordered: true,
            cut_seq: 0,
        }
    }

    fn updates_frame(b: UpdateBatch) -> Frame {
        Frame::encode(&SyncEvent {
            event: Some(sync_event::Event::Updates(b)),
        })
    }

    fn compressed_of(frame: &Frame) -> CompressedBatch {
        match SyncEvent::decode(frame.message()).unwrap().event {
            Some(sync_event::Event::Compressed(c)) => c,
            other => panic!("not compressed: {other:?}"),
        }
    }

    #[test]
    fn a_compressed_batch_decodes_to_the_original() {
        let original = batch(200);
        let frame = updates_frame(original.clone());
        let (frames, input, output) = (
            COUNTERS.frames.load(Ordering::Relaxed),
            COUNTERS.input_bytes.load(Ordering::Relaxed),
            COUNTERS.output_bytes.load(Ordering::Relaxed),
        );
        let compressed = compress_frame(&frame);
        // Other tests compress concurrently: the counters grew by at least this frame.
        assert!(COUNTERS.frames.load(Ordering::Relaxed) > frames);
        assert!(
            COUNTERS.input_bytes.load(Ordering::Relaxed) >= input + frame.message().len() as u64
        );
        assert!(
            COUNTERS.output_bytes.load(Ordering::Relaxed)
                >= output + compressed.message().len() as u64
        );
        assert!(
            compressed.len() * 4 < frame.len(),
            "{} vs {}",
            compressed.len(),
            frame.len()
        );
        let c = compressed_of(&compressed);
        assert_eq!(c.algorithm, Compression::Zstd as i32);
        assert_eq!(c.uncompressed_len as usize, original.encoded_len());
        assert_eq!(decompress_batch(&c, 1 << 20).unwrap(), original);
    }

    #[test]
    fn small_frames_and_other_events_stay_plain() {
        let small = updates_frame(batch(1));
        assert_eq!(compress_frame(&small), small);
        let hello = Frame::encode(&SyncEvent {
            event: Some(sync_event::Event::Hello(Hello {
                server_version: "x".repeat(4096),
                ..Default::default()
            })),
        });
        assert_eq!(compress_frame(&hello), hello);
        // Incompressible values: compression would not make the frame smaller.
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes()) as u8)
            .collect();
        let random = updates_frame(UpdateBatch {
            updates: vec![Update {
                value: Bytes::from(noise),
                ..Default::default()
            }],
            unordered: false,
            cut_seq: 0,
        });
        assert_eq!(compress_frame(&random), random);
    }

    #[test]
    fn hostile_batches_are_errors() {
        let original = batch(200);
        let good = compressed_of(&compress_frame(&updates_frame(original.clone())));
        let limit = original.encoded_len();
        assert!(decompress_batch(&good, limit).is_ok());
        assert!(matches!(
            decompress_batch(&good, limit - 1),
            Err(CompressionError::TooLarge { .. })
        ));
        let mut bigger_claim = good.clone();
        bigger_claim.uncompressed_len += 10;
        assert!(matches!(
            decompress_batch(&bigger_claim, 1 << 20),
            Err(CompressionError::LengthMismatch { .. })
        ));
        let mut smaller_claim = good.clone();
        smaller_claim.uncompressed_len -= 10;
        assert!(decompress_batch(&smaller_claim, 1 << 20).is_err());
        let mut corrupt = good.clone();
        corrupt.data = Bytes::from_static(b"\x28\xb5\x2f\xfd garbage");
        assert!(matches!(
            decompress_batch(&corrupt, 1 << 20),
            Err(CompressionError::Corrupt(_))
        ));
        let mut other = good;
        other.algorithm = 7;
        assert_eq!(
            decompress_batch(&other, 1 << 20),
            Err(CompressionError::Unsupported(7))
        );
        // A zip bomb: 64 MiB of zeros claimed as what it is, refused before expansion.
        let bomb = CompressedBatch {
            algorithm: Compression::Zstd as i32,
            data: Bytes::from(zstd::bulk::compress(&vec![0u8; 64 << 20], 3).unwrap()),
            uncompressed_len: 64 << 20,
        };
        assert!(bomb.data.len() < 64 << 10);
        assert!(matches!(
            decompress_batch(&bomb, 16 << 20),
            Err(CompressionError::TooLarge { .. })
        ));
        // An update bomb: a few hundred bytes that expand to a valid 4 MiB batch of two million
        // empty updates, refused before a single update is decoded.
        let empty = UpdateBatch {
            updates: vec![Update::default(); 2_000_000],
            unordered: false,
            cut_seq: 0,
        }
        .encode_to_vec();
        let bomb = CompressedBatch {
            algorithm: Compression::Zstd as i32,
            data: Bytes::from(zstd::bulk::compress(&empty, 19).unwrap()),
            uncompressed_len: empty.len() as u32,
        };
        assert!(bomb.data.len() < 4096, "{}", bomb.data.len());
        assert!(matches!(
            decompress_batch(&bomb, 64 << 20),
            Err(CompressionError::Limit(_))
        ));
    }
}
