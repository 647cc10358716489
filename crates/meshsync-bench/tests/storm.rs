//! The `storm` scenario end to end through the real `meshsync-bench` binary: 6 agents in sync on
//! 300 keys lose their server twice (moved to a replica; back to the first server restarted)
//! while 1 % of the keys change. Every agent must catch up each time; meshsync's agents (anti-
//! entropy) cost a small fraction of the first snapshot's bytes, `meshsync-full`'s (no resume, a
//! full snapshot each time, as Typha does) about all of it. Byte counts, not times: the times are
//! the benchmark's to report.
//!
//! Needs `etcd` on PATH and the `meshsync` binary next to this one (`cargo test --workspace`
//! builds it for the root package's tests).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use support::run_bench;

#[test]
fn after_a_storm_resuming_agents_cost_a_fraction_of_a_snapshot() {
    let run = run_bench(&[
        "storm",
        "--systems",
        "meshsync,meshsync-full",
        "--agents",
        "6",
        "--keys",
        "300",
        "--drain-timeout",
        "30",
    ]);
    let json = &run.json;
    let systems = json["systems"].as_array().unwrap();
    assert_eq!(systems.len(), 2, "{json}");
    for system in systems {
        let name = system["system"].as_str().unwrap();
        assert!(system["error"].is_null(), "{name}: {}", system["error"]);
        let storm = &system["storm"];
        let snapshot_bytes = storm["snapshot_bytes"].as_u64().unwrap();
        assert!(snapshot_bytes > 6 * 300 * 500, "{name}: {storm}");
        let steps = storm["steps"].as_array().unwrap();
        let kinds: Vec<&str> = steps.iter().map(|s| s["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["move", "restart"]);
        for step in steps {
            assert_eq!(step["caught_up"], 6, "{name}: {step}");
            assert_eq!(step["changed_keys"], 3);
            let ratio = step["bytes_sent"].as_u64().unwrap() as f64 / snapshot_bytes as f64;
            if name == "meshsync" {
                assert!(
                    ratio < 0.10,
                    "{name} {}: {ratio:.3} of a snapshot",
                    step["kind"]
                );
            } else {
                assert!(
                    ratio > 0.5,
                    "{name} {}: {ratio:.3} of a snapshot",
                    step["kind"]
                );
            }
        }
    }
    assert!(run.md.contains("## Storm"), "{}", run.md);
}
