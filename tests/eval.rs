//! `meshsync eval` against the real binary: a real `serve` on a temporary two-cluster file mesh
//! (a local directory whose RemoteClusterConfiguration brings in a `remote/` directory), on
//! OS-chosen ports. The test writes its own manifests and derives every expectation from them with
//! its own model of the labels a node agent sees (profiles' `labelsToApply` in order, in the
//! endpoint's own cluster, then the endpoint's own labels winning) and plain Rust predicates, so it
//! does not lean on the selector engine to check the selector engine's users.
//!
//! Every child process is owned by a guard that kills it when the test ends, even on panic. Waits
//! are on conditions (a log line, a process exit) with deadlines, never on fixed sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

mod support;

use serde_json::{Value, json};
use support::binary::{DEADLINE, Finished, Serve, meshsync, run};
use support::log_text::{text_field, text_message_is};

const IN_SYNC_LINE: &str = "Sending in-sync update for local datastore";
const REMOTE_CLUSTER: &str = "cluster-b";

type Labels = BTreeMap<String, String>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A Profile the test writes: `cluster` is "" for the local cluster.
struct Profile {
    cluster: &'static str,
    name: &'static str,
    labels_to_apply: Labels,
}

/// A WorkloadEndpoint (namespace `Some`) or HostEndpoint (namespace `None`) the test writes.
struct Endpoint {
    cluster: &'static str,
    namespace: Option<&'static str>,
    name: &'static str,
    node: &'static str,
    ips: Vec<&'static str>,
    labels: Labels,
    profiles: Vec<&'static str>,
}

impl Endpoint {
    fn kind(&self) -> &'static str {
        if self.namespace.is_some() {
            "WorkloadEndpoint"
        } else {
            "HostEndpoint"
        }
    }

    fn manifest(&self) -> Value {
        match self.namespace {
            Some(namespace) => json!({
                "apiVersion": "projectcalico.org/v3",
                "kind": "WorkloadEndpoint",
                "metadata": {"name": self.name, "namespace": namespace, "labels": self.labels},
                "spec": {
                    "orchestrator": "k8s",
                    "node": self.node,
                    "endpoint": "eth0",
                    "interfaceName": format!("cali{}", self.name.len()),
                    "ipNetworks": self.ips,
                    "profiles": self.profiles,
                },
            }),
            None => json!({
                "apiVersion": "projectcalico.org/v3",
                "kind": "HostEndpoint",
                "metadata": {"name": self.name, "labels": self.labels},
                "spec": {
                    "node": self.node,
                    "interfaceName": "eth0",
                    "expectedIPs": self.ips,
                    "profiles": self.profiles,
                },
            }),
        }
    }
}

impl Profile {
    fn manifest(&self) -> Value {
        json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "Profile",
            "metadata": {"name": self.name},
            "spec": {
                "labelsToApply": self.labels_to_apply,
                "ingress": [{"action": "Allow"}],
                "egress": [{"action": "Allow"}],
            },
        })
    }
}

/// Everything the test writes, and its model of what `eval` must answer.
struct Mesh {
    profiles: Vec<Profile>,
    endpoints: Vec<Endpoint>,
}

/// One expected or printed match: (cluster, kind, namespace, name, node, ips).
type Row = (String, String, String, String, String, Vec<String>);

