//! Regression tests for the hostile tester's defects report (issue 8) that concern the cache, the
//! mesh and the federation controller: each reproduced the defect before its fix.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::time::Duration;

use bytes::Bytes;
use meshsync_datastore::{ResourceKey, SourceEvent, SourceStatus};
use meshsync_proto::{self as pb, sync_client::SyncClient};
use support::{TestServer, http_get, within};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

fn wep(name: &str) -> SourceEvent {
    SourceEvent::Upsert {
        key: ResourceKey::new("", "WorkloadEndpoint", "default", name),
        value: Bytes::from(format!(
            "{{\"kind\":\"WorkloadEndpoint\",\"metadata\":{{\"name\":\"{name}\"}}}}"
        )),
        revision: "1".into(),
    }
}

fn local(status: SourceStatus) -> SourceEvent {
    SourceEvent::Status {
        cluster: "".into(),
        status,
    }
}

/// The first status a fresh `all` subscriber receives.
async fn first_status(server: &TestServer) -> pb::Status {
    within("a new subscriber's first status", async {
        let mut client = SyncClient::connect(server.url()).await.unwrap();
        let mut stream = client
            .subscribe(pb::SubscribeRequest {
                node_name: "late".into(),
                subscription: "all".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        loop {
            let event = stream.message().await.unwrap().expect("stream ended");
            if let Some(pb::sync_event::Event::Status(s)) = event.event {
                return s;
            }
        }
    })
    .await
}

/// Item 4: a status-only change does not move the seq, so the shared snapshot of that seq was
/// reused with its stale status and a new agent was told "in sync" while `/readiness` said 503.
#[tokio::test]
async fn a_new_agent_gets_the_status_as_of_now_not_the_shared_snapshots() {
    let (tx, rx) = mpsc::channel(64);
    let server = TestServer::start(ReceiverStream::new(rx)).await;
    for e in [
        local(SourceStatus::ResyncInProgress),
        SourceEvent::ResyncStart { cluster: "".into() },
        wep("a"),
        SourceEvent::ResyncDone { cluster: "".into() },
        local(SourceStatus::InSync),
    ] {
        tx.send(e).await.unwrap();
    }
    let first = first_status(&server).await;
    assert_eq!(first.overall(), pb::SyncState::InSync, "{first:?}");

    // The datastore goes away: only the status changes.
    tx.send(local(SourceStatus::ConnectionFailed("gone".into())))
        .await
        .unwrap();
    within("readiness 503", async {
        while http_get(server.health, "/readiness").await.0 != 503 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let second = first_status(&server).await;
    assert_ne!(
        second.overall(),
        pb::SyncState::InSync,
        "a new agent must not be told in sync while the server is not: {second:?}"
    );
    assert_eq!(second.seq, first.seq, "no data changed");
    server.stop().await;
}

fn rcc(name: &str, annotations: &str, spec: &str) -> SourceEvent {
    SourceEvent::Upsert {
        key: ResourceKey::new("", "RemoteClusterConfiguration", "", name),
        value: Bytes::from(format!(
            r#"{{"kind":"RemoteClusterConfiguration","metadata":{{"name":"{name}","annotations":{{{annotations}}}}},"spec":{spec}}}"#
        )),
        revision: "1".into(),
    }
}

/// A local source driven by the test, behind the real mesh stage, served by a real server.
async fn mesh_server() -> (mpsc::Sender<SourceEvent>, TestServer) {
    mesh_server_with(meshsync_mesh::MeshConfig::default()).await
}

async fn mesh_server_with(
    config: meshsync_mesh::MeshConfig,
) -> (mpsc::Sender<SourceEvent>, TestServer) {
    let (tx, rx) = mpsc::channel(64);
    let mesh = meshsync_mesh::mesh(ReceiverStream::new(rx), config);
    let server = TestServer::start(mesh).await;
    for e in [
        local(SourceStatus::ResyncInProgress),
        SourceEvent::ResyncStart { cluster: "".into() },
        SourceEvent::ResyncDone { cluster: "".into() },
        local(SourceStatus::InSync),
    ] {
        tx.send(e).await.unwrap();
    }
    (tx, server)
}

async fn wait_cache(
    server: &TestServer,
    what: &str,
    pred: impl Fn(&meshsync_cache::Breadcrumb) -> bool,
) {
    let mut follower = server.cache.follower();
    within(what, async {
        let mut crumb = follower.head();
        while !pred(&crumb) {
            crumb = follower.next(&crumb).await.expect("cache stopped");
        }
    })
    .await
}

fn cluster_state(crumb: &meshsync_cache::Breadcrumb, cluster: &str) -> Option<SourceStatus> {
    crumb
        .status
        .clusters
        .iter()
        .find(|(name, _)| &***name == cluster)
        .map(|(_, c)| c.status.clone())
}

/// Item 1: `lost-cluster-grace-period: "99999999999999999999"` parsed as a number and panicked the
/// cache writer in `Duration::from_secs_f64`; the server stayed "live" and "in sync" and no update
/// reached an agent again. Now it is the cluster's `ConfigIncomplete`, and everything else flows.
#[tokio::test]
async fn an_absurd_grace_period_is_config_incomplete_and_updates_keep_flowing() {
    let (tx, server) = mesh_server().await;
    tx.send(rcc(
        "bad-grace",
        r#""meshsync.io/lost-cluster-policy":"withdraw","meshsync.io/lost-cluster-grace-period":"99999999999999999999""#,
        r#"{"datastoreType":"etcdv3","etcdEndpoints":"http://127.0.0.1:1"}"#,
    ))
    .await
    .unwrap();
    wait_cache(&server, "bad-grace ConfigIncomplete", |c| {
        matches!(cluster_state(c, "bad-grace"),
            Some(SourceStatus::ConfigIncomplete(reason)) if reason.contains("lost-cluster-grace-period"))
    })
    .await;
    tx.send(wep("after")).await.unwrap();
    let key = ResourceKey::new("", "WorkloadEndpoint", "default", "after");
    wait_cache(&server, "a later update", |c| c.snapshot.contains_key(&key)).await;
    assert_eq!(http_get(server.health, "/liveness").await.0, 200);
    assert!(server.cache.supervisor().failure().is_none());
    server.stop().await;
}

/// Item 1, second half: a writer task that dies (here: its input panics) must never leave a
/// healthy-looking server. Liveness and readiness fail with the reason.
#[tokio::test]
async fn a_dead_writer_takes_liveness_down() {
    use futures::StreamExt;
    let events = futures::stream::iter([
        local(SourceStatus::ResyncInProgress),
        SourceEvent::ResyncStart { cluster: "".into() },
        wep("a"),
        SourceEvent::ResyncDone { cluster: "".into() },
        local(SourceStatus::InSync),
    ])
    .chain(futures::stream::poll_fn(
        |_| -> std::task::Poll<Option<SourceEvent>> { panic!("injected failure in a source") },
    ));
    let server = TestServer::start(Box::pin(events)).await;
    let reason = within("the writer failure", server.cache.supervisor().failed()).await;
    assert!(reason.contains("panicked: injected failure"), "{reason}");
    let (code, body) = http_get(server.health, "/liveness").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("injected failure"), "{body}");
    assert_eq!(http_get(server.health, "/readiness").await.0, 503);
    server.stop().await;
}

/// A source whose stream simply ends (the local datastore's task died) is a failure too.
#[tokio::test]
async fn an_ended_input_takes_liveness_down() {
    let (tx, rx) = mpsc::channel(4);
    let server = TestServer::start(ReceiverStream::new(rx)).await;
    assert_eq!(http_get(server.health, "/liveness").await.0, 200);
    drop(tx);
    let reason = within("the writer failure", server.cache.supervisor().failed()).await;
    assert!(reason.contains("input ended"), "{reason}");
    assert_eq!(http_get(server.health, "/liveness").await.0, 503);
    server.stop().await;
}

/// Item 11: a blackholed remote alternated `ConnectionFailed` with `ResyncInProgress` and an
/// empty error between retries. The last failure now stays visible until the cluster is in sync.
#[tokio::test]
async fn a_retrying_cluster_keeps_its_last_error_until_in_sync() {
    let (tx, rx) = mpsc::channel(16);
    let server = TestServer::start(ReceiverStream::new(rx)).await;
    let remote = |status| SourceEvent::Status {
        cluster: "cluster-b".into(),
        status,
    };
    let error_of = |s: &pb::Status| {
        s.clusters
            .iter()
            .find(|c| c.cluster == "cluster-b")
            .map(|c| (c.state(), c.error.clone()))
    };
    tx.send(remote(SourceStatus::ConnectionFailed(
        "cannot connect to etcd: timed out".into(),
    )))
    .await
    .unwrap();
    tx.send(remote(SourceStatus::ResyncInProgress))
        .await
        .unwrap();
    wait_cache(&server, "cluster-b retrying", |c| {
        cluster_state(c, "cluster-b") == Some(SourceStatus::ResyncInProgress)
    })
    .await;
    let status = server
        .cache
        .status()
        .to_proto(meshsync_cache::Subscription::ALL);
    let (state, error) = error_of(&status).unwrap();
    assert_eq!(state, pb::ClusterState::ResyncInProgress);
    assert_eq!(error, "retrying after: cannot connect to etcd: timed out");
    tx.send(remote(SourceStatus::InSync)).await.unwrap();
    wait_cache(&server, "cluster-b in sync", |c| {
        cluster_state(c, "cluster-b") == Some(SourceStatus::InSync)
    })
    .await;
    let status = server
        .cache
        .status()
        .to_proto(meshsync_cache::Subscription::ALL);
    assert_eq!(error_of(&status).unwrap().1, "", "cleared once in sync");
    server.stop().await;
}

const UNREACHABLE_ETCD: &str = r#"{"datastoreType":"etcdv3","etcdEndpoints":"http://127.0.0.1:1"}"#;

fn cluster_names(crumb: &meshsync_cache::Breadcrumb) -> Vec<String> {
    crumb
        .status
        .clusters
        .keys()
        .map(|c| c.to_string())
        .collect()
}

/// Item 9: RCCs named `(local)`, `a/b` and `" "` became clusters (`meshsync status` showed two
/// `(local)` rows). Only DNS-1123 subdomains are clusters; the others are ignored with a warning.
#[tokio::test]
async fn rccs_with_invalid_names_never_become_clusters() {
    let (tx, server) = mesh_server().await;
    for name in ["(local)", "a/b", " ", "UPPER", "-x"] {
        tx.send(rcc(name, "", UNREACHABLE_ETCD)).await.unwrap();
    }
    tx.send(rcc("good-one", "", UNREACHABLE_ETCD))
        .await
        .unwrap();
    wait_cache(&server, "good-one listed", |c| {
        cluster_state(c, "good-one").is_some()
    })
    .await;
    assert_eq!(cluster_names(&server.cache.head()), ["", "good-one"]);
    server.stop().await;
}

/// Item 11: a Secret whose data is not base64 was reported as "not found".
#[tokio::test]
async fn a_malformed_secret_is_reported_as_malformed() {
    let (tx, server) = mesh_server().await;
    tx.send(SourceEvent::Upsert {
        key: ResourceKey::new("", "Secret", "ns", "access"),
        value: Bytes::from_static(br#"{"kind":"Secret","data":{"datastoreType":"%%%"}}"#),
        revision: "1".into(),
    })
    .await
    .unwrap();
    tx.send(rcc(
        "by-secret",
        "",
        r#"{"clusterAccessSecret":{"kind":"Secret","namespace":"ns","name":"access"}}"#,
    ))
    .await
    .unwrap();
    wait_cache(&server, "by-secret ConfigIncomplete", |c| {
        matches!(
            cluster_state(c, "by-secret"),
            Some(SourceStatus::ConfigIncomplete(_))
        )
    })
    .await;
    let state = cluster_state(&server.cache.head(), "by-secret").unwrap();
    let reason = state.error();
    assert!(
        reason.contains("ns/access is malformed") && reason.contains("not base64"),
        "{reason}"
    );
    server.stop().await;
}

/// Item 11: an RCC pointing at the local datastore, or two RCCs at one remote, served every
/// endpoint a second time under another cluster name, silently. The later one is refused with
/// the reason (status and log) and runs once the one it duplicates is gone.
#[tokio::test]
async fn rccs_that_duplicate_a_datastore_are_refused_with_the_reason() {
    let (tx, server) = mesh_server_with(meshsync_mesh::MeshConfig {
        local_identities: vec![meshsync_mesh::etcd_identity("127.0.0.1:2379", "/calico")],
        ..Default::default()
    })
    .await;
    tx.send(rcc(
        "points-home",
        "",
        r#"{"datastoreType":"etcdv3","etcdEndpoints":"http://127.0.0.1:2379"}"#,
    ))
    .await
    .unwrap();
    wait_cache(&server, "points-home refused", |c| {
        matches!(cluster_state(c, "points-home"),
            Some(SourceStatus::ConfigIncomplete(r)) if r.contains("local cluster's own datastore"))
    })
    .await;

    tx.send(rcc("first", "", UNREACHABLE_ETCD)).await.unwrap();
    tx.send(rcc(
        "second",
        "",
        r#"{"datastoreType":"etcdv3","etcdEndpoints":"https://127.0.0.1:1,http://127.0.0.1:3"}"#,
    ))
    .await
    .unwrap();
    wait_cache(&server, "second refused as a duplicate of first", |c| {
        matches!(cluster_state(c, "second"),
            Some(SourceStatus::ConfigIncomplete(r)) if r.contains("same datastore") && r.contains("RemoteClusterConfiguration(first)"))
    })
    .await;
    assert!(!matches!(
        cluster_state(&server.cache.head(), "first"),
        Some(SourceStatus::ConfigIncomplete(_))
    ));

    // Once `first` is deleted, `second` is the only one and runs.
    tx.send(SourceEvent::Delete {
        key: ResourceKey::new("", "RemoteClusterConfiguration", "", "first"),
        revision: "2".into(),
    })
    .await
    .unwrap();
    wait_cache(&server, "second running", |c| {
        cluster_state(c, "first").is_none()
            && matches!(
                cluster_state(c, "second"),
                Some(
                    SourceStatus::Connecting
                        | SourceStatus::ConnectionFailed(_)
                        | SourceStatus::ResyncInProgress
                )
            )
    })
    .await;
    server.stop().await;
}

/// Nearby: every flag of seconds went through `Duration::from_secs_f64`, which panics on a huge
/// value. Each is bounded and refused with a message naming the flag.
#[test]
fn huge_second_flags_are_refused_not_a_panic() {
    use support::binary::{meshsync, run};
    for args in [
        &[
            "agent",
            "--server",
            "http://127.0.0.1:1",
            "--timeout",
            "1e30",
        ][..],
        &[
            "status",
            "--server",
            "http://127.0.0.1:1",
            "--timeout",
            "1e300",
        ],
        &[
            "eval",
            "--server",
            "http://127.0.0.1:1",
            "--timeout",
            "1e30",
            "all()",
        ],
    ] {
        let done = run(meshsync().args(args), Duration::from_secs(20));
        assert!(!done.status.success(), "{}", done.describe());
        assert!(
            done.stderr.contains(" must be a ") && !done.stderr.contains("panicked"),
            "{args:?}: {}",
            done.describe()
        );
    }
}

/// Item 7/8: what the sources refuse is counted on `/metrics` (with the log line), for the whole
/// process: here a file object nested deeper than the depth limit, served by the real binary.
#[test]
fn refused_values_are_counted_on_metrics() {
    use std::io::{Read, Write};
    use support::binary::Serve;
    let dir = tempfile::tempdir().unwrap();
    let deep = format!(
        r#"{{"kind":"Node","metadata":{{"name":"deep"}},"spec":{{"a":{}1{}}}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    std::fs::write(dir.path().join("deep.json"), deep).unwrap();
    std::fs::write(
        dir.path().join("ok.json"),
        r#"{"kind":"Node","metadata":{"name":"fine"}}"#,
    )
    .unwrap();
    let datastore = format!("file:{}", dir.path().display());
    let mut serve = Serve::on_loopback(&datastore, &["--metrics-listen", "127.0.0.1:0"]);
    let serving = serve.wait_serving();
    let metrics: std::net::SocketAddr = serving
        .split("metrics=Some(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in {serving}"));
    serve.wait_line("the in-sync line", |l| {
        l.contains("Sending in-sync update for local datastore")
    });
    let get = || {
        let mut s = std::net::TcpStream::connect(metrics).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    };
    let body = get();
    assert!(
        body.lines()
            .any(|l| l == "meshsync_datastore_invalid_values_total 1"),
        "{body}"
    );
    assert!(
        body.contains("meshsync_cache_keys{cluster=\"\"} 1"),
        "{body}"
    );
    assert!(
        serve.count(|l| l.contains("skipping invalid object") && l.contains("deep")) >= 1,
        "a log line names the refused object"
    );
}
