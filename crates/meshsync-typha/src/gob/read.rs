//! Reading a gob stream written by Go's encoder: incremental, bounded, never panicking.
//!
//! [`StreamDecoder`] keeps the stream's type definitions and decodes one top-level value at a
//! time from the caller's receive buffer, as Go's `Decoder.Decode` does: any standalone type
//! definitions, then a value message, whose interface fields may pull further messages (Go's
//! encoder defines an interface's concrete type in the middle of the value). If the buffer ends
//! before the value does, nothing is consumed and nothing is remembered: the decoder reports
//! how many bytes it needs at least and does no work until the buffer has them, so a peer that
//! dribbles bytes cannot make it re-parse a value over and over.
//!
//! Values are decoded into a caller's [`Schema`] (struct fields by name and kind), matched as
//! Go matches them: by field name, the wire type checked against the local kind, unknown wire
//! fields skipped, "no fields matched" refused. Bounds: one value (with every message it spans)
//! at most the decoder's byte limit, checked from a message's length prefix before its body is
//! awaited; at most [`MAX_TYPES`] definitions per stream, holding at most [`MAX_TYPE_BYTES`]
//! (a stream's definitions live as long as its connection); nesting at most [`MAX_DEPTH`]; lists
//! at most [`MAX_LIST_ELEMENTS`]; every length checked against the bytes present before use.
//! Nothing is allocated from a length the peer sent before that check.

use std::collections::HashMap;

use super::time::GoTime;
use super::{GobError, TypeId, ids};

/// The most type definitions one stream may carry (a Typha client defines about six).
pub const MAX_TYPES: usize = 64;
/// The deepest nesting of values (structs, lists, interfaces) decoded or skipped.
pub const MAX_DEPTH: usize = 32;
/// The longest interface type name (Go's decoder refuses longer ones too).
pub const MAX_INTERFACE_NAME: usize = 1024;
/// The most elements of one decoded list (`[]string`).
pub const MAX_LIST_ELEMENTS: usize = 1024;
/// The most fields of one struct type definition.
pub const MAX_STRUCT_FIELDS: usize = 1024;
/// The most memory one stream's type definitions may hold (field names plus a fixed cost per
/// type and field): a Typha client's take well under 1 KiB, and every connection keeps its own.
pub const MAX_TYPE_BYTES: usize = 16 * 1024;

/// The Go kind of one field we decode, and so which wire types it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// `bool`.
    Bool,
    /// Any unsigned integer.
    Uint,
    /// Any signed integer (`time.Duration` too).
    Int,
    /// `string` or a named string type.
    String,
    /// `[]byte`.
    Bytes,
    /// A slice of a string type.
    StringList,
    /// `time.Time` (a `GobEncoder`).
    Time,
    /// `interface{}` holding one of the decoder's concrete schemas.
    Interface,
}

/// One decoded field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    Bool(bool),
    Uint(u64),
    Int(i64),
    String(String),
    Bytes(Vec<u8>),
    StringList(Vec<String>),
    Time(GoTime),
    /// `None` for a nil interface.
    Interface(Option<Box<StructValue>>),
}

/// A field of a [`Schema`].
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The Go field name (gob matches fields by name).
    pub name: &'static str,
    pub kind: FieldKind,
}

/// A Go struct type as we decode it.
#[derive(Debug)]
pub struct Schema {
    /// The name it is registered under for interface values (`gob.RegisterName`).
    pub registered_name: &'static str,
    /// A short name for errors.
    pub label: &'static str,
    pub fields: &'static [Field],
}

/// What a stream may contain: the top-level struct, the concrete types its interface fields
/// may hold, and registered names that are known but refused here (for a clearer error).
#[derive(Debug)]
pub struct Grammar {
    pub top: &'static Schema,
    pub concrete: &'static [&'static Schema],
    /// (registered name, label) pairs.
    pub refused: &'static [(&'static str, &'static str)],
}

/// A decoded struct: one slot per field of its schema, `None` where the stream had no value
/// (Go's zero value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructValue {
    pub schema_label: &'static str,
    pub fields: Vec<Option<FieldValue>>,
}

