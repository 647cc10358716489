#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;
// Graceful drain on SIGTERM (issue 13), with two real server processes over one datastore and
// agents on real gRPC connections that list both: `/readiness` goes 503 before any agent is
// moved, new connections are refused, each agent is sent `Reconnect` and lands on the other
// replica at once, the moves are spread over the drain period (not a storm), and the drained
// server exits 0.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use meshsync_agent::{Agent, AgentConfig, AgentEvent};
use support::binary::Serve;
use support::http_get;
use support::log_text::text_field;

const AGENTS: usize = 5;
const DRAIN_SECS: f64 = 4.0;

fn addrs(serving: &str) -> (String, SocketAddr) {
    let grpc = text_field(serving, "grpc").expect("grpc=");
    let health = text_field(serving, "health").expect("health=");
    let health = health.trim_start_matches("Some(").trim_end_matches(')');
    (
        format!("http://{grpc}"),
        health.parse().expect("health address"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_agents_to_the_other_replica_spread_over_time() {
    let mesh = support::copy_example_mesh();
    let datastore = format!("file:{}", mesh.path().join("cluster-a").display());
    let drain = DRAIN_SECS.to_string();
    let mut a = Serve::on_loopback(&datastore, &["--shutdown-drain", &drain]);
    let mut b = Serve::on_loopback(&datastore, &[]);
    let (a_url, a_health) = addrs(&a.wait_serving());
    let (b_url, _) = addrs(&b.wait_serving());
    a.wait_line("A in sync", |l| {
        l.contains("Sending in-sync update for local datastore")
    });
    b.wait_line("B in sync", |l| {
        l.contains("Sending in-sync update for local datastore")
    });

    // Every agent lists A first, then B.
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let mut config = AgentConfig::new(a_url.clone());
        config.servers = vec![a_url.clone(), b_url.clone()];
        config.node_name = format!("drain-node-{i}");
        config.subscription = "all".into();
        let mut agent = Agent::new(config).expect("agent");
        support::until_in_sync(&mut agent).await;
        agents.push(agent);
    }
    assert_eq!(http_get(a_health, "/readiness").await.0, 200);

    let pid = a.child.0.id();
    // SAFETY: sending SIGTERM to our own child process.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let signalled = Instant::now();
    // Readiness goes first.
    let not_ready_at = loop {
        let (code, _) = http_get(a_health, "/readiness").await;
        if code == 503 {
            break signalled.elapsed();
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "readiness never went 503"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // New agents are refused from now on (the listening socket is closed).
    let grpc: SocketAddr = a_url
        .trim_start_matches("http://")
        .parse()
        .expect("grpc address");
    loop {
        if tokio::net::TcpStream::connect(grpc).await.is_err() {
            break;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "still accepting while draining"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Each agent: asked to reconnect, then in sync on B.
    let mut tasks = Vec::new();
    for mut agent in agents {
        let b_url = b_url.clone();
        tasks.push(tokio::spawn(async move {
            let mut asked = None;
            let deadline = Duration::from_secs(30);
            tokio::time::timeout(deadline, async {
                loop {
                    match agent.next().await.expect("agent") {
                        AgentEvent::Reconnect { .. } => asked = Some(signalled.elapsed()),
                        AgentEvent::Status { in_sync: true, .. }
                            if asked.is_some() && agent.mirror().in_sync() =>
                        {
                            break;
                        }
                        AgentEvent::Connected { server, .. } if asked.is_some() => {
                            assert_eq!(server, b_url, "the agent moved to the other replica");
                        }
                        _ => {}
                    }
                }
            })
            .await
            .expect("the agent moved and synced within 30 s");
            asked.expect("asked to reconnect")
        }));
    }
    let mut asked = Vec::new();
    for t in tasks {
        asked.push(t.await.expect("agent task"));
    }
    asked.sort();
    eprintln!("readiness 503 after {not_ready_at:?}; agents asked at {asked:?}");
    assert!(
        not_ready_at <= asked[0],
        "readiness goes 503 before any agent is moved"
    );
    // Spread: Typha's pace, 95 % of the period over the agents, at most one per second.
    let spread = asked[AGENTS - 1] - asked[0];
    let interval = Duration::from_secs_f64(DRAIN_SECS * 0.95 / AGENTS as f64);
    assert!(
        spread >= interval * (AGENTS as u32 - 1) / 2,
        "the moves are spread over the drain, not a storm: {asked:?}"
    );

    // The server exits 0.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = a.child.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the drained server did not exit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit 0 after the drain, got {status:?}");
    a.wait_line("the drain line", |l| {
        l.contains("draining: readiness is 503")
    });
}
