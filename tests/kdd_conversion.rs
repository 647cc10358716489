#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;
// The Kubernetes datastore against a real kube-apiserver (issue 12): core objects created with
// kubectl reach an agent converted as Calico's KDD converts them (Pods → WorkloadEndpoints,
// Namespaces and ServiceAccounts → Profiles, Nodes → Calico Nodes, NetworkPolicies →
// KubernetesNetworkPolicies, Calico's v1 CRDs → v3 objects, Services with their Calico kind), and
// live changes arrive as the real differences only.

use meshsync_agent::Mirror;
use meshsync_proto as pb;
use serde_json::{Value, json};
use support::apiserver::ApiServer;
use support::kdd::*;
use support::mesh::{TestServer, key_of, pump, updates};

const NS: &str = "kdd-conv";
const WEP: &str = "WorkloadEndpoint";

fn wep_name(node: &str, pod: &str) -> String {
    meshsync_datastore::kubernetes::pod::workload_endpoint_name(node, "k8s", pod, "eth0")
}

fn setup(api: &ApiServer) {
    api.apply(&format!(
        r#"
apiVersion: v1
kind: Namespace
metadata:
  name: {NS}
  labels:
    team: a
---
# No controller manager runs here to create it.
apiVersion: v1
kind: ServiceAccount
metadata:
  name: default
  namespace: {NS}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: api
  namespace: {NS}
  labels:
    tier: x
---
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  namespace: {NS}
  labels:
    app: web
  annotations:
    cni.projectcalico.org/containerID: c0ffee
    cni.projectcalico.org/floatingIPs: '["203.0.113.7"]'
    kubernetes.io/ingress-bandwidth: 10M
    k8s.v1.cni.cncf.io/network-status: '[{{"name":"net1"}}]'
spec:
  nodeName: node-1
  serviceAccountName: api
  containers:
    - name: web
      image: registry.invalid/web:1
      ports:
        - name: http
          containerPort: 8080
        - containerPort: 9090
---
apiVersion: v1
kind: Pod
metadata:
  name: host-0
  namespace: {NS}
spec:
  nodeName: node-1
  hostNetwork: true
  containers:
    - name: c
      image: registry.invalid/c:1
---
apiVersion: v1
kind: Pod
metadata:
  name: pending-0
  namespace: {NS}
spec:
  containers:
    - name: c
      image: registry.invalid/c:1
---
apiVersion: v1
kind: Node
metadata:
  name: kdd-node-1
  labels:
    kubernetes.io/os: linux
  annotations:
    projectcalico.org/IPv4Address: 192.168.7.1/24
    projectcalico.org/ASNumber: "64512"
    projectcalico.org/IPv4VXLANTunnelAddr: not-an-ip
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny
  namespace: {NS}
spec:
  podSelector: {{}}
  policyTypes: [Ingress]
---
apiVersion: crd.projectcalico.org/v1
kind: IPPool
metadata:
  name: kdd-pool
  annotations:
    projectcalico.org/metadata: '{{"labels":{{"v3":"yes"}}}}'
spec:
  cidr: 10.77.0.0/16
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: {NS}
spec:
  selector:
    app: web
  ports:
    - port: 80
      targetPort: 8080
"#
    ));
    // The CNI plugin's part: the pod's IP, in its status.
    support::kdd::patch_pod_status(
        api,
        NS,
        "web-0",
        r#"{"status":{"podIP":"10.1.0.5","podIPs":[{"ip":"10.1.0.5"}]}}"#,
    );
}

