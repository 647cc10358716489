#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;
// The real `meshsync serve --datastore kubernetes:KUBECONFIG` against a real kube-apiserver, as the
// README's Kubernetes quick start runs it (issue 12): the operator's grep works, an agent process
// gets the cluster's converted data, and a kubeconfig that does not exist is a clear, retried
// ConnectionFailed while the server keeps serving.

use std::net::SocketAddr;

use serde_json::Value;
use support::apiserver::shared;
use support::binary::{DEADLINE, Serve, meshsync, run};
use support::log_text::{text_field, text_message_is};

fn grpc_url(serving: &str) -> String {
    let grpc = text_field(serving, "grpc").unwrap_or_else(|| panic!("no grpc= in {serving:?}"));
    let addr: SocketAddr = grpc.parse().expect("grpc address");
    format!("http://{addr}")
}

#[test]
fn serve_over_kubernetes_and_an_agent_dump() {
    let api = shared();
    support::kdd::namespace_with_pods(api, "bin-app", "node-9", 2, 11);
    let datastore = format!("kubernetes:{}", api.kubeconfig().display());
    let mut serve = Serve::on_loopback(&datastore, &[]);
    let serving = serve.wait_serving();
    serve.wait_line("the in-sync line", |l| l.contains("Sending in-sync update"));

    let dir = tempfile::tempdir().expect("tempdir");
    let dump_path = dir.path().join("dump.json");
    let mut cmd = meshsync();
    cmd.args([
        "agent",
        "--server",
        &grpc_url(&serving),
        "--syncer",
        "felix",
        "--until-in-sync",
    ])
    .args(["--timeout", "20", "--dump"])
    .arg(&dump_path);
    let agent = run(&mut cmd, DEADLINE);
    assert!(agent.status.success(), "agent failed: {}", agent.describe());
    let dump: Value =
        serde_json::from_str(&std::fs::read_to_string(&dump_path).expect("dump")).expect("JSON");
    let text = dump.to_string();
    let wep = support::kdd::wep_name_of("node-9", "pod-0");
    assert!(text.contains(&wep), "the dump holds {wep}: {text:.2000}");
    assert!(text.contains("kns.bin-app"), "the namespace's profile");
}

#[test]
fn a_missing_kubeconfig_is_a_retried_connection_failure() {
    let mut serve = Serve::on_loopback("kubernetes:/nonexistent/kubeconfig", &[]);
    serve.wait_serving();
    let line = serve.wait_line("the connection failure", |l| {
        text_message_is(l, "cannot reach the Kubernetes API; will retry")
    });
    assert!(line.contains("/nonexistent/kubeconfig"), "{line}");
    // And again, with backoff: the server does not give up or exit.
    serve.wait_line("a second attempt", |l| {
        l != line && text_message_is(l, "cannot reach the Kubernetes API; will retry")
    });
}
