use super::go_like_client::{GoLikeClient, put_message};
use super::*;
use crate::gob::GoZone;
use crate::gob::write::{put_bytes, put_int, put_type_definition, put_uint};

/// Calico's canned `Envelope{MsgClientHello{Hostname: "hostname", Info: "info", Version:
/// "version", SyncerType: "syncertype"}}` (typha/pkg/syncproto/sync_proto_test.go), written by
/// Go's encoder: the definition of `Envelope`, a value message that ends in the in-line
/// definition of `MsgClientHello`, and the message that carries the rest of the value.
const CANNED_ENVELOPE_WITH_HELLO: &str = "Iv+BAwEBCEVudmVsb3BlAf+CAAEBAQdNZXNzYWdlARAAAAD/jP+CATtnaXRodWIuY29tL3Byb2plY3R\
jYWxpY28vdHlwaGEvcGtnL3N5bmNwcm90by5Nc2dDbGllbnRIZWxsb/+DAwEBDk1zZ0NsaWVudEhlbGxvAf+EAAEEAQhIb3N0bmFtZQEMAA\
EESW5mbwEMAAEHVmVyc2lvbgEMAAEKU3luY2VyVHlwZQEMAAAAKv+EJgEIaG9zdG5hbWUBBGluZm8BB3ZlcnNpb24BCnN5bmNlcnR5cGUAAA==";

fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64"),
        }
    };
    let clean: Vec<u8> = text.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::new();
    for group in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in group.iter().enumerate() {
            acc |= value(*c) << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..group.len()]);
    }
    out
}

fn canned() -> Vec<u8> {
    base64(CANNED_ENVELOPE_WITH_HELLO)
}

fn canned_hello() -> ClientHello {
    ClientHello {
        hostname: "hostname".into(),
        info: "info".into(),
        version: "version".into(),
        syncer_type: "syncertype".into(),
        ..ClientHello::default()
    }
}

/// Decodes every message in `bytes`, fed `step` bytes at a time.
fn decode_all(bytes: &[u8], step: usize) -> Result<Vec<ClientMessage>, MessageError> {
    let mut decoder = ClientDecoder::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in bytes.chunks(step.max(1)) {
        buf.extend_from_slice(chunk);
        while let Some(m) = decoder.decode(&mut buf)? {
            out.push(m);
        }
    }
    assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
    Ok(out)
}

#[test]
fn decodes_calicos_canned_client_hello() {
    let bytes = canned();
    let messages = decode_all(&bytes, bytes.len()).unwrap();
    assert_eq!(messages, vec![ClientMessage::Hello(canned_hello())]);
}

#[test]
fn decodes_the_canned_hello_fed_byte_by_byte() {
    let bytes = canned();
    let mut decoder = ClientDecoder::new();
    let mut buf = BytesMut::new();
    for (i, b) in bytes.iter().enumerate() {
        buf.extend_from_slice(&[*b]);
        let got = decoder.decode(&mut buf).unwrap();
        if i + 1 < bytes.len() {
            assert_eq!(got, None, "a message before byte {i} of {}", bytes.len());
        } else {
            assert_eq!(got, Some(ClientMessage::Hello(canned_hello())));
        }
    }
    assert!(buf.is_empty());
}

fn sample_hello() -> ClientHello {
    ClientHello {
        hostname: "node-ü-1".into(),
        info: "Revision: abc; Build date: 2025".into(),
        version: "v3.32.0".into(),
        syncer_type: "felix".into(),
        supports_decoder_restart: true,
        supported_compression_algorithms: vec!["snappy".into(), "other".into()],
        client_conn_id: u64::MAX - 5,
        supports_modern_policy_keys: true,
    }
}

fn sample_pong() -> Pong {
    Pong {
        ping_timestamp: Some(GoTime {
            unix_seconds: 1_765_000_000,
            nanos: 42,
            zone: GoZone::Utc,
        }),
        pong_timestamp: Some(GoTime {
            unix_seconds: -1,
            nanos: 999_999_999,
            zone: GoZone::Offset(-3 * 3600),
        }),
    }
}

