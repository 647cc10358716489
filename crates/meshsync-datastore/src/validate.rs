//! The one validation every driver applies to a value before it reaches agents.
//!
//! A value is served only if it is:
//!
//! - at most [`ValueLimits::max_bytes`] long (default 1 MiB),
//! - valid UTF-8,
//! - nested at most [`ValueLimits::max_depth`] levels deep (default [`DEFAULT_MAX_DEPTH`] = 64;
//!   the value itself is level 1; serde_json's own default limit refuses 128, so every consumer using
//!   serde_json, Go's `encoding/json` or a YAML library can parse what we forward),
//! - JSON that parses completely (no trailing bytes, no lone UTF-16 surrogates in escapes, no
//!   numbers out of range) and is an **object**,
//! - about its key: `kind` is a string equal to the key's kind, `metadata` an object whose `name`
//!   is the key's name, and `metadata.namespace`, where present (and not `null`), the key's
//!   namespace (so a global kind's value has none, or `""`). `kind`, `metadata`,
//!   `metadata.name` and `metadata.namespace` may each appear only once.
//!
//! The one exception is Calico's raw IPAM block (etcd key `…/ipam/v2/assignment/ipv4/block/…`):
//! Calico stores it as its `AllocationBlock` JSON, without `kind` or `metadata`. An `IPAMBlock`
//! value without a `kind` therefore only has to be an object, and its `cidr`, where present, must
//! name the block (`10.65.0.0/26` ↔ `10-65-0-0-26`). With a `kind` (a v3 `IPAMBlock` resource)
//! the usual rules apply.
//!
//! Calico's v1 block affinities in etcd (`{"state", "deleted"}` under
//! `…/ipam/v2/host/<node>/ipv4/block/…`) are not an exception: the etcd driver runs [`precheck`] on
//! them, builds the `BlockAffinity` resource the Kubernetes datastore serves, and that resource
//! goes through the usual rules.
//!
//! The depth is checked by one pass over the bytes before any parsing, so no input makes
//! anything recurse deeper than the limit; the parse then walks the value without building it
//! (no allocation beyond serde_json's scratch buffer for escaped strings).
//!
//! Reasons never quote the value: a value may hold a Secret.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use crate::ResourceKey;

/// Default for [`ValueLimits::max_depth`].
pub const DEFAULT_MAX_DEPTH: usize = 64;
/// The largest accepted [`ValueLimits::max_depth`]: the deepest value serde_json parses with its
/// default recursion limit (it refuses 128 levels).
pub const MAX_DEPTH_CAP: usize = 127;
/// Default for [`ValueLimits::max_bytes`]: 1 MiB.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1 << 20;

/// The limits a value must respect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueLimits {
    /// Largest value in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of objects and arrays (the value itself is level 1); capped at
    /// [`MAX_DEPTH_CAP`].
    pub max_depth: usize,
}

