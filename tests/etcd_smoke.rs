//! Smoke test of the etcd test support and the etcd datastore driver against a real etcd.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use futures::StreamExt;
use meshsync_datastore::etcd::{EtcdSourceConfig, watch};
use meshsync_datastore::{SourceEvent, SourceStatus};
use meshsync_etcd::EtcdConfig;
use support::etcd::Etcd;
use support::within;

#[tokio::test]
async fn lists_then_watches_a_real_etcd() {
    let etcd = Etcd::start("smoke").await;
    let client = etcd.client().await;
    client
        .put(
            "/calico/resources/v3/projectcalico.org/nodes/n1",
            r#"{"kind":"Node","metadata":{"name":"n1"}}"#,
        )
        .await
        .unwrap();
    let mut source = watch(EtcdSourceConfig::new(
        EtcdConfig::new(vec![etcd.url()]),
        "".into(),
    ));
    let mut seen = Vec::new();
    within("in sync", async {
        while let Some(e) = source.next().await {
            let done = matches!(
                &e,
                SourceEvent::Status {
                    status: SourceStatus::InSync,
                    ..
                }
            );
            seen.push(e);
            if done {
                break;
            }
        }
    })
    .await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, SourceEvent::Upsert { key, .. } if key.name() == "n1"))
    );
    client
        .put(
            "/calico/resources/v3/projectcalico.org/workloadendpoints/ns/w1",
            r#"{"kind":"WorkloadEndpoint","metadata":{"name":"w1","namespace":"ns"}}"#,
        )
        .await
        .unwrap();
    let next = within("watch event", source.next()).await.unwrap();
    match next {
        SourceEvent::Upsert { key, revision, .. } => {
            assert_eq!(
                (key.kind(), key.namespace(), key.name()),
                ("WorkloadEndpoint", "ns", "w1")
            );
            assert!(revision.parse::<i64>().unwrap() > 1);
        }
        other => panic!("unexpected {other:?}"),
    }
}
