//! What each chart plots, taken out of a [`RunResult`]: the series and bars, and which systems
//! failed. A chart is drawn only when its series are not empty ([`super::planned`]).

use super::format::{fmt_axis, fmt_count};
use crate::model::{ChurnResult, RunResult, SnapshotResult, SystemResult};

/// Systems with a `churn` CDF: (name, churn).
pub(super) fn cdf_series(run: &RunResult) -> Vec<(&str, &ChurnResult)> {
    run.systems
        .iter()
        .filter_map(|s| Some((s.system.as_str(), s.churn.as_ref()?)))
        .filter(|(_, c)| c.latency.cdf.iter().any(|&(us, f)| us > 0 && f.is_finite()))
        .collect()
}

pub(super) fn snapshot_of(s: &SystemResult) -> Option<&SnapshotResult> {
    s.snapshot.as_ref()
}

/// A bar per system with a finite value, and an empty slot per system that failed.
pub(super) fn bars(run: &RunResult, value: impl Fn(&SystemResult) -> Option<f64>) -> Vec<Bar> {
    let out: Vec<Bar> = run
        .systems
        .iter()
        .filter_map(|s| match value(s).filter(|v| v.is_finite()) {
            Some(v) => Some((s.system.clone(), Some(v))),
            None => s.error.is_some().then(|| (s.system.clone(), None)),
        })
        .collect();
    if out.iter().any(|b| b.1.is_some()) {
        out
    } else {
        Vec::new()
    }
}

/// (system, value); `None` for a system that could not be measured.
pub(super) type Bar = (String, Option<f64>);

pub(super) fn cpu_bars(run: &RunResult) -> Vec<Bar> {
    bars(run, |s| {
        let c = s.churn.as_ref()?;
        (c.deliveries > 0).then_some(c.server_cpu_us_per_delivery)
    })
}

pub(super) fn memory_bars(run: &RunResult) -> Vec<Bar> {
    bars(run, |s| {
        Some(snapshot_of(s)?.server_bytes_per_agent / 1024.0)
    })
}

pub(super) fn snapshot_bars(run: &RunResult) -> Vec<Bar> {
    bars(run, |s| Some(snapshot_of(s)?.total_s))
}

/// Saturate steps that can be placed on log axes: (name, capacity, [(deliveries/s, p99 ms, lost)]).
pub(super) type SaturateSeries<'a> = (&'a str, Option<f64>, Vec<(f64, f64, bool)>);

pub(super) fn saturate_series(run: &RunResult) -> Vec<SaturateSeries<'_>> {
    run.systems
        .iter()
        .filter_map(|s| {
            // Sorted by rate: the bisection's steps come after the ramp's.
            let mut steps: Vec<(f64, f64, bool)> = s
                .saturate
                .iter()
                .filter(|c| c.deliveries_per_s.is_finite() && c.deliveries_per_s > 0.0)
                .map(|c| {
                    let p99_ms = (c.latency.p99_us as f64 / 1000.0).max(0.001);
                    (c.deliveries_per_s, p99_ms, c.lost > 0)
                })
                .collect();
            steps.sort_by(|a, b| a.0.total_cmp(&b.0));
            (!steps.is_empty()).then_some((s.system.as_str(), s.capacity_deliveries_per_s, steps))
        })
        .collect()
}

pub(super) fn churn_subtitle(run: &RunResult) -> String {
    format!(
        "churn: {} writes/s for {} s to {} agents",
        fmt_axis(run.rate),
        fmt_axis(run.duration_s),
        fmt_count(run.agents)
    )
}
