//! A datastore source under test, read directly as its stream of `SourceEvent`s: the next event,
//! the events up to a condition (with a deadline), predicates on events, and a `Replica` that
//! holds what a consumer of the stream would.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use meshsync_datastore::etcd::EtcdSourceConfig;
use meshsync_datastore::{ResourceKey, SourceEvent, SourceStatus};
use meshsync_etcd::EtcdConfig;

use super::etcd::Etcd;
use super::{WAIT, within};

/// A source configuration for `etcd` (local cluster "") with fast retries.
pub fn etcd_source_config(etcd: &Etcd) -> EtcdSourceConfig {
    let mut config = EtcdSourceConfig::new(EtcdConfig::new(vec![etcd.url()]), "".into());
    config.common.backoff.min = Duration::from_millis(50);
    config.common.backoff.max = Duration::from_millis(200);
    config
}

/// The next event, failing the test if none comes or the stream ends.
pub async fn next<S>(source: &mut S) -> SourceEvent
where
    S: Stream<Item = SourceEvent> + Unpin,
{
    within("the next source event", source.next())
        .await
        .expect("the source stream ended")
}

/// Events up to and including the first one for which `done` holds, within [`WAIT`].
pub async fn until<S>(
    source: &mut S,
    what: &str,
    done: impl Fn(&SourceEvent) -> bool,
) -> Vec<SourceEvent>
where
    S: Stream<Item = SourceEvent> + Unpin,
{
    until_within(source, what, WAIT, done).await
}

/// Events up to and including the first one for which `done` holds, within `limit`.
pub async fn until_within<S>(
    source: &mut S,
    what: &str,
    limit: Duration,
    done: impl Fn(&SourceEvent) -> bool,
) -> Vec<SourceEvent>
where
    S: Stream<Item = SourceEvent> + Unpin,
{
    let run = async {
        let mut seen = Vec::new();
        loop {
            let event = source.next().await.expect("the source stream ended");
            let stop = done(&event);
            seen.push(event);
            if stop {
                return seen;
            }
        }
    };
    match tokio::time::timeout(limit, run).await {
        Ok(seen) => seen,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Events up to and including the first `InSync` status.
pub async fn until_in_sync<S>(source: &mut S) -> Vec<SourceEvent>
where
    S: Stream<Item = SourceEvent> + Unpin,
{
    until(source, "the source to be in sync", is_in_sync).await
}

pub fn is_in_sync(event: &SourceEvent) -> bool {
    matches!(
        event,
        SourceEvent::Status {
            status: SourceStatus::InSync,
            ..
        }
    )
}

pub fn is_connection_failed(event: &SourceEvent) -> bool {
    matches!(
        event,
        SourceEvent::Status {
            status: SourceStatus::ConnectionFailed(_),
            ..
        }
    )
}

pub fn upserts_name(event: &SourceEvent, name: &str) -> bool {
    matches!(event, SourceEvent::Upsert { key, .. } if key.name() == name)
}

/// What a consumer of the stream holds: the cache's rule, where `ResyncDone` deletes the keys
/// the relist did not mention.
#[derive(Default)]
pub struct Replica {
    pub entries: BTreeMap<ResourceKey, Bytes>,
    relisted: Option<HashSet<ResourceKey>>,
}

impl Replica {
    pub fn apply(&mut self, event: &SourceEvent) {
        match event {
            SourceEvent::ResyncStart { .. } => self.relisted = Some(HashSet::new()),
            SourceEvent::Upsert { key, value, .. } => {
                if let Some(seen) = &mut self.relisted {
                    seen.insert(key.clone());
                }
                self.entries.insert(key.clone(), value.clone());
            }
            SourceEvent::Delete { key, .. } => {
                self.entries.remove(key);
            }
            SourceEvent::ResyncDone { .. } => {
                let seen = self
                    .relisted
                    .take()
                    .expect("ResyncDone without ResyncStart");
                self.entries.retain(|k, _| seen.contains(k));
            }
            SourceEvent::Status { .. }
            | SourceEvent::ClusterRemoved { .. }
            | SourceEvent::Unreadable { .. }
            | SourceEvent::Refused { .. } => {}
        }
    }

    pub fn keys(&self) -> BTreeSet<ResourceKey> {
        self.entries.keys().cloned().collect()
    }
}
