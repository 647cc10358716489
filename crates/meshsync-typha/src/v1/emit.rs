//! Turning a family's result into [`Converted`]: what every family does the same way.
//!
//! Typha turns a value that cannot be converted or fails validation into a *deletion* of the key
//! (so a client never keeps a stale version), and a processor that filters a value out does the
//! same; only the reason differs (logged by the caller). These helpers are that rule, once.

use serde_json::Value;

use super::v3read::Reason;
use super::{ConvertError, Converted, Resource, V1Update};

/// Parses the resource's v3 JSON.
pub(super) fn parse(resource: &Resource<'_>) -> Result<Value, ConvertError> {
    serde_json::from_slice(resource.value).map_err(|source| ConvertError::Json {
        kind: resource.kind.into(),
        name: resource.name.into(),
        source,
    })
}

/// A deletion of `key`.
pub(super) fn deleted(key: String) -> V1Update {
    V1Update {
        key,
        value: None,
        v3_resource_version: String::new(),
    }
}

/// The one key of a resource whose key does not depend on its value: its deletion, or its value
/// (a filtered (`Ok(None)`) or invalid value is a deletion too).
pub(super) fn one_key(
    resource: &Resource<'_>,
    key: String,
    is_deleted: bool,
    value: impl FnOnce(&Value) -> Result<Option<Value>, Reason>,
) -> Converted {
    if is_deleted {
        return deletion(key);
    }
    let parsed = match parse(resource) {
        Ok(v) => v,
        Err(error) => return failed(vec![key], error),
    };
    match value(&parsed) {
        Ok(Some(v)) => update(resource, key, &v),
        Ok(None) => deletion(key),
        Err(reason) => failed(vec![key], invalid(resource, reason)),
    }
}

/// The deletion of `key`.
pub(super) fn deletion(key: String) -> Converted {
    Converted {
        updates: vec![deleted(key)],
        error: None,
    }
}

/// The deletions of `keys`, with the reason.
pub(super) fn failed(keys: Vec<String>, error: ConvertError) -> Converted {
    Converted {
        updates: keys.into_iter().map(deleted).collect(),
        error: Some(error),
    }
}

/// `value` serialized under `key`.
pub(super) fn update(resource: &Resource<'_>, key: String, value: &Value) -> Converted {
    match set(resource, key.clone(), value) {
        Ok(u) => Converted {
            updates: vec![u],
            error: None,
        },
        Err(error) => failed(vec![key], error),
    }
}

/// `value` serialized under `key`, as one update.
pub(super) fn set(
    resource: &Resource<'_>,
    key: String,
    value: &Value,
) -> Result<V1Update, ConvertError> {
    let bytes = serde_json::to_vec(value).map_err(|source| ConvertError::Json {
        kind: resource.kind.into(),
        name: resource.name.into(),
        source,
    })?;
    Ok(V1Update {
        key,
        value: Some(bytes.into()),
        v3_resource_version: String::new(),
    })
}

/// The error for a value Calico would not convert (or Typha would not pass).
pub(super) fn invalid(resource: &Resource<'_>, reason: Reason) -> ConvertError {
    ConvertError::Invalid {
        kind: resource.kind.into(),
        name: resource.name.into(),
        reason,
    }
}
