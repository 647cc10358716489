//! The tests' real Kubernetes API server (tests/support/apiserver.rs): kube-apiserver over etcd,
//! with TLS, an admin identity, RBAC, service-account tokens and Calico's CRDs. Objects are written
//! and read back with `kubectl`, as a user would.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::process::Command;

use serde_json::Value;
use support::apiserver::{ApiServer, shared};

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} missing in {v:#}"))
}

#[test]
fn namespace_pod_and_calico_policy_round_trip() {
    let api = shared();
    api.create_namespace("smoke");
    api.apply(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  namespace: smoke
  labels:
    app: web
spec:
  nodeName: node-1
  containers:
    - name: web
      image: registry.invalid/web:1
      ports:
        - name: http
          containerPort: 8080
---
apiVersion: crd.projectcalico.org/v1
kind: NetworkPolicy
metadata:
  name: allow-web
  namespace: smoke
spec:
  order: 100
  selector: app == 'web'
  types:
    - Ingress
  ingress:
    - action: Allow
      protocol: TCP
      source:
        selector: role == 'frontend'
      destination:
        ports:
          - 8080
"#,
    );

    let ns = api.get_json("namespace", None, "smoke");
    assert_eq!(str_at(&ns, "/metadata/name"), "smoke");
    assert_eq!(str_at(&ns, "/status/phase"), "Active");

    let pod = api.get_json("pod", Some("smoke"), "web-0");
    assert_eq!(str_at(&pod, "/metadata/labels/app"), "web");
    assert_eq!(str_at(&pod, "/spec/nodeName"), "node-1");
    // The ServiceAccount admission plugin ran: the pod got the namespace's default account.
    assert_eq!(str_at(&pod, "/spec/serviceAccountName"), "default");
    assert_eq!(
        pod.pointer("/spec/containers/0/ports/0/containerPort"),
        Some(&Value::from(8080))
    );

    let policy = api.get_json(
        "networkpolicies.crd.projectcalico.org",
        Some("smoke"),
        "allow-web",
    );
    assert_eq!(str_at(&policy, "/apiVersion"), "crd.projectcalico.org/v1");
    assert_eq!(str_at(&policy, "/kind"), "NetworkPolicy");
    assert_eq!(str_at(&policy, "/spec/selector"), "app == 'web'");
    assert_eq!(policy.pointer("/spec/order"), Some(&Value::from(100)));
    assert_eq!(str_at(&policy, "/spec/ingress/0/action"), "Allow");
    assert_eq!(
        str_at(&policy, "/spec/ingress/0/source/selector"),
        "role == 'frontend'"
    );
    assert!(
        !str_at(&policy, "/metadata/resourceVersion").is_empty(),
        "a stored object has a resourceVersion"
    );

    // The CRD's structural schema is enforced: a field of the wrong type is refused.
    let bad = api.kubectl_output(
        &["apply", "--server-side", "-f", "-"],
        Some(
            "apiVersion: crd.projectcalico.org/v1\nkind: NetworkPolicy\nmetadata:\n  name: bad\n  namespace: smoke\nspec:\n  order: not-a-number\n",
        ),
    );
    assert!(
        !bad.status.success(),
        "a policy with a string order must be refused"
    );
}

#[test]
fn remote_cluster_configuration_crd_is_served_with_its_default() {
    let api = shared();
    api.apply(
        r#"
apiVersion: crd.projectcalico.org/v1
kind: RemoteClusterConfiguration
metadata:
  name: cluster-b
spec:
  datastoreType: etcdv3
  etcdEndpoints: https://10.0.0.1:2379
"#,
    );
    let rcc = api.get_json(
        "remoteclusterconfigurations.crd.projectcalico.org",
        None,
        "cluster-b",
    );
    assert_eq!(str_at(&rcc, "/spec/datastoreType"), "etcdv3");
    assert_eq!(str_at(&rcc, "/spec/etcdEndpoints"), "https://10.0.0.1:2379");
    assert_eq!(
        str_at(&rcc, "/spec/syncOptions/overlayRoutingMode"),
        "Disabled",
        "the CRD's default applies"
    );
    assert!(
        rcc.pointer("/metadata/namespace").is_none(),
        "RCCs are cluster-scoped"
    );
}

