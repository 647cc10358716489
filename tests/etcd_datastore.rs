#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;

// The etcd datastore driver (`meshsync_datastore::etcd::watch`) and our etcd v3 client against
// real etcd processes: the initial listing and its key layout, paging, live changes, bad values,
// kind filters, prefixes, a killed and restarted etcd, compaction of a lagging watch,
// transactions, and user/password authentication. Every wait is on a condition with a timeout;
// "nothing happened" is proven by the next real change being the next event.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use meshsync_datastore::etcd::watch;
use meshsync_datastore::layout::{key_path, parse_key};
use meshsync_datastore::{ResourceKey, SourceEvent, SourceStatus};
use meshsync_etcd::{EtcdClient, pb};
use support::etcd::Etcd;
use support::source::{
    Replica, etcd_source_config, is_connection_failed, next, until, until_in_sync, upserts_name,
};
use support::within;

fn rk(kind: &str, namespace: &str, name: &str) -> ResourceKey {
    ResourceKey::new("", kind, namespace, name)
}

fn status(status: SourceStatus) -> SourceEvent {
    SourceEvent::Status {
        cluster: "".into(),
        status,
    }
}

fn resync_start() -> SourceEvent {
    SourceEvent::ResyncStart { cluster: "".into() }
}

fn resync_done() -> SourceEvent {
    SourceEvent::ResyncDone { cluster: "".into() }
}

fn upsert(key: ResourceKey, value: impl Into<Bytes>, revision: i64) -> SourceEvent {
    SourceEvent::Upsert {
        key,
        value: value.into(),
        revision: revision.to_string().into(),
    }
}

fn delete(key: ResourceKey, revision: i64) -> SourceEvent {
    SourceEvent::Delete {
        key,
        revision: revision.to_string().into(),
    }
}

/// A small v3 resource as JSON.
fn object(kind: &str, name: &str) -> String {
    format!(
        r#"{{"kind":"{kind}","apiVersion":"projectcalico.org/v3","metadata":{{"name":"{name}"}},"spec":{{}}}}"#
    )
}

/// The etcd key of a Calico or Kubernetes resource under `/calico`.
fn path(kind: &str, namespace: &str, name: &str) -> String {
    key_path("/calico", kind, namespace, name).expect("a known kind")
}

fn node_path(name: &str) -> String {
    path("Node", "", name)
}

/// Writes the Node `name` as [`object`] builds it; returns the put's revision.
async fn put_node(client: &EtcdClient, name: &str) -> i64 {
    client
        .put(node_path(name), object("Node", name))
        .await
        .unwrap()
}

/// The driver's upsert of the Node `name` that [`put_node`] wrote at `revision`.
fn node_upsert(name: &str, revision: i64) -> SourceEvent {
    upsert(rk("Node", "", name), object("Node", name), revision)
}

/// What a source reports from its start to InSync when its listing is `listed`.
fn listing_to_in_sync(listed: impl IntoIterator<Item = SourceEvent>) -> Vec<SourceEvent> {
    let mut events = vec![
        status(SourceStatus::Connecting),
        status(SourceStatus::ResyncInProgress),
        resync_start(),
    ];
    events.extend(listed);
    events.push(resync_done());
    events.push(status(SourceStatus::InSync));
    events
}

/// What etcd holds under `prefix`, mapped to resource keys as the layout does.
async fn etcd_state(client: &EtcdClient, prefix: &str) -> BTreeMap<ResourceKey, Bytes> {
    let (kvs, _) = client
        .list_prefix(format!("{prefix}/").as_bytes(), 0, 1000)
        .await
        .unwrap();
    kvs.into_iter()
        .filter_map(|kv| {
            let key = std::str::from_utf8(&kv.key).ok()?;
            let (kind, ns, name) = parse_key(prefix, key)?;
            Some((rk(kind, &ns, &name), kv.value))
        })
        .collect()
}

