//! The targets table: meshsync's figures against the other systems' of the same round, as ratios
//! with the goal each must meet (issue 10's targets, and issue 11's against Calico's Typha, the
//! system meshsync must beat), plus memory per agent and lost updates. When the run has
//! `meshsync-typha`, issue 23's targets follow: meshsync's Typha port against Typha itself with
//! the very same clients (Typha's own `syncclient`), so the protocol and the clients' work are
//! equal and only the servers differ.
//! With `--repeat N` every ratio is taken within its round (the baselines of the same run) and
//! the table gives the median and the range of the N ratios.

use std::fmt::Write as _;

use super::format::{int_f, num, num2};
use super::stats::Spread;
use super::tables::find;
use crate::model::{ChurnResult, RunResult, System, SystemResult};

/// One target in one round: numbers, so rounds can be aggregated.
#[derive(Clone)]
pub(super) struct Target {
    pub(super) what: String,
    /// meshsync's figure.
    pub(super) ours: Option<f64>,
    /// The reference system and its figure (`None` for an absolute goal).
    pub(super) reference: Option<(&'static str, Option<f64>)>,
    /// Extra words after the reference figure (e.g. the rate it was taken at).
    pub(super) reference_note: String,
    pub(super) unit: &'static str,
    pub(super) fmt: fn(f64) -> String,
    pub(super) goal: &'static str,
    /// Applied to the ratio (relative goals) or to `ours` (absolute goals).
    pub(super) ok: fn(f64) -> bool,
}

impl Target {
    /// meshsync ÷ reference, when both are known.
    pub(super) fn ratio(&self) -> Option<f64> {
        let (_, theirs) = self.reference?;
        match (self.ours, theirs) {
            (Some(m), Some(r)) if r > 0.0 && m.is_finite() && r.is_finite() => Some(m / r),
            _ => None,
        }
    }

    /// The figure the goal is judged on.
    fn judged(&self) -> Option<f64> {
        if self.reference.is_some() {
            self.ratio()
        } else {
            self.ours.filter(|v| v.is_finite())
        }
    }
}

#[allow(clippy::too_many_arguments)] // one argument per column of the table
fn relative(
    what: impl Into<String>,
    goal: &'static str,
    ok: fn(f64) -> bool,
    unit: &'static str,
    fmt: fn(f64) -> String,
    ours: Option<f64>,
    reference: &'static str,
    theirs: Option<f64>,
) -> Target {
    Target {
        what: what.into(),
        ours,
        reference: Some((reference, theirs)),
        reference_note: String::new(),
        unit,
        fmt,
        goal,
        ok,
    }
}

/// The churn step's server CPU per delivery, µs.
fn churn_cpu(s: Option<&SystemResult>) -> Option<f64> {
    let c = s?.churn.as_ref()?;
    (c.deliveries > 0).then_some(c.server_cpu_us_per_delivery)
}

fn churn_p99_ms(s: Option<&SystemResult>) -> Option<f64> {
    let c = s?.churn.as_ref()?;
    (c.deliveries > 0).then_some(c.latency.p99_us as f64 / 1000.0)
}

/// The saturate step that set the system's capacity (the good step with most deliveries/s).
pub(super) fn capacity_step(s: &SystemResult) -> Option<&ChurnResult> {
    s.saturate
        .iter()
        .filter(|c| c.within_limits())
        .max_by(|a, b| a.deliveries_per_s.total_cmp(&b.deliveries_per_s))
}

/// `s`'s server CPU per delivery at `writes_per_s`, interpolated in log(rate) between its two
/// nearest saturate steps (clamped at the ends), so systems whose ramps (and bisections) landed on
/// different rates can be compared at one rate.
pub(super) fn cpu_at_rate(s: &SystemResult, writes_per_s: f64) -> Option<f64> {
    let mut pts: Vec<(f64, f64)> = s
        .saturate
        .iter()
        .chain(s.churn.iter())
        .filter(|c| c.deliveries > 0 && c.achieved_rate > 0.0)
        .map(|c| (c.achieved_rate.ln(), c.server_cpu_us_per_delivery))
        .filter(|(_, v)| v.is_finite())
        .collect();
    if pts.is_empty() || writes_per_s <= 0.0 {
        return None;
    }
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let x = writes_per_s.ln();
    let (first, last) = (pts[0], pts[pts.len() - 1]);
    if x <= first.0 {
        return Some(first.1);
    }
    if x >= last.0 {
        return Some(last.1);
    }
    let i = pts.iter().position(|p| p.0 >= x)?;
    let (a, b) = (pts[i - 1], pts[i]);
    let t = if b.0 > a.0 {
        (x - a.0) / (b.0 - a.0)
    } else {
        0.0
    };
    Some(a.1 + (b.1 - a.1) * t)
}

/// The targets for one round (a run with one round, or a [`RunResult::round_view`]).
/// `with_typha_port`: whether the run has `meshsync-typha` (decided on the whole run, so every
/// round has the same rows).
pub(super) fn targets(run: &RunResult, with_typha_port: bool) -> Vec<Target> {
    let round = Round {
        meshsync: find(run, "meshsync"),
        meshsync_typha: find(run, System::MeshsyncTypha.name()),
        typha: find(run, "typha"),
        proxy: find(run, "grpc-proxy"),
        etcd: find(run, "etcd"),
        floor: find(run, "floor"),
        rate: num(run.rate, 0),
    };
    let mut out = round.against_typha();
    if with_typha_port {
        out.extend(round.typha_port_against_typha());
    }
    out.extend(round.against_baselines());
    out.push(memory_target(round.meshsync));
    out.push(lost_target(run));
    out.shrink_to_fit();
    out
}

/// The systems of one round, and its churn rate as the tables print it.
struct Round<'a> {
    meshsync: Option<&'a SystemResult>,
    /// meshsync serving Typha's protocol to Typha's clients.
    meshsync_typha: Option<&'a SystemResult>,
    typha: Option<&'a SystemResult>,
    proxy: Option<&'a SystemResult>,
    etcd: Option<&'a SystemResult>,
    floor: Option<&'a SystemResult>,
    rate: String,
}

