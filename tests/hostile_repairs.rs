//! Expensive repairs (issue 21, item 2). A resume or an anti-entropy answer is encoded for one
//! stream, while a full snapshot is shared by all: a client that opens many streams asking for
//! repairs that amount to the whole snapshot (a resume from seq 0, digests that differ in every
//! bucket) and then never reads must not make the server hold a private copy of the snapshot per
//! stream. Beyond half the snapshot the server sends the shared full snapshot instead —
//! still a complete repair, which the real agent checks by its digests.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::time::Duration;

use meshsync_agent::AgentConfig;
use meshsync_cache::CacheConfig;
use meshsync_proto as pb;
use meshsync_server::ServerConfig;
use support::endpoint_files::{wait_for_keys, write_endpoints};
use support::endpoints::{server_with_endpoints, wep, wep_deleted};
use support::h2raw::stalled_subscribe_with;
use support::hostile::{rss_kib, serve, wait_until};
use support::log_text::text_message_is;
use support::reconnects::{assert_no_mismatch, last_hello, updates_after_hello};
use support::relay::Relay;
use support::{until, until_in_sync};

const ENDPOINTS: usize = 2000;
/// Streams of each kind (resume from seq 0, anti-entropy with every bucket differing).
const STREAMS: usize = 30;

#[test]
fn many_stalled_streams_asking_for_whole_snapshot_repairs_share_the_snapshot() {
    let mut served = serve(&[]);
    write_endpoints(served.dir.path(), ENDPOINTS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let addr = served.grpc;
    let epoch = runtime.block_on(wait_for_keys(
        addr,
        ENDPOINTS as u64,
        Duration::from_secs(60),
    ));
    served.serve.wait_line("in sync", |l| {
        l.contains("Sending in-sync update for local datastore")
    });
    let pid = served.serve.child.0.id();
    let before = rss_kib(pid);
    // One client, many streams: half resume from seq 0 (the genesis is still retained: the
    // history keeps 64 MiB of changes), half ask for anti-entropy with digests that match no
    // bucket. None of them ever reads past its flow-control window.
    let stalled = runtime.block_on(async {
        let mut stalled = Vec::new();
        for i in 0..STREAMS {
            let resume = pb::SubscribeRequest {
                node_name: format!("resume-{i}"),
                subscription: "felix".into(),
                resume: Some(pb::ResumeToken { epoch, seq: 0 }),
                ..Default::default()
            };
            stalled.push(stalled_subscribe_with(addr, &resume, 65_535).await);
            let anti_entropy = pb::SubscribeRequest {
                node_name: format!("anti-entropy-{i}"),
                subscription: "felix".into(),
                mirror: vec![pb::BucketDigests {
                    cluster: String::new(),
                    digests: vec![1; meshsync_proto::digest::MAX_BUCKETS],
                }],
                ..Default::default()
            };
            stalled.push(stalled_subscribe_with(addr, &anti_entropy, 65_535).await);
        }
        stalled
    });
    // Every stream has queued its answer: each anti-entropy stream logged its decision, and each
    // resume either was answered with a full snapshot at once or logged its coalesced difference.
    let answered = |lines: &[String]| {
        let anti_entropy = lines
            .iter()
            .filter(|l| l.contains("anti-entropy:") && l.contains("node=anti-entropy-"))
            .count();
        let resumed = lines
            .iter()
            .filter(|l| {
                l.contains("node=resume-")
                    && (text_message_is(l, "new subscription") && l.contains("path=\"full\"")
                        || l.contains("sending a coalesced difference"))
            })
            .count();
        anti_entropy == STREAMS && resumed == STREAMS
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !answered(&served.serve.lines) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match served.serve.rx.recv_timeout(left) {
            Ok(line) => served.serve.lines.push(line),
            Err(e) => panic!(
                "{e} waiting for every stream's answer:\n{}",
                served.serve.lines.join("\n")
            ),
        }
    }
    // What they queued is held until the write timeout (120 s): measure it now.
    let after = rss_kib(pid);
    let grown_mib = after.saturating_sub(before) as f64 / 1024.0;
    eprintln!(
        "RSS {:.1} MiB before, {:.1} MiB with {} stalled repair streams (+{grown_mib:.1} MiB)",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        2 * STREAMS
    );
    wait_until(
        "the stalled connections to be open",
        Duration::from_secs(1),
        || stalled.iter().all(|s| !s.conn.is_finished()),
    );
    // The snapshot is about 2 MiB of values: a private copy per stream is 60 × 2 MiB and more;
    // shared, the streams cost their flow-control windows and bookkeeping.
    assert!(
        grown_mib < 40.0,
        "{} stalled repair streams grew the server by {grown_mib:.1} MiB",
        2 * STREAMS
    );
}

/// An agent whose mirror differs from the server's almost everywhere is repaired by the shared
/// snapshot behind a `Replace` of everything — on the anti-entropy path, with its digests
/// verified and the keys only it held removed — and one whose resume would carry most of the
/// snapshot is refused the resume and gets the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repairs_larger_than_half_the_snapshot_are_the_shared_snapshot_and_still_exact() {
    const KEYS: usize = 400;
    let (_a_tx, a) =
        server_with_endpoints(KEYS, CacheConfig::default(), ServerConfig::default()).await;
    // Replica B: every endpoint changed, 50 deleted, 30 only it has.
    let (b_tx, b) =
        server_with_endpoints(KEYS, CacheConfig::default(), ServerConfig::default()).await;
    for i in 0..KEYS {
        b_tx.send(wep(i, 2)).await.unwrap();
    }
    for i in 0..50 {
        b_tx.send(wep_deleted(i)).await.unwrap();
    }
    for i in 0..30 {
        b_tx.send(wep(5000 + i, 1)).await.unwrap();
    }
    let expected = KEYS - 50 + 30;
    support::within(
        "replica B's changes",
        b.cache
            .wait_for_status(|s| s.total_keys() == expected as u64),
    )
    .await;

    let relay = Relay::start(a.grpc).await;
    let mut config: AgentConfig = a.agent_config("felix");
    config.servers = vec![format!("http://127.0.0.1:{}", relay.port), b.url()];
    let mut agent = meshsync_agent::Agent::new(config).unwrap();
    let first = until_in_sync(&mut agent).await;
    assert_eq!(last_hello(&first).path, pb::SyncPath::Full as i32);

    relay.cut();
    let moved = until(&mut agent, "the agent in sync on replica B", |m| {
        m.in_sync() && m.epoch() == b.cache.epoch()
    })
    .await;
    assert_eq!(last_hello(&moved).path, pb::SyncPath::AntiEntropy as i32);
    assert_no_mismatch(&moved);
    assert_eq!(
        updates_after_hello(&moved).len(),
        expected,
        "the whole snapshot"
    );
    let mirror = agent.mirror();
    assert_eq!(mirror.len(), expected);
    assert!(mirror.verify().is_empty(), "digests equal B's");
    assert!(
        !mirror
            .resources()
            .iter()
            .any(|(k, _)| k.name == "pod-00007"),
        "a key only A had is gone"
    );

    // Now resuming on B after more than half its endpoints changed.
    let b_relay = Relay::start(b.grpc).await;
    let mut config: AgentConfig = b.agent_config("felix");
    config.servers = vec![format!("http://127.0.0.1:{}", b_relay.port)];
    let mut agent = meshsync_agent::Agent::new(config).unwrap();
    until_in_sync(&mut agent).await;
    b_relay.cut();
    until(&mut agent, "the agent to notice the cut", |m| {
        m.overall().is_none()
    })
    .await;
    let before = b.cache.head().seq;
    for i in 100..KEYS {
        b_tx.send(wep(i, 3)).await.unwrap();
    }
    let last = before + (KEYS - 100) as u64;
    support::within("the changes", async {
        while b.cache.head().seq < last {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    b_relay.restore();
    let again = until(&mut agent, "the agent back in sync", |m| {
        m.in_sync() && m.seq() >= last
    })
    .await;
    // The resume is refused; the agent's digests then ask for anti-entropy, which replaces
    // everything with the shared snapshot as well.
    assert_eq!(last_hello(&again).path, pb::SyncPath::AntiEntropy as i32);
    // (A snapshot shared within its reuse second may be older: the changes since follow it.)
    assert!(updates_after_hello(&again).len() >= expected);
    assert_no_mismatch(&again);
    let mirror = agent.mirror();
    assert_eq!(mirror.len(), expected);
    let changed = mirror
        .resources()
        .iter()
        .filter(|(_, e)| e.value.ends_with(br#""v":3}}"#))
        .count();
    assert_eq!(
        changed,
        KEYS - 100,
        "every changed endpoint at its last version"
    );
    b.stop().await;
    a.stop().await;
}
