//! How many elements a receiver accepts in one message, checked on the encoded bytes before
//! decoding.
//!
//! A byte limit alone does not bound what decoding costs: an empty `Update` is 2 bytes on the wire
//! and a few hundred in memory once decoded and queued, so a 4 MiB batch (376 bytes compressed) of
//! two million empty updates costs an agent hundreds of MiB, and one at the 64 MiB message limit
//! about 10 GiB. So before prost materialises anything, [`check_event`] walks the protobuf wire
//! format of a `SyncEvent` (keys and lengths only: no allocation, linear in the bytes) and counts
//! the repeated fields that become structs — updates in a batch, clusters in a status, clusters
//! and buckets in a `Replace` — against limits no honest server comes near. A message over a limit,
//! or one that is not valid protobuf, is refused whole.

use crate::digest::MAX_TOTAL_BUCKETS;

/// Most updates accepted in one `UpdateBatch` (plain, or once decompressed). The server cuts
/// frames at 1,000 updates (`meshsync_cache::frames::MAX_UPDATES_PER_FRAME`); ten times that leaves
/// room for a server that cuts larger frames while bounding a batch's decoded size to a few MiB
/// of structs, whatever the bytes.
pub const MAX_UPDATES_PER_BATCH: usize = 10_000;

/// Most clusters accepted in one `Status` or `Replace`. A mesh of more clusters could not use
/// anti-entropy anyway (every cluster an agent holds needs at least one of the
/// [`MAX_TOTAL_BUCKETS`] buckets of its request).
pub const MAX_CLUSTERS: usize = MAX_TOTAL_BUCKETS;

/// Most bucket numbers accepted in one `Replace`, all clusters together: every bucket of the
/// agent's request, plus one per cluster it did not report (the server gives such a cluster one
/// bucket).
pub const MAX_REPLACED_BUCKETS: usize = MAX_TOTAL_BUCKETS + MAX_CLUSTERS;

/// Why a message was refused before decoding.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    #[error("too many {what}: {count} (at most {limit} accepted)")]
    TooMany {
        what: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("not a valid protobuf message")]
    Malformed,
}

/// Field numbers (`proto/meshsync/v1/sync.proto`).
const SYNC_EVENT_UPDATES: u32 = 2;
const SYNC_EVENT_STATUS: u32 = 4;
const SYNC_EVENT_REPLACE: u32 = 6;
const UPDATE_BATCH_UPDATES: u32 = 1;
const STATUS_CLUSTERS: u32 = 3;
const REPLACE_CLUSTERS: u32 = 1;
const REPLACED_BUCKETS_BUCKET: u32 = 3;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LENGTH_DELIMITED: u8 = 2;
const FIXED32: u8 = 5;

/// Checks an encoded `SyncEvent` against the limits above.
pub fn check_event(encoded: &[u8]) -> Result<(), LimitError> {
    for field in Fields(encoded) {
        let field = field?;
        match (field.number, field.payload) {
            (SYNC_EVENT_UPDATES, Payload::Bytes(batch)) => check_batch(batch)?,
            (SYNC_EVENT_STATUS, Payload::Bytes(status)) => {
                let clusters = count_occurrences(status, STATUS_CLUSTERS)?;
                at_most("clusters in a status", clusters, MAX_CLUSTERS)?;
            }
            (SYNC_EVENT_REPLACE, Payload::Bytes(replace)) => check_replace(replace)?,
            _ => {}
        }
    }
    Ok(())
}

/// Checks an encoded `UpdateBatch` (a decompressed `CompressedBatch`) against
/// [`MAX_UPDATES_PER_BATCH`].
pub fn check_batch(encoded: &[u8]) -> Result<(), LimitError> {
    let updates = count_occurrences(encoded, UPDATE_BATCH_UPDATES)?;
    at_most("updates in a batch", updates, MAX_UPDATES_PER_BATCH)
}

fn check_replace(encoded: &[u8]) -> Result<(), LimitError> {
    let mut clusters = 0;
    let mut buckets = 0;
    for field in Fields(encoded) {
        let field = field?;
        if field.number != REPLACE_CLUSTERS {
            continue;
        }
        clusters += 1;
        let Payload::Bytes(replaced) = field.payload else {
            return Err(LimitError::Malformed);
        };
        for inner in Fields(replaced) {
            let inner = inner?;
            if inner.number != REPLACED_BUCKETS_BUCKET {
                continue;
            }
            buckets += match inner.payload {
                // Packed: one varint per bucket, each ending in a byte below 0x80.
                Payload::Bytes(packed) => packed.iter().filter(|b| **b < 0x80).count(),
                Payload::Scalar => 1,
            };
        }
    }
    at_most("clusters in a replace", clusters, MAX_CLUSTERS)?;
    at_most("buckets in a replace", buckets, MAX_REPLACED_BUCKETS)
}

fn at_most(what: &'static str, count: usize, limit: usize) -> Result<(), LimitError> {
    if count > limit {
        return Err(LimitError::TooMany { what, count, limit });
    }
    Ok(())
}

