#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;

// One validation for every driver (defects 7, 8 and 11c): what reaches agents is UTF-8, a JSON
// object within the depth and size limits, whose kind, name and namespace agree with its key.
// An invalid value deletes its key (watch path) and is absent from listings (list path), so a
// running source and a freshly started one agree. Malformed etcd keys are logged once and
// counted. Real etcd processes and real files; every wait is on a condition with a timeout.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use meshsync_datastore::etcd::watch;
use meshsync_datastore::file::{self, FileSourceConfig};
use meshsync_datastore::layout::key_path;
use meshsync_datastore::{ResourceKey, SourceCounters, SourceEvent};
use support::etcd::Etcd;
use support::logs;
use support::source::{Replica, etcd_source_config, is_in_sync, next, until, upserts_name};

fn rk(kind: &str, namespace: &str, name: &str) -> ResourceKey {
    ResourceKey::new("", kind, namespace, name)
}

fn node_path(name: &str) -> String {
    key_path("/calico", "Node", "", name).expect("layout")
}

fn node(name: &str) -> String {
    format!(
        r#"{{"kind":"Node","apiVersion":"projectcalico.org/v3","metadata":{{"name":"{name}"}},"spec":{{}}}}"#
    )
}

/// A Node whose value nests `depth` levels (the object itself is level 1).
fn deep_node(name: &str, depth: usize) -> String {
    assert!(depth >= 3);
    let k = depth - 2;
    format!(
        r#"{{"kind":"Node","metadata":{{"name":"{name}"}},"spec":{{"x":{}0{}}}}}"#,
        "[".repeat(k),
        "]".repeat(k)
    )
}

