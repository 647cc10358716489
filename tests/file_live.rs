//! The real file datastore, live: an in-process server over `file::watch` on a temp directory,
//! agents on real gRPC connections. Files are edited the way editors and `git` do (write a hidden
//! temporary file, rename it into place), and every "nothing else happened" claim is proved by
//! making one more real change and checking that it is the very next update.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;

use meshsync_agent::{Agent, AgentEvent, Mirror};
use meshsync_cache::SyncState;
use meshsync_datastore::file::{FileSourceConfig, watch};
use meshsync_datastore::{LOCAL_CLUSTER, ResourceKey};
use meshsync_proto::sync_client::SyncClient;
use meshsync_proto::{self as pb, Update, UpdateType, sync_event};
use serde_json::{Value, json};
use support::{TestServer, logs, next_update, until_in_sync, within};
use tonic::transport::Endpoint;

/// `(kind, namespace, name)`.
type Id = (String, String, String);

fn id(kind: &str, namespace: &str, name: &str) -> Id {
    (kind.into(), namespace.into(), name.into())
}

fn id_of(value: &Value) -> Id {
    id(
        value["kind"].as_str().unwrap(),
        value["metadata"]["namespace"].as_str().unwrap_or(""),
        value["metadata"]["name"].as_str().unwrap(),
    )
}

fn obj(kind: &str, namespace: &str, name: &str, spec: Value) -> Value {
    let mut metadata = json!({"name": name});
    if !namespace.is_empty() {
        metadata["namespace"] = json!(namespace);
    }
    json!({"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": metadata, "spec": spec})
}

/// Replaces `path` atomically with `text`, as editors and `git checkout` do: a hidden temporary
/// file (ignored by the datastore) renamed over the target.
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The objects as a multi-document YAML file (each document a JSON object: YAML is a superset).
fn docs_text(objects: &[&Value]) -> String {
    let docs: Vec<String> = objects.iter().map(|o| o.to_string()).collect();
    docs.join("\n---\n") + "\n"
}

fn write_docs(path: &Path, objects: &[&Value]) {
    write_atomic(path, &docs_text(objects));
}

/// What the directory defines, read back from the files this test wrote (`docs_text` format).
fn dir_objects(dir: &Path) -> BTreeMap<Id, Value> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with('.') || !name.ends_with(".yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in text.split("\n---\n") {
            let value: Value = serde_json::from_str(doc).unwrap_or_else(|e| {
                panic!("{}: not a document of this test ({e})", path.display())
            });
            assert!(
                out.insert(id_of(&value), value).is_none(),
                "duplicate in {name}"
            );
        }
    }
    out
}

fn mirror_objects(mirror: &Mirror) -> BTreeMap<Id, Value> {
    mirror
        .resources()
        .iter()
        .map(|(k, e)| {
            assert_eq!(k.cluster, LOCAL_CLUSTER);
            let value: Value = serde_json::from_slice(&e.value).unwrap();
            assert_eq!(id_of(&value), id(&k.kind, &k.namespace, &k.name));
            (id(&k.kind, &k.namespace, &k.name), value)
        })
        .collect()
}

fn assert_mirror_is_dir(agent: &Agent, dir: &Path, step: &str) {
    assert_eq!(
        mirror_objects(agent.mirror()),
        dir_objects(dir),
        "mirror vs directory after {step}"
    );
}

fn update_id(u: &Update) -> Id {
    assert_eq!(u.cluster, LOCAL_CLUSTER, "{u:?}");
    id(&u.kind, &u.namespace, &u.name)
}

fn kind_name(t: i32) -> &'static str {
    match UpdateType::try_from(t) {
        Ok(UpdateType::New) => "NEW",
        Ok(UpdateType::Updated) => "UPDATED",
        Ok(UpdateType::Deleted) => "DELETED",
        _ => "UNKNOWN",
    }
}