/// A full client conversation: hello, ACK, pongs, another ACK.
fn sample_client_stream() -> (Vec<u8>, Vec<ClientMessage>) {
    let mut c = GoLikeClient::new();
    let hello = sample_hello();
    c.hello(&hello);
    c.ack();
    let pong = sample_pong();
    c.pong(&pong);
    c.pong(&Pong::default());
    c.ack();
    (
        c.out,
        vec![
            ClientMessage::Hello(hello),
            ClientMessage::Ack,
            ClientMessage::Pong(pong),
            ClientMessage::Pong(Pong::default()),
            ClientMessage::Ack,
        ],
    )
}

#[test]
fn decodes_a_go_like_conversation_in_any_chunking() {
    let (bytes, want) = sample_client_stream();
    for step in [1, 2, 3, 7, 64, bytes.len()] {
        assert_eq!(
            decode_all(&bytes, step).unwrap(),
            want,
            "fed {step} bytes at a time"
        );
    }
}

fn first_error(bytes: &[u8]) -> MessageError {
    match decode_all(bytes, bytes.len()) {
        Err(e) => e,
        Ok(m) => panic!("decoded {m:?}"),
    }
}

#[test]
fn refuses_a_message_over_the_limit_from_its_length_alone() {
    let mut decoder = ClientDecoder::new();
    let mut buf = BytesMut::new();
    put_uint(&mut buf, (MAX_CLIENT_MESSAGE_BYTES + 1) as u64);
    // Only the length prefix has arrived: refused before the body is awaited.
    let err = decoder.decode(&mut buf).unwrap_err();
    assert!(
        matches!(err, MessageError::Gob(GobError::TooLarge { .. })),
        "{err}"
    );
    // And the decoder stays failed.
    assert!(decoder.decode(&mut BytesMut::from(&canned()[..])).is_err());
    // A message just under the limit is waited for, not refused.
    let mut decoder = ClientDecoder::new();
    let mut buf = BytesMut::new();
    put_uint(&mut buf, (MAX_CLIENT_MESSAGE_BYTES - 8) as u64);
    assert_eq!(decoder.decode(&mut buf).unwrap(), None);
}

#[test]
fn refuses_a_value_spanning_messages_over_the_limit() {
    // The canned hello's first two messages, then a third announced as nearly 1 MiB: together
    // over the limit.
    let bytes = canned();
    let mut buf = BytesMut::from(&bytes[..35 + 142]);
    put_uint(&mut buf, (MAX_CLIENT_MESSAGE_BYTES - 100) as u64);
    let err = ClientDecoder::new().decode(&mut buf).unwrap_err();
    assert!(
        matches!(err, MessageError::Gob(GobError::TooLarge { .. })),
        "{err}"
    );
}

#[test]
fn refuses_a_nil_message() {
    // Envelope defined, then an Envelope value without its field.
    let mut bytes = canned()[..35].to_vec();
    put_message(&mut bytes, |s| {
        put_int(s, 65);
        put_uint(s, 0);
    });
    assert_eq!(first_error(&bytes), MessageError::NilMessage);
    // Or with the interface present but nil (a name of length zero).
    let mut bytes = canned()[..35].to_vec();
    put_message(&mut bytes, |s| {
        put_int(s, 65);
        put_uint(s, 1);
        put_uint(s, 0);
        put_uint(s, 0);
    });
    assert_eq!(first_error(&bytes), MessageError::NilMessage);
}

#[test]
fn refuses_unknown_and_server_side_interface_types() {
    let mut bytes = canned()[..35].to_vec();
    put_message(&mut bytes, |s| {
        put_int(s, 65);
        put_uint(s, 1);
        put_bytes(s, b"main.Evil");
        put_int(s, 66);
    });
    assert_eq!(
        first_error(&bytes),
        MessageError::Gob(GobError::UnknownInterfaceType { len: 9 })
    );
    let mut bytes = canned()[..35].to_vec();
    put_message(&mut bytes, |s| {
        put_int(s, 65);
        put_uint(s, 1);
        put_bytes(s, names::KVS.as_bytes());
        put_int(s, 66);
    });
    assert_eq!(
        first_error(&bytes),
        MessageError::Gob(GobError::UnexpectedInterfaceType("MsgKVs"))
    );
}

#[test]
fn refuses_duplicate_and_builtin_type_definitions() {
    let envelope = canned()[..35].to_vec();
    let mut twice = envelope.clone();
    twice.extend_from_slice(&envelope);
    assert_eq!(
        first_error(&twice),
        MessageError::Gob(GobError::DuplicateType(65))
    );
    let mut builtin = Vec::new();
    put_message(&mut builtin, |s| {
        put_type_definition(
            s,
            6,
            &TypeDef::Struct {
                name: "x",
                fields: &[],
            },
        )
    });
    assert_eq!(
        first_error(&builtin),
        MessageError::Gob(GobError::DuplicateType(6))
    );
}

