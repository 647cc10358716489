//! Measures a Kubernetes-datastore remote cluster with many Pods joining a mesh: how long until it
//! is in sync at an agent, how much fresh updates from another cluster are delayed meanwhile, how
//! much memory meshsync takes for it, and how many watches the remote API server holds.
//!
//! `cargo run --release --example kdd_remote_sync -- [--pods N] [--agents M]` (defaults 10000 and
//! 50; a bare first argument is N). Needs `etcd` and `kubectl` on PATH and `kube-apiserver` in
//! `$MESHSYNC_PEERS_BIN` (or `scripts/peers.sh`).
//!
//! Cluster B is a real kube-apiserver (over its own etcd, `tests/support/apiserver.rs`) preloaded
//! with N Pods, each with a node, a label, a named port and its IP in the
//! `cni.projectcalico.org/podIP` annotation. The local cluster A and a second remote C are real etcd
//! processes. This process runs meshsync in-process (A's etcd source → mesh → cache → gRPC server)
//! and one agent; it adds B's RemoteClusterConfiguration (`datastoreType: kubernetes`, the admin
//! kubeconfig) while a writer updates a key in C every 10 ms, and reports B's time to in-sync, the
//! write→agent delay of C's updates during that time, this process's memory, and B's watches
//! (from its `/metrics`) before B is added, with one agent, and with M more agents.
//!
//! Progress goes to stderr (with the product's warnings; `RUST_LOG` for more); the results go to
//! stdout as Markdown. `KDD_METRICS_DIR=folder` keeps the raw `/metrics` texts read from B.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

#[path = "../tests/support/apiserver.rs"]
mod apiserver;
#[path = "../tests/support/certs.rs"]
mod certs;
#[path = "../tests/support/etcd.rs"]
mod etcd;
#[path = "../tests/support/process.rs"]
mod process;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use meshsync_agent::{Agent, AgentConfig, AgentEvent};
use meshsync_cache::{CacheConfig, SnapshotCache};
use meshsync_datastore::etcd::EtcdSourceConfig;
use meshsync_datastore::layout::key_path;
use meshsync_etcd::EtcdConfig;
use meshsync_mesh::MeshConfig;
use meshsync_proto::ClusterState;
use meshsync_server::{BoundServer, ServerConfig};

/// Namespaces the pods are spread over.
const NAMESPACES: usize = 4;
/// Pods per `kubectl create -f -`.
const CHUNK: usize = 1000;
/// `kubectl create` processes at once.
const LOADERS: usize = 4;
/// Longest wait for cluster B to be in sync at the agents.
const SYNC_DEADLINE: Duration = Duration::from_secs(900);

/// Set once the results are printed: the datastores stop and the sources' complaints are noise.
static QUIET: AtomicBool = AtomicBool::new(false);

struct Args {
    pods: usize,
    agents: usize,
}

fn args() -> Args {
    let mut out = Args {
        pods: 10_000,
        agents: 50,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let value = |it: &mut std::iter::Skip<std::env::Args>| {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{a} needs a number"))
        };
        match a.as_str() {
            "--pods" => out.pods = value(&mut it),
            "--agents" => out.agents = value(&mut it),
            other => out.pods = other.parse().expect("usage: [--pods N] [--agents M] | [N]"),
        }
    }
    out
}

fn namespace(i: usize) -> String {
    format!("kdd-{}", i % NAMESPACES)
}

/// One Pod of cluster B: scheduled, labelled, with a named port and its IP in Calico's CNI
/// annotation (the converter's fallback when the status has none; no status patch needed).
fn pod_yaml(i: usize) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: app-{i}\n  namespace: {ns}\n  labels:\n    app: app-{m}\n  annotations:\n    cni.projectcalico.org/podIP: 10.{a}.{b}.{c}/32\nspec:\n  nodeName: node-{n}\n  containers:\n  - name: app\n    image: registry.invalid/app:1\n    ports:\n    - name: http\n      containerPort: 8080\n      protocol: TCP\n",
        ns = namespace(i),
        m = i % 50,
        n = i % 100,
        a = 64 + (i >> 16) % 64,
        b = (i >> 8) & 255,
        c = i & 255,
    )
}

/// C's ticker: a WorkloadEndpoint (valid enough to be served) carrying its sequence number `t`.
fn ticker(t: u64) -> String {
    format!(
        r#"{{"kind":"WorkloadEndpoint","apiVersion":"projectcalico.org/v3","metadata":{{"name":"ticker","namespace":"default"}},"t":{t}}}"#
    )
}

