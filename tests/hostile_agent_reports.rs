//! Agent reports from hostile clients, on the real binary over real sockets (issue 21, items 7–9).
//!
//! - A report is taken only from the connection whose stream it names: `Status` lists every
//!   stream id, so any other client could otherwise turn an agent `DIVERGED` (or hide a real
//!   divergence) by reporting for it.
//! - What a report may carry is bounded (cluster names a cluster can have, at most a few the
//!   server does not know stored), and so is what `Status` lists: 40 reports of ~1 MiB used to
//!   retain 41 MiB, and concurrent `Status(agents)` calls relayed all of it.
//! - No string a client or a server sent reaches the operator's terminal raw: the `status` table,
//!   its JSON and the `eval` table escape control characters, so nothing can forge a row or set
//!   the terminal's title.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use meshsync_agent::{Agent, AgentConfig};
use meshsync_proto::{self as pb, sync_client::SyncClient};
use prost::Message;
use support::binary::{meshsync, run};
use support::certs::{LeafSpec, leaf, new_ca};
use support::hostile::{Served, rss_kib, serve};
use support::log_text::text_field;
use support::{http_get, within};
use tonic::transport::Channel;

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// A client on a connection of its own.
async fn client(addr: SocketAddr) -> SyncClient<Channel> {
    SyncClient::connect(url(addr))
        .await
        .expect("connect")
        .max_decoding_message_size(256 << 20)
}

async fn status(addr: SocketAddr) -> pb::StatusResponse {
    client(addr)
        .await
        .status(pb::StatusRequest {
            agents: true,
            ..Default::default()
        })
        .await
        .expect("Status")
        .into_inner()
}

