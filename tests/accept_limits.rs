//! Sockets that never complete a request are closed within the handshake timeout, and sockets
//! beyond the socket cap are closed at once, on the real server over real TCP.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use meshsync_cache::CacheConfig;
use meshsync_proto::{self as pb, sync_client::SyncClient};
use meshsync_server::ServerConfig;
use support::{TestServer, http_get, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_stream::wrappers::ReceiverStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

async fn server(
    config: ServerConfig,
) -> (
    TestServer,
    tokio::sync::mpsc::Sender<meshsync_datastore::SourceEvent>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let server =
        TestServer::start_with(ReceiverStream::new(rx), CacheConfig::default(), config).await;
    (server, tx)
}

/// Reads (discarding the server's SETTINGS and the like) until the server closes the socket.
async fn until_closed(socket: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// A metric's value from `/metrics`.
async fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (_, body) = http_get(addr, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{body}"))
}

async fn wait_metric(addr: SocketAddr, name: &str, want: u64) {
    within(&format!("{name} == {want}"), async {
        while metric(addr, name).await != want {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn silent_and_preface_only_sockets_are_closed_within_the_handshake_timeout() {
    let timeout = Duration::from_millis(700);
    let (server, _tx) = server(ServerConfig {
        handshake_timeout: timeout,
        ..ServerConfig::default()
    })
    .await;
    let start = Instant::now();
    let mut silent = TcpStream::connect(server.grpc).await.unwrap();
    let mut preface = TcpStream::connect(server.grpc).await.unwrap();
    preface.write_all(PREFACE).await.unwrap();
    preface.write_all(EMPTY_SETTINGS).await.unwrap();
    let deadline = timeout * 5;
    for (what, socket) in [("silent", &mut silent), ("preface-only", &mut preface)] {
        tokio::time::timeout(deadline, until_closed(socket))
            .await
            .unwrap_or_else(|_| panic!("the {what} socket was still open after {deadline:?}"));
    }
    assert!(
        start.elapsed() >= timeout - Duration::from_millis(50),
        "closed before the handshake timeout: {:?}",
        start.elapsed()
    );
    wait_metric(
        server.metrics,
        "meshsync_connections_closed_handshake_total",
        2,
    )
    .await;
    wait_metric(server.metrics, "meshsync_sockets_open", 0).await;

    // A connection that completes a request is not closed by the handshake timeout: the stream
    // still delivers after three times the timeout.
    let mut client = SyncClient::connect(server.url()).await.unwrap();
    let mut stream = client
        .subscribe(pb::SubscribeRequest {
            node_name: "patient".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let hello = within("hello", stream.message()).await.unwrap().unwrap();
    assert!(matches!(hello.event, Some(pb::sync_event::Event::Hello(_))));
    tokio::time::sleep(timeout * 3).await;
    let status = client
        .status(pb::StatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.connections, 1,
        "the subscriber survived the handshake timeout"
    );
    server.stop().await;
}

#[tokio::test]
async fn sockets_beyond_the_cap_are_closed_at_once() {
    let (server, _tx) = server(ServerConfig {
        max_sockets: Some(3),
        handshake_timeout: Duration::from_secs(60),
        ..ServerConfig::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(server.grpc).await.unwrap());
    }
    wait_metric(server.metrics, "meshsync_sockets_open", 3).await;
    for i in 0..5 {
        let mut extra = TcpStream::connect(server.grpc).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), until_closed(&mut extra))
            .await
            .unwrap_or_else(|_| panic!("socket {} beyond the cap of 3 stayed open", i + 4));
    }
    assert!(metric(server.metrics, "meshsync_sockets_refused_total").await >= 5);
    assert_eq!(metric(server.metrics, "meshsync_sockets_open").await, 3);
    // Freeing a slot lets a real client in again.
    held.pop();
    wait_metric(server.metrics, "meshsync_sockets_open", 2).await;
    let mut client = within("connect", SyncClient::connect(server.url()))
        .await
        .unwrap();
    within("status", client.status(pb::StatusRequest::default()))
        .await
        .unwrap();
    drop(held);
    server.stop().await;
}
