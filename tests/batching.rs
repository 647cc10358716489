//! The writer batches harder under load and never at rest (issue 10): with every follower
//! waiting at the head a lone change is published at once; while a follower is behind, changes
//! arriving within the linger window share one breadcrumb. Runs on tokio's paused clock, so the
//! linger's timing is exact, not a race.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::time::Duration;

use bytes::Bytes;
use meshsync_cache::{CacheConfig, SnapshotCache};
use meshsync_datastore::{ResourceKey, SourceEvent, SourceStatus};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

fn wep(name: &str) -> SourceEvent {
    SourceEvent::Upsert {
        key: ResourceKey::new("", "WorkloadEndpoint", "default", name),
        value: Bytes::from(format!(
            r#"{{"kind":"WorkloadEndpoint","metadata":{{"name":"{name}","namespace":"default"}}}}"#
        )),
        revision: "1".into(),
    }
}

fn cache(linger: Duration) -> (mpsc::Sender<SourceEvent>, SnapshotCache) {
    let (tx, rx) = mpsc::channel(64);
    let config = CacheConfig {
        max_linger: linger,
        ..CacheConfig::default()
    };
    (tx, SnapshotCache::spawn(ReceiverStream::new(rx), config))
}

/// Lets every ready task run (the paused clock does not move while something can run).
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_quiet_cache_publishes_a_lone_change_at_once() {
    let (tx, cache) = cache(Duration::from_millis(2));
    let mut follower = cache.follower();
    let genesis = follower.head();
    tx.send(wep("a")).await.unwrap();
    settle().await;
    // Published without the clock moving: no linger when nobody is behind.
    let first = genesis.next().cloned().expect("published at once");
    assert_eq!(first.deltas.len(), 1);
    // The follower waits at the head (caught up): the next lone change is not delayed either.
    let waiting = tokio::spawn({
        let first = first.clone();
        async move { follower.next(&first).await.map(|c| c.deltas.len()) }
    });
    settle().await;
    tx.send(wep("b")).await.unwrap();
    settle().await;
    assert!(first.next().is_some(), "published at once");
    assert_eq!(waiting.await.unwrap(), Some(1));
}

#[tokio::test(start_paused = true)]
async fn under_load_changes_within_the_linger_share_one_breadcrumb() {
    for (linger, expected) in [(Duration::from_millis(2), 2), (Duration::ZERO, 1)] {
        let (tx, cache) = cache(linger);
        let mut follower = cache.follower();
        let genesis = follower.head();
        tx.send(local_status()).await.unwrap();
        settle().await;
        // A follower that finds its next breadcrumb already there is behind: load.
        let first = follower.next(&genesis).await.unwrap();
        tx.send(wep("a")).await.unwrap();
        settle().await;
        tokio::time::advance(Duration::from_micros(500)).await;
        tx.send(wep("b")).await.unwrap();
        settle().await;
        tokio::time::advance(Duration::from_millis(5)).await;
        settle().await;
        let next = first.next().cloned().expect("published after the linger");
        assert_eq!(next.deltas.len(), expected, "linger {linger:?}");
    }
}

fn local_status() -> SourceEvent {
    SourceEvent::Status {
        cluster: "".into(),
        status: SourceStatus::ResyncInProgress,
    }
}
