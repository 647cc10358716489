//! zstd negotiated in the hello, on real sockets with real gRPC clients: a raw client that asks
//! for it gets `CompressedBatch`es that decode to exactly what a plain client gets; the agent
//! library accepts it by default and its mirror verifies against the server's digests; a server
//! with compression off, or a client that does not ask, gets plain frames; and the real binary's
//! agent says which compression the hello named.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::collections::BTreeMap;

use bytes::Bytes;
use meshsync_cache::CacheConfig;
use meshsync_datastore::SourceEvent;
use meshsync_proto::compression::decompress_batch;
use meshsync_proto::{self as pb, sync_client::SyncClient, sync_event};
use meshsync_server::ServerConfig;
use support::endpoints::{server_with_endpoints, wep};
use support::{TestServer, until_in_sync, within};
use tokio::sync::mpsc;

const KEYS: usize = 3000;

/// A server over a hand-driven source holding `KEYS` endpoints, in sync.
async fn server_with_data(config: ServerConfig) -> (mpsc::Sender<SourceEvent>, TestServer) {
    server_with_endpoints(KEYS, CacheConfig::default(), config).await
}

/// What a raw client saw: the hello, every update by key, how many events came compressed, and
/// the compressed and uncompressed sizes of those.
#[derive(Default)]
struct Seen {
    hello: Option<pb::Hello>,
    values: BTreeMap<String, (u64, Bytes)>,
    compressed_events: usize,
    plain_update_events: usize,
    compressed_bytes: usize,
    uncompressed_bytes: usize,
    statuses: usize,
    /// Compressed events after the first status: live batches, not the snapshot.
    live_compressed_events: usize,
}

impl Seen {
    fn apply(&mut self, batch: pb::UpdateBatch) {
        for u in batch.updates {
            self.values.insert(u.name, (u.seq, u.value));
        }
    }
}

