//! etcd and `grpc-proxy` clients: range the prefix once, then watch from the next revision, and
//! on a lost watch resume from the last revision seen (or range again when it was compacted), as
//! a real watcher does.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use meshsync_etcd::{EtcdClient, EtcdConfig, EtcdError, WatchStream, pb as etcd, prefix_end};
use tokio::sync::OwnedSemaphorePermit;
use tracing::warn;

use super::recorder::{LOGGED_FAILURES, Recorder};
use super::{AgentsArgs, backoff};
use crate::workload::{self, now_ns};

/// A client's local copy: etcd key → value.
pub(super) type EtcdMap = HashMap<Bytes, Bytes>;

pub(super) fn etcd_config(args: &AgentsArgs) -> EtcdConfig {
    let mut config = EtcdConfig::new(
        std::iter::once(args.target.clone())
            .chain(args.fallback_target.iter().cloned())
            .collect(),
    );
    config.connect_timeout = Duration::from_secs_f64(args.connect_timeout_s);
    // A range of every key through a loaded proxy can take long; do not give up on it.
    config.request_timeout = Duration::from_secs(600);
    config
}

/// Connects, ranges the prefix at the current revision (one unpaged `Range`, as typical clients
/// do), applies it, and watches from the next revision.
pub(super) async fn etcd_sync(
    config: &EtcdConfig,
    keys: usize,
) -> Result<(EtcdConnection, EtcdMap, i64), EtcdError> {
    let client = EtcdClient::connect(config).await?;
    let prefix = workload::PREFIX.as_bytes();
    let response = client
        .range(etcd::RangeRequest {
            key: Bytes::from_static(prefix),
            range_end: Bytes::from(prefix_end(prefix)),
            limit: 0,
            ..Default::default()
        })
        .await?;
    let revision = response.header.as_ref().map(|h| h.revision).unwrap_or(0);
    let mut map = EtcdMap::with_capacity(response.kvs.len().max(keys));
    for kv in response.kvs {
        map.insert(kv.key, kv.value);
    }
    let watch = client.watch_prefix(prefix, revision + 1).await?;
    Ok((
        EtcdConnection {
            _client: client,
            watch,
        },
        map,
        revision,
    ))
}

/// A watch and the client whose connection carries it (kept so the connection stays up).
pub(super) struct EtcdConnection {
    _client: EtcdClient,
    watch: WatchStream,
}

pub(super) async fn etcd_client(
    id: usize,
    args: &AgentsArgs,
    shared: &Recorder,
    slot: Option<OwnedSemaphorePermit>,
) {
    let config = etcd_config(args);
    let mut attempt = 0u32;
    let (mut conn, mut map, mut revision) = loop {
        match etcd_sync(&config, args.keys).await {
            Ok(state) => break state,
            Err(e) => {
                attempt += 1;
                if attempt >= args.attempts {
                    return shared.mark_failed(id, &e.to_string());
                }
                tokio::time::sleep(backoff(id, attempt)).await;
            }
        }
    };
    if map.len() < args.keys && shared.logged.fetch_add(1, Ordering::Relaxed) < LOGGED_FAILURES {
        warn!(
            client = id,
            got = map.len(),
            expected = args.keys,
            "fewer keys than expected"
        );
    }
    drop(slot);
    shared.mark_synced();
    loop {
        match conn.watch.next().await {
            Ok(response) => {
                if response.events.is_empty() {
                    continue;
                }
                let now = now_ns();
                shared.stall.observe(
                    id,
                    response
                        .events
                        .iter()
                        .filter_map(|ev| ev.kv.as_ref())
                        .map(|kv| &kv.value[..]),
                );
                shared.record(
                    id,
                    now,
                    response
                        .events
                        .iter()
                        .filter(|ev| ev.r#type == etcd::event::EventType::Put as i32)
                        .filter_map(|ev| ev.kv.as_ref())
                        .map(|kv| &kv.value[..]),
                );
                for ev in response.events {
                    let Some(kv) = ev.kv else { continue };
                    revision = revision.max(kv.mod_revision);
                    if ev.r#type == etcd::event::EventType::Delete as i32 {
                        map.remove(&kv.key);
                    } else {
                        map.insert(kv.key, kv.value);
                    }
                }
            }
            Err(e) => {
                shared.lost_connection(id, &e);
                match reconnect(id, &config, args.keys, revision, e).await {
                    Reconnected::Resumed(c) => conn = c,
                    Reconnected::Resynced(c, m, r) => {
                        shared.stall.observe(id, m.values().map(|v| &v[..]));
                        (conn, map, revision) = (c, m, r)
                    }
                }
            }
        }
    }
}

/// How a lost watch came back.
enum Reconnected {
    /// Watching again from the next revision: the map is still current.
    Resumed(EtcdConnection),
    /// That revision was compacted: listed again (a resync, not counted).
    Resynced(EtcdConnection, EtcdMap, i64),
}

/// Like a real watcher: reconnects and resumes from the revision after `revision`; if that was
/// compacted, ranges again. Retries with backoff until one of them succeeds.
async fn reconnect(
    id: usize,
    config: &EtcdConfig,
    keys: usize,
    revision: i64,
    mut error: EtcdError,
) -> Reconnected {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        tokio::time::sleep(backoff(id, attempt)).await;
        if error.is_compacted() {
            match etcd_sync(config, keys).await {
                Ok((c, m, r)) => return Reconnected::Resynced(c, m, r),
                Err(e) => error = e,
            }
            continue;
        }
        let resumed = match EtcdClient::connect(config).await {
            Ok(c) => {
                let w = c.watch_prefix(workload::PREFIX.as_bytes(), revision + 1);
                w.await.map(|watch| EtcdConnection { _client: c, watch })
            }
            Err(e) => Err(e),
        };
        match resumed {
            Ok(c) => return Reconnected::Resumed(c),
            Err(e) => error = e,
        }
    }
}
