//! Shared test support: an in-process server on real loopback sockets, agents on real gRPC
//! clients, and condition waits with timeouts (no sleep-and-hope).
#![allow(dead_code)]

pub mod apiserver;
pub mod binary;
pub mod certs;
pub mod endpoint_files;
pub mod endpoints;
pub mod etcd;
pub mod fake_server;
pub mod federation;
pub mod felix;
pub mod felix_mesh;
pub mod h2raw;
pub mod hostile;
pub mod kdd;
pub mod log_text;
pub mod logs;
pub mod mesh;
pub mod process;
pub mod reconnects;
pub mod relay;
pub mod source;
pub mod typha;
pub mod typha_scenario;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures::Stream;
use meshsync_agent::{Agent, AgentConfig, AgentEvent, Mirror};
use meshsync_cache::{CacheConfig, SnapshotCache};
use meshsync_datastore::SourceEvent;
use meshsync_server::{BoundServer, Connections, ServerConfig};
use tokio::sync::oneshot;

/// The default wait for any condition in tests.
pub const WAIT: Duration = Duration::from_secs(20);

/// A server running in this process on 127.0.0.1 with OS-chosen ports.
pub struct TestServer {
    pub cache: SnapshotCache,
    pub grpc: SocketAddr,
    pub health: SocketAddr,
    pub metrics: SocketAddr,
    pub connections: std::sync::Arc<Connections>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a cache over `events` and a server over the cache.
    pub async fn start<S>(events: S) -> TestServer
    where
        S: Stream<Item = SourceEvent> + Unpin + Send + 'static,
    {
        Self::start_with(events, CacheConfig::default(), ServerConfig::default()).await
    }

    pub async fn start_with<S>(events: S, cache: CacheConfig, server: ServerConfig) -> TestServer
    where
        S: Stream<Item = SourceEvent> + Unpin + Send + 'static,
    {
        let cache = SnapshotCache::spawn(events, cache);
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            health_listen: Some("127.0.0.1:0".parse().unwrap()),
            metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..server
        };
        let bound = BoundServer::bind(cache.clone(), config).await.unwrap();
        let grpc = bound.grpc_addr().unwrap();
        let health = bound.health_addr().unwrap();
        let metrics = bound.metrics_addr().unwrap();
        let connections = bound.connections();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            bound
                .serve(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        TestServer {
            cache,
            grpc,
            health,
            metrics,
            connections,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// An agent configuration for this server with fast retries.
    pub fn agent_config(&self, subscription: &str) -> AgentConfig {
        let mut config = AgentConfig::new(self.url());
        config.subscription = subscription.to_string();
        config.node_name = "test-node".into();
        config.backoff_initial = Duration::from_millis(20);
        config.backoff_max = Duration::from_millis(200);
        config
    }

    pub fn agent(&self, subscription: &str) -> Agent {
        Agent::new(self.agent_config(subscription)).unwrap()
    }

    /// Stops serving and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(WAIT, task).await;
        }
    }
}

/// Runs `fut` with the default timeout, failing the test with `what` if it does not finish.
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// Pulls events until `pred` holds for the mirror; returns every event seen.
pub async fn until<F>(agent: &mut Agent, what: &str, pred: F) -> Vec<AgentEvent>
where
    F: Fn(&Mirror) -> bool,
{
    within(what, async {
        let mut seen = Vec::new();
        while !pred(agent.mirror()) {
            seen.push(agent.next().await.expect("agent failed"));
        }
        seen
    })
    .await
}

/// Pulls events until the mirror is in sync.
pub async fn until_in_sync(agent: &mut Agent) -> Vec<AgentEvent> {
    until(agent, "agent in sync", |m| m.in_sync()).await
}

/// The next event that is an update (skipping statuses), with a timeout.
pub async fn next_update(agent: &mut Agent) -> meshsync_proto::Update {
    within("next update", async {
        loop {
            match agent.next().await.expect("agent failed") {
                AgentEvent::Update(u) => return u,
                AgentEvent::Disconnected { error, .. } => panic!("agent disconnected: {error}"),
                _ => {}
            }
        }
    })
    .await
}

/// A simple HTTP/1.1 GET on a real socket: returns (status code, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// A temporary copy of the quick start's `examples/mesh` (`cluster-a`, `cluster-b`).
pub fn copy_example_mesh() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mesh"),
        dir.path(),
    );
    dir
}

/// Copies the directory `from` to `to`, recursively, leaving out what a run in the source tree
/// leaves behind (`generated/`, dot files): what is copied is the example as checked in.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "generated" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
