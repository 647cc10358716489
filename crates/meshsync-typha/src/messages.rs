//! Typha's messages (`typha/pkg/syncproto`, Calico v3.31, plus v3.32's hello flag) on [`crate::gob`].
//!
//! Every message is one gob value of type `Envelope{Message interface{}}`; the concrete types are
//! registered under their pre-monorepo names (`github.com/projectcalico/typha/pkg/syncproto.Msg…`),
//! which are on the wire and must match exactly.
//!
//! # Server to client: encoded once, shared by every connection
//!
//! Each gob stream the server writes — at connection start, and again after every decoder
//! restart once the client has acknowledged it — begins with [`preamble`]: standalone
//! definitions of every type the server ever sends, with fixed ids ([`type_ids`]). After it,
//! every message has the same bytes on every connection, so the `encode_*` functions are called
//! once per message (per breadcrumb, per snapshot batch) and the resulting [`Bytes`] are written
//! to any number of clients; with snappy, [`crate::snappy::frame`] of those bytes is shared the
//! same way. Go's decoder accepts a stream of `[preamble][value]*`: before a value it consumes
//! any number of standalone definition messages, and an interface value whose concrete type is
//! already defined needs only its registered name and type id (see the Go-checked tests in
//! `tests/go_gob.rs`).
//!
//! Field by field the encodings follow Go's: zero-valued fields are left out, so a KV whose value
//! is `None` (or empty — Go cannot tell them apart either) reaches the client as a nil `Value`,
//! a deletion; the KV's revision is an `interface{}` holding a Go `string`; `TTL` is always 0.
//!
//! # Client to server: Go's own bytes, decoded incrementally
//!
//! The client writes one plain gob stream for the whole connection with Go's encoder, so its
//! type ids are its own and its type definitions arrive in-line. [`ClientDecoder`] decodes
//! `MsgClientHello`, `MsgACK` and `MsgPong` from the connection's receive buffer as bytes arrive,
//! at most [`MAX_CLIENT_MESSAGE_BYTES`] per message (Typha's own inbound cap), and refuses
//! anything else with an error for the caller to log before closing the connection.

use bytes::{Buf, Bytes, BytesMut};

use crate::gob::read::{
    Decoded, Field, FieldKind, FieldValue, Grammar, Schema, StreamDecoder, StructValue,
};
use crate::gob::write::{
    Counter, Sink, StructWriter, TypeDef, message, put_bytes, put_int, put_type_definition,
    put_uint, uint_len,
};
use crate::gob::{GoTime, GobError, TypeId, ids};

/// The names Typha's message types are registered under (`syncproto`'s `init`).
pub mod names {
    pub const CLIENT_HELLO: &str = "github.com/projectcalico/typha/pkg/syncproto.MsgClientHello";
    pub const DECODER_RESTART: &str =
        "github.com/projectcalico/typha/pkg/syncproto.MsgDecoderRestart";
    pub const ACK: &str = "github.com/projectcalico/typha/pkg/syncproto.MsgACK";
    pub const SERVER_HELLO: &str = "github.com/projectcalico/typha/pkg/syncproto.MsgServerHello";
    pub const SYNC_STATUS: &str = "github.com/projectcalico/typha/pkg/syncproto.MsgSyncStatus";
    pub const PING: &str = "github.com/projectcalico/typha/pkg/syncproto.MsgPing";
    pub const PONG: &str = "github.com/projectcalico/typha/pkg/syncproto.MsgPong";
    pub const KVS: &str = "github.com/projectcalico/typha/pkg/syncproto.MsgKVs";
    /// The name gob registers Go's `string` under (a KV's `Revision`).
    pub const GO_STRING: &str = "string";
}

/// The fixed type ids of the server's streams, as [`preamble`] defines them (Go's encoder
/// would start at 65 too, in whatever order it met the types).
pub mod type_ids {
    use crate::gob::TypeId;

