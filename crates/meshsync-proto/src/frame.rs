//! A pre-encoded protobuf message.
//!
//! `Frame` holds the bytes of a message that was encoded once (normally a `SyncEvent`). It implements
//! [`prost::Message`] by copying those bytes, so tonic's stock `ProstCodec` can send it: each stream
//! pays one `memcpy` into its HTTP/2 buffer and no encoding. Decoding a `Frame` is not supported
//! (the server never receives one); all fields are skipped.

use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use prost::encoding::{DecodeContext, WireType};

/// An already-encoded protobuf message, shared by reference count between streams.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame(pub Bytes);

impl Frame {
    /// Encodes `message` once.
    pub fn encode<M: Message>(message: &M) -> Self {
        Frame(Bytes::from(message.encode_to_vec()))
    }

    /// The encoded length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the frame encodes an empty message.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Message for Frame {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
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
        self.0.len()
    }

    fn clear(&mut self) {
        self.0 = Bytes::new();
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
        let mut wire = Vec::new();
        frame.encode(&mut wire).unwrap();
        assert_eq!(SyncEvent::decode(wire.as_slice()).unwrap(), event);
    }
}
