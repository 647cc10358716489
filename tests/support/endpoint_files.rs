//! WorkloadEndpoints of about a kibibyte as files of a `file:` datastore, for tests of the real
//! binary under churn: one endpoint per file, replaced atomically.
#![allow(dead_code)]

use std::path::Path;

/// WorkloadEndpoint `i` at `generation` as JSON of about a kibibyte.
pub fn endpoint_json(i: usize, generation: u64) -> String {
    format!(
        concat!(
            r#"{{"apiVersion":"projectcalico.org/v3","kind":"WorkloadEndpoint","#,
            r#""metadata":{{"name":"node--{node}-k8s-pod--{i}-eth0","namespace":"churn","#,
            r#""labels":{{"app":"app-{app}","generation":"{generation}","pad":"{pad}"}}}},"#,
            r#""spec":{{"orchestrator":"k8s","node":"node-{node}","pod":"pod-{i}","endpoint":"eth0","#,
            r#""containerID":"{cid:064x}","interfaceName":"cali{i:011x}","#,
            r#""ipNetworks":["10.{a}.{b}.{c}/32"],"profiles":["kns.churn","ksa.churn.default"]}}}}"#
        ),
        node = i % 50,
        i = i,
        app = i % 20,
        generation = generation,
        pad = "x".repeat(560),
        cid = (i as u128).wrapping_mul(0x2545_f491_4f6c_dd1d_9e37_79b9_7f4a_7c15),
        a = 64 + (i >> 16) % 64,
        b = (i >> 8) & 0xff,
        c = i & 0xff,
    )
}

/// Replaces `dir/we-<i>.json` atomically (a hidden temporary file renamed over it).
pub fn write_endpoint(dir: &Path, i: usize, generation: u64) {
    let tmp = dir.join(format!(".we-{i}.tmp"));
    std::fs::write(&tmp, endpoint_json(i, generation)).expect("write endpoint");
    std::fs::rename(&tmp, dir.join(format!("we-{i}.json"))).expect("rename endpoint");
}

/// Writes endpoints `0..n` at generation 0.
pub fn write_endpoints(dir: &Path, n: usize) {
    for i in 0..n {
        write_endpoint(dir, i, 0);
    }
}

/// Waits (up to `limit`) until the server at `addr` holds at least `keys` keys; returns its
/// epoch.
pub async fn wait_for_keys(
    addr: std::net::SocketAddr,
    keys: u64,
    limit: std::time::Duration,
) -> u64 {
    use meshsync_proto::{self as pb, sync_client::SyncClient};
    let mut client = SyncClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let deadline = std::time::Instant::now() + limit;
    loop {
        let response = client
            .status(pb::StatusRequest::default())
            .await
            .expect("status")
            .into_inner();
        let held: u64 = response
            .status
            .unwrap_or_default()
            .clusters
            .iter()
            .map(|c| c.keys)
            .sum();
        if held >= keys {
            return response.epoch;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server holds {held} keys after {limit:?}, not {keys}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
