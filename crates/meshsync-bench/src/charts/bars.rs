//! The bar charts (one bar per system, value labels, an optional dashed target): server CPU per
//! delivery, server memory per agent, time until all agents are in sync.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::axes::{AxisSpec, draw_mesh, nice_top};
use super::format::{fmt_axis, fmt_count, sig3};
use super::series::{Bar, churn_subtitle, cpu_bars, memory_bars, snapshot_bars};
use super::style::{
    AXIS, INK, LIMIT, MUTED, Root, label, plot_area, render, system_color, text_style,
};
use crate::model::RunResult;

pub(super) fn cpu(run: &RunResult) -> anyhow::Result<Vec<u8>> {
    bar_chart(&BarChart {
        title: "Server CPU per delivered update".into(),
        subtitle: format!(
            "{} · CPU of every server-side process (etcd + fan-out)",
            churn_subtitle(run)
        ),
        y_label: "server CPU per delivered update (µs)".into(),
        unit: " µs",
        bars: cpu_bars(run),
        target: None,
    })
}

pub(super) fn memory(run: &RunResult) -> anyhow::Result<Vec<u8>> {
    bar_chart(&BarChart {
        title: "Server memory per connected agent".into(),
        subtitle: format!(
            "snapshot: (RSS with {} agents − RSS with none) / {}, {} keys",
            fmt_count(run.agents),
            fmt_count(run.agents),
            fmt_count(run.keys)
        ),
        y_label: "server memory per agent (KiB)".into(),
        unit: " KiB",
        bars: memory_bars(run),
        target: Some((8.0, "target ≤ 8 KiB".into())),
    })
}

pub(super) fn snapshot(run: &RunResult) -> anyhow::Result<Vec<u8>> {
    bar_chart(&BarChart {
        title: "Time until all agents are in sync".into(),
        subtitle: format!(
            "snapshot: {} agents connect at once to {} keys of ~{} B",
            fmt_count(run.agents),
            fmt_count(run.keys),
            run.value_bytes
        ),
        y_label: "seconds until every agent holds every key".into(),
        unit: " s",
        bars: snapshot_bars(run),
        target: None,
    })
}

/// A bar per system, value labels on the bars, an optional dashed target line.
struct BarChart {
    title: String,
    subtitle: String,
    y_label: String,
    /// Appended to the value labels.
    unit: &'static str,
    bars: Vec<Bar>,
    /// (value, label) of a dashed reference line, drawn when it falls visibly inside the axis.
    target: Option<(f64, String)>,
}

fn bar_chart(chart: &BarChart) -> anyhow::Result<Vec<u8>> {
    render(&chart.title, &chart.subtitle, |root| draw_bars(root, chart))
}

fn draw_bars(root: &Root<'_>, chart: &BarChart) -> anyhow::Result<()> {
    let values = chart.bars.iter().filter_map(|b| b.1);
    let v_max = values.clone().fold(0.0f64, f64::max);
    let v_min = values.fold(0.0f64, f64::min);
    let top = if v_max > 0.0 {
        nice_top(v_max * 1.12)
    } else {
        1.0
    };
    let bottom = if v_min < 0.0 {
        -nice_top(-v_min * 1.12)
    } else {
        0.0
    };
    let n = chart.bars.len().max(1);
    // x: one unit-wide slot per bar.
    let mut plot = plot_area(root).build_cartesian_2d(0.0..n as f64, bottom..top)?;
    let x = AxisSpec {
        labels: 0,
        minor: false,
        format: &|_| String::new(),
        desc: "",
    };
    let y = AxisSpec {
        labels: 7,
        minor: false,
        format: &|v| fmt_axis(*v),
        desc: &chart.y_label,
    };
    draw_mesh(root, &mut plot, &x, &y)?;
    let spec = plot.as_coord_spec().clone();
    let px = |x: f64, y: f64| spec.translate(&(x, y));
    let visible = |v: f64| v <= top && v - bottom >= 0.04 * (top - bottom);
    if let Some((value, text)) = chart.target.as_ref().filter(|t| visible(t.0)) {
        let line = [(0.0, *value), (n as f64, *value)];
        plot.draw_series(DashedLineSeries::new(line, 8, 5, LIMIT.stroke_width(2)))?;
        let (x, y) = px(n as f64, *value);
        let style = text_style(12, LIMIT, HPos::Right, VPos::Bottom);
        label(root, text, (x - 6, y - 4), &style)?;
    }
    // Bars 55% of their slot, at most 130 px wide.
    let slot_px = f64::from(px(1.0, 0.0).0 - px(0.0, 0.0).0).max(1.0);
    let half = (0.55 / 2.0f64).min(65.0 / slot_px);
    let zero_y = px(0.0, 0.0).1;
    for (i, (name, v)) in chart.bars.iter().enumerate() {
        let cx = i as f64 + 0.5;
        let (x, _) = px(cx, 0.0);
        let (_, axis_y) = px(cx, bottom);
        label(
            root,
            name,
            (x, axis_y + 12),
            &text_style(15, INK, HPos::Center, VPos::Top),
        )?;
        let Some(v) = v else {
            let style = text_style(14, MUTED, HPos::Center, VPos::Bottom);
            label(root, "failed", (x, zero_y - 7), &style)?;
            continue;
        };
        let color = system_color(name);
        plot.draw_series([Rectangle::new(
            [(cx - half, 0.0), (cx + half, *v)],
            color.filled(),
        )])?;
        // Above the bar, or above the zero line for a negative one (RSS noise).
        let y = px(cx, v.max(0.0)).1;
        let text = format!("{}{}", sig3(*v), chart.unit);
        let style = text_style(14, INK, HPos::Center, VPos::Bottom);
        label(root, &text, (x, y - 7), &style)?;
    }
    if bottom < 0.0 {
        plot.draw_series(LineSeries::new([(0.0, 0.0), (n as f64, 0.0)], AXIS))?;
    }
    Ok(())
}
