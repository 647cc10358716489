//! The bytes of Typha's protocol as this front end sends and reads them, over `meshsync-typha`'s
//! gob messages and snappy framing: what is shared between connections (the preamble, KVs,
//! statuses) and what one connection reads (the client's stream).

use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use meshsync_typha::gob::time::GoTime;
use meshsync_typha::messages::{
    self, ClientDecoder, Compression, KvRef, MessageError, ServerHello, SyncStatus, UpdateType,
};
use meshsync_typha::snappy;
use meshsync_typha::v1::V1Update;

pub(crate) use messages::ClientMessage;

/// One `SerializedUpdate` waiting to be encoded.
#[derive(Debug)]
pub(crate) struct Kv {
    pub(crate) update: V1Update,
    pub(crate) update_type: UpdateType,
    pub(crate) revision: String,
}

/// The type definitions every server stream starts with (so shared messages decode on it).
pub(crate) fn preamble() -> Bytes {
    messages::preamble()
}

/// One `MsgKVs`.
pub(crate) fn kvs(batch: &[Kv]) -> Bytes {
    let refs: Vec<KvRef<'_>> = batch
        .iter()
        .map(|kv| KvRef {
            key: &kv.update.key,
            value: kv.update.value.as_deref(),
            revision: &kv.revision,
            v3_resource_version: &kv.update.v3_resource_version,
            update_type: kv.update_type,
        })
        .collect();
    messages::encode_kvs(&refs)
}

/// One `MsgSyncStatus`.
pub(crate) fn sync_status(status: SyncStatus) -> Bytes {
    messages::encode_sync_status(status)
}

/// The server hello: the syncer echoed, node resource updates supported (the client leaves
/// otherwise).
pub(crate) fn server_hello(syncer: &str, version: &str) -> Bytes {
    messages::encode_server_hello(&ServerHello {
        version,
        syncer_type: syncer,
        supports_node_resource_updates: true,
        server_conn_id: rand::random::<u64>() | 1,
    })
}

/// The decoder restart into snappy.
pub(crate) fn decoder_restart(text: &str) -> Bytes {
    messages::encode_decoder_restart(text, Compression::Snappy)
}

/// A ping stamped `now`. A time Go could not marshal (none this clock gives) sends a zero time.
pub(crate) fn ping(now: SystemTime) -> Bytes {
    messages::encode_ping(&GoTime::from_system_time(now)).unwrap_or_else(|_| {
        messages::encode_ping(&GoTime::from_system_time(SystemTime::UNIX_EPOCH)).unwrap_or_default()
    })
}

/// `message` as snappy frames (independent chunks: valid on any snappy stream).
pub(crate) fn frame(message: &[u8]) -> Bytes {
    snappy::frame(message)
}

/// What starts a snappy stream.
pub(crate) fn snappy_stream_identifier() -> &'static [u8] {
    snappy::stream_identifier()
}

/// A client's stream: bytes in, whole messages out.
#[derive(Debug, Default)]
pub(crate) struct ClientReader {
    buf: BytesMut,
    decoder: ClientDecoder,
}

impl ClientReader {
    /// Appends bytes read from the socket.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, if the bytes fed so far hold one.
    pub(crate) fn next_message(&mut self) -> Result<Option<ClientMessage>, MessageError> {
        self.decoder.decode(&mut self.buf)
    }
}

/// What a client message is, for log lines.
pub(crate) fn message_name(message: &ClientMessage) -> &'static str {
    match message {
        ClientMessage::Hello(_) => "a client hello",
        ClientMessage::Ack => "an ACK",
        ClientMessage::Pong(_) => "a pong",
    }
}