impl Mesh {
    fn new() -> Mesh {
        let profiles = vec![
            Profile {
                cluster: "",
                name: "kns.db",
                labels_to_apply: labels(&[("pcns.projectcalico.org/name", "db"), ("tier", "x")]),
            },
            // Applied after kns.db by the db workloads: its `tier` overrides kns.db's.
            Profile {
                cluster: "",
                name: "ksa.db.backend",
                labels_to_apply: labels(&[
                    ("pcsa.projectcalico.org/name", "backend"),
                    ("tier", "y"),
                ]),
            },
            Profile {
                cluster: "",
                name: "kns.web",
                labels_to_apply: labels(&[("pcns.projectcalico.org/name", "web")]),
            },
            // Same name as the local one, other labels: lookups must stay in the endpoint's cluster.
            Profile {
                cluster: REMOTE_CLUSTER,
                name: "kns.db",
                labels_to_apply: labels(&[
                    ("pcns.projectcalico.org/name", "db"),
                    ("tier", "remote"),
                ]),
            },
        ];
        let endpoints = vec![
            Endpoint {
                cluster: "",
                namespace: Some("db"),
                name: "node--a1-k8s-postgres--0-eth0",
                node: "node-a1",
                ips: vec!["10.65.1.5/32"],
                labels: labels(&[("app", "postgres"), ("projectcalico.org/namespace", "db")]),
                profiles: vec!["kns.db", "ksa.db.backend"],
            },
            // Its own `tier` wins over both profiles'.
            Endpoint {
                cluster: "",
                namespace: Some("db"),
                name: "node--a2-k8s-cache--0-eth0",
                node: "node-a2",
                ips: vec!["10.65.2.9/32", "fd00:65::9/128"],
                labels: labels(&[
                    ("app", "redis"),
                    ("tier", "own"),
                    ("projectcalico.org/namespace", "db"),
                ]),
                profiles: vec!["kns.db", "ksa.db.backend"],
            },
            Endpoint {
                cluster: "",
                namespace: Some("web"),
                name: "node--a1-k8s-frontend--0-eth0",
                node: "node-a1",
                ips: vec!["10.65.1.17/32"],
                labels: labels(&[("app", "frontend"), ("projectcalico.org/namespace", "web")]),
                profiles: vec!["kns.web", "kns.missing"],
            },
            Endpoint {
                cluster: "",
                namespace: None,
                name: "node-a1-eth0",
                node: "node-a1",
                ips: vec!["10.0.1.11"],
                labels: labels(&[("host-endpoint", "ingress")]),
                profiles: vec![],
            },
            Endpoint {
                cluster: REMOTE_CLUSTER,
                namespace: Some("db"),
                name: "node--b1-k8s-postgres--0-eth0",
                node: "node-b1",
                ips: vec!["10.66.3.7/32"],
                labels: labels(&[("app", "postgres"), ("projectcalico.org/namespace", "db")]),
                profiles: vec!["kns.db"],
            },
        ];
        Mesh {
            profiles,
            endpoints,
        }
    }

    /// Writes the local cluster into `local` (with a NetworkPolicy that must never match and the
    /// RemoteClusterConfiguration) and the remote cluster into `remote`.
    fn write(&self, local: &Path, remote: &Path) {
        std::fs::create_dir_all(local).unwrap();
        std::fs::create_dir_all(remote).unwrap();
        let dir = |cluster: &str| if cluster.is_empty() { local } else { remote };
        let write = |dir: &Path, file: String, value: &Value| {
            std::fs::write(dir.join(file), serde_json::to_vec_pretty(value).unwrap()).unwrap();
        };
        for p in &self.profiles {
            write(
                dir(p.cluster),
                format!("profile-{}.json", p.name),
                &p.manifest(),
            );
        }
        for e in &self.endpoints {
            let file = format!("{}-{}.json", e.kind(), e.name);
            write(dir(e.cluster), file, &e.manifest());
        }
        // Carries the same label as the postgres workloads, but it is no endpoint.
        let policy = json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "NetworkPolicy",
            "metadata": {"name": "allow-postgres", "namespace": "db", "labels": {"app": "postgres"}},
            "spec": {
                "selector": "app == 'postgres'",
                "ingress": [{"action": "Allow", "source": {"selector": "app == 'frontend'"}}],
            },
        });
        write(local, "policy.json".into(), &policy);
        let rcc = json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "RemoteClusterConfiguration",
            "metadata": {"name": REMOTE_CLUSTER},
            "spec": {"datastoreType": "file", "filePath": "../remote"},
        });
        write(local, "rcc.json".into(), &rcc);
    }

    /// The labels a node agent sees for `e`: its profiles' labelsToApply in order (same cluster),
    /// then its own labels.
    fn effective_labels(&self, e: &Endpoint) -> Labels {
        let mut out = Labels::new();
        for name in &e.profiles {
            if let Some(p) = self
                .profiles
                .iter()
                .find(|p| p.cluster == e.cluster && p.name == *name)
            {
                out.extend(p.labels_to_apply.clone());
            }
        }
        out.extend(e.labels.clone());
        out
    }

    /// The endpoints whose effective labels satisfy `pred`, sorted as `eval` sorts them.
    fn expected(&self, pred: impl Fn(&Labels) -> bool) -> Vec<(Row, Labels)> {
        let mut out: Vec<(Row, Labels)> = self
            .endpoints
            .iter()
            .map(|e| (e, self.effective_labels(e)))
            .filter(|(_, l)| pred(l))
            .map(|(e, l)| {
                let row = (
                    e.cluster.to_string(),
                    e.kind().to_string(),
                    e.namespace.unwrap_or_default().to_string(),
                    e.name.to_string(),
                    e.node.to_string(),
                    e.ips.iter().map(|s| s.to_string()).collect(),
                );
                (row, l)
            })
            .collect();
        out.sort_by(|a, b| {
            let key = |r: &Row| (r.0.clone(), r.1.clone(), r.2.clone(), r.3.clone());
            key(&a.0).cmp(&key(&b.0))
        });
        out
    }
}

fn get<'a>(l: &'a Labels, key: &str) -> Option<&'a str> {
    l.get(key).map(String::as_str)
}