/// `etcdctl` against `etcd` (the Debian package etcd-client, installed by scripts/test.sh).
fn etcdctl(etcd: &Etcd, args: &[&str]) {
    let output = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(etcd.url())
        .args(args)
        .output()
        .expect("etcdctl must be installed (Debian package etcd-client); run scripts/test.sh");
    assert!(
        output.status.success(),
        "etcdctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn initial_listing_maps_the_calico_layout_in_key_order() {
    let etcd = Etcd::start("listing").await;
    let client = etcd.client().await;
    // (etcd key, kind, namespace, name) for every key the driver serves.
    let served = [
        (
            "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool",
            "IPPool",
            "",
            "default-ipv4-ippool",
        ),
        (
            "/calico/resources/v3/projectcalico.org/felixconfigurations/node.node1",
            "FelixConfiguration",
            "",
            "node.node1",
        ),
        (
            "/calico/resources/v3/projectcalico.org/workloadendpoints/default/node1-k8s-nginx-eth0",
            "WorkloadEndpoint",
            "default",
            "node1-k8s-nginx-eth0",
        ),
        (
            "/calico/resources/v3/projectcalico.org/networkpolicies/ns1/default.allow-dns",
            "NetworkPolicy",
            "ns1",
            "default.allow-dns",
        ),
        (
            "/calico/resources/v3/projectcalico.org/profiles/c%2fkns.ns1",
            "Profile",
            "",
            "c/kns.ns1",
        ),
        (
            "/calico/resources/v3/projectcalico.org/nodes/a%25b%2fc",
            "Node",
            "",
            "a%b/c",
        ),
        (
            "/calico/resources/v3/projectcalico.org/profiles/x%252fy",
            "Profile",
            "",
            "x%2fy",
        ),
        (
            "/calico/resources/v3/projectcalico.org/remoteclusterconfigurations/cluster-b",
            "RemoteClusterConfiguration",
            "",
            "cluster-b",
        ),
        (
            "/calico/resources/v3/k8s/secrets/kube-system/remote-b",
            "Secret",
            "kube-system",
            "remote-b",
        ),
        (
            "/calico/resources/v3/k8s/services/default/kubernetes",
            "Service",
            "default",
            "kubernetes",
        ),
        (
            "/calico/ipam/v2/assignment/ipv4/block/10.65.0.0-26",
            "IPAMBlock",
            "",
            "10-65-0-0-26",
        ),
        (
            "/calico/ipam/v2/assignment/ipv6/block/fd00::-122",
            "IPAMBlock",
            "",
            "fd00---122",
        ),
    ];
    // Valid JSON everywhere, so only the key decides.
    let ignored = [
        "/calico/v1/host/node1/config/LogSeverityScreen",
        "/calico/v1/policy/profile/kns.ns1/rules",
        "/calico/ipam/v2/handle/k8s-pod-network.abc",
        // Host affinities are served (tests/etcd_block_affinity.rs); virtual ones are not.
        "/calico/ipam/v2/virtual/node1/ipv4/block/10.65.0.0-26",
        "/calico/ipam/v2/config",
        "/calico/resources/v3/projectcalico.org/gadgets/x",
        "/calico/resources/v3/projectcalico.org/ippools/a/b",
        "/calico/resources/v3/projectcalico.org/workloadendpoints/no-namespace",
        "/calico/resources/v3/k8s/pods/default/p",
        "/calicox/resources/v3/projectcalico.org/ippools/sibling-prefix",
        "/other/resources/v3/projectcalico.org/ippools/other-prefix",
    ];
    for key in ignored {
        client.put(key, r#"{"ignored":true}"#).await.unwrap();
    }
    // Written in reverse key order, so revision order is not key order.
    let mut sorted = served;
    sorted.sort_by_key(|s| s.0);
    let mut revisions = BTreeMap::new();
    for (key, kind, _, name) in sorted.iter().rev() {
        let revision = client.put(*key, object(kind, name)).await.unwrap();
        revisions.insert(*key, revision);
    }

    let mut source = watch(etcd_source_config(&etcd));
    let events = until_in_sync(&mut source).await;

    let expected = listing_to_in_sync(sorted.iter().map(|(key, kind, ns, name)| {
        upsert(rk(kind, ns, name), object(kind, name), revisions[key])
    }));
    assert_eq!(events, expected);

    // The watch is running: an ignored key changes nothing, a served one is the next event.
    client.put(ignored[0], "{}").await.unwrap();
    client.delete(ignored[2]).await.unwrap();
    let revision = put_node(&client, "late").await;
    assert_eq!(next(&mut source).await, node_upsert("late", revision));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_listing_is_complete_and_one_consistent_cut() {
    const WRITERS: usize = 8;
    let etcd = Etcd::start("paging").await;
    let client = etcd.client().await;
    let name = |i: usize| format!("gns-{i:02}");
    let value = |i: usize, w: usize, n: usize| {
        format!(
            r#"{{"kind":"GlobalNetworkSet","metadata":{{"name":"gns-{i:02}"}},"i":{i},"writer":{w},"n":{n}}}"#
        )
    };
    for i in 0..20 {
        client
            .put(path("GlobalNetworkSet", "", &name(i)), value(i, 0, 0))
            .await
            .unwrap();
    }

    // Writers keep changing the 20 keys while the driver lists them (7 pages of 3) and watches.
    let stop = Arc::new(AtomicBool::new(false));
    let (count_tx, mut count) = tokio::sync::watch::channel(0usize);
    let count_tx = Arc::new(count_tx);
    let writers: Vec<_> = (1..=WRITERS)
        .map(|w| {
            let client = client.clone();
            let stop = stop.clone();
            let count_tx = count_tx.clone();
            tokio::spawn(async move {
                let mut writes = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) && n < 5_000 {
                    let i = (n * WRITERS + w) % 20;
                    let v = value(i, w, n);
                    let revision = client
                        .put(path("GlobalNetworkSet", "", &name(i)), v.clone())
                        .await
                        .unwrap();
                    writes.push((name(i), Bytes::from(v), revision));
                    count_tx.send_modify(|c| *c += 1);
                    n += 1;
                }
                writes
            })
        })
        .collect();
    within("the writers to get going", count.wait_for(|c| *c >= 50))
        .await
        .unwrap();

    // The client: every page of a paged listing is read at the first page's revision.
    for _ in 0..10 {
        let (paged, at) = client.list_prefix(b"/calico/", 0, 3).await.unwrap();
        let (whole, whole_at) = client.list_prefix(b"/calico/", at, 1000).await.unwrap();
        assert_eq!(whole_at, at);
        assert_eq!(paged, whole, "a paged listing is not the cut at {at}");
    }

    let mut cfg = etcd_source_config(&etcd);
    cfg.page_size = 3;
    let mut source = watch(cfg);
    let mut events = until_in_sync(&mut source).await;
    let listed: Vec<(String, i64)> = events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Upsert { key, revision, .. } => {
                Some((key.name().to_string(), revision.parse().unwrap()))
            }
            _ => None,
        })
        .collect();
    let listed_names: Vec<String> = listed.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(listed_names, (0..20).map(name).collect::<Vec<_>>());
    // Let the watch carry some of the changes, then stop the writers and mark the end.
    events.extend(
        until(&mut source, "watched changes", {
            let counter = std::cell::Cell::new(0);
            move |e| {
                if matches!(e, SourceEvent::Upsert { .. }) {
                    counter.set(counter.get() + 1);
                }
                counter.get() >= 40
            }
        })
        .await,
    );
    stop.store(true, Ordering::SeqCst);
    let mut writes = Vec::new();
    for writer in writers {
        writes.extend(within("a writer", writer).await.unwrap());
    }
    writes.sort_by_key(|(_, _, r)| *r);
    put_node(&client, "sentinel").await;
    events.extend(until(&mut source, "the sentinel", |e| upserts_name(e, "sentinel")).await);

    // The listing is one cut at some revision R ≥ every listed revision: each key's listed
    // revision is its last write at or before the cut. The watch then carries exactly the writes
    // after the cut, each once, in revision order.
    let cut = listed.iter().map(|(_, r)| *r).max().unwrap();
    for (n, r) in &listed {
        let last = writes
            .iter()
            .filter(|(wn, _, wr)| wn == n && *wr <= cut)
            .map(|(_, _, wr)| *wr)
            .max();
        if let Some(last) = last {
            assert_eq!(*r, last, "{n} was listed at {r}, not at the cut {cut}");
        }
    }
    let watched: Vec<(String, Bytes, i64)> = events
        .iter()
        .skip_while(|e| !matches!(e, SourceEvent::ResyncDone { .. }))
        .filter_map(|e| match e {
            SourceEvent::Upsert {
                key,
                value,
                revision,
            } if key.name() != "sentinel" => Some((
                key.name().to_string(),
                value.clone(),
                revision.parse().unwrap(),
            )),
            _ => None,
        })
        .collect();
    let expected: Vec<(String, Bytes, i64)> = writes
        .iter()
        .filter(|(_, _, r)| *r > cut)
        .cloned()
        .collect();
    assert_eq!(watched, expected);
    let before_cut = writes.iter().filter(|(_, _, r)| *r <= cut).count();
    eprintln!(
        "paging: {} writes, {before_cut} at or before the listing's cut (revision {cut})",
        writes.len()
    );

    let mut replica = Replica::default();
    events.iter().for_each(|e| replica.apply(e));
    assert_eq!(replica.entries, etcd_state(&client, "/calico").await);
}

