//! The summary table of a `--repeat N` run: every headline figure of every system as the median
//! and (range) of its N rounds, rounds interleaved so the machine's noise falls on every system.

use std::fmt::Write as _;

use super::format::{int_f, num, num2};
use super::stats::Spread;
use super::tables::server_cpu;
use super::targets::capacity_step;
use crate::model::{RunResult, SystemResult};

/// One row: its label, the figure of one round's result, and how to print it.
pub(super) struct Figure {
    pub(super) label: String,
    pub(super) value: fn(&SystemResult) -> Option<f64>,
    pub(super) fmt: fn(f64) -> String,
}

/// The headline figures, also those [`super::baseline`] compares between two meshsync builds.
pub(super) fn figures(run: &RunResult) -> Vec<Figure> {
    let rate = num(run.rate, 0);
    let ms1 = |v: f64| num(v, 1);
    vec![
        Figure {
            label: "All agents in sync after a simultaneous connect, s".into(),
            value: |s| Some(s.snapshot.as_ref()?.total_s),
            fmt: num2,
        },
        Figure {
            label: "Server CPU for the snapshot, s".into(),
            value: |s| Some(server_cpu(&s.snapshot.as_ref()?.server)),
            fmt: num2,
        },
        Figure {
            label: "Server memory per connected agent, KiB".into(),
            value: |s| Some(s.snapshot.as_ref()?.server_bytes_per_agent / 1024.0),
            fmt: |v| num(v, 1),
        },
        Figure {
            label: format!("p50 write → agent at {rate} writes/s, ms"),
            value: |s| {
                let c = s.churn.as_ref()?;
                (c.deliveries > 0).then_some(c.latency.p50_us as f64 / 1000.0)
            },
            fmt: ms1,
        },
        Figure {
            label: format!("p99 write → agent at {rate} writes/s, ms"),
            value: |s| {
                let c = s.churn.as_ref()?;
                (c.deliveries > 0).then_some(c.latency.p99_us as f64 / 1000.0)
            },
            fmt: ms1,
        },
        Figure {
            label: format!("Server CPU per delivery at {rate} writes/s, µs"),
            value: |s| {
                let c = s.churn.as_ref()?;
                (c.deliveries > 0).then_some(c.server_cpu_us_per_delivery)
            },
            fmt: num2,
        },
        Figure {
            label: "Capacity, deliveries/s (p99 ≤ 1 s, nothing lost)".into(),
            value: |s| s.capacity_deliveries_per_s,
            fmt: int_f,
        },
        Figure {
            label: "Server CPU per delivery at its capacity, µs".into(),
            value: |s| Some(capacity_step(s)?.server_cpu_us_per_delivery),
            fmt: num2,
        },
        Figure {
            label: "Updates lost (churn)".into(),
            value: |s| Some(s.churn.as_ref()?.lost as f64),
            fmt: int_f,
        },
    ]
}

pub(super) fn summary_table(md: &mut String, run: &RunResult) {
    let rounds = run.rounds();
    let names = run.system_names();
    if names.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## Summary: median (range) over {rounds} round{}\n",
        if rounds == 1 { "" } else { "s" }
    );
    let _ = write!(md, "| Figure |");
    for n in &names {
        let _ = write!(md, " {n} |");
    }
    let _ = write!(md, "\n|---|");
    for _ in &names {
        md.push_str("---:|");
    }
    md.push('\n');
    for f in figures(run) {
        let _ = write!(md, "| {} |", f.label);
        for n in &names {
            let spread = Spread::of(
                run.systems
                    .iter()
                    .filter(|s| s.system == *n && s.error.is_none())
                    .map(f.value),
            );
            let _ = write!(md, " {} |", spread.show_with(f.fmt, "", rounds));
        }
        md.push('\n');
    }
    md.push('\n');
}
