//! The chaos test (issue 14): a local and two remote etcd clusters, a churn writer, agents, and
//! faults injected at random from a seed — meshsync replicas killed and restarted (the agents
//! move to the other replica and back), remote links cut, slowed down or blackholed through a
//! TCP relay, etcd members (local and remote) killed and restarted, agents killed and replaced. At the end every agent's mirror
//! must equal the union of the datastores as an `all` agent is entitled to see it, key by key
//! and by digest: nothing lost, nothing phantom.
//!
//! Reproducible: `MESHSYNC_CHAOS_SEED=<n>` replays a run's choices (the seed is printed, and
//! printed again with the log of injected faults on failure); `MESHSYNC_CHAOS_SECS` sets the
//! length (default 20 s, the short run in `./scripts/test.sh`; the long run: 1800).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use meshsync_agent::{Agent, AgentConfig, Mirror, MirrorKey};
use meshsync_proto::digest::entry_hash;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use support::binary::Serve;
use support::mesh::{Cluster, etcd_spec, expected, local_and_two_remotes, mirror_map, remote};
use support::relay::Relay;
use tokio::sync::watch;

const AGENTS: usize = 4;

/// One meshsync replica: the real binary on a fixed port (so a restart keeps its address).
struct Replica {
    args: Vec<String>,
    serve: Option<Serve>,
}

impl Replica {
    fn new(datastore: &str) -> (Replica, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let args: Vec<String> = [
            "serve",
            "--datastore",
            datastore,
            "--listen",
            &listen,
            "--no-health",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut r = Replica { args, serve: None };
        r.start();
        (r, format!("http://{listen}"))
    }

    fn start(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.serve = Some(Serve::start(&args));
    }

    fn kill(&mut self) {
        if let Some(mut s) = self.serve.take() {
            s.kill_and_collect();
        }
    }

    fn is_up(&self) -> bool {
        self.serve.is_some()
    }
}

/// An agent driven by its own task until told to stop; it hands itself back.
struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Agent>,
}

fn start_agent(servers: &[String], n: usize) -> Running {
    let mut config = AgentConfig::new(servers[0].clone());
    config.servers = servers.to_vec();
    config.node_name = format!("chaos-{n}");
    config.subscription = "all".into();
    config.backoff_initial = Duration::from_millis(20);
    config.backoff_max = Duration::from_millis(500);
    config.report_interval = Duration::from_millis(500);
    let mut agent = Agent::new(config).unwrap();
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stopped.wait_for(|s| *s) => return agent,
                event = agent.next() => if event.is_err() { return agent },
            }
        }
    });
    Running { stop, task }
}

/// The sum of entry hashes per cluster of `map`, as the server's digests are computed.
fn digests(map: &BTreeMap<MirrorKey, Value>) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for (k, v) in map {
        let bytes = serde_json::to_vec(v).unwrap();
        let h = entry_hash(&k.cluster, &k.kind, &k.namespace, &k.name, &bytes);
        let d = out.entry(k.cluster.clone()).or_default();
        *d = d.wrapping_add(h);
    }
    out
}

fn mirror_digests(m: &Mirror) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for (k, e) in m.resources() {
        let d = out.entry(k.cluster.clone()).or_default();
        *d = d.wrapping_add(e.hash);
    }
    out
}

fn relay_url(relay: &Relay) -> String {
    format!("http://127.0.0.1:{}", relay.port)
}