/// The outcome of [`StreamDecoder::decode`] when nothing was wrong.
#[derive(Debug)]
pub enum Decoded {
    /// One complete value, which ended `consumed` bytes into the input.
    Value { value: StructValue, consumed: usize },
    /// The input ends before the value does; call again with more bytes (nothing consumed).
    NeedMore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum External {
    Gob,
    Binary,
    Text,
}

/// A struct type's fields: each field's name and wire type.
type WireFields = Vec<(Box<[u8]>, TypeId)>;

#[derive(Debug, Clone)]
enum WireType {
    Struct(WireFields),
    Slice(TypeId),
    Array { elem: TypeId, len: i64 },
    Map { key: TypeId, elem: TypeId },
    External(External),
}

impl WireType {
    /// The memory this definition holds, roughly: a fixed cost, and per struct field its name
    /// and a fixed cost.
    fn cost(&self) -> usize {
        const FIXED: usize = 32;
        match self {
            WireType::Struct(fields) => {
                FIXED
                    + fields
                        .iter()
                        .map(|(name, _)| FIXED + name.len())
                        .sum::<usize>()
            }
            _ => FIXED,
        }
    }
}

/// The decoder of one gob stream (one connection's client-to-server direction).
#[derive(Debug)]
pub struct StreamDecoder {
    types: HashMap<TypeId, WireType>,
    /// What `types` holds, as [`WireType::cost`] counts it.
    type_bytes: usize,
    max_value_bytes: usize,
    /// After a `NeedMore`, the input length below which another attempt cannot succeed.
    resume_at: usize,
    failed: bool,
}

impl StreamDecoder {
    /// A decoder for a fresh stream whose values (each with all the messages it spans) are at
    /// most `max_value_bytes` long.
    pub fn new(max_value_bytes: usize) -> Self {
        StreamDecoder {
            types: HashMap::new(),
            type_bytes: 0,
            max_value_bytes,
            resume_at: 0,
            failed: false,
        }
    }

    /// Decodes the next top-level value from `input`, the stream's bytes not yet consumed (the
    /// caller drops `consumed` bytes after a value, and nothing after `NeedMore`). After an
    /// error the stream is unusable and every further call fails.
    pub fn decode(&mut self, input: &[u8], grammar: &Grammar) -> Result<Decoded, GobError> {
        if self.failed {
            return Err(GobError::Failed);
        }
        if input.len() < self.resume_at {
            return Ok(Decoded::NeedMore);
        }
        let mut pass = Pass {
            cur: Cursor {
                input,
                next: 0,
                msg: &[],
                limit: self.max_value_bytes,
            },
            types: &mut self.types,
            type_bytes: &mut self.type_bytes,
            added: Vec::new(),
            grammar,
        };
        let result = pass.top_level();
        let consumed = pass.cur.next;
        let added = std::mem::take(&mut pass.added);
        match result {
            Ok(value) => {
                self.resume_at = 0;
                Ok(Decoded::Value { value, consumed })
            }
            Err(Stop::More(at)) => {
                for id in added {
                    if let Some(wire) = self.types.remove(&id) {
                        self.type_bytes = self.type_bytes.saturating_sub(wire.cost());
                    }
                }
                self.resume_at = at;
                Ok(Decoded::NeedMore)
            }
            Err(Stop::Bad(e)) => {
                self.failed = true;
                Err(e)
            }
        }
    }
}

enum Stop {
    /// The input must be at least this long before the value can be complete.
    More(usize),
    Bad(GobError),
}

impl From<GobError> for Stop {
    fn from(e: GobError) -> Self {
        Stop::Bad(e)
    }
}

/// The bytes of one value: the messages it spans, read one after another.
struct Cursor<'a> {
    input: &'a [u8],
    /// Offset of the next message's length prefix.
    next: usize,
    /// What is left of the current message.
    msg: &'a [u8],
    limit: usize,
}

