//! How to reach an etcd cluster.

use std::time::Duration;

/// PEM material for TLS to etcd.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EtcdTls {
    /// CA bundle that signed the servers' certificates; the system roots are not used.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key, for etcd's `--client-cert-auth`.
    pub cert_pem: Option<Vec<u8>>,
    pub key_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for EtcdTls {
    /// Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls")
            .field("ca", &self.ca_pem.is_some())
            .field("cert", &self.cert_pem.is_some())
            .field("key", &self.key_pem.is_some())
            .finish()
    }
}

/// Endpoints, credentials and timeouts.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `http(s)://host:port` or `host:port`; tried in order until one connects.
    pub endpoints: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// TLS; also implied by `https://` endpoints.
    pub tls: Option<EtcdTls>,
    pub connect_timeout: Duration,
    /// Deadline for unary calls (not for watches).
    pub request_timeout: Duration,
}

impl EtcdConfig {
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdConfig {
            endpoints,
            username: None,
            password: None,
            tls: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for EtcdConfig {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish()
    }
}
