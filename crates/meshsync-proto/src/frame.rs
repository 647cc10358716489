//! A pre-encoded protobuf message, already in gRPC's length-prefixed framing.
//!
//! `Frame` holds the bytes of a message that was encoded once (normally a `SyncEvent`), preceded
//! by gRPC's 5-byte message header (compression flag, big-endian length). The server writes these
//! bytes as they are into every stream's HTTP/2 body — no per-stream encoding, copying or buffer —
//! so one encoded batch is shared by reference count between thousands of agents. `Frame` also
//! implements [`prost::Message`] (writing the message part), so it can go through tonic's stock
//! `ProstCodec` too. Decoding a `Frame` is not supported (the server never receives one).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use prost::encoding::{DecodeContext, WireType};

/// Length of gRPC's message header: compression flag + 4-byte length.
pub const GRPC_HEADER_LEN: usize = 5;

/// An already-encoded, gRPC-framed protobuf message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame(Bytes);

impl Default for Frame {
    fn default() -> Self {
        Frame(Bytes::from_static(&[0, 0, 0, 0, 0]))
    }
}

impl Frame {
    /// Encodes `message` once, with its gRPC header.
    pub fn encode<M: Message>(message: &M) -> Self {
        let len = message.encoded_len();
        let mut buf = BytesMut::with_capacity(GRPC_HEADER_LEN + len);
        buf.put_u8(0);
        buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
        // Encoding into a buffer with enough capacity cannot fail.
        let _ = message.encode(&mut buf);
        Frame(buf.freeze())
    }

    /// The gRPC-framed bytes (header + message), ready for an HTTP/2 body.
    pub fn grpc_bytes(&self) -> Bytes {
        self.0.clone()
    }

    /// The encoded message alone.
    pub fn message(&self) -> Bytes {
        self.0.slice(GRPC_HEADER_LEN.min(self.0.len())..)
    }

    /// The encoded message's length in bytes.
    pub fn len(&self) -> usize {
        self.0.len().saturating_sub(GRPC_HEADER_LEN)
    }

    /// True when the frame encodes an empty message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Message for Frame {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0[GRPC_HEADER_LEN.min(self.0.len())..]);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.len()
    }

    fn clear(&mut self) {
        *self = Frame::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Hello, SyncEvent, sync_event};

    #[test]
    fn frame_bytes_decode_as_the_original_message() {
        let event = SyncEvent {
            event: Some(sync_event::Event::Hello(Hello {
                epoch: 7,
                server_version: "x".into(),
                ..Default::default()
            })),
        };
        let frame = Frame::encode(&event);
        let wire = frame.grpc_bytes();
        assert_eq!(wire[0], 0, "not compressed");
        let len = u32::from_be_bytes([wire[1], wire[2], wire[3], wire[4]]) as usize;
        assert_eq!(len, frame.len());
        assert_eq!(SyncEvent::decode(frame.message()).unwrap(), event);
        let mut via_prost = Vec::new();
        frame.encode(&mut via_prost).unwrap();
        assert_eq!(SyncEvent::decode(via_prost.as_slice()).unwrap(), event);
    }
}
