//! Stalled readers under churn on the real binary (issue 21, item 1): subscribers that never read
//! — gRPC clients that stop polling and raw HTTP/2 clients that never send WINDOW_UPDATE — while
//! 1,000 endpoints of about a kibibyte churn, one change per breadcrumb. The server's resident
//! memory must reach a plateau (each stalled stream costs a bounded amount) instead of growing
//! with the churn until the write timeout closes the connections. It grew by about 2 MiB/s while
//! a stream that had been waiting at the head when its peer stopped reading held that breadcrumb
//! across the wait: the watcher released the stream's position, but not the suspended wait's
//! reference, so every later breadcrumb stayed alive (12,600 after 60 s instead of the history's
//! 3,700).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use meshsync_proto::{self as pb, sync_client::SyncClient};
use support::endpoint_files::{wait_for_keys, write_endpoint, write_endpoints};
use support::h2raw::stalled_subscribe;
use support::hostile::{Served, rss_kib, serve, wait_until};

const ENDPOINTS: usize = 1000;

/// Rewrites endpoints round-robin at about `per_second` writes per second for `duration`,
/// calling `sample` about once a second; `generation` counts the writes.
fn churn(
    dir: &Path,
    per_second: u64,
    duration: Duration,
    generation: &mut u64,
    mut sample: impl FnMut(),
) {
    let start = Instant::now();
    let mut written = 0u64;
    let mut next_sample = start;
    while start.elapsed() < duration {
        let due = start.elapsed().as_millis() as u64 * per_second / 1000;
        while written < due {
            *generation += 1;
            write_endpoint(dir, (*generation as usize) % ENDPOINTS, *generation);
            written += 1;
        }
        if Instant::now() >= next_sample {
            sample();
            next_sample += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The server's metrics of interest, one line.
fn metrics(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(addr).expect("connect metrics");
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("request metrics");
    let mut body = String::new();
    let _ = socket.read_to_string(&mut body);
    body.lines()
        .filter(|l| {
            [
                "meshsync_breadcrumbs_live",
                "meshsync_breadcrumb_seq",
                "meshsync_streams_released_total",
                "meshsync_stream_backlog_bytes_max",
            ]
            .iter()
            .any(|m| l.starts_with(m))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The real server's RSS in MiB.
fn rss_mib(served: &Served) -> f64 {
    rss_kib(served.serve.child.0.id()) as f64 / 1024.0
}

#[test]
fn stalled_readers_under_churn_cost_bounded_memory() {
    let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    let served = serve(&[
        "--metrics-listen",
        &metrics_addr,
        "--resume-history-bytes",
        "4194304",
        // One change per breadcrumb, as an etcd watch delivers them (the file datastore batches
        // a directory's changes).
        "--max-batch",
        "1",
        // Longer than the test: the stalled connections must stay open throughout.
        "--write-timeout",
        "600",
    ]);
    let dir = served.dir.path().to_path_buf();
    write_endpoints(&dir, ENDPOINTS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let addr = served.grpc;
    // Every endpoint listed before the stalled clients subscribe: their snapshots are full.
    runtime.block_on(wait_for_keys(
        addr,
        ENDPOINTS as u64,
        Duration::from_secs(60),
    ));
    // Ten gRPC subscribers that never poll their stream, ten raw HTTP/2 ones that never open
    // their window.
    let stalled = runtime.block_on(async {
        let mut grpc = Vec::new();
        let mut raw = Vec::new();
        for i in 0..10 {
            let mut client = SyncClient::connect(format!("http://{addr}"))
                .await
                .expect("connect");
            let response = client
                .subscribe(pb::SubscribeRequest {
                    node_name: format!("stalled-grpc-{i}"),
                    subscription: "felix".into(),
                    accept_compression: vec![pb::Compression::Zstd as i32],
                    ..Default::default()
                })
                .await
                .expect("subscribe");
            grpc.push((client, response));
            raw.push(stalled_subscribe(addr, &format!("stalled-h2-{i}"), 65_535).await);
        }
        (grpc, raw)
    });
    let mut generation = 0u64;
    let mut samples: Vec<(u64, f64)> = Vec::new();
    let start = Instant::now();
    // Warm-up: long enough for the history and every stalled stream's backlog to reach their
    // limits (4 MiB of changes each, about 13 s at this rate) and for the gRPC clients' larger
    // flow-control windows (2 MiB a stream) to fill, so what follows is the steady state.
    churn(&dir, 300, Duration::from_secs(35), &mut generation, || {
        samples.push((start.elapsed().as_secs(), rss_mib(&served)));
    });
    let plateau = rss_mib(&served);
    eprintln!("metrics after warm-up: {}", metrics(&metrics_addr));
    churn(&dir, 300, Duration::from_secs(40), &mut generation, || {
        samples.push((start.elapsed().as_secs(), rss_mib(&served)));
    });
    let end = rss_mib(&served);
    eprintln!("RSS (s, MiB): {samples:?}");
    eprintln!("metrics: {}", metrics(&metrics_addr));
    eprintln!("RSS after warm-up {plateau:.1} MiB, after 40 s more churn {end:.1} MiB");
    // The stalled clients are still connected (the test measured them, not their absence).
    wait_until(
        "the stalled connections to be alive",
        Duration::from_secs(1),
        || stalled.1.iter().all(|s| !s.conn.is_finished()),
    );
    // 40 s at 300 writes/s is 12,000 changes (~12 MiB of values, ~80 MiB of breadcrumbs): a
    // server that pins breadcrumbs for a stalled stream grows by far more than this; a bounded
    // one stays flat (4 MiB in 40 s, allocator noise).
    assert!(
        end - plateau < 24.0,
        "RSS grew from {plateau:.1} MiB to {end:.1} MiB over 40 s of churn with 20 stalled readers: {samples:?}"
    );
    drop(stalled);
}
