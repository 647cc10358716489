//! Regression tests for the hostile tester's defects report (issue 8) that concern the cache, the
//! mesh and the federation controller: each reproduced the defect before its fix.

mod support;

use std::time::Duration;

use bytes::Bytes;
use meshsync_datastore::{ResourceKey, SourceEvent, SourceStatus};
use meshsync_proto::{self as pb, sync_client::SyncClient};
use support::{TestServer, http_get, within};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

fn wep(name: &str) -> SourceEvent {
    SourceEvent::Upsert {
        key: ResourceKey::new("", "WorkloadEndpoint", "default", name),
        value: Bytes::from(format!(
            "{{\"kind\":\"WorkloadEndpoint\",\"metadata\":{{\"name\":\"{name}\"}}}}"
        )),
        revision: "1".into(),
    }
}

fn local(status: SourceStatus) -> SourceEvent {
    SourceEvent::Status {
        cluster: "".into(),
        status,
    }
}

/// The first status a fresh `all` subscriber receives.
async fn first_status(server: &TestServer) -> pb::Status {
    within("a new subscriber's first status", async {
        let mut client = SyncClient::connect(server.url()).await.unwrap();
        let mut stream = client
            .subscribe(pb::SubscribeRequest {
                node_name: "late".into(),
                subscription: "all".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        loop {
            let event = stream.message().await.unwrap().expect("stream ended");
            if let Some(pb::sync_event::Event::Status(s)) = event.event {
                return s;
            }
        }
    })
    .await
}

/// Item 4: a status-only change does not move the seq, so the shared snapshot of that seq was
/// reused with its stale status and a new agent was told "in sync" while `/readiness` said 503.
#[tokio::test]
async fn a_new_agent_gets_the_status_as_of_now_not_the_shared_snapshots() {
    let (tx, rx) = mpsc::channel(64);
    let server = TestServer::start(ReceiverStream::new(rx)).await;
    for e in [
        local(SourceStatus::ResyncInProgress),
        SourceEvent::ResyncStart { cluster: "".into() },
        wep("a"),
        SourceEvent::ResyncDone { cluster: "".into() },
        local(SourceStatus::InSync),
    ] {
        tx.send(e).await.unwrap();
    }
    let first = first_status(&server).await;
    assert_eq!(first.overall(), pb::SyncState::InSync, "{first:?}");

    // The datastore goes away: only the status changes.
    tx.send(local(SourceStatus::ConnectionFailed("gone".into())))
        .await
        .unwrap();
    within("readiness 503", async {
        while http_get(server.health, "/readiness").await.0 != 503 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let second = first_status(&server).await;
    assert_ne!(
        second.overall(),
        pb::SyncState::InSync,
        "a new agent must not be told in sync while the server is not: {second:?}"
    );
    assert_eq!(second.seq, first.seq, "no data changed");
    server.stop().await;
}