    pub const ENVELOPE: TypeId = 65;
    pub const SERVER_HELLO: TypeId = 66;
    pub const DECODER_RESTART: TypeId = 67;
    pub const SYNC_STATUS: TypeId = 68;
    pub const PING: TypeId = 69;
    pub const TIME: TypeId = 70;
    pub const KVS: TypeId = 71;
    pub const KV_LIST: TypeId = 72;
    pub const SERIALIZED_UPDATE: TypeId = 73;
}

/// Every type the server sends, defined once at the start of each of its gob streams.
const PREAMBLE_TYPES: &[(TypeId, TypeDef<'static>)] = &[
    (
        type_ids::ENVELOPE,
        TypeDef::Struct {
            name: "Envelope",
            fields: &[("Message", ids::INTERFACE)],
        },
    ),
    (
        type_ids::SERVER_HELLO,
        TypeDef::Struct {
            name: "MsgServerHello",
            fields: &[
                ("Version", ids::STRING),
                ("SyncerType", ids::STRING),
                ("SupportsNodeResourceUpdates", ids::BOOL),
                ("ServerConnID", ids::UINT),
            ],
        },
    ),
    (
        type_ids::DECODER_RESTART,
        TypeDef::Struct {
            name: "MsgDecoderRestart",
            fields: &[
                ("Message", ids::STRING),
                ("CompressionAlgorithm", ids::STRING),
            ],
        },
    ),
    (
        type_ids::SYNC_STATUS,
        TypeDef::Struct {
            name: "MsgSyncStatus",
            fields: &[("SyncStatus", ids::UINT)],
        },
    ),
    (
        type_ids::PING,
        TypeDef::Struct {
            name: "MsgPing",
            fields: &[("Timestamp", type_ids::TIME)],
        },
    ),
    (type_ids::TIME, TypeDef::GobEncoder { name: "Time" }),
    (
        type_ids::KVS,
        TypeDef::Struct {
            name: "MsgKVs",
            fields: &[("KVs", type_ids::KV_LIST)],
        },
    ),
    (
        type_ids::KV_LIST,
        TypeDef::Slice {
            name: "[]syncproto.SerializedUpdate",
            elem: type_ids::SERIALIZED_UPDATE,
        },
    ),
    (
        type_ids::SERIALIZED_UPDATE,
        TypeDef::Struct {
            name: "SerializedUpdate",
            fields: &[
                ("Key", ids::STRING),
                ("Value", ids::BYTES),
                ("Revision", ids::INTERFACE),
                ("V3ResourceVersion", ids::STRING),
                ("TTL", ids::INT),
                ("UpdateType", ids::UINT),
            ],
        },
    ),
];

/// The bytes that start every gob stream the server writes: one type-definition message per
/// type it sends. The same on every stream; built once.
pub fn preamble() -> Bytes {
    static PREAMBLE: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    PREAMBLE
        .get_or_init(|| {
            let mut all = Vec::new();
            for (id, def) in PREAMBLE_TYPES {
                all.extend_from_slice(&message(|s| put_type_definition(s, *id, def)));
            }
            Bytes::from(all)
        })
        .clone()
}

/// `api.SyncStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncStatus {
    WaitForDatastore = 0,
    ResyncInProgress = 1,
    InSync = 2,
}

/// `api.UpdateType` of a KV (Felix derives new/updated itself; only a nil value matters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateType {
    New = 1,
    Updated = 2,
    Deleted = 3,
}

/// `syncproto.CompressionAlgorithm` of a decoder restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain gob again (`""`).
    None,
    /// The snappy framing format (`"snappy"`).
    Snappy,
}

impl Compression {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Snappy => "snappy",
        }
    }
}

/// `MsgServerHello`.
#[derive(Debug, Clone, Copy)]
pub struct ServerHello<'a> {
    pub version: &'a str,
    /// The client's syncer type, echoed (the client leaves if it differs from its own).
    pub syncer_type: &'a str,
    /// Must be true: the client leaves otherwise.
    pub supports_node_resource_updates: bool,
    pub server_conn_id: u64,
}