/// The unusable values of defect 7 (and friends), each as a Node called `name`: (label, bytes).
fn unusable(name: &str) -> Vec<(&'static str, Vec<u8>)> {
    let mut with_rv = deep_node(name, 100_000);
    with_rv = with_rv.replacen(
        r#""metadata":{"#,
        r#""metadata":{"resourceVersion":"1","#,
        1,
    );
    let mut not_utf8 =
        format!(r#"{{"kind":"Node","metadata":{{"name":"{name}"}},"spec":{{"x":""#).into_bytes();
    not_utf8.extend_from_slice(b"\xFF\xFE");
    not_utf8.extend_from_slice(br#""}}"#);
    vec![
        ("100,000 deep", deep_node(name, 100_000).into_bytes()),
        ("100,000 deep with resourceVersion", with_rv.into_bytes()),
        ("65 deep", deep_node(name, 65).into_bytes()),
        ("bytes FF FE", not_utf8),
        ("an array", b"[1,2,3]".to_vec()),
        ("null", b"null".to_vec()),
        ("a string", br#""Node""#.to_vec()),
        ("garbage", b"garbage{".to_vec()),
        ("empty", Vec::new()),
        (
            "a lone surrogate",
            format!(r#"{{"kind":"Node","metadata":{{"name":"{name}","x":"\ud800"}}}}"#)
                .into_bytes(),
        ),
        (
            "another kind",
            format!(r#"{{"kind":"IPPool","metadata":{{"name":"{name}"}}}}"#).into_bytes(),
        ),
        (
            "another name",
            r#"{"kind":"Node","metadata":{"name":"someone-else"}}"#
                .as_bytes()
                .to_vec(),
        ),
        ("no metadata", br#"{"kind":"Node","spec":{}}"#.to_vec()),
        (
            "a namespace on a global kind",
            format!(r#"{{"kind":"Node","metadata":{{"name":"{name}","namespace":"ns"}}}}"#)
                .into_bytes(),
        ),
        (
            "a duplicate kind",
            format!(r#"{{"kind":"Node","kind":"IPPool","metadata":{{"name":"{name}"}}}}"#)
                .into_bytes(),
        ),
        ("trailing garbage", format!("{} x", node(name)).into_bytes()),
    ]
}

/// What an agent's serde_json does with every value: it must parse, as an object.
fn assert_consumable(events: &[SourceEvent]) {
    for event in events {
        if let SourceEvent::Upsert { key, value, .. } = event {
            let parsed: serde_json::Value = serde_json::from_slice(value)
                .unwrap_or_else(|e| panic!("{key}: a consumer cannot parse the value: {e}"));
            assert!(parsed.is_object(), "{key}: not an object");
            assert_eq!(parsed["kind"], key.kind(), "{key}");
            assert_eq!(parsed["metadata"]["name"], key.name(), "{key}");
        }
    }
}

#[tokio::test]
async fn etcd_listing_leaves_out_unusable_values_and_counts_them() {
    logs::install();
    let etcd = Etcd::start("validation-list").await;
    let client = etcd.client().await;
    let mut names = Vec::new();
    for (i, (_, value)) in unusable("x").into_iter().enumerate() {
        let name = format!("vl-bad-{i:02}");
        // Each value is about that very key (except the ones that are wrong on purpose).
        let value = String::from_utf8_lossy(&value)
            .replace(r#""name":"x""#, &format!(r#""name":"{name}""#));
        let bytes = if i == 3 {
            // Keep the FF FE bytes.
            unusable(&name)[3].1.clone()
        } else {
            value.into_bytes()
        };
        client.put(node_path(&name), bytes).await.unwrap();
        names.push(name);
    }
    // Valid: plain, at the depth limit, a namespaced kind with and without metadata.namespace,
    // a Kubernetes object, a raw Calico IPAM block (no kind or metadata: AllocationBlock JSON).
    client.put(node_path("vl-ok"), node("vl-ok")).await.unwrap();
    client
        .put(node_path("vl-depth-64"), deep_node("vl-depth-64", 64))
        .await
        .unwrap();
    let wep = |ns: Option<&str>, name: &str| match ns {
        Some(ns) => format!(
            r#"{{"kind":"WorkloadEndpoint","metadata":{{"name":"{name}","namespace":"{ns}"}}}}"#
        ),
        None => format!(r#"{{"kind":"WorkloadEndpoint","metadata":{{"name":"{name}"}}}}"#),
    };
    let wep_path =
        |ns: &str, name: &str| key_path("/calico", "WorkloadEndpoint", ns, name).unwrap();
    client
        .put(wep_path("ns1", "vl-wep-1"), wep(Some("ns1"), "vl-wep-1"))
        .await
        .unwrap();
    client
        .put(wep_path("ns1", "vl-wep-2"), wep(None, "vl-wep-2"))
        .await
        .unwrap();
    // Invalid: the namespace disagrees with the key.
    client
        .put(wep_path("ns1", "vl-wep-3"), wep(Some("ns2"), "vl-wep-3"))
        .await
        .unwrap();
    client
        .put(
            key_path("/calico", "Secret", "kube-system", "vl-secret").unwrap(),
            r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"vl-secret","namespace":"kube-system"},"data":{}}"#,
        )
        .await
        .unwrap();
    client
        .put(
            "/calico/ipam/v2/assignment/ipv4/block/10.65.0.0-26",
            r#"{"cidr":"10.65.0.0/26","affinity":"host:n1","allocations":[0,null],"unallocated":[1]}"#,
        )
        .await
        .unwrap();

    let mut cfg = etcd_source_config(&etcd);
    let counters = cfg.common.counters.clone();
    cfg.common.limits.max_bytes = 1 << 20;
    let mut source = watch(cfg);
    let events = until(&mut source, "in sync", is_in_sync).await;
    assert_consumable(
        &events
            .iter()
            .filter(|e| !matches!(e, SourceEvent::Upsert { key, .. } if key.kind() == "IPAMBlock"))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let listed: BTreeSet<ResourceKey> = events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Upsert { key, .. } => Some(key.clone()),
            _ => None,
        })
        .collect();
    let expected: BTreeSet<ResourceKey> = [
        rk("IPAMBlock", "", "10-65-0-0-26"),
        rk("Node", "", "vl-depth-64"),
        rk("Node", "", "vl-ok"),
        rk("Secret", "kube-system", "vl-secret"),
        rk("WorkloadEndpoint", "ns1", "vl-wep-1"),
        rk("WorkloadEndpoint", "ns1", "vl-wep-2"),
    ]
    .into();
    assert_eq!(listed, expected);
    let invalid = names.len() as u64 + 1;
    assert_eq!(counters.invalid_values(), invalid);
    // One warning per invalid key, with the key and a reason, never the value's bytes.
    for name in names.iter().chain(std::iter::once(&"vl-wep-3".to_string())) {
        let lines = logs::lines_with(&["invalid", name.as_str()]);
        assert_eq!(lines.len(), 1, "{name}: {lines:?}");
        assert!(lines[0].contains("WARN"), "{}", lines[0]);
        assert!(lines[0].contains("reason"), "{}", lines[0]);
        assert!(!lines[0].contains("IPPool"), "{}", lines[0]);
        assert!(!lines[0].contains("[[["), "{}", lines[0]);
    }
}

#[tokio::test]
async fn a_corrupted_value_deletes_the_key_and_running_and_fresh_sources_agree() {
    logs::install();
    let etcd = Etcd::start("validation-watch").await;
    let client = etcd.client().await;
    let labels = unusable("x").len();
    let names: Vec<String> = (0..labels).map(|i| format!("vw-{i:02}")).collect();
    for name in names.iter().chain(["vw-keep".to_string()].iter()) {
        client.put(node_path(name), node(name)).await.unwrap();
    }
    let cfg = etcd_source_config(&etcd);
    let counters: Arc<SourceCounters> = cfg.common.counters.clone();
    let mut running = watch(cfg);
    let mut replica = Replica::default();
    until(&mut running, "in sync", is_in_sync)
        .await
        .iter()
        .for_each(|e| replica.apply(e));
    assert_eq!(replica.entries.len(), labels + 1);

    // The tester's case first: `garbage{` over a valid value. The running source deletes it.
    let (label, garbage) = unusable(&names[7]).swap_remove(7);
    assert_eq!(label, "garbage");
    let r = client.put(node_path(&names[7]), garbage).await.unwrap();
    let event = next(&mut running).await;
    assert_eq!(
        event,
        SourceEvent::Delete {
            key: rk("Node", "", &names[7]),
            revision: r.to_string().into(),
        }
    );
    replica.apply(&event);
    let line = logs::wait_for_line(&["invalid", &names[7]], Duration::from_secs(5)).await;
    assert!(!line[0].contains("garbage{"), "{line:?}");

    // Every other unusable value over a valid one: a Delete each, in order.
    for (i, (label, value)) in unusable(&names[0]).into_iter().enumerate() {
        if i == 7 {
            continue;
        }
        let value = if label == "another name" {
            value
        } else {
            // Aim each at its own key.
            let text = String::from_utf8_lossy(&value).into_owned();
            if i == 3 {
                unusable(&names[i]).swap_remove(3).1
            } else {
                text.replace(
                    &format!(r#""name":"{}""#, names[0]),
                    &format!(r#""name":"{}""#, names[i]),
                )
                .into_bytes()
            }
        };
        let r = client.put(node_path(&names[i]), value).await.unwrap();
        let event = next(&mut running).await;
        assert_eq!(
            event,
            SourceEvent::Delete {
                key: rk("Node", "", &names[i]),
                revision: r.to_string().into(),
            },
            "{label}"
        );
        replica.apply(&event);
    }
    let sentinel = client
        .put(node_path("vw-sentinel"), node("vw-sentinel"))
        .await
        .unwrap();
    let tail = until(&mut running, "the sentinel", |e| {
        upserts_name(e, "vw-sentinel")
    })
    .await;
    assert_eq!(tail.len(), 1, "{tail:?}");
    assert_eq!(
        tail[0].clone(),
        SourceEvent::Upsert {
            key: rk("Node", "", "vw-sentinel"),
            value: node("vw-sentinel").into(),
            revision: sentinel.to_string().into(),
        }
    );
    replica.apply(&tail[0]);
    assert_eq!(counters.invalid_values(), labels as u64);

    // A freshly started source holds exactly what the running one does.
    let mut fresh = watch(etcd_source_config(&etcd));
    let mut fresh_replica = Replica::default();
    until(&mut fresh, "fresh in sync", is_in_sync)
        .await
        .iter()
        .for_each(|e| fresh_replica.apply(e));
    assert_eq!(replica.keys(), fresh_replica.keys());
    assert_eq!(replica.entries, fresh_replica.entries);
    assert_eq!(
        replica.keys(),
        [rk("Node", "", "vw-keep"), rk("Node", "", "vw-sentinel")].into()
    );

    // Repairing a value brings the key back, in both.
    let r = client
        .put(node_path(&names[7]), node(&names[7]))
        .await
        .unwrap();
    for source in [&mut running, &mut fresh] {
        assert_eq!(
            next(source).await,
            SourceEvent::Upsert {
                key: rk("Node", "", &names[7]),
                value: node(&names[7]).into(),
                revision: r.to_string().into(),
            }
        );
    }
}

#[tokio::test]
async fn malformed_etcd_keys_are_logged_once_each_and_counted() {
    logs::install();
    let etcd = Etcd::start("malformed-keys").await;
    let client = etcd.client().await;
    let malformed = [
        "/calico/resources/v3/projectcalico.org/ippools/mk-pool/extra",
        "/calico/resources/v3/projectcalico.org/workloadendpoints/mk-no-namespace",
        "/calico/resources/v3/projectcalico.org/workloadendpoints/mk-ns/mk-wep/extra",
        "/calico/resources/v3/projectcalico.org/nodes/",
        "/calico/resources/v3/projectcalico.org/networkpolicies//mk-empty-ns",
        "/calico/resources/v3/k8s/secrets/mk-ns/",
        "/calico/resources/v3/k8s/services/mk-ns/mk-svc/extra",
        "/calico/ipam/v2/assignment/ipv4/block/",
        "/calico/ipam/v2/assignment/ipv4/block/10.66.0.0/26",
    ];
    for key in malformed {
        client
            .put(key, r#"{"kind":"Node","metadata":{"name":"x"}}"#)
            .await
            .unwrap();
    }
    // Not served, and not malformed: other layouts Calico keeps in etcd. No log line, no count.
    let ignored = [
        "/calico/ipam/v2/handle/k8s-pod-network.mk",
        "/calico/resources/v3/projectcalico.org/mk-gadgets/x",
        "/calico/v1/host/mk-node/config/LogSeverityScreen",
    ];
    for key in ignored {
        client.put(key, "{}").await.unwrap();
    }
    client.put(node_path("mk-ok"), node("mk-ok")).await.unwrap();

    let cfg = etcd_source_config(&etcd);
    let counters = cfg.common.counters.clone();
    let mut source = watch(cfg);
    let events = until(&mut source, "in sync", is_in_sync).await;
    let upserts: Vec<&SourceEvent> = events
        .iter()
        .filter(|e| matches!(e, SourceEvent::Upsert { .. }))
        .collect();
    assert_eq!(upserts.len(), 1, "{events:?}");
    assert_eq!(counters.malformed_keys(), malformed.len() as u64);
    for key in malformed {
        let lines = logs::lines_with(&["malformed", &format!("key={key} ")]);
        assert_eq!(lines.len(), 1, "{key}: {lines:?}\n{}", logs::captured());
        assert!(lines[0].contains("WARN"), "{}", lines[0]);
    }
    for key in ignored {
        assert!(logs::lines_with(&[key]).is_empty(), "{key} was logged");
    }

    // Written again and again (a flood of watch events): counted each time, logged once.
    for i in 0..5 {
        client
            .put(malformed[0], format!(r#"{{"i":{i}}}"#))
            .await
            .unwrap();
    }
    client.delete(malformed[1]).await.unwrap();
    client
        .put(node_path("mk-sentinel"), node("mk-sentinel"))
        .await
        .unwrap();
    let tail = until(&mut source, "the sentinel", |e| {
        upserts_name(e, "mk-sentinel")
    })
    .await;
    assert_eq!(tail.len(), 1, "{tail:?}");
    assert_eq!(counters.malformed_keys(), malformed.len() as u64 + 5);
    let lines = logs::lines_with(&["malformed", &format!("key={} ", malformed[0])]);
    assert_eq!(lines.len(), 1, "{lines:?}");
}

#[tokio::test]
async fn file_objects_deeper_than_the_limit_are_skipped_alone() {
    logs::install();
    let dir = tempfile::tempdir().unwrap();
    let shallow = deep_node("fd-depth-64", 64);
    let too_deep = deep_node("fd-depth-65", 65);
    let past_serde = deep_node("fd-depth-120", 120);
    std::fs::write(
        dir.path().join("nodes.json"),
        format!("{}\n{shallow}\n{too_deep}\n{past_serde}\n", node("fd-ok")),
    )
    .unwrap();
    let config = FileSourceConfig::new(dir.path(), "".into());
    let counters = config.common.counters.clone();
    let mut source = file::watch(config).unwrap();
    let events = until(&mut source, "in sync", is_in_sync).await;
    assert_consumable(&events);
    let listed: BTreeSet<String> = events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Upsert { key, .. } => Some(key.name().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(listed, ["fd-depth-64", "fd-ok"].map(String::from).into());
    assert_eq!(counters.invalid_values(), 2);
    logs::wait_for_line(&["fd-depth-65", "deeper"], Duration::from_secs(5)).await;
}
