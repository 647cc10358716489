//! The snappy framing format, as a Typha client reads it after a `MsgDecoderRestart` to snappy
//! (Calico's client wraps the connection in `golang/snappy`'s `NewReader`).
//!
//! The reader's rules: the stream starts with the stream identifier chunk (`0xff`, length 6,
//! `sNaPpY`), anything else first is corrupt; then chunks of a type byte, a 3-byte little-endian
//! length and a body. A data chunk's body is the masked CRC-32C of the *uncompressed* data (4
//! bytes, little-endian) and the data: compressed with snappy's raw format (`0x00`) or as it is
//! (`0x01`), at most 65536 bytes uncompressed per chunk. Padding and skippable chunks are
//! ignored.
//!
//! Chunks are independent of each other, so [`frame`] turns one message's bytes into chunks
//! once and those bytes can be written on any connection after that connection's own
//! [`stream_identifier`]: the compressed form of a shared message is shared too. Typha flushes
//! its snappy writer after every message, so a message never shares a chunk with the next one
//! there either. A chunk is compressed when that saves at least an eighth (golang/snappy's
//! writer's rule), and sent uncompressed otherwise.

use bytes::{BufMut, Bytes, BytesMut};

/// The most uncompressed bytes in one data chunk.
pub const MAX_CHUNK_DATA: usize = 65536;

const CHUNK_COMPRESSED: u8 = 0x00;
const CHUNK_UNCOMPRESSED: u8 = 0x01;
const STREAM_IDENTIFIER: [u8; 10] = [0xff, 0x06, 0x00, 0x00, b's', b'N', b'a', b'P', b'p', b'Y'];

/// The chunk that starts every snappy stream (each decoder restart to snappy starts a new one).
pub fn stream_identifier() -> &'static [u8] {
    &STREAM_IDENTIFIER
}

/// `data` as data chunks of at most [`MAX_CHUNK_DATA`] bytes each, valid anywhere in a snappy
/// stream after its identifier.
pub fn frame(data: &[u8]) -> Bytes {
    const HEADER: usize = 4 + 4;
    let chunks = data.len().div_ceil(MAX_CHUNK_DATA);
    let mut out = BytesMut::with_capacity(data.len() + chunks * HEADER);
    let mut encoder = snap::raw::Encoder::new();
    let mut scratch = vec![0u8; snap::raw::max_compress_len(data.len().min(MAX_CHUNK_DATA))];
    for block in data.chunks(MAX_CHUNK_DATA) {
        let crc = masked_crc32c(block);
        let worth_it = block.len() - block.len() / 8;
        match encoder.compress(block, &mut scratch) {
            Ok(n) if n < worth_it => put_chunk(&mut out, CHUNK_COMPRESSED, crc, &scratch[..n]),
            // Not worth it (or the encoder refused, which it cannot for these sizes).
            _ => put_chunk(&mut out, CHUNK_UNCOMPRESSED, crc, block),
        }
    }
    out.freeze()
}

fn put_chunk(out: &mut BytesMut, kind: u8, crc: u32, body: &[u8]) {
    // At most 4 + max_compress_len(65536) = 76494 < 2^24.
    let len = (4 + body.len()) as u32;
    out.put_u8(kind);
    out.put_slice(&len.to_le_bytes()[..3]);
    out.put_u32_le(crc);
    out.put_slice(body);
}

/// CRC-32C (Castagnoli), masked as the framing format says: rotated right by 15 bits and offset,
/// so that a CRC of data that itself contains CRCs is not trivially zero.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let c = crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// CRC-32C lookup tables for slicing by 8 bytes at a time, built at compile time.
const CRC_TABLES: [[u32; 256]; 8] = crc_tables();

const fn crc_tables() -> [[u32; 256]; 8] {
    const POLY: u32 = 0x82f6_3b78; // Castagnoli, reflected.
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut j = 1;
    while j < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[j - 1][i];
            t[j][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        j += 1;
    }
    t
}

fn crc32c(data: &[u8]) -> u32 {
    let t = &CRC_TABLES;
    let mut crc = !0u32;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let lo = crc ^ u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        crc = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][w[4] as usize]
            ^ t[2][w[5] as usize]
            ^ t[1][w[6] as usize]
            ^ t[0][w[7] as usize];
    }
    for &b in words.remainder() {
        crc = (crc >> 8) ^ t[0][((crc ^ u32::from(b)) & 0xff) as usize];
    }
    !crc
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
        let long: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let bytewise = {
            let mut crc = !0u32;
            for &b in &long {
                crc = (crc >> 8) ^ CRC_TABLES[0][((crc ^ u32::from(b)) & 0xff) as usize];
            }
            !crc
        };
        assert_eq!(crc32c(&long), bytewise);
    }

    fn unframe(parts: &[&[u8]]) -> Vec<u8> {
        let mut stream = stream_identifier().to_vec();
        for p in parts {
            stream.extend_from_slice(p);
        }
        let mut out = Vec::new();
        snap::read::FrameDecoder::new(&stream[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn snap_reads_our_chunks_compressed_and_not() {
        let text: Vec<u8> = b"calico ".iter().copied().cycle().take(200_000).collect();
        let mut noise = Vec::new();
        let mut x = 0x1234_5678u32;
        for _ in 0..70_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            noise.push(x as u8);
        }
        let framed_text = frame(&text);
        let framed_noise = frame(&noise);
        assert!(
            framed_text.len() < text.len() / 4,
            "repetitive data is compressed"
        );
        assert_eq!(framed_text[0], CHUNK_COMPRESSED);
        assert_eq!(
            framed_noise[0], CHUNK_UNCOMPRESSED,
            "random data is sent as it is"
        );
        assert_eq!(framed_noise.len(), noise.len() + 2 * 8);
        let both = unframe(&[&framed_text, &framed_noise, &frame(b"x")]);
        assert_eq!(both.len(), text.len() + noise.len() + 1);
        assert_eq!(&both[..text.len()], &text[..]);
        assert_eq!(&both[text.len()..text.len() + noise.len()], &noise[..]);
        assert!(frame(b"").is_empty());
    }
}