/// Output of a kubectl run against `api` that authenticates only with `token`.
fn kubectl_with_token(api: &ApiServer, token: &str, args: &[&str]) -> std::process::Output {
    let empty = api.dir().join("empty-kubeconfig");
    std::fs::write(&empty, "apiVersion: v1\nkind: Config\n").expect("write kubeconfig");
    Command::new("kubectl")
        .env_remove("KUBECONFIG")
        .arg("--kubeconfig")
        .arg(&empty)
        .arg(format!("--server={}", api.url()))
        .arg(format!(
            "--certificate-authority={}",
            api.credentials.server_ca.display()
        ))
        .arg(format!("--token={token}"))
        .args(args)
        .output()
        .expect("kubectl must be on PATH")
}

#[test]
fn rbac_is_enforced_for_service_accounts_and_certificates() {
    let api = shared();
    api.create_namespace("rbac");
    api.apply(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: reader\n  namespace: rbac\n",
    );

    // Impersonation by the admin: a service account without a binding may not list pods.
    let denied = api.kubectl_output(
        &[
            "--as=system:serviceaccount:rbac:reader",
            "get",
            "pods",
            "-n",
            "rbac",
        ],
        None,
    );
    assert!(!denied.status.success());
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(
        stderr.contains("forbidden"),
        "expected forbidden, got: {stderr}"
    );

    // A real token signed with the service-account key authenticates, and is forbidden too.
    let token = api.kubectl_ok(&["create", "token", "reader", "-n", "rbac"]);
    let token = token.trim();
    let out = kubectl_with_token(api, token, &["get", "pods", "-n", "rbac"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("system:serviceaccount:rbac:reader"),
        "the token must authenticate as the service account and be forbidden: {stderr}"
    );

    // A garbage token does not authenticate at all (401, not 403).
    let out = kubectl_with_token(api, "not-a-token", &["get", "pods", "-n", "rbac"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("Unauthorized"),
        "expected Unauthorized, got: {stderr}"
    );

    // After a RoleBinding the same token may list pods in that namespace only.
    api.apply(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: pod-reader
  namespace: rbac
rules:
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: reader-reads-pods
  namespace: rbac
subjects:
  - kind: ServiceAccount
    name: reader
    namespace: rbac
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: pod-reader
"#,
    );
    let out = kubectl_with_token(api, token, &["get", "pods", "-n", "rbac", "-o", "name"]);
    assert!(
        out.status.success(),
        "bound service account must list pods: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kubectl_with_token(api, token, &["get", "pods", "-n", "smoke-elsewhere"]);
    assert!(
        !out.status.success(),
        "the binding is for namespace rbac only"
    );

    // A client certificate from the client CA without groups: authenticated, not authorised.
    let kubeconfig = api.kubeconfig_for("plain-user", &[]);
    let out = Command::new("kubectl")
        .env_remove("KUBECONFIG")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "namespaces"])
        .output()
        .expect("kubectl must be on PATH");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("User \"plain-user\"")
            && stderr.contains("forbidden"),
        "expected plain-user to be forbidden: {stderr}"
    );
}

#[test]
fn a_private_api_server_has_its_own_data() {
    let private = ApiServer::start("private");
    assert_ne!(private.port, shared().port);
    assert_ne!(private.etcd_prefix, shared().etcd_prefix);
    private.create_namespace("only-here");
    assert!(
        private
            .kubectl_ok(&["get", "namespaces", "-o", "name"])
            .contains("namespace/only-here")
    );
    let elsewhere = shared().kubectl_output(&["get", "namespace", "only-here"], None);
    assert!(
        !elsewhere.status.success(),
        "the shared server must not see it"
    );

    // Its data is in its own etcd, under its own prefix.
    let key = format!("{}/namespaces/only-here", private.etcd_prefix);
    let kvs = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let client = private.etcd.client().await;
            client.list_prefix(key.as_bytes(), 0, 10).await
        })
        .expect("list the private etcd");
    assert_eq!(kvs.0.len(), 1, "one key {key} in the private etcd");

    let pid = private.pid().expect("running");
    drop(private);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "kube-apiserver must be stopped when dropped: {stat}"
    );
}
