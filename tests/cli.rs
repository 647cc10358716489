//! The real `meshsync` binary: `serve` over the example mesh on OS-chosen ports, `agent` and
//! `status` against it, health endpoints, JSON logs, and start-up / connection errors.
//!
//! Every child process is owned by a guard that kills it when the test ends, even on panic. Waits
//! are on conditions (a log line, a process exit) with deadlines, never on fixed sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use support::binary::{DEADLINE, Finished, Serve, meshsync, run, serve_args};
use support::log_text::{text_field, text_message_is};
use support::{copy_dir, copy_example_mesh, http_get, within};

const IN_SYNC_LINE: &str = "Sending in-sync update for local datastore";
/// The subscription types (Typha's syncer types, and meshsync's `federation` and `all`).
const SYNCER_TYPES: [&str; 6] = [
    "felix",
    "bgp",
    "tunnel-ip-allocation",
    "node-status",
    "federation",
    "all",
];

/// Runs `meshsync agent --syncer all --until-in-sync --timeout 20` against `url` with `--output
/// output` and `extra` flags, dumping to `dir/dump.json`; the run must succeed. Returns the run
/// and the dump.
fn sync_all_and_dump(url: &str, dir: &Path, output: &str, extra: &[&str]) -> (Finished, Value) {
    let dump_path = dir.join("dump.json");
    let mut cmd = meshsync();
    cmd.args([
        "agent",
        "--server",
        url,
        "--syncer",
        "all",
        "--until-in-sync",
    ])
    .args(["--timeout", "20", "--output", output, "--dump"])
    .arg(&dump_path)
    .args(extra);
    let agent = run(&mut cmd, DEADLINE);
    assert!(agent.status.success(), "agent failed: {}", agent.describe());
    let dump: Value = serde_json::from_str(&std::fs::read_to_string(&dump_path).unwrap())
        .expect("the dump is JSON");
    (agent, dump)
}

/// The gRPC and health addresses from `meshsync serving grpc=ADDR health=Some(ADDR) ...`.
fn serving_addrs_text(line: &str) -> (SocketAddr, SocketAddr) {
    let grpc = text_field(line, "grpc").unwrap_or_else(|| panic!("no grpc= in {line:?}"));
    let health = text_field(line, "health").unwrap_or_else(|| panic!("no health= in {line:?}"));
    (parse_addr(grpc), parse_some_addr(health))
}

fn parse_addr(text: &str) -> SocketAddr {
    let addr: SocketAddr = text
        .parse()
        .unwrap_or_else(|e| panic!("bad address {text:?}: {e}"));
    assert_eq!(addr.ip().to_string(), "127.0.0.1", "{text}");
    assert_ne!(addr.port(), 0, "the log must show the bound port: {text}");
    addr
}

fn parse_some_addr(text: &str) -> SocketAddr {
    let inner = text
        .strip_prefix("Some(")
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or_else(|| panic!("health address is not Some(..): {text:?}"));
    parse_addr(inner)
}

/// A current-thread runtime for the async HTTP helper.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    runtime().block_on(within(&format!("GET {path}"), http_get(addr, path)))
}

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mesh/cluster-a")
}

/// `(kind, namespace, name)` of a resource.
type Id = (String, String, String);

