//! Errors of the etcd client.

/// What went wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("no etcd endpoint given")]
    NoEndpoints,
    #[error("invalid etcd endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    #[error("invalid TLS configuration: {0}")]
    Tls(String),
    #[error("cannot read {}: {source}", path.display())]
    TlsFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to etcd ({0})")]
    Connect(String),
    #[error("etcd authentication failed: {0}")]
    Auth(String),
    #[error("etcd request failed: {0}")]
    Rpc(#[from] tonic::Status),
    #[error("etcd request timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error(
        "etcd history was compacted (up to revision {compact_revision}; requested {requested})"
    )]
    Compacted {
        requested: i64,
        compact_revision: i64,
    },
    #[error("etcd cancelled the watch: {0}")]
    WatchCanceled(String),
    #[error("the watch stream ended")]
    WatchEnded,
}

impl EtcdError {
    /// True if the error says the requested revision is no longer available.
    pub fn is_compacted(&self) -> bool {
        match self {
            EtcdError::Compacted { .. } => true,
            EtcdError::Rpc(s) => s.message().contains("compacted"),
            _ => false,
        }
    }
}
