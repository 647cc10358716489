//! The `storm` scenario's tables: each system's two events (moved to a replica, back to the
//! restarted server) against its own first full snapshot, and per system the median and range of
//! the ratios over rounds (target: ≤ 5 % of the snapshot's bytes, ≤ 1/10 of its time).

use std::fmt::Write as _;

use super::format::*;
use super::stats::Spread;
use crate::model::RunResult;

pub(super) fn storm_tables(md: &mut String, run: &RunResult) {
    let rows: Vec<_> = run
        .systems
        .iter()
        .filter_map(|s| Some((s.system.as_str(), s.round, s.storm.as_ref()?)))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## Storm\n\n{} agents in sync on {} keys lose their server twice while 1 % of the keys \
         change: `move` (the server is killed; they fail over to a replica running beside it) and \
         `restart` (the replica is killed and the first server restarted on its port). Recovery \
         ends when every agent holds a marker written after the changes. Ratios are against the \
         same system's first full snapshot in the same round (bytes the serving process wrote; \
         time until every agent was in sync).\n",
        int(run.agents as u64),
        int(run.keys as u64)
    );
    let _ = writeln!(
        md,
        "| System | Round | Event | Changed keys | Caught up | Sent MiB | Snapshot MiB | Bytes ÷ snapshot | Recovery s | Snapshot s | Time ÷ snapshot | Server CPU s |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (system, round, storm) in &rows {
        for step in &storm.steps {
            let _ = writeln!(
                md,
                "| {system} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                round + 1,
                step.kind,
                step.changed_keys,
                step.caught_up,
                num(mib(step.bytes_sent), 2),
                num(mib(storm.snapshot_bytes), 1),
                pct(step.bytes_sent as f64 / storm.snapshot_bytes.max(1) as f64),
                num(step.recovery_s, 2),
                num(storm.snapshot_s, 2),
                pct(step.recovery_s / storm.snapshot_s.max(1e-9)),
                num(step.server_cpu_s, 2)
            );
        }
    }
    md.push('\n');
    let _ = writeln!(
        md,
        "| System | Event | Bytes ÷ snapshot (target ≤ 5 %) | Time ÷ snapshot (target ≤ 10 %) |\n|---|---|---:|---:|"
    );
    for name in run.system_names() {
        for kind in ["move", "restart"] {
            let steps: Vec<_> = rows
                .iter()
                .filter(|(s, _, _)| *s == name)
                .flat_map(|(_, _, storm)| {
                    storm
                        .steps
                        .iter()
                        .filter(|st| st.kind == kind)
                        .map(move |st| (storm, st))
                })
                .collect();
            if steps.is_empty() {
                continue;
            }
            let bytes = Spread::of(steps.iter().map(|(storm, st)| {
                Some(st.bytes_sent as f64 / storm.snapshot_bytes.max(1) as f64)
            }));
            let time = Spread::of(
                steps
                    .iter()
                    .map(|(storm, st)| Some(st.recovery_s / storm.snapshot_s.max(1e-9))),
            );
            let mark = |s: &Spread, goal: f64| match s.median {
                Some(m) if m <= goal => "✅",
                Some(_) => "❌",
                None => "",
            };
            let _ = writeln!(
                md,
                "| {name} | {kind} | {} {} | {} {} |",
                bytes.show_with(pct, "", 0),
                mark(&bytes, 0.05),
                time.show_with(pct, "", 0),
                mark(&time, 0.10)
            );
        }
    }
    md.push('\n');
}

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1} %", v * 100.0)
    } else {
        "n/a".into()
    }
}