#[test]
fn refuses_too_many_type_definitions() {
    let mut bytes = Vec::new();
    for id in 65..65 + crate::gob::read::MAX_TYPES as i64 + 1 {
        put_message(&mut bytes, |s| {
            put_type_definition(
                s,
                id,
                &TypeDef::Slice {
                    name: "",
                    elem: ids::STRING,
                },
            )
        });
    }
    assert!(matches!(
        first_error(&bytes),
        MessageError::Gob(GobError::TooManyTypes(_))
    ));
}

#[test]
fn refuses_type_definitions_that_hold_too_much_memory() {
    // 64 types would be allowed, but not 64 structs of 200 long field names each: a connection
    // could otherwise keep megabytes of names for as long as it lives.
    let names: Vec<String> = (0..200).map(|i| format!("{i:0>100}")).collect();
    let fields: Vec<(&str, i64)> = names.iter().map(|n| (n.as_str(), ids::STRING)).collect();
    let mut bytes = Vec::new();
    for id in 65..65 + 64 {
        put_message(&mut bytes, |s| {
            put_type_definition(
                s,
                id,
                &TypeDef::Struct {
                    name: "Big",
                    fields: &fields,
                },
            )
        });
    }
    assert_eq!(
        first_error(&bytes),
        MessageError::Gob(GobError::TypesTooLarge(crate::gob::read::MAX_TYPE_BYTES))
    );
}

#[test]
fn refuses_envelopes_of_the_wrong_shape() {
    // A top-level struct without a `Message` field: no fields matched.
    let mut bytes = Vec::new();
    put_message(&mut bytes, |s| {
        put_type_definition(
            s,
            65,
            &TypeDef::Struct {
                name: "Other",
                fields: &[("Payload", ids::STRING)],
            },
        )
    });
    put_message(&mut bytes, |s| {
        put_int(s, 65);
        put_uint(s, 1);
        put_bytes(s, b"x");
        put_uint(s, 0);
    });
    assert_eq!(
        first_error(&bytes),
        MessageError::Gob(GobError::NoFieldsMatched("Envelope"))
    );
    // `Message` sent as a string, not an interface.
    let mut bytes = Vec::new();
    put_message(&mut bytes, |s| {
        put_type_definition(
            s,
            65,
            &TypeDef::Struct {
                name: "Envelope",
                fields: &[("Message", ids::STRING)],
            },
        )
    });
    put_message(&mut bytes, |s| {
        put_int(s, 65);
        put_uint(s, 1);
        put_bytes(s, b"x");
        put_uint(s, 0);
    });
    assert_eq!(
        first_error(&bytes),
        MessageError::Gob(GobError::FieldTypeMismatch {
            field: "Message",
            wire: ids::STRING
        })
    );
    // A value of a built-in type at top level.
    let mut bytes = Vec::new();
    put_message(&mut bytes, |s| {
        put_int(s, ids::STRING);
        put_uint(s, 0);
        put_bytes(s, b"hello");
    });
    assert_eq!(
        first_error(&bytes),
        MessageError::Gob(GobError::NotAStruct("Envelope"))
    );
}

#[test]
fn refuses_huge_counts_and_lengths_without_allocating() {
    // A hello whose compression list claims 2^60 elements, and one whose hostname claims
    // 2^62 bytes: both refused against the bytes present.
    for (field, claim) in [(5i64, 1u64 << 60), (0, 1 << 62)] {
        let mut c = GoLikeClient::new();
        c.hello(&sample_hello());
        // The hello's in-line definitions gave it id 66; a second hello needs none.
        let mut bytes = c.out.clone();
        let mut tail = Vec::new();
        put_message(&mut tail, |s| {
            put_int(s, 65);
            put_uint(s, 1);
            put_bytes(s, names::CLIENT_HELLO.as_bytes());
            put_int(s, 66);
            put_uint(s, 20);
            put_uint(s, (field + 1) as u64);
            put_uint(s, claim);
            s.put(b"abc");
        });
        bytes.extend_from_slice(&tail);
        let mut decoder = ClientDecoder::new();
        let mut buf = BytesMut::from(&bytes[..]);
        assert!(matches!(
            decoder.decode(&mut buf),
            Ok(Some(ClientMessage::Hello(_)))
        ));
        let err = decoder.decode(&mut buf).unwrap_err();
        assert!(
            matches!(err, MessageError::Gob(GobError::Truncated(_))),
            "{err}"
        );
    }
}