/// One `SerializedUpdate` to encode.
#[derive(Debug, Clone, Copy)]
pub struct KvRef<'a> {
    /// The v1 key path.
    pub key: &'a str,
    /// The serialized value; `None` is a deletion (sent as a nil `Value`; so is an empty one).
    pub value: Option<&'a [u8]>,
    /// The datastore revision, sent as an `interface{}` holding a Go `string`.
    pub revision: &'a str,
    /// A v3 resource's `resourceVersion`, moved out of its JSON (empty for v1 values).
    pub v3_resource_version: &'a str,
    pub update_type: UpdateType,
}

/// One `Envelope` value message holding the struct `body` writes, as type `id` registered as
/// `name`: valid on any stream after [`preamble`].
fn envelope<F>(name: &str, id: TypeId, body: F) -> Bytes
where
    F: Fn(&mut dyn Sink),
{
    message(|s| {
        put_int(s, type_ids::ENVELOPE);
        let mut env = StructWriter::new();
        env.field(s, 0);
        put_bytes(s, name.as_bytes());
        put_int(s, id);
        let mut len = Counter::default();
        body(&mut len);
        put_uint(s, len.0 as u64);
        body(s);
        env.end(s);
    })
}

/// `MsgServerHello` after the preamble.
pub fn encode_server_hello(hello: &ServerHello<'_>) -> Bytes {
    envelope(names::SERVER_HELLO, type_ids::SERVER_HELLO, |s| {
        let mut w = StructWriter::new();
        if !hello.version.is_empty() {
            w.field(s, 0);
            put_bytes(s, hello.version.as_bytes());
        }
        if !hello.syncer_type.is_empty() {
            w.field(s, 1);
            put_bytes(s, hello.syncer_type.as_bytes());
        }
        if hello.supports_node_resource_updates {
            w.field(s, 2);
            put_uint(s, 1);
        }
        if hello.server_conn_id != 0 {
            w.field(s, 3);
            put_uint(s, hello.server_conn_id);
        }
        w.end(s);
    })
}

/// `MsgDecoderRestart` after the preamble. The server then sends nothing until the client's
/// `MsgACK`, and then starts a new stream (snappy's identifier if compressed, then [`preamble`]).
pub fn encode_decoder_restart(text: &str, compression: Compression) -> Bytes {
    envelope(names::DECODER_RESTART, type_ids::DECODER_RESTART, |s| {
        let mut w = StructWriter::new();
        if !text.is_empty() {
            w.field(s, 0);
            put_bytes(s, text.as_bytes());
        }
        if compression != Compression::None {
            w.field(s, 1);
            put_bytes(s, compression.as_str().as_bytes());
        }
        w.end(s);
    })
}

/// `MsgSyncStatus` after the preamble.
pub fn encode_sync_status(status: SyncStatus) -> Bytes {
    envelope(names::SYNC_STATUS, type_ids::SYNC_STATUS, |s| {
        let mut w = StructWriter::new();
        if status as u8 != 0 {
            w.field(s, 0);
            put_uint(s, status as u64);
        }
        w.end(s);
    })
}

/// `MsgPing` after the preamble; `at` is usually `GoTime::from_system_time(SystemTime::now())`.
/// Fails only for a time Go's `MarshalBinary` refuses too.
pub fn encode_ping(at: &GoTime) -> Result<Bytes, GobError> {
    let time = at.marshal_binary()?;
    let zero = at.is_zero();
    Ok(envelope(names::PING, type_ids::PING, |s| {
        let mut w = StructWriter::new();
        if !zero {
            w.field(s, 0);
            put_bytes(s, &time);
        }
        w.end(s);
    }))
}