impl<'a> Cursor<'a> {
    /// Makes the next message current.
    fn next_message(&mut self) -> Result<(), Stop> {
        let rest = self.input.get(self.next..).unwrap_or_default();
        let Some(&first) = rest.first() else {
            return Err(Stop::More(self.next + 1));
        };
        let (len, prefix) = if first < 0x80 {
            (u64::from(first), 1usize)
        } else {
            let n = (first as i8).unsigned_abs() as usize;
            if n > 8 {
                return Err(GobError::BadInteger.into());
            }
            let Some(bytes) = rest.get(1..=n) else {
                return Err(Stop::More(self.next + 1 + n));
            };
            (
                bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
                1 + n,
            )
        };
        if len == 0 {
            return Err(GobError::EmptyMessage.into());
        }
        // `len` may be anything up to 2^64 - 1: saturate, the limit check refuses it.
        let end = ((self.next + prefix) as u64).saturating_add(len);
        if end > self.limit as u64 {
            return Err(GobError::TooLarge {
                len: end,
                limit: self.limit,
            }
            .into());
        }
        // `end` ≤ limit, a usize.
        let end = end as usize;
        let Some(msg) = self.input.get(self.next + prefix..end) else {
            return Err(Stop::More(end));
        };
        self.msg = msg;
        self.next = end;
        Ok(())
    }

    fn uint(&mut self) -> Result<u64, GobError> {
        let (&first, rest) = self
            .msg
            .split_first()
            .ok_or(GobError::Truncated("integer"))?;
        if first < 0x80 {
            self.msg = rest;
            return Ok(u64::from(first));
        }
        let n = (first as i8).unsigned_abs() as usize;
        if n > 8 {
            return Err(GobError::BadInteger);
        }
        let bytes = rest.get(..n).ok_or(GobError::Truncated("integer"))?;
        self.msg = &rest[n..];
        Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn int(&mut self) -> Result<i64, GobError> {
        let u = self.uint()?;
        let i = (u >> 1) as i64;
        Ok(if u & 1 != 0 { !i } else { i })
    }

    fn type_id(&mut self) -> Result<TypeId, GobError> {
        let id = self.int()?;
        if i32::try_from(id).is_err() {
            return Err(GobError::OutOfRange("type id"));
        }
        Ok(id)
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], GobError> {
        if n > self.msg.len() as u64 {
            return Err(GobError::Truncated(what));
        }
        let (head, tail) = self.msg.split_at(n as usize);
        self.msg = tail;
        Ok(head)
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], GobError> {
        let n = self.uint()?;
        self.take(n, what)
    }

    /// A count of elements each at least one byte long in this message.
    fn count(&mut self, what: &'static str) -> Result<u64, GobError> {
        let n = self.uint()?;
        if n > self.msg.len() as u64 {
            return Err(GobError::Truncated(what));
        }
        Ok(n)
    }

    /// Runs `each` for every field present in a struct of `nfields` fields, in order.
    fn struct_fields<F>(&mut self, nfields: usize, mut each: F) -> Result<(), GobError>
    where
        F: FnMut(&mut Self, usize) -> Result<(), GobError>,
    {
        let mut field: i64 = -1;
        loop {
            let delta = self.uint()?;
            if delta == 0 {
                return Ok(());
            }
            if delta > nfields as u64 {
                return Err(GobError::FieldOutOfRange);
            }
            field += delta as i64;
            if field >= nfields as i64 {
                return Err(GobError::FieldOutOfRange);
            }
            each(self, field as usize)?;
        }
    }

    /// Skips a `CommonType` (name and id; Go does not check either against anything).
    fn common_type(&mut self) -> Result<(), GobError> {
        self.struct_fields(2, |c, f| {
            match f {
                0 => {
                    c.bytes("type name")?;
                }
                _ => {
                    c.type_id()?;
                }
            }
            Ok(())
        })
    }

    /// A `wireType` value (the body of a type-definition message after its id).
    fn wire_type(&mut self) -> Result<WireType, GobError> {
        let mut found: Option<WireType> = None;
        self.struct_fields(7, |c, f| {
            let t = match f {
                0 => {
                    let (mut elem, mut len) = (0, 0);
                    c.struct_fields(3, |c, g| {
                        match g {
                            0 => c.common_type()?,
                            1 => elem = c.type_id()?,
                            _ => len = c.int()?,
                        }
                        Ok(())
                    })?;
                    WireType::Array { elem, len }
                }
                1 => {
                    let mut elem = 0;
                    c.struct_fields(2, |c, g| {
                        match g {
                            0 => c.common_type()?,
                            _ => elem = c.type_id()?,
                        }
                        Ok(())
                    })?;
                    WireType::Slice(elem)
                }
                2 => {
                    let mut fields = Vec::new();
                    c.struct_fields(2, |c, g| {
                        match g {
                            0 => c.common_type()?,
                            _ => fields = c.field_list()?,
                        }
                        Ok(())
                    })?;
                    WireType::Struct(fields)
                }
                3 => {
                    let (mut key, mut elem) = (0, 0);
                    c.struct_fields(3, |c, g| {
                        match g {
                            0 => c.common_type()?,
                            1 => key = c.type_id()?,
                            _ => elem = c.type_id()?,
                        }
                        Ok(())
                    })?;
                    WireType::Map { key, elem }
                }
                _ => {
                    c.struct_fields(1, |c, _| c.common_type())?;
                    WireType::External(match f {
                        4 => External::Gob,
                        5 => External::Binary,
                        _ => External::Text,
                    })
                }
            };
            if found.replace(t).is_some() {
                return Err(GobError::BadTypeDefinition("more than one kind"));
            }
            Ok(())
        })?;
        found.ok_or(GobError::BadTypeDefinition("no kind"))
    }

    /// A struct type's `[]fieldType`.
    fn field_list(&mut self) -> Result<WireFields, GobError> {
        let n = self.count("struct field list")?;
        if n > MAX_STRUCT_FIELDS as u64 {
            return Err(GobError::BadTypeDefinition("too many struct fields"));
        }
        let mut fields = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let (mut name, mut id): (&[u8], TypeId) = (&[], 0);
            self.struct_fields(2, |c, g| {
                match g {
                    0 => name = c.bytes("field name")?,
                    _ => id = c.type_id()?,
                }
                Ok(())
            })?;
            if name.is_empty() {
                return Err(GobError::BadTypeDefinition("field without a name"));
            }
            fields.push((Box::from(name), id));
        }
        Ok(fields)
    }
}

