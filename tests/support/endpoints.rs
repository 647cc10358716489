//! A hand-driven local cluster of WorkloadEndpoints behind an in-process server: the fixture of
//! the compression and resume tests (`pod-00000`, … in namespace `default`, each ~500 B of JSON).

use bytes::Bytes;
use meshsync_cache::CacheConfig;
use meshsync_datastore::{ResourceKey, SourceEvent, SourceStatus};
use meshsync_server::ServerConfig;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{TestServer, within};

/// Endpoint `i` at version `v` (the version is in the value, so each `v` is a change).
pub fn wep(i: usize, v: u32) -> SourceEvent {
    let name = format!("pod-{i:05}");
    SourceEvent::Upsert {
        key: ResourceKey::new("", "WorkloadEndpoint", "default", &name),
        value: Bytes::from(format!(
            r#"{{"kind":"WorkloadEndpoint","apiVersion":"projectcalico.org/v3","metadata":{{"name":"{name}","namespace":"default","labels":{{"app":"web-{}","projectcalico.org/namespace":"default"}}}},"spec":{{"node":"node-{}","pod":"{name}","ipNetworks":["10.0.{}.{}/32"],"profiles":["kns.default"],"v":{v}}}}}"#,
            i % 10,
            i % 50,
            i / 250,
            i % 250
        )),
        revision: format!("{}", 100 + i).into(),
    }
}

/// Deletes endpoint `i`.
pub fn wep_deleted(i: usize) -> SourceEvent {
    SourceEvent::Delete {
        key: ResourceKey::new("", "WorkloadEndpoint", "default", &format!("pod-{i:05}")),
        revision: "0".into(),
    }
}

/// A server over a hand-driven source holding `keys` endpoints (version 1), in sync; the sender
/// drives the source on.
pub async fn server_with_endpoints(
    keys: usize,
    cache: CacheConfig,
    config: ServerConfig,
) -> (mpsc::Sender<SourceEvent>, TestServer) {
    let (tx, rx) = mpsc::channel(keys + 16);
    let server = TestServer::start_with(ReceiverStream::new(rx), cache, config).await;
    tx.send(SourceEvent::ResyncStart { cluster: "".into() })
        .await
        .unwrap();
    for i in 0..keys {
        tx.send(wep(i, 1)).await.unwrap();
    }
    for e in [
        SourceEvent::ResyncDone { cluster: "".into() },
        SourceEvent::Status {
            cluster: "".into(),
            status: SourceStatus::InSync,
        },
    ] {
        tx.send(e).await.unwrap();
    }
    within(
        "the cache in sync",
        server
            .cache
            .wait_for_status(|s| s.total_keys() == keys as u64),
    )
    .await;
    (tx, server)
}
