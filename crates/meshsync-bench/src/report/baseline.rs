//! The comparison of two meshsync builds run in the same invocation: `meshsync` (this build) and
//! `meshsync-baseline` (the `--baseline-bin` build, run the same way). The targets table compares
//! meshsync with the other systems; this table answers "did a change regress?": every headline
//! figure (and those of `stalled` and `storm`) of both builds, and meshsync ÷ meshsync-baseline
//! taken within each round — rounds interleave the two, so the machine's drift falls on both —
//! with the median and range of those ratios.

use std::fmt::Write as _;

use super::format::{mib, num2};
use super::stats::Spread;
use super::summary::{Figure, figures};
use crate::model::{RunResult, StormStep, System, SystemResult};

pub(super) fn baseline_table(md: &mut String, run: &RunResult) {
    let (current, baseline) = (System::Meshsync.name(), System::MeshsyncBaseline.name());
    let names = run.system_names();
    if !names.contains(&current) || !names.contains(&baseline) {
        return;
    }
    let rounds = run.rounds();
    let _ = writeln!(
        md,
        "## {current} against {baseline}\n\nThis build of meshsync against the baseline build \
         (`--baseline-bin`), run the same way in the same rounds; ratio = {current} ÷ {baseline} \
         of the same round{}. Below 1× the figure is lower with this build: better for every \
         figure but capacity.\n",
        if rounds > 1 {
            ", then its median and (range) over the rounds"
        } else {
            ""
        }
    );
    let _ = write!(
        md,
        "| Figure | {current} | {baseline} | Ratio |{}\n|---|---:|---:|---:|{}",
        (1..=rounds)
            .filter(|_| rounds > 1)
            .map(|r| format!(" Round {r} |"))
            .collect::<String>(),
        "---:|".repeat(if rounds > 1 { rounds } else { 0 })
    );
    md.push('\n');
    for f in figures(run).into_iter().chain(scenario_figures()) {
        let ours: Vec<Option<f64>> = (0..rounds).map(|r| value(run, r, current, &f)).collect();
        let theirs: Vec<Option<f64>> = (0..rounds).map(|r| value(run, r, baseline, &f)).collect();
        if ours.iter().chain(&theirs).all(Option::is_none) {
            continue;
        }
        let ratios: Vec<Option<f64>> = ours
            .iter()
            .zip(&theirs)
            .map(|(&m, &b)| ratio(m, b))
            .collect();
        let show_ratio = |x: f64| format!("{x:.2}");
        let _ = write!(
            md,
            "| {} | {} | {} | {} |",
            f.label,
            Spread::of(ours.iter().copied()).show_with(f.fmt, "", rounds),
            Spread::of(theirs.iter().copied()).show_with(f.fmt, "", rounds),
            Spread::of(ratios.iter().copied()).show_with(show_ratio, "×", rounds),
        );
        if rounds > 1 {
            for r in &ratios {
                let _ = write!(md, " {} |", r.map_or("n/a".into(), |x| show_ratio(x) + "×"));
            }
        }
        md.push('\n');
    }
    md.push('\n');
}

/// `name`'s figure `f` in `round`, when it ran without error.
fn value(run: &RunResult, round: usize, name: &str, f: &Figure) -> Option<f64> {
    run.systems
        .iter()
        .find(|s| s.round == round && s.system == name && s.error.is_none())
        .and_then(f.value)
}

/// `ours ÷ theirs`, when both are finite and `theirs` is positive.
fn ratio(ours: Option<f64>, theirs: Option<f64>) -> Option<f64> {
    match (ours, theirs) {
        (Some(m), Some(b)) if b > 0.0 && m.is_finite() && b.is_finite() => Some(m / b),
        _ => None,
    }
}