/// One attempt at decoding one top-level value.
struct Pass<'a, 'd, 'g> {
    cur: Cursor<'a>,
    types: &'d mut HashMap<TypeId, WireType>,
    /// Types defined during this attempt (forgotten again if the input runs out).
    added: Vec<TypeId>,
    type_bytes: &'d mut usize,
    grammar: &'g Grammar,
}

impl<'a> Pass<'a, '_, '_> {
    fn top_level(&mut self) -> Result<StructValue, Stop> {
        let id = self.type_sequence(false)?;
        let value = self.decode_struct(id, self.grammar.top, 0)?;
        if !self.cur.msg.is_empty() {
            return Err(GobError::TrailingData("value").into());
        }
        Ok(value)
    }

    /// Go's `decodeTypeSequence`: type definitions until a value's type id.
    fn type_sequence(&mut self, in_interface: bool) -> Result<TypeId, Stop> {
        loop {
            if self.cur.msg.is_empty() {
                self.cur.next_message()?;
            }
            let id = self.cur.type_id()?;
            if id >= 0 {
                return Ok(id);
            }
            self.receive_type(-id)?;
            if !self.cur.msg.is_empty() {
                if !in_interface {
                    return Err(GobError::TrailingData("type definition").into());
                }
                // As Go: inside an interface, a delimited value's count may follow; skip it.
                self.cur.uint()?;
            }
        }
    }

    fn receive_type(&mut self, id: TypeId) -> Result<(), GobError> {
        if id < ids::FIRST_USER || self.types.contains_key(&id) {
            return Err(GobError::DuplicateType(id));
        }
        if self.types.len() >= MAX_TYPES {
            return Err(GobError::TooManyTypes(MAX_TYPES));
        }
        let wire = self.cur.wire_type()?;
        *self.type_bytes += wire.cost();
        if *self.type_bytes > MAX_TYPE_BYTES {
            return Err(GobError::TypesTooLarge(MAX_TYPE_BYTES));
        }
        self.types.insert(id, wire);
        self.added.push(id);
        Ok(())
    }

