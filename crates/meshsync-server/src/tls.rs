//! TLS on the agents' port, with client identity, as Typha does it: the server presents its
//! certificate; with a client CA every agent must present a certificate signed by it, and with
//! `--tls-client-cn` and/or `--tls-client-uri-san` that certificate's Common Name or one of its
//! URI SANs must equal one of them (either allowed name matches).
//!
//! Why a small type of our own: the files are re-read when they change (looked at once a second
//! by a task of their own, the reads on a blocking thread), so certificates rotate without a
//! restart; a rotation that does not load (a half-written file, a FIFO, a file too large) keeps
//! the previous configuration and says so once per episode. A read that blocks (a hung secret
//! mount) never holds the accept loop or a runtime thread: handshakes use the configuration
//! already loaded, and the next look waits until the blocked one returns. rustls with
//! `ring` (the process's one crypto provider); nothing here ever logs key material — errors name
//! files and reasons only.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::DistinguishedName;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tracing::{info, warn};

/// What `serve --tls-*` names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Require client certificates signed by this CA.
    pub client_ca_file: Option<PathBuf>,
    /// Allowed client Common Name.
    pub client_cn: Option<String>,
    /// Allowed client URI SAN.
    pub client_uri_san: Option<String>,
}

/// Why the TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {what}", path.display())]
    Pem { path: PathBuf, what: String },
    #[error("invalid TLS configuration: {0}")]
    Config(String),
    #[error("--tls-client-cn and --tls-client-uri-san need --tls-client-ca-file")]
    NamesWithoutCa,
}

/// How often the files are looked at again.
const RECHECK: Duration = Duration::from_secs(1);
/// A look at the files that takes longer than this is said to be stuck (once per episode).
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The server's TLS configuration, reloaded when its files change.
pub(crate) struct TlsReloader {
    files: TlsFiles,
    state: Mutex<Loaded>,
}

struct Loaded {
    config: Arc<ServerConfig>,
    /// What the last look saw (the files' bytes, or why they could not be read).
    fingerprint: u64,
    /// The files changed and do not load (warned once, until they load again).
    failing: bool,
}

impl TlsReloader {
    /// Loads the files; an error here fails the start.
    pub(crate) fn new(files: TlsFiles) -> Result<TlsReloader, TlsError> {
        if files.client_ca_file.is_none()
            && (files.client_cn.is_some() || files.client_uri_san.is_some())
        {
            return Err(TlsError::NamesWithoutCa);
        }
        let contents = read_all(&files)?;
        let config = Arc::new(load(&files, &contents)?);
        Ok(TlsReloader {
            state: Mutex::new(Loaded {
                config,
                fingerprint: fingerprint(&Ok(contents)),
                failing: false,
            }),
            files,
        })
    }

    /// The configuration for a new handshake (never reads a file).
    pub(crate) fn current(&self) -> Arc<ServerConfig> {
        self.lock().config.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Looks at the files once a second until `stop`, each look on a thread of its own; a look
    /// that does not return within [`READ_TIMEOUT`] is reported once and waited for (never a
    /// second blocked thread). Not tokio's blocking pool: the runtime waits for those threads when
    /// it shuts down, and a read stuck on a hung mount would keep the process from exiting.
    pub(crate) async fn watch(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut stuck_since: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RECHECK) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let reloader = self.clone();
            let (done, mut look) = tokio::sync::oneshot::channel();
            let spawned = std::thread::Builder::new()
                .name("tls-files".into())
                .spawn(move || {
                    reloader.look();
                    let _ = done.send(());
                });
            if let Err(e) = spawned {
                warn!(error = %e, "cannot start a thread to look at the TLS files; trying again");
                continue;
            }
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    done = tokio::time::timeout(READ_TIMEOUT, &mut look) => match done {
                        Ok(_) => break,
                        Err(_) if stuck_since.is_none() => {
                            stuck_since = Some(Instant::now());
                            warn!(cert = %self.files.cert_file.display(), timeout = ?READ_TIMEOUT,
                                "reading the TLS files does not return (a hung mount?); keeping the previous ones");
                        }
                        Err(_) => {}
                    },
                }
            }
            if let Some(since) = stuck_since.take() {
                info!(stuck_for = ?since.elapsed(), "reading the TLS files returned again");
            }
        }
    }

    /// One look at the files (blocking): reloads them if they changed.
    fn look(&self) {
        let contents = read_all(&self.files);
        let now = fingerprint(&contents);
        if now == self.lock().fingerprint {
            return;
        }
        let loaded = contents.and_then(|c| load(&self.files, &c));
        let mut state = self.lock();
        state.fingerprint = now;
        match loaded {
            Ok(config) => {
                info!(cert = %self.files.cert_file.display(), "TLS files changed; new connections use them");
                state.config = Arc::new(config);
                state.failing = false;
            }
            Err(e) if !state.failing => {
                state.failing = true;
                warn!(error = %e,
                    "TLS files changed but cannot be loaded; keeping the previous ones (one line until they load)");
            }
            Err(_) => {}
        }
    }
}

