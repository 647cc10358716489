//! The etcd writer: every write re-reads the key and is a compare-and-swap, retried on conflict.
//!
//! The mirror may lag behind etcd, and someone else (a user, another controller) may write the
//! same key at any time; so the writer decides again from what etcd holds now and makes its write
//! conditional on the key being unchanged since that read ([`meshsync_etcd::txn`]): `version == 0`
//! to create, the read `mod_revision` to update or delete. A lost race is a re-read, up to
//! `max_attempts` times.

use bytes::Bytes;
use meshsync_etcd::{EtcdClient, EtcdConfig, TlsFiles, pb, txn};
use meshsync_model::etcd_layout::key_path;
use serde_json::Value;
use tracing::{debug, info, warn};

use super::{ApplyError, Outcome, PrepareError, check_name};
use crate::controller::LOG_TARGET;
use crate::controller::merge::{merge, remove_server_fields, strip};
use crate::controller::plan::Action;
use crate::is_managed;

/// Writes into etcd under `prefix`, connecting on the first [`EtcdWriter::prepare`].
pub(in crate::controller) struct EtcdWriter {
    config: EtcdConfig,
    /// Read at each connection attempt, as the etcd source does.
    tls_files: TlsFiles,
    prefix: String,
    max_attempts: u32,
    client: Option<EtcdClient>,
}

impl EtcdWriter {
    pub(super) fn new(
        config: EtcdConfig,
        tls_files: TlsFiles,
        prefix: String,
        max_attempts: u32,
    ) -> Self {
        EtcdWriter {
            config,
            tls_files,
            prefix,
            max_attempts,
            client: None,
        }
    }

    /// Connects to etcd if not connected yet (reading the TLS files now).
    pub(super) async fn prepare(&mut self) -> Result<(), PrepareError> {
        if self.client.is_none() {
            let mut config = self.config.clone();
            self.tls_files
                .load_into(&mut config)
                .map_err(PrepareError::Connect)?;
            let client = EtcdClient::connect(&config)
                .await
                .map_err(PrepareError::Connect)?;
            self.client = Some(client);
        }
        Ok(())
    }

    pub(super) async fn apply_one(&self, action: &Action) -> Result<Outcome, ApplyError> {
        let client = self.client.as_ref().ok_or(ApplyError::NotConnected)?;
        // A `/` in a part would put the object under another namespace's path.
        check_name(&action.namespace)?;
        check_name(&action.name)?;
        let key = key_path(&self.prefix, action.kind, &action.namespace, &action.name)
            .ok_or(ApplyError::NoLayout(action.kind))?;
        apply_one_etcd(client, self.max_attempts, &key, action).await
    }
}

async fn apply_one_etcd(
    client: &EtcdClient,
    max_attempts: u32,
    key: &str,
    action: &Action,
) -> Result<Outcome, ApplyError> {
    let key = Bytes::copy_from_slice(key.as_bytes());
    for attempt in 1..=max_attempts.max(1) {
        let response = client
            .range(pb::RangeRequest {
                key: key.clone(),
                ..Default::default()
            })
            .await?;
        let current = response.kvs.into_iter().next();
        let request = match (&current, &action.desired) {
            (None, None) => return Ok(Outcome::Unchanged),
            (None, Some(want)) => {
                let mut want = want.clone();
                remove_server_fields(&mut want);
                txn::put_if_absent(&key, encode(&want)?)
            }
            (Some(kv), desired) => {
                let existing: Value = match serde_json::from_slice(&kv.value) {
                    Ok(v) => v,
                    Err(_) => {
                        warn!(target: LOG_TARGET, key = %String::from_utf8_lossy(&key),
                            "unparseable object in the way of a federated object; leaving it alone");
                        return Ok(Outcome::Unmanaged);
                    }
                };
                if !is_managed(&existing) {
                    info!(target: LOG_TARGET, kind = action.kind, namespace = %action.namespace, name = %action.name,
                        "object not managed by the federation controller (no selector annotation); leaving it alone");
                    return Ok(Outcome::Unmanaged);
                }
                match desired {
                    None => txn::delete_if_mod_revision(&key, kv.mod_revision),
                    Some(want) => {
                        let Some(mut merged) = merge(&existing, want) else {
                            return Ok(Outcome::Unmanaged);
                        };
                        if strip(&existing) == strip(&merged) {
                            return Ok(Outcome::Unchanged);
                        }
                        remove_server_fields(&mut merged);
                        txn::put_if_mod_revision(&key, kv.mod_revision, encode(&merged)?)
                    }
                }
            }
        };
        if client.txn(request).await?.succeeded {
            return Ok(if action.desired.is_some() {
                Outcome::Written
            } else {
                Outcome::Deleted
            });
        }
        debug!(target: LOG_TARGET, key = %String::from_utf8_lossy(&key), attempt, "compare-and-swap conflict; re-reading");
    }
    Err(ApplyError::Conflict(max_attempts))
}

/// The object as etcd stores it: compact JSON.
fn encode(value: &Value) -> Result<Bytes, ApplyError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(ApplyError::Encode)
}