/// The next update must be a NEW or UPDATED of exactly `value`.
async fn expect_upsert(agent: &mut Agent, t: UpdateType, value: &Value) -> Update {
    let u = next_update(agent).await;
    assert_eq!(
        (kind_name(u.r#type), update_id(&u)),
        (kind_name(t as i32), id_of(value)),
        "unexpected update {u:?}"
    );
    let got: Value = serde_json::from_slice(&u.value).unwrap();
    assert_eq!(&got, value, "value of {:?}", id_of(value));
    u
}

/// The next `ids.len()` updates are DELETEs of exactly `ids` (in any order).
async fn expect_deletes<S: Subscriber>(sub: &mut S, ids: &[Id]) {
    let mut got = BTreeSet::new();
    for _ in ids {
        let u = sub.next_update().await;
        assert_eq!(kind_name(u.r#type), "DELETED", "unexpected update {u:?}");
        assert!(u.value.is_empty(), "a delete carries no value: {u:?}");
        got.insert(update_id(&u));
    }
    assert_eq!(got, ids.iter().cloned().collect::<BTreeSet<_>>());
}

async fn start(dir: &Path) -> TestServer {
    let stream = watch(FileSourceConfig::new(dir, LOCAL_CLUSTER.into())).unwrap();
    TestServer::start(stream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_edits_reach_the_agent_as_exact_updates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let n1 = obj(
        "Node",
        "",
        "n1",
        json!({"bgp": {"ipv4Address": "10.0.0.1/24"}}),
    );
    let pool = obj("IPPool", "", "pool", json!({"cidr": "10.65.0.0/16"}));
    let w1 = obj(
        "WorkloadEndpoint",
        "ns1",
        "w1",
        json!({"node": "n1", "ipNetworks": ["10.65.0.1/32"]}),
    );
    let w2 = obj(
        "WorkloadEndpoint",
        "ns1",
        "w2",
        json!({"node": "n1", "ipNetworks": ["10.65.0.2/32"]}),
    );
    let p1 = obj(
        "Profile",
        "",
        "kns.ns1",
        json!({"labelsToApply": {"team": "a"}}),
    );
    write_docs(&d.join("infra.yaml"), &[&n1, &pool]);
    write_docs(&d.join("workloads.yaml"), &[&w1, &w2, &p1]);

    let server = start(d).await;
    let mut agent = server.agent("all");
    until_in_sync(&mut agent).await;
    assert_eq!(agent.mirror().len(), 5);
    assert_mirror_is_dir(&agent, d, "the initial sync");
    let mut last_seq = agent.mirror().seq();
    let mut check_seq = |u: &Update| {
        assert!(
            u.seq > last_seq,
            "seq must grow: {} after {last_seq}",
            u.seq
        );
        last_seq = u.seq;
    };

    // A new file with a new object: NEW for exactly it.
    let gnp = obj(
        "GlobalNetworkPolicy",
        "",
        "deny-all",
        json!({"selector": "all()", "types": ["Egress"]}),
    );
    write_docs(&d.join("policy.yaml"), &[&gnp]);
    check_seq(&expect_upsert(&mut agent, UpdateType::New, &gnp).await);
    assert_mirror_is_dir(&agent, d, "adding policy.yaml");

    // One field of one object in a multi-object file: one UPDATED for exactly it (checked by the
    // next step's update being the next one).
    let w2b = obj(
        "WorkloadEndpoint",
        "ns1",
        "w2",
        json!({"node": "n1", "ipNetworks": ["10.65.0.99/32"]}),
    );
    write_docs(&d.join("workloads.yaml"), &[&w1, &w2b, &p1]);
    check_seq(&expect_upsert(&mut agent, UpdateType::Updated, &w2b).await);
    assert_mirror_is_dir(&agent, d, "changing w2");

    // Deleting a file deletes each of its objects.
    std::fs::remove_file(d.join("workloads.yaml")).unwrap();
    expect_deletes(&mut agent, &[id_of(&w1), id_of(&w2b), id_of(&p1)]).await;
    assert_mirror_is_dir(&agent, d, "deleting workloads.yaml");

    // Nothing else was sent: the next update is this sentinel change.
    let n1b = obj(
        "Node",
        "",
        "n1",
        json!({"bgp": {"ipv4Address": "10.0.0.2/24"}}),
    );
    write_docs(&d.join("infra.yaml"), &[&n1b, &pool]);
    check_seq(&expect_upsert(&mut agent, UpdateType::Updated, &n1b).await);
    assert_mirror_is_dir(&agent, d, "the sentinel change");
    assert!(agent.mirror().in_sync());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_is_reported_and_loses_nothing() {
    logs::install();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let nodes = d.join("broken-nodes.yaml");
    let other = d.join("other.yaml");
    let x = obj("Node", "", "x", json!({"v": 1}));
    let y = obj("Node", "", "y", json!({"v": 1}));
    let z = |v: u32| obj("Profile", "", "z", json!({"v": v}));
    write_docs(&nodes, &[&x, &y]);
    write_docs(&other, &[&z(1)]);

    let server = start(d).await;
    let mut agent = server.agent("all");
    until_in_sync(&mut agent).await;
    assert_mirror_is_dir(&agent, d, "the initial sync");
    let model = dir_objects(d);
    let updates_before = server.cache.metrics().updates.load(Ordering::Relaxed);

    // Invalid YAML (an unterminated flow sequence).
    write_atomic(&nodes, "kind: Node\nmetadata: {name: [x\nspec: {v: 1}\n");
    // The scan that sees this change has seen the broken file too (written before it): no delete
    // may come before it.
    write_docs(&other, &[&z(2)]);
    expect_upsert(&mut agent, UpdateType::Updated, &z(2)).await;
    let mut expected = model.clone();
    expected.insert(id_of(&z(2)), z(2));
    assert_eq!(
        mirror_objects(agent.mirror()),
        expected,
        "the agent lost nothing"
    );
    assert_eq!(
        server.cache.metrics().updates.load(Ordering::Relaxed),
        updates_before + 1,
        "only the real change was counted"
    );
    // The server's cache still holds the broken file's objects, unchanged.
    let head = server.cache.head();
    for v in [&x, &y] {
        let (kind, namespace, name) = id_of(v);
        let entry = head
            .snapshot
            .get(&ResourceKey::new(LOCAL_CLUSTER, &kind, &namespace, &name))
            .unwrap_or_else(|| panic!("the cache lost {name}"));
        assert_eq!(&serde_json::from_slice::<Value>(&entry.value).unwrap(), v);
    }
    assert_eq!(head.status.clusters[LOCAL_CLUSTER].keys(), 3);
    // And the problem was reported, naming the file (already logged: the scan that produced the
    // update above logged it before sending anything).
    let log = logs::captured();
    let reported = log.lines().any(|l| {
        l.contains("ERROR") && l.contains(&nodes.display().to_string()) && l.contains("line")
    });
    assert!(
        reported,
        "no error naming {} with a line number in:\n{log}",
        nodes.display()
    );

    // Fixed, with y changed: exactly one UPDATED (the sentinel after it is the next update).
    let y2 = obj("Node", "", "y", json!({"v": 2}));
    write_docs(&nodes, &[&x, &y2]);
    expect_upsert(&mut agent, UpdateType::Updated, &y2).await;
    write_docs(&other, &[&z(3)]);
    expect_upsert(&mut agent, UpdateType::Updated, &z(3)).await;
    assert_mirror_is_dir(&agent, d, "fixing the file");
    server.stop().await;
}

/// Block-style YAML for a JSON value: keys in reverse order, 4-space indentation, strings
/// double-quoted (JSON escapes are valid YAML), a comment per mapping. Same object, other text.
fn reordered_yaml(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            out.push_str(&format!("{pad}# {} keys, reordered\n", map.len()));
            for (k, v) in map.iter().rev() {
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        reordered_yaml(v, indent + 4, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        for item in a {
                            out.push_str(&format!("{pad}  -   {item}\n"));
                        }
                    }
                    _ => out.push_str(&format!("{pad}{k}:    {v}\n")),
                }
            }
        }
        _ => panic!("not a mapping: {value}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_without_changes_are_not_sent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let nodes = d.join("nodes.yaml");
    let sentinel_path = d.join("sentinel.yaml");
    let n1 = obj(
        "Node",
        "",
        "n1",
        json!({"addresses": ["10.0.0.1", "10.0.0.2"], "bgp": {"asNumber": 64512, "ipv4Address": "10.0.0.1/24"}, "flag": true}),
    );
    let mut n1_labeled = n1.clone();
    n1_labeled["metadata"]["labels"] = json!({"zone": "a", "arch": "amd64"});
    let n2 = obj(
        "Node",
        "",
        "n2",
        json!({"ipv4VXLANTunnelAddr": "10.65.1.0"}),
    );
    let sentinel = |round: u32| obj("Profile", "", "sentinel", json!({"round": round}));
    let original = docs_text(&[&n1_labeled, &n2]);
    write_atomic(&nodes, &original);
    write_docs(&sentinel_path, &[&sentinel(0)]);

    let server = start(d).await;
    let mut agent = server.agent("all");
    until_in_sync(&mut agent).await;
    assert_mirror_is_dir(&agent, d, "the initial sync");
    let entry_of = |agent: &Agent| {
        agent
            .mirror()
            .resources()
            .iter()
            .find(|(k, _)| k.name == "n1")
            .map(|(_, e)| e.clone())
            .unwrap()
    };
    let n1_entry = entry_of(&agent);
    let updates_before = server.cache.metrics().updates.load(Ordering::Relaxed);

    let mut reformatted = String::from("# the same objects, written differently\n");
    for v in [&n1_labeled, &n2] {
        reordered_yaml(v, 0, &mut reformatted);
        reformatted.push_str("---\n");
    }
    let mut with_resource_version = n1_labeled.clone();
    with_resource_version["metadata"]["resourceVersion"] = json!("123456");
    let pretty = format!(
        "{}\n---\n{}\n",
        serde_json::to_string_pretty(&n2).unwrap(),
        serde_json::to_string_pretty(&with_resource_version).unwrap()
    );
    type Rewrite<'a> = (&'static str, Box<dyn Fn() + 'a>);
    let rewrites: Vec<Rewrite> = vec![
        (
            "identical bytes, replaced",
            Box::new(|| write_atomic(&nodes, &original)),
        ),
        (
            "identical bytes, overwritten in place",
            Box::new(|| {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&nodes)
                    .unwrap();
                f.write_all(original.as_bytes()).unwrap();
                f.sync_all().unwrap();
            }),
        ),
        (
            "reordered keys, other indentation, comments",
            Box::new(|| write_atomic(&nodes, &reformatted)),
        ),
        (
            "pretty JSON, other document order, a new resourceVersion",
            Box::new(|| write_atomic(&nodes, &pretty)),
        ),
    ];
    for (round, (what, rewrite)) in rewrites.iter().enumerate() {
        let round = round as u32 + 1;
        rewrite();
        // The scan that sees the sentinel change has seen the rewrite: had the rewrite produced
        // an update, it would come first.
        write_docs(&sentinel_path, &[&sentinel(round)]);
        let u = next_update(&mut agent).await;
        assert_eq!(
            (kind_name(u.r#type), update_id(&u)),
            ("UPDATED", id_of(&sentinel(round))),
            "after a rewrite with {what}: {u:?}"
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&u.value).unwrap(),
            sentinel(round)
        );
        assert_eq!(
            server.cache.metrics().updates.load(Ordering::Relaxed),
            updates_before + u64::from(round),
            "the cache counted a change for a rewrite with {what}"
        );
    }
    let after = entry_of(&agent);
    assert_eq!(
        after, n1_entry,
        "n1 untouched (same value, revision and seq)"
    );
    server.stop().await;
}

/// One subscriber of the filtering scenario: what it holds, and its next update.
trait Subscriber {
    async fn next_update(&mut self) -> Update;
    fn ids(&self) -> BTreeSet<Id>;
}

impl Subscriber for Agent {
    async fn next_update(&mut self) -> Update {
        next_update(self).await
    }
    fn ids(&self) -> BTreeSet<Id> {
        mirror_objects(self.mirror()).into_keys().collect()
    }
}

/// Pulls events until the mirror is in sync. A digest mismatch right after a snapshot of a quiet
/// directory can only be a bug: it fails at once instead of resubscribing until the timeout.
async fn agent_in_sync(agent: &mut Agent, subscription: &str) {
    within("agent in sync", async {
        while !agent.mirror().in_sync() {
            if let AgentEvent::DigestMismatch(m) = agent.next().await.expect("agent failed") {
                panic!(
                    "`{subscription}` agent: its mirror's digest disagrees with the server's status \
                     right after the snapshot, so it resubscribes forever and never gets in sync: \
                     {m:?}"
                );
            }
        }
    })
    .await
}

/// A bare `Subscribe` call on the generated gRPC client, without the agent library's digest
/// verification: what the server sends a subscription, and nothing more.
struct Wire {
    stream: tonic::Streaming<pb::SyncEvent>,
    held: BTreeSet<Id>,
    queued: VecDeque<Update>,
}

impl Wire {
    /// Subscribes and reads the hello and the snapshot (everything up to the first status).
    async fn subscribe(url: &str, subscription: &str) -> Wire {
        let channel = Endpoint::from_shared(url.to_string())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let request = pb::SubscribeRequest {
            node_name: format!("wire-{subscription}"),
            subscription: subscription.to_string(),
            ..Default::default()
        };
        let stream = SyncClient::new(channel)
            .subscribe(request)
            .await
            .unwrap()
            .into_inner();
        let mut wire = Wire {
            stream,
            held: BTreeSet::new(),
            queued: VecDeque::new(),
        };
        match wire.event().await {
            sync_event::Event::Hello(h) => assert_eq!(h.subscription, subscription),
            other => panic!("expected a hello, got {other:?}"),
        }
        loop {
            match wire.event().await {
                sync_event::Event::Updates(batch) => {
                    for u in batch.updates {
                        assert_eq!(kind_name(u.r#type), "NEW", "snapshot entry {u:?}");
                        wire.held.insert(update_id(&u));
                    }
                }
                sync_event::Event::Status(s) => {
                    assert_eq!(s.overall(), pb::SyncState::InSync, "{s:?}");
                    return wire;
                }
                other => panic!("unexpected event in the snapshot: {other:?}"),
            }
        }
    }

    async fn event(&mut self) -> sync_event::Event {
        within("the next event on the wire", self.stream.message())
            .await
            .expect("stream failed")
            .expect("stream ended")
            .event
            .expect("empty event")
    }
}

impl Subscriber for Wire {
    async fn next_update(&mut self) -> Update {
        loop {
            if let Some(u) = self.queued.pop_front() {
                if kind_name(u.r#type) == "DELETED" {
                    self.held.remove(&update_id(&u));
                } else {
                    self.held.insert(update_id(&u));
                }
                return u;
            }
            match self.event().await {
                sync_event::Event::Updates(batch) => self.queued.extend(batch.updates),
                sync_event::Event::Status(_) => {}
                other => panic!("unexpected event: {other:?}"),
            }
        }
    }
    fn ids(&self) -> BTreeSet<Id> {
        self.held.clone()
    }
}

/// As Typha's syncers: `felix` carries Node, WorkloadEndpoint and BGPPeer
/// but not BGPFilter or BlockAffinity; `bgp` carries Node, BGPPeer, BGPFilter and BlockAffinity but
/// not WorkloadEndpoint; an unknown kind (Gadget) reaches only `all`.
struct FilterScenario {
    peer: Value,
    filter: Value,
    ba1: Value,
    w1: Value,
    g1: Value,
}

impl FilterScenario {
    fn node(v: &str) -> Value {
        obj("Node", "", "n1", json!({"bgp": {"ipv4Address": v}}))
    }

    fn write(d: &Path) -> FilterScenario {
        let s = FilterScenario {
            peer: obj(
                "BGPPeer",
                "",
                "rr",
                json!({"peerIP": "10.0.0.254", "asNumber": 64512}),
            ),
            filter: obj("BGPFilter", "", "no-default", json!({"exportV4": []})),
            ba1: obj(
                "BlockAffinity",
                "",
                "n1-10-65-0-0-26",
                json!({"node": "n1", "cidr": "10.65.0.0/26", "state": "confirmed"}),
            ),
            w1: obj("WorkloadEndpoint", "ns1", "w1", json!({"node": "n1"})),
            g1: obj("Gadget", "ns1", "g1", json!({"color": "red"})),
        };
        write_docs(&d.join("bgp.yaml"), &[&s.peer, &s.filter, &s.ba1]);
        write_docs(&d.join("wep.yaml"), &[&s.w1]);
        write_docs(&d.join("node.yaml"), &[&Self::node("10.0.0.1/24")]);
        write_docs(&d.join("gadget.yaml"), &[&s.g1]);
        s
    }

    /// From in sync: checks the initial views, then live additions, deletions and a shared change.
    async fn run<S: Subscriber>(&self, d: &Path, felix: &mut S, bgp: &mut S, all: &mut S) {
        let set = |values: &[&Value]| -> BTreeSet<Id> { values.iter().map(|v| id_of(v)).collect() };
        let node = Self::node("10.0.0.1/24");
        assert_eq!(felix.ids(), set(&[&self.peer, &self.w1, &node]), "felix");
        assert_eq!(
            bgp.ids(),
            set(&[&self.peer, &self.filter, &self.ba1, &node]),
            "bgp"
        );
        assert_eq!(all.ids(), dir_objects(d).into_keys().collect(), "all");

        // Live: one new file with an object for each side and one of an unknown kind.
        let ba2 = obj(
            "BlockAffinity",
            "",
            "n1-10-65-0-64-26",
            json!({"node": "n1", "cidr": "10.65.0.64/26", "state": "confirmed"}),
        );
        let w2 = obj("WorkloadEndpoint", "ns1", "w2", json!({"node": "n1"}));
        let g2 = obj("Gadget", "ns1", "g2", json!({"color": "blue"}));
        write_docs(&d.join("more.yaml"), &[&w2, &ba2, &g2]);
        expect_new(felix, &w2).await;
        expect_new(bgp, &ba2).await;
        let mut got = BTreeSet::new();
        for _ in 0..3 {
            let u = all.next_update().await;
            assert_eq!(kind_name(u.r#type), "NEW", "{u:?}");
            got.insert(update_id(&u));
        }
        assert_eq!(got, set(&[&w2, &ba2, &g2]), "all");

        // Deletes are filtered the same way: felix loses only the BGPPeer, bgp all three.
        std::fs::remove_file(d.join("bgp.yaml")).unwrap();
        std::fs::remove_file(d.join("gadget.yaml")).unwrap();
        let (peer, filter, ba1, g1) = (&self.peer, &self.filter, &self.ba1, &self.g1);
        expect_deletes(felix, &[id_of(peer)]).await;
        expect_deletes(bgp, &[id_of(peer), id_of(filter), id_of(ba1)]).await;
        expect_deletes(all, &[id_of(peer), id_of(filter), id_of(ba1), id_of(g1)]).await;

        // Nothing else reached anyone: the next update of each is this change of a shared kind.
        let node2 = Self::node("10.0.0.9/24");
        write_docs(&d.join("node.yaml"), &[&node2]);
        for sub in [&mut *felix, &mut *bgp, &mut *all] {
            let u = sub.next_update().await;
            assert_eq!(
                (kind_name(u.r#type), update_id(&u)),
                ("UPDATED", id_of(&node2)),
                "{u:?}"
            );
            assert_eq!(serde_json::from_slice::<Value>(&u.value).unwrap(), node2);
        }
        assert_eq!(
            felix.ids(),
            set(&[&self.w1, &w2, &node2]),
            "felix at the end"
        );
        assert_eq!(bgp.ids(), set(&[&ba2, &node2]), "bgp at the end");
        assert_eq!(
            all.ids(),
            dir_objects(d).into_keys().collect(),
            "all at the end"
        );
    }
}

async fn expect_new<S: Subscriber>(sub: &mut S, value: &Value) {
    let u = sub.next_update().await;
    assert_eq!(
        (kind_name(u.r#type), update_id(&u)),
        ("NEW", id_of(value)),
        "{u:?}"
    );
    assert_eq!(&serde_json::from_slice::<Value>(&u.value).unwrap(), value);
}

/// The scenario through the agent library: filtered mirrors that reach in-sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_get_filtered_views() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let scenario = FilterScenario::write(d);
    let server = start(d).await;
    let mut felix = server.agent("felix");
    let mut bgp = server.agent("bgp");
    let mut all = server.agent("all");
    agent_in_sync(&mut all, "all").await;
    agent_in_sync(&mut felix, "felix").await;
    agent_in_sync(&mut bgp, "bgp").await;
    scenario.run(d, &mut felix, &mut bgp, &mut all).await;
    assert_mirror_is_dir(&all, d, "the end, for `all`");
    server.stop().await;
}

/// The same scenario on bare gRPC streams: what the server sends each subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_filtered_on_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let scenario = FilterScenario::write(d);
    let server = start(d).await;
    // The snapshot must be the complete listing: wait for the cache to be in sync first.
    within(
        "cache in sync",
        server
            .cache
            .wait_for_status(|s| s.overall == SyncState::InSync),
    )
    .await;
    let url = server.url();
    let mut felix = Wire::subscribe(&url, "felix").await;
    let mut bgp = Wire::subscribe(&url, "bgp").await;
    let mut all = Wire::subscribe(&url, "all").await;
    scenario.run(d, &mut felix, &mut bgp, &mut all).await;
    server.stop().await;
}
