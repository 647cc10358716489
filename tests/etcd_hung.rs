#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;

// A hung etcd (defect 11b): after `kill -STOP` of a real etcd process the etcd source reports
// `ConnectionFailed` within the stated bound (HUNG_BOUND), and after `kill -CONT` it recovers to
// `InSync` and carries changes again.

use std::time::{Duration, Instant};

use meshsync_datastore::SourceEvent;
use meshsync_datastore::etcd::{EtcdSourceConfig, watch};
use meshsync_datastore::layout::key_path;
use meshsync_etcd::EtcdConfig;
use support::etcd::Etcd;
use support::source::until_within;

/// The documented bound for noticing a hung etcd while watching.
const HUNG_BOUND: Duration = Duration::from_secs(10);

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid}");
}

/// Sends SIGCONT when dropped, so a failing test never leaves a stopped etcd behind.
struct Continue(u32);

impl Drop for Continue {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-CONT")
            .arg(self.0.to_string())
            .status();
    }
}

fn is_status(event: &SourceEvent, name: &str) -> bool {
    matches!(event, SourceEvent::Status { status, .. } if status.name() == name)
}

#[tokio::test]
async fn a_stopped_etcd_is_noticed_within_the_bound_and_recovers_after_sigcont() {
    let etcd = Etcd::start("hung").await;
    let client = etcd.client().await;
    let node = |name: &str| format!(r#"{{"kind":"Node","metadata":{{"name":"{name}"}}}}"#);
    let path = |name: &str| key_path("/calico", "Node", "", name).unwrap();
    client.put(path("h1"), node("h1")).await.unwrap();
    let mut cfg = EtcdSourceConfig::new(EtcdConfig::new(vec![etcd.url()]), "".into());
    cfg.common.backoff.min = Duration::from_millis(100);
    cfg.common.backoff.max = Duration::from_millis(500);
    let mut source = watch(cfg);
    until_within(&mut source, "in sync", Duration::from_secs(30), |e| {
        is_status(e, "InSync")
    })
    .await;
    // The watch works.
    client.put(path("h2"), node("h2")).await.unwrap();
    until_within(
        &mut source,
        "h2",
        Duration::from_secs(10),
        |e| matches!(e, SourceEvent::Upsert { key, .. } if key.name() == "h2"),
    )
    .await;

    let pid = etcd.pid().expect("etcd runs");
    signal(pid, "STOP");
    let guard = Continue(pid);
    let stopped = Instant::now();
    let events = until_within(
        &mut source,
        "ConnectionFailed",
        Duration::from_secs(60),
        |e| is_status(e, "ConnectionFailed"),
    )
    .await;
    let noticed = stopped.elapsed();
    eprintln!(
        "etcd_hung: ConnectionFailed {noticed:?} after SIGSTOP: {:?}",
        events.last()
    );
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        noticed <= HUNG_BOUND,
        "a hung etcd took {noticed:?} to be noticed (bound {HUNG_BOUND:?})"
    );

    signal(pid, "CONT");
    drop(guard);
    let resumed = Instant::now();
    let events = until_within(&mut source, "InSync again", Duration::from_secs(60), |e| {
        is_status(e, "InSync")
    })
    .await;
    eprintln!(
        "etcd_hung: InSync again {:?} after SIGCONT",
        resumed.elapsed()
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SourceEvent::ResyncStart { .. }))
    );
    let r = client.put(path("h3"), node("h3")).await.unwrap();
    let events = until_within(
        &mut source,
        "h3",
        Duration::from_secs(10),
        |e| matches!(e, SourceEvent::Upsert { key, .. } if key.name() == "h3"),
    )
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        matches!(&events[0], SourceEvent::Upsert { revision, .. } if revision.as_ref() == r.to_string())
    );
}