/// `MsgKVs` with `kvs` (Typha sends at most 100 per message when streaming, 1000 in its
/// snapshot; the caller batches) after the preamble.
pub fn encode_kvs(kvs: &[KvRef<'_>]) -> Bytes {
    envelope(names::KVS, type_ids::KVS, |s| {
        let mut w = StructWriter::new();
        if !kvs.is_empty() {
            w.field(s, 0);
            put_uint(s, kvs.len() as u64);
            for kv in kvs {
                put_serialized_update(s, kv);
            }
        }
        w.end(s);
    })
}

fn put_serialized_update(s: &mut dyn Sink, kv: &KvRef<'_>) {
    let mut w = StructWriter::new();
    if !kv.key.is_empty() {
        w.field(s, 0);
        put_bytes(s, kv.key.as_bytes());
    }
    if let Some(value) = kv.value.filter(|v| !v.is_empty()) {
        w.field(s, 1);
        put_bytes(s, value);
    }
    // Revision: an interface value holding a Go string — its registered name, the built-in id
    // of `string` (never defined), and the value delimited by its length: a non-struct value
    // is sent as a singleton field (delta 0) then the string.
    w.field(s, 2);
    put_bytes(s, names::GO_STRING.as_bytes());
    put_int(s, ids::STRING);
    let rev = kv.revision.as_bytes();
    put_uint(s, (1 + uint_len(rev.len() as u64) + rev.len()) as u64);
    put_uint(s, 0);
    put_bytes(s, rev);
    if !kv.v3_resource_version.is_empty() {
        w.field(s, 3);
        put_bytes(s, kv.v3_resource_version.as_bytes());
    }
    // Field 4, TTL, is always 0 and so left out.
    w.field(s, 5);
    put_uint(s, kv.update_type as u64);
    w.end(s);
}

/// The most bytes one client message may take (Typha ≥ v3.31.7 caps inbound messages at
/// 1 MiB); counted over every gob message the value spans, length prefixes included.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 1 << 20;

/// `MsgClientHello` (v3.31's fields and v3.32's `SupportsModernPolicyKeys`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    pub hostname: String,
    pub info: String,
    pub version: String,
    /// Empty means `felix`.
    pub syncer_type: String,
    pub supports_decoder_restart: bool,
    pub supported_compression_algorithms: Vec<String>,
    pub client_conn_id: u64,
    /// Sent by v3.32+ clients, which want the modern policy keys.
    pub supports_modern_policy_keys: bool,
}

/// `MsgPong`: Go's zero time (left out on the wire) is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pong {
    /// The ping's timestamp, echoed.
    pub ping_timestamp: Option<GoTime>,
    /// Left zero by Calico's client.
    pub pong_timestamp: Option<GoTime>,
}

/// A message from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    Hello(ClientHello),
    Ack,
    Pong(Pong),
}

/// Why a client's stream was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MessageError {
    #[error(transparent)]
    Gob(#[from] GobError),
    /// An `Envelope` without a message.
    #[error("envelope without a message")]
    NilMessage,
}

const F_HOSTNAME: usize = 0;
const F_INFO: usize = 1;
const F_VERSION: usize = 2;
const F_SYNCER_TYPE: usize = 3;
const F_SUPPORTS_DECODER_RESTART: usize = 4;
const F_COMPRESSION: usize = 5;
const F_CLIENT_CONN_ID: usize = 6;
const F_MODERN_POLICY_KEYS: usize = 7;

static CLIENT_HELLO: Schema = Schema {
    registered_name: names::CLIENT_HELLO,
    label: "MsgClientHello",
    fields: &[
        Field {
            name: "Hostname",
            kind: FieldKind::String,
        },
        Field {
            name: "Info",
            kind: FieldKind::String,
        },
        Field {
            name: "Version",
            kind: FieldKind::String,
        },
        Field {
            name: "SyncerType",
            kind: FieldKind::String,
        },
        Field {
            name: "SupportsDecoderRestart",
            kind: FieldKind::Bool,
        },
        Field {
            name: "SupportedCompressionAlgorithms",
            kind: FieldKind::StringList,
        },
        Field {
            name: "ClientConnID",
            kind: FieldKind::Uint,
        },
        Field {
            name: "SupportsModernPolicyKeys",
            kind: FieldKind::Bool,
        },
    ],
};

static ACK: Schema = Schema {
    registered_name: names::ACK,
    label: "MsgACK",
    fields: &[],
};

static PONG: Schema = Schema {
    registered_name: names::PONG,
    label: "MsgPong",
    fields: &[
        Field {
            name: "PingTimestamp",
            kind: FieldKind::Time,
        },
        Field {
            name: "PongTimestamp",
            kind: FieldKind::Time,
        },
    ],
};

