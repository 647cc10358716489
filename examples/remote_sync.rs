//! Measures how long a remote cluster with many WorkloadEndpoints takes to reach in-sync through
//! the mesh, and how much fresh updates from another cluster are delayed while it syncs.
//!
//! `cargo run --release --example remote_sync -- [WEPS]` (default 10000). Needs `etcd` on PATH.
//! It starts three real etcd processes (local A, remotes B and C), an in-process meshsync (etcd
//! source → mesh → cache → gRPC server) and one agent; preloads B, then adds B's
//! RemoteClusterConfiguration while a writer updates a key in C every 10 ms, and reports B's
//! time to in-sync and the write→agent delay of C's updates during that time.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

#[path = "../tests/support/etcd.rs"]
mod etcd;
#[path = "../tests/support/process.rs"]
mod process;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use meshsync_agent::{Agent, AgentConfig, AgentEvent};
use meshsync_cache::{CacheConfig, SnapshotCache};
use meshsync_datastore::etcd::EtcdSourceConfig;
use meshsync_datastore::layout::key_path;
use meshsync_etcd::EtcdConfig;
use meshsync_mesh::MeshConfig;
use meshsync_server::{BoundServer, ServerConfig};

fn wep(cluster: &str, i: usize) -> String {
    format!(
        r#"{{"apiVersion":"projectcalico.org/v3","kind":"WorkloadEndpoint","metadata":{{"name":"node--{i}-k8s-app--{i}-eth0","namespace":"default","labels":{{"app":"app-{m}","projectcalico.org/namespace":"default","projectcalico.org/orchestrator":"k8s","projectcalico.org/serviceaccount":"default","cluster":"{cluster}"}}}},"spec":{{"orchestrator":"k8s","node":"node-{n}","pod":"app-{i}","endpoint":"eth0","interfaceName":"cali{i:011x}","ipNetworks":["10.66.{a}.{b}/32"],"profiles":["kns.default","ksa.default.default"],"ports":[{{"name":"http","port":8080,"protocol":"tcp"}},{{"name":"metrics","port":9090,"protocol":"tcp"}}]}}}}"#,
        m = i % 50,
        n = i % 100,
        a = (i / 250) % 256,
        b = i % 250,
    )
}

fn rcc(name: &str, url: &str) -> String {
    format!(
        r#"{{"apiVersion":"projectcalico.org/v3","kind":"RemoteClusterConfiguration","metadata":{{"name":"{name}"}},"spec":{{"datastoreType":"etcdv3","etcdEndpoints":"{url}"}}}}"#
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let weps: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let a = etcd::Etcd::start("a").await;
    let b = etcd::Etcd::start("b").await;
    let c = etcd::Etcd::start("c").await;
    let (ca, cb, cc) = (a.client().await, b.client().await, c.client().await);
    eprintln!("preloading {weps} WorkloadEndpoints into cluster B's etcd…");
    let started = Instant::now();
    for i in 0..weps {
        let key = key_path(
            "/calico",
            "WorkloadEndpoint",
            "default",
            &format!("node--{i}-k8s-app--{i}-eth0"),
        )
        .expect("known kind");
        cb.put(key, wep("b", i)).await.expect("put");
        if (i + 1) % 2000 == 0 {
            eprintln!(
                "  {} / {weps} ({:.1} s)",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let c_key = key_path("/calico", "WorkloadEndpoint", "default", "ticker").expect("known kind");
    cc.put(
        c_key.clone(),
        r#"{"kind":"WorkloadEndpoint","metadata":{"name":"ticker","namespace":"default"},"t":0}"#,
    )
    .await
    .expect("put");
    ca.put(
        key_path("/calico", "RemoteClusterConfiguration", "", "cluster-c").expect("kind"),
        rcc("cluster-c", &c.url()),
    )
    .await
    .expect("put");

    let local = meshsync_datastore::etcd::watch(EtcdSourceConfig::new(
        EtcdConfig::new(vec![a.url()]),
        "".into(),
    ));
    let cache = SnapshotCache::spawn(
        meshsync_mesh::mesh(local, MeshConfig::default()),
        CacheConfig::default(),
    );
    let server = BoundServer::bind(
        cache.clone(),
        ServerConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            health_listen: None,
            metrics_listen: None,
            ..ServerConfig::default()
        },
    )
    .await
    .expect("bind");
    let url = format!("http://{}", server.grpc_addr().expect("addr"));
    tokio::spawn(server.serve(std::future::pending()));
    let mut config = AgentConfig::new(url);
    config.subscription = "all".into();
    let mut agent = Agent::new(config).expect("agent");
    while !agent.mirror().in_sync() {
        agent.next().await.expect("agent");
    }
    eprintln!("local + cluster-c in sync; adding cluster-b's RemoteClusterConfiguration");

    // Writer: a timestamped update in C every 10 ms.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(async move {
        let mut sent: HashMap<u64, Instant> = HashMap::new();
        let mut n = 0u64;
        loop {
            n += 1;
            sent.insert(n, Instant::now());
            cc.put(
                c_key.clone(),
                format!(r#"{{"kind":"WorkloadEndpoint","metadata":{{"name":"ticker","namespace":"default"}},"t":{n}}}"#),
            )
            .await
            .expect("put");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                _ = stop_rx.changed() => return sent,
            }
        }
    });

    let added = Instant::now();
    ca.put(
        key_path("/calico", "RemoteClusterConfiguration", "", "cluster-b").expect("kind"),
        rcc("cluster-b", &b.url()),
    )
    .await
    .expect("put");
    let mut received: HashMap<u64, Instant> = HashMap::new();
    let mut b_keys = 0usize;
    let mut b_in_sync = None;
    while b_in_sync.is_none() || b_keys < weps {
        match agent.next().await.expect("agent") {
            AgentEvent::Update(u) if u.cluster == "cluster-c" => {
                if let Some(t) = std::str::from_utf8(&u.value)
                    .ok()
                    .and_then(|v| v.rsplit_once("\"t\":"))
                    .and_then(|(_, t)| t.trim_end_matches('}').parse::<u64>().ok())
                {
                    received.insert(t, Instant::now());
                }
            }
            AgentEvent::Update(u) if u.cluster == "cluster-b" => b_keys += 1,
            AgentEvent::Status { status, .. }
                if b_in_sync.is_none()
                    && status.clusters.iter().any(|c| {
                        c.cluster == "cluster-b"
                            && c.state() == meshsync_proto::ClusterState::InSync
                    }) =>
            {
                b_in_sync = Some(added.elapsed());
            }
            _ => {}
        }
    }
    let all_received = added.elapsed();
    let _ = stop_tx.send(true);
    let sent = writer.await.expect("writer");
    let mut delays: Vec<f64> = received
        .iter()
        .filter_map(|(n, at)| {
            sent.get(n)
                .map(|s| at.duration_since(*s).as_secs_f64() * 1000.0)
        })
        .collect();
    delays.sort_by(|x, y| x.total_cmp(y));
    let pct = |p: f64| {
        delays
            .get(((delays.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!("cluster-b: {weps} WorkloadEndpoints");
    println!(
        "  RCC written -> cluster-b InSync status at the agent: {:.3} s",
        b_in_sync.unwrap_or_default().as_secs_f64()
    );
    println!(
        "  RCC written -> all {weps} keys at the agent:        {:.3} s",
        all_received.as_secs_f64()
    );
    println!(
        "cluster-c updates during that time (write -> agent): n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
        delays.len(),
        pct(0.5),
        pct(0.99),
        delays.last().copied().unwrap_or(f64::NAN)
    );
}