#[test]
fn refuses_a_length_prefix_of_u64_max_without_overflow() {
    // Found by the `typha_client` fuzz target: the largest length Go's form can carry.
    let mut bytes = vec![0xF8];
    bytes.extend_from_slice(&[0xFF; 8]);
    assert!(matches!(
        first_error(&bytes),
        MessageError::Gob(GobError::TooLarge { .. })
    ));
}

#[test]
fn refuses_a_message_that_claims_more_than_8_length_bytes() {
    assert_eq!(
        first_error(&[0x80, 1, 2, 3]),
        MessageError::Gob(GobError::BadInteger)
    );
    assert_eq!(
        first_error(&[0x00]),
        MessageError::Gob(GobError::EmptyMessage)
    );
}

/// A server-side view of our own encodings, to read them back without Go: the preamble's
/// types under our decoder, each message's fields.
mod server_view {
    use super::*;

    pub static SERVER_HELLO: Schema = Schema {
        registered_name: names::SERVER_HELLO,
        label: "MsgServerHello",
        fields: &[
            Field {
                name: "Version",
                kind: FieldKind::String,
            },
            Field {
                name: "SyncerType",
                kind: FieldKind::String,
            },
            Field {
                name: "SupportsNodeResourceUpdates",
                kind: FieldKind::Bool,
            },
            Field {
                name: "ServerConnID",
                kind: FieldKind::Uint,
            },
        ],
    };
    pub static DECODER_RESTART: Schema = Schema {
        registered_name: names::DECODER_RESTART,
        label: "MsgDecoderRestart",
        fields: &[
            Field {
                name: "Message",
                kind: FieldKind::String,
            },
            Field {
                name: "CompressionAlgorithm",
                kind: FieldKind::String,
            },
        ],
    };
    pub static SYNC_STATUS: Schema = Schema {
        registered_name: names::SYNC_STATUS,
        label: "MsgSyncStatus",
        fields: &[Field {
            name: "SyncStatus",
            kind: FieldKind::Uint,
        }],
    };
    pub static PING: Schema = Schema {
        registered_name: names::PING,
        label: "MsgPing",
        fields: &[Field {
            name: "Timestamp",
            kind: FieldKind::Time,
        }],
    };
    /// MsgKVs's list of structs is not a kind our decoder yields: with no local fields it is
    /// skipped (which walks its whole structure) and the message is recognised by its label.
    pub static KVS: Schema = Schema {
        registered_name: names::KVS,
        label: "MsgKVs",
        fields: &[],
    };
    pub static GRAMMAR: Grammar = Grammar {
        top: &ENVELOPE,
        concrete: &[&SERVER_HELLO, &DECODER_RESTART, &SYNC_STATUS, &PING, &KVS],
        refused: &[],
    };
}

#[test]
fn our_server_messages_read_back_after_the_preamble() {
    let ping_time = GoTime {
        unix_seconds: 1_765_000_000,
        nanos: 7,
        zone: GoZone::Utc,
    };
    let messages = [
        encode_server_hello(&ServerHello {
            version: "meshsync",
            syncer_type: "felix",
            supports_node_resource_updates: true,
            server_conn_id: 99,
        }),
        encode_decoder_restart("enable compression", Compression::Snappy),
        encode_sync_status(SyncStatus::InSync),
        encode_ping(&ping_time).unwrap(),
        encode_kvs(&[KvRef {
            key: "/calico/v1/host/h/config/x",
            value: Some(b"v"),
            revision: "5",
            v3_resource_version: "",
            update_type: UpdateType::New,
        }]),
    ];
    let mut stream = preamble().to_vec();
    for m in &messages {
        stream.extend_from_slice(m);
    }
    let mut decoder = StreamDecoder::new(usize::MAX);
    let mut pos = 0;
    let mut labels = Vec::new();
    let mut fields = Vec::new();
    while pos < stream.len() {
        let Decoded::Value { value, consumed } = decoder
            .decode(&stream[pos..], &server_view::GRAMMAR)
            .unwrap()
        else {
            panic!("incomplete");
        };
        pos += consumed;
        let Some(Some(FieldValue::Interface(Some(msg)))) = value.fields.into_iter().next() else {
            panic!("nil message");
        };
        labels.push(msg.schema_label);
        fields.push(msg.fields);
    }
    assert_eq!(
        labels,
        [
            "MsgServerHello",
            "MsgDecoderRestart",
            "MsgSyncStatus",
            "MsgPing",
            "MsgKVs"
        ]
    );
    assert_eq!(
        fields[0],
        vec![
            Some(FieldValue::String("meshsync".into())),
            Some(FieldValue::String("felix".into())),
            Some(FieldValue::Bool(true)),
            Some(FieldValue::Uint(99)),
        ]
    );
    assert_eq!(fields[2], vec![Some(FieldValue::Uint(2))]);
    assert_eq!(fields[3], vec![Some(FieldValue::Time(ping_time))]);
    // Every value message is self-contained after the preamble: each decodes on a fresh
    // stream that has seen only the preamble, in any order.
    for m in messages.iter().rev() {
        let mut fresh = StreamDecoder::new(usize::MAX);
        let mut s = preamble().to_vec();
        s.extend_from_slice(m);
        assert!(matches!(
            fresh.decode(&s, &server_view::GRAMMAR).unwrap(),
            Decoded::Value { consumed, .. } if consumed == s.len()
        ));
    }
}

