#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;
// Remote clusters over Kubernetes, against real kube-apiservers with RBAC on (issue 12): the
// document's setup (a kubeconfig for the remote's meshsync-remote ServiceAccount, in a Secret an
// RCC names), everything an etcd remote does (remote kinds only, Profile rules stripped, status,
// reconfiguration on Secret change), each verb of the remote role and of the Secret role needed,
// mixed meshes, and remotes that cannot be reached or refuse us.

use meshsync_agent::Mirror;
use meshsync_proto as pb;
use serde_json::json;
use support::apiserver::{ApiServer, shared};
use support::kdd::*;
use support::mesh::*;

const RCC_YAML: &str = r#"
apiVersion: crd.projectcalico.org/v1
kind: RemoteClusterConfiguration
metadata:
  name: cluster-b
spec:
  clusterAccessSecret:
    kind: Secret
    namespace: meshsync
    name: remote-b
"#;

fn secret_yaml(kubeconfig: &str) -> String {
    let indented: String = kubeconfig.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: remote-b\n  namespace: meshsync\nstringData:\n  datastoreType: kubernetes\n  kubeconfig: |\n{indented}"
    )
}

fn b_weps(m: &Mirror) -> Vec<String> {
    held_names(m, "cluster-b", "WorkloadEndpoint", "app-b")
}

fn failed_forbidden(m: &Mirror, verb: &str) -> bool {
    let e = error_of(m, "cluster-b");
    (is(m, "cluster-b", pb::ClusterState::ConnectionFailed)
        || is(m, "cluster-b", pb::ClusterState::ConfigIncomplete))
        && e.contains("forbidden")
        && e.contains(&format!("cannot {verb}"))
}