/// The resources a directory of manifests defines, read without a YAML library: documents are
/// separated by `---` lines; in each, the top-level `kind:` line and the `name:`/`namespace:`
/// lines indented by two spaces under a top-level `metadata:` line. JSON files are parsed as JSON.
/// Panics on a document this reader cannot understand, rather than silently missing it.
fn expected_resources(dir: &Path) -> BTreeSet<Id> {
    let mut ids = BTreeSet::new();
    let mut files: Vec<PathBuf> = Vec::new();
    collect_files(dir, &mut files);
    for file in files {
        let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
        let text = std::fs::read_to_string(&file).unwrap();
        match ext {
            "yaml" | "yml" => {
                for doc in text
                    .split('\n')
                    .collect::<Vec<_>>()
                    .split(|l| l.trim_end() == "---")
                {
                    if let Some(id) = yaml_doc_id(doc, &file) {
                        assert!(ids.insert(id.clone()), "{id:?} defined twice");
                    }
                }
            }
            "json" => {
                for doc in serde_json::Deserializer::from_str(&text).into_iter::<Value>() {
                    let doc = doc.unwrap();
                    let id = (
                        doc["kind"].as_str().unwrap().to_string(),
                        doc["metadata"]["namespace"]
                            .as_str()
                            .unwrap_or("")
                            .to_string(),
                        doc["metadata"]["name"].as_str().unwrap().to_string(),
                    );
                    assert!(ids.insert(id.clone()), "{id:?} defined twice");
                }
            }
            _ => {}
        }
    }
    ids
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            collect_files(&entry.path(), out);
        } else {
            out.push(entry.path());
        }
    }
}

fn scalar(text: &str) -> String {
    let text = text.split(" #").next().unwrap().trim();
    let unquoted = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .or_else(|| text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')))
        .unwrap_or(text);
    unquoted.to_string()
}

fn yaml_doc_id(lines: &[&str], file: &Path) -> Option<Id> {
    let content = lines
        .iter()
        .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    if !content {
        return None;
    }
    let (mut kind, mut namespace, mut name) = (None, None, None);
    let mut in_metadata = false;
    for line in lines {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') {
            in_metadata = line.trim_end() == "metadata:";
            if let Some(rest) = line.strip_prefix("kind:") {
                kind = Some(scalar(rest));
            }
            continue;
        }
        if in_metadata && line.starts_with("  ") && !line.starts_with("   ") {
            if let Some(rest) = line.strip_prefix("  name:") {
                name = Some(scalar(rest));
            } else if let Some(rest) = line.strip_prefix("  namespace:") {
                namespace = Some(scalar(rest));
            }
        }
    }
    let (Some(kind), Some(name)) = (kind, name) else {
        panic!(
            "{}: a document this test's minimal reader cannot understand:\n{}",
            file.display(),
            lines.join("\n")
        );
    };
    Some((kind, namespace.unwrap_or_default(), name))
}

/// `serve` over a copy of `examples/mesh/cluster-a` on OS-chosen ports, without its
/// RemoteClusterConfiguration (a single-cluster view; the mesh has its own test below).
fn serve_example(extra: &[&str]) -> (tempfile::TempDir, Serve) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cluster-a");
    copy_dir(&example_dir(), &data);
    std::fs::remove_file(data.join("remote-clusters.yaml")).unwrap();
    let datastore = format!("file:{}", data.display());
    let mut args: Vec<&str> = extra.to_vec();
    args.extend([
        "serve",
        "--datastore",
        &datastore,
        "--listen",
        "127.0.0.1:0",
        "--health-listen",
        "127.0.0.1:0",
    ]);
    let serve = Serve::start(&args);
    (dir, serve)
}