#[test]
fn kvs_sizes_are_exact_and_values_shared() {
    let big = vec![b'x'; 200_000];
    let kvs = [
        KvRef {
            key: "/calico/v1/policy/tier/default/policy/ünïcödé",
            value: Some(&big),
            revision: "123",
            v3_resource_version: "456",
            update_type: UpdateType::Updated,
        },
        KvRef {
            key: "/calico/v1/host/h/config/gone",
            value: None,
            revision: "",
            v3_resource_version: "",
            update_type: UpdateType::Deleted,
        },
    ];
    let a = encode_kvs(&kvs);
    let b = encode_kvs(&kvs);
    assert_eq!(a, b, "the same KVs give the same bytes");
    assert!(a.len() > big.len());
    assert_eq!(encode_kvs(&[]), encode_kvs(&[]));
}

/// A small deterministic generator (xorshift64*), so the fuzz runs are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            2 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, rng.next() as u8);
            }
            3 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.remove(i);
            }
            4 => {
                let i = rng.below(v.len() + 1);
                v.truncate(i);
            }
            5 if rng.below(4) == 0 => {
                // The extremes of Go's integer form: 2^64 - 1 as a length or count.
                let i = rng.below(v.len() + 1);
                v.splice(i..i, [0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
            }
            5 if !v.is_empty() => {
                // Interesting integers: lengths and counts at their extremes.
                let i = rng.below(v.len());
                let pick = [0x00, 0x7f, 0x80, 0xf8, 0xf9, 0xfe, 0xff];
                v[i] = pick[rng.below(pick.len())];
            }
            _ => {
                let i = rng.below(v.len() + 1);
                let j = rng.below(v.len() + 1);
                let (lo, hi) = (i.min(j), i.max(j));
                let copy = v[lo..hi].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, copy);
            }
        }
    }
    v
}

/// Feeds `input` in random pieces, decoding until an error or the end; must never panic.
fn run(rng: &mut Rng, input: &[u8]) -> usize {
    let mut decoder = ClientDecoder::new();
    let mut buf = BytesMut::new();
    let mut decoded = 0;
    let mut pos = 0;
    while pos < input.len() {
        let n = 1 + rng.below(input.len() - pos);
        buf.extend_from_slice(&input[pos..pos + n]);
        pos += n;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(_)) => decoded += 1,
                Ok(None) => break,
                Err(_) => return decoded,
            }
        }
    }
    decoded
}

#[test]
fn fuzz_random_and_mutated_inputs_never_panic() {
    let mut rng = Rng(0x5eed_0f7e_57ab_1e00);
    let (conversation, _) = sample_client_stream();
    let seeds = [canned(), conversation];
    let mut decoded_any = 0;
    for i in 0..100_000 {
        let input = if i % 10 == 0 {
            let len = rng.below(300);
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            let seed = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, seed)
        };
        decoded_any += run(&mut rng, &input);
    }
    // The mutations are mostly small: many inputs still decode in part, so the deep paths ran.
    assert!(decoded_any > 10_000, "only {decoded_any} messages decoded");
}
