#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;
// The scenarios of Calico Enterprise's functional test of the federated services controller
// (licensing skipped), walked in order over real etcd processes: the local cluster A and two
// remote clusters B and C (RCCs `cluster-b` and `cluster-c` in A); mesh → cache → `TestServer` in process, and
// the controller in process through `controller::run`. Every expectation is derived from the
// data the test wrote (see `expected`), compared ignoring order; every wait polls etcd with a
// deadline.

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use support::etcd::{Cluster, wait_for};
use support::federation::{add_remote, ports_json, service, start_controller};
use support::mesh::mesh_over;
use support::{TestServer, logs};

const SELECTOR: &str = "federation.tigera.io/serviceSelector";
const NS: &str = "ns-1";
const FEDERATED: &str = "federated";
const MATCHING: &str = "federate == 'yes'";
const NOT_MATCHING: &str = "foo == 'bar'";
/// The federated service's ports (name, protocol, port); the filter uses (name, protocol) only.
const FED_PORTS: &[(&str, &str, i64)] = &[("port1", "UDP", 8080), ("port2", "TCP", 80)];
const BACKING_PORTS: &[(&str, &str, i64)] = &[
    ("port1", "UDP", 1234),
    ("port2", "TCP", 1234),
    ("port3", "TCP", 1200),
];
const P1: (&str, &str, i64) = ("port1", "UDP", 1234);
const P2: (&str, &str, i64) = ("port2", "TCP", 1234);
const P3: (&str, &str, i64) = ("port3", "TCP", 1200);

// ---------------------------------------------------------------------------------------------
// Test data: one description drives both the objects written and the expectations.

/// An address: IP and the targetRef pod (if any).
type Addr = (&'static str, Option<&'static str>);

/// One Endpoints subset as written.
#[derive(Clone)]
struct Sub {
    ready: Vec<Addr>,
    not_ready: Vec<Addr>,
    ports: Vec<(&'static str, &'static str, i64)>,
}

fn sub(ready: &[Addr], not_ready: &[Addr], ports: &[(&'static str, &'static str, i64)]) -> Sub {
    Sub {
        ready: ready.to_vec(),
        not_ready: not_ready.to_vec(),
        ports: ports.to_vec(),
    }
}

/// The FV test's backing endpoints: port1 {1.0.0.1, notReady 1.0.0.2 → pod1}, port3 {same},
/// port2 {2.0.0.1}, port3 {3.0.0.1}.
fn eps1() -> Vec<Sub> {
    let ready: &[Addr] = &[("1.0.0.1", None)];
    let not_ready: &[Addr] = &[("1.0.0.2", Some("pod1"))];
    vec![
        sub(ready, not_ready, &[P1]),
        sub(ready, not_ready, &[P3]),
        sub(&[("2.0.0.1", None)], &[], &[P2]),
        sub(&[("3.0.0.1", None)], &[], &[P3]),
    ]
}

/// The FV test's eps2: port1 {10.10.10.1, 10.10.10.2}.
fn eps2() -> Vec<Sub> {
    vec![sub(
        &[("10.10.10.1", Some("pod10")), ("10.10.10.2", Some("pod11"))],
        &[],
        &[P1],
    )]
}

/// Cluster C's backing service endpoints: different IPs, every address with a targetRef pod.
fn eps_c() -> Vec<Sub> {
    vec![
        sub(
            &[("5.0.0.1", Some("podc1"))],
            &[("5.0.0.2", Some("podc2"))],
            &[P1],
        ),
        sub(&[("6.0.0.1", Some("podc3"))], &[], &[P2, P3]),
    ]
}

/// The targetRef UID of `pod` in `cluster` (UIDs are per cluster, as in Kubernetes).
fn uid(cluster: &str, pod: &str) -> String {
    format!("uid-{cluster}-{pod}")
}

fn backing_service(ns: &str, name: &str, labelled: bool) -> Value {
    let labels = if labelled {
        json!({"federate": "yes"})
    } else {
        json!({})
    };
    service(ns, name, labels, json!({}), BACKING_PORTS)
}

fn federated_service(selector: Option<&str>) -> Value {
    let annotations = match selector {
        Some(s) => json!({ SELECTOR: s }),
        None => json!({}),
    };
    service(NS, FEDERATED, json!({}), annotations, FED_PORTS)
}