fn rcc_etcd(name: &str, url: &str) -> String {
    format!(
        r#"{{"apiVersion":"projectcalico.org/v3","kind":"RemoteClusterConfiguration","metadata":{{"name":"{name}"}},"spec":{{"datastoreType":"etcdv3","etcdEndpoints":"{url}"}}}}"#
    )
}

fn rcc_kubernetes(name: &str, kubeconfig: &str) -> String {
    serde_json::json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "RemoteClusterConfiguration",
        "metadata": {"name": name},
        "spec": {"datastoreType": "kubernetes", "kubeconfig": kubeconfig},
    })
    .to_string()
}

/// This process's `VmRSS` and `VmHWM`, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The value of label `name` in a Prometheus series' label set.
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let end = labels[start..].find('"')? + start;
    Some(&labels[start..end])
}

/// What B's API server reports about watches.
#[derive(Default, Clone)]
struct Watches {
    /// `apiserver_longrunning_requests{verb="WATCH"}`, summed per `resource.group`.
    longrunning: BTreeMap<String, f64>,
    /// `apiserver_registered_watchers`, per `kind.group` (absent in newer releases).
    registered: BTreeMap<String, f64>,
}

impl Watches {
    fn total(&self) -> f64 {
        self.longrunning.values().sum()
    }
}

fn parse_metrics(text: &str) -> Watches {
    let mut w = Watches::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let Some((metric, labels)) = series.split_once('{') else {
            continue;
        };
        let group = label(labels, "group").unwrap_or("");
        let name = |n: &str| {
            if group.is_empty() {
                n.to_string()
            } else {
                format!("{n}.{group}")
            }
        };
        match metric {
            "apiserver_longrunning_requests" if label(labels, "verb") == Some("WATCH") => {
                let resource = label(labels, "resource").unwrap_or("?");
                *w.longrunning.entry(name(resource)).or_default() += value;
            }
            "apiserver_registered_watchers" => {
                let kind = label(labels, "kind").unwrap_or("?");
                *w.registered.entry(name(kind)).or_default() += value;
            }
            _ => {}
        }
    }
    w.longrunning.retain(|_, v| *v > 0.0);
    w.registered.retain(|_, v| *v > 0.0);
    w
}

async fn watches(api: &Arc<apiserver::ApiServer>) -> Watches {
    let api = api.clone();
    tokio::task::spawn_blocking(move || {
        let text = api.kubectl_ok(&["get", "--raw", "/metrics"]);
        // For a look at the raw series: KDD_METRICS_DIR=folder.
        if let Some(dir) = std::env::var_os("KDD_METRICS_DIR") {
            static N: AtomicUsize = AtomicUsize::new(0);
            let path = std::path::Path::new(&dir)
                .join(format!("metrics-{}.txt", N.fetch_add(1, Ordering::Relaxed)));
            std::fs::write(&path, &text).expect("write the metrics");
        }
        parse_metrics(&text)
    })
    .await
    .expect("metrics")
}

fn is_b_wep(u: &meshsync_proto::Update) -> bool {
    u.cluster == "cluster-b" && u.kind == "WorkloadEndpoint"
}

