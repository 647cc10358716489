//! Clients that start a request and never finish it, on the real `meshsync serve` over real TCP
//! (issue 21): half-sent request bodies on the gRPC port are bounded per connection and refused at
//! their deadline; slow request headers on the health and metrics ports are closed at theirs, both
//! ports keep a socket cap, and `/liveness` keeps answering under the attack; a half-sent request
//! does not keep a draining server alive past its drain period.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::hostile::{Served, rss_kib, serve, serve_with, wait_until};
use support::log_text::text_field;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SUBSCRIBE: &str = "/meshsync.v1.Sync/Subscribe";

/// Open descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A gRPC request with `body` sent and the stream left open (`end_of_stream` false).
fn start_request(
    send: &mut h2::client::SendRequest<Bytes>,
    addr: SocketAddr,
    body: Bytes,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let request = http::Request::post(format!("http://{addr}{SUBSCRIBE}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let (response, mut stream) = send.send_request(request, false).expect("send request");
    stream.send_data(body, false).expect("send data");
    (response, stream)
}

/// The `grpc-status` of a response (trailers-only or not), reading its body to the end.
async fn grpc_status(response: h2::client::ResponseFuture) -> String {
    let Ok(response) = response.await else {
        return "reset".into();
    };
    if let Some(s) = response.headers().get("grpc-status") {
        return s.to_str().unwrap_or("?").to_string();
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        match chunk {
            Ok(data) => {
                let _ = body.flow_control().release_capacity(data.len());
            }
            Err(_) => return "reset".into(),
        }
    }
    match body.trailers().await {
        Ok(Some(t)) => t
            .get("grpc-status")
            .and_then(|s| s.to_str().ok())
            .unwrap_or("?")
            .to_string(),
        _ => "reset".into(),
    }
}

/// A complete `SubscribeRequest`, gRPC-framed.
fn subscribe_message(node: &str) -> Bytes {
    use prost::Message;
    let msg = meshsync_proto::SubscribeRequest {
        node_name: node.into(),
        subscription: "felix".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let mut framed = vec![0];
    framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    framed.extend_from_slice(&msg);
    Bytes::from(framed)
}

/// The gRPC header of a 1 MiB message and all of it but its last byte: never complete.
fn almost_a_mebibyte() -> Bytes {
    let len: u32 = 1 << 20;
    let mut framed = vec![0];
    framed.extend_from_slice(&len.to_be_bytes());
    framed.resize(5 + len as usize - 1, b'x');
    Bytes::from(framed)
}

/// 10 connections, each past its handshake with a served subscription, then 15 `Subscribe`
/// requests each whose 1 MiB body is never finished (150 MiB sent in all): the server buffers a
/// bounded amount per connection, refuses every such request (over the budget at once, the rest
/// at the request deadline), and its memory never grows by the 150 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_request_bodies_are_bounded_and_refused_at_their_deadline() {
    let mut served = serve(&["--handshake-timeout", "3"]);
    let pid = served.serve.child.0.id();
    let grpc = served.grpc;
    let baseline = rss_kib(pid);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let sampling = {
        let peak = peak.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let payload = almost_a_mebibyte();
    let mut connections = Vec::new();
    let mut pending = Vec::new();
    for c in 0..10 {
        let tcp = TcpStream::connect(grpc).await.expect("connect");
        let (send, conn) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .handshake::<_, Bytes>(tcp)
            .await
            .expect("h2 handshake");
        let conn = tokio::spawn(conn);
        let mut send = send.ready().await.expect("ready");
        // A real subscription first, so the connection is past its handshake timeout.
        let request = http::Request::post(format!("http://{grpc}{SUBSCRIBE}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .expect("request");
        let (response, mut body) = send.send_request(request, false).expect("send");
        body.send_data(subscribe_message(&format!("node-{c}")), true)
            .expect("send");
        let served_stream = response.await.expect("the subscription is served");
        assert_eq!(served_stream.status(), 200);
        for _ in 0..15 {
            send = send.ready().await.expect("ready");
            pending.push(start_request(&mut send, grpc, payload.clone()));
        }
        connections.push((send, conn, served_stream));
    }
    // Every unfinished request is answered with an error: none waits for ever. (The request
    // halves are kept open meanwhile.)
    let (responses, _streams): (Vec<_>, Vec<_>) = pending.into_iter().unzip();
    let statuses = tokio::time::timeout(
        Duration::from_secs(30),
        futures::future::join_all(responses.into_iter().map(grpc_status)),
    )
    .await
    .expect("every half-sent request is refused by its deadline");
    assert!(
        statuses.iter().all(|s| s != "0"),
        "half-sent requests answered with OK: {statuses:?}"
    );
    assert!(
        statuses.iter().any(|s| s == "4"),
        "no request refused at its deadline (DEADLINE_EXCEEDED): {statuses:?}"
    );
    let _ = sampling.join();
    let grown_mib = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(baseline)
        / 1024;
    eprintln!("server RSS grew by {grown_mib} MiB at most; statuses {statuses:?}");
    assert!(
        grown_mib < 64,
        "150 half-sent 1 MiB bodies grew the server by {grown_mib} MiB"
    );
    served.serve.wait_line("the deadline line", |l| {
        l.contains("request body not complete within the request deadline")
    });
    served.serve.wait_line("the budget line", |l| {
        l.contains("request bodies of one connection above their budget")
    });
    // The connections and their subscriptions are still served.
    for (_, conn, _) in &connections {
        assert!(!conn.is_finished(), "a connection was closed");
    }
}

/// Opens a socket to `addr` and sends a request line and one header, never the blank line.
async fn slow_header(addr: SocketAddr) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /liveness HTTP/1.1\r\nHost: x\r\n")
        .await
        .ok()?;
    Some(s)
}

/// True once the server closed `socket` (EOF or reset) within `limit`.
async fn closed_within(socket: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(limit, async {
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

/// `GET path` answered within 5 s: its status code.
async fn get_within(addr: SocketAddr, path: &str) -> Option<u16> {
    tokio::time::timeout(Duration::from_secs(5), support::http_get(addr, path))
        .await
        .ok()
        .map(|(code, _)| code)
}

fn metrics_addr(served: &mut Served) -> SocketAddr {
    let line = served.serve.wait_serving();
    text_field(&line, "metrics")
        .and_then(|t| t.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok())
        .unwrap_or_else(|| panic!("no metrics= in {line:?}"))
}

/// 600 connections (300 on each HTTP port) that send a request line and one header, never the
/// blank line, on a server with 512 descriptors: the server's descriptors stay bounded,
/// `/liveness` answers throughout, an agent's port still serves, and every slow socket is closed
/// at the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_on_the_health_and_metrics_ports_are_capped_and_timed_out() {
    let mut served = serve_with(
        &[
            "--handshake-timeout",
            "3",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        Some(512),
    );
    let metrics = metrics_addr(&mut served);
    let pid = served.serve.child.0.id();
    let health = served.health;
    assert_eq!(get_within(health, "/liveness").await, Some(200));
    let baseline = open_fds(pid);
    let mut slow = Vec::new();
    for i in 0..600 {
        let addr = if i % 2 == 0 { health } else { metrics };
        if let Some(s) = slow_header(addr).await {
            slow.push(s);
        }
    }
    // Every probe answers while the slow sockets are still open on our side.
    for _ in 0..5 {
        assert_eq!(
            get_within(health, "/liveness").await,
            Some(200),
            "/liveness did not answer under the attack"
        );
        assert_eq!(get_within(metrics, "/metrics").await, Some(200));
    }
    let fds = open_fds(pid);
    eprintln!("descriptors under the attack: {fds} (baseline {baseline})");
    assert!(
        fds < baseline + 150,
        "600 slow sockets took {} descriptors (baseline {baseline})",
        fds - baseline
    );
    // The agents' port still serves.
    let (status, message) =
        support::h2raw::grpc_call_raw(served.grpc, "/meshsync.v1.Sync/Status", &[]).await;
    assert_eq!(status, "0", "Status: {message}");
    // Each slow socket is closed: evicted at the cap or at the header timeout.
    for s in &mut slow {
        assert!(
            closed_within(s, Duration::from_secs(15)).await,
            "a socket that never finished its headers is still open"
        );
    }
    served.serve.wait_line("the eviction line", |l| {
        l.contains("HTTP socket limit reached; closing the oldest connection without a request")
    });
    wait_until(
        "descriptors back near the baseline",
        Duration::from_secs(20),
        || open_fds(pid) <= baseline + 8,
    );
}

/// With `--shutdown-drain 2`, a client holding a `Subscribe` body unfinished (its connection
/// answers pings) does not keep the server running: it exits 0 once the drain period is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_does_not_outlive_the_drain() {
    // The request deadline (the handshake timeout) is far beyond the drain: only the drain ends it.
    let mut served = serve(&["--shutdown-drain", "2", "--handshake-timeout", "120"]);
    let grpc = served.grpc;
    let tcp = TcpStream::connect(grpc).await.expect("connect");
    let (send, mut conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let mut ping_pong = conn.ping_pong().expect("ping pong");
    let conn = tokio::spawn(conn);
    let mut send = send.ready().await.expect("ready");
    let (_response, _stream) =
        start_request(&mut send, grpc, Bytes::from_static(&[0, 0, 0, 0, 100, 1]));
    // The server has read the request's frames once it answers a ping sent after them.
    tokio::time::timeout(Duration::from_secs(10), ping_pong.ping(h2::Ping::opaque()))
        .await
        .expect("ping answered")
        .expect("ping");
    let pid = served.serve.child.0.id();
    let signalled = Instant::now();
    // SAFETY: sending SIGTERM to our own child process.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let child = &mut served.serve.child.0;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(20),
            "the server still runs 20 s after SIGTERM with --shutdown-drain 2"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
    drop(conn);
}