/// Polls `Status` (agents included) until `pred` holds; returns that answer.
async fn status_until(
    addr: SocketAddr,
    what: &str,
    pred: impl Fn(&pb::StatusResponse) -> bool,
) -> pb::StatusResponse {
    within(what, async {
        loop {
            let response = status(addr).await;
            if pred(&response) {
                return response;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// A bare gRPC agent: one connection with one `Subscribe` stream kept open (never read after the
/// hello: an empty datastore's snapshot is a few bytes), and the stream id from the hello.
struct RawAgent {
    client: SyncClient<Channel>,
    _stream: tonic::Streaming<pb::SyncEvent>,
    stream_id: u64,
    epoch: u64,
}

impl RawAgent {
    async fn connect(addr: SocketAddr, node: &str) -> RawAgent {
        RawAgent::subscribe(client(addr).await, node).await
    }

    /// Subscribes on `client`'s connection.
    async fn subscribe(mut client: SyncClient<Channel>, node: &str) -> RawAgent {
        let mut stream = client
            .subscribe(pb::SubscribeRequest {
                node_name: node.into(),
                subscription: "felix".into(),
                ..Default::default()
            })
            .await
            .expect("Subscribe")
            .into_inner();
        let first = within("the hello", stream.message())
            .await
            .expect("a message")
            .expect("not the end");
        let Some(pb::sync_event::Event::Hello(hello)) = first.event else {
            panic!("the first message is not a hello: {first:?}");
        };
        RawAgent {
            client,
            _stream: stream,
            stream_id: hello.stream_id,
            epoch: hello.epoch,
        }
    }

    async fn report(&mut self, clusters: Vec<pb::ClusterDigest>) -> Result<(), tonic::Status> {
        let report = pb::AgentReport {
            stream_id: self.stream_id,
            epoch: self.epoch,
            seq: 0,
            clusters,
        };
        self.client.report(report).await.map(|_| ())
    }
}

fn digest(cluster: &str) -> pb::ClusterDigest {
    pb::ClusterDigest {
        cluster: cluster.into(),
        keys: 1,
        digest: 1,
    }
}

/// `meshsync_*` metric `name` from the server's `/metrics`.
async fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (_, body) = http_get(addr, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{body}"))
}

fn metrics_addr(served: &mut Served) -> SocketAddr {
    let line = served.serve.wait_serving();
    text_field(&line, "metrics")
        .and_then(|t| t.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok())
        .unwrap_or_else(|| panic!("no metrics= in {line:?}"))
}

/// Characters a terminal acts on: everything `char::is_control` says (C0, DEL, C1) except the
/// newline that ends each line, and the Unicode line and paragraph separators.
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| (c.is_control() && c != '\n') || matches!(c, '\u{2028}' | '\u{2029}'))
        .collect()
}

const GLOBAL_NETWORK_SET: &str = r#"{"kind":"GlobalNetworkSet","metadata":{"name":"set-0"}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_from_another_connection_cannot_change_an_agents_verdict() {
    let mut served = serve(&["--metrics-listen", "127.0.0.1:0"]);
    let metrics = metrics_addr(&mut served);
    std::fs::write(served.dir.path().join("set.json"), GLOBAL_NETWORK_SET).unwrap();
    status_until(served.grpc, "the server to hold the set", |s| {
        s.status
            .as_ref()
            .is_some_and(|s| s.clusters.iter().any(|c| c.keys == 1))
    })
    .await;

    // The victim: a real agent. It reports soon after its snapshot, then not for an hour, so
    // whatever its verdict is afterwards is what others made of it.
    let mut config = AgentConfig::new(url(served.grpc));
    config.node_name = "victim".into();
    config.report_interval = Duration::from_secs(3600);
    let mut victim = Agent::new(config).unwrap();
    let driven = tokio::spawn(async move {
        loop {
            if victim.next().await.is_err() {
                return;
            }
        }
    });
    let ok = pb::AgentClusterState::Ok as i32;
    let before = status_until(served.grpc, "the victim's report", |s| {
        s.agents.len() == 1
            && s.agents[0].clusters.len() == 1
            && s.agents[0].clusters[0].state == ok
    })
    .await;
    let target = before.agents[0].clone();

    // The attacker read the stream id from `Status`; its report comes on another connection.
    let forged = pb::AgentReport {
        stream_id: target.stream_id,
        epoch: before.epoch,
        seq: target.reported_seq,
        clusters: vec![pb::ClusterDigest {
            cluster: String::new(),
            keys: 1,
            digest: 0xbad,
        }],
    };
    let refused = client(served.grpc)
        .await
        .report(forged.clone())
        .await
        .expect_err("a report for another connection's stream is refused");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    // A client with a stream of its own may report for it, never for the victim's.
    let mut other = RawAgent::connect(served.grpc, "other").await;
    other.report(Vec::new()).await.expect("its own stream");
    let refused = other
        .client
        .report(forged)
        .await
        .expect_err("a report for another connection's stream is refused");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");

    let after = status(served.grpc).await;
    let victim = after
        .agents
        .iter()
        .find(|a| a.stream_id == target.stream_id)
        .expect("the victim is still connected");
    assert_eq!(victim.clusters.len(), 1, "{victim:?}");
    assert_eq!(victim.clusters[0].state, ok, "{victim:?}");
    assert_eq!(victim.reported_seq, target.reported_seq, "{victim:?}");

    // Counted, and logged (with the peer, never anything the client chose).
    assert_eq!(metric(metrics, "meshsync_reports_refused_total").await, 2);
    let line = served.serve.wait_line("the refusal's log line", |l| {
        l.contains("report refused") && l.contains("WARN")
    });
    assert!(
        line.contains(&format!("stream_id={}", target.stream_id)),
        "{line}"
    );
    driven.abort();
}

/// A client on a TLS connection of its own, with the client certificate `name` of `pki`.
async fn tls_client(addr: SocketAddr, pki: &Path, name: &str) -> SyncClient<Channel> {
    let tls = meshsync_agent::ClientTls {
        ca_file: pki.join("server-ca.crt"),
        cert_file: Some(pki.join(format!("{name}.crt"))),
        key_file: Some(pki.join(format!("{name}.key"))),
        server_name: None,
    };
    let channel = meshsync_agent::endpoint(&format!("https://{addr}"), Some(&tls), support::WAIT)
        .expect("endpoint")
        .connect()
        .await
        .expect("TLS connect");
    SyncClient::new(channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_only_the_streams_own_connection_may_report_for_it() {
    let pki = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(pki.path().join(name), text).unwrap();
    let (server_ca, server_issuer) = new_ca("reports-server-ca");
    let (client_ca, client_issuer) = new_ca("reports-client-ca");
    write("server-ca.crt", &server_ca);
    write("client-ca.crt", &client_ca);
    let pair = |name: &str, (cert, key): (String, String)| {
        write(&format!("{name}.crt"), &cert);
        write(&format!("{name}.key"), &key);
    };
    pair(
        "server",
        leaf(
            &server_issuer,
            &LeafSpec {
                common_name: "meshsync",
                names: &["127.0.0.1"],
                ..LeafSpec::default()
            },
        ),
    );
    for name in ["victim", "intruder"] {
        let spec = LeafSpec {
            common_name: name,
            client: true,
            ..LeafSpec::default()
        };
        pair(name, leaf(&client_issuer, &spec));
    }
    let path = |name: &str| pki.path().join(name).display().to_string();
    let served = serve(&[
        "--tls-cert-file",
        &path("server.crt"),
        "--tls-key-file",
        &path("server.key"),
        "--tls-client-ca-file",
        &path("client-ca.crt"),
    ]);

    let mut victim = RawAgent::subscribe(
        tls_client(served.grpc, pki.path(), "victim").await,
        "victim",
    )
    .await;
    victim.report(Vec::new()).await.expect("its own connection");
    let forged = pb::AgentReport {
        stream_id: victim.stream_id,
        epoch: victim.epoch,
        seq: 0,
        clusters: vec![digest("")],
    };
    // Another identity, and the same identity on another connection: both refused.
    for name in ["intruder", "victim"] {
        let refused = tls_client(served.grpc, pki.path(), name)
            .await
            .report(forged.clone())
            .await
            .expect_err("a report for another connection's stream is refused");
        assert_eq!(
            refused.code(),
            tonic::Code::PermissionDenied,
            "{name}: {refused:?}"
        );
    }
    victim
        .report(vec![digest("")])
        .await
        .expect("its own connection");
}

/// A valid cluster name of exactly 253 bytes, distinct per `i`.
fn long_cluster_name(i: usize) -> String {
    let name = format!("c{i:03}-{}", "a".repeat(248));
    assert_eq!(name.len(), 253);
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_reports_carry_and_status_relays_is_bounded() {
    const AGENTS: usize = 40;
    let served = serve(&[]);
    let pid = served.serve.child.0.id();
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        agents.push(RawAgent::connect(served.grpc, &format!("node-{i:02}")).await);
    }
    let rss_before = rss_kib(pid);

    // The report of the issue: 256 clusters with ~4,000-byte names (about 1 MiB each).
    for agent in &mut agents {
        let clusters = (0..256)
            .map(|c| digest(&format!("c{c:03}-{}", "x".repeat(4000))))
            .collect();
        let refused = agent
            .report(clusters)
            .await
            .expect_err("a report with 4,000-byte cluster names is refused");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    }
    // The largest report taken: 256 distinct valid names of 253 bytes, none a cluster the
    // server knows. Only a few of those names are kept, the others counted.
    for agent in &mut agents {
        let clusters = (0..256).map(|c| digest(&long_cluster_name(c))).collect();
        agent
            .report(clusters)
            .await
            .expect("a valid report is taken");
    }
    let ok = pb::AgentClusterState::Ok as i32;
    let response = status(served.grpc).await;
    assert_eq!(response.agents.len(), AGENTS);
    assert_eq!(response.agents_total, AGENTS as u32);
    for a in &response.agents {
        assert!(
            !a.clusters.is_empty() && a.clusters.len() <= 8,
            "{} clusters kept",
            a.clusters.len()
        );
        assert!(a.clusters.iter().all(|c| c.state != ok), "{a:?}");
        assert_eq!(a.clusters.len() as u32 + a.unlisted_clusters, 256);
    }
    let size = response.encoded_len();
    assert!(size < 256 << 10, "Status with 40 agents is {size} bytes");

    // Twelve concurrent `Status(agents)` calls: each answer is as small, and the server's memory
    // stays where it was (it used to retain 41 MiB and peak above 500 MiB here).
    let calls = (0..12).map(|_| status(served.grpc));
    for response in futures::future::join_all(calls).await {
        assert!(response.encoded_len() < 256 << 10);
    }
    let grown_mib = rss_kib(pid).saturating_sub(rss_before) / 1024;
    assert!(grown_mib < 24, "the server's RSS grew by {grown_mib} MiB");

    // The operator's table: capped, and it says how many agents it does not show.
    let out = run(
        meshsync().args([
            "status",
            "--agents",
            "--agents-limit",
            "30",
            "--server",
            &url(served.grpc),
        ]),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", out.describe());
    let rows = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("node-"))
        .count();
    assert_eq!(rows, 30, "{}", out.stdout);
    assert!(
        out.stdout.contains("10 more agents not shown"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("more clusters"), "{}", out.stdout);
}

/// A name that would forge a table row and set the terminal's title.
const FORGED: &str = "evil\nforged-row  127.0.0.1:1  0  0  0.0s  (local)=OK\u{1b}]0;pwned\u{7}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_a_report_never_reach_status_output() {
    let served = serve(&[]);
    let mut agent = RawAgent::connect(served.grpc, &format!("node-{FORGED}")).await;
    let reported = agent.report(vec![digest(FORGED)]).await;

    for format in ["table", "json"] {
        let out = run(
            meshsync().args([
                "status",
                "--agents",
                "--output",
                format,
                "--server",
                &url(served.grpc),
            ]),
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "{}", out.describe());
        assert_eq!(
            raw_controls(&out.stdout),
            Vec::<char>::new(),
            "{}",
            out.stdout
        );
        assert!(
            !out.stdout.lines().any(|l| l.starts_with("forged-row")),
            "{}",
            out.stdout
        );
    }
    // The name is no cluster's: the report is refused, so it is never stored.
    let refused = reported.expect_err("a cluster name with control characters is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
}

/// A server that answers `Status` with control characters in every string it sends.
struct HostileServer;

/// Strings a hostile server sends: C0 (newline, ESC, BEL), DEL, C1 (CSI) and a line separator.
fn hostile(what: &str) -> String {
    format!("{what}\nforged-row\u{1b}]0;pwned\u{7}\u{7f}\u{9b}2J\u{2028}end")
}

#[tonic::async_trait]
impl pb::server::sync_server::Sync for HostileServer {
    type SubscribeStream =
        Pin<Box<dyn futures::Stream<Item = Result<pb::Frame, tonic::Status>> + Send>>;

    async fn subscribe(
        &self,
        _: tonic::Request<pb::SubscribeRequest>,
    ) -> Result<tonic::Response<Self::SubscribeStream>, tonic::Status> {
        Err(tonic::Status::unimplemented(hostile("no")))
    }

    async fn status(
        &self,
        _: tonic::Request<pb::StatusRequest>,
    ) -> Result<tonic::Response<pb::StatusResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::StatusResponse {
            status: Some(pb::Status {
                seq: 1,
                overall: pb::SyncState::InSync as i32,
                clusters: vec![pb::ClusterStatus {
                    cluster: hostile("cluster"),
                    state: pb::ClusterState::ConnectionFailed as i32,
                    error: hostile("error"),
                    ..Default::default()
                }],
                consistent_seq: 0,
            }),
            epoch: 1,
            connections: 1,
            server_version: hostile("version"),
            agents: vec![pb::AgentInfo {
                node_name: hostile("node"),
                peer: hostile("peer"),
                subscription: hostile("subscription"),
                stream_id: 1,
                reported_seq: 1,
                clusters: vec![pb::AgentCluster {
                    cluster: hostile("agent-cluster"),
                    state: pb::AgentClusterState::Diverged as i32,
                    keys: 1,
                    server_keys: 2,
                }],
                ..Default::default()
            }],
            ..Default::default()
        }))
    }

    async fn report(
        &self,
        _: tonic::Request<pb::AgentReport>,
    ) -> Result<tonic::Response<pb::ReportAck>, tonic::Status> {
        Ok(tonic::Response::new(pb::ReportAck {}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_output_escapes_whatever_a_server_sends() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(pb::server::sync_server::SyncServer::new(HostileServer))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let table = run(
        meshsync().args(["status", "--agents", "--server", &url(addr)]),
        Duration::from_secs(20),
    );
    assert!(table.status.success(), "{}", table.describe());
    assert_eq!(
        raw_controls(&table.stdout),
        Vec::<char>::new(),
        "{}",
        table.stdout
    );
    assert!(
        !table.stdout.lines().any(|l| l.starts_with("forged-row")),
        "{}",
        table.stdout
    );
    // Server, overall, connections, blank, header, one cluster, blank, header, one agent.
    assert_eq!(table.stdout.lines().count(), 9, "{}", table.stdout);

    // JSON keeps every string exactly, escaped so a terminal shows it inert.
    let json = run(
        meshsync().args([
            "status",
            "--agents",
            "--output",
            "json",
            "--server",
            &url(addr),
        ]),
        Duration::from_secs(20),
    );
    assert!(json.status.success(), "{}", json.describe());
    assert_eq!(
        raw_controls(&json.stdout),
        Vec::<char>::new(),
        "{}",
        json.stdout
    );
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["server_version"], hostile("version"));
    assert_eq!(doc["clusters"][0]["error"], hostile("error"));
    assert_eq!(doc["agents"][0]["node"], hostile("node"));
    assert_eq!(
        doc["agents"][0]["clusters"][0]["cluster"],
        hostile("agent-cluster")
    );
    server.abort();
}

/// A WorkloadEndpoint whose node, address and name carry control characters.
fn hostile_endpoint() -> String {
    serde_json::json!({
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": hostile("we"),
            "namespace": "default",
            "labels": {"app": "evil"},
        },
        "spec": {"node": hostile("node"), "ipNetworks": [hostile("10.0.0.1/32")]},
    })
    .to_string()
}

#[test]
fn eval_output_escapes_what_the_datastore_holds() {
    let served = serve(&[]);
    std::fs::write(served.dir.path().join("we.json"), hostile_endpoint()).unwrap();
    let server = url(served.grpc);
    // The file is picked up live; eval waits for in-sync, so poll until the match is there.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        let out = run(
            meshsync().args(["eval", "app == 'evil'", "--server", &server]),
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "{}", out.describe());
        if out.stdout.contains("1 endpoints match") {
            break out.stdout;
        }
        assert!(std::time::Instant::now() < deadline, "{}", out.describe());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(raw_controls(&text), Vec::<char>::new(), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("forged-row")), "{text}");
    let json = run(
        meshsync().args([
            "eval",
            "app == 'evil'",
            "--output",
            "json",
            "--server",
            &server,
        ]),
        Duration::from_secs(20),
    );
    assert_eq!(
        raw_controls(&json.stdout),
        Vec::<char>::new(),
        "{}",
        json.stdout
    );
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["matches"][0]["node"], hostile("node"));
}
