//! The `stalled` scenario end to end, as an operator runs it: the real `meshsync-bench` binary
//! starts etcd, `meshsync serve` and its agents process; 2 of 12 agents stop reading through a
//! churn step written fast enough to fill their HTTP/2 windows and outlast a 1 s write timeout.
//! The healthy agents must get every update, every agent must hold the marker written after the
//! resume, and the next round's baseline must reach all 12 (the stalled ones recovered).
//!
//! Needs `etcd` on PATH and the `meshsync` binary next to this one (`cargo test --workspace`
//! builds it for the root package's tests).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use support::run_bench;

#[test]
fn stalled_agents_do_not_hold_back_the_healthy_ones_and_recover() {
    let run = run_bench(&[
        "stalled",
        "--systems",
        "meshsync,typha",
        "--agents",
        "12",
        "--keys",
        "200",
        "--rate",
        "1500",
        "--duration",
        "3",
        "--stalled-fraction",
        "0.17",
        "--stalled-rounds",
        "2",
        "--write-timeout",
        "1",
        "--drain-timeout",
        "30",
        "--meshsync-client",
        "raw",
    ]);
    assert!(
        run.stderr.contains("leaving out [\"typha\"]"),
        "typha cannot stall and is left out with a note:\n{}",
        run.stderr
    );
    let json = &run.json;
    let systems = json["systems"].as_array().unwrap();
    assert_eq!(systems.len(), 1, "{json}");
    assert!(systems[0]["error"].is_null(), "{}", systems[0]["error"]);
    let stalled = &systems[0]["stalled"];
    assert_eq!(stalled["stalled_agents"], 2);
    assert_eq!(stalled["write_timeout_s"], 1.0);
    let rounds = stalled["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2);
    // The write timeout closed stalled connections; a healthy agent never lost its own.
    let reconnected: Vec<u64> = rounds
        .iter()
        .map(|r| r["reconnected_agents"].as_u64().unwrap())
        .collect();
    assert!(
        reconnected.iter().all(|&r| r <= 2) && reconnected.iter().sum::<u64>() >= 1,
        "reconnected per round: {reconnected:?}"
    );
    for (i, round) in rounds.iter().enumerate() {
        let (baseline, healthy) = (&round["baseline"], &round["stalled"]);
        let writes = baseline["writes"].as_u64().unwrap();
        assert!(writes > 1000, "round {i}: {baseline}");
        assert_eq!(baseline["expected_deliveries"].as_u64(), Some(writes * 12));
        assert_eq!(
            baseline["lost"], 0,
            "round {i} baseline lost updates: {baseline}"
        );
        let writes = healthy["writes"].as_u64().unwrap();
        assert_eq!(healthy["expected_deliveries"].as_u64(), Some(writes * 10));
        assert_eq!(
            healthy["lost"], 0,
            "round {i}: healthy agents lost updates: {healthy}"
        );
        let recovery = round["recovery_s"].as_f64().unwrap();
        assert!(recovery > 0.0 && recovery < 60.0, "round {i}: {round}");
        let (before, peak) = (
            round["rss_before_bytes"].as_u64().unwrap(),
            round["rss_peak_bytes"].as_u64().unwrap(),
        );
        assert!(before > 0 && peak >= before, "round {i}: {round}");
        assert!(round["p99_ratio"].as_f64().unwrap() > 0.0);
    }
    assert!(run.md.contains("## Stalled agents"), "{}", run.md);
}
