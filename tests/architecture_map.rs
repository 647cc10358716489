//! ARCHITECTURE.md's code map and the Kubernetes RBAC manifest stay true as the code moves.
//!
//! Pure file reading (and the Kubernetes datastore's own pure resource planning): no process, no
//! socket. What is checked:
//!
//! - every source file under `crates/*/src/` and `src/` is named in the code map row of its
//!   crate (the row whose first cell is `crates/<crate>/src/`, or `src/` for the binary): the row
//!   names it as a backticked token equal to its path inside `src/`, to a tail of that path
//!   (`writer/etcd.rs`) or to its file name (`{a,b}.rs` groups expand), a `mod.rs` also by its
//!   folder (`orchestrator/`). Crate roots
//!   (`lib.rs`, `main.rs`) and unit-test files (`tests.rs`) are the row itself, not entries;
//! - every backticked repository path ARCHITECTURE.md mentions (`crates/…`, `src/…`, `tests/…`,
//!   …) exists, so a moved or deleted file cannot stay on the map;
//! - every API resource the Kubernetes datastore watches for the kinds registry, on a cluster
//!   serving Calico's `crd.projectcalico.org/v1` CRDs (`tests/data/crds/`) and meshsync's RCC
//!   CRD, is granted `list` and `watch` by ClusterRole `meshsync` in
//!   `deploy/kubernetes/rbac.yaml`, the Secrets RCCs name `get`, `list`, `watch` by Role
//!   `meshsync-remote-secrets`, and what a remote source watches (the kinds remotes contribute,
//!   with overlay routing) `list` and `watch` by ClusterRole `meshsync-remote`. Only the v1 CRD
//!   layout is checked: the manifest grants nothing in the `projectcalico.org/v3` group.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use meshsync_datastore::kubernetes::resources::{self, CalicoMode, Served};
use meshsync_model::kinds::{self, KINDS, KubeApi};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `.rs` file under `dir`, as paths relative to `dir` with `/` separators.
fn rust_files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(base).unwrap();
                let parts: Vec<_> = rel.iter().map(|p| p.to_string_lossy()).collect();
                out.push(parts.join("/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The backticked tokens of `text`, with `{a,b}` groups expanded (`cli/{serve,agent}.rs` →
/// `cli/serve.rs`, `cli/agent.rs`).
fn tokens(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, token) in text.split('`').enumerate() {
        if i % 2 == 1 {
            out.extend(expand(token));
        }
    }
    out
}

fn expand(token: &str) -> Vec<String> {
    let (Some(open), Some(close)) = (token.find('{'), token.find('}')) else {
        return vec![token.to_string()];
    };
    if close < open {
        return vec![token.to_string()];
    }
    let (head, tail) = (&token[..open], &token[close + 1..]);
    token[open + 1..close]
        .split(',')
        .flat_map(|alt| expand(&format!("{head}{alt}{tail}")))
        .collect()
}

/// The code map's rows: first cell (the path, without backticks) → the row's tokens.
fn code_map() -> BTreeMap<String, BTreeSet<String>> {
    let text = read("ARCHITECTURE.md");
    let section = text
        .split("\n## Code map")
        .nth(1)
        .expect("ARCHITECTURE.md has a `## Code map` section");
    let section = section.split("\n## ").next().unwrap();
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let mut cells = line.splitn(3, '|').skip(1);
        let first = cells.next().unwrap().trim().trim_matches('`').to_string();
        rows.insert(first, tokens(line));
    }
    rows
}

fn named(row: &BTreeSet<String>, rel: &str) -> bool {
    let (folder, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    if row.contains(rel) || row.contains(name) {
        return true;
    }
    // A path inside the crate's tree: `writer/etcd.rs` for `controller/writer/etcd.rs`.
    if row
        .iter()
        .any(|t| t.contains('/') && rel.ends_with(&format!("/{t}")))
    {
        return true;
    }
    // `a/b/mod.rs` is the folder `a/b/` (or `b/`).
    name == "mod.rs"
        && !folder.is_empty()
        && (row.contains(&format!("{folder}/"))
            || row.contains(&format!("{}/", folder.rsplit('/').next().unwrap())))
}

/// The source trees the map must cover: `crates/<crate>/src/` for every crate, and `src/`.
fn source_trees() -> Vec<String> {
    let mut trees = vec!["src/".to_string()];
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let path = entry.unwrap().path();
        if path.join("src").is_dir() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            trees.push(format!("crates/{name}/src/"));
        }
    }
    trees.sort();
    trees
}