fn endpoints(cluster: &str, ns: &str, name: &str, subsets: &[Sub]) -> Value {
    let addr = |(ip, pod): &Addr| match pod {
        Some(pod) => {
            json!({"ip": ip, "targetRef": {"kind": "Pod", "namespace": ns, "name": pod, "uid": uid(cluster, pod)}})
        }
        None => json!({"ip": ip}),
    };
    let subsets: Vec<Value> = subsets
        .iter()
        .map(|s| {
            json!({
                "addresses": s.ready.iter().map(addr).collect::<Vec<_>>(),
                "notReadyAddresses": s.not_ready.iter().map(addr).collect::<Vec<_>>(),
                "ports": ports_json(&s.ports),
            })
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": ns},
        "subsets": subsets
    })
}

// ---------------------------------------------------------------------------------------------
// Expectations, in a canonical (order-free) form.

/// (ip, targetRef name, targetRef uid); empty strings when there is no targetRef.
type CAddr = (String, String, String);
/// (name, protocol, port).
type CPort = (String, String, i64);
/// (ports, ready addresses, not-ready addresses).
type CSubset = (BTreeSet<CPort>, BTreeSet<CAddr>, BTreeSet<CAddr>);
/// Per port: address identity (IP, uid) → (address, ready).
type ByPort = BTreeMap<CPort, BTreeMap<(String, String), (CAddr, bool)>>;

/// A backing service that currently contributes: its cluster (None = local) and its subsets.
struct Contribution {
    cluster: Option<&'static str>,
    subsets: Vec<Sub>,
}

/// The expected subsets: the port filter on (name, protocol), the remote targetRef rewrite to
/// `<cluster>/<pod>`, then the repack rule — per port, addresses merged by (IP, uid) with
/// not-ready winning, and ports with identical address sets grouped.
fn expected(contributions: &[Contribution]) -> BTreeSet<CSubset> {
    let wanted: BTreeSet<(&str, &str)> = FED_PORTS.iter().map(|(n, p, _)| (*n, *p)).collect();
    let mut by_port: ByPort = BTreeMap::new();
    for c in contributions {
        let cluster_id = c.cluster.unwrap_or("a");
        let caddr = |(ip, pod): &Addr| -> CAddr {
            match pod {
                Some(pod) => (
                    ip.to_string(),
                    match c.cluster {
                        Some(cl) => format!("{cl}/{pod}"),
                        None => pod.to_string(),
                    },
                    uid(cluster_id, pod),
                ),
                None => (ip.to_string(), String::new(), String::new()),
            }
        };
        for s in &c.subsets {
            for port in s
                .ports
                .iter()
                .filter(|(n, p, _)| wanted.contains(&(*n, *p)))
            {
                let per = by_port
                    .entry((port.0.to_string(), port.1.to_string(), port.2))
                    .or_default();
                let all = s
                    .ready
                    .iter()
                    .map(|a| (a, true))
                    .chain(s.not_ready.iter().map(|a| (a, false)));
                for (a, ready) in all {
                    let ca = caddr(a);
                    let key = (ca.0.clone(), ca.2.clone());
                    per.entry(key)
                        .and_modify(|(_, r)| *r = *r && ready)
                        .or_insert((ca, ready));
                }
            }
        }
    }
    let mut groups: BTreeMap<Vec<(CAddr, bool)>, BTreeSet<CPort>> = BTreeMap::new();
    for (port, addrs) in by_port {
        let key: Vec<(CAddr, bool)> = addrs.into_values().collect();
        groups.entry(key).or_default().insert(port);
    }
    groups
        .into_iter()
        .filter(|(addrs, _)| !addrs.is_empty())
        .map(|(addrs, ports)| {
            let ready = addrs
                .iter()
                .filter(|(_, r)| *r)
                .map(|(a, _)| a.clone())
                .collect();
            let not_ready = addrs
                .iter()
                .filter(|(_, r)| !*r)
                .map(|(a, _)| a.clone())
                .collect();
            (ports, ready, not_ready)
        })
        .collect()
}

