//! How to reach an etcd cluster.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::EtcdError;

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

/// TLS material given as files, read at every connection attempt (so rotated or late files are
/// picked up, and a missing file is a connection failure, not a crash).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }

    /// Reads the files into `config.tls`, over any inline material there (a file given replaces
    /// that PEM; one not given keeps it). Nothing given, or a file unreadable: `config` is left as
    /// it is. Call it on a
    /// copy of the configuration right before [`crate::EtcdClient::connect`].
    pub fn load_into(&self, config: &mut EtcdConfig) -> Result<(), EtcdError> {
        if self.is_empty() {
            return Ok(());
        }
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| EtcdError::TlsFile {
                path: path.clone(),
                source,
            })
        };
        let ca = self.ca.as_ref().map(read).transpose()?;
        let cert = self.cert.as_ref().map(read).transpose()?;
        let key = self.key.as_ref().map(read).transpose()?;
        let tls = config.tls.get_or_insert_with(EtcdTls::default);
        for (pem, file) in [
            (&mut tls.ca_pem, ca),
            (&mut tls.cert_pem, cert),
            (&mut tls.key_pem, key),
        ] {
            if file.is_some() {
                *pem = file;
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_files_are_read_over_inline_material() {
        let dir =
            std::env::temp_dir().join(format!("meshsync-etcd-tls-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "CA").unwrap();
        let mut config = EtcdConfig::new(vec![]);
        TlsFiles::default().load_into(&mut config).unwrap();
        assert_eq!(config.tls, None);

        config.tls = Some(EtcdTls {
            cert_pem: Some(b"inline".to_vec()),
            ..EtcdTls::default()
        });
        let files = TlsFiles {
            ca: Some(ca.clone()),
            ..TlsFiles::default()
        };
        files.load_into(&mut config).unwrap();
        let tls = config.tls.clone().unwrap();
        assert_eq!(tls.ca_pem.as_deref(), Some(&b"CA"[..]));
        assert_eq!(tls.cert_pem.as_deref(), Some(&b"inline"[..]));

        let missing = TlsFiles {
            key: Some(dir.join("missing.pem")),
            ..TlsFiles::default()
        };
        let before = config.clone();
        let err = missing.load_into(&mut config).unwrap_err();
        assert!(err.to_string().starts_with("cannot read "), "{err}");
        assert!(std::error::Error::source(&err).is_some());
        assert!(config == before);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
