//! Turning one manifest file's bytes into canonical objects.
//!
//! Pure functions (no I/O) so that the scanner can call them from a blocking thread and tests can
//! call them directly.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use bytes::Bytes;
use serde_json::Value;
use tracing::{error, warn};

use crate::validate::{ValueLimits, validate_value};
use crate::{ResourceKey, Revision, SourceCounters};

/// One object defined by a file: its key, its canonical JSON and the hash of that JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Object {
    pub(super) key: ResourceKey,
    pub(super) value: Bytes,
    pub(super) revision: Revision,
}

/// The syntax of a manifest file, chosen by its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Format {
    Yaml,
    Json,
}

impl Format {
    /// `*.yaml` / `*.yml` → YAML, `*.json` → JSON (ASCII case-insensitive), anything else → `None`.
    pub(super) fn of(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?;
        if ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml") {
            Some(Format::Yaml)
        } else if ext.eq_ignore_ascii_case("json") {
            Some(Format::Json)
        } else {
            None
        }
    }
}

/// Where an object sits in its file, for log messages: 1-based document number (counting the
/// non-empty documents the parser returned) and, for an expanded `List`, the 1-based item number.
#[derive(Clone, Copy, Debug)]
struct Location {
    document: usize,
    item: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.item {
            None => write!(f, "document {}", self.document),
            Some(item) => write!(f, "document {}, item {item}", self.document),
        }
    }
}

/// The revision of a canonical value: its xxh3-64 hash as 16 lowercase hex digits, so equal
/// content always has the same revision, across restarts and machines.
pub(super) fn revision_of(value: &[u8]) -> Revision {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(value)).into()
}

/// Most YAML documents in one file (serde-saphyr's default is 1,024, which real manifests exceed).
/// The parser's other budgets stay at its defaults (nodes, events, aliases, anchors, depth, scalar
/// bytes per file): they are what stops a YAML bomb.
pub(super) const MAX_YAML_DOCUMENTS: usize = 100_000;

/// Parses a whole file. `Err` carries the parser's reason (with line/column when the parser knows
/// it); the caller then ignores the whole file. Objects that are individually invalid (no kind or
/// name, or failing [`validate_value`]: too large, too deep) are logged here, counted and left
/// out; the rest of the file is returned in file order. A key defined twice in the same file keeps
/// its first definition.
pub(super) fn parse_file(
    path: &Path,
    bytes: &[u8],
    cluster: &str,
    limits: &ValueLimits,
    counters: &SourceCounters,
) -> Result<Vec<Object>, String> {
    let documents = match Format::of(path) {
        Some(Format::Yaml) => parse_yaml(bytes)?,
        Some(Format::Json) => parse_json(bytes)?,
        None => return Err("not a .yaml, .yml or .json file".to_owned()),
    };
    let mut candidates = Vec::new();
    for (index, document) in documents.into_iter().enumerate() {
        expand(document, index + 1, &mut candidates);
    }
    let mut objects = Vec::with_capacity(candidates.len());
    let mut seen = HashSet::with_capacity(candidates.len());
    for (location, value) in candidates {
        let object = match canonical_object(value, cluster) {
            Ok(object) => object,
            Err(reason) => {
                counters.count_invalid_value();
                warn!(file = %path.display(), document = %location, reason, "skipping invalid object");
                continue;
            }
        };
        if let Err(reason) = validate_value(&object.key, &object.value, limits) {
            counters.count_invalid_value();
            error!(
                file = %path.display(),
                document = %location,
                key = %object.key,
                reason = %reason,
                "skipping invalid object"
            );
            continue;
        }
        if !seen.insert(object.key.clone()) {
            warn!(
                file = %path.display(),
                document = %location,
                key = %object.key,
                "object defined twice in the same file; keeping the first definition"
            );
            continue;
        }
        objects.push(object);
    }
    Ok(objects)
}

/// Every non-empty YAML document, with YAML 1.1 surprises turned off: `yes`/`on` stay strings and
/// `010` stays `"010"` (serde-saphyr would otherwise turn them into `true` and `10`).
fn parse_yaml(bytes: &[u8]) -> Result<Vec<Value>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not valid UTF-8: {e}"))?;
    let options = serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        budget: serde_saphyr::budget! {
            max_documents: MAX_YAML_DOCUMENTS,
        },
    };
    let documents: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options)
        // The plain message (with its line and column) only: a snippet would copy file content,
        // possibly a Secret's, into the logs.
        .map_err(|e| e.without_snippet().to_string())?;
    Ok(documents.into_iter().filter(|d| !d.is_null()).collect())
}