#[test]
fn serve_agent_status_and_health_over_the_example_mesh() {
    let (dir, mut serve) = serve_example(&[]);
    let data = dir.path().join("cluster-a");
    let expected = expected_resources(&data);
    assert!(
        expected.len() >= 10,
        "the example mesh should define a dozen or more resources, found {expected:?}"
    );

    let serving = serve.wait_serving();
    let (grpc, health) = serving_addrs_text(&serving);
    serve.wait_line("the in-sync line", |l| text_message_is(l, IN_SYNC_LINE));
    let url = format!("http://{grpc}");

    // 1. The agent syncs, prints JSON lines, and dumps exactly the files' objects.
    let (agent, dump) =
        sync_all_and_dump(&url, dir.path(), "json", &["--node-name", "cli-test-all"]);

    let events: Vec<Value> = agent
        .stdout
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
            assert!(v.is_object(), "stdout line is not a JSON object: {line:?}");
            v
        })
        .collect();
    assert_eq!(
        events.first().map(|e| &e["event"]),
        Some(&json!("connected"))
    );
    // The agent accepts zstd by default and the server offers it: the hello says so.
    assert_eq!(events[0]["compression"], "zstd", "{}", events[0]);
    assert_eq!(
        events[0]["path"], "full",
        "a first subscription is a full snapshot"
    );
    let last = events.last().unwrap();
    assert_eq!(last["event"], "status", "last event: {last}");
    assert_eq!(last["in_sync"], true, "last event: {last}");
    assert_eq!(last["status"]["overall"], "InSync", "last event: {last}");
    let new_updates: BTreeSet<Id> = events
        .iter()
        .filter(|e| e["event"] == "update")
        .map(|e| {
            assert_eq!(e["type"], "NEW", "{e}");
            (
                e["kind"].as_str().unwrap().to_string(),
                e["namespace"].as_str().unwrap().to_string(),
                e["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(new_updates, expected, "updates printed by the agent");

    let fields: BTreeSet<&str> = dump
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        BTreeSet::from(["epoch", "seq", "in_sync", "clusters", "resources"])
    );
    assert!(dump["epoch"].is_u64(), "{}", dump["epoch"]);
    assert!(dump["seq"].as_u64().unwrap() > 0, "{}", dump["seq"]);
    assert_eq!(dump["in_sync"], true);
    let resources = dump["resources"].as_array().unwrap();
    assert_eq!(
        dump["clusters"],
        json!([{"cluster": "", "state": "InSync", "error": "", "keys": resources.len()}])
    );
    let keys: Vec<(String, String, String, String)> = resources
        .iter()
        .map(|r| {
            let s = |f: &str| {
                r[f].as_str()
                    .unwrap_or_else(|| panic!("{f} missing in {r}"))
                    .to_string()
            };
            (s("cluster"), s("kind"), s("namespace"), s("name"))
        })
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "resources not sorted by (cluster, kind, namespace, name): {keys:?}"
    );
    for (r, (cluster, kind, namespace, name)) in resources.iter().zip(&keys) {
        assert_eq!(cluster, "", "{r}");
        assert!(!r["revision"].as_str().unwrap().is_empty(), "{r}");
        let value = &r["value"];
        assert_eq!(value["kind"].as_str(), Some(kind.as_str()), "{r}");
        assert_eq!(
            value["metadata"]["name"].as_str(),
            Some(name.as_str()),
            "{r}"
        );
        assert_eq!(
            value["metadata"]["namespace"].as_str().unwrap_or(""),
            namespace,
            "{r}"
        );
    }
    let dumped: BTreeSet<Id> = keys
        .into_iter()
        .map(|(_, kind, namespace, name)| (kind, namespace, name))
        .collect();
    assert_eq!(dumped, expected, "dumped resources vs the files");

    // 2. `status`, as JSON and as a table.
    let status = run(
        meshsync().args(["status", "--server", &url, "--output", "json"]),
        DEADLINE,
    );
    assert!(
        status.status.success(),
        "status failed: {}",
        status.describe()
    );
    assert!(
        status.stderr.trim().is_empty(),
        "status wrote to stderr: {}",
        status.describe()
    );
    let status_doc: Value = serde_json::from_str(&status.stdout)
        .unwrap_or_else(|e| panic!("status output is not JSON ({e}): {}", status.stdout));
    assert_eq!(status_doc["overall"], "InSync", "{status_doc}");
    let clusters = status_doc["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 1, "{status_doc}");
    assert_eq!(clusters[0]["cluster"], "", "{status_doc}");
    assert_eq!(clusters[0]["state"], "InSync", "{status_doc}");
    assert_eq!(clusters[0]["keys"], json!(resources.len()), "{status_doc}");
    assert_eq!(status_doc["epoch"], dump["epoch"], "one server, one epoch");
    assert_eq!(
        status_doc["seq"], dump["seq"],
        "nothing changed since the dump"
    );
    let digest = clusters[0]["digest"].as_str().unwrap().to_string();

    let table = run(meshsync().args(["status", "--server", &url]), DEADLINE);
    assert!(
        table.status.success(),
        "status failed: {}",
        table.describe()
    );
    assert!(table.stdout.contains("InSync"), "{}", table.stdout);
    let row: Vec<&str> = table
        .stdout
        .lines()
        .find(|l| l.starts_with("(local)"))
        .unwrap_or_else(|| panic!("no (local) row in:\n{}", table.stdout))
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        ["(local)", "InSync", &resources.len().to_string(), &digest],
        "{}",
        table.stdout
    );

    // 3. Health endpoints.
    let (code, body) = get(health, "/readiness");
    assert_eq!(code, 200, "readiness: {body}");
    let (code, body) = get(health, "/liveness");
    assert_eq!(code, 200, "liveness: {body}");

    // 5b. An unknown syncer type is refused with the list of valid ones.
    let bogus = run(
        meshsync().args([
            "agent",
            "--server",
            &url,
            "--syncer",
            "bogus",
            "--node-name",
            "cli-test-bogus",
            "--until-in-sync",
            "--timeout",
            "20",
        ]),
        DEADLINE,
    );
    assert!(
        !bogus.status.success(),
        "bogus syncer accepted: {}",
        bogus.describe()
    );
    assert!(
        bogus.elapsed < Duration::from_secs(10),
        "a refusal should not wait for the timeout: {}",
        bogus.describe()
    );
    assert!(bogus.stderr.contains("bogus"), "{}", bogus.describe());
    for name in SYNCER_TYPES {
        assert!(
            bogus.stderr.contains(name),
            "the error should name {name}: {}",
            bogus.describe()
        );
    }

    // The in-sync line appeared exactly once: everything up to the server's log of the refused
    // subscription (the last thing we did) has been read.
    serve.wait_line("the refused subscription", |l| {
        l.contains("subscription refused") && l.contains("cli-test-bogus")
    });
    assert!(
        serve.count(|l| l.contains("new subscription") && l.contains("cli-test-all")) == 1,
        "{}",
        serve.lines.join("\n")
    );
    assert_eq!(
        serve.count(|l| l.contains(IN_SYNC_LINE)),
        1,
        "in-sync line count; stderr:\n{}",
        serve.lines.join("\n")
    );
    drop(serve);
}

#[test]
fn json_log_format() {
    let (_dir, mut serve) = serve_example(&["--log-format", "json"]);
    let parse = |line: &str| -> Value {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line:?}"));
        assert!(v.is_object(), "log line is not a JSON object: {line:?}");
        v
    };
    let in_sync = serve.wait_line("the JSON in-sync line", |l| {
        serde_json::from_str::<Value>(l).is_ok_and(|v| v["message"] == IN_SYNC_LINE)
    });
    let in_sync = parse(&in_sync);
    assert_eq!(in_sync["level"], "INFO", "{in_sync}");
    assert!(in_sync["keys"].as_u64().unwrap() > 0, "{in_sync}");
    let serving = serve.wait_line("the JSON serving line", |l| {
        serde_json::from_str::<Value>(l).is_ok_and(|v| v["message"] == "meshsync serving")
    });
    let serving = parse(&serving);
    let grpc = parse_addr(serving["grpc"].as_str().unwrap());
    let health = parse_some_addr(serving["health"].as_str().unwrap());

    let status = run(
        meshsync().args([
            "--log-format",
            "json",
            "status",
            "--server",
            &format!("http://{grpc}"),
            "--output",
            "json",
        ]),
        DEADLINE,
    );
    assert!(status.status.success(), "{}", status.describe());
    let (code, body) = get(health, "/readiness");
    assert_eq!(code, 200, "readiness: {body}");

    // Every line the server wrote is a JSON object, the in-sync line exactly once.
    for line in &serve.lines {
        parse(line);
    }
    assert_eq!(
        serve.count(|l| l.contains(IN_SYNC_LINE)),
        1,
        "{}",
        serve.lines.join("\n")
    );
}