/// `meshsync selector EXPR`: (canonical form, unique ID), as that command prints them.
fn canonical(expr: &str) -> (String, String) {
    let out = run(meshsync().args(["selector", expr]), DEADLINE);
    assert!(out.status.success(), "{}", out.describe());
    let mut lines = out.stdout.lines();
    let canonical = lines.next().unwrap().to_string();
    let id = lines.next().unwrap().to_string();
    (canonical, id)
}

fn eval(server: &str, expr: &str, extra: &[&str]) -> Finished {
    let out = run(
        meshsync()
            .args(["eval", expr, "--server", server, "--timeout", "20"])
            .args(extra),
        DEADLINE,
    );
    assert!(
        out.status.success(),
        "eval {expr:?} failed: {}",
        out.describe()
    );
    // A one-shot command prints its result and keeps stderr quiet unless something is wrong.
    assert!(
        out.stderr.trim().is_empty(),
        "eval {expr:?} wrote to stderr: {}",
        out.describe()
    );
    out
}

/// Parses the text output: one row per match, then `N endpoints match <canonical>`.
fn parse_text(out: &Finished) -> (Vec<Row>, String) {
    let lines: Vec<&str> = out.stdout.lines().collect();
    let (summary, rows) = lines
        .split_last()
        .unwrap_or_else(|| panic!("no output: {}", out.describe()));
    let rows: Vec<Row> = rows
        .iter()
        .map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cols.len(), 6, "row {line:?}: {}", out.describe());
            let undash = |s: &str| if s == "-" { String::new() } else { s.into() };
            let cluster = if cols[0] == "(local)" { "" } else { cols[0] };
            let ips = if cols[5] == "-" {
                Vec::new()
            } else {
                cols[5].split(',').map(str::to_string).collect()
            };
            (
                cluster.to_string(),
                cols[1].to_string(),
                undash(cols[2]),
                cols[3].to_string(),
                undash(cols[4]),
                ips,
            )
        })
        .collect();
    let (count, rest) = summary
        .split_once(' ')
        .unwrap_or_else(|| panic!("bad summary line {summary:?}"));
    let canonical = rest
        .strip_prefix("endpoints match ")
        .unwrap_or_else(|| panic!("bad summary line {summary:?}"));
    assert_eq!(count.parse::<usize>().unwrap(), rows.len(), "{summary:?}");
    (rows, canonical.to_string())
}

/// Runs `eval EXPR` in text and JSON form and checks both against the model.
fn check(server: &str, mesh: &Mesh, expr: &str, pred: impl Fn(&Labels) -> bool) -> Vec<Row> {
    let expected = mesh.expected(pred);
    let expected_rows: Vec<Row> = expected.iter().map(|(r, _)| r.clone()).collect();
    let (canonical_form, unique_id) = canonical(expr);

    let text = eval(server, expr, &[]);
    let (rows, printed_canonical) = parse_text(&text);
    assert_eq!(
        rows, expected_rows,
        "text output of {expr:?}:\n{}",
        text.stdout
    );
    assert_eq!(printed_canonical, canonical_form);

    let out = eval(server, expr, &["--output", "json"]);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "JSON output of {expr:?} does not parse: {e}\n{}",
            out.stdout
        )
    });
    assert_eq!(doc["selector"], canonical_form.as_str());
    assert_eq!(doc["unique_id"], unique_id.as_str());
    let matches = doc["matches"].as_array().expect("matches array");
    let json_rows: Vec<(Row, Labels)> = matches
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or_else(|| panic!("{k} in {m}")).into();
            let ips = m["ips"]
                .as_array()
                .unwrap()
                .iter()
                .map(|ip| ip.as_str().unwrap().to_string())
                .collect();
            let labels: Labels = serde_json::from_value(m["labels"].clone()).unwrap();
            (
                (
                    s("cluster"),
                    s("kind"),
                    s("namespace"),
                    s("name"),
                    s("node"),
                    ips,
                ),
                labels,
            )
        })
        .collect();
    assert_eq!(
        json_rows, expected,
        "JSON output of {expr:?}:\n{}",
        out.stdout
    );
    expected_rows
}

