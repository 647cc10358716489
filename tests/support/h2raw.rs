//! A raw HTTP/2 gRPC client (the `h2` crate) for hostile tests: it subscribes with a tiny flow
//! control window and never reads the response body, while its connection task keeps answering
//! pings — the agent that stopped reading but is not dead.
#![allow(dead_code)]

use std::net::SocketAddr;

use bytes::Bytes;
use meshsync_proto as pb;
use prost::Message;
use tokio::net::TcpStream;

/// A subscription whose body is never read. Dropping it closes nothing by itself; the connection
/// ends when the server closes it (`conn` completes).
pub struct Stalled {
    pub response: http::Response<h2::RecvStream>,
    pub conn: tokio::task::JoinHandle<Result<(), h2::Error>>,
    _send: h2::client::SendRequest<Bytes>,
}

pub async fn stalled_subscribe(addr: SocketAddr, node: &str, window: u32) -> Stalled {
    let request = pb::SubscribeRequest {
        node_name: node.into(),
        subscription: "felix".into(),
        ..Default::default()
    };
    stalled_subscribe_with(addr, &request, window).await
}

/// [`stalled_subscribe`] with any request (a resume token, anti-entropy digests, …).
pub async fn stalled_subscribe_with(
    addr: SocketAddr,
    subscribe: &pb::SubscribeRequest,
    window: u32,
) -> Stalled {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    stalled_subscribe_on(tcp, addr, subscribe, window).await
}

/// [`stalled_subscribe_with`] from the local address `local` (any of 127.0.0.0/8 on loopback):
/// another client as far as the server can tell.
pub async fn stalled_subscribe_from(
    local: std::net::IpAddr,
    addr: SocketAddr,
    subscribe: &pb::SubscribeRequest,
    window: u32,
) -> Stalled {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(local, 0)).expect("bind");
    let tcp = socket.connect(addr).await.expect("connect");
    stalled_subscribe_on(tcp, addr, subscribe, window).await
}

/// [`stalled_subscribe_with`] over a connected socket.
async fn stalled_subscribe_on(
    tcp: TcpStream,
    addr: SocketAddr,
    subscribe: &pb::SubscribeRequest,
    window: u32,
) -> Stalled {
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(window)
        .initial_connection_window_size(window)
        .handshake::<_, Bytes>(tcp)
        .await
        .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let mut send = send.ready().await.expect("ready");
    let request = http::Request::post(format!("http://{addr}/meshsync.v1.Sync/Subscribe"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let (response, mut body) = send.send_request(request, false).expect("send request");
    let msg = subscribe.encode_to_vec();
    let mut framed = Vec::with_capacity(msg.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    framed.extend_from_slice(&msg);
    body.send_data(Bytes::from(framed), true)
        .expect("send body");
    let response = response.await.expect("response headers");
    Stalled {
        response,
        conn,
        _send: send,
    }
}

/// One unary-or-streaming gRPC call with `message` (not necessarily protobuf) as the request,
/// framed as gRPC frames it; returns the `grpc-status` and `grpc-message` the server ended with
/// (trailers, or the headers of a trailers-only response).
pub async fn grpc_call_raw(addr: SocketAddr, path: &str, message: &[u8]) -> (String, String) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(conn);
    let mut send = send.ready().await.expect("ready");
    let request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let (response, mut body) = send.send_request(request, false).expect("send request");
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    body.send_data(Bytes::from(framed), true)
        .expect("send body");
    let response = response.await.expect("response headers");
    let header = |h: &http::HeaderMap, name: &str| {
        h.get(name).and_then(|v| v.to_str().ok()).map(String::from)
    };
    if let Some(status) = header(response.headers(), "grpc-status") {
        let message = header(response.headers(), "grpc-message").unwrap_or_default();
        return (status, message);
    }
    let mut recv = response.into_body();
    while let Some(chunk) = recv.data().await {
        if chunk.is_err() {
            break;
        }
    }
    let trailers = recv.trailers().await.ok().flatten().unwrap_or_default();
    (
        header(&trailers, "grpc-status").unwrap_or_default(),
        header(&trailers, "grpc-message").unwrap_or_default(),
    )
}
