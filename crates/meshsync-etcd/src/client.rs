//! Connecting (endpoint failover, TLS, then authentication through [`crate::auth`]) and the KV
//! calls.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use meshsync_model::error_chain;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tracing::debug;

use crate::auth::{AuthedChannel, TokenInterceptor};
use crate::config::EtcdConfig;
use crate::error::EtcdError;
use crate::pb::{self, kv_client::KvClient, watch_client::WatchClient};
use crate::watch::WatchStream;

/// HTTP/2 ping interval on the etcd channel.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// An unanswered ping closes the connection after this long.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to one etcd cluster. Cheap to clone (clones share the HTTP/2 connection).
#[derive(Clone)]
pub struct EtcdClient {
    kv: KvClient<AuthedChannel>,
    watch: WatchClient<AuthedChannel>,
    endpoint: String,
    request_timeout: Duration,
}

/// The smallest key greater than every key starting with `prefix` (etcd's `range_end` for a
/// prefix). An empty result means "no end" (all keys from `prefix` on).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn normalise(endpoint: &str, tls: bool) -> String {
    let e = endpoint.trim();
    if e.starts_with("http://") || e.starts_with("https://") {
        e.to_string()
    } else if tls {
        format!("https://{e}")
    } else {
        format!("http://{e}")
    }
}

impl EtcdClient {
    /// Connects to the first endpoint that answers, then authenticates if a user is configured.
    pub async fn connect(config: &EtcdConfig) -> Result<Self, EtcdError> {
        if config.endpoints.is_empty() {
            return Err(EtcdError::NoEndpoints);
        }
        let mut failures = Vec::new();
        for raw in &config.endpoints {
            let uses_tls = config.tls.is_some() || raw.trim().starts_with("https://");
            let url = normalise(raw, uses_tls);
            let endpoint = build_endpoint(&url, config, uses_tls)?;
            match endpoint.connect().await {
                Ok(channel) => {
                    debug!(endpoint = %url, "connected to etcd");
                    return Self::with_channel(channel, url, config).await;
                }
                Err(e) => failures.push(format!("{url}: {}", error_chain(&e))),
            }
        }
        Err(EtcdError::Connect(failures.join("; ")))
    }

    async fn with_channel(
        channel: Channel,
        endpoint: String,
        config: &EtcdConfig,
    ) -> Result<Self, EtcdError> {
        let interceptor = TokenInterceptor::authenticate(&channel, config).await?;
        Ok(EtcdClient {
            kv: KvClient::with_interceptor(channel.clone(), interceptor.clone())
                .max_decoding_message_size(256 << 20),
            watch: WatchClient::with_interceptor(channel, interceptor)
                .max_decoding_message_size(256 << 20),
            endpoint,
            request_timeout: config.request_timeout,
        })
    }

