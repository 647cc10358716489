#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;
// Least privilege, proven against a real kube-apiserver with RBAC on (issue 12): meshsync runs
// with exactly the roles of deploy/kubernetes/rbac.yaml (as the ServiceAccounts it names, with
// tokens from the TokenRequest API), and each verb of each rule is needed — with one removed, the
// cluster goes ConnectionFailed with the API's `forbidden` message in its status.

use meshsync_datastore::SourceStatus;
use serde_json::Value;
use support::apiserver::ApiServer;
use support::kdd::*;

/// The rules of a ClusterRole, as the API serves them.
fn rules(api: &ApiServer, role: &str) -> Vec<Value> {
    let role = api.get_json("clusterrole", None, role);
    role["rules"].as_array().cloned().expect("rules")
}

/// Replaces the verbs of rule `index` of ClusterRole `role`.
fn set_verbs(api: &ApiServer, role: &str, index: usize, verbs: &[&str]) {
    set_rule_verbs(api, &format!("clusterrole/{role}"), None, index, verbs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_role_is_enough_and_each_of_its_verbs_is_needed() {
    let api = ApiServer::start("rbac-local");
    api.apply(&rbac_yaml());
    namespace_with_pods(&api, "app", "node-1", 1, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = write_file(
        dir.path(),
        "meshsync.kubeconfig",
        &api.service_account_kubeconfig("meshsync", "meshsync"),
    );

    // With the role as shipped: in sync.
    let mut source = kdd_source(&kubeconfig);
    source_status_until(&mut source, "in sync with the shipped role", |s| {
        *s == SourceStatus::InSync
    })
    .await;
    drop(source);

    let shipped = rules(&api, "meshsync");
    for (index, rule) in shipped.iter().enumerate() {
        for verb in ["list", "watch"] {
            let kept: Vec<&str> = ["list", "watch"]
                .into_iter()
                .filter(|v| *v != verb)
                .collect();
            set_verbs(&api, "meshsync", index, &kept);
            let mut source = kdd_source(&kubeconfig);
            let status = source_status_until(
                &mut source,
                &format!("forbidden without {verb} in rule {index} ({rule})"),
                |s| matches!(s, SourceStatus::ConnectionFailed(e) if e.contains("forbidden") && e.contains(&format!("cannot {verb}"))),
            )
            .await;
            drop(source);
            eprintln!("rule {index} without {verb}: {status:?}");
            set_verbs(&api, "meshsync", index, &["list", "watch"]);
        }
    }

    // Restored: in sync again.
    let mut source = kdd_source(&kubeconfig);
    source_status_until(&mut source, "in sync with the role restored", |s| {
        *s == SourceStatus::InSync
    })
    .await;
}
