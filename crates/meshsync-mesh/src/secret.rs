//! Kubernetes Secrets, as the mesh needs them: the data of the Secrets RCCs reference.

use std::collections::BTreeMap;

use base64::Engine;

use crate::error::SecretError;

/// A Secret's data, decoded (`data` is base64; `stringData` wins for keys in both, as the API
/// server does on write).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretData(pub BTreeMap<String, Vec<u8>>);

impl SecretData {
    /// Decodes a Secret object's JSON.
    pub fn parse(value: &[u8]) -> Result<SecretData, SecretError> {
        let object: serde_json::Value =
            serde_json::from_slice(value).map_err(|e| SecretError::NotJson(e.into()))?;
        let mut data = BTreeMap::new();
        if let Some(map) = object.get("data").and_then(|d| d.as_object()) {
            for (k, v) in map {
                let text = v.as_str().ok_or_else(|| SecretError::NotAString {
                    field: "data",
                    key: k.clone(),
                })?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|source| SecretError::NotBase64 {
                        key: k.clone(),
                        source,
                    })?;
                data.insert(k.clone(), bytes);
            }
        }
        if let Some(map) = object.get("stringData").and_then(|d| d.as_object()) {
            for (k, v) in map {
                let text = v.as_str().ok_or_else(|| SecretError::NotAString {
                    field: "stringData",
                    key: k.clone(),
                })?;
                data.insert(k.clone(), text.as_bytes().to_vec());
            }
        }
        Ok(SecretData(data))
    }

    /// A key's value as UTF-8 text.
    pub fn text(&self, key: &str) -> Result<Option<String>, SecretError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes.clone())
                .map(Some)
                .map_err(|_| SecretError::NotUtf8(key.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_data_and_string_data() {
        let s = SecretData::parse(
            br#"{"kind":"Secret","data":{"a":"aGVsbG8="},"stringData":{"b":"x","a":"over"}}"#,
        )
        .unwrap();
        assert_eq!(s.text("a").unwrap().as_deref(), Some("over"));
        assert_eq!(s.text("b").unwrap().as_deref(), Some("x"));
        assert_eq!(s.text("c").unwrap(), None);
        assert!(SecretData::parse(br#"{"data":{"a":"!!"}}"#).is_err());
    }
}
