//! The pipeline under test (the real etcd source and mesh stage) and the remotes that misbehave.

use std::time::Duration;

use futures::{Stream, StreamExt};
use meshsync_datastore::SourceEvent;
use meshsync_datastore::etcd::EtcdSourceConfig;
use meshsync_etcd::EtcdConfig;
use meshsync_mesh::MeshConfig;
use tokio::sync::oneshot;

use crate::support::etcd::Etcd;

pub type Events = std::pin::Pin<Box<dyn Stream<Item = SourceEvent> + Send>>;

/// The local etcd source over `local`, as `serve` builds it (cluster "").
pub fn local_source(local: &Etcd) -> Events {
    Box::pin(meshsync_datastore::etcd::watch(EtcdSourceConfig::new(
        EtcdConfig::new(vec![local.url()]),
        "".into(),
    )))
}

/// The mesh over the local datastore `local`, ready for `TestServer::start`.
pub fn mesh_over(local: &Etcd) -> impl Stream<Item = SourceEvent> + Send + Unpin + 'static {
    meshsync_mesh::mesh(local_source(local), MeshConfig::default())
}

/// Holds `inner` back until the returned sender fires, so an agent can connect first and see
/// every state transition from the very beginning.
pub fn gated(inner: Events) -> (oneshot::Sender<()>, Events) {
    let (go, wait) = oneshot::channel::<()>();
    let stream = futures::stream::once(async move {
        let _ = wait.await;
        inner
    })
    .flatten();
    (go, Box::pin(stream))
}

/// A TCP endpoint that accepts connections and drops each after `hold` without a word: a remote
/// that fails slowly (unlike a refused port, which fails at once).
pub struct SlowFailingEndpoint {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl SlowFailingEndpoint {
    pub async fn start(hold: Duration) -> SlowFailingEndpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    tokio::time::sleep(hold).await;
                    drop(socket);
                });
            }
        });
        SlowFailingEndpoint { url, task }
    }
}

impl Drop for SlowFailingEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}