    fn wire(&self, id: TypeId) -> Result<&WireType, GobError> {
        self.types.get(&id).ok_or(GobError::UndefinedType(id))
    }

    fn compatible(&self, kind: FieldKind, wire: TypeId) -> bool {
        match kind {
            FieldKind::Bool => wire == ids::BOOL,
            FieldKind::Uint => wire == ids::UINT,
            FieldKind::Int => wire == ids::INT,
            FieldKind::String => wire == ids::STRING,
            FieldKind::Bytes => wire == ids::BYTES,
            FieldKind::Interface => wire == ids::INTERFACE,
            FieldKind::StringList => {
                matches!(self.types.get(&wire), Some(WireType::Slice(e)) if *e == ids::STRING)
            }
            FieldKind::Time => {
                matches!(
                    self.types.get(&wire),
                    Some(WireType::External(External::Gob))
                )
            }
        }
    }

    fn decode_struct(
        &mut self,
        id: TypeId,
        schema: &'static Schema,
        depth: usize,
    ) -> Result<StructValue, Stop> {
        if depth > MAX_DEPTH {
            return Err(GobError::TooDeep(MAX_DEPTH).into());
        }
        if id < ids::FIRST_USER {
            return Err(GobError::NotAStruct(schema.label).into());
        }
        let WireType::Struct(wire_fields) = self.wire(id)? else {
            return Err(GobError::NotAStruct(schema.label).into());
        };
        // For each wire field: its wire type and our field of the same name, if any.
        let mut plan = Vec::with_capacity(wire_fields.len());
        for (name, wire) in wire_fields {
            let local = schema
                .fields
                .iter()
                .position(|f| f.name.as_bytes() == &name[..]);
            plan.push((*wire, local));
        }
        for (wire, local) in &plan {
            if let Some(l) = *local {
                let field = schema.fields[l];
                if !self.compatible(field.kind, *wire) {
                    return Err(GobError::FieldTypeMismatch {
                        field: field.name,
                        wire: *wire,
                    }
                    .into());
                }
            }
        }
        if !schema.fields.is_empty()
            && !plan.is_empty()
            && plan.iter().all(|(_, local)| local.is_none())
        {
            return Err(GobError::NoFieldsMatched(schema.label).into());
        }
        let mut values: Vec<Option<FieldValue>> = vec![None; schema.fields.len()];
        let mut field: i64 = -1;
        loop {
            let delta = self.cur.uint()?;
            if delta == 0 {
                break;
            }
            if delta > plan.len() as u64 {
                return Err(GobError::FieldOutOfRange.into());
            }
            field += delta as i64;
            let Some(&(wire, local)) = plan.get(field as usize) else {
                return Err(GobError::FieldOutOfRange.into());
            };
            match local {
                Some(l) => {
                    let f = schema.fields[l];
                    values[l] = Some(self.field_value(f, depth)?);
                }
                None => self.skip(wire, depth + 1)?,
            }
        }
        Ok(StructValue {
            schema_label: schema.label,
            fields: values,
        })
    }

