#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
//! Calico's host block affinities on an etcd datastore (issue 23), through the real binary: the
//! v1 keys `/calico/ipam/v2/host/<node>/ipv<4|6>/block/<cidr>` that Calico's IPAM writes are
//! served to the `bgp` subscription as the `BlockAffinity` resource the Kubernetes datastore
//! gives, named as Calico names it there, and that resource converts back to exactly the v1 key
//! and value calico-typha sends. Live puts, invalid values and deletions follow; a malformed key
//! is not served.

mod support;

use std::net::SocketAddr;

use meshsync_agent::{Agent, AgentConfig, Mirror};
use meshsync_typha::v1::{Dialect, Resource, Syncer, convert};
use serde_json::{Value, json};
use support::binary::Serve;
use support::etcd::Etcd;
use support::log_text::text_field;
use support::within;

const V4: &str = "/calico/ipam/v2/host/node-1/ipv4/block/10.65.0.0-26";
const V6: &str = "/calico/ipam/v2/host/node-2/ipv6/block/fd00:65::-122";
/// Host bits set in the block: Calico never writes it, meshsync does not serve it.
const NOT_CANONICAL: &str = "/calico/ipam/v2/host/node-3/ipv4/block/10.65.0.5-26";
const LIVE: &str = "/calico/ipam/v2/host/node-4/ipv4/block/10.65.1.0-26";

fn confirmed() -> String {
    json!({"state": "confirmed", "deleted": false}).to_string()
}

/// The cached BlockAffinity `name`, if the mirror holds it.
fn affinity(mirror: &Mirror, name: &str) -> Option<Value> {
    mirror
        .resources()
        .iter()
        .find(|(k, _)| k.kind == "BlockAffinity" && k.namespace.is_empty() && k.name == name)
        .map(|(_, e)| serde_json::from_slice(&e.value).expect("JSON"))
}

fn affinity_names(mirror: &Mirror) -> Vec<String> {
    mirror
        .resources()
        .keys()
        .filter(|k| k.kind == "BlockAffinity")
        .map(|k| k.name.clone())
        .collect()
}

/// Pulls agent events until the mirror is in sync and `done` holds.
async fn until(agent: &mut Agent, what: &str, done: impl Fn(&Mirror) -> bool) {
    within(what, async {
        while !(agent.mirror().in_sync() && done(agent.mirror())) {
            agent.next().await.expect("agent failed");
        }
    })
    .await
}

/// What Typha's `bgp` syncer sends for the cached `value` of BlockAffinity `name`.
fn v1_of(name: &str, value: &Value) -> (String, Value) {
    let bytes = serde_json::to_vec(value).unwrap();
    let resource = Resource {
        kind: "BlockAffinity",
        namespace: "",
        name,
        value: &bytes,
        revision: "1",
    };
    let converted = convert(Syncer::Bgp, Dialect::V331, &resource, false);
    assert!(converted.error.is_none(), "{:?}", converted.error);
    let [update] = converted.updates.as_slice() else {
        panic!("one update expected: {:?}", converted.updates);
    };
    let v1 = serde_json::from_slice(update.value.as_ref().expect("a value")).unwrap();
    (update.key.clone(), v1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_block_affinities_are_served_as_the_kdd_resource_and_follow_deletes() {
    let etcd = Etcd::start("block-affinity").await;
    let client = etcd.client().await;
    client.put(V4, confirmed()).await.unwrap();
    client
        .put(V6, json!({"state": "pending", "deleted": true}).to_string())
        .await
        .unwrap();
    client.put(NOT_CANONICAL, confirmed()).await.unwrap();

    let mut serve = Serve::on_loopback(&format!("etcd://{}", etcd.host_port()), &[]);
    let serving = serve.wait_serving();
    let grpc: SocketAddr = text_field(&serving, "grpc")
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| panic!("no grpc= in {serving:?}"));
    let mut config = AgentConfig::new(format!("http://{grpc}"));
    config.subscription = "bgp".into();
    let mut agent = Agent::new(config).unwrap();

    until(&mut agent, "both affinities", |m| {
        affinity_names(m).len() >= 2
    })
    .await;
    assert_eq!(
        affinity_names(agent.mirror()),
        ["node-1-10-65-0-0-26", "node-2-fd00-65---122"],
        "the malformed key is not served"
    );
    let v4 = affinity(agent.mirror(), "node-1-10-65-0-0-26").unwrap();
    assert_eq!(
        v4,
        json!({"apiVersion": "projectcalico.org/v3", "kind": "BlockAffinity",
            "metadata": {"name": "node-1-10-65-0-0-26"},
            "spec": {"state": "confirmed", "node": "node-1", "cidr": "10.65.0.0/26",
                "type": "host", "deleted": "false"}})
    );
    assert_eq!(
        v1_of("node-1-10-65-0-0-26", &v4),
        (
            V4.to_string(),
            json!({"state": "confirmed", "deleted": false})
        )
    );
    let v6 = affinity(agent.mirror(), "node-2-fd00-65---122").unwrap();
    assert_eq!(
        v6["spec"],
        json!({"state": "pending", "node": "node-2", "cidr": "fd00:65::/122", "type": "host",
            "deleted": "true"})
    );
    assert_eq!(
        v1_of("node-2-fd00-65---122", &v6),
        (V6.to_string(), json!({"state": "pending", "deleted": true}))
    );

    // Live: a new affinity arrives through the watch.
    client.put(LIVE, confirmed()).await.unwrap();
    until(&mut agent, "the live affinity", |m| {
        affinity(m, "node-4-10-65-1-0-26").is_some()
    })
    .await;

    // The etcd delete of the key deletes the cached object (and only it).
    client.delete(V4).await.unwrap();
    until(&mut agent, "the deleted affinity gone", |m| {
        affinity(m, "node-1-10-65-0-0-26").is_none()
    })
    .await;
    assert_eq!(
        affinity_names(agent.mirror()),
        ["node-2-fd00-65---122", "node-4-10-65-1-0-26"]
    );

    // A value Calico could not decode is not served: its previous version goes.
    client
        .put(V6, json!({"state": 7}).to_string())
        .await
        .unwrap();
    until(&mut agent, "the invalid affinity gone", |m| {
        affinity(m, "node-2-fd00-65---122").is_none()
    })
    .await;
    assert_eq!(affinity_names(agent.mirror()), ["node-4-10-65-1-0-26"]);
}