/// Subscribes with `accept` and reads until `stop(seen)` holds after a status or a batch; tells
/// `snapshot_done` when the first status (the end of the snapshot) arrived.
async fn raw_subscribe(
    url: String,
    accept: Vec<pb::Compression>,
    mut snapshot_done: Option<tokio::sync::oneshot::Sender<()>>,
    stop: impl Fn(&Seen) -> bool,
) -> Seen {
    let mut client = SyncClient::connect(url).await.unwrap();
    let mut stream = client
        .subscribe(pb::SubscribeRequest {
            node_name: "raw".into(),
            subscription: "felix".into(),
            accept_compression: accept.iter().map(|c| *c as i32).collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Seen::default();
    within("the raw client's stream", async {
        while let Some(event) = stream.message().await.unwrap() {
            match event.event {
                Some(sync_event::Event::Hello(h)) => seen.hello = Some(h),
                Some(sync_event::Event::Updates(b)) => {
                    seen.plain_update_events += 1;
                    seen.apply(b);
                }
                Some(sync_event::Event::Compressed(c)) => {
                    seen.compressed_events += 1;
                    if seen.statuses > 0 {
                        seen.live_compressed_events += 1;
                    }
                    seen.compressed_bytes += c.data.len();
                    seen.uncompressed_bytes += c.uncompressed_len as usize;
                    let batch = decompress_batch(&c, 64 << 20).expect("a readable batch");
                    seen.apply(batch);
                }
                Some(sync_event::Event::Status(_)) => {
                    seen.statuses += 1;
                    if let Some(done) = snapshot_done.take() {
                        let _ = done.send(());
                    }
                }
                _ => {}
            }
            if seen.statuses > 0 && stop(&seen) {
                return;
            }
        }
        panic!("the stream ended");
    })
    .await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_clients_get_compressed_batches_that_decode_to_the_plain_stream() {
    let (tx, server) = server_with_data(ServerConfig::default()).await;
    let full = |s: &Seen| s.values.len() == KEYS;
    let plain = raw_subscribe(server.url(), vec![], None, full).await;
    let zstd = raw_subscribe(server.url(), vec![pb::Compression::Zstd], None, full).await;

    assert_eq!(
        plain.hello.as_ref().unwrap().compression,
        pb::Compression::None as i32
    );
    assert_eq!(plain.compressed_events, 0);
    assert_eq!(
        zstd.hello.as_ref().unwrap().compression,
        pb::Compression::Zstd as i32
    );
    assert!(zstd.compressed_events > 0 && zstd.plain_update_events == 0);
    assert_eq!(zstd.values, plain.values, "the same snapshot, key for key");
    // JSON endpoints compress well; a snapshot that did not shrink would mean nothing happened.
    assert!(
        zstd.compressed_bytes * 4 < zstd.uncompressed_bytes,
        "{} compressed of {}",
        zstd.compressed_bytes,
        zstd.uncompressed_bytes
    );

    // Live: a batch of 200 changes reaches a following zstd client compressed, and decodes to
    // the new values.
    let url = server.url();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let follower = tokio::spawn(async move {
        raw_subscribe(url, vec![pb::Compression::Zstd], Some(done_tx), |s| {
            (0..200).all(|i| {
                s.values
                    .get(&format!("pod-{i:05}"))
                    .is_some_and(|(_, v)| v.windows(5).any(|w| w == b"\"v\":2"))
            })
        })
        .await
    });
    within("the follower's snapshot", done_rx).await.unwrap();
    for i in 0..200 {
        tx.send(wep(i, 2)).await.unwrap();
    }
    let live = follower.await.unwrap();
    assert!(
        live.live_compressed_events > 0,
        "live batches compressed too"
    );
    // /metrics counts what was compressed (process-wide: other tests in this binary add to it).
    let (status, body) = support::http_get(server.metrics, "/metrics").await;
    assert_eq!(status, 200);
    let metric = |name: &str| -> u64 {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{body}"))
    };
    assert!(metric("meshsync_compression_frames_total") >= 1);
    let (input, output) = (
        metric("meshsync_compression_input_bytes_total"),
        metric("meshsync_compression_output_bytes_total"),
    );
    assert!(output > 0 && output * 4 < input, "{output} of {input}");
    assert!(body.contains("# HELP meshsync_compression_frames_total "));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_accepts_zstd_by_default_and_its_digests_verify() {
    let (tx, server) = server_with_data(ServerConfig::default()).await;
    let mut agent = server.agent("felix");
    let events = until_in_sync(&mut agent).await;
    let hello = events
        .iter()
        .find_map(|e| match e {
            meshsync_agent::AgentEvent::Connected { hello, .. } => Some(hello.clone()),
            _ => None,
        })
        .expect("a hello");
    assert_eq!(hello.compression, pb::Compression::Zstd as i32);
    assert_eq!(agent.mirror().len(), KEYS);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, meshsync_agent::AgentEvent::DigestMismatch(_))),
        "the mirror built from compressed batches matches the server's digests"
    );
    for i in 0..300 {
        tx.send(wep(i, 3)).await.unwrap();
    }
    support::until(&mut agent, "300 live updates", |m| {
        (0..300).all(|i| {
            let key = meshsync_agent::MirrorKey {
                cluster: String::new(),
                kind: "WorkloadEndpoint".into(),
                namespace: "default".into(),
                name: format!("pod-{i:05}"),
            };
            m.resources()
                .get(&key)
                .is_some_and(|e| e.value.windows(5).any(|w| w == b"\"v\":3"))
        })
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_compression_off_sends_plain_frames_to_everyone() {
    let (_tx, server) = server_with_data(ServerConfig {
        compression: false,
        ..ServerConfig::default()
    })
    .await;
    let zstd = raw_subscribe(server.url(), vec![pb::Compression::Zstd], None, |s| {
        s.values.len() == KEYS
    })
    .await;
    assert_eq!(
        zstd.hello.unwrap().compression,
        pb::Compression::None as i32
    );
    assert_eq!(zstd.compressed_events, 0);
    let mut agent = server.agent("felix");
    until_in_sync(&mut agent).await;
    assert_eq!(agent.mirror().len(), KEYS);
    server.stop().await;
}