/// The bytes of the TLS files: certificate chain, key, client CA.
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

fn read_all(files: &TlsFiles) -> Result<Contents, TlsError> {
    Ok(Contents {
        cert: read(&files.cert_file)?,
        key: read(&files.key_file)?,
        client_ca: files.client_ca_file.as_deref().map(read).transpose()?,
    })
}

fn fingerprint(contents: &Result<Contents, TlsError>) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    match contents {
        Ok(c) => {
            for bytes in [Some(&c.cert), Some(&c.key), c.client_ca.as_ref()]
                .into_iter()
                .flatten()
            {
                h.update(bytes);
                h.update(b"\0");
            }
        }
        Err(e) => h.update(format!("unreadable: {e}").as_bytes()),
    }
    h.digest()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    crate::small_file::read_small_file(path, crate::small_file::MAX_SMALL_FILE_BYTES).map_err(
        |source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        },
    )
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    let certs = certs.map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        what: format!("not PEM certificates: {e}"),
    })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            what: "holds no certificate".into(),
        });
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load(files: &TlsFiles, contents: &Contents) -> Result<ServerConfig, TlsError> {
    let chain = certificates(&files.cert_file, &contents.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&contents.key).map_err(|_| TlsError::Pem {
        path: files.key_file.clone(),
        what: "holds no PEM private key".into(),
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match (&files.client_ca_file, &contents.client_ca) {
        (Some(ca), Some(ca_pem)) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca, ca_pem)? {
                roots.add(cert).map_err(|e| TlsError::Pem {
                    path: ca.clone(),
                    what: format!("not a usable CA certificate: {e}"),
                })?;
            }
            let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(Arc::new(IdentityVerifier {
                inner,
                cn: files.client_cn.clone(),
                uri_san: files.client_uri_san.clone(),
            }))
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("certificate and key do not go together: {e}")))?;
    // gRPC is HTTP/2 only.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The CA check, then the allowed names (Typha: CN or URI SAN, either matches).
#[derive(Debug)]
struct IdentityVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    cn: Option<String>,
    uri_san: Option<String>,
}

impl ClientCertVerifier for IdentityVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.cn.is_none() && self.uri_san.is_none() {
            return Ok(verified);
        }
        let (cns, uris) = names(end_entity).map_err(rustls::Error::General)?;
        let cn_ok = self.cn.as_ref().is_some_and(|want| cns.contains(want));
        let uri_ok = self
            .uri_san
            .as_ref()
            .is_some_and(|want| uris.contains(want));
        if cn_ok || uri_ok {
            Ok(verified)
        } else {
            Err(rustls::Error::General(format!(
                "client certificate identity not allowed (CN {cns:?}, URI SANs {uris:?}; allowed CN {:?}, URI SAN {:?})",
                self.cn, self.uri_san
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The Common Names and URI SANs of a certificate.
fn names(cert: &CertificateDer<'_>) -> Result<(Vec<String>, Vec<String>), String> {
    use x509_parser::prelude::*;
    let (_, parsed) = X509Certificate::from_der(cert.as_ref())
        .map_err(|e| format!("cannot parse the client certificate: {e}"))?;
    let cns = parsed
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(String::from))
        .collect();
    let mut uris = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                uris.push(uri.to_string());
            }
        }
    }
    Ok((cns, uris))
}

/// How many kinds of refusal [`refusal_kind`] tells apart.
pub(crate) const REFUSAL_KINDS: usize = 10;

/// The kind of a refusal (an index below [`REFUSAL_KINDS`]), so that each cause gets its own
/// rate-limited log line.
pub(crate) fn refusal_kind(reason: &str) -> usize {
    const KINDS: [&str; REFUSAL_KINDS - 1] = [
        "not tls",
        "identity not allowed",
        "unknownissuer",
        "expired",
        "handshake timeout",
        "certificate",
        "plaintext grpc port",
        "http/1.x",
        "garbage",
    ];
    let reason = reason.to_ascii_lowercase();
    KINDS
        .iter()
        .position(|k| reason.contains(k))
        .unwrap_or(REFUSAL_KINDS - 1)
}

/// A short reason for a failed TLS handshake, for the one log line about it.
pub(crate) fn handshake_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    if text.contains("InvalidContentType") || text.contains("corrupt message") {
        "not TLS (a plaintext client on the TLS port?)".into()
    } else {
        text
    }
}
