//! Why a RemoteClusterConfiguration cannot run: the reasons its `ConfigIncomplete` status gives.
//!
//! Every variant's text is what operators see in `meshsync status` and the log (the wording
//! follows Calico's validation messages where Calico has one). None is an error of the server:
//! the cluster reports it and nothing else is disturbed.

use std::sync::Arc;

/// A JSON decoding error, shareable (statuses and configurations are cloned and compared).
#[derive(Clone, Debug)]
pub struct JsonError(pub Arc<serde_json::Error>);

impl From<serde_json::Error> for JsonError {
    fn from(e: serde_json::Error) -> Self {
        JsonError(Arc::new(e))
    }
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for JsonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl PartialEq for JsonError {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

/// Why a Secret's data cannot be used.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SecretError {
    #[error("Secret is not JSON: {0}")]
    NotJson(#[source] JsonError),
    #[error("Secret {field} key {key:?} is not a string")]
    NotAString { field: &'static str, key: String },
    #[error("Secret data key {key:?} is not base64: {source}")]
    NotBase64 {
        key: String,
        #[source]
        source: base64::DecodeError,
    },
    #[error("Secret data key {0:?} is not UTF-8")]
    NotUtf8(String),
    /// The local datastore could not read it ([`SourceEvent::Unreadable`]: the Kubernetes API's
    /// message, e.g. RBAC).
    ///
    /// [`SourceEvent::Unreadable`]: meshsync_model::SourceEvent::Unreadable
    #[error("cannot be read: {0}")]
    Unreadable(String),
}

/// Why an RCC is `ConfigIncomplete`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("not JSON: {0}")]
    NotJson(#[source] JsonError),
    #[error("invalid RemoteClusterConfiguration spec: {0}")]
    InvalidSpec(#[source] JsonError),
    /// A field fails validation (Calico's wording).
    #[error("failed to validate Field: {field}: {reason}")]
    Field { field: &'static str, reason: String },
    #[error(
        "When ClusterAccessSecret is set all other datastore connection fields should not be set."
    )]
    SecretWithConnectionFields,
    #[error("clusterAccessSecret must refer to a Secret, not {0:?}")]
    NotASecret(String),
    #[error("clusterAccessSecret needs a namespace and a name")]
    SecretRefIncomplete,
    #[error("cluster access secret {namespace}/{name} was not found")]
    SecretNotFound { namespace: String, name: String },
    /// The Secret exists but does not decode.
    #[error("cluster access secret {namespace}/{name} is malformed: {source}")]
    SecretMalformed {
        namespace: String,
        name: String,
        #[source]
        source: SecretError,
    },
    /// One of the Secret's keys cannot be used.
    #[error("cluster access secret {namespace}/{name}: {source}")]
    SecretField {
        namespace: String,
        name: String,
        #[source]
        source: SecretError,
    },
    #[error("annotation {annotation}: {reason}")]
    Annotation {
        annotation: &'static str,
        reason: String,
    },
    /// Its datastore is already in the mesh (the local one, or another running RCC's).
    #[error("duplicate cluster: it points at {0}")]
    Duplicate(String),
    /// The RCC was valid and running, and no longer is.
    #[error("Config is incomplete, stopping watch remote: {0}")]
    Stopped(Box<ConfigError>),
}

impl ConfigError {
    /// A field validation failure.
    pub(crate) fn field(field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError::Field {
            field,
            reason: reason.into(),
        }
    }

    /// True if the RCC was refused as a duplicate of another datastore in the mesh (it may run
    /// once that one is gone).
    pub fn is_duplicate(&self) -> bool {
        match self {
            ConfigError::Duplicate(_) => true,
            ConfigError::Stopped(inner) => inner.is_duplicate(),
            _ => false,
        }
    }
}
