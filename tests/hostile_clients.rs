//! Clients that do not speak gRPC, or speak it badly, on the real server over real TCP (issue 13):
//! HTTP/1.1 requests, garbage bytes, a malformed request message, a thousand idle connections
//! and a `Status` flood. Each is refused or absorbed, the log says so once per cause (not once per
//! connection), and an agent on the same server keeps receiving updates throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use meshsync_datastore::{ResourceKey, SourceEvent, SourceStatus};
use meshsync_proto::{self as pb, sync_client::SyncClient};
use support::{TestServer, http_get, next_update, until_in_sync, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_stream::wrappers::ReceiverStream;

fn gns(i: u32) -> SourceEvent {
    SourceEvent::Upsert {
        key: ResourceKey::new("", "GlobalNetworkSet", "", &format!("set-{i}")),
        value: Bytes::from(format!(
            r#"{{"kind":"GlobalNetworkSet","metadata":{{"name":"set-{i}"}}}}"#
        )),
        revision: i.to_string().into(),
    }
}

async fn metric(addr: std::net::SocketAddr, name: &str) -> u64 {
    let (_, body) = http_get(addr, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{body}"))
}

/// Sends `bytes` and reads until the server closes the socket; true if it did within 5 s.
async fn closed_after(addr: std::net::SocketAddr, bytes: &[u8]) -> bool {
    let Ok(mut socket) = TcpStream::connect(addr).await else {
        return true;
    };
    let _ = socket.write_all(bytes).await;
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_grpc_and_abusive_clients_do_not_disturb_an_agent() {
    support::logs::install();
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tx.send(SourceEvent::ResyncStart { cluster: "".into() })
        .await
        .unwrap();
    tx.send(gns(0)).await.unwrap();
    tx.send(SourceEvent::ResyncDone { cluster: "".into() })
        .await
        .unwrap();
    tx.send(SourceEvent::Status {
        cluster: "".into(),
        status: SourceStatus::InSync,
    })
    .await
    .unwrap();
    let server = TestServer::start(ReceiverStream::new(rx)).await;
    let mut agent = server.agent("all");
    until_in_sync(&mut agent).await;

    // HTTP/1.1 and garbage, many times each: every connection closed, one line per cause.
    for _ in 0..20 {
        assert!(closed_after(server.grpc, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await);
        assert!(closed_after(server.grpc, b"\x00\x01garbage\xff\xfe").await);
    }
    let refused = metric(
        server.metrics,
        "meshsync_connections_refused_protocol_total",
    )
    .await;
    assert_eq!(refused, 40, "every non-HTTP/2 connection is counted");
    let http1 = support::logs::lines_with(&["does not speak gRPC", "HTTP/1.x request"]);
    let garbage = support::logs::lines_with(&["does not speak gRPC", "garbage"]);
    assert_eq!(
        (http1.len(), garbage.len()),
        (1, 1),
        "one line per cause: {http1:?} {garbage:?}"
    );

    // A malformed request message: a gRPC error naming the problem, the server unharmed.
    let (code, message) = support::h2raw::grpc_call_raw(
        server.grpc,
        "/meshsync.v1.Sync/Subscribe",
        b"\xff\xff\xff\xff\x0f not protobuf",
    )
    .await;
    assert!(
        code == "3" || code == "13",
        "INVALID_ARGUMENT or INTERNAL, got {code} {message:?}"
    );
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();

    // A thousand connections that complete HTTP/2 but never ask for anything, and a Status flood.
    let mut idle = Vec::new();
    for _ in 0..1000 {
        if let Ok(mut s) = TcpStream::connect(server.grpc).await {
            let _ = s
                .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
                .await;
            idle.push(s);
        }
    }
    let mut client = SyncClient::new(channel);
    let flood = tokio::spawn(async move {
        let mut ok = 0u32;
        for _ in 0..2000 {
            if client.status(pb::StatusRequest::default()).await.is_ok() {
                ok += 1;
            }
        }
        ok
    });
    // Meanwhile the agent keeps receiving every update, promptly.
    for i in 1..=20 {
        let sent = Instant::now();
        tx.send(gns(i)).await.unwrap();
        let u = next_update(&mut agent).await;
        assert_eq!(u.name, format!("set-{i}"));
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "update {i} took {:?}",
            sent.elapsed()
        );
    }
    let ok = within("the Status flood", flood).await.unwrap();
    assert_eq!(ok, 2000, "every Status call answered");
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_cannot_open_more_than_its_share_of_streams() {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(SourceEvent::Status {
        cluster: "".into(),
        status: SourceStatus::InSync,
    })
    .await
    .unwrap();
    let server = TestServer::start(ReceiverStream::new(rx)).await;
    let limit = meshsync_server::ServerConfig::default().max_streams_per_connection as usize;
    let tcp = TcpStream::connect(server.grpc).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(conn);
    let mut open = Vec::new();
    let request = || {
        http::Request::post(format!("http://{}/meshsync.v1.Sync/Subscribe", server.grpc))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap()
    };
    let subscribe = || {
        use prost::Message;
        let msg = pb::SubscribeRequest {
            node_name: "multiplexer".into(),
            subscription: "felix".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let mut framed = vec![0u8];
        framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        framed.extend_from_slice(&msg);
        Bytes::from(framed)
    };
    let mut send = send;
    for _ in 0..limit {
        send = within("a stream slot", send.ready()).await.expect("ready");
        let (response, mut stream) = send.send_request(request(), false).expect("send");
        stream.send_data(subscribe(), true).expect("request body");
        open.push((response, stream));
    }
    // The first `limit` streams are served (their response headers arrive).
    let mut served = Vec::new();
    for (response, stream) in open {
        let response = within("a served stream", response).await.expect("response");
        assert_eq!(response.status(), 200);
        served.push((response, stream));
    }
    // One more is held back by the limit the server advertised: no response while the others
    // stay open...
    send = within("ready", send.ready()).await.expect("ready");
    let (extra, mut extra_body) = send.send_request(request(), false).expect("send");
    extra_body
        .send_data(subscribe(), true)
        .expect("request body");
    let mut extra = Box::pin(extra);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut extra)
            .await
            .is_err(),
        "a {}th concurrent stream was served",
        limit + 1
    );
    // ...and served once one of them ends.
    drop(served.pop());
    let response = within("the held-back stream", extra)
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
}