    /// The endpoint this client is connected to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn timed<T, F>(&self, fut: F) -> Result<T, EtcdError>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match tokio::time::timeout(self.request_timeout, fut).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(EtcdError::Rpc(status)),
            Err(_) => Err(EtcdError::Timeout(self.request_timeout)),
        }
    }

    /// One `Range` call.
    pub async fn range(&self, request: pb::RangeRequest) -> Result<pb::RangeResponse, EtcdError> {
        let mut kv = self.kv.clone();
        self.timed(kv.range(request)).await
    }

    /// Every key under `prefix` at one revision (the current one when `revision` is 0), in pages
    /// of `page_size`. Returns the pairs and the revision they were read at.
    pub async fn list_prefix(
        &self,
        prefix: &[u8],
        revision: i64,
        page_size: i64,
    ) -> Result<(Vec<pb::KeyValue>, i64), EtcdError> {
        let end = prefix_end(prefix);
        let mut key = prefix.to_vec();
        let mut at = revision;
        let mut all = Vec::new();
        loop {
            let response = self
                .range(pb::RangeRequest {
                    key: Bytes::from(key.clone()),
                    range_end: Bytes::from(end.clone()),
                    limit: page_size,
                    revision: at,
                    ..Default::default()
                })
                .await
                .map_err(|e| {
                    if e.is_compacted() {
                        EtcdError::Compacted {
                            requested: at,
                            compact_revision: 0,
                        }
                    } else {
                        e
                    }
                })?;
            if at == 0 {
                // Pin every later page to the first page's revision: one consistent cut.
                at = response.header.as_ref().map(|h| h.revision).unwrap_or(0);
            }
            let more = response.more;
            let last = response.kvs.last().map(|kv| kv.key.clone());
            all.extend(response.kvs);
            match (more, last) {
                (true, Some(last)) => {
                    key = last.to_vec();
                    key.push(0);
                }
                _ => return Ok((all, at)),
            }
        }
    }

    /// Writes `value` at `key`; returns the new revision.
    pub async fn put(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<i64, EtcdError> {
        let mut kv = self.kv.clone();
        let response = self
            .timed(kv.put(pb::PutRequest {
                key: key.into(),
                value: value.into(),
                ..Default::default()
            }))
            .await?;
        Ok(response.header.map(|h| h.revision).unwrap_or(0))
    }

    /// Deletes one key; returns (revision, number deleted).
    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<(i64, i64), EtcdError> {
        let mut kv = self.kv.clone();
        let response = self
            .timed(kv.delete_range(pb::DeleteRangeRequest {
                key: key.into(),
                ..Default::default()
            }))
            .await?;
        Ok((
            response.header.map(|h| h.revision).unwrap_or(0),
            response.deleted,
        ))
    }

    /// Deletes every key under `prefix`; returns (revision, number deleted). For tests only
    /// (feature `test-support`).
    #[cfg(feature = "test-support")]
    pub async fn delete_prefix(&self, prefix: &[u8]) -> Result<(i64, i64), EtcdError> {
        let mut kv = self.kv.clone();
        let response = self
            .timed(kv.delete_range(pb::DeleteRangeRequest {
                key: Bytes::copy_from_slice(prefix),
                range_end: Bytes::from(prefix_end(prefix)),
                ..Default::default()
            }))
            .await?;
        Ok((
            response.header.map(|h| h.revision).unwrap_or(0),
            response.deleted,
        ))
    }

    /// A transaction (compare-and-swap and friends).
    pub async fn txn(&self, request: pb::TxnRequest) -> Result<pb::TxnResponse, EtcdError> {
        let mut kv = self.kv.clone();
        self.timed(kv.txn(request)).await
    }

    /// Compacts history up to `revision`. For tests only (feature `test-support`).
    #[cfg(feature = "test-support")]
    pub async fn compact(&self, revision: i64) -> Result<(), EtcdError> {
        let mut kv = self.kv.clone();
        self.timed(kv.compact(pb::CompactionRequest {
            revision,
            physical: true,
        }))
        .await
        .map(|_| ())
    }

    /// Watches every key under `prefix` from `start_revision` (inclusive).
    pub async fn watch_prefix(
        &self,
        prefix: &[u8],
        start_revision: i64,
    ) -> Result<WatchStream, EtcdError> {
        WatchStream::start(
            self.watch.clone(),
            pb::WatchCreateRequest {
                key: Bytes::copy_from_slice(prefix),
                range_end: Bytes::from(prefix_end(prefix)),
                start_revision,
                progress_notify: true,
                ..Default::default()
            },
            self.request_timeout,
        )
        .await
    }
}

fn build_endpoint(url: &str, config: &EtcdConfig, tls: bool) -> Result<Endpoint, EtcdError> {
    let invalid = |reason: String| EtcdError::InvalidEndpoint {
        endpoint: url.to_string(),
        reason,
    };
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| invalid(e.to_string()))?
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        // etcd refuses pings more often than every 5 s (`--grpc-keepalive-min-time`), so the
        // interval stays at 10 s; a hung server is then noticed within 15 s on any call. Watches
        // also probe with progress requests (the datastore driver), which etcd answers at once.
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    if tls {
        let mut tls_config = ClientTlsConfig::new();
        if let Some(material) = &config.tls {
            if let Some(ca) = &material.ca_pem {
                tls_config = tls_config.ca_certificate(Certificate::from_pem(ca));
            }
            match (&material.cert_pem, &material.key_pem) {
                (Some(cert), Some(key)) => {
                    tls_config = tls_config.identity(Identity::from_pem(cert, key));
                }
                (None, None) => {}
                _ => {
                    return Err(EtcdError::Tls(
                        "a client certificate needs both the certificate and its key".into(),
                    ));
                }
            }
        }
        endpoint = endpoint
            .tls_config(tls_config)
            .map_err(|e| EtcdError::Tls(error_chain(&e)))?;
    }
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/calico/"), b"/calico0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
