//! Whether a value that survives from an etcd listing keeps its whole Range response alive
//! (issue 22), measured on the real binary over a real etcd.
//!
//! The etcd client decodes with prost's `bytes` option and tonic hands prost its receive
//! buffer, so every `KeyValue.value` is a `Bytes` slice of the buffer the response arrived in (a
//! listing page of 1,000 keys is megabytes). If the etcd source passed that slice on to the
//! cache, one key left unchanged since the listing would keep its whole page alive.
//!
//! The measurement: 20,000 WorkloadEndpoints of about 1.5 KiB each are listed by `meshsync
//! serve`, then rewritten three times — either every key (nothing listed survives) or all but
//! every 50th (2 % survive, spread over every page). Resident memory after the churn is compared:
//! the survivors' own bytes are about 0.6 MiB, so a difference of tens of MiB means the listing's
//! pages are pinned.
//!
//! Ignored by default (minutes of etcd writes); `scripts/measure-etcd-ingest-rss.sh` runs it and
//! prints the numbers. `MESHSYNC_RSS_BIN` names the `meshsync` binary to measure (default: the
//! one cargo built for this test), `MESHSYNC_RSS_RUNS` the runs per case (default 3).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use meshsync_etcd::EtcdClient;
use support::binary::{BIN, Serve, serve_args, without_meshsync_env};
use support::etcd::{Cluster, Etcd};
use support::hostile::rss_kib;
use support::log_text::text_field;

const KEYS: usize = 20_000;
/// Padding per value; with the rest of the object a value is about 1.5 KiB.
const PADDING: usize = 1400;
const ROUNDS: u64 = 3;
/// In the partial case, every `SURVIVOR_EVERY`-th key is never rewritten.
const SURVIVOR_EVERY: usize = 50;
/// Concurrent puts while loading and churning.
const IN_FLIGHT: usize = 64;
/// Longest wait for the server to reach a state.
const WAIT: Duration = Duration::from_secs(300);
/// The largest accepted excess of the partial case's median over the full case's. The
/// survivors' own bytes are about 0.6 MiB; pinned listing pages cost 30+ MiB.
const MAX_EXCESS_MIB: f64 = 12.0;

#[derive(Clone, Copy, Debug)]
enum Churn {
    /// Every key is rewritten in every round.
    Every,
    /// Every key but every `SURVIVOR_EVERY`-th is rewritten.
    AllButSurvivors,
}

impl Churn {
    fn rewrites(self, i: usize) -> bool {
        match self {
            Churn::Every => true,
            Churn::AllButSurvivors => !i.is_multiple_of(SURVIVOR_EVERY),
        }
    }
}

/// What one measurement saw, MiB.
struct Sample {
    listed: f64,
    churned: f64,
}

fn value(i: usize, generation: u64) -> Vec<u8> {
    let name = format!("w{i:05}");
    serde_json::to_vec(&serde_json::json!({
        "kind": "WorkloadEndpoint",
        "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"node": "n1", "generation": generation, "padding": "x".repeat(PADDING)},
    }))
    .expect("JSON")
}

