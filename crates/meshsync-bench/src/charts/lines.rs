//! The two line charts: the write→agent latency CDF of `churn` and the p99-vs-throughput curve
//! of `saturate`, both on log axes, with their reference lines (p50/p90/p99 guides, the 1 s limit)
//! and a legend in the corner of the plot area that hides the fewest plotted points.

use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::axes::{
    AxisSpec, Plot, decade_ceil, decade_floor, decades, draw_mesh, log_range, log_tick_label,
    nice_top,
};
use super::format::{fmt_axis, fmt_count, sig3};
use super::series::{SaturateSeries, cdf_series, churn_subtitle, saturate_series};
use super::style::{
    GUIDE, INK, LIMIT, MUTED, Root, label, plot_area, render, system_color, text_style,
};
use crate::model::RunResult;

pub(super) fn latency_cdf(run: &RunResult) -> anyhow::Result<Vec<u8>> {
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
    let subtitle = format!("{} · every (agent, update) pair", churn_subtitle(run));
    render("Write → agent latency CDF", &subtitle, |root| {
        let mut plot = plot_area(root).build_cartesian_2d(log_range(lo, hi), 0.0..1.0)?;
        let x = AxisSpec {
            labels: decades(lo, hi),
            minor: true,
            format: &|v| log_tick_label(*v, lo, hi),
            desc: "latency from etcd write to agent receipt (ms, log scale)",
        };
        let y = AxisSpec {
            labels: 6,
            minor: false,
            format: &|v| fmt_axis(*v),
            desc: "fraction of deliveries ≤ latency",
        };
        draw_mesh(root, &mut plot, &x, &y)?;
        for (f, name) in [(0.5, "p50"), (0.9, "p90"), (0.99, "p99")] {
            let guide = [(lo, f), (hi, f)];
            plot.draw_series(DashedLineSeries::new(guide, 5, 4, GUIDE.into()))?;
            let (x, y) = plot.backend_coord(&(lo, f));
            let style = text_style(11, MUTED, HPos::Left, VPos::Bottom);
            label(root, name, (x + 6, y - 3), &style)?;
        }
        let (mut drawn, mut labels) = (Vec::new(), Vec::new());
        for (name, churn) in &series {
            let color = system_color(name);
            let mut pts: Vec<(f64, f64)> = Vec::with_capacity(churn.latency.cdf.len() + 1);
            for &(us, frac) in &churn.latency.cdf {
                if !frac.is_finite() {
                    continue;
                }
                let x = (us as f64 / 1000.0).max(lo);
                if pts.is_empty() && frac > 0.0 {
                    pts.push((x, 0.0));
                }
                pts.push((x, frac.clamp(0.0, 1.0)));
            }
            drawn.push(pts.iter().map(|p| plot.backend_coord(p)).collect());
            let text = format!(
                "{name}   p99 {} ms",
                sig3(churn.latency.p99_us as f64 / 1000.0)
            );
            plot.draw_series(LineSeries::new(pts, color.stroke_width(3)))?
                .label(&text)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 24, y)], color.stroke_width(3))
                });
            labels.push(text);
        }
        let corners = [
            Corner::BottomRight,
            Corner::TopLeft,
            Corner::BottomLeft,
            Corner::TopRight,
        ];
        draw_legend(root, &mut plot, run, labels, &corners, &drawn)
    })
}

