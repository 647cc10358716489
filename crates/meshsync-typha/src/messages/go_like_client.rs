//! A client stream as Go's encoder writes it (type definitions in-line, in the order Go meets
//! the types), for tests of this crate and of the Typha front end (feature `test-support`): a
//! test double of Calico's syncclient's encoder, checked against Go's real bytes by this crate's
//! tests, never used by the product.

use super::*;
use crate::gob::write::{Counter, put_bytes, put_int, put_type_definition, put_uint};

/// A client stream as Go's encoder writes it, built with our own writer: type definitions
/// in-line, in the order Go meets the types (Envelope 65, then each concrete type as it first
/// appears).
pub struct GoLikeClient {
    /// The stream so far.
    pub out: Vec<u8>,
    next_id: i64,
    hello: Option<i64>,
    ack: Option<i64>,
    pong: Option<i64>,
}

impl Default for GoLikeClient {
    fn default() -> Self {
        Self::new()
    }
}

impl GoLikeClient {
    pub fn new() -> Self {
        let mut out = Vec::new();
        put_message(&mut out, |s| {
            put_type_definition(
                s,
                65,
                &TypeDef::Struct {
                    name: "Envelope",
                    fields: &[("Message", ids::INTERFACE)],
                },
            )
        });
        GoLikeClient {
            out,
            next_id: 66,
            hello: None,
            ack: None,
            pong: None,
        }
    }

    /// One envelope holding `name`'s value; `defs` are the types to define in-line the first
    /// time (the concrete struct first), `body` the concrete value given their ids.
    fn send(
        &mut self,
        name: &str,
        first_time_defs: Option<Vec<(i64, TypeDef<'static>)>>,
        id: i64,
        body: &dyn Fn(&mut dyn Sink),
    ) {
        let mut head = Vec::new();
        put_int(&mut head, 65);
        put_uint(&mut head, 1);
        put_bytes(&mut head, name.as_bytes());
        let mut value = Vec::new();
        put_int(&mut value, id);
        let mut len = Counter::default();
        body(&mut len);
        put_uint(&mut value, len.0 as u64);
        body(&mut value);
        put_uint(&mut value, 0);
        match first_time_defs {
            Some(defs) => {
                // Go: the first definition joins the head; the others are messages of their own.
                for (i, (def_id, def)) in defs.iter().enumerate() {
                    if i == 0 {
                        put_type_definition(&mut head, *def_id, def);
                        put_message(&mut self.out, |s| s.put(&head));
                    } else {
                        put_message(&mut self.out, |s| put_type_definition(s, *def_id, def));
                    }
                }
                put_message(&mut self.out, |s| s.put(&value));
            }
            None => {
                head.extend_from_slice(&value);
                put_message(&mut self.out, |s| s.put(&head));
            }
        }
    }

    pub fn hello(&mut self, h: &ClientHello) {
        let first_time = self.hello.is_none();
        let id = *self.hello.get_or_insert(self.next_id);
        let defs = first_time.then(|| {
            self.next_id += 2;
            let fields: &'static [(&'static str, i64)] = Box::leak(Box::new([
                ("Hostname", ids::STRING),
                ("Info", ids::STRING),
                ("Version", ids::STRING),
                ("SyncerType", ids::STRING),
                ("SupportsDecoderRestart", ids::BOOL),
                ("SupportedCompressionAlgorithms", id + 1),
                ("ClientConnID", ids::UINT),
                ("SupportsModernPolicyKeys", ids::BOOL),
            ]));
            vec![
                (
                    id,
                    TypeDef::Struct {
                        name: "MsgClientHello",
                        fields,
                    },
                ),
                (
                    id + 1,
                    TypeDef::Slice {
                        name: "",
                        elem: ids::STRING,
                    },
                ),
            ]
        });
        let h = h.clone();
        self.send(names::CLIENT_HELLO, defs, id, &move |s| {
            let mut w = StructWriter::new();
            for (i, text) in [&h.hostname, &h.info, &h.version, &h.syncer_type]
                .into_iter()
                .enumerate()
            {
                if !text.is_empty() {
                    w.field(s, i as i64);
                    put_bytes(s, text.as_bytes());
                }
            }
            if h.supports_decoder_restart {
                w.field(s, 4);
                put_uint(s, 1);
            }
            if !h.supported_compression_algorithms.is_empty() {
                w.field(s, 5);
                put_uint(s, h.supported_compression_algorithms.len() as u64);
                for a in &h.supported_compression_algorithms {
                    put_bytes(s, a.as_bytes());
                }
            }
            if h.client_conn_id != 0 {
                w.field(s, 6);
                put_uint(s, h.client_conn_id);
            }
            if h.supports_modern_policy_keys {
                w.field(s, 7);
                put_uint(s, 1);
            }
            w.end(s);
        });
    }

    pub fn ack(&mut self) {
        let defs = if self.ack.is_none() {
            self.ack = Some(self.next_id);
            self.next_id += 1;
            Some(vec![(
                self.next_id - 1,
                TypeDef::Struct {
                    name: "MsgACK",
                    fields: &[],
                },
            )])
        } else {
            None
        };
        let id = self.ack.unwrap_or_default();
        self.send(names::ACK, defs, id, &|s| put_uint(s, 0));
    }

    pub fn pong(&mut self, p: &Pong) {
        let defs = if self.pong.is_none() {
            let id = self.next_id;
            self.next_id += 2;
            self.pong = Some(id);
            let fields: &'static [(&'static str, i64)] = Box::leak(Box::new([
                ("PingTimestamp", id + 1),
                ("PongTimestamp", id + 1),
            ]));
            Some(vec![
                (
                    id,
                    TypeDef::Struct {
                        name: "MsgPong",
                        fields,
                    },
                ),
                (id + 1, TypeDef::GobEncoder { name: "Time" }),
            ])
        } else {
            None
        };
        let id = self.pong.unwrap_or_default();
        let p = *p;
        self.send(names::PONG, defs, id, &move |s| {
            let mut w = StructWriter::new();
            for (i, t) in [p.ping_timestamp, p.pong_timestamp].into_iter().enumerate() {
                if let Some(t) = t {
                    w.field(s, i as i64);
                    put_bytes(s, &t.marshal_binary().unwrap_or_default());
                }
            }
            w.end(s);
        });
    }
}

pub(crate) fn put_message(out: &mut Vec<u8>, body: impl Fn(&mut dyn Sink)) {
    out.extend_from_slice(&message(body));
}
