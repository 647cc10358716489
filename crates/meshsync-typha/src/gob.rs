//! Go's `encoding/gob`, the subset Typha's messages need, written for encode-once fan-out.
//!
//! # The stream
//!
//! A gob stream is a sequence of *messages*, each an unsigned length followed by that many bytes.
//! A message starts with a signed type id: negative, the message defines the type `-id` (a
//! `wireType` value that describes a struct, slice, array, map or an externally encoded type);
//! positive, it carries a value of type `id`. Built-in types have fixed ids (`bool` 1, `int` 2,
//! `uint` 3, `float` 4, `[]byte` 5, `string` 6, `complex` 7, `interface` 8, the wire-type
//! descriptors 16–23); user types get ids ≥ 64, each defined at most once per stream. Integers
//! are Go's variable-length forms ([`write::put_uint`], [`write::put_int`]); a struct value is a
//! list of (field-number delta, value) pairs ended by a zero delta, with zero-valued fields left
//! out; an interface value is the concrete type's *registered name*, its type id, and the value
//! as a length-delimited blob.
//!
//! # Why the encoder is not Go's
//!
//! Go's encoder gives ids in the order it first meets types and defines each type inside the
//! first message that needs it, so the bytes of a value depend on what that connection sent
//! before. Typha lives with that by encoding per connection (and precomputing only its binary
//! snapshot). meshsync encodes each message **once** and writes the same bytes to thousands of
//! clients, so a value's bytes must not depend on the connection. The server therefore starts
//! every gob stream — at connection start and again after each decoder restart — with one fixed
//! *preamble* that defines every type it will ever send, each as a standalone type-definition
//! message. Go's decoder accepts that: before a value it consumes any number of standalone
//! definition messages (`decodeTypeSequence`), and inside an interface value a type id that is
//! already defined needs nothing in-line. After the preamble every value message has fixed type
//! ids and identical bytes on every stream. The Typha schema (which types, which ids) is in
//! [`crate::messages`]; this module knows gob only.
//!
//! # Why the decoder is incremental and bounded
//!
//! Clients use Go's own encoder, so their streams carry their own type ids and in-line
//! definitions, and one logical value may span several gob messages (an interface value's
//! concrete type is defined in the middle of it). [`read::StreamDecoder`] decodes from the
//! caller's receive buffer as bytes arrive, without copying, never trusting a length or count
//! before checking it against the bytes actually present and the per-value byte limit, and
//! returns an error for anything a Go client could not have sent — never a panic.

pub mod read;
pub mod time;
pub mod write;

pub use read::{
    Decoded, Field, FieldKind, FieldValue, Grammar, Schema, StreamDecoder, StructValue,
};
pub use time::{GoTime, GoZone};

/// A gob type id. Go's is an `int32`; ids outside that range are refused when read.
pub type TypeId = i64;

/// Built-in type ids, fixed by Go's `encoding/gob` (`type.go`).
pub mod ids {
    use super::TypeId;

    /// `bool`.
    pub const BOOL: TypeId = 1;
    /// Every signed integer kind (`int`, `int64`, `time.Duration`, …).
    pub const INT: TypeId = 2;
    /// Every unsigned integer kind (`uint8` … `uint64`).
    pub const UINT: TypeId = 3;
    /// `float32`, `float64`.
    pub const FLOAT: TypeId = 4;
    /// `[]byte`.
    pub const BYTES: TypeId = 5;
    /// `string` (and every named string type).
    pub const STRING: TypeId = 6;
    /// `complex64`, `complex128`.
    pub const COMPLEX: TypeId = 7;
    /// `interface{}`.
    pub const INTERFACE: TypeId = 8;
    /// The first id of gob's own wire-type descriptors (`wireType`, `arrayType`, …).
    pub const FIRST_DESCRIPTOR: TypeId = 16;
    /// The last id of gob's own wire-type descriptors.
    pub const LAST_DESCRIPTOR: TypeId = 23;
    /// User-defined types have ids from this one up (Go's `firstUserId`); Go's encoder starts at 65.
    pub const FIRST_USER: TypeId = 64;
}

/// Why a gob stream was refused. Never carries bytes the peer sent (they may reach a log line):
/// only lengths, ids and the names of our own types.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum GobError {
    /// One value (all the gob messages it spans, length prefixes included) is over the limit.
    #[error("gob value of at least {len} bytes is over the limit of {limit} bytes")]
    TooLarge { len: u64, limit: usize },
    /// A gob message of length zero (Go's decoder refuses it too).
    #[error("empty gob message")]
    EmptyMessage,
    /// A value or a length ran past the end of its message.
    #[error("gob message truncated: {0}")]
    Truncated(&'static str),
    /// An unsigned integer with a byte count over 8.
    #[error("invalid gob integer encoding")]
    BadInteger,
    /// An integer does not fit what it encodes (a type id, a length, a Go `int32`).
    #[error("gob integer out of range for {0}")]
    OutOfRange(&'static str),
    /// A type id defined twice in one stream, or a definition of a built-in id.
    #[error("gob type {0} defined twice or not definable")]
    DuplicateType(TypeId),
    /// More type definitions than a client of this protocol could need.
    #[error("more than {0} gob type definitions in one stream")]
    TooManyTypes(usize),
    /// Type definitions that together hold more memory than a client of this protocol needs.
    #[error("gob type definitions over {0} bytes in one stream")]
    TypesTooLarge(usize),
    /// A value refers to a type id that was never defined.
    #[error("gob type {0} used but never defined")]
    UndefinedType(TypeId),
    /// A type definition that is not a well-formed `wireType`.
    #[error("malformed gob type definition: {0}")]
    BadTypeDefinition(&'static str),
    /// A field number beyond the fields its struct type defines, or a zero-length field list.
    #[error("gob struct field number out of range")]
    FieldOutOfRange,
    /// A received field's wire type cannot be decoded into our field of that name.
    #[error("gob type mismatch for field {field} (wire type {wire})")]
    FieldTypeMismatch { field: &'static str, wire: TypeId },
    /// The received struct has fields, but none of ours (Go: "no fields matched").
    #[error("gob type mismatch: no fields matched for {0}")]
    NoFieldsMatched(&'static str),
    /// A value's wire type is not a struct where one was expected.
    #[error("gob type mismatch: {0} is not sent as a struct")]
    NotAStruct(&'static str),
    /// An interface value names a concrete type we do not accept here.
    #[error("gob interface value of an unexpected type (a name of {len} bytes)")]
    UnknownInterfaceType { len: usize },
    /// An interface value names one of our types that is not accepted here.
    #[error("gob interface value of type {0}, not accepted here")]
    UnexpectedInterfaceType(&'static str),
    /// A wire type this decoder does not decode (gob's descriptor types as values, etc.).
    #[error("unsupported gob wire type {0}")]
    UnsupportedType(TypeId),
    /// Values nested deeper than the limit.
    #[error("gob value nested deeper than {0}")]
    TooDeep(usize),
    /// A string that is not UTF-8 where we need text.
    #[error("gob string for field {0} is not UTF-8")]
    NotUtf8(&'static str),
    /// More elements than the limit for one list.
    #[error("gob list for field {field} has more than {limit} elements")]
    TooManyElements { field: &'static str, limit: usize },
    /// Bytes left over in a message after a complete value or type definition.
    #[error("extra data after a gob {0}")]
    TrailingData(&'static str),
    /// A `time.Time` that is not a valid `MarshalBinary` form.
    #[error("invalid time.Time encoding: {0}")]
    BadTime(&'static str),
    /// The decoder failed before and refuses to continue.
    #[error("gob stream already failed")]
    Failed,
}