pub(super) fn saturate(run: &RunResult) -> anyhow::Result<Vec<u8>> {
    let series = saturate_series(run);
    let subtitle = format!(
        "saturate: write rate stepped up until p99 > 1 s or an update is lost · {} agents · \
         hollow marker = updates lost",
        fmt_count(run.agents)
    );
    let title = "Saturation: p99 latency vs delivered updates/s";
    let r = saturate_ranges(&series);
    render(title, &subtitle, |root| {
        let (lo, hi) = (r.y_lo, r.y_hi);
        let y = AxisSpec {
            labels: decades(lo, hi),
            minor: true,
            format: &|v| log_tick_label(*v, lo, hi),
            desc: "p99 write → agent latency (ms, log scale)",
        };
        let y_range = log_range(lo, hi);
        let mut area = plot_area(root);
        if r.x_log {
            let (lo, hi) = (r.x_min, r.x_max);
            let x = AxisSpec {
                labels: decades(lo, hi),
                minor: true,
                format: &|v| log_tick_label(*v, lo, hi),
                desc: "delivered updates/s (writes × agents, log scale)",
            };
            let plot = area.build_cartesian_2d(log_range(lo, hi), y_range)?;
            draw_saturate(root, plot, &x, &y, run, &series)
        } else {
            let x = AxisSpec {
                labels: 6,
                minor: false,
                format: &|v| fmt_axis(*v),
                desc: "delivered updates/s (writes × agents)",
            };
            let plot = area.build_cartesian_2d(r.x_min..r.x_max, y_range)?;
            draw_saturate(root, plot, &x, &y, run, &series)
        }
    })
}

fn draw_saturate<'a, 'b: 'a, X, Y>(
    root: &Root<'b>,
    mut plot: Plot<'a, 'b, X, Y>,
    x: &AxisSpec<'_>,
    y: &AxisSpec<'_>,
    run: &RunResult,
    series: &[SaturateSeries<'_>],
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    draw_mesh(root, &mut plot, x, y)?;
    let (x0, x1) = (plot.x_range().start, plot.x_range().end);
    let limit = [(x0, 1000.0), (x1, 1000.0)];
    plot.draw_series(DashedLineSeries::new(limit, 8, 5, LIMIT.stroke_width(2)))?;
    let (lx, ly) = plot.backend_coord(&(x1, 1000.0));
    let style = text_style(12, LIMIT, HPos::Right, VPos::Bottom);
    label(root, "1 s limit", (lx - 6, ly - 4), &style)?;
    let (mut drawn, mut labels) = (Vec::new(), Vec::new());
    for (name, capacity, steps) in series {
        let color = system_color(name);
        let pts: Vec<(f64, f64)> = steps.iter().map(|&(x, y, _)| (x, y)).collect();
        drawn.push(pts.iter().map(|p| plot.backend_coord(p)).collect());
        let cap = match capacity {
            Some(v) if v.is_finite() => format!("capacity {}/s", fmt_axis(*v)),
            _ => "no step within limits".into(),
        };
        let text = format!("{name}   {cap}");
        plot.draw_series(LineSeries::new(pts, color.stroke_width(2)))?
            .label(&text)
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new([(0, 0), (24, 0)], color.stroke_width(3))
                    + Circle::new((12, 0), 4, color.filled())
            });
        labels.push(text);
        // A white-ringed dot per step; hollow when the step lost updates.
        plot.draw_series(steps.iter().map(|&(x, y, _)| {
            EmptyElement::at((x, y))
                + Circle::new((0, 0), 6, WHITE.filled())
                + Circle::new((0, 0), 5, color.filled())
        }))?;
        let lost = steps.iter().filter(|s| s.2);
        plot.draw_series(lost.map(|&(x, y, _)| Circle::new((x, y), 2, WHITE.filled())))?;
    }
    let corners = [
        Corner::TopLeft,
        Corner::BottomRight,
        Corner::TopRight,
        Corner::BottomLeft,
    ];
    draw_legend(root, &mut plot, run, labels, &corners, &drawn)
}

/// The saturate chart's axes.
struct SaturateRanges {
    /// Log when the rates span more than ×8.
    x_log: bool,
    x_min: f64,
    x_max: f64,
    /// Log, ms.
    y_lo: f64,
    y_hi: f64,
}