#[test]
fn agent_without_a_server_times_out_with_a_clear_message() {
    // A port that was free a moment ago and has nothing listening now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let agent = run(
        meshsync().args([
            "agent",
            "--server",
            &format!("http://127.0.0.1:{port}"),
            "--until-in-sync",
            "--timeout",
            "1",
        ]),
        DEADLINE,
    );
    assert!(!agent.status.success(), "{}", agent.describe());
    assert!(
        agent.elapsed < Duration::from_secs(10),
        "{}",
        agent.describe()
    );
    assert!(
        agent.elapsed >= Duration::from_millis(900),
        "exited before its --timeout: {}",
        agent.describe()
    );
    assert!(
        agent.stderr.contains("timed out") && agent.stderr.contains("in-sync"),
        "stderr should say it timed out waiting for in-sync: {}",
        agent.describe()
    );
}

#[test]
fn serve_rejects_bad_datastores() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |datastore: &str| run(meshsync().args(serve_args(datastore, &[])), DEADLINE);

    let missing = dir.path().join("no-such-directory");
    let out = serve(&format!("file:{}", missing.display()));
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stderr.contains(&missing.display().to_string()) && out.stderr.contains("not exist"),
        "the error should name the missing path: {}",
        out.describe()
    );

    let file = dir.path().join("a-file.yaml");
    std::fs::write(&file, "").unwrap();
    let out = serve(&format!("file:{}", file.display()));
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stderr.contains(&file.display().to_string()) && out.stderr.contains("not a directory"),
        "{}",
        out.describe()
    );

    let out = serve("nope://x");
    assert!(!out.status.success(), "{}", out.describe());
    assert!(out.stderr.contains("nope://x"), "{}", out.describe());
}

