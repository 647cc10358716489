#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;
// `meshsync connect` against two real kube-apiservers: the real binary on one kubeconfig with two
// contexts creates, in each cluster, what the other needs to read it (the remote RBAC of
// rbac.yaml, a TokenRequest token) and what it needs to read the other (the token kubeconfig
// Secret and the RCC); the token authenticates against the other cluster with exactly the remote
// role's rights; the real `meshsync serve` on cluster A reaches B through the RCC; a second run
// changes nothing but the token; `--dry-run` prints parseable YAML and contacts no cluster.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use base64::Engine;
use serde_json::Value;
use support::apiserver::ApiServer;
use support::binary::{DEADLINE, Serve, meshsync, run};
use support::kdd::{namespace_with_pods, write_file};
use support::log_text::{text_field, text_message_is};

/// One kubeconfig with a context per (context name, API server) — as a user's `~/.kube/config`.
fn two_context_kubeconfig(contexts: &[(&str, &ApiServer)]) -> String {
    let mut clusters = String::new();
    let mut users = String::new();
    let mut ctxs = String::new();
    for (i, (name, api)) in contexts.iter().enumerate() {
        let c = &api.credentials;
        clusters.push_str(&format!(
            "- name: c{i}\n  cluster:\n    server: {}\n    certificate-authority: {}\n",
            api.url(),
            c.server_ca.display()
        ));
        users.push_str(&format!(
            "- name: u{i}\n  user:\n    client-certificate: {}\n    client-key: {}\n",
            c.admin_cert.display(),
            c.admin_key.display()
        ));
        ctxs.push_str(&format!(
            "- name: {name}\n  context:\n    cluster: c{i}\n    user: u{i}\n"
        ));
    }
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n{clusters}users:\n{users}contexts:\n{ctxs}current-context: {}\n",
        contexts[0].0
    )
}

fn connect(kubeconfig: &Path, a: &ApiServer, b: &ApiServer, extra: &[&str]) -> (String, String) {
    let mut cmd = meshsync();
    cmd.arg("connect")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--context-a", "East_1", "--context-b", "west"])
        .args(["--server-a", &a.url(), "--server-b", &b.url()])
        .args(extra);
    let done = run(&mut cmd, DEADLINE);
    assert!(done.status.success(), "connect failed: {}", done.describe());
    (done.stdout, done.stderr)
}

