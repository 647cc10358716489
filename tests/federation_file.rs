#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;
// The federated services controller on a file datastore, through the real binary:
// `meshsync serve --federation` over a copy of the quick start's `examples/mesh`, whose
// `my-app-federated` Service selects `run == "my-app"` in cluster-a and cluster-b. The expected
// addresses are read from the copied example files (no hard-coded IPs); every wait polls the
// generated file with a deadline.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::binary::Serve;
use support::copy_example_mesh;
use support::federation::address_set;

const DEADLINE: Duration = Duration::from_secs(30);
const SELECTOR: &str = "federation.tigera.io/serviceSelector";

/// `(ip, targetRef name)` of every address of the `kind: Endpoints` documents named `name` in a
/// YAML file, by a line scan: `- ip: X` starts an address, the first `name:` after a `targetRef:`
/// line is its target.
fn endpoints_addresses(file: &Path, name: &str) -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut out = BTreeSet::new();
    for doc in text
        .split('\n')
        .collect::<Vec<_>>()
        .split(|l| l.trim_end() == "---")
    {
        if !doc.iter().any(|l| l.trim_end() == "kind: Endpoints")
            || !doc
                .iter()
                .any(|l| l.trim_end() == format!("  name: {name}"))
        {
            continue;
        }
        let (mut ip, mut in_target) = (None::<String>, false);
        for line in doc {
            let t = line.trim();
            if let Some(rest) = t.strip_prefix("- ip:") {
                ip = Some(rest.trim().to_string());
                in_target = false;
            } else if t == "targetRef:" {
                in_target = true;
            } else if let Some(rest) = t.strip_prefix("name:")
                && in_target
            {
                let ip = ip.clone().expect("targetRef after an ip");
                out.insert((ip, rest.trim().to_string()));
                in_target = false;
            }
        }
    }
    assert!(
        !out.is_empty(),
        "no addresses for {name} in {}",
        file.display()
    );
    out
}

/// `(ip, targetRef name)` of every address of a generated Endpoints object.
fn generated_addresses(value: &Value) -> BTreeSet<(String, String)> {
    address_set(value, &["addresses"])
}

/// Polls `path` until it parses and `pred` holds; returns the value.
fn wait_file(serve: &mut Serve, path: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + DEADLINE;
    let mut last = None;
    loop {
        while let Ok(line) = serve.rx.try_recv() {
            serve.lines.push(line);
        }
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(value) = serde_json::from_str::<Value>(&text)
        {
            if pred(&value) {
                return value;
            }
            last = Some(value);
        }
        if let Ok(Some(status)) = serve.child.0.try_wait() {
            panic!(
                "serve exited ({status}) before {what}; stderr:\n{}",
                serve.lines.join("\n")
            );
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}; last {}: {last:#?}\nstderr:\n{}",
            path.display(),
            serve.lines.join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_federation_writes_generated_files() {
    let dir = copy_example_mesh();
    let a = dir.path().join("cluster-a");
    let b = dir.path().join("cluster-b");
    let local = endpoints_addresses(&a.join("services.yaml"), "my-app");
    let remote: BTreeSet<(String, String)> =
        endpoints_addresses(&b.join("services.yaml"), "my-app")
            .into_iter()
            .map(|(ip, name)| (ip, format!("cluster-b/{name}")))
            .collect();
    let all: BTreeSet<_> = local.union(&remote).cloned().collect();
    let before: BTreeSet<_> = std::fs::read_dir(&a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();

    let datastore = format!("file:{}", a.display());
    let mut serve = Serve::on_loopback(&datastore, &["--federation"]);
    let generated = a.join("generated");
    let endpoints = generated.join("endpoints_default_my-app-federated.json");
    let value = wait_file(&mut serve, &endpoints, "both clusters' addresses", |v| {
        generated_addresses(v) == all
    });
    assert_eq!(value["kind"], "Endpoints");
    assert_eq!(value["metadata"]["namespace"], "default");
    assert_eq!(value["metadata"]["name"], "my-app-federated");
    assert_eq!(
        value["metadata"]["annotations"][SELECTOR],
        r#"run == "my-app""#
    );
    let ports: Vec<&Value> = value["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["ports"].as_array().unwrap())
        .collect();
    assert!(
        ports
            .iter()
            .all(|p| p["name"] == "my-app-ui" && p["port"] == 8080),
        "{ports:?}"
    );
    // Pretty JSON, and the EndpointSlice(s) next to it.
    let text = std::fs::read_to_string(&endpoints).unwrap();
    assert!(text.contains("\n  \"metadata\""), "{text}");
    let slices: Vec<Value> = std::fs::read_dir(&generated)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("endpointslice_default_")
        })
        .map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap())
        .collect();
    assert!(
        !slices.is_empty(),
        "no EndpointSlice file in {}",
        generated.display()
    );
    for slice in &slices {
        assert_eq!(slice["kind"], "EndpointSlice");
        assert_eq!(
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            "my-app-federated"
        );
        assert_eq!(
            slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
            "meshsync-federation"
        );
    }
    // Nothing but generated/ was added to the datastore directory.
    let after: BTreeSet<_> = std::fs::read_dir(&a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let added: Vec<_> = after.difference(&before).collect();
    assert_eq!(added, ["generated"]);

    // cluster-b's backing service goes away: the remote addresses leave the generated file.
    std::fs::remove_file(b.join("services.yaml")).unwrap();
    wait_file(
        &mut serve,
        &endpoints,
        "the remote addresses removed",
        |v| generated_addresses(v) == local,
    );
}
