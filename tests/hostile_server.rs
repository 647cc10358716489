//! An agent that stops reading must cost the server bounded memory: the breadcrumbs its stream
//! pins are released once it is more than `max_backlog_bytes` behind, whether or not HTTP/2 polls
//! the stream, and its connection is closed after the write timeout. A reading agent on the same
//! server is unaffected.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use meshsync_cache::CacheConfig;
use meshsync_datastore::{ResourceKey, SourceEvent, SourceStatus};
use meshsync_server::ServerConfig;
use support::h2raw::stalled_subscribe;
use support::{TestServer, http_get, until, until_in_sync, within};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const BOUND: u64 = 256 << 10;
const WRITE_TIMEOUT: Duration = Duration::from_secs(6);
const KEYS: u32 = 200;

/// A ~1 KiB WorkloadEndpoint, version `v`.
fn wep(i: u32, v: u32) -> SourceEvent {
    let name = format!("wep-{i}");
    SourceEvent::Upsert {
        key: ResourceKey::new("", "WorkloadEndpoint", "default", &name),
        value: Bytes::from(format!(
            "{{\"kind\":\"WorkloadEndpoint\",\"metadata\":{{\"name\":\"{name}\"}},\"spec\":{{\"v\":{v},\"pad\":\"{}\"}}}}",
            "x".repeat(1000)
        )),
        revision: format!("{v}").into(),
    }
}

async fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (_, body) = http_get(addr, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{body}"))
}

#[tokio::test]
async fn a_stalled_reader_pins_bounded_memory_and_is_closed_after_the_write_timeout() {
    let (tx, rx) = mpsc::channel(4096);
    let server = TestServer::start_with(
        ReceiverStream::new(rx),
        CacheConfig {
            max_batch: 10,
            ..CacheConfig::default()
        },
        ServerConfig {
            max_backlog_bytes: BOUND,
            write_timeout: WRITE_TIMEOUT,
            ..ServerConfig::default()
        },
    )
    .await;
    let status = |s| SourceEvent::Status {
        cluster: "".into(),
        status: s,
    };
    tx.send(SourceEvent::ResyncStart { cluster: "".into() })
        .await
        .unwrap();
    for i in 0..KEYS {
        tx.send(wep(i, 0)).await.unwrap();
    }
    tx.send(SourceEvent::ResyncDone { cluster: "".into() })
        .await
        .unwrap();
    tx.send(status(SourceStatus::InSync)).await.unwrap();
    let mut reader = server.agent("felix");
    until_in_sync(&mut reader).await;

    // Subscribes with an 8 KiB window and never reads: the stream stalls inside the snapshot.
    let stalled = stalled_subscribe(server.grpc, "stalled-node", 8 << 10).await;
    assert_eq!(stalled.response.status(), 200);
    within("both streams counted", async {
        while server.connections.active() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let pinned = Arc::downgrade(&server.cache.head());

    // Churn: ~1 KiB updates, far more than the bound, while the reader keeps up.
    let started = Instant::now();
    let mut v = 0;
    let mut max_backlog = 0;
    let released_in_time = loop {
        v += 1;
        for i in 0..KEYS {
            tx.send(wep(i, v)).await.unwrap();
        }
        let want = u64::from(KEYS) * (u64::from(v) + 1);
        until(&mut reader, "the reader keeps up", |m| m.seq() >= want).await;
        max_backlog =
            max_backlog.max(metric(server.metrics, "meshsync_stream_backlog_bytes_max").await);
        if pinned.strong_count() == 0 && server.connections.active() == 2 {
            break true;
        }
        if started.elapsed() > WRITE_TIMEOUT {
            break false;
        }
    };
    assert!(
        released_in_time,
        "the stalled stream still pinned the breadcrumb it stalled at after {:?} and {} updates \
         (backlog gauge {max_backlog} bytes, bound {BOUND})",
        started.elapsed(),
        v * KEYS
    );
    assert!(metric(server.metrics, "meshsync_streams_released_total").await >= 1);
    // What a stream pins is held to the bound plus about one watcher tick of churn.
    let churn_per_round = u64::from(KEYS) * 1200;
    assert!(
        max_backlog <= BOUND + 2 * churn_per_round,
        "backlog gauge reached {max_backlog} bytes with a bound of {BOUND}"
    );

    // The write timeout closes the connection (even though it answers pings).
    let closed = tokio::time::timeout(WRITE_TIMEOUT * 3, stalled.conn)
        .await
        .expect("the stalled connection was not closed within three write timeouts");
    drop(closed);
    within("the stalled stream released", async {
        while server.connections.active() != 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(
        metric(server.metrics, "meshsync_connections_closed_stalled_total").await,
        1
    );

    // The reader was never disturbed.
    v += 1;
    for i in 0..KEYS {
        tx.send(wep(i, v)).await.unwrap();
    }
    let want = u64::from(KEYS) * (u64::from(v) + 1);
    until(&mut reader, "the reader still follows", |m| m.seq() >= want).await;
    server.stop().await;
}
