#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;

// The Typha differential harness (issue 23): two Typha servers on the same datastore must leave a
// real Typha client (Calico's syncclient, in the typha-dump peer) holding the same map on every
// syncer, after the initial dataset and after each change of a scripted series. For now both
// servers are Calico's calico-typha — which proves the harness, on etcd and on a real
// kube-apiserver; the scenario takes the second server as a parameter, for meshsync's Typha port.
// And the harness must be able to fail: a felix map against a bgp map, a dump of no server.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::etcd::Cluster;
use support::typha::{
    CalicoTypha, Differential, DumpError, Syncer, TyphaDatastore, TyphaDump, TyphaServer, Witness,
    converge, diff_maps,
};
use support::typha_scenario;

/// Longest wait for a first map.
const FIRST_MAP: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_two_calico_typhas_serve_the_same_maps() {
    let t0 = Instant::now();
    let cluster = Cluster::start("typha-diff-etcd").await;
    typha_scenario::write_etcd_dataset(&cluster.client).await;
    let datastore = TyphaDatastore::etcd(&cluster.etcd);
    let (a, b) = tokio::join!(
        CalicoTypha::start("a", &datastore),
        CalicoTypha::start("b", &datastore)
    );
    let mut diff = Differential::start(
        TyphaServer::calico("calico-typha a", &a),
        TyphaServer::calico("calico-typha b", &b),
        &Syncer::ALL,
    );
    typha_scenario::etcd_scenario(&cluster.client, &mut diff).await;
    eprintln!("etcd differential took {:.1}s", t0.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kdd_two_calico_typhas_serve_the_same_maps() {
    let t0 = Instant::now();
    let api = typha_scenario::api_server_with_kdd_dataset("typha-diff-kdd").await;
    let datastore = TyphaDatastore::kubernetes(&api);
    let (a, b) = tokio::join!(
        CalicoTypha::start("kdd-a", &datastore),
        CalicoTypha::start("kdd-b", &datastore)
    );
    let mut diff = Differential::start(
        TyphaServer::calico("calico-typha a", &a),
        TyphaServer::calico("calico-typha b", &b),
        &Syncer::ALL,
    );
    typha_scenario::kdd_scenario(&api, &mut diff).await;
    eprintln!("KDD differential took {:.1}s", t0.elapsed().as_secs_f64());
}

/// The harness fails when the maps differ: a felix map is no bgp map, and the report says how.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_felix_map_against_a_bgp_map_fails_with_a_report() {
    let cluster = Cluster::start("typha-diff-fail").await;
    typha_scenario::write_etcd_dataset(&cluster.client).await;
    let typha = CalicoTypha::start("fail", &TyphaDatastore::etcd(&cluster.etcd)).await;
    let mut felix = TyphaDump::start(&typha.addr_string(), Syncer::Felix);
    let mut bgp = TyphaDump::start(&typha.addr_string(), Syncer::Bgp);
    let felix_map = felix
        .wait_until("the dataset", |m| m.has("pod-c", None), FIRST_MAP)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let bgp_map = bgp
        .wait_until("the nodes", |m| m.has("node-2", None), FIRST_MAP)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let diff = diff_maps(&felix_map.map, &bgp_map.map);
    assert!(!diff.is_empty());
    let report = diff.report("felix", "bgp", 5);
    eprintln!("{report}");
    // The felix syncer's keys (v1 WorkloadEndpoints, policies, …) are not the bgp syncer's; the
    // bgp syncer's v3 Nodes and block affinities are not the felix syncer's.
    assert!(
        diff.missing.iter().any(|(k, _)| k.contains("/workload/")),
        "{report}"
    );
    assert!(
        diff.extra
            .iter()
            .any(|(k, _)| k.starts_with("/calico/ipam/v2/host/")),
        "{report}"
    );
    assert!(report.contains("keys missing"), "{report}");
    assert!(report.contains("missing in bgp: /calico/"), "{report}");
    assert!(
        report.contains("… and"),
        "only the first 5 are listed: {report}"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let err = converge(&mut felix, &mut bgp, ("felix", "bgp"), deadline)
        .await
        .expect_err("a felix map never equals a bgp map");
    assert!(err.contains("did not converge"), "{err}");
    assert!(err.contains("missing in bgp"), "{err}");
}

/// A step fails when the servers disagree: the candidate serves an etcd that lacks one pod, and
/// the report names the key and the side it is missing from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_other_data_fails_the_step_with_a_report() {
    let (left, right) = tokio::join!(
        Cluster::start("typha-diff-left"),
        Cluster::start("typha-diff-right")
    );
    typha_scenario::write_etcd_dataset(&left.client).await;
    typha_scenario::write_etcd_dataset(&right.client).await;
    right
        .client
        .delete(typha_scenario::etcd_wep_key("node-2", "ns2", "pod-c"))
        .await
        .unwrap();
    let (left_store, right_store) = (
        TyphaDatastore::etcd(&left.etcd),
        TyphaDatastore::etcd(&right.etcd),
    );
    let (a, b) = tokio::join!(
        CalicoTypha::start("left", &left_store),
        CalicoTypha::start("right", &right_store)
    );
    let mut diff = Differential::start(
        TyphaServer::calico("calico-typha left", &a),
        TyphaServer::calico("calico-typha right", &b),
        &[Syncer::Felix],
    );
    let err = diff
        .check(
            "initial dataset",
            &[Witness::has(Syncer::Felix, "pod-c", None)],
            Duration::from_secs(5),
        )
        .await
        .expect_err("the right server lacks pod-c");
    eprintln!("{err}");
    assert!(
        err.contains("step \"initial dataset\", syncer felix"),
        "{err}"
    );
    assert!(err.contains("1 keys missing, 0 extra"), "{err}");
    assert!(
        err.contains("missing in calico-typha right: /calico/v1/host/node-2/workload/k8s/ns2%2fpod-c/endpoint/eth0"),
        "{err}"
    );

    // A witness the reference never shows fails too, naming what was awaited (on the bgp
    // syncer alone, where both servers agree).
    let mut bgp_only = Differential::start(
        TyphaServer::calico("calico-typha left", &a),
        TyphaServer::calico("calico-typha right", &b),
        &[Syncer::Bgp],
    );
    bgp_only
        .check("initial dataset", &[], Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = bgp_only
        .check(
            "a change that never happened",
            &[Witness::has(Syncer::Bgp, "node-9", None)],
            Duration::from_secs(2),
        )
        .await
        .expect_err("there is no node-9");
    assert!(err.contains("calico-typha left never showed it"), "{err}");
    assert!(err.contains("\"node-9\""), "{err}");
}

/// typha-dump's TLS flags are Felix's: with Typha's CA, a client certificate whose CN Typha
/// requires, and Typha's CN it gets the map; naming another server CN it never connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typha_dump_speaks_tls_as_felix_does() {
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    use support::certs::{new_ca, new_leaf};
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (ca, issuer) = new_ca("typha-test-ca");
    let (server_cert, server_key) =
        new_leaf(&issuer, "typha-server", &[], &["localhost"], ServerAuth);
    let (client_cert, client_key) =
        new_leaf(&issuer, "typha-client", &[], &["localhost"], ClientAuth);
    let ca = write("ca.crt", &ca);
    let server_cert = write("server.crt", &server_cert);
    let server_key = write("server.key", &server_key);
    let client_cert = write("client.crt", &client_cert);
    let client_key = write("client.key", &client_key);

    let cluster = Cluster::start("typha-diff-tls").await;
    typha_scenario::write_etcd_dataset(&cluster.client).await;
    let typha = CalicoTypha::start_with(
        "tls",
        &TyphaDatastore::etcd(&cluster.etcd),
        &[
            ("TYPHA_CAFILE", &ca),
            ("TYPHA_SERVERCERTFILE", &server_cert),
            ("TYPHA_SERVERKEYFILE", &server_key),
            ("TYPHA_CLIENTCN", "typha-client"),
        ],
    )
    .await;
    let tls = |server_cn: &str| {
        TyphaDump::start_with(
            &typha.addr_string(),
            Syncer::Felix,
            &[
                "--ca-file",
                &ca,
                "--cert-file",
                &client_cert,
                "--key-file",
                &client_key,
                "--server-cn",
                server_cn,
            ],
        )
    };
    let mut good = tls("typha-server");
    good.wait_until("the dataset over TLS", |m| m.has("pod-c", None), FIRST_MAP)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let mut wrong = tls("someone-else");
    match wrong.next_map(FIRST_MAP).await {
        Err(DumpError::Exited { status, stderr }) => {
            assert!(status.contains("exit status: 2"), "{status}\n{stderr}");
            assert!(stderr.contains("cannot connect to Typha"), "{stderr}");
        }
        other => panic!("expected typha-dump to give up, got {other:?}"),
    }
}

/// typha-dump on an address where nothing listens exits non-zero, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typha_dump_without_a_server_exits_with_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut dump = TyphaDump::start(&format!("127.0.0.1:{port}"), Syncer::Felix);
    match dump.next_map(FIRST_MAP).await {
        Err(DumpError::Exited { status, stderr }) => {
            assert!(status.contains("exit status: 2"), "{status}\n{stderr}");
            assert!(
                stderr.contains("cannot connect to Typha at 127.0.0.1:"),
                "{stderr}"
            );
        }
        other => panic!("expected typha-dump to exit, got {other:?}"),
    }
}