impl Round<'_> {
    /// Issue 11's targets: meshsync against Calico's Typha, the system it must beat.
    fn against_typha(&self) -> Vec<Target> {
        let (ms_sys, typha, rate) = (self.meshsync, self.typha, &self.rate);
        vec![
            relative(
                "Capacity vs Typha (saturate)",
                "≥ 2×",
                |x| x >= 2.0,
                " /s",
                int_f,
                capacity_per_s(ms_sys),
                "typha",
                capacity_per_s(typha),
            ),
            relative(
                format!("p99 write → agent at {rate} writes/s vs Typha (churn)"),
                "≤ 1/2 (0.5×)",
                |x| x <= 0.5,
                " ms",
                num2,
                churn_p99_ms(ms_sys),
                "typha",
                churn_p99_ms(typha),
            ),
            relative(
                "All agents in sync vs Typha (snapshot)",
                "≤ 1/4 (0.25×)",
                |x| x <= 0.25,
                " s",
                num2,
                snapshot_s(ms_sys),
                "typha",
                snapshot_s(typha),
            ),
            relative(
                format!("Server CPU per delivery at {rate} writes/s vs Typha (churn)"),
                "≤ 1/2 (0.5×)",
                |x| x <= 0.5,
                " µs",
                num2,
                churn_cpu(ms_sys),
                "typha",
                churn_cpu(typha),
            ),
            relative(
                "Server memory per connected agent vs Typha (snapshot)",
                "≤ 1/2 (0.5×)",
                |x| x <= 0.5,
                " KiB",
                num2,
                kib_per_agent(ms_sys),
                "typha",
                kib_per_agent(typha),
            ),
        ]
    }

    /// Issue 23's targets: meshsync's Typha port (`meshsync-typha`) against Typha, both serving
    /// the same Typha clients. The rows name meshsync-typha: its figure is in the meshsync column.
    /// No bytes-sent target: Sent counts `write`/`writev` (/proc wchar), and meshsync's Typha
    /// port writes its sockets with `send`, which that counter leaves out.
    fn typha_port_against_typha(&self) -> Vec<Target> {
        let (ours, typha, rate) = (self.meshsync_typha, self.typha, &self.rate);
        let name = System::MeshsyncTypha.name();
        vec![
            relative(
                format!("{name}: server CPU per delivery at {rate} writes/s vs Typha (churn)"),
                "≤ 1/2 (0.5×)",
                |x| x <= 0.5,
                " µs",
                num2,
                churn_cpu(ours),
                "typha",
                churn_cpu(typha),
            ),
            relative(
                format!("{name}: server memory per connected client vs Typha (snapshot)"),
                "≤ 1/2 (0.5×)",
                |x| x <= 0.5,
                " KiB",
                num2,
                kib_per_agent(ours),
                "typha",
                kib_per_agent(typha),
            ),
            relative(
                format!("{name}: all clients in sync vs Typha (snapshot)"),
                "≤ 1/2 (0.5×)",
                |x| x <= 0.5,
                " s",
                num2,
                snapshot_s(ours),
                "typha",
                snapshot_s(typha),
            ),
            relative(
                format!("{name}: p99 write → client at {rate} writes/s vs Typha (churn)"),
                "≤ 1×",
                |x| x <= 1.0,
                " ms",
                num2,
                churn_p99_ms(ours),
                "typha",
                churn_p99_ms(typha),
            ),
        ]
    }

    /// Issue 10's targets: meshsync against direct etcd, etcd's grpc-proxy and the floor.
    fn against_baselines(&self) -> Vec<Target> {
        let (ms_sys, rate) = (self.meshsync, &self.rate);
        let (proxy, etcd, floor) = (self.proxy, self.etcd, self.floor);
        vec![
            relative(
                "Capacity vs direct etcd (saturate)",
                "≥ 2×",
                |x| x >= 2.0,
                " /s",
                int_f,
                capacity_per_s(ms_sys),
                "etcd",
                capacity_per_s(etcd),
            ),
            relative(
                "Capacity vs grpc-proxy (saturate)",
                "≥ 5×",
                |x| x >= 5.0,
                " /s",
                int_f,
                capacity_per_s(ms_sys),
                "grpc-proxy",
                capacity_per_s(proxy),
            ),
            cpu_at_capacity_vs_floor(ms_sys, floor),
            relative(
                format!("p99 write → agent at {rate} writes/s vs grpc-proxy (churn)"),
                "≤ 1/2 (0.5×)",
                |x| x <= 0.5,
                " ms",
                num2,
                churn_p99_ms(ms_sys),
                "grpc-proxy",
                churn_p99_ms(proxy),
            ),
            relative(
                format!("p99 write → agent at {rate} writes/s vs direct etcd (churn)"),
                "≤ 1/2 (0.5×)",
                |x| x <= 0.5,
                " ms",
                num2,
                churn_p99_ms(ms_sys),
                "etcd",
                churn_p99_ms(etcd),
            ),
            relative(
                "All agents in sync vs grpc-proxy (snapshot)",
                "≤ 1/4 (0.25×)",
                |x| x <= 0.25,
                " s",
                num2,
                snapshot_s(ms_sys),
                "grpc-proxy",
                snapshot_s(proxy),
            ),
            relative(
                format!("Server CPU per delivery at {rate} writes/s vs floor (churn)"),
                "≤ 1.5×",
                |x| x <= 1.5,
                " µs",
                num2,
                churn_cpu(ms_sys),
                "floor",
                churn_cpu(floor),
            ),
        ]
    }
}

