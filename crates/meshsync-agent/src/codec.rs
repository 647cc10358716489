//! The `Subscribe` stream's decoder: every `SyncEvent` is checked against
//! [`meshsync_proto::limits`] on its encoded bytes before prost decodes it, so a server cannot make
//! an agent materialise millions of structs from a message that is small in bytes (empty updates,
//! clusters or buckets are two bytes each on the wire). A refused message is handed to the agent as
//! [`Received::Refused`] — it drops the stream and resubscribes, as for an unreadable compressed
//! batch — rather than as a transport error, so the agent can say why.

use bytes::Buf;
use meshsync_proto::limits::{LimitError, check_event};
use meshsync_proto::{self as pb};
use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};

/// One message of a subscription's stream.
pub(crate) enum Received {
    Event(pb::SyncEvent),
    /// A message over a limit (or not protobuf): not decoded.
    Refused(LimitError),
}

/// `SubscribeRequest` out, [`Received`] in.
#[derive(Default)]
pub(crate) struct SubscribeCodec;

impl Codec for SubscribeCodec {
    type Encode = pb::SubscribeRequest;
    type Decode = Received;
    type Encoder = tonic_prost::ProstEncoder<pb::SubscribeRequest>;
    type Decoder = CheckedDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder
    }
}

pub(crate) struct CheckedDecoder;

impl Decoder for CheckedDecoder {
    type Item = Received;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Received>, Status> {
        // The message is one contiguous buffer in tonic; copy only if that ever changes.
        if buf.chunk().len() == buf.remaining() {
            if let Err(refused) = check_event(buf.chunk()) {
                buf.advance(buf.remaining());
                return Ok(Some(Received::Refused(refused)));
            }
            return decode_event(buf);
        }
        let bytes = buf.copy_to_bytes(buf.remaining());
        if let Err(refused) = check_event(&bytes) {
            return Ok(Some(Received::Refused(refused)));
        }
        decode_event(bytes)
    }
}

fn decode_event(buf: impl Buf) -> Result<Option<Received>, Status> {
    pb::SyncEvent::decode(buf)
        .map(|event| Some(Received::Event(event)))
        .map_err(|e| Status::internal(e.to_string()))
}