fn addr_of(url: &str) -> std::net::SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_loses_nothing() {
    let seed: u64 = std::env::var("MESHSYNC_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        });
    let secs: u64 = std::env::var("MESHSYNC_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    eprintln!("chaos: seed {seed}, {secs} s (MESHSYNC_CHAOS_SEED={seed} replays it)");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut faults: Vec<String> = Vec::new();
    let started = Instant::now();
    let log = |faults: &mut Vec<String>, what: String| {
        faults.push(format!("{:7.2}s {what}", started.elapsed().as_secs_f64()));
    };

    let (mut a, mut b, mut c) = local_and_two_remotes().await;
    let relay_b = Relay::start(addr_of(&b.url())).await;
    let relay_c = Relay::start(addr_of(&c.url())).await;
    a.put_rcc("cluster-b", etcd_spec(&relay_url(&relay_b)))
        .await;
    a.put_rcc("cluster-c", etcd_spec(&relay_url(&relay_c)))
        .await;
    let datastore = format!("etcd://{}", a.etcd.host_port());
    let (mut one, one_url) = Replica::new(&datastore);
    let (mut two, two_url) = Replica::new(&datastore);
    let servers = vec![one_url, two_url];
    let mut agents: Vec<Running> = (0..AGENTS).map(|n| start_agent(&servers, n)).collect();
    let mut next_agent = AGENTS;

    // What the loop must restore: etcd down (local, b, c), a remote link not up.
    let mut down = [false, false, false];
    let mut link_broken = [false, false];
    let mut churned = 0u32;
    let deadline = started + Duration::from_secs(secs);
    while Instant::now() < deadline {
        // Churn: a few changes to whichever clusters are up (a deleted endpoint is re-created
        // later with a new version).
        for _ in 0..rng.random_range(1..6) {
            churned += 1;
            let which = rng.random_range(0..3);
            if down[which] {
                continue;
            }
            let cluster: &mut Cluster = match which {
                0 => &mut a,
                1 => &mut b,
                _ => &mut c,
            };
            let name = format!("chaos-{}", rng.random_range(0..40));
            let key = (
                "WorkloadEndpoint".to_string(),
                "default".to_string(),
                name.clone(),
            );
            if cluster.data.contains_key(&key) && rng.random_bool(0.3) {
                cluster.delete("WorkloadEndpoint", "default", &name).await;
            } else {
                let ip = format!(
                    "10.{}.{}.{}/32",
                    90 + which,
                    churned % 250,
                    rng.random_range(1..250)
                );
                cluster
                    .put_wep(
                        "default",
                        &name,
                        &format!("node-{churned}"),
                        &ip,
                        "kns.default",
                    )
                    .await;
            }
        }
        // A fault, now and then.
        if rng.random_bool(0.15) {
            match rng.random_range(0..6) {
                0 | 1 => {
                    // Kill a replica (its agents move to the other) or bring it back.
                    let r = rng.random_range(0..2);
                    let replica = if r == 0 { &mut one } else { &mut two };
                    if replica.is_up() {
                        let other_up = if r == 0 { two.is_up() } else { one.is_up() };
                        if other_up {
                            let replica = if r == 0 { &mut one } else { &mut two };
                            replica.kill();
                            log(&mut faults, format!("killed meshsync replica {r}"));
                        }
                    } else {
                        replica.start();
                        log(&mut faults, format!("restarted meshsync replica {r}"));
                    }
                }
                2 => {
                    // A remote link: cut, slowed down or blackholed, or back to normal.
                    let r = rng.random_range(0..2);
                    let relay = if r == 0 { &relay_b } else { &relay_c };
                    if link_broken[r] {
                        relay.restore();
                        log(&mut faults, format!("restored the link to remote {r}"));
                    } else {
                        match rng.random_range(0..3) {
                            0 => {
                                relay.cut();
                                log(&mut faults, format!("cut the link to remote {r}"));
                            }
                            1 => {
                                let ms = rng.random_range(20..400);
                                relay.delay(Duration::from_millis(ms));
                                log(
                                    &mut faults,
                                    format!("delayed the link to remote {r} by {ms} ms"),
                                );
                            }
                            _ => {
                                relay.stall();
                                log(&mut faults, format!("blackholed the link to remote {r}"));
                            }
                        }
                    }
                    link_broken[r] = !link_broken[r];
                }
                3 => {
                    // An etcd member: the local one or a remote one, killed or started again.
                    let r = rng.random_range(0..3);
                    let cluster: &mut Cluster = match r {
                        0 => &mut a,
                        1 => &mut b,
                        _ => &mut c,
                    };
                    if down[r] {
                        cluster.restart().await;
                        log(&mut faults, format!("restarted etcd {r}"));
                    } else {
                        cluster.kill();
                        log(&mut faults, format!("killed etcd {r}"));
                    }
                    down[r] = !down[r];
                }
                _ => {
                    // Kill an agent and start a fresh one (an empty mirror).
                    let i = rng.random_range(0..agents.len());
                    let old = std::mem::replace(&mut agents[i], start_agent(&servers, next_agent));
                    old.task.abort();
                    log(
                        &mut faults,
                        format!("replaced agent {i} by chaos-{next_agent}"),
                    );
                    next_agent += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..120))).await;
    }

    // Heal everything; the datastores stay as the churn left them.
    for (r, cluster) in [&mut a, &mut b, &mut c].into_iter().enumerate() {
        if down[r] {
            cluster.restart().await;
        }
    }
    relay_b.restore();
    relay_c.restore();
    if !one.is_up() {
        one.start();
    }
    if !two.is_up() {
        two.start();
    }
    let injected = faults.len();
    let want = expected(
        &a,
        &[
            remote("cluster-b", &b, false),
            remote("cluster-c", &c, false),
        ],
    );
    let want_digests = digests(&want);
    let report = |what: &str, faults: &[String]| {
        format!(
            "chaos: {what}\nseed {seed} (MESHSYNC_CHAOS_SEED={seed} replays it), {churned} changes, {} faults:\n  {}",
            faults.len(),
            faults.join("\n  ")
        )
    };
    // Every agent must converge (within a minute) to exactly the datastores.
    let converge_by = tokio::time::Instant::now() + Duration::from_secs(60);
    for (i, running) in agents.into_iter().enumerate() {
        let _ = running.stop.send(true);
        let mut agent = running.task.await.unwrap();
        let converged = loop {
            let m = agent.mirror();
            if m.in_sync() && m.len() == want.len() && mirror_map(m) == want {
                break true;
            }
            match tokio::time::timeout_at(converge_by, agent.next()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("{}", report(&format!("agent {i} failed: {e}"), &faults)),
                Err(_) => break false,
            }
        };
        if !converged {
            let got = mirror_map(agent.mirror());
            let missing: Vec<_> = want
                .keys()
                .filter(|k| !got.contains_key(*k))
                .take(5)
                .collect();
            let phantom: Vec<_> = got
                .keys()
                .filter(|k| !want.contains_key(*k))
                .take(5)
                .collect();
            let differing: Vec<_> = want
                .iter()
                .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
                .map(|(k, _)| k)
                .take(5)
                .collect();
            panic!(
                "{}",
                report(
                    &format!(
                        "agent {i} did not converge within 60 s: {} keys, want {}; in sync {}; missing {missing:?}; phantom {phantom:?}; differing {differing:?}",
                        got.len(),
                        want.len(),
                        agent.mirror().in_sync()
                    ),
                    &faults
                )
            );
        }
        assert_eq!(
            mirror_digests(agent.mirror()),
            want_digests,
            "{}",
            report(&format!("agent {i}'s digests differ"), &faults)
        );
    }
    eprintln!(
        "chaos: passed; seed {seed}, {secs} s, {churned} changes, {injected} faults injected:\n  {}",
        faults.join("\n  ")
    );
    one.kill();
    two.kill();
}