/// The snapshot step's time until all agents were in sync, s.
fn snapshot_s(s: Option<&SystemResult>) -> Option<f64> {
    Some(s?.snapshot.as_ref()?.total_s)
}

/// The system's capacity, deliveries/s.
fn capacity_per_s(s: Option<&SystemResult>) -> Option<f64> {
    s?.capacity_deliveries_per_s
}

/// The snapshot step's server memory per connected agent, KiB (finite values only).
fn kib_per_agent(s: Option<&SystemResult>) -> Option<f64> {
    Some(s?.snapshot.as_ref()?.server_bytes_per_agent / 1024.0).filter(|v| v.is_finite())
}

/// meshsync's server CPU per delivery at its capacity against the floor's at the same rate.
fn cpu_at_capacity_vs_floor(ms_sys: Option<&SystemResult>, floor: Option<&SystemResult>) -> Target {
    let at_capacity = ms_sys.and_then(capacity_step);
    let mut target = relative(
        "Server CPU per delivery at meshsync's capacity vs floor at the same rate (saturate)",
        "≤ 1.5×",
        |x| x <= 1.5,
        " µs",
        num2,
        at_capacity.map(|c| c.server_cpu_us_per_delivery),
        "floor",
        at_capacity.and_then(|c| cpu_at_rate(floor?, c.achieved_rate)),
    );
    if let Some(c) = at_capacity {
        target.reference_note = format!(" at {}/s", int_f(c.achieved_rate));
    }
    target
}