/// The `stalled` and `storm` figures that matter for a regression (absent in other scenarios,
/// whose rows are then left out).
fn scenario_figures() -> Vec<Figure> {
    vec![
        Figure {
            label: "Stalled: healthy p99 ÷ all-reading p99 (median of pairs)".into(),
            value: |s| {
                let pairs = &s.stalled.as_ref()?.rounds;
                Spread::of(pairs.iter().map(|p| Some(p.p99_ratio))).median
            },
            fmt: num2,
        },
        Figure {
            label: "Stalled: recovery after the stall, s (median of pairs)".into(),
            value: |s| {
                let pairs = &s.stalled.as_ref()?.rounds;
                Spread::of(pairs.iter().map(|p| Some(p.recovery_s))).median
            },
            fmt: num2,
        },
        Figure {
            label: "Storm `move`: bytes sent to recover, MiB".into(),
            value: |s| Some(mib(storm_step(s, "move")?.bytes_sent)),
            fmt: num2,
        },
        Figure {
            label: "Storm `move`: recovery, s".into(),
            value: |s| Some(storm_step(s, "move")?.recovery_s),
            fmt: num2,
        },
        Figure {
            label: "Storm `restart`: bytes sent to recover, MiB".into(),
            value: |s| Some(mib(storm_step(s, "restart")?.bytes_sent)),
            fmt: num2,
        },
        Figure {
            label: "Storm `restart`: recovery, s".into(),
            value: |s| Some(storm_step(s, "restart")?.recovery_s),
            fmt: num2,
        },
    ]
}

fn storm_step<'a>(s: &'a SystemResult, kind: &str) -> Option<&'a StormStep> {
    s.storm.as_ref()?.steps.iter().find(|st| st.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SnapshotResult;

    fn result(system: &str, round: usize, capacity: f64, snapshot_s: f64) -> SystemResult {
        SystemResult {
            system: system.into(),
            round,
            capacity_deliveries_per_s: Some(capacity),
            snapshot: Some(SnapshotResult {
                total_s: snapshot_s,
                ..SnapshotResult::default()
            }),
            ..SystemResult::default()
        }
    }

    fn row<'a>(md: &'a str, starts: &str) -> &'a str {
        md.lines()
            .find(|l| l.starts_with(&format!("| {starts}")))
            .unwrap_or_else(|| panic!("no row {starts:?} in\n{md}"))
    }

    /// Two interleaved rounds: each ratio is meshsync ÷ meshsync-baseline of its own round,
    /// shown per round and as median (range); figures neither build has are left out; without
    /// the baseline there is no table.
    #[test]
    fn ratios_per_round_against_the_baseline_build() {
        let mut run = RunResult {
            repeat: 2,
            systems: vec![
                result("meshsync", 0, 1_200_000.0, 1.0),
                result("meshsync-baseline", 0, 1_000_000.0, 2.0),
                result("meshsync", 1, 900_000.0, 1.5),
                result("meshsync-baseline", 1, 1_000_000.0, 1.5),
            ],
            ..RunResult::default()
        };
        let mut md = String::new();
        baseline_table(&mut md, &run);
        assert!(
            md.starts_with("## meshsync against meshsync-baseline\n"),
            "{md}"
        );
        assert!(
            md.contains("| Figure | meshsync | meshsync-baseline | Ratio | Round 1 | Round 2 |"),
            "{md}"
        );
        assert_eq!(
            row(&md, "Capacity"),
            "| Capacity, deliveries/s (p99 ≤ 1 s, nothing lost) | 1,050,000 (900,000–1,200,000) \
             | 1,000,000 | 1.05 (0.90–1.20)× | 1.20× | 0.90× |"
        );
        assert_eq!(
            row(&md, "All agents in sync"),
            "| All agents in sync after a simultaneous connect, s | 1.25 (1.00–1.50) \
             | 1.75 (1.50–2.00) | 0.75 (0.50–1.00)× | 0.50× | 1.00× |"
        );
        assert!(!md.contains("Storm"), "{md}");
        assert!(!md.contains("p99 write"), "{md}");

        // A round where the baseline failed has no ratio.
        run.systems[3].error = Some("did not start".into());
        let mut md = String::new();
        baseline_table(&mut md, &run);
        assert!(
            row(&md, "Capacity").ends_with("| 1.20× (1 of 2 rounds) | 1.20× | n/a |"),
            "{md}"
        );

        run.systems.retain(|s| s.system == "meshsync");
        let mut md = String::new();
        baseline_table(&mut md, &run);
        assert!(md.is_empty(), "{md}");
    }
}
