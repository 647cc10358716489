//! The two line charts: the write→agent latency CDF of `churn` and the p99-vs-throughput curve
//! of `saturate`, both on log axes, with their reference lines (p50/p90/p99 guides, the 1 s limit).

use super::axes::{
    Axes, Scale, Tick, decade_ceil, decade_floor, frame, lin_ticks, log_ticks, nice_top,
};
use super::canvas::{Canvas, GUIDE, LIMIT, MUTED, WHITE, crisp, system_color};
use super::format::{fmt_axis, fmt_count, sig3};
use super::legend::{Corner, LegendEntry, Swatch, draw_legend, failed_entries};
use super::series::{SaturateSeries, cdf_series, churn_subtitle, saturate_series};
use super::text::{HAlign, Style, Text, VAlign};
use crate::model::RunResult;

pub(super) fn latency_cdf(run: &RunResult, text: &Text) -> Canvas {
    let series = cdf_series(run);
    let (mut min_ms, mut max_ms) = (f64::INFINITY, 0.0f64);
    for (_, c) in &series {
        for &(us, _) in &c.latency.cdf {
            if us > 0 {
                let ms = us as f64 / 1000.0;
                min_ms = min_ms.min(ms);
                max_ms = max_ms.max(ms);
            }
        }
    }
    let lo = if min_ms.is_finite() {
        decade_floor(min_ms).min(0.1)
    } else {
        0.1
    };
    let hi = decade_ceil(max_ms).max(1000.0);
    let mut c = frame(
        text,
        "Write → agent latency CDF",
        &format!("{} · every (agent, update) pair", churn_subtitle(run)),
    );
    let axes = Axes::new(
        Scale::Log { min: lo, max: hi },
        Scale::Lin { min: 0.0, max: 1.0 },
    );
    let yticks: Vec<Tick> = (0..=5)
        .map(|i| Tick::major(i as f64 * 0.2, fmt_axis(i as f64 * 0.2)))
        .collect();
    axes.draw(
        &mut c,
        text,
        &log_ticks(lo, hi),
        &yticks,
        "latency from etcd write to agent receipt (ms, log scale)",
        "fraction of deliveries ≤ latency",
    );
    for (f, name) in [(0.5, "p50"), (0.9, "p90"), (0.99, "p99")] {
        let y = crisp(axes.py(f));
        c.stroke(
            &[(axes.left, y), (axes.right, y)],
            GUIDE,
            1.0,
            Some((5.0, 4.0)),
        );
        text.draw(
            &mut c,
            name,
            axes.left + 6.0,
            y - 3.0,
            Style::new(11.0, MUTED, HAlign::Left, VAlign::Baseline),
        );
    }
    let mut legend = Vec::new();
    let mut drawn = Vec::new();
    for (name, churn) in &series {
        let color = system_color(name);
        let mut pts: Vec<(f32, f32)> = Vec::with_capacity(churn.latency.cdf.len() + 1);
        for &(us, frac) in &churn.latency.cdf {
            if !frac.is_finite() {
                continue;
            }
            let x = axes.px((us as f64 / 1000.0).max(lo));
            let y = axes.py(frac.clamp(0.0, 1.0));
            if pts.is_empty() && frac > 0.0 {
                pts.push((x, axes.py(0.0)));
            }
            pts.push((x, y));
        }
        c.stroke(&pts, color, 2.5, None);
        drawn.push(pts);
        legend.push(LegendEntry {
            label: format!(
                "{name}   p99 {} ms",
                sig3(churn.latency.p99_us as f64 / 1000.0)
            ),
            color,
            swatch: Swatch::Line,
        });
    }
    legend.extend(failed_entries(run));
    let corners = [
        Corner::BottomRight,
        Corner::TopLeft,
        Corner::BottomLeft,
        Corner::TopRight,
    ];
    draw_legend(&mut c, text, &axes, &legend, &corners, &drawn);
    c
}