static ENVELOPE: Schema = Schema {
    registered_name: "",
    label: "Envelope",
    fields: &[Field {
        name: "Message",
        kind: FieldKind::Interface,
    }],
};

static CLIENT_GRAMMAR: Grammar = Grammar {
    top: &ENVELOPE,
    concrete: &[&CLIENT_HELLO, &ACK, &PONG],
    refused: &[
        (names::SERVER_HELLO, "MsgServerHello"),
        (names::DECODER_RESTART, "MsgDecoderRestart"),
        (names::SYNC_STATUS, "MsgSyncStatus"),
        (names::PING, "MsgPing"),
        (names::KVS, "MsgKVs"),
    ],
};

/// Decodes one connection's client-to-server stream.
#[derive(Debug)]
pub struct ClientDecoder {
    gob: StreamDecoder,
}

impl Default for ClientDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientDecoder {
    /// A decoder for a new connection.
    pub fn new() -> Self {
        ClientDecoder {
            gob: StreamDecoder::new(MAX_CLIENT_MESSAGE_BYTES),
        }
    }

    /// The next whole message at the front of `buf` (removed from it), or `None` until `buf`
    /// holds one — append what the socket gives and call again. Call until `None` after each
    /// read; `buf` then never needs more than [`MAX_CLIENT_MESSAGE_BYTES`] plus one read. After
    /// an error the connection must be closed: every further call fails.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<ClientMessage>, MessageError> {
        let (value, consumed) = match self.gob.decode(&buf[..], &CLIENT_GRAMMAR)? {
            Decoded::NeedMore => return Ok(None),
            Decoded::Value { value, consumed } => (value, consumed),
        };
        buf.advance(consumed);
        let mut envelope = value.fields;
        let Some(Some(FieldValue::Interface(Some(msg)))) = envelope.pop() else {
            return Err(MessageError::NilMessage);
        };
        let StructValue {
            schema_label,
            fields: mut f,
        } = *msg;
        // One slot per schema field already; `resize` only makes that impossible to get wrong.
        f.resize(CLIENT_HELLO.fields.len(), None);
        Ok(Some(match schema_label {
            l if l == CLIENT_HELLO.label => ClientMessage::Hello(ClientHello {
                hostname: string(&mut f[F_HOSTNAME]),
                info: string(&mut f[F_INFO]),
                version: string(&mut f[F_VERSION]),
                syncer_type: string(&mut f[F_SYNCER_TYPE]),
                supports_decoder_restart: boolean(&f[F_SUPPORTS_DECODER_RESTART]),
                supported_compression_algorithms: match f[F_COMPRESSION].take() {
                    Some(FieldValue::StringList(list)) => list,
                    _ => Vec::new(),
                },
                client_conn_id: match f[F_CLIENT_CONN_ID] {
                    Some(FieldValue::Uint(id)) => id,
                    _ => 0,
                },
                supports_modern_policy_keys: boolean(&f[F_MODERN_POLICY_KEYS]),
            }),
            l if l == PONG.label => ClientMessage::Pong(Pong {
                ping_timestamp: time(&f[0]),
                pong_timestamp: time(&f[1]),
            }),
            l if l == ACK.label => ClientMessage::Ack,
            other => return Err(GobError::UnexpectedInterfaceType(other).into()),
        }))
    }
}

fn string(v: &mut Option<FieldValue>) -> String {
    match v.take() {
        Some(FieldValue::String(s)) => s,
        _ => String::new(),
    }
}

fn boolean(v: &Option<FieldValue>) -> bool {
    matches!(v, Some(FieldValue::Bool(true)))
}

fn time(v: &Option<FieldValue>) -> Option<GoTime> {
    match v {
        Some(FieldValue::Time(t)) if !t.is_zero() => Some(*t),
        _ => None,
    }
}

#[cfg(any(test, feature = "test-support"))]
pub mod go_like_client;
#[cfg(test)]
mod tests;