    fn field_value(&mut self, field: Field, depth: usize) -> Result<FieldValue, Stop> {
        Ok(match field.kind {
            FieldKind::Bool => FieldValue::Bool(self.cur.uint()? != 0),
            FieldKind::Uint => FieldValue::Uint(self.cur.uint()?),
            FieldKind::Int => FieldValue::Int(self.cur.int()?),
            FieldKind::String => FieldValue::String(self.string(field.name)?),
            FieldKind::Bytes => FieldValue::Bytes(self.cur.bytes("byte slice")?.to_vec()),
            FieldKind::StringList => {
                let n = self.cur.count("string list")?;
                if n > MAX_LIST_ELEMENTS as u64 {
                    return Err(GobError::TooManyElements {
                        field: field.name,
                        limit: MAX_LIST_ELEMENTS,
                    }
                    .into());
                }
                let mut list = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    list.push(self.string(field.name)?);
                }
                FieldValue::StringList(list)
            }
            FieldKind::Time => FieldValue::Time(GoTime::unmarshal_binary(self.cur.bytes("time")?)?),
            FieldKind::Interface => FieldValue::Interface(self.interface(depth + 1)?),
        })
    }

    fn string(&mut self, field: &'static str) -> Result<String, GobError> {
        let bytes = self.cur.bytes("string")?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| GobError::NotUtf8(field))
    }

    /// The name an interface value carries; `None` for a nil interface.
    fn interface_name(&mut self) -> Result<Option<&'a [u8]>, GobError> {
        let n = self.cur.uint()?;
        if n == 0 {
            return Ok(None);
        }
        if n > MAX_INTERFACE_NAME as u64 {
            return Err(GobError::UnknownInterfaceType {
                len: n.min(usize::MAX as u64) as usize,
            });
        }
        Ok(Some(self.cur.take(n, "interface type name")?))
    }

    fn interface(&mut self, depth: usize) -> Result<Option<Box<StructValue>>, Stop> {
        let Some(name) = self.interface_name()? else {
            return Ok(None);
        };
        let grammar = self.grammar;
        let Some(schema) = grammar
            .concrete
            .iter()
            .find(|s| s.registered_name.as_bytes() == name)
        else {
            if let Some((_, label)) = grammar.refused.iter().find(|(n, _)| n.as_bytes() == name) {
                return Err(GobError::UnexpectedInterfaceType(label).into());
            }
            return Err(GobError::UnknownInterfaceType { len: name.len() }.into());
        };
        let id = self.type_sequence(true)?;
        // The value's byte count; Go reads past it too.
        self.cur.uint()?;
        Ok(Some(Box::new(self.decode_struct(id, schema, depth)?)))
    }

    /// Skips a value of wire type `id`, as Go's decoder ignores a field it has no home for.
    fn skip(&mut self, id: TypeId, depth: usize) -> Result<(), Stop> {
        if depth > MAX_DEPTH {
            return Err(GobError::TooDeep(MAX_DEPTH).into());
        }
        match id {
            ids::BOOL | ids::INT | ids::UINT | ids::FLOAT => {
                self.cur.uint()?;
            }
            ids::COMPLEX => {
                self.cur.uint()?;
                self.cur.uint()?;
            }
            ids::BYTES | ids::STRING => {
                self.cur.bytes("string")?;
            }
            ids::INTERFACE => {
                if self.interface_name()?.is_some() {
                    self.type_sequence(true)?;
                    self.cur.bytes("interface value")?;
                }
            }
            _ if id < ids::FIRST_USER => return Err(GobError::UnsupportedType(id).into()),
            _ => match self.wire(id)?.clone() {
                WireType::Struct(fields) => {
                    let mut field: i64 = -1;
                    loop {
                        let delta = self.cur.uint()?;
                        if delta == 0 {
                            break;
                        }
                        if delta > fields.len() as u64 {
                            return Err(GobError::FieldOutOfRange.into());
                        }
                        field += delta as i64;
                        let Some((_, wire)) = fields.get(field as usize) else {
                            return Err(GobError::FieldOutOfRange.into());
                        };
                        self.skip(*wire, depth + 1)?;
                    }
                }
                WireType::Slice(elem) => {
                    let n = self.cur.count("slice")?;
                    for _ in 0..n {
                        self.skip(elem, depth + 1)?;
                    }
                }
                WireType::Array { elem, len } => {
                    let n = self.cur.count("array")?;
                    if i64::try_from(n).ok() != Some(len) {
                        return Err(GobError::Truncated("array of the wrong length").into());
                    }
                    for _ in 0..n {
                        self.skip(elem, depth + 1)?;
                    }
                }
                WireType::Map { key, elem } => {
                    let n = self.cur.count("map")?;
                    for _ in 0..n {
                        self.skip(key, depth + 1)?;
                        self.skip(elem, depth + 1)?;
                    }
                }
                WireType::External(_) => {
                    self.cur.bytes("encoded value")?;
                }
            },
        }
        Ok(())
    }
}