fn b_state(status: &meshsync_proto::Status) -> Option<ClusterState> {
    status
        .clusters
        .iter()
        .find(|c| c.cluster == "cluster-b")
        .map(|c| c.state())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // Warnings of the product (source, mesh, server) go to stderr.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(|| -> Box<dyn std::io::Write> {
            if QUIET.load(Ordering::Relaxed) {
                Box::new(std::io::sink())
            } else {
                Box::new(std::io::stderr())
            }
        })
        .init();
    let Args { pods, agents } = args();

    // Cluster B: a real kube-apiserver.
    eprintln!("starting cluster B's kube-apiserver…");
    let t0 = Instant::now();
    let api = Arc::new(
        tokio::task::spawn_blocking(|| apiserver::ApiServer::start("b"))
            .await
            .expect("start kube-apiserver"),
    );
    let api_start = t0.elapsed();
    let version = {
        let api = api.clone();
        tokio::task::spawn_blocking(move || api.kubectl_ok(&["get", "--raw", "/version"]))
            .await
            .expect("version")
    };
    let version = serde_json::from_str::<serde_json::Value>(&version)
        .ok()
        .and_then(|v| v["gitVersion"].as_str().map(String::from))
        .unwrap_or_else(|| "?".into());

    // Preload B: namespaces with their default ServiceAccounts (no controller manager runs),
    // then the pods in chunks.
    eprintln!(
        "preloading {pods} Pods into cluster B ({NAMESPACES} namespaces, up to {CHUNK} per kubectl create, {LOADERS} at once)…"
    );
    let t1 = Instant::now();
    {
        let api = api.clone();
        let total = pods;
        tokio::task::spawn_blocking(move || {
            let mut yaml = String::new();
            for n in 0..NAMESPACES.min(total.max(1)) {
                let ns = namespace(n);
                yaml.push_str(&format!(
                    "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: default\n  namespace: {ns}\n"
                ));
            }
            api.kubectl_ok_with(&["create", "-o", "name", "-f", "-"], Some(&yaml));
            // One kubectl creates the objects one request after another, so a few run at once.
            let chunk = CHUNK.min(total.div_ceil(LOADERS)).max(1);
            let next = AtomicUsize::new(0);
            let done = AtomicUsize::new(0);
            std::thread::scope(|scope| {
                for _ in 0..LOADERS {
                    scope.spawn(|| {
                        loop {
                            let start = next.fetch_add(chunk, Ordering::Relaxed);
                            if start >= total {
                                return;
                            }
                            let end = (start + chunk).min(total);
                            let yaml: String = (start..end).map(pod_yaml).collect();
                            let out = api
                                .kubectl_ok_with(&["create", "-o", "name", "-f", "-"], Some(&yaml));
                            let created = out.lines().filter(|l| l.starts_with("pod/")).count();
                            assert_eq!(created, end - start, "kubectl create printed {created} pods");
                            let n = done.fetch_add(created, Ordering::Relaxed) + created;
                            eprintln!("  {n} / {total} ({:.1} s)", t1.elapsed().as_secs_f64());
                        }
                    });
                }
            });
        })
        .await
        .expect("preload");
    }
    let load = t1.elapsed();

    // A (local) and C (another remote): real etcd.
    let a = etcd::Etcd::start("a").await;
    let c = etcd::Etcd::start("c").await;
    let (ca, cc) = (a.client().await, c.client().await);
    let c_key = key_path("/calico", "WorkloadEndpoint", "default", "ticker").expect("known kind");
    cc.put(c_key.clone(), ticker(0)).await.expect("put");
    ca.put(
        key_path("/calico", "RemoteClusterConfiguration", "", "cluster-c").expect("kind"),
        rcc_etcd("cluster-c", &c.url()),
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
    let mut config = AgentConfig::new(url.clone());
    config.subscription = "all".into();
    let mut agent = Agent::new(config).expect("agent");
    while !agent.mirror().in_sync() {
        agent.next().await.expect("agent");
    }
    let watches_before = watches(&api).await;
    let mem_before = memory();
    eprintln!(
        "local + cluster-c in sync (RSS {:.1} MiB); adding cluster-b's RemoteClusterConfiguration (kubernetes, {})",
        mem_before.0,
        api.kubeconfig().display()
    );

    // Writer: a timestamped update in C every 10 ms.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(async move {
        let mut sent: HashMap<u64, Instant> = HashMap::new();
        let mut n = 0u64;
        loop {
            n += 1;
            sent.insert(n, Instant::now());
            cc.put(c_key.clone(), ticker(n)).await.expect("put");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                _ = stop_rx.changed() => return sent,
            }
        }
    });

    let added = Instant::now();
    ca.put(
        key_path("/calico", "RemoteClusterConfiguration", "", "cluster-b").expect("kind"),
        rcc_kubernetes("cluster-b", &api.kubeconfig().display().to_string()),
    )
    .await
    .expect("put");
    let mut received: HashMap<u64, Instant> = HashMap::new();
    let mut b_weps: HashSet<(String, String)> = HashSet::new();
    let mut b_other: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    let mut b_in_sync = None;
    let mut first_wep = None;
    let mut last_state = None;
    let mut next_progress = 2000.min(pods);
    let deadline = tokio::time::Instant::now() + SYNC_DEADLINE;
    while b_in_sync.is_none() || b_weps.len() < pods {
        let event = match tokio::time::timeout_at(deadline, agent.next()).await {
            Ok(event) => event.expect("agent"),
            Err(_) => {
                eprintln!(
                    "cluster-b not in sync with all pods after {SYNC_DEADLINE:?}: {} WorkloadEndpoints held, InSync seen: {}, last state {last_state:?}, other kinds {:?}",
                    b_weps.len(),
                    b_in_sync.is_some(),
                    b_other
                        .iter()
                        .map(|(k, v)| (k, v.len()))
                        .collect::<Vec<_>>()
                );
                std::process::exit(1);
            }
        };
        match event {
            AgentEvent::Update(u) if u.cluster == "cluster-c" => {
                if let Some(t) = serde_json::from_slice::<serde_json::Value>(&u.value)
                    .ok()
                    .and_then(|v| v["t"].as_u64())
                {
                    received.insert(t, Instant::now());
                }
            }
            AgentEvent::Update(u) if is_b_wep(&u) => {
                first_wep.get_or_insert_with(|| added.elapsed());
                let key = (u.namespace.clone(), u.name.clone());
                if u.value.is_empty() {
                    b_weps.remove(&key);
                } else {
                    b_weps.insert(key);
                }
                if b_weps.len() >= next_progress {
                    eprintln!(
                        "  {} / {pods} WorkloadEndpoints at the agent ({:.1} s)",
                        b_weps.len(),
                        added.elapsed().as_secs_f64()
                    );
                    next_progress = (next_progress + 2000).min(pods).max(b_weps.len() + 1);
                }
            }
            AgentEvent::Update(u) if u.cluster == "cluster-b" => {
                let set = b_other.entry(u.kind.clone()).or_default();
                let key = (u.namespace.clone(), u.name.clone());
                if u.value.is_empty() {
                    set.remove(&key);
                } else {
                    set.insert(key);
                }
            }
            AgentEvent::Status { status, .. } => {
                let state = b_state(&status);
                if state != last_state {
                    eprintln!(
                        "  cluster-b {state:?} at {:.3} s ({} WorkloadEndpoints held)",
                        added.elapsed().as_secs_f64(),
                        b_weps.len()
                    );
                    last_state = state;
                }
                if b_in_sync.is_none() && state == Some(ClusterState::InSync) {
                    b_in_sync = Some(added.elapsed());
                }
            }
            AgentEvent::Disconnected { error, .. } => eprintln!("  agent disconnected: {error}"),
            _ => {}
        }
    }
    let all_received = added.elapsed();
    let _ = stop_tx.send(true);
    let sent = writer.await.expect("writer");
    let mem_synced = memory();
    let watches_one = watches(&api).await;
    eprintln!(
        "cluster-b in sync with {} WorkloadEndpoints after {:.3} s (RSS {:.1} MiB); connecting {agents} more agents…",
        b_weps.len(),
        all_received.as_secs_f64(),
        mem_synced.0
    );

    // Keep the first agent reading, and connect M more.
    let first = tokio::spawn(async move {
        loop {
            let _ = agent.next().await;
        }
    });
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<Duration>(agents.max(1));
    let connected = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..agents {
        let url = url.clone();
        let ready_tx = ready_tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut config = AgentConfig::new(url);
            config.subscription = "all".into();
            config.node_name = format!("extra-{i}");
            config.required_clusters = vec!["cluster-b".into()];
            let mut agent = Agent::new(config).expect("agent");
            let mut reported = false;
            loop {
                let event = agent.next().await;
                if !reported
                    && matches!(event, Ok(AgentEvent::Status { .. }))
                    && agent.mirror().in_sync()
                {
                    let held = agent
                        .mirror()
                        .resources()
                        .keys()
                        .filter(|k| k.cluster == "cluster-b" && k.kind == "WorkloadEndpoint")
                        .count();
                    if held >= pods {
                        reported = true;
                        let _ = ready_tx.send(connected.elapsed()).await;
                    }
                }
            }
        }));
    }
    drop(ready_tx);
    let mut last_ready = Duration::ZERO;
    for n in 0..agents {
        match tokio::time::timeout(SYNC_DEADLINE, ready_rx.recv()).await {
            Ok(Some(t)) => last_ready = t,
            _ => {
                eprintln!("only {n} of {agents} extra agents in sync after {SYNC_DEADLINE:?}");
                std::process::exit(1);
            }
        }
    }
    let mem_many = memory();
    let watches_many = watches(&api).await;
    eprintln!(
        "{agents} more agents in sync after {:.3} s (RSS {:.1} MiB)",
        last_ready.as_secs_f64(),
        mem_many.0
    );
    for t in tasks {
        t.abort();
    }
    first.abort();

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

    let s = api.startup;
    println!("## Kubernetes-datastore remote cluster B with {pods} Pods joining the mesh\n");
    println!(
        "kube-apiserver {version}; meshsync in-process (etcd source for A → mesh → cache → gRPC server) plus the agents in the same process.\n"
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| B's API server start (etcd, /readyz, CRDs Established) | {:.2} s ({:.2} + {:.2} + {:.2}) |",
        api_start.as_secs_f64(),
        s.etcd.as_secs_f64(),
        s.ready.as_secs_f64(),
        s.crds.as_secs_f64()
    );
    println!(
        "| load of {pods} Pods + {NAMESPACES} namespaces/ServiceAccounts (kubectl create, ≤{CHUNK} per call, {LOADERS} at once) | {:.2} s ({:.0} pods/s) |",
        load.as_secs_f64(),
        pods as f64 / load.as_secs_f64()
    );
    println!(
        "| RCC written → first B WorkloadEndpoint at the agent | {:.3} s |",
        first_wep.unwrap_or_default().as_secs_f64()
    );
    println!(
        "| RCC written → cluster-b InSync status at the agent | {:.3} s |",
        b_in_sync.unwrap_or_default().as_secs_f64()
    );
    println!(
        "| RCC written → all {pods} WorkloadEndpoints held and InSync | {:.3} s |",
        all_received.as_secs_f64()
    );
    println!(
        "| other kinds of B held | {} |",
        b_other
            .iter()
            .map(|(k, v)| format!("{k} {}", v.len()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| C's updates meanwhile, write → agent | n={} p50={:.1} ms p99={:.1} ms max={:.1} ms |",
        delays.len(),
        pct(0.5),
        pct(0.99),
        delays.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "| process VmRSS / VmHWM before B (meshsync + 1 agent, A and C in sync) | {:.1} / {:.1} MiB |",
        mem_before.0, mem_before.1
    );
    println!(
        "| process VmRSS / VmHWM with B in sync (meshsync + 1 agent) | {:.1} / {:.1} MiB |",
        mem_synced.0, mem_synced.1
    );
    println!(
        "| {agents} more agents connected → all in sync with B | {:.3} s |",
        last_ready.as_secs_f64()
    );
    println!(
        "| process VmRSS / VmHWM with {} agents (each agent mirrors all {pods}) | {:.1} / {:.1} MiB |",
        agents + 1,
        mem_many.0,
        mem_many.1
    );
    println!();
    println!(
        "Watches B's API server holds (`apiserver_longrunning_requests{{verb=\"WATCH\"}}`, summed per resource; before B is added they are the API server's own):\n"
    );
    println!(
        "| resource | before B added | 1 agent | {} agents | meshsync's (1 agent − before) |",
        agents + 1
    );
    println!("|---|---|---|---|---|");
    let resources: BTreeSet<&String> = watches_before
        .longrunning
        .keys()
        .chain(watches_one.longrunning.keys())
        .chain(watches_many.longrunning.keys())
        .collect();
    let get = |w: &Watches, r: &str| w.longrunning.get(r).copied().unwrap_or(0.0);
    for r in &resources {
        println!(
            "| {r} | {} | {} | {} | {} |",
            get(&watches_before, r),
            get(&watches_one, r),
            get(&watches_many, r),
            get(&watches_one, r) - get(&watches_before, r)
        );
    }
    println!(
        "| **total** | {} | {} | {} | {} |",
        watches_before.total(),
        watches_one.total(),
        watches_many.total(),
        watches_one.total() - watches_before.total()
    );
    if !watches_one.registered.is_empty() {
        println!(
            "\n`apiserver_registered_watchers` (per kind): before {:?}; 1 agent {:?}; {} agents {:?}",
            watches_before.registered,
            watches_one.registered,
            agents + 1,
            watches_many.registered
        );
    } else {
        println!("\n(`apiserver_registered_watchers` is not served by this API server.)");
    }
    println!(
        "\nWatches unchanged from 1 to {} agents: {}",
        agents + 1,
        if watches_one.longrunning == watches_many.longrunning {
            "yes"
        } else {
            "NO"
        }
    );
    QUIET.store(true, Ordering::Relaxed);
}
