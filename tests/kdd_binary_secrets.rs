#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;
// The real `meshsync serve --datastore kubernetes:KUBECONFIG` asks its Kubernetes source for the
// Secret an RCC names (issue 22: the datastore knows no RCC; the mesh tells the source which
// Secrets to watch by name): missing, the RCC is incomplete naming it; created, the RCC's remote
// starts.

use support::apiserver::shared;
use support::binary::Serve;
use support::log_text::text_message_is;

const NAMESPACE: &str = "bin-secrets";

#[test]
fn serve_over_kubernetes_watches_the_secret_an_rcc_names() {
    let api = shared();
    api.create_namespace(NAMESPACE);
    api.apply(&format!(
        "apiVersion: crd.projectcalico.org/v1\nkind: RemoteClusterConfiguration\nmetadata:\n  name: bin-remote\nspec:\n  clusterAccessSecret:\n    kind: Secret\n    namespace: {NAMESPACE}\n    name: bin-remote-access\n"
    ));
    let datastore = format!("kubernetes:{}", api.kubeconfig().display());
    let mut serve = Serve::on_loopback(&datastore, &[]);
    serve.wait_serving();
    let watching = serve.wait_line("the Secret watched by name", |l| {
        text_message_is(l, "watching a Secret by name")
    });
    assert!(watching.contains("bin-remote-access"), "{watching}");
    let missing = serve.wait_line("the RCC incomplete for its missing Secret", |l| {
        l.contains("RemoteClusterConfiguration(bin-remote) is incomplete")
            && l.contains("bin-remote-access")
    });
    assert!(missing.contains("not found"), "{missing}");

    // The Secret appears: the source sends it, the mesh starts the remote (which then fails to
    // connect to the closed port; that is not this test's business).
    api.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bin-remote-access\n  namespace: {NAMESPACE}\nstringData:\n  datastoreType: etcdv3\n  etcdEndpoints: http://127.0.0.1:9\n"
    ));
    serve.wait_line("the remote started from its Secret", |l| {
        l.contains("Creating syncer for RemoteClusterConfiguration(bin-remote)")
    });
}