fn saturate_ranges(series: &[SaturateSeries<'_>]) -> SaturateRanges {
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
    let x_log = x_max / x_min > 8.0;
    let (x_min, x_max) = if x_log {
        (decade_floor(x_min), decade_ceil(x_max))
    } else {
        (0.0, nice_top(x_max * 1.05))
    };
    SaturateRanges {
        x_log,
        x_min,
        x_max,
        y_lo: decade_floor(y_min).min(100.0),
        y_hi: decade_ceil(y_max.max(1000.0) * 1.5),
    }
}

#[derive(Clone, Copy, Debug)]
enum Corner {
    TopLeft,
    TopRight,
    BottomLeft,
    BottomRight,
}

/// How many points, sampled every 2 px along the polylines, fall inside the rectangle.
fn points_inside(lines: &[Vec<(i32, i32)>], (l, t, r, b): (i32, i32, i32, i32)) -> usize {
    let mut hits = 0;
    for line in lines {
        for w in line.windows(2) {
            let (a, e) = (
                (w[0].0 as f32, w[0].1 as f32),
                (w[1].0 as f32, w[1].1 as f32),
            );
            let len = ((e.0 - a.0).powi(2) + (e.1 - a.1).powi(2)).sqrt();
            let n = (len / 2.0).ceil().max(1.0) as usize;
            for k in 0..=n {
                let f = k as f32 / n as f32;
                let (x, y) = (a.0 + (e.0 - a.0) * f, a.1 + (e.1 - a.1) * f);
                if x >= l as f32 && x <= r as f32 && y >= t as f32 && y <= b as f32 {
                    hits += 1;
                }
            }
        }
    }
    hits
}

/// The legend (one entry per series, `labels`, then one per failed system), in the first of `corners`
/// that covers the fewest points of the `drawn` polylines (pixel coordinates).
fn draw_legend<'a, 'b: 'a, X: Ranged, Y: Ranged>(
    root: &Root<'b>,
    plot: &mut Plot<'a, 'b, X, Y>,
    run: &RunResult,
    mut labels: Vec<String>,
    corners: &[Corner],
    drawn: &[Vec<(i32, i32)>],
) -> anyhow::Result<()> {
    const SIZE: u32 = 13;
    const ROW: i32 = 18;
    // `plotters` lays the legend out as: 10 px margin, 30 px swatch, the labels, 10 px margin.
    for s in run.systems.iter().filter(|s| s.error.is_some()) {
        let failed = format!("{}   failed", s.system);
        let nothing = std::iter::empty::<Circle<(X::ValueType, Y::ValueType), i32>>();
        plot.draw_series(nothing)?.label(&failed);
        labels.push(failed);
    }
    if labels.is_empty() {
        return Ok(());
    }
    let style = text_style(SIZE, INK, HPos::Left, VPos::Top);
    let mut text_w = 0;
    for l in &labels {
        text_w = text_w.max(root.estimate_text_size(l, &style)?.0 as i32);
    }
    let (w, h) = (text_w + 50, labels.len() as i32 * ROW + 20);
    let area = plot.plotting_area().get_pixel_range();
    let (left, top, right, bottom) = (area.0.start, area.1.start, area.0.end, area.1.end);
    let origin = |at: Corner| match at {
        Corner::TopLeft => (left + 14, top + 12),
        Corner::TopRight => (right - 14 - w, top + 12),
        Corner::BottomLeft => (left + 14, bottom - 14 - h),
        Corner::BottomRight => (right - 14 - w, bottom - 14 - h),
    };
    let mut best: Option<((i32, i32), usize)> = None;
    for &at in corners {
        let (x, y) = origin(at);
        let hits = points_inside(drawn, (x - 6, y - 6, x + w + 6, y + h + 6));
        if best.is_none_or(|(_, b)| hits < b) {
            best = Some(((x, y), hits));
        }
    }
    let ((x, y), _) = best.unwrap_or((origin(Corner::TopLeft), 0));
    plot.configure_series_labels()
        .position(SeriesLabelPosition::Coordinate(x - left, y - top))
        .background_style(WHITE)
        .border_style(GUIDE)
        .label_font(style)
        .draw()?;
    Ok(())
}
