//! The bar charts (one bar per system, value labels, an optional dashed target): server CPU per
//! delivery, server memory per agent, time until all agents are in sync.

use super::axes::{Axes, Scale, frame, lin_ticks, nice_top};
use super::canvas::{AXIS, Canvas, INK, LIMIT, MUTED, crisp, system_color};
use super::format::{fmt_count, sig3};
use super::series::{Bar, churn_subtitle, cpu_bars, memory_bars, snapshot_bars};
use super::text::{HAlign, Style, Text, VAlign};
use crate::model::RunResult;

pub(super) fn cpu(run: &RunResult, text: &Text) -> Canvas {
    bar_chart(
        text,
        &BarChart {
            title: "Server CPU per delivered update".into(),
            subtitle: format!(
                "{} · CPU of every server-side process (etcd + fan-out)",
                churn_subtitle(run)
            ),
            y_label: "server CPU per delivered update (µs)".into(),
            unit: " µs",
            bars: cpu_bars(run),
            target: None,
        },
    )
}

pub(super) fn memory(run: &RunResult, text: &Text) -> Canvas {
    bar_chart(
        text,
        &BarChart {
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
        },
    )
}

pub(super) fn snapshot(run: &RunResult, text: &Text) -> Canvas {
    bar_chart(
        text,
        &BarChart {
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
        },
    )
}

/// A bar per system, value labels on the bars, an optional dashed target line.
pub(super) struct BarChart {
    pub(super) title: String,
    pub(super) subtitle: String,
    pub(super) y_label: String,
    /// Appended to the value labels.
    pub(super) unit: &'static str,
    pub(super) bars: Vec<Bar>,
    /// (value, label) of a dashed reference line, drawn when it falls visibly inside the axis.
    pub(super) target: Option<(f64, String)>,
}

pub(super) fn bar_chart(text: &Text, chart: &BarChart) -> Canvas {
    let mut c = frame(text, &chart.title, &chart.subtitle);
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
    let axes = Axes::new(
        Scale::Lin { min: 0.0, max: 1.0 },
        Scale::Lin {
            min: bottom,
            max: top,
        },
    );
    axes.draw(
        &mut c,
        text,
        &[],
        &lin_ticks(bottom, top),
        "",
        &chart.y_label,
    );
    if let Some((value, label)) = &chart.target {
        let span = top - bottom;
        if *value <= top && *value - bottom >= 0.04 * span {
            let y = crisp(axes.py(*value));
            c.stroke(
                &[(axes.left, y), (axes.right, y)],
                LIMIT,
                1.5,
                Some((8.0, 5.0)),
            );
            text.draw(
                &mut c,
                label,
                axes.right - 6.0,
                y - 5.0,
                Style::new(12.0, LIMIT, HAlign::Right, VAlign::Baseline),
            );
        }
    }
    let n = chart.bars.len().max(1) as f32;
    let slot = (axes.right - axes.left) / n;
    let bar_w = (slot * 0.55).min(130.0);
    let zero = axes.py(0.0).round();
    for (i, (name, v)) in chart.bars.iter().enumerate() {
        let cx = axes.left + slot * (i as f32 + 0.5);
        text.draw(
            &mut c,
            name,
            cx,
            axes.bottom + 12.0,
            Style::new(15.0, INK, HAlign::Center, VAlign::Top),
        );
        let Some(v) = v else {
            let style = Style::new(14.0, MUTED, HAlign::Center, VAlign::Baseline);
            text.draw(&mut c, "failed", cx, zero - 7.0, style);
            continue;
        };
        let y = axes.py(*v).round();
        let color = system_color(name);
        let (y0, y1) = if y <= zero { (y, zero) } else { (zero, y) };
        c.fill_rect(cx - bar_w / 2.0, y0, cx + bar_w / 2.0, y1, color);
        let label = format!("{}{}", sig3(*v), chart.unit);
        let style = Style::new(14.0, INK, HAlign::Center, VAlign::Baseline);
        // Above the bar, or above the zero line for a negative one (RSS noise).
        text.draw(&mut c, &label, cx, y0.min(zero) - 7.0, style);
    }
    if bottom < 0.0 {
        c.stroke(
            &[(axes.left, zero + 0.5), (axes.right, zero + 0.5)],
            AXIS,
            1.0,
            None,
        );
    }
    c
}