/// How many times field `number` occurs in the encoded message (the whole message is walked, so
/// a malformed tail is an error).
fn count_occurrences(encoded: &[u8], number: u32) -> Result<usize, LimitError> {
    let mut count = 0;
    for field in Fields(encoded) {
        if field?.number == number {
            count += 1;
        }
    }
    Ok(count)
}

enum Payload<'a> {
    Bytes(&'a [u8]),
    Scalar,
}

struct Field<'a> {
    number: u32,
    payload: Payload<'a>,
}

/// The fields of an encoded message, in order; an error ends the walk.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, LimitError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let field = self.field();
        if field.is_err() {
            self.0 = &[];
        }
        Some(field)
    }
}

impl<'a> Fields<'a> {
    fn field(&mut self) -> Result<Field<'a>, LimitError> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| LimitError::Malformed)?;
        if number == 0 {
            return Err(LimitError::Malformed);
        }
        let payload = match (key & 7) as u8 {
            VARINT => {
                self.varint()?;
                Payload::Scalar
            }
            FIXED64 => {
                self.skip(8)?;
                Payload::Scalar
            }
            LENGTH_DELIMITED => {
                let len = usize::try_from(self.varint()?).map_err(|_| LimitError::Malformed)?;
                Payload::Bytes(self.skip(len)?)
            }
            FIXED32 => {
                self.skip(4)?;
                Payload::Scalar
            }
            // Groups (3, 4) are not used by this protocol; 6 and 7 do not exist.
            _ => return Err(LimitError::Malformed),
        };
        Ok(Field { number, payload })
    }

    fn varint(&mut self) -> Result<u64, LimitError> {
        let mut value = 0u64;
        for (i, byte) in self.0.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Ok(value);
            }
        }
        Err(LimitError::Malformed)
    }

    fn skip(&mut self, len: usize) -> Result<&'a [u8], LimitError> {
        if len > self.0.len() {
            return Err(LimitError::Malformed);
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ClusterStatus, ReplacedBuckets, Status, SyncEvent, Update, UpdateBatch, sync_event,
    };
    use prost::Message;

    fn updates_event(n: usize) -> Vec<u8> {
        SyncEvent {
            event: Some(sync_event::Event::Updates(UpdateBatch {
                updates: vec![Update::default(); n],
                unordered: true,
                cut_seq: 7,
            })),
        }
        .encode_to_vec()
    }

    #[test]
    fn batches_up_to_the_limit_pass_and_larger_ones_are_refused() {
        assert_eq!(check_event(&updates_event(MAX_UPDATES_PER_BATCH)), Ok(()));
        assert!(matches!(
            check_event(&updates_event(MAX_UPDATES_PER_BATCH + 1)),
            Err(LimitError::TooMany { count, .. }) if count == MAX_UPDATES_PER_BATCH + 1
        ));
        let batch = UpdateBatch {
            updates: vec![Update::default(); MAX_UPDATES_PER_BATCH + 1],
            ..Default::default()
        };
        assert!(check_batch(&batch.encode_to_vec()).is_err());
        let real = UpdateBatch {
            updates: vec![
                Update {
                    seq: 1,
                    name: "a".into(),
                    value: bytes::Bytes::from_static(b"{}"),
                    ..Default::default()
                };
                3
            ],
            ..Default::default()
        };
        assert_eq!(check_batch(&real.encode_to_vec()), Ok(()));
    }

    #[test]
    fn statuses_and_replaces_are_bounded_too() {
        let status = |n| {
            SyncEvent {
                event: Some(sync_event::Event::Status(Status {
                    clusters: vec![ClusterStatus::default(); n],
                    ..Default::default()
                })),
            }
            .encode_to_vec()
        };
        assert_eq!(check_event(&status(3)), Ok(()));
        assert!(check_event(&status(MAX_CLUSTERS + 1)).is_err());
        let replace = |clusters: usize, buckets: u32| {
            SyncEvent {
                event: Some(sync_event::Event::Replace(crate::Replace {
                    clusters: vec![
                        ReplacedBuckets {
                            cluster: "c".into(),
                            buckets: 1 << 16,
                            bucket: (0..buckets).collect(),
                        };
                        clusters
                    ],
                })),
            }
            .encode_to_vec()
        };
        assert_eq!(check_event(&replace(2, 1000)), Ok(()));
        assert!(check_event(&replace(MAX_CLUSTERS + 1, 0)).is_err());
        assert!(check_event(&replace(3, 1 << 16)).is_err());
    }

    #[test]
    fn malformed_bytes_are_refused() {
        let mut truncated = updates_event(10);
        truncated.truncate(truncated.len() - 1);
        assert_eq!(check_event(&truncated), Err(LimitError::Malformed));
        assert_eq!(check_event(&[0x80; 11]), Err(LimitError::Malformed));
        assert_eq!(check_event(&[(2 << 3) | 3]), Err(LimitError::Malformed));
        assert_eq!(check_event(&[]), Ok(()));
    }
}