/// The subsets of a stored Endpoints object in the canonical form.
fn actual(eps: &Value) -> BTreeSet<CSubset> {
    let addrs = |v: &Value| -> BTreeSet<CAddr> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
                (
                    s(&a["ip"]),
                    s(&a["targetRef"]["name"]),
                    s(&a["targetRef"]["uid"]),
                )
            })
            .collect()
    };
    eps["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let ports = s["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap_or_default().to_string(),
                        p["protocol"].as_str().unwrap_or_default().to_string(),
                        p["port"].as_i64().unwrap_or_default(),
                    )
                })
                .collect();
            (
                ports,
                addrs(&s["addresses"]),
                addrs(&s["notReadyAddresses"]),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Plumbing

/// Waits until the federated Endpoints exist with exactly `want` (ignoring order) and carry the
/// selector annotation `selector`.
async fn wait_endpoints(
    a: &Cluster,
    what: &str,
    selector: &str,
    want: &BTreeSet<CSubset>,
) -> (Value, i64) {
    let what = format!("{what}:\nwant {want:#?}");
    a.wait_object("Endpoints", NS, FEDERATED, &what, |eps| {
        actual(eps) == *want && eps["metadata"]["annotations"][SELECTOR] == selector
    })
    .await
}

async fn wait_endpoints_gone(a: &Cluster, what: &str) {
    wait_for(what, || async {
        a.get("Endpoints", NS, FEDERATED)
            .await
            .is_none()
            .then_some(())
    })
    .await;
}

/// Whether any federated EndpointSlice of `federated` exists (single or numbered IPv4 names).
async fn any_slice(a: &Cluster) -> bool {
    let mut names = vec![format!("{FEDERATED}-federated-ipv4")];
    names.extend((1..=4).map(|n| format!("{FEDERATED}-federated-ipv4-{n}")));
    for name in names {
        if a.get("EndpointSlice", NS, &name).await.is_some() {
            return true;
        }
    }
    false
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fv_scenarios_with_two_remote_clusters() {
    logs::show_in_test_output();
    let a = Cluster::start("a").await;
    let b = Cluster::start("b").await;
    let c = Cluster::start("c").await;

    // Setup: backing1, backing2 (ns-1) and wrongns (ns-2), all labelled, with eps1; the
    // federated service.
    for (ns, name) in [(NS, "backing1"), (NS, "backing2"), ("ns-2", "wrongns")] {
        a.put("Service", ns, name, &backing_service(ns, name, true))
            .await;
        a.put("Endpoints", ns, name, &endpoints("a", ns, name, &eps1()))
            .await;
    }
    a.put("Service", NS, FEDERATED, &federated_service(Some(MATCHING)))
        .await;

    let server = TestServer::start(mesh_over(&a.etcd)).await;
    let controller = start_controller(&server, &a);

    let local = |subsets: Vec<Sub>| Contribution {
        cluster: None,
        subsets,
    };

    // 1. {2.0.0.1 : port2} and {1.0.0.1, notReady 1.0.0.2 (pod1) : port1}; port3 and ns-2 excluded,
    // the two backing services' duplicates collapsed.
    let want1 = expected(&[local(eps1()), local(eps1())]);
    let pod1 = ("1.0.0.2".to_string(), "pod1".to_string(), uid("a", "pod1"));
    let ip = |s: &str| (s.to_string(), String::new(), String::new());
    let port = |(n, p, x): (&str, &str, i64)| BTreeSet::from([(n.to_string(), p.to_string(), x)]);
    assert_eq!(
        want1,
        BTreeSet::from([
            (port(P2), BTreeSet::from([ip("2.0.0.1")]), BTreeSet::new()),
            (
                port(P1),
                BTreeSet::from([ip("1.0.0.1")]),
                BTreeSet::from([pod1])
            ),
        ]),
        "the expectation helper disagrees with the scenario's literal subsets"
    );
    wait_endpoints(&a, "scenario 1: the initial subsets", MATCHING, &want1).await;

    // 2. backing2's endpoints changed to eps2: merged into the port1 subset.
    a.put(
        "Endpoints",
        NS,
        "backing2",
        &endpoints("a", NS, "backing2", &eps2()),
    )
    .await;
    let want2 = expected(&[local(eps1()), local(eps2())]);
    wait_endpoints(&a, "scenario 2: eps2 merged", MATCHING, &want2).await;

    // 3. backing1's labels removed: only backing2 (eps2) remains.
    a.put(
        "Service",
        NS,
        "backing1",
        &backing_service(NS, "backing1", false),
    )
    .await;
    let want3 = expected(&[local(eps2())]);
    wait_endpoints(&a, "scenario 3: only eps2", MATCHING, &want3).await;

    // 4. The annotation removed from the federated service: its Endpoints deleted; added back:
    // recreated.
    a.put("Service", NS, FEDERATED, &federated_service(None))
        .await;
    wait_endpoints_gone(&a, "scenario 4: Endpoints deleted with the annotation").await;
    a.put("Service", NS, FEDERATED, &federated_service(Some(MATCHING)))
        .await;
    let (eps, _) = wait_endpoints(&a, "scenario 4: Endpoints recreated", MATCHING, &want3).await;

    // 5. The annotation removed from the Endpoints object: no longer managed, so a non-matching
    // selector leaves it unchanged. The EndpointSlices (still managed) disappearing shows the
    // controller has processed the selector change.
    wait_for("scenario 5: the federated EndpointSlice", || async {
        any_slice(&a).await.then_some(())
    })
    .await;
    let mut unmanaged = eps;
    unmanaged["metadata"]["annotations"]
        .as_object_mut()
        .expect("annotations")
        .remove(SELECTOR);
    a.put("Endpoints", NS, FEDERATED, &unmanaged).await;
    let (_, unmanaged_rev) = a.get("Endpoints", NS, FEDERATED).await.expect("written");
    a.put(
        "Service",
        NS,
        FEDERATED,
        &federated_service(Some(NOT_MATCHING)),
    )
    .await;
    wait_for(
        "scenario 5: the slices of the non-matching selector to go",
        || async { (!any_slice(&a).await).then_some(()) },
    )
    .await;
    let (still, rev) = a.get("Endpoints", NS, FEDERATED).await.expect("kept");
    assert_eq!(
        rev, unmanaged_rev,
        "the unmanaged Endpoints was rewritten: {still}"
    );
    assert_eq!(still, unmanaged);
    a.delete("Endpoints", NS, FEDERATED).await;

    // 6. Endpoints deleted, selector non-matching: recreated with zero subsets; the selector
    // restored: the subsets restored.
    wait_endpoints(
        &a,
        "scenario 6: recreated with zero subsets",
        NOT_MATCHING,
        &BTreeSet::new(),
    )
    .await;
    a.put("Service", NS, FEDERATED, &federated_service(Some(MATCHING)))
        .await;
    wait_endpoints(&a, "scenario 6: subsets restored", MATCHING, &want3).await;

    // 7. A remote backing1 (eps1) in B and a remote backing service in C, through two RCCs.
    b.put(
        "Service",
        NS,
        "backing1",
        &backing_service(NS, "backing1", true),
    )
    .await;
    b.put(
        "Endpoints",
        NS,
        "backing1",
        &endpoints("cluster-b", NS, "backing1", &eps1()),
    )
    .await;
    c.put(
        "Service",
        NS,
        "backing-c",
        &backing_service(NS, "backing-c", true),
    )
    .await;
    c.put(
        "Endpoints",
        NS,
        "backing-c",
        &endpoints("cluster-c", NS, "backing-c", &eps_c()),
    )
    .await;
    add_remote(&a, "cluster-b", &b).await;
    add_remote(&a, "cluster-c", &c).await;
    let remote_b = || Contribution {
        cluster: Some("cluster-b"),
        subsets: eps1(),
    };
    let remote_c = || Contribution {
        cluster: Some("cluster-c"),
        subsets: eps_c(),
    };
    let want7 = expected(&[local(eps2()), remote_b(), remote_c()]);
    let (eps, _) = wait_endpoints(&a, "scenario 7: local and both remotes", MATCHING, &want7).await;
    let names: BTreeSet<String> = actual(&eps)
        .into_iter()
        .flat_map(|(_, r, n)| r.into_iter().chain(n))
        .map(|(_, name, _)| name)
        .collect();
    assert!(names.contains("cluster-b/pod1"), "{eps}");
    assert!(names.contains("cluster-c/podc1"), "{eps}");
    assert!(names.contains("pod10"), "{eps}");

    // 8. All local backing services deleted: only the remote contributions remain.
    for (ns, name) in [(NS, "backing1"), (NS, "backing2"), ("ns-2", "wrongns")] {
        a.delete("Service", ns, name).await;
        a.delete("Endpoints", ns, name).await;
    }
    let want8 = expected(&[remote_b(), remote_c()]);
    wait_endpoints(&a, "scenario 8: only the remotes", MATCHING, &want8).await;

    // 9. The RCCs deleted (B, then C): present with zero subsets at the end.
    a.delete("RemoteClusterConfiguration", "", "cluster-b")
        .await;
    let want9b = expected(&[remote_c()]);
    wait_endpoints(&a, "scenario 9: only cluster C", MATCHING, &want9b).await;
    a.delete("RemoteClusterConfiguration", "", "cluster-c")
        .await;
    wait_endpoints(&a, "scenario 9: zero subsets", MATCHING, &BTreeSet::new()).await;

    controller.stop().await;
    server.stop().await;
}
