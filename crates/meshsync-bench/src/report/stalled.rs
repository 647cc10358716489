//! The `stalled` scenario's tables: every (round, pair) measured, then per system the median and
//! range over them of the figures the issue sets targets for (healthy p99 ≤ 1.2× the baseline's,
//! server memory bounded).

use std::fmt::Write as _;

use super::format::*;
use super::stats::Spread;
use crate::model::{RunResult, StalledRound};

pub(super) fn stalled_tables(md: &mut String, run: &RunResult) {
    let systems: Vec<(&str, usize, &crate::model::StalledResult)> = run
        .systems
        .iter()
        .filter_map(|s| Some((s.system.as_str(), s.round, s.stalled.as_ref()?)))
        .collect();
    if systems.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## Stalled agents\n\nEach pair: a baseline churn step ({} writes/s for {} s, every agent \
         reading), then the same step while some agents do not read their stream at all (from \
         before the first write until the healthy agents' deliveries are drained); then they read \
         again and a marker is written, which every agent must hold (recovery). Latency of the \
         stalled step is the healthy agents'. Server RSS: the fan-out process, sampled every \
         100 ms.\n",
        num(run.rate, 0),
        num(run.duration_s, 0)
    );
    let _ = writeln!(
        md,
        "| System | Round | Stalled agents | Write timeout s | Baseline p99 ms | Healthy p99 ms \
         | p99 ratio | Healthy lost | RSS before MiB | RSS peak MiB | RSS after MiB \
         | Stalled agents reconnected | Recovery s |"
    );
    let _ = writeln!(
        md,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (system, round, result) in &systems {
        for (i, r) in result.rounds.iter().enumerate() {
            let _ = writeln!(
                md,
                "| {system} | {}.{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                round + 1,
                i + 1,
                result.stalled_agents,
                num(result.write_timeout_s, 0),
                ms(r.baseline.latency.p99_us),
                ms(r.stalled.latency.p99_us),
                num2(r.p99_ratio),
                int(r.stalled.lost),
                num(mib(r.rss_before_bytes), 1),
                num(mib(r.rss_peak_bytes), 1),
                num(mib(r.rss_after_bytes), 1),
                r.reconnected_agents,
                num(r.recovery_s, 2)
            );
        }
    }
    md.push('\n');
    let _ = writeln!(
        md,
        "| System | Healthy p99 / baseline p99 (target ≤ 1.2×) | Peak RSS − RSS before, MiB | \
         Recovery s |\n|---|---:|---:|---:|"
    );
    let names = run.system_names();
    for name in names {
        let pairs: Vec<&StalledRound> = systems
            .iter()
            .filter(|(s, _, _)| *s == name)
            .flat_map(|(_, _, r)| r.rounds.iter())
            .collect();
        if pairs.is_empty() {
            continue;
        }
        let ratio = Spread::of(pairs.iter().map(|r| Some(r.p99_ratio)));
        let growth = Spread::of(
            pairs
                .iter()
                .map(|r| Some(mib(r.rss_peak_bytes.saturating_sub(r.rss_before_bytes)))),
        );
        let recovery = Spread::of(pairs.iter().map(|r| Some(r.recovery_s)));
        let met = ratio.median.is_some_and(|m| m <= 1.2);
        let _ = writeln!(
            md,
            "| {name} | {} {} | {} | {} |",
            ratio.show_with(num2, "×", 0),
            if met { "✅" } else { "❌" },
            growth.show_with(|v| num(v, 1), "", 0),
            recovery.show_with(num2, "", 0)
        );
    }
    md.push('\n');
}