#[test]
fn every_source_file_is_on_the_code_map() {
    let map = code_map();
    let mut missing = Vec::new();
    for tree in source_trees() {
        let Some(row) = map.get(&tree) else {
            missing.push(format!("{tree} (no row)"));
            continue;
        };
        for rel in rust_files(&root().join(&tree)) {
            let name = rel.rsplit('/').next().unwrap();
            let crate_root = rel == "lib.rs" || rel == "main.rs";
            if crate_root || name == "tests.rs" {
                continue;
            }
            if !named(row, &rel) {
                missing.push(format!("{tree}{rel}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "source files ARCHITECTURE.md's code map does not name (add each to its crate's row):\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn every_path_architecture_md_names_exists() {
    let text = read("ARCHITECTURE.md");
    let tops = [
        "crates/",
        "src/",
        "tests/",
        "benches/",
        "examples/",
        "deploy/",
        "scripts/",
        "proto/",
        "peers/",
        "fuzz/",
        "docs/",
        "docker/",
    ];
    let mut gone = Vec::new();
    for token in tokens(&text) {
        let path = token.split_whitespace().next().unwrap_or_default();
        if tops.iter().any(|t| path.starts_with(t)) && !root().join(path).exists() {
            gone.push(path.to_string());
        }
    }
    assert!(
        gone.is_empty(),
        "ARCHITECTURE.md names paths that do not exist:\n  {}",
        gone.join("\n  ")
    );
}

/// What a cluster with Calico's v1 CRDs (and meshsync's RCC CRD) serves: the CRDs' plurals in
/// `crd.projectcalico.org/v1`, and every built-in resource the registry names.
fn served_v1_cluster() -> Served {
    let mut served = Served::new();
    for path in [
        "tests/data/crds/calico-crd.projectcalico.org-v1.yaml",
        "deploy/crds/remoteclusterconfigurations.yaml",
    ] {
        let docs: Vec<Value> = serde_saphyr::from_multiple(&read(path)).unwrap();
        for crd in docs
            .iter()
            .filter(|d| d["kind"] == "CustomResourceDefinition")
        {
            let spec = &crd["spec"];
            let group = spec["group"].as_str().unwrap();
            let plural = spec["names"]["plural"].as_str().unwrap();
            let namespaced = spec["scope"] == "Namespaced";
            for version in spec["versions"].as_array().unwrap() {
                let gv = format!("{group}/{}", version["name"].as_str().unwrap());
                served
                    .entry(gv)
                    .or_default()
                    .insert(plural.to_string(), namespaced);
            }
        }
    }
    let core_namespaced = [
        "pods",
        "serviceaccounts",
        "services",
        "endpoints",
        "secrets",
    ];
    for info in KINDS {
        if let KubeApi::DerivedFrom {
            api_version,
            plural,
        }
        | KubeApi::Builtin {
            api_version,
            plural,
        } = info.kube
        {
            let namespaced = !matches!(plural, "namespaces" | "nodes" | "adminnetworkpolicies");
            served
                .entry(api_version.to_string())
                .or_default()
                .insert(plural.to_string(), namespaced);
        }
    }
    for plural in core_namespaced {
        served
            .entry("v1".to_string())
            .or_default()
            .insert(plural.to_string(), true);
    }
    served
}

/// The `(apiGroup, resource)` pairs a manifest's role grants all of `verbs` on.
fn granted(docs: &[Value], kind: &str, name: &str, verbs: &[&str]) -> BTreeSet<(String, String)> {
    let role = docs
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("rbac.yaml has no {kind} {name}"));
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        let has = |v: &str| {
            rule["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == v || x == "*")
        };
        if !verbs.iter().all(|v| has(v)) {
            continue;
        }
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                out.insert((
                    group.as_str().unwrap().to_string(),
                    resource.as_str().unwrap().to_string(),
                ));
            }
        }
    }
    out
}

#[test]
fn rbac_grants_every_resource_the_kubernetes_datastore_watches() {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&read("deploy/kubernetes/rbac.yaml")).unwrap();
    let cluster = granted(&docs, "ClusterRole", "meshsync", &["list", "watch"]);

    let (mode, watched, _not_served) = resources::plan(&served_v1_cluster(), None);
    assert_eq!(mode, CalicoMode::V1);
    // The plan really covers the registry: every Calico CRD kind of the v1 CRDs, and the kinds
    // derived from core objects, are among the watched ones.
    let watched_kinds: BTreeSet<&str> = watched.iter().flat_map(|w| w.kinds()).collect();
    for kind in [
        kinds::WORKLOAD_ENDPOINT,
        kinds::PROFILE,
        kinds::HOST_ENDPOINT,
        kinds::REMOTE_CLUSTER_CONFIGURATION,
        kinds::SERVICE,
        kinds::ENDPOINTS,
        kinds::ENDPOINT_SLICE,
        "Node",
        "KubernetesNetworkPolicy",
        "KubernetesService",
        "KubernetesEndpointSlice",
        "GlobalNetworkPolicy",
    ] {
        assert!(watched_kinds.contains(kind), "{kind} is not watched");
    }

    let mut missing = Vec::new();
    for resource in &watched {
        let pair = (resource.api.group.clone(), resource.api.plural.clone());
        if !cluster.contains(&pair) {
            missing.push(format!("{} ({:?})", resource.name(), resource.kinds()));
        }
    }
    assert!(
        missing.is_empty(),
        "ClusterRole meshsync in deploy/kubernetes/rbac.yaml lacks list+watch on:\n  {}",
        missing.join("\n  ")
    );

    // Each remote cluster's ClusterRole `meshsync-remote` grants what a remote source watches:
    // the kinds remotes contribute, overlay routing's included.
    let remote = granted(&docs, "ClusterRole", "meshsync-remote", &["list", "watch"]);
    let wanted: HashSet<String> = kinds::remote_kinds(true).map(String::from).collect();
    let (_, remote_watched, _) = resources::plan(&served_v1_cluster(), Some(&wanted));
    let missing: Vec<String> = remote_watched
        .iter()
        .filter(|r| !remote.contains(&(r.api.group.clone(), r.api.plural.clone())))
        .map(|r| format!("{} ({:?})", r.name(), r.kinds()))
        .collect();
    assert!(
        missing.is_empty(),
        "ClusterRole meshsync-remote in deploy/kubernetes/rbac.yaml lacks list+watch on:\n  {}",
        missing.join("\n  ")
    );

    // Secrets are watched one by one, by name, for the RCCs that name them.
    assert!(
        KINDS.iter().any(|k| k.name == kinds::SECRET
            && matches!(
                k.kube,
                KubeApi::Builtin {
                    plural: "secrets",
                    ..
                }
            )),
        "the registry's Secret row moved: update this test"
    );
    let secrets = granted(
        &docs,
        "Role",
        "meshsync-remote-secrets",
        &["get", "list", "watch"],
    );
    assert!(secrets.contains(&(String::new(), "secrets".to_string())));
}
