//! The targets table: meshsync's figures against grpc-proxy's and the floor's, as ratios with
//! the goal each must meet (the targets), plus memory per agent and lost updates.

use std::fmt::Write as _;

use super::format::{int, int_f, num, num2};
use super::tables::find;
use crate::model::{RunResult, SystemResult};

/// One row of the targets table.
pub(super) struct Target {
    pub(super) what: &'static str,
    pub(super) measured: String,
    pub(super) reference: String,
    /// Shown in the ratio column (`—` when the goal is absolute).
    pub(super) ratio: String,
    pub(super) goal: &'static str,
    pub(super) met: Option<bool>,
}

/// A target on the ratio of a meshsync figure to another system's.
pub(super) struct Compare {
    pub(super) what: &'static str,
    pub(super) goal: &'static str,
    /// Whether the ratio meets the goal.
    pub(super) ok: fn(f64) -> bool,
    pub(super) unit: &'static str,
    pub(super) fmt: fn(f64) -> String,
    pub(super) ours: Option<f64>,
    pub(super) reference: &'static str,
    pub(super) theirs: Option<f64>,
}

pub(super) fn relative(c: Compare) -> Target {
    let ratio = match (c.ours, c.theirs) {
        (Some(m), Some(r)) if r > 0.0 && m.is_finite() && r.is_finite() => Some(m / r),
        _ => None,
    };
    let (unit, fmt) = (c.unit, c.fmt);
    Target {
        what: c.what,
        measured: c.ours.map_or("n/a".into(), |v| format!("{}{unit}", fmt(v))),
        reference: match c.theirs {
            Some(v) => format!("{} {}{unit}", c.reference, fmt(v)),
            None => format!("{} n/a", c.reference),
        },
        ratio: ratio.map_or("n/a".into(), |x| format!("{x:.2}×")),
        goal: c.goal,
        met: ratio.map(c.ok),
    }
}

/// `meshsync` against `grpc-proxy` and `floor`, exactly the targets.
pub(super) fn targets(run: &RunResult) -> Vec<Target> {
    let ms_sys = find(run, "meshsync");
    let proxy = find(run, "grpc-proxy");
    let floor = find(run, "floor");
    let cpu = |s: Option<&SystemResult>| {
        let c = s?.churn.as_ref()?;
        (c.deliveries > 0).then_some(c.server_cpu_us_per_delivery)
    };
    let p99 = |s: Option<&SystemResult>| {
        let c = s?.churn.as_ref()?;
        (c.deliveries > 0).then_some(c.latency.p99_us as f64 / 1000.0)
    };
    let snap = |s: Option<&SystemResult>| Some(s?.snapshot.as_ref()?.total_s);
    let cap = |s: Option<&SystemResult>| s?.capacity_deliveries_per_s;
    let kib =
        |s: Option<&SystemResult>| Some(s?.snapshot.as_ref()?.server_bytes_per_agent / 1024.0);

    let mut out = vec![
        relative(Compare {
            what: "CPU per delivered update vs grpc-proxy (churn)",
            goal: "≤ 0.5×",
            ok: |x| x <= 0.5,
            unit: " µs",
            fmt: num2,
            ours: cpu(ms_sys),
            reference: "grpc-proxy",
            theirs: cpu(proxy),
        }),
        relative(Compare {
            what: "CPU per delivered update vs floor (churn)",
            goal: "≤ 1.5×",
            ok: |x| x <= 1.5,
            unit: " µs",
            fmt: num2,
            ours: cpu(ms_sys),
            reference: "floor",
            theirs: cpu(floor),
        }),
        relative(Compare {
            what: "Capacity vs grpc-proxy (saturate)",
            goal: "≥ 5×",
            ok: |x| x >= 5.0,
            unit: " /s",
            fmt: int_f,
            ours: cap(ms_sys),
            reference: "grpc-proxy",
            theirs: cap(proxy),
        }),
        relative(Compare {
            what: "p99 write → agent vs grpc-proxy (churn)",
            goal: "≤ 1/3 (0.33×)",
            ok: |x| x <= 1.0 / 3.0,
            unit: " ms",
            fmt: num2,
            ours: p99(ms_sys),
            reference: "grpc-proxy",
            theirs: p99(proxy),
        }),
        relative(Compare {
            what: "All agents in sync vs grpc-proxy (snapshot)",
            goal: "≤ 0.25×",
            ok: |x| x <= 0.25,
            unit: " s",
            fmt: num2,
            ours: snap(ms_sys),
            reference: "grpc-proxy",
            theirs: snap(proxy),
        }),
    ];
    out.push(memory_target(kib(ms_sys), kib(proxy)));
    out.push(lost_target(run, ms_sys));
    out
}

pub(super) fn targets_table(md: &mut String, run: &RunResult) {
    let _ = writeln!(
        md,
        "## Targets\n\nmeshsync against grpc-proxy and floor in this run (ratio = meshsync ÷ \
         reference).\n"
    );
    let _ = writeln!(
        md,
        "| Target | meshsync | Reference | Ratio | Goal | Met |\n|---|---:|---:|---:|---:|:---:|"
    );
    for t in targets(run) {
        let met = match t.met {
            Some(true) => "✅",
            Some(false) => "❌",
            None => "n/a",
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            t.what, t.measured, t.reference, t.ratio, t.goal, met
        );
    }
    md.push('\n');
}

/// meshsync's server memory per agent (KiB) against the ≤ 8 KiB goal, grpc-proxy's for reference.
fn memory_target(ours_kib: Option<f64>, proxy_kib: Option<f64>) -> Target {
    let mem = ours_kib.filter(|v| v.is_finite());
    Target {
        what: "Server memory per connected agent (snapshot)",
        measured: mem.map_or("n/a".into(), |v| format!("{} KiB", num(v, 2))),
        reference: proxy_kib
            .filter(|v| v.is_finite())
            .map_or("—".into(), |v| format!("grpc-proxy {} KiB", num(v, 1))),
        ratio: "—".into(),
        goal: "≤ 8 KiB",
        met: mem.map(|v| v <= 8.0),
    }
}

/// meshsync's lost updates in `churn` (goal 0), every other system's for reference.
fn lost_target(run: &RunResult, ms_sys: Option<&SystemResult>) -> Target {
    let lost = |s: &SystemResult| s.churn.as_ref().map(|c| c.lost);
    let others: Vec<String> = run
        .systems
        .iter()
        .filter(|s| s.system != "meshsync")
        .map(|s| format!("{} {}", s.system, lost(s).map_or("n/a".into(), int)))
        .collect();
    let m_lost = ms_sys.and_then(lost);
    Target {
        what: "Lost updates (churn)",
        measured: m_lost.map_or("n/a".into(), int),
        reference: if others.is_empty() {
            "—".into()
        } else {
            others.join(", ")
        },
        ratio: "—".into(),
        goal: "0",
        met: m_lost.map(|l| l == 0),
    }
}
