//! Writing gob: Go's integer forms, struct fields, type definitions and message framing.
//!
//! Everything writes to a [`Sink`], which is either a buffer or a [`Counter`]: an encoder runs
//! once on a `Counter` to learn the exact size, then once on a buffer of exactly that capacity,
//! so a large message (a batch of KVs with big values) is built without regrowing or copying.

use bytes::{BufMut, Bytes, BytesMut};

use super::TypeId;

/// Where gob bytes go: a buffer, or a [`Counter`] that only adds up their length.
pub trait Sink {
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for BytesMut {
    fn put(&mut self, bytes: &[u8]) {
        self.put_slice(bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A [`Sink`] that counts the bytes it is given.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counter(pub usize);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// Go's unsigned integer form: below 128 one byte; otherwise the byte count `n` as the byte
/// `-n` followed by the `n` significant bytes, big-endian.
pub fn put_uint(s: &mut (impl Sink + ?Sized), x: u64) {
    if x < 0x80 {
        s.put(&[x as u8]);
        return;
    }
    let be = x.to_be_bytes();
    let skip = (x.leading_zeros() / 8) as usize;
    let n = be.len() - skip;
    s.put(&[(n as u8).wrapping_neg()]);
    s.put(&be[skip..]);
}

/// The length of [`put_uint`]'s form of `x`.
pub fn uint_len(x: u64) -> usize {
    if x < 0x80 {
        1
    } else {
        1 + 8 - (x.leading_zeros() / 8) as usize
    }
}

/// Go's signed integer form: the sign in the lowest bit of an unsigned integer
/// (`i << 1`, or `(^i << 1) | 1` for negative `i`).
pub fn put_int(s: &mut (impl Sink + ?Sized), i: i64) {
    put_uint(s, int_to_uint(i));
}

/// The unsigned integer that carries `i`.
pub fn int_to_uint(i: i64) -> u64 {
    if i < 0 {
        ((!i as u64) << 1) | 1
    } else {
        (i as u64) << 1
    }
}

/// A string or byte slice: its length, then its bytes.
pub fn put_bytes(s: &mut (impl Sink + ?Sized), bytes: &[u8]) {
    put_uint(s, bytes.len() as u64);
    s.put(bytes);
}

/// Writes a struct value's fields: each as the delta from the previous field number, then the
/// value; [`StructWriter::end`] writes the terminating zero. Fields must come in increasing
/// order, and a zero value is left out by the caller (as Go does).
pub struct StructWriter {
    last: i64,
}

impl StructWriter {
    /// Before the first field (Go starts at -1, so field 0 has delta 1).
    pub fn new() -> Self {
        StructWriter { last: -1 }
    }

    /// Starts field `number`; its value follows.
    pub fn field(&mut self, s: &mut (impl Sink + ?Sized), number: i64) {
        debug_assert!(number > self.last, "gob struct fields must increase");
        put_uint(s, (number - self.last) as u64);
        self.last = number;
    }

    /// Ends the struct.
    pub fn end(self, s: &mut (impl Sink + ?Sized)) {
        put_uint(s, 0);
    }
}

impl Default for StructWriter {
    fn default() -> Self {
        Self::new()
    }
}

/// A type definition this crate sends (the kinds Typha's server messages need).
#[derive(Debug, Clone, Copy)]
pub enum TypeDef<'a> {
    /// A struct: its Go name and its fields' names and type ids, in field-number order.
    Struct {
        name: &'a str,
        fields: &'a [(&'a str, TypeId)],
    },
    /// A slice of `elem` (not `[]byte`, which is built in).
    Slice { name: &'a str, elem: TypeId },
    /// A type with its own `GobEncode` (for example `time.Time`): its value is a byte string.
    GobEncoder { name: &'a str },
}

// Field numbers of gob's `wireType` and the types inside it (encoding/gob/type.go).
const WIRE_SLICE: i64 = 1;
const WIRE_STRUCT: i64 = 2;
const WIRE_GOB_ENCODER: i64 = 4;

fn put_common_type(s: &mut (impl Sink + ?Sized), name: &str, id: TypeId) {
    let mut common = StructWriter::new();
    if !name.is_empty() {
        common.field(s, 0);
        put_bytes(s, name.as_bytes());
    }
    common.field(s, 1);
    put_int(s, id);
    common.end(s);
}

/// The body of the message that defines type `id` as `def`: `-id`, then the `wireType` value.
pub fn put_type_definition(s: &mut (impl Sink + ?Sized), id: TypeId, def: &TypeDef<'_>) {
    put_int(s, -id);
    let mut wire = StructWriter::new();
    match *def {
        TypeDef::Struct { name, fields } => {
            wire.field(s, WIRE_STRUCT);
            let mut st = StructWriter::new();
            st.field(s, 0);
            put_common_type(s, name, id);
            if !fields.is_empty() {
                st.field(s, 1);
                put_uint(s, fields.len() as u64);
                for (field_name, field_id) in fields {
                    let mut f = StructWriter::new();
                    f.field(s, 0);
                    put_bytes(s, field_name.as_bytes());
                    f.field(s, 1);
                    put_int(s, *field_id);
                    f.end(s);
                }
            }
            st.end(s);
        }
        TypeDef::Slice { name, elem } => {
            wire.field(s, WIRE_SLICE);
            let mut st = StructWriter::new();
            st.field(s, 0);
            put_common_type(s, name, id);
            st.field(s, 1);
            put_int(s, elem);
            st.end(s);
        }
        TypeDef::GobEncoder { name } => {
            wire.field(s, WIRE_GOB_ENCODER);
            let mut st = StructWriter::new();
            st.field(s, 0);
            put_common_type(s, name, id);
            st.end(s);
        }
    }
    wire.end(s);
}

/// One gob message whose body `write` produces: the body's length, then the body, in a buffer
/// of exactly the right size (`write` runs twice, first on a [`Counter`]).
pub fn message<F>(write: F) -> Bytes
where
    F: Fn(&mut dyn Sink),
{
    let mut counter = Counter::default();
    write(&mut counter);
    let len = counter.0;
    let mut buf = BytesMut::with_capacity(uint_len(len as u64) + len);
    put_uint(&mut buf, len as u64);
    write(&mut buf);
    debug_assert_eq!(buf.len(), uint_len(len as u64) + len);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uint_bytes(x: u64) -> Vec<u8> {
        let mut v = Vec::new();
        put_uint(&mut v, x);
        assert_eq!(v.len(), uint_len(x));
        v
    }

    #[test]
    fn integers_in_go_form() {
        // Examples from encoding/gob's documentation.
        assert_eq!(uint_bytes(7), [0x07]);
        assert_eq!(uint_bytes(256), [0xFE, 0x01, 0x00]);
        assert_eq!(
            uint_bytes(u64::MAX),
            [0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        );
        let mut v = Vec::new();
        put_int(&mut v, -65);
        assert_eq!(v, [0xFF, 0x81]);
        v.clear();
        put_int(&mut v, 65);
        assert_eq!(v, [0xFF, 0x82]);
        v.clear();
        put_int(&mut v, 8);
        assert_eq!(v, [0x10]);
        v.clear();
        put_int(&mut v, i64::MIN);
        assert_eq!(v, uint_bytes(u64::MAX));
    }

    #[test]
    fn envelope_definition_matches_go() {
        // The first message of Calico's canned `MsgClientHello` (sync_proto_test.go), as Go's
        // encoder wrote it: the definition of `Envelope` as type 65.
        let fields = [("Message", super::super::ids::INTERFACE)];
        let msg = message(|s| {
            put_type_definition(
                s,
                65,
                &TypeDef::Struct {
                    name: "Envelope",
                    fields: &fields,
                },
            )
        });
        let mut want = vec![0x22, 0xFF, 0x81, 0x03, 0x01, 0x01, 0x08];
        want.extend_from_slice(b"Envelope");
        want.extend_from_slice(&[0x01, 0xFF, 0x82, 0x00, 0x01, 0x01, 0x01, 0x07]);
        want.extend_from_slice(b"Message");
        want.extend_from_slice(&[0x01, 0x10, 0x00, 0x00, 0x00]);
        assert_eq!(&msg[..], &want[..]);
    }
}