/// meshsync's server memory per connected agent, an absolute goal.
fn memory_target(ms_sys: Option<&SystemResult>) -> Target {
    Target {
        what: "Server memory per connected agent (snapshot)".into(),
        ours: kib_per_agent(ms_sys),
        reference: None,
        reference_note: String::new(),
        unit: " KiB",
        fmt: num2,
        goal: "≤ 8 KiB",
        ok: |v| v <= 8.0,
    }
}

/// Updates lost by any system in `churn` and in the saturate steps within limits (goal 0). A
/// saturate step past the limits may lose updates by definition; those do not count.
fn lost_target(run: &RunResult) -> Target {
    let measured: Vec<u64> = run
        .systems
        .iter()
        .filter_map(|s| s.churn.as_ref().map(|c| c.lost))
        .collect();
    Target {
        what: "Updates lost, every system (churn)".into(),
        ours: (!measured.is_empty()).then(|| measured.iter().sum::<u64>() as f64),
        reference: None,
        reference_note: String::new(),
        unit: "",
        fmt: int_f,
        goal: "0",
        ok: |v| v == 0.0,
    }
}

/// What the rows of `meshsync-typha` show, when it ran.
fn typha_port_note(with_typha_port: bool) -> &'static str {
    if with_typha_port {
        " Rows that start with meshsync-typha give, in the meshsync column, meshsync serving \
         Typha's protocol (`--typha-listen`) to the same Typha clients as typha."
    } else {
        ""
    }
}

pub(super) fn targets_table(md: &mut String, run: &RunResult) {
    let rounds = run.rounds();
    let with_typha_port = run.system_names().contains(&System::MeshsyncTypha.name());
    let per_round: Vec<Vec<Target>> = (0..rounds)
        .map(|r| targets(&run.round_view(r), with_typha_port))
        .collect();
    let Some(first) = per_round.first() else {
        return;
    };
    if rounds > 1 {
        let _ = writeln!(
            md,
            "## Targets\n\nmeshsync against the other systems, each ratio taken within its round \
             (meshsync ÷ reference of the same round); median and (range) over {rounds} rounds; \
             a goal is met when the median meets it.{}\n",
            typha_port_note(with_typha_port)
        );
    } else {
        let _ = writeln!(
            md,
            "## Targets\n\nmeshsync against the other systems in this run (ratio = meshsync ÷ \
             reference).{}\n",
            typha_port_note(with_typha_port)
        );
    }
    let _ = writeln!(
        md,
        "| Target | meshsync | Reference | Ratio | Goal | Met |\n|---|---:|---:|---:|---:|:---:|"
    );
    for (i, t) in first.iter().enumerate() {
        let rows: Vec<&Target> = per_round.iter().filter_map(|ts| ts.get(i)).collect();
        let fmt = t.fmt;
        let unit = t.unit;
        let ours = Spread::of(rows.iter().map(|t| t.ours));
        let measured = ours.show_with(fmt, unit, rounds);
        let reference = match t.reference {
            None => "—".to_string(),
            Some((name, _)) => {
                let theirs = Spread::of(rows.iter().map(|t| t.reference.and_then(|r| r.1)));
                let note = if rounds == 1 {
                    t.reference_note.as_str()
                } else {
                    ""
                };
                format!("{name} {}{note}", theirs.show_with(fmt, unit, rounds))
            }
        };
        let (ratio, judged) = if t.reference.is_some() {
            let r = Spread::of(rows.iter().map(|t| t.ratio()));
            (r.show_with(|x| format!("{x:.2}"), "×", rounds), r.median)
        } else {
            (
                "—".to_string(),
                Spread::of(rows.iter().map(|t| t.judged())).median,
            )
        };
        let met = match judged {
            Some(v) if (t.ok)(v) => "✅",
            Some(_) => "❌",
            None => "n/a",
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            t.what, measured, reference, ratio, t.goal, met
        );
    }
    md.push('\n');
}
