//! A scripted, malicious `meshsync.v1.Sync` server for agent tests: raw HTTP/2 (the `h2` crate) on
//! a loopback socket, answering each `Subscribe` with whatever the test scripts — encoded
//! `SyncEvent`s in any order and number, endless repetitions, or a refusal whose `grpc-message`
//! holds any bytes. Every other call is refused with `UNIMPLEMENTED`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Response};
use meshsync_proto as pb;
use prost::Message;
use tokio::net::TcpListener;

/// How the fake answers one subscription.
pub enum Answer {
    /// These messages (each an encoded `SyncEvent`), then `then`.
    Stream { messages: Vec<Bytes>, then: Then },
    /// A trailers-only response with this gRPC status code and message (sent percent-encoded, as
    /// gRPC carries it, so it may hold any bytes).
    Refuse { code: u32, message: String },
}

/// What follows a stream's messages.
pub enum Then {
    /// Trailers with `grpc-status: 0`.
    Close,
    /// Nothing: the stream stays open until the client leaves.
    Hang,
    /// The messages again, forever (flow control permitting).
    Repeat,
}

/// The script: the n-th subscription (from 0) and its request → the answer.
pub type Script = dyn Fn(usize, &pb::SubscribeRequest) -> Answer + Send + Sync;

pub struct FakeServer {
    pub addr: SocketAddr,
    /// Subscriptions received so far.
    pub subscriptions: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    pub async fn start(
        script: impl Fn(usize, &pb::SubscribeRequest) -> Answer + Send + Sync + 'static,
    ) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let subscriptions = Arc::new(AtomicUsize::new(0));
        let script: Arc<Script> = Arc::new(script);
        let counter = subscriptions.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (script, counter) = (script.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(tcp).await else {
                        return;
                    };
                    while let Some(Ok((request, respond))) = conn.accept().await {
                        let (script, counter) = (script.clone(), counter.clone());
                        tokio::spawn(async move {
                            let _ = answer(request, respond, script.as_ref(), &counter).await;
                        });
                    }
                });
            }
        });
        FakeServer {
            addr,
            subscriptions,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn subscriptions(&self) -> usize {
        self.subscriptions.load(Ordering::SeqCst)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An encoded `SyncEvent` carrying `event`.
pub fn message(event: pb::sync_event::Event) -> Bytes {
    Bytes::from(pb::SyncEvent { event: Some(event) }.encode_to_vec())
}

async fn answer(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    script: &Script,
    counter: &AtomicUsize,
) -> Result<(), h2::Error> {
    let path = request.uri().path().to_string();
    let mut body = request.into_body();
    let mut received = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        received.extend_from_slice(&chunk);
    }
    if path != "/meshsync.v1.Sync/Subscribe" {
        respond.send_response(refusal(12, "not in this fake"), true)?;
        return Ok(());
    }
    let subscribe = if received.len() >= 5 {
        pb::SubscribeRequest::decode(&received[5..]).unwrap_or_default()
    } else {
        pb::SubscribeRequest::default()
    };
    let n = counter.fetch_add(1, Ordering::SeqCst);
    match script(n, &subscribe) {
        Answer::Refuse { code, message } => {
            respond.send_response(refusal(code, &message), true)?;
        }
        Answer::Stream { messages, then } => {
            let response = Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .body(())
                .expect("response");
            let mut stream = respond.send_response(response, false)?;
            loop {
                for m in &messages {
                    let mut framed = BytesMut::with_capacity(m.len() + 5);
                    framed.extend_from_slice(&[0]);
                    framed.extend_from_slice(&(m.len() as u32).to_be_bytes());
                    framed.extend_from_slice(m);
                    send_all(&mut stream, framed.freeze()).await?;
                }
                match then {
                    Then::Repeat => continue,
                    Then::Close => {
                        let mut trailers = HeaderMap::new();
                        trailers.insert("grpc-status", HeaderValue::from_static("0"));
                        stream.send_trailers(trailers)?;
                        return Ok(());
                    }
                    Then::Hang => {
                        // Until the client resets or the connection goes.
                        std::future::poll_fn(|cx| stream.poll_reset(cx)).await?;
                        return Ok(());
                    }
                }
            }
        }
    }
    Ok(())
}

/// Sends `data` as flow control allows; an error once the client has gone.
async fn send_all(stream: &mut h2::SendStream<Bytes>, mut data: Bytes) -> Result<(), h2::Error> {
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let granted = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(granted) => granted?,
            None => return Err(h2::Error::from(h2::Reason::CANCEL)),
        };
        if granted == 0 {
            tokio::task::yield_now().await;
            continue;
        }
        let chunk = data.split_to(granted.min(data.len()));
        stream.send_data(chunk, false)?;
    }
    Ok(())
}

/// A trailers-only gRPC response.
fn refusal(code: u32, message: &str) -> Response<()> {
    Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .header("grpc-status", code.to_string())
        .header("grpc-message", percent_encode(message))
        .body(())
        .expect("refusal")
}

/// gRPC's `grpc-message` encoding: bytes outside printable ASCII, and `%`, as `%XX`.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if (0x20..0x7f).contains(&b) && b != b'%' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