fn recreate_rcc(local: &ApiServer) {
    local.kubectl_ok(&[
        "delete",
        "remoteclusterconfigurations.crd.projectcalico.org",
        "cluster-b",
    ]);
    local.apply(RCC_YAML);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kdd_remote_through_its_secret_with_least_privilege() {
    let remote = ApiServer::start("remote-b");
    remote.apply(&rbac_yaml());
    namespace_with_pods(&remote, "app-b", "node-b", 2, 2);
    let local = ApiServer::start("local-a");
    local.apply(&rbac_yaml());
    namespace_with_pods(&local, "app-a", "node-a", 1, 1);
    local.apply(&secret_yaml(
        &remote.service_account_kubeconfig("meshsync", "meshsync-remote"),
    ));
    local.apply(RCC_YAML);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = write_file(
        dir.path(),
        "local.kubeconfig",
        &local.service_account_kubeconfig("meshsync", "meshsync"),
    );

    let server = TestServer::start(kdd_mesh(&kubeconfig)).await;
    let mut agent = server.agent("all");
    pump(
        &mut agent,
        "cluster-b in sync with its pods",
        KDD_WAIT,
        |m| m.in_sync() && is(m, "cluster-b", pb::ClusterState::InSync) && b_weps(m).len() == 2,
    )
    .await;
    let m = agent.mirror();
    // The remote's kinds only, under its name; Profiles without rules; nothing consumed leaks.
    let profile = held(m, "cluster-b", "Profile", "", "kns.app-b").expect("remote profile");
    assert!(
        profile["spec"].get("ingress").is_none() && profile["spec"].get("egress").is_none(),
        "{profile}"
    );
    assert!(profile["spec"]["labelsToApply"]["pcns.projectcalico.org/name"] == "app-b");
    let wep = held(m, "cluster-b", "WorkloadEndpoint", "app-b", &b_weps(m)[0]).unwrap();
    assert_eq!(wep["spec"]["ipNetworks"], json!(["10.2.0.1/32"]));
    assert!(
        m.resources()
            .keys()
            .all(|k| k.kind != "Secret" && k.kind != RCC)
    );
    assert!(
        m.resources()
            .keys()
            .filter(|k| k.cluster == "cluster-b")
            .all(|k| {
                [
                    "WorkloadEndpoint",
                    "Profile",
                    "HostEndpoint",
                    "Service",
                    "Endpoints",
                    "EndpointSlice",
                ]
                .contains(&k.kind.as_str())
            })
    );
    assert_eq!(held_names(m, "", "WorkloadEndpoint", "app-a").len(), 1);

    // A live change in the remote arrives.
    remote.kubectl_ok(&["label", "pod", "pod-0", "-n", "app-b", "tier=gold"]);
    pump(&mut agent, "the remote's relabelled pod", KDD_WAIT, |m| {
        b_weps(m).iter().any(|n| {
            held(m, "cluster-b", "WorkloadEndpoint", "app-b", n)
                .is_some_and(|w| w["metadata"]["labels"]["tier"] == "gold")
        })
    })
    .await;

    // The token rotated in the Secret: reconnects, and agents see no difference at all.
    local.apply(&secret_yaml(
        &remote.service_account_kubeconfig("meshsync", "meshsync-remote"),
    ));
    let before = agent.mirror().resources().len();
    local.apply("apiVersion: crd.projectcalico.org/v1\nkind: GlobalNetworkSet\nmetadata:\n  name: sentinel-rotation\nspec: {}\n");
    let events = sentinel_seen(&mut agent, "sentinel-rotation").await;
    let b_changes: Vec<_> = updates(&events)
        .into_iter()
        .filter(|u| u.cluster == "cluster-b")
        .collect();
    assert!(
        b_changes.is_empty(),
        "rotating the token changed nothing: {b_changes:?}"
    );
    assert_eq!(agent.mirror().resources().len(), before + 1);

    // Each verb of the remote role is needed (the RCC recreated so that its source starts anew).
    let remote_rules = remote.get_json("clusterrole", None, "meshsync-remote")["rules"]
        .as_array()
        .cloned()
        .unwrap();
    for index in 0..remote_rules.len() {
        for verb in ["list", "watch"] {
            let kept: Vec<&str> = ["list", "watch"]
                .into_iter()
                .filter(|v| *v != verb)
                .collect();
            set_rule_verbs(&remote, "clusterrole/meshsync-remote", None, index, &kept);
            recreate_rcc(&local);
            pump(
                &mut agent,
                &format!("cluster-b forbidden without {verb} in rule {index}"),
                KDD_WAIT,
                |m| failed_forbidden(m, verb),
            )
            .await;
            assert!(agent.mirror().in_sync(), "the local cluster stays in sync");
            set_rule_verbs(
                &remote,
                "clusterrole/meshsync-remote",
                None,
                index,
                &["list", "watch"],
            );
        }
    }
    pump(
        &mut agent,
        "cluster-b in sync with the role restored",
        KDD_WAIT,
        |m| is(m, "cluster-b", pb::ClusterState::InSync) && b_weps(m).len() == 2,
    )
    .await;

    // Each verb of the local Secret role is needed: without it the RCC cannot be configured.
    for verb in ["list", "watch"] {
        let kept: Vec<&str> = ["get", "list", "watch"]
            .into_iter()
            .filter(|v| *v != verb)
            .collect();
        set_rule_verbs(
            &local,
            "role/meshsync-remote-secrets",
            Some("meshsync"),
            0,
            &kept,
        );
        recreate_rcc(&local);
        pump(
            &mut agent,
            &format!("cluster-b incomplete without {verb} on Secrets"),
            KDD_WAIT,
            |m| is(m, "cluster-b", pb::ClusterState::ConfigIncomplete) && failed_forbidden(m, verb),
        )
        .await;
        set_rule_verbs(
            &local,
            "role/meshsync-remote-secrets",
            Some("meshsync"),
            0,
            &["get", "list", "watch"],
        );
    }
    recreate_rcc(&local);
    pump(&mut agent, "cluster-b in sync again", KDD_WAIT, |m| {
        is(m, "cluster-b", pb::ClusterState::InSync) && b_weps(m).len() == 2
    })
    .await;

    // Deleting the RCC withdraws the cluster.
    local.kubectl_ok(&[
        "delete",
        "remoteclusterconfigurations.crd.projectcalico.org",
        "cluster-b",
    ]);
    pump(&mut agent, "cluster-b withdrawn", KDD_WAIT, |m| {
        m.resources().keys().all(|k| k.cluster != "cluster-b")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_refusing_remotes_fail_with_a_reason() {
    let local = shared();
    // A port nobody listens on, and the real server with a token it does not know.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    local.apply("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: kdd-mesh-probe\n  namespace: kube-system\n");
    let good = local.service_account_kubeconfig("kube-system", "kdd-mesh-probe");
    let wrong_port = good.replace(
        &format!("127.0.0.1:{}", local.port),
        &format!("127.0.0.1:{closed_port}"),
    );
    let token_line = good
        .lines()
        .find(|l| l.trim_start().starts_with("token:"))
        .unwrap()
        .to_string();
    let bad_token = good.replace(&token_line, "    token: not-a-token");
    let rcc = |name: &str, kubeconfig: &str| {
        let indented: String = kubeconfig.lines().map(|l| format!("    {l}\n")).collect();
        format!(
            "apiVersion: crd.projectcalico.org/v1\nkind: RemoteClusterConfiguration\nmetadata:\n  name: {name}\nspec:\n  datastoreType: kubernetes\n  kubeconfigInline: |\n{indented}"
        )
    };
    local.apply(&rcc("unreachable", &wrong_port));
    local.apply(&rcc("unauthorized", &bad_token));
    let server = TestServer::start(kdd_mesh(local.kubeconfig())).await;
    let mut agent = server.agent("all");
    pump(
        &mut agent,
        "both remotes failed, local in sync",
        KDD_WAIT,
        |m| {
            m.in_sync()
                && is(m, "unreachable", pb::ClusterState::ConnectionFailed)
                && is(m, "unauthorized", pb::ClusterState::ConnectionFailed)
                && error_of(m, "unauthorized").contains("Unauthorized")
        },
    )
    .await;
    let e = error_of(agent.mirror(), "unreachable");
    assert!(e.contains("onnect") || e.contains("refused"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_meshes_kdd_with_etcd_either_way() {
    // Local KDD with an etcd remote and a KDD remote (kubeconfig file path).
    let local = ApiServer::start("mixed-local");
    namespace_with_pods(&local, "app-a", "node-a", 1, 1);
    let kdd_remote = ApiServer::start("mixed-kdd");
    namespace_with_pods(&kdd_remote, "app-k", "node-k", 2, 3);
    let mut etcd_remote = Cluster::start("mixed-etcd").await;
    etcd_remote
        .put_wep("app-e", "e-0", "node-e", "10.4.0.1", "kns.app-e")
        .await;
    local.apply(&format!(
        "apiVersion: crd.projectcalico.org/v1\nkind: RemoteClusterConfiguration\nmetadata:\n  name: cluster-e\nspec:\n  datastoreType: etcdv3\n  etcdEndpoints: {}\n---\napiVersion: crd.projectcalico.org/v1\nkind: RemoteClusterConfiguration\nmetadata:\n  name: cluster-k\nspec:\n  datastoreType: kubernetes\n  kubeconfig: {}\n",
        etcd_remote.url(),
        kdd_remote.kubeconfig().display()
    ));
    let server = TestServer::start(kdd_mesh(local.kubeconfig())).await;
    let mut agent = server.agent("all");
    pump(
        &mut agent,
        "local KDD with an etcd and a KDD remote",
        KDD_WAIT,
        |m| {
            m.in_sync()
                && is(m, "cluster-e", pb::ClusterState::InSync)
                && is(m, "cluster-k", pb::ClusterState::InSync)
                && held_names(m, "cluster-k", "WorkloadEndpoint", "app-k").len() == 2
                && held_names(m, "cluster-e", "WorkloadEndpoint", "app-e").len() == 1
                && held_names(m, "", "WorkloadEndpoint", "app-a").len() == 1
        },
    )
    .await;
    drop(agent);
    server.stop().await;

    // Local etcd with the KDD remote.
    let mut a = Cluster::start("mixed-etcd-local").await;
    a.put_wep("app-l", "l-0", "node-l", "10.5.0.1", "kns.app-l")
        .await;
    a.put_rcc(
        "cluster-k",
        json!({"datastoreType": "kubernetes", "kubeconfig": kdd_remote.kubeconfig().display().to_string()}),
    )
    .await;
    let server = TestServer::start(mesh_over(&a.etcd)).await;
    let mut agent = server.agent("all");
    pump(&mut agent, "local etcd with a KDD remote", KDD_WAIT, |m| {
        m.in_sync()
            && is(m, "cluster-k", pb::ClusterState::InSync)
            && held_names(m, "cluster-k", "WorkloadEndpoint", "app-k").len() == 2
            && held_names(m, "", "WorkloadEndpoint", "app-l").len() == 1
    })
    .await;
    // Profiles from a KDD remote arrive without rules here too.
    let p = held(agent.mirror(), "cluster-k", "Profile", "", "kns.app-k").expect("profile");
    assert!(p["spec"].get("ingress").is_none(), "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_kubeconfig_file_takes_effect_without_a_restart() {
    let b = ApiServer::start("rotate-b");
    namespace_with_pods(&b, "app-b", "node-b", 2, 9);
    let c = ApiServer::start("rotate-c");
    namespace_with_pods(&c, "app-c", "node-c", 1, 10);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("remote.kubeconfig");
    std::fs::copy(b.kubeconfig(), &file).expect("copy kubeconfig");
    let mut a = Cluster::start("rotate-local").await;
    a.put_rcc(
        "cluster-k",
        json!({"datastoreType": "kubernetes", "kubeconfig": file.display().to_string()}),
    )
    .await;
    let server = TestServer::start(mesh_over(&a.etcd)).await;
    let mut agent = server.agent("all");
    pump(
        &mut agent,
        "cluster-k in sync through B's kubeconfig",
        KDD_WAIT,
        |m| {
            is(m, "cluster-k", pb::ClusterState::InSync)
                && held_names(m, "cluster-k", "WorkloadEndpoint", "app-b").len() == 2
        },
    )
    .await;

    // The file now points at C (written aside and renamed in, as a kubelet or an operator would).
    let staged = dir.path().join("remote.kubeconfig.new");
    std::fs::copy(c.kubeconfig(), &staged).expect("copy kubeconfig");
    std::fs::rename(&staged, &file).expect("rename");
    pump(
        &mut agent,
        "cluster-k now C's data, B's gone",
        KDD_WAIT,
        |m| {
            is(m, "cluster-k", pb::ClusterState::InSync)
                && held_names(m, "cluster-k", "WorkloadEndpoint", "app-c").len() == 1
                && held_names(m, "cluster-k", "WorkloadEndpoint", "app-b").is_empty()
                && held(m, "cluster-k", "Profile", "", "kns.app-b").is_none()
                && held(m, "cluster-k", "Profile", "", "kns.app-c").is_some()
        },
    )
    .await;
    assert!(agent.mirror().in_sync());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kdd_remote_overlay_kinds_and_lost_cluster_withdrawal() {
    let b = ApiServer::start("lost-b");
    namespace_with_pods(&b, "app-b", "node-b", 1, 12);
    b.apply("apiVersion: v1\nkind: Node\nmetadata:\n  name: node-b\n  annotations:\n    projectcalico.org/IPv4Address: 192.168.12.1/24\n---\napiVersion: crd.projectcalico.org/v1\nkind: IPPool\nmetadata:\n  name: pool-b\nspec:\n  cidr: 10.12.0.0/16\n---\napiVersion: crd.projectcalico.org/v1\nkind: GlobalNetworkPolicy\nmetadata:\n  name: never-remote\nspec:\n  selector: all()\n");
    let mut a = Cluster::start("lost-local").await;
    a.put(
        RCC,
        "",
        "cluster-b",
        json!({"apiVersion": "projectcalico.org/v3", "kind": RCC,
            "metadata": {"name": "cluster-b", "annotations": {
                "meshsync.io/lost-cluster-policy": "withdraw",
                "meshsync.io/lost-cluster-grace-period": "2s"}},
            "spec": {"datastoreType": "kubernetes",
                "kubeconfig": b.kubeconfig().display().to_string(),
                "syncOptions": {"overlayRoutingMode": "Enabled"}}}),
    )
    .await;
    let server = TestServer::start(mesh_over(&a.etcd)).await;
    let mut agent = server.agent("all");
    let full = |m: &Mirror| {
        is(m, "cluster-b", pb::ClusterState::InSync)
            && held(m, "cluster-b", "Node", "", "node-b").is_some()
            && held(m, "cluster-b", "IPPool", "", "pool-b").is_some()
            && b_weps(m).len() == 1
    };
    pump(
        &mut agent,
        "overlay kinds from the KDD remote",
        KDD_WAIT,
        full,
    )
    .await;
    let node = held(agent.mirror(), "cluster-b", "Node", "", "node-b").unwrap();
    assert_eq!(node["spec"]["bgp"]["ipv4Address"], "192.168.12.1/24");
    assert!(
        held(
            agent.mirror(),
            "cluster-b",
            "GlobalNetworkPolicy",
            "",
            "never-remote"
        )
        .is_none()
    );

    // The remote's API server dies: after the grace period its data is withdrawn...
    b.kill();
    pump(
        &mut agent,
        "cluster-b withdrawn after its grace period",
        KDD_WAIT,
        |m| {
            is(m, "cluster-b", pb::ClusterState::ConnectionFailed)
                && m.resources().keys().all(|k| k.cluster != "cluster-b")
        },
    )
    .await;
    assert!(agent.mirror().in_sync(), "the local cluster stays in sync");
    // ...and restored when it is back.
    b.restart();
    pump(&mut agent, "cluster-b restored", KDD_WAIT, full).await;
}
