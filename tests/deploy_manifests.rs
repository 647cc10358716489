#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;
// The deployment manifests of deploy/kubernetes/ are accepted by a real kube-apiserver: every
// document of typha-frontend.yaml is applied with a server-side dry run (admission and schema
// validation, nothing stored) after the namespaces and rbac.yaml exist for real; and what Felix
// relies on holds: a Service whose port is named calico-typha, backed by a container port of
// that name, with the operator's Typha TLS material and client CN.

use serde_json::Value;
use support::apiserver::shared;

fn manifest(path: &str) -> (String, Vec<Value>) {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{path}: {e}"));
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    (text, documents)
}

#[test]
fn typha_frontend_is_accepted_by_a_real_api_server() {
    let api = shared();
    api.create_namespace("calico-system");
    api.apply(&support::kdd::rbac_yaml());
    let (_, documents) = manifest("deploy/kubernetes/typha-frontend.yaml");
    assert!(documents.len() >= 6, "{documents:?}");
    for document in &documents {
        let what = format!("{}/{}", document["kind"], document["metadata"]["name"]);
        let out = api.kubectl_output(
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "--field-manager=meshsync-tests",
                "-f",
                "-",
            ],
            Some(&serde_json::to_string(document).unwrap()),
        );
        assert!(
            out.status.success(),
            "{what} refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A dry run stores nothing.
    let out = api.kubectl_output(
        &["get", "deployment", "meshsync", "-n", "calico-system"],
        None,
    );
    assert!(!out.status.success(), "the dry run created the Deployment");
}

#[test]
fn typha_frontend_gives_felix_what_it_looks_for() {
    let (_, documents) = manifest("deploy/kubernetes/typha-frontend.yaml");
    let find = |kind: &str, name: &str| {
        documents
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind} {name}"))
    };
    let service = find("Service", "meshsync-typha");
    assert_eq!(service["metadata"]["namespace"], "calico-system");
    let port = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "calico-typha")
        .expect("a port named calico-typha");
    assert_eq!(port["port"], 5473);
    assert_eq!(port["targetPort"], "calico-typha");
    let deployment = find("Deployment", "meshsync");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let typha_port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "calico-typha")
        .expect("a container port named calico-typha");
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&&*format!(
        "--typha-listen=0.0.0.0:{}",
        typha_port["containerPort"]
    )));
    for arg in [
        "--datastore=kubernetes",
        "--tls-cert-file=/etc/meshsync/typha-certs/tls.crt",
        "--tls-key-file=/etc/meshsync/typha-certs/tls.key",
        "--tls-client-ca-file=/etc/meshsync/typha-ca/caBundle",
        "--tls-client-cn=typha-client",
    ] {
        assert!(args.contains(&arg), "{arg} in {args:?}");
    }
    let volumes = pod["volumes"].to_string();
    assert!(
        volumes.contains("\"secretName\":\"typha-certs\""),
        "{volumes}"
    );
    assert!(volumes.contains("\"name\":\"typha-ca\""), "{volumes}");
    let health = args
        .iter()
        .find_map(|a| a.strip_prefix("--health-listen=0.0.0.0:"))
        .unwrap();
    assert_eq!(
        container["readinessProbe"]["httpGet"]["port"].to_string(),
        health
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readiness");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/liveness");
    assert_eq!(pod["serviceAccountName"], "meshsync");
    // Every flag is one `serve` takes: `serve --help` names it.
    let help = std::process::Command::new(support::binary::BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for arg in args.iter().skip(1) {
        let flag = arg.split('=').next().unwrap();
        assert!(help.contains(flag), "serve has no {flag}");
    }
}