/// The comparison: missing, extra and differing keys; JSON in strings compared as JSON.
#[test]
fn map_diff_reports_each_kind_of_difference() {
    fn map(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }
    let a = map(&[
        ("/a", json!({"x": 1, "y": [1, 2]})),
        ("/b", json!("{\"p\": 1, \"q\": 2}")),
        ("/c", json!(true)),
        ("/e", json!("not json")),
    ]);
    let b = map(&[
        ("/a", json!({"y": [1, 3], "x": 1})),
        ("/b", json!("{\"q\":2,\"p\":1}")),
        ("/d", json!(null)),
        ("/e", json!("not  json")),
    ]);
    let diff = diff_maps(&a, &b);
    assert_eq!(diff.missing.len(), 1, "{diff:?}");
    assert_eq!(diff.extra.len(), 1, "{diff:?}");
    assert_eq!(diff.differing.len(), 2, "/b is the same JSON: {diff:?}");
    let report = diff.report("left", "right", 10);
    assert!(report.contains("missing in right: /c = true"), "{report}");
    assert!(report.contains("extra in right: /d = null"), "{report}");
    assert!(report.contains("at /y/1: left 2, right 3"), "{report}");
    assert!(report.contains("different value: /e"), "{report}");
    assert!(!report.contains("/b"), "{report}");
    assert!(diff_maps(&a, &a).is_empty());
    let short = diff.report("left", "right", 1);
    assert!(short.contains("… and 3 more differences"), "{short}");
}