fn resource_version(api: &ApiServer, kind: &str, ns: Option<&str>, name: &str) -> String {
    api.get_json(kind, ns, name)["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The kinds and names `connect` writes into `api` for reading the cluster `remote`.
fn objects(remote: &str) -> Vec<(&'static str, Option<&'static str>, String)> {
    vec![
        ("namespace", None, "meshsync".into()),
        ("serviceaccount", Some("meshsync"), "meshsync-remote".into()),
        ("clusterrole", None, "meshsync-remote".into()),
        ("clusterrolebinding", None, "meshsync-remote".into()),
        (
            "secret",
            Some("meshsync"),
            format!("meshsync-remote-{remote}"),
        ),
        (
            "remoteclusterconfigurations.crd.projectcalico.org",
            None,
            remote.to_string(),
        ),
    ]
}

/// `kubectl --kubeconfig KUBECONFIG ARGS` with nothing from the environment.
fn kubectl_as(kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    Command::new("kubectl")
        .env_remove("KUBECONFIG")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl must be on PATH")
}

#[test]
fn connect_two_real_clusters_both_ways_and_serve_reaches_the_other() {
    let east = ApiServer::start("connect-east");
    let west = ApiServer::start("connect-west");
    namespace_with_pods(&west, "app-west", "node-w", 2, 7);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = write_file(
        dir.path(),
        "kubeconfig",
        &two_context_kubeconfig(&[("East_1", &east), ("west", &west)]),
    );

    let (stdout, stderr) = connect(&kubeconfig, &east, &west, &[]);
    assert!(stderr.is_empty(), "stderr stays quiet: {stderr}");
    // Cluster names: the contexts as DNS-1123 labels.
    for (api, remote) in [(&east, "west"), (&west, "east-1")] {
        for (kind, ns, name) in objects(remote) {
            api.get_json(kind, ns, &name);
        }
    }
    for line in [
        "east-1: serviceaccount meshsync/meshsync-remote created",
        "west: clusterrole meshsync-remote created",
        "east-1: secret meshsync/meshsync-remote-west created",
        "west: remoteclusterconfiguration east-1 created",
        "west: token for serviceaccount meshsync/meshsync-remote issued",
    ] {
        assert!(stdout.contains(line), "{line:?} in:\n{stdout}");
    }
    // The ClusterRole is rbac.yaml's, and the RCC names the Secret.
    let role = east.get_json("clusterrole", None, "meshsync-remote");
    let shipped: Vec<Value> = serde_saphyr::from_multiple(&support::kdd::rbac_yaml()).unwrap();
    let shipped = shipped
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "meshsync-remote")
        .unwrap();
    assert_eq!(role["rules"], shipped["rules"]);
    let rcc = east.get_json(
        "remoteclusterconfigurations.crd.projectcalico.org",
        None,
        "west",
    );
    assert_eq!(
        rcc["spec"]["clusterAccessSecret"]["name"],
        "meshsync-remote-west"
    );
    assert_eq!(rcc["spec"]["syncOptions"]["overlayRoutingMode"], "Disabled");

    // The token kubeconfig in east's Secret authenticates against west with the remote role only.
    let secret = east.get_json("secret", Some("meshsync"), "meshsync-remote-west");
    let decode = |key: &str| {
        let b64 = secret["data"][key].as_str().unwrap();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(decode("datastoreType"), "kubernetes");
    let token_kubeconfig = write_file(dir.path(), "west-token", &decode("kubeconfig"));
    let pods = kubectl_as(&token_kubeconfig, &["get", "pods", "-A", "-o", "name"]);
    assert!(pods.status.success(), "{pods:?}");
    assert!(String::from_utf8_lossy(&pods.stdout).contains("pod/pod-0"));
    for allowed in [
        ["list", "pods"],
        ["watch", "namespaces"],
        ["list", "endpointslices.discovery.k8s.io"],
    ] {
        let out = kubectl_as(
            &token_kubeconfig,
            &["auth", "can-i", allowed[0], allowed[1], "-A"],
        );
        assert!(out.status.success(), "may {allowed:?}: {out:?}");
    }
    let secrets = kubectl_as(&token_kubeconfig, &["get", "secrets", "-A"]);
    assert!(!secrets.status.success(), "{secrets:?}");
    assert!(
        String::from_utf8_lossy(&secrets.stderr).contains("forbidden"),
        "{secrets:?}"
    );
    for refused in [
        ["get", "secrets"],
        ["create", "pods"],
        ["delete", "namespaces"],
    ] {
        let out = kubectl_as(
            &token_kubeconfig,
            &["auth", "can-i", refused[0], refused[1], "-A"],
        );
        assert!(!out.status.success(), "may not {refused:?}: {out:?}");
    }

    // The real server on east reaches west through the RCC connect wrote.
    let datastore = format!("kubernetes:{}", east.kubeconfig().display());
    let mut serve = Serve::on_loopback(&datastore, &[]);
    let serving = serve.wait_serving();
    let in_sync = |l: &str| {
        text_message_is(
            l,
            "Sending in-sync update for RemoteClusterConfiguration(west)",
        )
    };
    let first_in_sync = serve.wait_line("west in sync", in_sync);
    let grpc = text_field(&serving, "grpc").unwrap();
    let mut status = meshsync();
    status.args([
        "status",
        "--server",
        &format!("http://{grpc}"),
        "--output",
        "json",
    ]);
    let status = run(&mut status, DEADLINE);
    assert!(status.status.success(), "{}", status.describe());
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    let west_status = status["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cluster"] == "west")
        .unwrap_or_else(|| panic!("west in {status}"));
    assert_eq!(west_status["state"], "InSync", "{status}");
    assert!(west_status["keys"].as_u64().unwrap() >= 2, "{status}");

    // Again: the same objects, nothing changed but the Secrets (the new token).
    let before: Vec<(String, String)> = [(&east, "west"), (&west, "east-1")]
        .into_iter()
        .flat_map(|(api, remote)| {
            objects(remote).into_iter().map(move |(kind, ns, name)| {
                (
                    format!("{kind}/{name}"),
                    resource_version(api, kind, ns, &name),
                )
            })
        })
        .collect();
    let (stdout, stderr) = connect(&kubeconfig, &east, &west, &[]);
    assert!(stderr.is_empty(), "{stderr}");
    let after: Vec<(String, String)> = [(&east, "west"), (&west, "east-1")]
        .into_iter()
        .flat_map(|(api, remote)| {
            objects(remote).into_iter().map(move |(kind, ns, name)| {
                (
                    format!("{kind}/{name}"),
                    resource_version(api, kind, ns, &name),
                )
            })
        })
        .collect();
    for (b, a) in before.iter().zip(&after) {
        if b.0.starts_with("secret/") {
            assert_ne!(b.1, a.1, "{} holds the new token", b.0);
        } else {
            assert_eq!(b, a, "unchanged by the second run");
        }
    }
    assert!(!stdout.contains(" created"), "{stdout}");
    assert!(
        stdout.contains("west: clusterrole meshsync-remote unchanged"),
        "{stdout}"
    );
    assert!(
        stdout.contains("east-1: secret meshsync/meshsync-remote-west configured"),
        "{stdout}"
    );
    // The server reconnects to west with the new token (each log line has its own timestamp).
    serve.wait_line("west in sync with the new token", |l| {
        in_sync(l) && l != first_in_sync
    });
}

#[test]
fn dry_run_prints_yaml_documents_and_contacts_no_cluster() {
    // Two listeners that record any connection: the dry run must make none.
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = base64::engine::general_purpose::STANDARD.encode("not a real CA");
    let mut text = String::from("apiVersion: v1\nkind: Config\nclusters:\n");
    // The clusters' URLs are the listeners: a real run would connect to them.
    for (i, l) in [&a, &b].iter().enumerate() {
        text.push_str(&format!(
            "- name: c{i}\n  cluster:\n    server: https://{}\n    certificate-authority-data: {ca}\n",
            l.local_addr().unwrap()
        ));
    }
    text.push_str("users:\n- name: u\n  user:\n    token: admin-token-must-not-leak\ncontexts:\n");
    for i in 0..2 {
        text.push_str(&format!(
            "- name: ctx{i}\n  context:\n    cluster: c{i}\n    user: u\n"
        ));
    }
    let kubeconfig = write_file(dir.path(), "kubeconfig", &text);
    let mut cmd = meshsync();
    cmd.arg("connect")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "--context-a",
            "ctx0",
            "--context-b",
            "ctx1",
            "--name-a",
            "east",
            "--name-b",
            "west",
        ])
        .args([
            "--server-a",
            "https://east.example:6443",
            "--server-b",
            "https://west.example:6443",
        ])
        .args(["--overlay-routing", "--dry-run"]);
    let done = run(&mut cmd, DEADLINE);
    assert!(done.status.success(), "{}", done.describe());
    assert!(done.stderr.is_empty(), "{}", done.describe());
    for l in [&a, &b] {
        assert!(l.accept().is_err(), "the dry run connected to a cluster");
    }
    let documents: Vec<Value> = serde_saphyr::from_multiple(&done.stdout)
        .unwrap_or_else(|e| panic!("{e}\n{}", done.stdout));
    let kinds: Vec<String> = documents
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    let remote = [
        "Namespace/meshsync",
        "ServiceAccount/meshsync-remote",
        "ClusterRole/meshsync-remote",
        "ClusterRoleBinding/meshsync-remote",
    ];
    let mut expected: Vec<String> = remote
        .iter()
        .chain(&remote)
        .map(|s| s.to_string())
        .collect();
    expected.extend([
        "Secret/meshsync-remote-west".to_string(),
        "RemoteClusterConfiguration/west".to_string(),
        "Secret/meshsync-remote-east".to_string(),
        "RemoteClusterConfiguration/east".to_string(),
    ]);
    assert_eq!(kinds, expected);
    assert!(!done.stdout.contains("admin-token-must-not-leak"));
    let secret = &documents[8];
    let kubeconfig = secret["stringData"]["kubeconfig"].as_str().unwrap();
    assert!(
        kubeconfig.contains("https://west.example:6443"),
        "{kubeconfig}"
    );
    assert!(kubeconfig.contains("<redacted"), "{kubeconfig}");
    assert!(kubeconfig.contains(&ca), "the remote's CA: {kubeconfig}");
    assert_eq!(
        documents[9]["spec"]["syncOptions"]["overlayRoutingMode"],
        "Enabled"
    );
    assert!(done.stdout.contains("# cluster A (east, context ctx0)"));
}
