//! The floor's wire format, spoken by the floor server and read by the `floor` agents: frames of
//! a 4-byte big-endian length followed by an encoded [`SyncEvent`]. Kept apart from both so that
//! neither the server nor its clients depend on the other.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use meshsync_proto::SyncEvent;
use prost::Message;

/// Largest frame a reader accepts (guards against reading garbage as a length).
pub const MAX_FRAME: usize = 256 << 20;

/// Encodes `event` once as a frame: 4-byte big-endian length, then the message.
pub fn encode_frame(event: &SyncEvent) -> Bytes {
    let len = event.encoded_len();
    let mut buf = BytesMut::with_capacity(4 + len);
    buf.put_u32(len as u32);
    event.encode_raw(&mut buf);
    buf.freeze()
}

/// Takes the next complete frame's message bytes off the front of `buf`, if it holds one. The
/// returned `Bytes` shares `buf`'s allocation (no copy). When the frame is incomplete, reserves
/// room for the rest of it.
pub fn next_frame(buf: &mut BytesMut) -> anyhow::Result<Option<Bytes>> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    anyhow::ensure!(len <= MAX_FRAME, "frame of {len} bytes exceeds the limit");
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_lengths_are_rejected() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0][..]);
        assert!(next_frame(&mut buf).is_err());
    }
}