/// Writes keys `i` for which `which(i)` holds, `IN_FLIGHT` at a time; returns how many.
async fn write(client: &EtcdClient, generation: u64, which: impl Fn(usize) -> bool) -> u64 {
    let keys: Vec<usize> = (0..KEYS).filter(|&i| which(i)).collect();
    let count = keys.len() as u64;
    futures::stream::iter(keys)
        .map(|i| {
            let client = client.clone();
            async move {
                let key = Cluster::key("WorkloadEndpoint", "ns", &format!("w{i:05}"));
                client
                    .put(key, value(i, generation))
                    .await
                    .unwrap_or_else(|e| panic!("etcd put {i}: {e}"));
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<()>>()
        .await;
    count
}

/// One metric's value from the text `/metrics` body.
fn metric(body: &str, name: &str) -> Option<u64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn get_metrics(addr: SocketAddr) -> String {
    let mut socket = std::net::TcpStream::connect(addr).expect("connect metrics");
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("request metrics");
    let mut body = String::new();
    let _ = socket.read_to_string(&mut body);
    body
}

/// Polls the metrics until the cache is in sync, has accepted `updates` changes and no longer
/// holds old breadcrumbs (nothing but the cache's own state is left to hold values).
fn wait_applied(metrics: SocketAddr, updates: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let body = get_metrics(metrics);
        let done = metric(&body, "meshsync_in_sync") == Some(1)
            && metric(&body, "meshsync_updates_total") >= Some(updates)
            && metric(&body, "meshsync_breadcrumbs_live").is_some_and(|n| n <= 2);
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not reach {updates} updates within {WAIT:?}; metrics:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The server's RSS once it stops moving (three readings 200 ms apart within 1 MiB), MiB.
fn settled_rss_mib(pid: u32) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut readings = vec![rss_kib(pid)];
    loop {
        std::thread::sleep(Duration::from_millis(200));
        readings.push(rss_kib(pid));
        let last = &readings[readings.len() - 3.min(readings.len())..];
        let (lo, hi) = (last.iter().min().unwrap(), last.iter().max().unwrap());
        if (last.len() == 3 && hi - lo <= 1024) || Instant::now() > deadline {
            return *last.last().unwrap() as f64 / 1024.0;
        }
    }
}

fn measured_binary() -> String {
    std::env::var("MESHSYNC_RSS_BIN").unwrap_or_else(|_| BIN.to_string())
}

async fn measure(churn: Churn) -> Sample {
    let etcd = Etcd::start("rss").await;
    let client = etcd.client().await;
    let mut updates = write(&client, 0, |_| true).await;

    let datastore = format!("etcd://{}", etcd.host_port());
    // No resume history: only the cache itself holds values once the churn is applied.
    let args = serve_args(
        &datastore,
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--resume-history-bytes",
            "0",
        ],
    );
    let mut cmd = Command::new(measured_binary());
    without_meshsync_env(&mut cmd);
    cmd.args(&args);
    let mut serve = Serve::spawn(cmd);
    let line = serve.wait_serving();
    let metrics: SocketAddr = text_field(&line, "metrics")
        .and_then(|t| t.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok())
        .unwrap_or_else(|| panic!("no metrics= in {line:?}"));
    let pid = serve.child.0.id();
    wait_applied(metrics, updates);
    let listed = settled_rss_mib(pid);
    for generation in 1..=ROUNDS {
        updates += write(&client, generation, |i| churn.rewrites(i)).await;
        wait_applied(metrics, updates);
    }
    let churned = settled_rss_mib(pid);
    drop(serve);
    Sample { listed, churned }
}

fn median_and_range(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    (
        sorted[sorted.len() / 2],
        sorted[0],
        sorted[sorted.len() - 1],
    )
}

#[test]
#[ignore = "minutes of etcd writes; run by scripts/measure-etcd-ingest-rss.sh"]
fn values_surviving_from_a_listing_do_not_pin_its_pages() {
    let runs: usize = std::env::var("MESHSYNC_RSS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("binary: {}", measured_binary());
    println!(
        "{KEYS} keys of ~{} bytes, {ROUNDS} churn rounds, partial: every {SURVIVOR_EVERY}th key untouched",
        value(0, 0).len()
    );
    let (mut every, mut partial) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        for (churn, into) in [
            (Churn::Every, &mut every),
            (Churn::AllButSurvivors, &mut partial),
        ] {
            let sample = runtime.block_on(measure(churn));
            println!(
                "run {run} {churn:?}: RSS after listing {:.1} MiB, after churn {:.1} MiB",
                sample.listed, sample.churned
            );
            into.push(sample.churned);
        }
    }
    let (every_median, every_lo, every_hi) = median_and_range(&every);
    let (partial_median, partial_lo, partial_hi) = median_and_range(&partial);
    println!(
        "RSS after churn, every key rewritten:     median {every_median:.1} MiB (range {every_lo:.1}–{every_hi:.1})"
    );
    println!(
        "RSS after churn, {}% of keys untouched:     median {partial_median:.1} MiB (range {partial_lo:.1}–{partial_hi:.1})",
        100 / SURVIVOR_EVERY
    );
    println!(
        "excess of the partial case: {:.1} MiB",
        partial_median - every_median
    );
    assert!(
        partial_median - every_median <= MAX_EXCESS_MIB,
        "values surviving from the listing keep {:.1} MiB more alive than a full rewrite \
         (limit {MAX_EXCESS_MIB} MiB): they pin their Range responses",
        partial_median - every_median
    );
}