#[tokio::test]
async fn live_changes_and_bad_values() {
    let etcd = Etcd::start("live").await;
    let client = etcd.client().await;
    let n1 = put_node(&client, "n1").await;
    // Skipped in the listing: not JSON, and larger than the limit.
    client.put(node_path("broken"), "{not json").await.unwrap();
    let big = format!(
        r#"{{"kind":"Node","metadata":{{"name":"big"}},"spec":{{"pad":"{}"}}}}"#,
        "x".repeat(600)
    );
    client.put(node_path("big"), big.clone()).await.unwrap();

    let mut cfg = etcd_source_config(&etcd);
    cfg.common.limits.max_bytes = 512;
    let mut source = watch(cfg);
    assert_eq!(
        until_in_sync(&mut source).await,
        listing_to_in_sync([node_upsert("n1", n1)])
    );

    // New key.
    let r = put_node(&client, "n2").await;
    assert_eq!(next(&mut source).await, node_upsert("n2", r));
    // Changed key.
    let changed = r#"{"kind":"Node","metadata":{"name":"n1","labels":{"a":"b"}}}"#;
    let r = client.put(node_path("n1"), changed).await.unwrap();
    assert_eq!(
        next(&mut source).await,
        upsert(rk("Node", "", "n1"), changed, r)
    );
    // Deleted key: the revision is the deletion's.
    let (r, deleted) = client.delete(node_path("n2")).await.unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(next(&mut source).await, delete(rk("Node", "", "n2"), r));

    // A value that is not JSON deletes its key (a fresh source would not list it either); the
    // next event is the next real change.
    let bad = client.put(node_path("n1"), "not json").await.unwrap();
    assert_eq!(next(&mut source).await, delete(rk("Node", "", "n1"), bad));
    let r = put_node(&client, "n3").await;
    assert_eq!(next(&mut source).await, node_upsert("n3", r));
    // Oversized values, for a new key and for an existing one, are deletes too (of a key the
    // consumer never had, the delete is nothing to it).
    let r = client.put(node_path("big2"), big.clone()).await.unwrap();
    assert_eq!(next(&mut source).await, delete(rk("Node", "", "big2"), r));
    let r = client.put(node_path("n3"), big.clone()).await.unwrap();
    assert_eq!(next(&mut source).await, delete(rk("Node", "", "n3"), r));
    let r = put_node(&client, "n4").await;
    assert_eq!(next(&mut source).await, node_upsert("n4", r));
    // A value exactly at the limit passes.
    let at_limit = {
        let head = r#"{"kind":"Node","metadata":{"name":"n5"},"spec":{"pad":""#;
        let tail = r#""}}"#;
        format!("{head}{}{tail}", "y".repeat(512 - head.len() - tail.len()))
    };
    assert_eq!(at_limit.len(), 512);
    let r = client.put(node_path("n5"), at_limit.clone()).await.unwrap();
    assert_eq!(
        next(&mut source).await,
        upsert(rk("Node", "", "n5"), at_limit, r)
    );

    // `metadata.resourceVersion` left in a value is dropped; everything else is kept.
    let with_rv = r#"{"kind":"Node","metadata":{"name":"n6","resourceVersion":"12345","labels":{"x":"y"}},"spec":{"resourceVersion":"kept"}}"#;
    let r = client.put(node_path("n6"), with_rv).await.unwrap();
    match next(&mut source).await {
        SourceEvent::Upsert {
            key,
            value,
            revision,
        } => {
            assert_eq!(key, rk("Node", "", "n6"));
            assert_eq!(revision.as_ref(), r.to_string());
            let value: serde_json::Value = serde_json::from_slice(&value).unwrap();
            assert_eq!(
                value,
                serde_json::json!({"kind":"Node","metadata":{"name":"n6","labels":{"x":"y"}},"spec":{"resourceVersion":"kept"}})
            );
        }
        other => panic!("expected the upsert of n6, got {other:?}"),
    }

    // Deleting a key whose value was skipped is still a delete (the consumer may hold an older
    // value of it), and deleting ignored keys is nothing.
    client
        .put("/calico/ipam/v2/handle/h1", r#"{"block":{}}"#)
        .await
        .unwrap();
    client.delete("/calico/ipam/v2/handle/h1").await.unwrap();
    let (r, _) = client.delete(node_path("n1")).await.unwrap();
    assert_eq!(next(&mut source).await, delete(rk("Node", "", "n1"), r));
}

#[tokio::test]
async fn kinds_filter_drops_other_kinds() {
    let etcd = Etcd::start("kinds").await;
    let client = etcd.client().await;
    let node = put_node(&client, "n1").await;
    client
        .put(path("IPPool", "", "p1"), object("IPPool", "p1"))
        .await
        .unwrap();
    client
        .put(
            path("WorkloadEndpoint", "ns", "w1"),
            object("WorkloadEndpoint", "w1"),
        )
        .await
        .unwrap();
    let block = client
        .put("/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26", "{}")
        .await
        .unwrap();

    let mut cfg = etcd_source_config(&etcd);
    cfg.common.kinds = Some(["Node".to_string(), "IPAMBlock".to_string()].into());
    let mut source = watch(cfg);
    assert_eq!(
        until_in_sync(&mut source).await,
        listing_to_in_sync([
            upsert(rk("IPAMBlock", "", "10-0-0-0-26"), "{}", block),
            node_upsert("n1", node)
        ])
    );
    // Changes and deletes of other kinds are dropped.
    client
        .put(path("IPPool", "", "p2"), object("IPPool", "p2"))
        .await
        .unwrap();
    client.delete(path("IPPool", "", "p1")).await.unwrap();
    client
        .delete(path("WorkloadEndpoint", "ns", "w1"))
        .await
        .unwrap();
    let r = put_node(&client, "n2").await;
    assert_eq!(next(&mut source).await, node_upsert("n2", r));
}

#[tokio::test]
async fn custom_prefix() {
    let etcd = Etcd::start("prefix").await;
    let client = etcd.client().await;
    let pool = client
        .put(
            "/other/resources/v3/projectcalico.org/ippools/p1",
            object("IPPool", "p1"),
        )
        .await
        .unwrap();
    let secret = client
        .put(
            "/other/resources/v3/k8s/secrets/ns/s1",
            r#"{"kind":"Secret","metadata":{"name":"s1","namespace":"ns"}}"#,
        )
        .await
        .unwrap();
    client
        .put(path("IPPool", "", "calico-pool"), object("IPPool", "x"))
        .await
        .unwrap();
    client
        .put(
            "/otherx/resources/v3/projectcalico.org/ippools/sibling",
            object("IPPool", "sibling"),
        )
        .await
        .unwrap();

    // With and without a trailing `/`. Expected listings by etcd key (`k8s` sorts before
    // `projectcalico.org`).
    let mut listing = BTreeMap::from([
        (
            "/other/resources/v3/k8s/secrets/ns/s1".to_string(),
            upsert(
                rk("Secret", "ns", "s1"),
                r#"{"kind":"Secret","metadata":{"name":"s1","namespace":"ns"}}"#,
                secret,
            ),
        ),
        (
            "/other/resources/v3/projectcalico.org/ippools/p1".to_string(),
            upsert(rk("IPPool", "", "p1"), object("IPPool", "p1"), pool),
        ),
    ]);
    for prefix in ["/other", "/other/"] {
        let mut cfg = etcd_source_config(&etcd);
        cfg.prefix = prefix.into();
        let mut source = watch(cfg);
        let expected = listing_to_in_sync(listing.values().cloned());
        assert_eq!(
            until_in_sync(&mut source).await,
            expected,
            "prefix {prefix}"
        );
        client
            .put(path("IPPool", "", "calico-pool-2"), object("IPPool", "y"))
            .await
            .unwrap();
        let name = format!("live{}", prefix.len());
        let key = format!("/other/resources/v3/projectcalico.org/ippools/{name}");
        let r = client
            .put(key.clone(), object("IPPool", &name))
            .await
            .unwrap();
        let event = upsert(rk("IPPool", "", &name), object("IPPool", &name), r);
        assert_eq!(next(&mut source).await, event, "prefix {prefix}");
        listing.insert(key, event);
    }
}

#[tokio::test]
async fn killed_etcd_is_reported_and_a_restart_relists() {
    let mut etcd = Etcd::start("restart").await;
    let client = etcd.client().await;
    let mut revisions = BTreeMap::new();
    for name in ["a", "b", "c"] {
        let r = put_node(&client, name).await;
        revisions.insert(name.to_string(), r);
    }
    // Two sources: one retrying fast (it tends to be back before the changes made after the
    // restart, so the watch carries them) and one retrying after 1.5–3 s (the relist tends to).
    let fast = watch(etcd_source_config(&etcd));
    let mut slow_config = etcd_source_config(&etcd);
    slow_config.common.backoff.min = Duration::from_secs(3);
    slow_config.common.backoff.max = Duration::from_secs(3);
    let slow = watch(slow_config);
    let mut sources = [("fast", fast), ("slow", slow)];
    for (_, source) in &mut sources {
        until_in_sync(source).await;
    }
    // InSync is announced before the watch is created; a watched change proves the watches run,
    // so the kill breaks established watches.
    let r = put_node(&client, "w").await;
    for (_, source) in &mut sources {
        assert_eq!(next(source).await, node_upsert("w", r));
    }
    revisions.insert("w".to_string(), r);

    etcd.kill();
    let killed = Instant::now();
    for (label, source) in &mut sources {
        let event = next(source).await;
        let noticed = killed.elapsed();
        match &event {
            SourceEvent::Status {
                status: SourceStatus::ConnectionFailed(reason),
                ..
            } => assert!(!reason.is_empty()),
            other => panic!("{label}: expected ConnectionFailed, got {other:?}"),
        }
        assert!(
            noticed < Duration::from_secs(10),
            "{label}: took {noticed:?} to notice"
        );
        eprintln!("restart: {label}: ConnectionFailed {noticed:?} after the kill: {event:?}");
    }

    // Back with the same data. Changes made right away arrive exactly once, whether the relist
    // or the watch carries them.
    let restarting = Instant::now();
    etcd.restart().await;
    let restarted = restarting.elapsed();
    let client = etcd.client().await;
    let d = put_node(&client, "d").await;
    let (b, _) = client.delete(node_path("b")).await.unwrap();
    let mut seen = Vec::new();
    for (label, source) in &mut sources {
        let events = until_in_sync(source).await;
        // While etcd was down or starting there were only failures (and, if a connect reached a
        // starting etcd, listing attempts).
        let start = events
            .iter()
            .position(|e| matches!(e, SourceEvent::ResyncStart { .. }))
            .expect("a relist");
        assert!(start >= 1);
        eprintln!(
            "restart: {label}: before the relist: {:?}",
            &events[..start]
        );
        assert_eq!(events[start - 1], status(SourceStatus::ResyncInProgress));
        for e in &events[..start - 1] {
            assert!(
                is_connection_failed(e) || *e == status(SourceStatus::ResyncInProgress),
                "{label}: unexpected while reconnecting: {e:?}"
            );
        }
        let relist = &events[start..];
        let d_listed = relist.iter().any(|e| upserts_name(e, "d"));
        let b_listed = relist.iter().any(|e| upserts_name(e, "b"));
        // One cut: `b` was deleted after `d` was written.
        assert!(b_listed || d_listed, "{label}: {relist:?}");
        let mut listing = revisions.clone();
        if !b_listed {
            listing.remove("b");
        }
        if d_listed {
            listing.insert("d".to_string(), d);
        }
        let mut expected = vec![resync_start()];
        for (name, r) in &listing {
            expected.push(node_upsert(name, *r));
        }
        expected.push(resync_done());
        expected.push(status(SourceStatus::InSync));
        assert_eq!(relist, expected.as_slice(), "{label}");
        seen.push((d_listed, b_listed));
    }

    // What the relists did not carry, the watches do, once; then the sentinel.
    let e = put_node(&client, "e").await;
    for ((label, source), (d_listed, b_listed)) in sources.iter_mut().zip(seen) {
        let tail = until(source, "the sentinel", |ev| upserts_name(ev, "e")).await;
        let mut expected = vec![];
        if !d_listed {
            expected.push(node_upsert("d", d));
        }
        if b_listed {
            expected.push(delete(rk("Node", "", "b"), b));
        }
        expected.push(node_upsert("e", e));
        assert_eq!(tail, expected, "{label}");
        eprintln!(
            "restart: {label}: etcd restarted in {restarted:?}; the changes made after it came by {}",
            match (d_listed, b_listed) {
                (true, false) => "the relist",
                (false, true) => "the watch",
                _ => "the relist (the write) and the watch (the delete)",
            }
        );
    }
}

#[tokio::test]
async fn compaction_of_a_lagging_watch_relists_and_converges() {
    const WRITES: usize = 6000;
    let etcd = Etcd::start("compaction").await;
    let client = etcd.client().await;
    let name = |i: usize| format!("gns-{i:05}");
    for i in 0..10 {
        client
            .put(
                path("GlobalNetworkSet", "", &name(i)),
                object("GlobalNetworkSet", &name(i)),
            )
            .await
            .unwrap();
    }
    let mut source = watch(etcd_source_config(&etcd));
    let mut replica = Replica::default();
    until_in_sync(&mut source)
        .await
        .iter()
        .for_each(|e| replica.apply(e));

    // Stop reading. ~6 MB of changes fill the driver's channel (1024 events), the HTTP/2 windows
    // and etcd's watch buffers, so etcd marks the watcher slow and stops sending to it; some keys
    // are deleted so the relist has deletions to find. Then history is compacted past it.
    let started = Instant::now();
    let pad = "p".repeat(1024);
    let revisions: Vec<i64> = futures::stream::iter(0..WRITES)
        .map(|i| {
            let client = client.clone();
            let value = format!(
                r#"{{"kind":"GlobalNetworkSet","metadata":{{"name":"{}"}},"spec":{{"i":{i},"pad":"{pad}"}}}}"#,
                name(i % 3000)
            );
            async move {
                client
                    .put(path("GlobalNetworkSet", "", &name(i % 3000)), value)
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    for i in (0..3000).step_by(7) {
        client
            .delete(path("GlobalNetworkSet", "", &name(i)))
            .await
            .unwrap();
    }
    let latest = put_node(&client, "last-before-compaction").await;
    assert!(revisions.iter().all(|r| *r < latest));
    client.compact(latest).await.unwrap();
    let wrote = started.elapsed();

    // A change after the compaction: a watch that was not cancelled would deliver it without a
    // relist.
    put_node(&client, "marker").await;

    // Resume: the events already buffered, then etcd's compaction notice makes the driver relist.
    let resumed = Instant::now();
    let mut before = 0usize;
    let events = until(&mut source, "a relist after compaction", |e| {
        matches!(e, SourceEvent::ResyncStart { .. }) || upserts_name(e, "marker")
    })
    .await;
    assert!(
        matches!(events.last(), Some(SourceEvent::ResyncStart { .. })),
        "the watch was not cancelled by the compaction: no relist before the next change"
    );
    for e in &events {
        // Compaction is no failure: the source stays InSync, with no status at all.
        assert!(
            !matches!(e, SourceEvent::Status { .. }),
            "unexpected status around the compaction: {e:?}"
        );
        if matches!(e, SourceEvent::Upsert { .. } | SourceEvent::Delete { .. }) {
            before += 1;
        }
        replica.apply(e);
    }
    let relist = until(&mut source, "the relist to finish", |e| {
        matches!(e, SourceEvent::ResyncDone { .. })
    })
    .await;
    for e in &relist {
        assert!(
            !matches!(e, SourceEvent::Status { .. }),
            "unexpected status in the relist: {e:?}"
        );
        replica.apply(e);
    }
    eprintln!(
        "compaction: wrote {WRITES} values in {wrote:?}; after resuming, {before} buffered \
         changes then a relist of {} events, in {:?}",
        relist.len(),
        resumed.elapsed()
    );
    assert!(before < WRITES);
    assert!(relist.iter().any(|e| upserts_name(e, "marker")));
    assert_eq!(replica.entries, etcd_state(&client, "/calico").await);

    // The driver watches again after the relist (it stays InSync throughout).
    let r = put_node(&client, "after").await;
    assert_eq!(next(&mut source).await, node_upsert("after", r));
}

#[tokio::test]
async fn client_transactions_prefix_deletes_and_compacted_revisions() {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    use pb::request_op::Request;

    let etcd = Etcd::start("client").await;
    let client = etcd.client().await;
    let cas = |expected: i64, value: &'static str| pb::TxnRequest {
        compare: vec![pb::Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Mod as i32,
            key: Bytes::from_static(b"/t/k"),
            target_union: Some(TargetUnion::ModRevision(expected)),
            ..Default::default()
        }],
        success: vec![pb::RequestOp {
            request: Some(Request::RequestPut(pb::PutRequest {
                key: Bytes::from_static(b"/t/k"),
                value: Bytes::from_static(value.as_bytes()),
                ..Default::default()
            })),
        }],
        failure: vec![pb::RequestOp {
            request: Some(Request::RequestRange(pb::RangeRequest {
                key: Bytes::from_static(b"/t/k"),
                ..Default::default()
            })),
        }],
    };
    let get = |client: EtcdClient| async move {
        let (kvs, _) = client.list_prefix(b"/t/", 0, 10).await.unwrap();
        kvs.into_iter()
            .map(|kv| (kv.key, kv.value, kv.mod_revision))
            .collect::<Vec<_>>()
    };

    let r1 = client.put("/t/k", "v1").await.unwrap();
    let swapped = client.txn(cas(r1, "v2")).await.unwrap();
    assert!(swapped.succeeded);
    let r2 = swapped.header.as_ref().unwrap().revision;
    assert!(r2 > r1);
    assert_eq!(
        get(client.clone()).await,
        vec![(Bytes::from("/t/k"), Bytes::from("v2"), r2)]
    );
    // A stale revision does not swap; the failure branch returns the current value.
    let stale = client.txn(cas(r1, "v3")).await.unwrap();
    assert!(!stale.succeeded);
    match stale.responses.as_slice() {
        [
            pb::ResponseOp {
                response: Some(pb::response_op::Response::ResponseRange(range)),
            },
        ] => {
            assert_eq!(range.kvs.len(), 1);
            assert_eq!(range.kvs[0].value, Bytes::from("v2"));
            assert_eq!(range.kvs[0].mod_revision, r2);
        }
        other => panic!("expected the failure branch's range, got {other:?}"),
    }
    assert_eq!(
        get(client.clone()).await,
        vec![(Bytes::from("/t/k"), Bytes::from("v2"), r2)]
    );

    // delete_prefix removes exactly the keys under the prefix (not `/t/kx`-style siblings of it).
    for key in ["/d/a", "/d/b/c", "/d/z", "/d0", "/dx/a", "/c"] {
        client.put(key, "x").await.unwrap();
    }
    let (revision, deleted) = client.delete_prefix(b"/d/").await.unwrap();
    assert_eq!(deleted, 3);
    let (left, at) = client.list_prefix(b"/", 0, 100).await.unwrap();
    assert_eq!(at, revision);
    let left: Vec<Bytes> = left.into_iter().map(|kv| kv.key).collect();
    assert_eq!(
        left,
        ["/c", "/d0", "/dx/a", "/t/k"].map(Bytes::from).to_vec()
    );
    assert_eq!(client.delete_prefix(b"/d/").await.unwrap().1, 0);

    // Compacted revisions: a listing at one, and a watch from one, both report compaction.
    let (old, _) = client.list_prefix(b"/t/", r1, 10).await.unwrap();
    assert_eq!(old[0].value, Bytes::from("v1"));
    client.compact(revision).await.unwrap();
    let err = client.list_prefix(b"/t/", r1, 10).await.unwrap_err();
    assert!(err.is_compacted(), "{err}");
    let err = match client.watch_prefix(b"/t/", r1).await {
        Err(e) => e,
        // etcd 3.4 confirms the watch, then cancels it with the compaction.
        Ok(mut watch) => within("the compaction notice", watch.next())
            .await
            .expect_err("a watch from a compacted revision"),
    };
    assert!(err.is_compacted(), "{err}");
    // From the compaction revision on, history is there.
    let mut watch = client.watch_prefix(b"/t/", revision).await.unwrap();
    let r3 = client.put("/t/k", "v4").await.unwrap();
    let response = within("the watched put", watch.next()).await.unwrap();
    let events: Vec<(Bytes, i64)> = response
        .events
        .iter()
        .filter_map(|e| e.kv.as_ref().map(|kv| (kv.value.clone(), kv.mod_revision)))
        .collect();
    assert_eq!(events, vec![(Bytes::from("v4"), r3)]);
}

#[tokio::test]
async fn user_and_password_authenticate_and_a_wrong_password_is_reported() {
    let etcd = Etcd::start("auth").await;
    let n1 = put_node(&etcd.client().await, "n1").await;
    etcdctl(&etcd, &["user", "add", "root:s3cret"]);
    etcdctl(&etcd, &["auth", "enable"]);

    // Auth is really on: without credentials the listing is refused.
    let mut anonymous = watch(etcd_source_config(&etcd));
    let events = until(&mut anonymous, "an anonymous failure", is_connection_failed).await;
    eprintln!("auth: anonymous: {events:?}");
    match events.as_slice() {
        [
            connecting,
            listing,
            SourceEvent::Status {
                status: SourceStatus::ConnectionFailed(reason),
                ..
            },
        ] => {
            assert_eq!(*connecting, status(SourceStatus::Connecting));
            assert_eq!(*listing, status(SourceStatus::ResyncInProgress));
            assert!(reason.contains("user name is empty"), "{reason}");
        }
        other => panic!("expected a refused listing, got {other:?}"),
    }
    drop(anonymous);

    let credentials = |password: &str| {
        let mut cfg = etcd_source_config(&etcd);
        cfg.etcd.username = Some("root".into());
        cfg.etcd.password = Some(password.into());
        cfg
    };
    let mut source = watch(credentials("s3cret"));
    assert_eq!(
        until_in_sync(&mut source).await,
        listing_to_in_sync([node_upsert("n1", n1)])
    );
    // The watch is authenticated too.
    let root = EtcdClient::connect(&credentials("s3cret").etcd)
        .await
        .unwrap();
    let r = put_node(&root, "n2").await;
    assert_eq!(next(&mut source).await, node_upsert("n2", r));

    let mut wrong = watch(credentials("wrong"));
    let events = until(&mut wrong, "a failure", is_connection_failed).await;
    assert_eq!(events[0], status(SourceStatus::Connecting));
    match &events[1..] {
        [
            SourceEvent::Status {
                status: SourceStatus::ConnectionFailed(reason),
                ..
            },
        ] => assert!(reason.contains("authentication"), "{reason}"),
        other => panic!("expected only ConnectionFailed, got {other:?}"),
    }
    eprintln!("auth: wrong password: {events:?}");
}