/// The README's quick start: `serve` on `examples/mesh/cluster-a`, whose RemoteClusterConfiguration
/// brings in `examples/mesh/cluster-b`. One in-sync line per cluster, the remote first; the agent's
/// dump holds cluster-a's objects (the RCC consumed) and cluster-b's synced kinds.
#[test]
fn quick_start_two_cluster_example() {
    let dir = copy_example_mesh();
    let a = dir.path().join("cluster-a");
    let b = dir.path().join("cluster-b");
    let datastore = format!("file:{}", a.display());
    let mut serve = Serve::on_loopback(&datastore, &[]);
    let serving = serve.wait_serving();
    let (grpc, _) = serving_addrs_text(&serving);
    let remote_line = "Sending in-sync update for RemoteClusterConfiguration(cluster-b)";
    serve.wait_line("the remote in-sync line", |l| l.contains(remote_line));
    serve.wait_line("the local in-sync line", |l| {
        text_message_is(l, IN_SYNC_LINE)
    });

    let (_, dump) = sync_all_and_dump(&format!("http://{grpc}"), dir.path(), "quiet", &[]);
    let clusters: Vec<(String, String)> = dump["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["cluster"].as_str().unwrap().to_string(),
                c["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        clusters,
        [
            ("".to_string(), "InSync".to_string()),
            ("cluster-b".to_string(), "InSync".to_string())
        ]
    );
    let by_cluster = |cluster: &str| -> BTreeSet<Id> {
        dump["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["cluster"] == cluster)
            .map(|r| {
                (
                    r["kind"].as_str().unwrap().to_string(),
                    r["namespace"].as_str().unwrap().to_string(),
                    r["name"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let local_expected: BTreeSet<Id> = expected_resources(&a)
        .into_iter()
        .filter(|(kind, _, _)| kind != "RemoteClusterConfiguration")
        .collect();
    assert_eq!(by_cluster(""), local_expected);
    // cluster-b's RCC enables overlay routing: Nodes and IPPools come too; policy never does.
    // Services and Endpoints(Slices) always come (for the federation controller).
    let synced = [
        "WorkloadEndpoint",
        "HostEndpoint",
        "Profile",
        "Node",
        "IPPool",
        "Service",
        "Endpoints",
        "EndpointSlice",
    ];
    let remote_expected: BTreeSet<Id> = expected_resources(&b)
        .into_iter()
        .filter(|(kind, _, _)| synced.contains(&kind.as_str()))
        .collect();
    assert!(remote_expected.len() >= 4, "{remote_expected:?}");
    assert_eq!(by_cluster("cluster-b"), remote_expected);
    for r in dump["resources"].as_array().unwrap() {
        if r["cluster"] == "cluster-b" && r["kind"] == "Profile" {
            assert!(r["value"]["spec"].get("ingress").is_none(), "{r}");
            assert!(r["value"]["spec"].get("egress").is_none(), "{r}");
        }
    }
    assert_eq!(serve.count(|l| l.contains(remote_line)), 1);
    assert_eq!(serve.count(|l| text_message_is(l, IN_SYNC_LINE)), 1);
}

/// `meshsync selector`: canonical form, unique ID (Calico's vectors), evaluation, and
/// exit code 2 with the error on bad input.
#[test]
fn selector_command() {
    let ok = run(
        meshsync().args(["selector", "a == 'b'", "--labels", r#"{"a":"b"}"#]),
        DEADLINE,
    );
    assert!(ok.status.success(), "{}", ok.describe());
    let lines: Vec<&str> = ok.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "a == \"b\"",
            "s:flMh0m0X_BowkAK_W3j3MgH8oQOsj3WxGDoXCQ",
            "true"
        ]
    );
    let all = run(meshsync().args(["selector", "  "]), DEADLINE);
    assert_eq!(
        all.stdout.lines().collect::<Vec<_>>(),
        ["all()", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"]
    );
    let bad = run(meshsync().args(["selector", "a b"]), DEADLINE);
    assert_eq!(bad.status.code(), Some(2), "{}", bad.describe());
    assert!(bad.stderr.contains("byte"), "{}", bad.describe());
    let bad_labels = run(
        meshsync().args(["selector", "has(a)", "--labels", "[1]"]),
        DEADLINE,
    );
    assert_eq!(
        bad_labels.status.code(),
        Some(2),
        "{}",
        bad_labels.describe()
    );
}

/// The selector CLI agrees with the unique IDs Calico computes and with the canonical forms of
/// worked examples.
#[test]
fn selector_command_agrees_with_the_reference_vectors() {
    for (expr, canonical, uid) in [
        ("all()", "all()", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"),
        (
            "!(has(b) || !has(a))",
            "!(has(b) || !has(a))",
            "s:Iss0uCleLYv1GSv_pNm7hAO58kE9jAx1NKyG3Q",
        ),
        (
            "!(a == \"b\" && !c != \"d\")",
            "!(a == \"b\" && !c != \"d\")",
            "s:lh3haoY1ikTRkd4UZu0nWSaIBknYLPJLX16d-w",
        ),
        (
            "a == \"b\"",
            "a == \"b\"",
            "s:flMh0m0X_BowkAK_W3j3MgH8oQOsj3WxGDoXCQ",
        ),
    ] {
        let out = run(meshsync().args(["selector", expr]), DEADLINE);
        assert!(out.status.success(), "{expr}: {}", out.describe());
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines, [canonical, uid], "{expr}");
    }
    for (expr, canonical) in [
        ("app == 'web'", "app == \"web\""),
        ("app in {\"db\",\"web\",\"db\"}", "app in {\"db\", \"web\"}"),
        (
            "app == \"web\" && env == \"prod\" || has(k8s-app)",
            "((app == \"web\" && env == \"prod\") || has(k8s-app))",
        ),
        ("!!has(app)", "has(app)"),
        ("!!!has(app)", "!has(app)"),
        ("app in {\"'\", '\"'}", "app in {'\"', \"'\"}"),
    ] {
        let out = run(meshsync().args(["selector", expr]), DEADLINE);
        assert!(out.status.success(), "{expr}: {}", out.describe());
        assert_eq!(out.stdout.lines().next(), Some(canonical), "{expr}");
    }
}