pub(super) fn saturate(run: &RunResult, text: &Text) -> Canvas {
    let series = saturate_series(run);
    let (x_scale, y_lo, y_hi) = saturate_ranges(&series);
    let mut c = frame(
        text,
        "Saturation: p99 latency vs delivered updates/s",
        &format!(
            "saturate: write rate stepped up until p99 > 1 s or an update is lost · {} agents · \
             hollow marker = updates lost",
            fmt_count(run.agents)
        ),
    );
    let axes = Axes::new(
        x_scale,
        Scale::Log {
            min: y_lo,
            max: y_hi,
        },
    );
    let (xticks, x_label) = match x_scale {
        Scale::Log { min, max } => (
            log_ticks(min, max),
            "delivered updates/s (writes × agents, log scale)",
        ),
        Scale::Lin { min, max } => (lin_ticks(min, max), "delivered updates/s (writes × agents)"),
    };
    axes.draw(
        &mut c,
        text,
        &xticks,
        &log_ticks(y_lo, y_hi),
        x_label,
        "p99 write → agent latency (ms, log scale)",
    );
    let y1s = crisp(axes.py(1000.0));
    c.stroke(
        &[(axes.left, y1s), (axes.right, y1s)],
        LIMIT,
        1.5,
        Some((8.0, 5.0)),
    );
    text.draw(
        &mut c,
        "1 s limit",
        axes.right - 6.0,
        y1s - 5.0,
        Style::new(12.0, LIMIT, HAlign::Right, VAlign::Baseline),
    );
    let mut legend = Vec::new();
    let mut drawn = Vec::new();
    for (name, capacity, steps) in &series {
        let color = system_color(name);
        let pts: Vec<(f32, f32)> = steps
            .iter()
            .map(|&(x, y, _)| (axes.px(x), axes.py(y)))
            .collect();
        c.stroke(&pts, color, 2.0, None);
        for (&(x, y), &(_, _, lost)) in pts.iter().zip(steps) {
            c.fill_circle(x, y, 5.5, WHITE);
            c.fill_circle(x, y, 4.5, color);
            if lost {
                c.fill_circle(x, y, 2.5, WHITE);
            }
        }
        drawn.push(pts);
        let cap = match capacity {
            Some(v) if v.is_finite() => format!("capacity {}/s", fmt_axis(*v)),
            _ => "no step within limits".into(),
        };
        legend.push(LegendEntry {
            label: format!("{name}   {cap}"),
            color,
            swatch: Swatch::LineMarker,
        });
    }
    legend.extend(failed_entries(run));
    let corners = [
        Corner::TopLeft,
        Corner::BottomRight,
        Corner::TopRight,
        Corner::BottomLeft,
    ];
    draw_legend(&mut c, text, &axes, &legend, &corners, &drawn);
    c
}

/// The saturate chart's x scale (log when the rates span more than ×8) and y range (ms, log).
fn saturate_ranges(series: &[SaturateSeries<'_>]) -> (Scale, f64, f64) {
    let (mut x_min, mut x_max, mut y_min, mut y_max) =
        (f64::INFINITY, 0.0f64, f64::INFINITY, 0.0f64);
    for (_, _, steps) in series {
        for &(x, y, _) in steps {
            x_min = x_min.min(x);
            x_max = x_max.max(x);
            y_min = y_min.min(y);
            y_max = y_max.max(y);
        }
    }
    let x_scale = if x_max / x_min > 8.0 {
        Scale::Log {
            min: decade_floor(x_min),
            max: decade_ceil(x_max),
        }
    } else {
        Scale::Lin {
            min: 0.0,
            max: nice_top(x_max * 1.05),
        }
    };
    let y_lo = decade_floor(y_min).min(100.0);
    let y_hi = decade_ceil(y_max.max(1000.0) * 1.5);
    (x_scale, y_lo, y_hi)
}