impl ValueLimits {
    /// `max_bytes` with the default depth limit.
    pub fn new(max_bytes: usize) -> Self {
        ValueLimits {
            max_bytes,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

impl Default for ValueLimits {
    fn default() -> Self {
        ValueLimits::new(DEFAULT_MAX_VALUE_BYTES)
    }
}

/// Why a value is not served. The text names fields, never their content.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    #[error("value of {size} bytes exceeds the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("value is not valid UTF-8 (first bad byte at offset {at})")]
    NotUtf8 { at: usize },
    #[error("value is nested deeper than {max} levels")]
    TooDeep { max: usize },
    #[error("value is empty")]
    Empty,
    #[error("value is not valid JSON: {0}")]
    NotJson(String),
    #[error("value is {0}, not a JSON object")]
    NotAnObject(&'static str),
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("{field} is {found}, not {expected}")]
    WrongType {
        field: &'static str,
        found: &'static str,
        expected: &'static str,
    },
    #[error("{0} appears more than once")]
    Duplicate(&'static str),
    #[error("{0} does not match the key")]
    Mismatch(&'static str),
}

/// What the validation learnt about a valid value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ValueInfo {
    /// `metadata.resourceVersion` is present (Calico clears it before writing; a writer that left
    /// it makes equal content compare unequal, so drivers drop it).
    pub has_resource_version: bool,
}

/// Checks `bytes` as the value of `key` (see the module documentation for the rules).
pub fn validate_value(
    key: &ResourceKey,
    bytes: &[u8],
    limits: &ValueLimits,
) -> Result<ValueInfo, InvalidValue> {
    let text = precheck(bytes, limits)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let seed = TopSeed { key };
    let facts = seed
        .deserialize(&mut de)
        .and_then(|facts| de.end().map(|()| facts))
        .map_err(|e| InvalidValue::NotJson(e.to_string()))?;
    facts.judge(key)
}

/// The checks that come before parsing and do not depend on the key: size, UTF-8, depth, and
/// that the text starts as an object. A driver that parses a stored form into the served one
/// (Calico's v1 block affinities in etcd) runs these on the stored bytes first, so the parse
/// never sees more than [`validate_value`] would, then validates what it made.
pub fn precheck<'a>(bytes: &'a [u8], limits: &ValueLimits) -> Result<&'a str, InvalidValue> {
    if bytes.len() > limits.max_bytes {
        return Err(InvalidValue::TooLarge {
            size: bytes.len(),
            max: limits.max_bytes,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| InvalidValue::NotUtf8 {
        at: e.valid_up_to(),
    })?;
    let max_depth = limits.max_depth.min(MAX_DEPTH_CAP);
    check_depth(bytes, max_depth)?;
    match text.trim_start().as_bytes().first() {
        None => return Err(InvalidValue::Empty),
        Some(b'{') => {}
        Some(b'[') => return Err(InvalidValue::NotAnObject("an array")),
        Some(b'"') => return Err(InvalidValue::NotAnObject("a string")),
        Some(b'n') => return Err(InvalidValue::NotAnObject("null")),
        Some(b't' | b'f') => return Err(InvalidValue::NotAnObject("a boolean")),
        Some(b'-' | b'0'..=b'9') => return Err(InvalidValue::NotAnObject("a number")),
        Some(_) => {
            // Let the parser say where and why.
        }
    }
    Ok(text)
}

/// One pass over the bytes: the deepest nesting of `{`/`[` outside strings must not exceed `max`.
fn check_depth(bytes: &[u8], max: usize) -> Result<(), InvalidValue> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(InvalidValue::TooDeep { max });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// How a field compared with what the key says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Field {
    #[default]
    Absent,
    /// `null`: treated as absent.
    Null,
    Matches,
    Differs,
    /// Not a string: the JSON type found.
    WrongType(&'static str),
    Duplicate,
}

impl Field {
    fn set(&mut self, new: Field) {
        *self = if matches!(self, Field::Absent) {
            new
        } else {
            Field::Duplicate
        };
    }

    fn present(self) -> bool {
        !matches!(self, Field::Absent | Field::Null)
    }

    /// A required field: present, a string, equal.
    fn require(self, name: &'static str) -> Result<(), InvalidValue> {
        match self {
            Field::Absent | Field::Null => Err(InvalidValue::Missing(name)),
            Field::Matches => Ok(()),
            other => other.optional(name),
        }
    }

    /// An optional field: if present, a string and equal.
    fn optional(self, name: &'static str) -> Result<(), InvalidValue> {
        match self {
            Field::Absent | Field::Null | Field::Matches => Ok(()),
            Field::Differs => Err(InvalidValue::Mismatch(name)),
            Field::WrongType(found) => Err(InvalidValue::WrongType {
                field: name,
                found,
                expected: "a string",
            }),
            Field::Duplicate => Err(InvalidValue::Duplicate(name)),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Meta {
    #[default]
    Absent,
    Null,
    WrongType(&'static str),
    Object(MetaFacts),
    Duplicate,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct MetaFacts {
    name: Field,
    namespace: Field,
    resource_version: bool,
}

#[derive(Debug, Default)]
struct Facts {
    kind: Field,
    metadata: Meta,
    /// Only looked at for raw IPAM blocks.
    cidr: Field,
}

impl Facts {
    fn judge(self, key: &ResourceKey) -> Result<ValueInfo, InvalidValue> {
        if key.kind() == "IPAMBlock" && matches!(self.kind, Field::Absent) {
            // Calico's AllocationBlock JSON: no kind, no metadata.
            self.cidr.optional("cidr")?;
            let has_resource_version =
                matches!(self.metadata, Meta::Object(m) if m.resource_version);
            return Ok(ValueInfo {
                has_resource_version,
            });
        }
        self.kind.require("kind")?;
        let meta = match self.metadata {
            Meta::Absent | Meta::Null => return Err(InvalidValue::Missing("metadata")),
            Meta::WrongType(found) => {
                return Err(InvalidValue::WrongType {
                    field: "metadata",
                    found,
                    expected: "an object",
                });
            }
            Meta::Duplicate => return Err(InvalidValue::Duplicate("metadata")),
            Meta::Object(meta) => meta,
        };
        meta.name.require("metadata.name")?;
        if meta.namespace.present() {
            meta.namespace.optional("metadata.namespace")?;
        }
        Ok(ValueInfo {
            has_resource_version: meta.resource_version,
        })
    }
}

/// The JSON type a visitor saw, for messages.
fn type_of(unexpected: &de::Unexpected<'_>) -> &'static str {
    use de::Unexpected::*;
    match unexpected {
        Bool(_) => "a boolean",
        Unsigned(_) | Signed(_) | Float(_) => "a number",
        Str(_) | Char(_) => "a string",
        Unit | Option => "null",
        Seq => "an array",
        Map => "an object",
        _ => "something else",
    }
}

/// The top-level object.
struct TopSeed<'k> {
    key: &'k ResourceKey,
}

impl<'de> DeserializeSeed<'de> for TopSeed<'_> {
    type Value = Facts;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Facts, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_> {
    type Value = Facts;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Facts, A::Error> {
        let mut facts = Facts::default();
        while let Some(name) = map.next_key_seed(KeyName(&["kind", "metadata", "cidr"]))? {
            match name {
                Some(0) => {
                    let field = map.next_value_seed(Compare::equal(self.key.kind()))?;
                    facts.kind.set(field);
                }
                Some(1) => {
                    let meta = map.next_value_seed(MetaSeed { key: self.key })?;
                    facts.metadata = if matches!(facts.metadata, Meta::Absent) {
                        meta
                    } else {
                        Meta::Duplicate
                    };
                }
                Some(2) => {
                    let field = map.next_value_seed(Compare::block(self.key.name()))?;
                    facts.cidr.set(field);
                }
                _ => map.next_value_seed(Walk)?,
            }
        }
        Ok(facts)
    }
}

/// An object key: the index of the first of `names` it equals (after unescaping), if any.
struct KeyName(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeyName {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyName {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|n| *n == v))
    }
}

/// `metadata`: an object whose `name` and `namespace` are compared with the key.
struct MetaSeed<'k> {
    key: &'k ResourceKey,
}

impl<'de> DeserializeSeed<'de> for MetaSeed<'_> {
    type Value = Meta;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Meta, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MetaSeed<'_> {
    type Value = Meta;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("metadata")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Meta, A::Error> {
        let mut facts = MetaFacts::default();
        while let Some(name) =
            map.next_key_seed(KeyName(&["name", "namespace", "resourceVersion"]))?
        {
            match name {
                Some(0) => facts
                    .name
                    .set(map.next_value_seed(Compare::equal(self.key.name()))?),
                Some(1) => facts
                    .namespace
                    .set(map.next_value_seed(Compare::equal(self.key.namespace()))?),
                Some(2) => {
                    facts.resource_version = true;
                    map.next_value_seed(Walk)?;
                }
                _ => map.next_value_seed(Walk)?,
            }
        }
        Ok(Meta::Object(facts))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Meta, A::Error> {
        Walk.visit_seq(seq)?;
        Ok(Meta::WrongType("an array"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Meta, E> {
        Ok(Meta::Null)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Meta, E> {
        Ok(Meta::WrongType("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Meta, E> {
        Ok(Meta::WrongType("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Meta, E> {
        Ok(Meta::WrongType("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Meta, E> {
        Ok(Meta::WrongType("a number"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Meta, E> {
        Ok(Meta::WrongType("a string"))
    }
}

/// A field's value compared with what the key says, without allocating (except a block's CIDR).
struct Compare<'a> {
    expected: &'a str,
    /// The value is a CIDR that names the block `expected` (`10.65.0.0/26` ↔ `10-65-0-0-26`).
    block: bool,
}

impl<'a> Compare<'a> {
    fn equal(expected: &'a str) -> Self {
        Compare {
            expected,
            block: false,
        }
    }

    fn block(expected: &'a str) -> Self {
        Compare {
            expected,
            block: true,
        }
    }

    fn other<E>(found: de::Unexpected<'_>) -> Result<Field, E> {
        Ok(Field::WrongType(type_of(&found)))
    }
}

impl<'de> DeserializeSeed<'de> for Compare<'_> {
    type Value = Field;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Field, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Compare<'_> {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
        let equal = if self.block {
            v.replace(['.', ':', '/'], "-") == self.expected
        } else {
            v == self.expected
        };
        Ok(if equal {
            Field::Matches
        } else {
            Field::Differs
        })
    }

    fn visit_unit<E: de::Error>(self) -> Result<Field, E> {
        Ok(Field::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Field, E> {
        Self::other(de::Unexpected::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Field, E> {
        Self::other(de::Unexpected::Signed(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Field, E> {
        Self::other(de::Unexpected::Unsigned(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Field, E> {
        Self::other(de::Unexpected::Float(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Field, A::Error> {
        Walk.visit_seq(seq)?;
        Self::other(de::Unexpected::Seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field, A::Error> {
        Walk.visit_map(map)?;
        Self::other(de::Unexpected::Map)
    }
}

/// Walks any value completely, checking it as a consumer's parser would (strings decoded, numbers
/// in range), without building it. (Not `IgnoredAny`: serde_json skips that without decoding
/// strings, so it accepts lone surrogates that a consumer's parser refuses.) Recursion is bounded by the depth check done beforehand (and
/// by serde_json's own limit).
#[derive(Clone, Copy)]
struct Walk;

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Walk)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(KeyName(&[]))?.is_some() {
            map.next_value_seed(Walk)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> ResourceKey {
        ResourceKey::new("", "Node", "", name)
    }

    fn check(key: &ResourceKey, value: &str) -> Result<ValueInfo, InvalidValue> {
        validate_value(key, value.as_bytes(), &ValueLimits::default())
    }

    fn nested(depth: usize) -> String {
        let k = depth - 2;
        format!(
            r#"{{"kind":"Node","metadata":{{"name":"a"}},"spec":{{"x":{}1{}}}}}"#,
            "[".repeat(k),
            "]".repeat(k)
        )
    }

    #[test]
    fn valid_values() {
        let a = node("a");
        assert_eq!(
            check(&a, r#"{"kind":"Node","metadata":{"name":"a"}}"#),
            Ok(ValueInfo::default())
        );
        assert_eq!(
            check(
                &a,
                r#" {"metadata":{"resourceVersion":"7","name":"a","namespace":""},"kind":"Node","spec":{"s":"]}\"["}} "#
            ),
            Ok(ValueInfo {
                has_resource_version: true
            })
        );
        // Escaped keys and values are compared decoded.
        assert!(
            check(
                &a,
                r#"{"ki\u006ed":"No\u0064e","metadata":{"name":"\u0061"}}"#
            )
            .is_ok()
        );
        assert!(check(&a, &nested(64)).is_ok());
        let wep = ResourceKey::new("", "WorkloadEndpoint", "ns", "w");
        assert!(
            check(
                &wep,
                r#"{"kind":"WorkloadEndpoint","metadata":{"name":"w"}}"#
            )
            .is_ok()
        );
        assert!(
            check(
                &wep,
                r#"{"kind":"WorkloadEndpoint","metadata":{"name":"w","namespace":"ns"}}"#
            )
            .is_ok()
        );
        let block = ResourceKey::new("", "IPAMBlock", "", "10-65-0-0-26");
        assert!(check(&block, "{}").is_ok());
        assert!(check(&block, r#"{"cidr":"10.65.0.0/26","allocations":[0,null]}"#).is_ok());
        assert!(
            check(
                &block,
                r#"{"kind":"IPAMBlock","metadata":{"name":"10-65-0-0-26"}}"#
            )
            .is_ok()
        );
    }

    #[test]
    fn invalid_values() {
        let a = node("a");
        let limits = ValueLimits::default();
        let cases: Vec<(Vec<u8>, InvalidValue)> = vec![
            (nested(65).into_bytes(), InvalidValue::TooDeep { max: 64 }),
            (
                nested(100_000).into_bytes(),
                InvalidValue::TooDeep { max: 64 },
            ),
            (
                b"{\"kind\":\"Node\",\"metadata\":{\"name\":\"a\"},\"x\":\"\xFF\xFE\"}".to_vec(),
                InvalidValue::NotUtf8 { at: 44 },
            ),
            (b"[1,2,3]".to_vec(), InvalidValue::NotAnObject("an array")),
            (b"null".to_vec(), InvalidValue::NotAnObject("null")),
            (b" 12".to_vec(), InvalidValue::NotAnObject("a number")),
            (b"  ".to_vec(), InvalidValue::Empty),
            (b"{}".to_vec(), InvalidValue::Missing("kind")),
            (
                br#"{"kind":"Node"}"#.to_vec(),
                InvalidValue::Missing("metadata"),
            ),
            (
                br#"{"kind":"Node","metadata":[]}"#.to_vec(),
                InvalidValue::WrongType {
                    field: "metadata",
                    found: "an array",
                    expected: "an object",
                },
            ),
            (
                br#"{"kind":"Node","metadata":{}}"#.to_vec(),
                InvalidValue::Missing("metadata.name"),
            ),
            (
                br#"{"kind":"IPPool","metadata":{"name":"a"}}"#.to_vec(),
                InvalidValue::Mismatch("kind"),
            ),
            (
                br#"{"kind":5,"metadata":{"name":"a"}}"#.to_vec(),
                InvalidValue::WrongType {
                    field: "kind",
                    found: "a number",
                    expected: "a string",
                },
            ),
            (
                br#"{"kind":"Node","metadata":{"name":"b"}}"#.to_vec(),
                InvalidValue::Mismatch("metadata.name"),
            ),
            (
                br#"{"kind":"Node","metadata":{"name":"a","namespace":"x"}}"#.to_vec(),
                InvalidValue::Mismatch("metadata.namespace"),
            ),
            (
                br#"{"kind":"Node","kind":"Node","metadata":{"name":"a"}}"#.to_vec(),
                InvalidValue::Duplicate("kind"),
            ),
            (
                br#"{"kind":"Node","metadata":{"name":"a","name":"a"}}"#.to_vec(),
                InvalidValue::Duplicate("metadata.name"),
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(
                validate_value(&a, &value, &limits),
                Err(expected),
                "{}",
                String::from_utf8_lossy(&value)
            );
        }
        for broken in [
            "garbage{",
            r#"{"kind":"Node","metadata":{"name":"a"}} x"#,
            r#"{"kind":"Node","metadata":{"name":"a","x":"\ud800"}}"#,
            r#"{"kind":"Node","metadata":{"name":"a"},"n":1e400}"#,
            r#"{"kind":"Node","metadata":{"name":"a"}"#,
        ] {
            assert!(
                matches!(check(&a, broken), Err(InvalidValue::NotJson(_))),
                "{broken}: {:?}",
                check(&a, broken)
            );
        }
        let small = ValueLimits {
            max_bytes: 10,
            ..limits
        };
        assert_eq!(
            validate_value(&a, br#"{"kind":"Node"}"#, &small),
            Err(InvalidValue::TooLarge { size: 15, max: 10 })
        );
        let block = ResourceKey::new("", "IPAMBlock", "", "10-65-0-0-26");
        assert_eq!(
            check(&block, r#"{"cidr":"10.66.0.0/26"}"#),
            Err(InvalidValue::Mismatch("cidr"))
        );
        assert_eq!(
            check(&block, "[]"),
            Err(InvalidValue::NotAnObject("an array"))
        );
        // Reasons never quote the value.
        let reason = check(&a, r#"{"kind":"Secret-ish","metadata":{"name":"a"}}"#)
            .unwrap_err()
            .to_string();
        assert!(!reason.contains("Secret-ish"), "{reason}");
    }

    #[test]
    fn the_depth_limit_is_capped_at_serde_jsons() {
        let limits = ValueLimits {
            max_bytes: 1 << 20,
            max_depth: 10_000,
        };
        assert_eq!(
            validate_value(&node("a"), nested(128).as_bytes(), &limits),
            Err(InvalidValue::TooDeep { max: 127 })
        );
        assert!(validate_value(&node("a"), nested(127).as_bytes(), &limits).is_ok());
        let value: serde_json::Value = serde_json::from_str(&nested(127)).unwrap();
        assert!(value.is_object());
        assert!(serde_json::from_str::<serde_json::Value>(&nested(128)).is_err());
    }
}