fn wep(m: &Mirror) -> Option<Value> {
    held(m, "", WEP, NS, &wep_name("node-1", "web-0"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_objects_reach_agents_converted_as_calico_does() {
    let api = ApiServer::start("conv");
    setup(&api);
    let server = TestServer::start(kdd_mesh(api.kubeconfig())).await;
    let mut agent = server.agent("all");
    pump(
        &mut agent,
        "in sync with the pod's endpoint",
        KDD_WAIT,
        |m| {
            m.in_sync() && wep(m).is_some_and(|w| w["spec"]["ipNetworks"] == json!(["10.1.0.5/32"]))
        },
    )
    .await;
    let m = agent.mirror();

    // Pod → WorkloadEndpoint.
    let w = wep(m).unwrap();
    assert_eq!(w["apiVersion"], "projectcalico.org/v3");
    assert_eq!(w["metadata"]["namespace"], NS);
    let labels = &w["metadata"]["labels"];
    assert_eq!(labels["app"], "web");
    assert_eq!(labels["projectcalico.org/namespace"], NS);
    assert_eq!(labels["projectcalico.org/orchestrator"], "k8s");
    assert_eq!(labels["projectcalico.org/serviceaccount"], "api");
    let spec = &w["spec"];
    assert_eq!(spec["node"], "node-1");
    assert_eq!(spec["pod"], "web-0");
    assert_eq!(spec["endpoint"], "eth0");
    assert_eq!(spec["containerID"], "c0ffee");
    assert_eq!(
        spec["interfaceName"],
        meshsync_datastore::kubernetes::pod::interface_name("cali", NS, "web-0")
    );
    assert_eq!(
        spec["profiles"],
        json!([format!("kns.{NS}"), format!("ksa.{NS}.api")])
    );
    assert_eq!(
        spec["ports"],
        json!([{"name": "http", "protocol": "tcp", "port": 8080}])
    );
    // Host-network and unscheduled pods have no endpoint.
    assert_eq!(
        held_names(m, "", WEP, NS),
        vec![wep_name("node-1", "web-0")]
    );

    // Namespace and ServiceAccount → Profiles, with Calico's composite revisions.
    let kns = held(m, "", "Profile", "", &format!("kns.{NS}")).expect("kns profile");
    assert_eq!(
        kns["spec"],
        json!({"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}],
            "labelsToApply": {"pcns.team": "a", "pcns.projectcalico.org/name": NS,
                // The API server labels every namespace with its name.
                "pcns.kubernetes.io/metadata.name": NS}})
    );
    let rev = held_revision(m, "", "Profile", "", &format!("kns.{NS}")).unwrap();
    assert!(rev.ends_with('/') && rev.len() > 1, "{rev:?}");
    let ksa = held(m, "", "Profile", "", &format!("ksa.{NS}.api")).expect("ksa profile");
    assert_eq!(
        ksa["spec"],
        json!({"labelsToApply": {"pcsa.tier": "x", "pcsa.projectcalico.org/name": "api"}})
    );
    let rev = held_revision(m, "", "Profile", "", &format!("ksa.{NS}.api")).unwrap();
    assert!(rev.starts_with('/') && rev.len() > 1, "{rev:?}");
    assert!(held(m, "", "Profile", "", "projectcalico-default-allow").is_some());

    // Node → Calico Node (the invalid annotation is ignored, the node is not).
    let node = held(m, "", "Node", "", "kdd-node-1").expect("node");
    assert_eq!(
        node["spec"]["bgp"],
        json!({"ipv4Address": "192.168.7.1/24", "asNumber": 64512})
    );
    assert!(node["spec"].get("ipv4VXLANTunnelAddr").is_none());
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/os"], "linux");
    assert_eq!(
        node["spec"]["orchRefs"],
        json!([{"nodeName": "kdd-node-1", "orchestrator": "k8s"}])
    );

    // NetworkPolicy, Calico CRD, Service.
    let knp = held(m, "", "KubernetesNetworkPolicy", NS, "deny").expect("knp");
    assert_eq!(knp["spec"]["policyTypes"], json!(["Ingress"]));
    let pool = held(m, "", "IPPool", "", "kdd-pool").expect("ippool");
    assert_eq!(pool["apiVersion"], "projectcalico.org/v3");
    assert_eq!(pool["metadata"]["labels"], json!({"v3": "yes"}));
    assert_eq!(pool["spec"]["cidr"], "10.77.0.0/16");
    assert!(pool["metadata"].get("resourceVersion").is_none());
    let svc = held(m, "", "Service", NS, "web").expect("service");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert!(held(m, "", "KubernetesService", NS, "web").is_some());
    // Nothing Kubernetes-internal leaks: no Secrets, no RCCs.
    assert!(m.resources().keys().all(|k| k.kind != "Secret"));

    // Live: a status-only change sends nothing; a label change sends the endpoint once.
    support::kdd::patch_pod_status(
        &api,
        NS,
        "web-0",
        r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
    );
    api.kubectl_ok(&["label", "pod", "web-0", "-n", NS, "app=web2", "--overwrite"]);
    let events = pump(&mut agent, "the relabelled endpoint", KDD_WAIT, |m| {
        wep(m).is_some_and(|w| w["metadata"]["labels"]["app"] == "web2")
    })
    .await;
    let wep_updates: Vec<pb::Update> = updates(&events)
        .into_iter()
        .filter(|u| key_of(u).kind == WEP)
        .collect();
    assert_eq!(
        wep_updates.len(),
        1,
        "one endpoint update for two pod writes: {wep_updates:?}"
    );

    // Deleting the pod deletes its endpoint.
    api.kubectl_ok(&[
        "delete",
        "pod",
        "web-0",
        "-n",
        NS,
        "--grace-period=0",
        "--force",
    ]);
    pump(&mut agent, "the endpoint deleted", KDD_WAIT, |m| {
        wep(m).is_none()
    })
    .await;
    assert!(agent.mirror().in_sync());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_restart_sends_only_what_changed() {
    let api = ApiServer::start("restart");
    support::kdd::namespace_with_pods(&api, "app", "node-1", 3, 6);
    let server = TestServer::start(kdd_mesh(api.kubeconfig())).await;
    let mut agent = server.agent("all");
    pump(&mut agent, "in sync with three pods", KDD_WAIT, |m| {
        m.in_sync() && held_names(m, "", WEP, "app").len() == 3
    })
    .await;
    let before = agent.mirror().resources().clone();

    api.restart();
    // One real change after the restart: a pod deleted. Agents get exactly its deletion.
    api.kubectl_ok(&[
        "delete",
        "pod",
        "pod-1",
        "-n",
        "app",
        "--grace-period=0",
        "--force",
    ]);
    let events = pump(
        &mut agent,
        "the deleted pod's endpoint gone",
        KDD_WAIT,
        |m| held_names(m, "", WEP, "app").len() == 2,
    )
    .await;
    api.apply("apiVersion: crd.projectcalico.org/v1\nkind: GlobalNetworkSet\nmetadata:\n  name: sentinel-restart\nspec: {}\n");
    let mut more = pump(&mut agent, "the sentinel", KDD_WAIT, |m| {
        held(m, "", "GlobalNetworkSet", "", "sentinel-restart").is_some()
    })
    .await;
    more.pop();
    let sent: Vec<(String, String, String)> = updates(&events)
        .into_iter()
        .chain(updates(&more))
        .map(|u| (u.kind.clone(), u.name.clone(), format!("{:?}", u.r#type())))
        .collect();
    assert_eq!(
        sent,
        vec![(
            WEP.to_string(),
            wep_name("node-1", "pod-1"),
            "Deleted".to_string()
        )],
        "only the real difference crosses a restart"
    );
    pump(&mut agent, "in sync after the restart", KDD_WAIT, |m| {
        m.in_sync()
    })
    .await;
    let after = agent.mirror().resources();
    assert_eq!(
        after.len(),
        before.len(),
        "one endpoint fewer, one sentinel more"
    );
}

/// A kubeconfig like `api`'s admin one, but through `127.0.0.1:<port>`.
fn kubeconfig_via(api: &ApiServer, port: u16, dir: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(api.kubeconfig()).expect("kubeconfig");
    let text = text.replace(
        &format!("127.0.0.1:{}", api.port),
        &format!("127.0.0.1:{port}"),
    );
    support::kdd::write_file(dir, "relayed.kubeconfig", &text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_watch_history_relists_and_sends_only_the_differences() {
    // Without the watch cache, a watch resumes from etcd itself: once etcd compacted past the
    // watcher's resourceVersion, the API server answers 410 Gone and the watcher must relist.
    let api = ApiServer::start_with("gone", &["--watch-cache=false"]);
    support::kdd::namespace_with_pods(&api, "app", "node-1", 3, 8);
    let relay = support::relay::Relay::start(([127, 0, 0, 1], api.port).into()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = kubeconfig_via(&api, relay.port, dir.path());
    let mut config = kdd_config(&kubeconfig, "");
    let counters = config.common.counters.clone();
    config.probe_interval = std::time::Duration::from_millis(300);
    let source = Box::pin(meshsync_datastore::kubernetes::watch(config));
    let mesh = meshsync_mesh::mesh(source, meshsync_mesh::MeshConfig::default());
    let server = TestServer::start(mesh).await;
    let mut agent = server.agent("all");
    pump(&mut agent, "in sync with three pods", KDD_WAIT, |m| {
        m.in_sync() && held_names(m, "", WEP, "app").len() == 3
    })
    .await;
    let before = agent.mirror().resources().clone();
    assert_eq!(counters.expired_relists(), 0);

    // The link goes away; meanwhile one pod is deleted, one created, one relabelled, and etcd
    // compacts all of that history.
    relay.cut();
    pump(&mut agent, "the cut noticed", KDD_WAIT, |m| {
        m.clusters()
            .get("")
            .is_some_and(|c| c.state == pb::ClusterState::ConnectionFailed)
    })
    .await;
    api.kubectl_ok(&[
        "delete",
        "pod",
        "pod-1",
        "-n",
        "app",
        "--grace-period=0",
        "--force",
    ]);
    api.kubectl_ok(&["label", "pod", "pod-0", "-n", "app", "moved=yes"]);
    api.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-9\n  namespace: app\n  annotations:\n    cni.projectcalico.org/podIP: 10.8.0.99/32\nspec:\n  nodeName: node-1\n  containers:\n    - name: c\n      image: registry.invalid/c:1\n");
    let etcd = api.etcd.client().await;
    let (_, revision) = etcd
        .list_prefix(b"/nothing-here/", 0, 1)
        .await
        .expect("revision");
    etcd.compact(revision).await.expect("compact");

    relay.restore();
    let events = pump(&mut agent, "the relisted differences", KDD_WAIT, |m| {
        m.in_sync()
            && held_names(m, "", WEP, "app").len() == 3
            && held(m, "", WEP, "app", &wep_name("node-1", "pod-9")).is_some()
            && held(m, "", WEP, "app", &wep_name("node-1", "pod-0"))
                .is_some_and(|w| w["metadata"]["labels"]["moved"] == "yes")
    })
    .await;
    api.apply("apiVersion: crd.projectcalico.org/v1\nkind: GlobalNetworkSet\nmetadata:\n  name: sentinel-gone\nspec: {}\n");
    let mut more = pump(&mut agent, "the sentinel", KDD_WAIT, |m| {
        held(m, "", "GlobalNetworkSet", "", "sentinel-gone").is_some()
    })
    .await;
    more.pop();
    let mut sent: Vec<(String, String)> = updates(&events)
        .into_iter()
        .chain(updates(&more))
        .map(|u| (u.name.clone(), format!("{:?}", u.r#type())))
        .collect();
    sent.sort();
    let mut want = vec![
        (wep_name("node-1", "pod-0"), "Updated".to_string()),
        (wep_name("node-1", "pod-1"), "Deleted".to_string()),
        (wep_name("node-1", "pod-9"), "New".to_string()),
    ];
    want.sort();
    assert_eq!(sent, want, "a relist sends the differences only");
    // The path taken was the relist after 410 Gone (at least the pods' watch expired).
    assert!(counters.expired_relists() >= 1, "no 410 relist happened");
    assert_eq!(agent.mirror().resources().len(), before.len() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_v3_crds_are_read_as_they_are() {
    let api = ApiServer::start_with_crds("v3", support::apiserver::V3_CRD_FILES, &[]);
    api.apply(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: v3-pool\n  labels:\n    zone: a\nspec:\n  cidr: 10.88.0.0/16\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata:\n  name: v3-set\nspec:\n  nets: [192.0.2.0/24]\n",
    );
    let server = TestServer::start(kdd_mesh(api.kubeconfig())).await;
    let mut agent = server.agent("all");
    pump(&mut agent, "in sync with the v3 objects", KDD_WAIT, |m| {
        m.in_sync() && held(m, "", "GlobalNetworkSet", "", "v3-set").is_some()
    })
    .await;
    let pool = held(agent.mirror(), "", "IPPool", "", "v3-pool").expect("v3 pool");
    assert_eq!(pool["apiVersion"], "projectcalico.org/v3");
    assert_eq!(pool["metadata"]["labels"], json!({"zone": "a"}));
    assert_eq!(pool["spec"]["cidr"], "10.88.0.0/16");
    assert!(pool["metadata"].get("resourceVersion").is_none());
    let set = held(agent.mirror(), "", "GlobalNetworkSet", "", "v3-set").unwrap();
    assert_eq!(set["spec"]["nets"], json!(["192.0.2.0/24"]));
}
