//! Model-based test of the whole fan-out path: random upsert/delete/relist sequences go into the
//! cache through a source stream; agents join before, during and after the stream over real gRPC;
//! every agent must end with a mirror equal to the model of the datastore contents.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::collections::BTreeMap;

use bytes::Bytes;
use meshsync_cache::CacheConfig;
use meshsync_datastore::{ResourceKey, SourceEvent, SourceStatus};
use meshsync_server::ServerConfig;
use proptest::prelude::*;
use support::{TestServer, within};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

const CLUSTERS: [&str; 2] = ["", "cluster-b"];
const KINDS: [(&str, bool); 3] = [
    ("WorkloadEndpoint", true),
    ("Node", false),
    ("Profile", false),
];

#[derive(Clone, Debug)]
enum Op {
    Upsert {
        key: u8,
        value: u8,
    },
    Delete {
        key: u8,
    },
    /// A source relists `cluster`: exactly these entries exist afterwards.
    Relist {
        cluster: u8,
        entries: Vec<(u8, u8)>,
    },
    /// An agent connects now.
    Join,
    /// Let the writer and the streams catch up before going on.
    Pause,
}

type ModelKey = (String, String, String, String);

fn key_of(index: u8) -> ResourceKey {
    let cluster = CLUSTERS[(index as usize) % 2];
    let (kind, namespaced) = KINDS[(index as usize / 2) % 3];
    let namespace = if namespaced { "ns1" } else { "" };
    ResourceKey::new(cluster, kind, namespace, &format!("obj-{}", index / 6))
}

fn model_key(k: &ResourceKey) -> ModelKey {
    (
        k.cluster().into(),
        k.kind().into(),
        k.namespace().into(),
        k.name().into(),
    )
}

fn value_of(v: u8) -> Bytes {
    Bytes::from(format!("{{\"spec\":{{\"v\":{v}}}}}"))
}

/// Records an upsert of `key` to `value_of(value)` in the model and sends it to the cache.
async fn upsert(
    tx: &mpsc::Sender<SourceEvent>,
    model: &mut BTreeMap<ModelKey, Bytes>,
    key: ResourceKey,
    value: u8,
) {
    model.insert(model_key(&key), value_of(value));
    tx.send(SourceEvent::Upsert {
        key,
        value: value_of(value),
        revision: "r".into(),
    })
    .await
    .unwrap();
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..24, 0u8..4).prop_map(|(key, value)| Op::Upsert { key, value }),
        4 => (0u8..24).prop_map(|key| Op::Delete { key }),
        1 => (0u8..2, prop::collection::vec((0u8..24, 0u8..4), 0..10))
            .prop_map(|(cluster, entries)| Op::Relist { cluster, entries }),
        2 => Just(Op::Join),
        1 => Just(Op::Pause),
    ]
}

/// Runs one case; returns an error message instead of panicking inside proptest.
async fn run_case(ops: Vec<Op>, early_agents: usize, max_batch: usize, lag_limit: u64) {
    let (tx, rx) = mpsc::channel::<SourceEvent>(64);
    let server = TestServer::start_with(
        ReceiverStream::new(rx),
        CacheConfig {
            max_batch,
            ..CacheConfig::default()
        },
        ServerConfig {
            lag_limit,
            ..ServerConfig::default()
        },
    )
    .await;
    for cluster in CLUSTERS {
        tx.send(SourceEvent::Status {
            cluster: cluster.into(),
            status: SourceStatus::InSync,
        })
        .await
        .unwrap();
    }

    let (target_tx, target_rx) = watch::channel::<Option<u64>>(None);
    let mut agents = Vec::new();
    let spawn_agent = |n: usize| {
        let mut agent = server.agent("all");
        let mut target = target_rx.clone();
        tokio::spawn(async move {
            loop {
                if let Some(t) = *target.borrow_and_update()
                    && agent.mirror().in_sync()
                    && agent.mirror().seq() >= t
                {
                    return agent;
                }
                tokio::select! {
                    event = agent.next() => { event.unwrap_or_else(|e| panic!("agent {n}: {e}")); }
                    _ = target.changed() => {}
                }
            }
        })
    };
    for n in 0..early_agents {
        agents.push(spawn_agent(n));
    }

    let mut model: BTreeMap<ModelKey, Bytes> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Upsert { key, value } => upsert(&tx, &mut model, key_of(key), value).await,
            Op::Delete { key } => {
                let key = key_of(key);
                model.remove(&model_key(&key));
                tx.send(SourceEvent::Delete {
                    key,
                    revision: "r".into(),
                })
                .await
                .unwrap();
            }
            Op::Relist { cluster, entries } => {
                let cluster = CLUSTERS[cluster as usize];
                model.retain(|k, _| k.0 != cluster);
                tx.send(SourceEvent::ResyncStart {
                    cluster: cluster.into(),
                })
                .await
                .unwrap();
                for (key, value) in entries {
                    let key = key_of(key);
                    if key.cluster() != cluster {
                        continue;
                    }
                    upsert(&tx, &mut model, key, value).await;
                }
                tx.send(SourceEvent::ResyncDone {
                    cluster: cluster.into(),
                })
                .await
                .unwrap();
            }
            Op::Join => agents.push(spawn_agent(agents.len())),
            Op::Pause => tokio::task::yield_now().await,
        }
    }
    // A sentinel marks the end: once the cache holds it, every op before it is applied.
    let sentinel = ResourceKey::new("", "Sentinel", "", "end");
    upsert(&tx, &mut model, sentinel.clone(), 0).await;
    within("cache to apply every op", async {
        let mut follower = server.cache.follower();
        let mut crumb = server.cache.head();
        while !crumb.snapshot.contains_key(&sentinel) {
            crumb = follower.next(&crumb).await.expect("cache stopped");
        }
    })
    .await;
    // Late joiners, after the stream.
    agents.push(spawn_agent(agents.len()));
    let head = server.cache.head();
    target_tx.send_replace(Some(head.seq));

    let cache_view: BTreeMap<ModelKey, Bytes> = head
        .snapshot
        .iter()
        .map(|(k, e)| (model_key(k), e.value.clone()))
        .collect();
    assert_eq!(cache_view, model, "cache differs from the model");

    for (n, agent) in agents.into_iter().enumerate() {
        let agent = within("agent to converge", agent).await.unwrap();
        let mirror: BTreeMap<ModelKey, Bytes> = agent
            .mirror()
            .resources()
            .iter()
            .map(|(k, e)| {
                (
                    (
                        k.cluster.clone(),
                        k.kind.clone(),
                        k.namespace.clone(),
                        k.name.clone(),
                    ),
                    e.value.clone(),
                )
            })
            .collect();
        assert_eq!(mirror, model, "agent {n} differs from the model");
    }
    server.stop().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn agents_converge_to_the_datastore(
        ops in prop::collection::vec(op_strategy(), 0..120),
        early_agents in 0usize..3,
        max_batch in prop_oneof![Just(1usize), Just(7), Just(1000)],
        lag_limit in prop_oneof![Just(2u64), Just(100_000)],
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run_case(ops, early_agents, max_batch, lag_limit));
    }
}