/// One or more concatenated JSON values; `null` values are dropped.
fn parse_json(bytes: &[u8]) -> Result<Vec<Value>, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut documents = Vec::new();
    for document in serde_json::Deserializer::from_slice(bytes).into_iter::<Value>() {
        let document = document.map_err(|e| e.to_string())?;
        if !document.is_null() {
            documents.push(document);
        }
    }
    Ok(documents)
}

/// A `kind: …List` document with an `items` array contributes its items (kubectl style), any other
/// document itself. `null` items are dropped.
fn expand(document: Value, index: usize, out: &mut Vec<(Location, Value)>) {
    let is_list = document
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|kind| kind.ends_with("List"))
        && document.get("items").is_some_and(Value::is_array);
    if !is_list {
        out.push((
            Location {
                document: index,
                item: None,
            },
            document,
        ));
        return;
    }
    let Value::Object(mut map) = document else {
        return;
    };
    let Some(Value::Array(items)) = map.remove("items") else {
        return;
    };
    for (item, value) in items.into_iter().enumerate() {
        if !value.is_null() {
            let location = Location {
                document: index,
                item: Some(item + 1),
            };
            out.push((location, value));
        }
    }
}

/// Checks that `value` is a resource and turns it into its key and canonical JSON.
///
/// Canonical: `metadata.resourceVersion` and `metadata.managedFields` removed (they change without
/// the object changing), objects' keys sorted, compact `serde_json` output. Equal content therefore
/// gives equal bytes whatever the key order, the formatting or YAML vs JSON.
fn canonical_object(mut value: Value, cluster: &str) -> Result<Object, String> {
    default_namespace(&mut value);
    let key = key_of(&value, cluster)?;
    if let Some(Value::Object(metadata)) = value.get_mut("metadata") {
        metadata.remove("resourceVersion");
        metadata.remove("managedFields");
    }
    // A no-op unless some crate enables serde_json's `preserve_order`, which would otherwise make
    // the bytes depend on the key order in the file.
    value.sort_all_objects();
    let bytes = serde_json::to_vec(&value).map_err(|e| format!("cannot encode as JSON: {e}"))?;
    let revision = revision_of(&bytes);
    Ok(Object {
        key,
        value: Bytes::from(bytes),
        revision,
    })
}

/// A namespaced kind without `metadata.namespace` goes to `default`, as `kubectl apply` puts it
/// (so the same manifest lands under the same key in a file datastore and in Kubernetes).
fn default_namespace(value: &mut Value) {
    let namespaced = value
        .get("kind")
        .and_then(Value::as_str)
        .and_then(meshsync_model::kinds::lookup)
        .is_some_and(|k| k.namespaced);
    if !namespaced {
        return;
    }
    if let Some(Value::Object(metadata)) = value.get_mut("metadata")
        && matches!(metadata.get("namespace"), None | Some(Value::Null))
    {
        metadata.insert("namespace".into(), Value::String("default".into()));
    }
}

fn key_of(value: &Value, cluster: &str) -> Result<ResourceKey, String> {
    let Value::Object(map) = value else {
        return Err(format!("not a mapping but {}", type_name(value)));
    };
    let kind = required_string(map.get("kind"), "kind")?;
    let metadata = match map.get("metadata") {
        Some(Value::Object(metadata)) => metadata,
        None | Some(Value::Null) => return Err("missing metadata".to_owned()),
        Some(other) => {
            return Err(format!(
                "metadata is not a mapping but {}",
                type_name(other)
            ));
        }
    };
    let name = required_string(metadata.get("name"), "metadata.name")?;
    let namespace = match metadata.get("namespace") {
        None | Some(Value::Null) => "",
        Some(Value::String(namespace)) => namespace.as_str(),
        Some(other) => {
            return Err(format!(
                "metadata.namespace is not a string but {}",
                type_name(other)
            ));
        }
    };
    Ok(ResourceKey::new(cluster, kind, namespace, name))
}

fn required_string<'a>(value: Option<&'a Value>, field: &str) -> Result<&'a str, String> {
    match value {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(format!("{field} is empty")),
        None | Some(Value::Null) => Err(format!("missing {field}")),
        Some(other) => Err(format!("{field} is not a string but {}", type_name(other))),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}