#[test]
fn eval_lists_matching_endpoints_across_the_mesh() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    let remote = dir.path().join("remote");
    let mesh = Mesh::new();
    mesh.write(&local, &remote);

    let datastore = format!("file:{}", local.display());
    let mut serve = Serve::on_loopback(&datastore, &[]);
    let serving = serve.wait_serving();
    let grpc: SocketAddr = text_field(&serving, "grpc")
        .unwrap_or_else(|| panic!("no grpc= in {serving:?}"))
        .parse()
        .unwrap();
    let remote_line =
        format!("Sending in-sync update for RemoteClusterConfiguration({REMOTE_CLUSTER})");
    serve.wait_line("the remote in-sync line", |l| l.contains(&remote_line));
    serve.wait_line("the local in-sync line", |l| {
        text_message_is(l, IN_SYNC_LINE)
    });
    let server = format!("http://{grpc}");

    // The seed document's policy example: a rule in cluster A selecting endpoints in cluster B.
    let rows = check(&server, &mesh, "app == 'postgres'", |l| {
        get(l, "app") == Some("postgres")
    });
    let clusters: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(clusters, ["", REMOTE_CLUSTER], "{rows:?}");

    // A label only a profile gives: every match gets it from a profile, not from itself.
    let key = "pcns.projectcalico.org/name";
    let rows = check(&server, &mesh, "pcns.projectcalico.org/name == 'db'", |l| {
        get(l, key) == Some("db")
    });
    assert!(rows.len() >= 2, "{rows:?}");
    for e in &mesh.endpoints {
        assert!(
            !e.labels.contains_key(key),
            "the fixture must not set {key}"
        );
    }

    // Profiles in order: ksa.db.backend (later) overrides kns.db's `tier`.
    let rows = check(&server, &mesh, "tier == 'y'", |l| {
        get(l, "tier") == Some("y")
    });
    assert!(!rows.is_empty());
    assert!(
        check(&server, &mesh, "tier == 'x'", |l| get(l, "tier")
            == Some("x"))
        .is_empty()
    );
    // The endpoint's own label wins over every profile.
    let own = mesh
        .endpoints
        .iter()
        .find_map(|e| e.labels.get("tier"))
        .expect("a fixture endpoint with its own tier");
    let expr = format!("tier == '{own}'");
    let rows = check(&server, &mesh, &expr, |l| get(l, "tier") == Some(own));
    assert_eq!(rows.len(), 1, "{rows:?}");
    // A remote endpoint gets its own cluster's profile, not the local one of the same name.
    let rows = check(&server, &mesh, "tier == 'remote'", |l| {
        get(l, "tier") == Some("remote")
    });
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, REMOTE_CLUSTER);

    // A host endpoint, with its expected IPs.
    let rows = check(&server, &mesh, "has(host-endpoint)", |l| {
        l.contains_key("host-endpoint")
    });
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1, "HostEndpoint");

    // Everything: every endpoint of both clusters, never a Profile or the NetworkPolicy.
    let rows = check(&server, &mesh, "all()", |_| true);
    assert_eq!(rows.len(), mesh.endpoints.len());
    // Nothing.
    assert!(
        check(&server, &mesh, "app == 'nothing-has-this'", |l| {
            get(l, "app") == Some("nothing-has-this")
        })
        .is_empty()
    );
    // A compound selector and a set.
    check(
        &server,
        &mesh,
        "app in {'postgres', 'redis'} && !has(host-endpoint) && pcsa.projectcalico.org/name == 'backend'",
        |l| {
            matches!(get(l, "app"), Some("postgres" | "redis"))
                && !l.contains_key("host-endpoint")
                && get(l, "pcsa.projectcalico.org/name") == Some("backend")
        },
    );
}

#[test]
fn eval_rejects_a_bad_selector_with_exit_code_2() {
    let bad = "app == 'unterminated";
    let selector = run(meshsync().args(["selector", bad]), DEADLINE);
    assert_eq!(selector.status.code(), Some(2), "{}", selector.describe());
    let error = selector
        .stderr
        .trim()
        .strip_prefix("meshsync selector: ")
        .unwrap_or_else(|| panic!("{}", selector.describe()))
        .to_string();
    // Parsing comes first: no server is contacted (this address has nothing listening).
    let out = run(
        meshsync().args(["eval", bad, "--server", "http://127.0.0.1:1"]),
        DEADLINE,
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.describe());
    assert!(out.stdout.is_empty(), "{}", out.describe());
    assert!(
        out.stderr.contains(&format!("meshsync eval: {error}")),
        "{error:?} not in {}",
        out.describe()
    );
    assert!(error.starts_with("invalid selector: "), "{error}");
}

#[test]
fn eval_against_an_unreachable_server_times_out_with_exit_code_1() {
    // A port that was just free: nothing listens on it.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let server = format!("http://127.0.0.1:{port}");
    let out = run(
        meshsync().args([
            "eval",
            "app == 'postgres'",
            "--server",
            &server,
            "--timeout",
            "1",
        ]),
        DEADLINE,
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert!(out.stdout.is_empty(), "{}", out.describe());
    assert!(
        out.stderr.contains("meshsync eval: timed out after 1s") && out.stderr.contains(&server),
        "{}",
        out.describe()
    );
    assert!(
        out.elapsed < Duration::from_secs(10),
        "took {:?}",
        out.elapsed
    );
}
