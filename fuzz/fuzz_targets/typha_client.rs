//! A Typha client's gob stream as the server receives it: fed in pieces of the sizes the input's
//! first byte chooses, the client-message decoder never panics, and after an error it stays failed.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use meshsync_typha::messages::ClientDecoder;

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let mut decoder = ClientDecoder::new();
    let mut buf = BytesMut::new();
    for piece in stream.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    assert!(
                        decoder.decode(&mut buf).is_err(),
                        "a failed stream decodes again"
                    );
                    return;
                }
            }
        }
    }
});
