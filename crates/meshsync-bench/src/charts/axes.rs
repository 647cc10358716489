//! Axis ranges and tick labels: the "nice" top of a linear axis, whole decades for log axes, and
//! which log ticks carry a label (decades; 2× and 5× too over two decades or less).

use plotters::coord::combinators::LogCoord;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::HEIGHT;
use super::format::fmt_axis;
use super::raster::Raster;
use super::style::{AXIS, GRID, GRID_MINOR, INK, MUTED, Root, label, text_style};

/// A chart's plot area with `X` and `Y` axes of `f64` values.
pub(super) type Plot<'a, 'b, X = RangedCoordf64, Y = RangedCoordf64> =
    ChartContext<'a, Raster<'b>, Cartesian2d<X, Y>>;

/// How one axis is gridded and labeled.
pub(super) struct AxisSpec<'a> {
    /// About how many labeled ticks; 0 for none.
    pub(super) labels: usize,
    /// For a log axis: ticks at 1..9 × each decade, with light grid lines.
    pub(super) minor: bool,
    pub(super) format: &'a dyn Fn(&f64) -> String,
    pub(super) desc: &'a str,
}

/// Grid, axis lines, ticks, tick labels and axis titles.
pub(super) fn draw_mesh<X, Y>(
    root: &Root<'_>,
    plot: &mut Plot<'_, '_, X, Y>,
    x: &AxisSpec<'_>,
    y: &AxisSpec<'_>,
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let blank = |_: &f64| String::new();
    let label_style = text_style(13, MUTED, HPos::Center, VPos::Center);
    if x.minor || y.minor {
        // Asked for 10 points per decade, `plotters` gives a log axis 1..9 × each decade: light
        // grid lines, short ticks, and the labels of a log axis (its format leaves most empty).
        // Decades come twice (as 10 × the one below): they are labeled in the second pass.
        let minors = |a: &AxisSpec<'_>| if a.minor { a.labels * 10 } else { 0 };
        let x_minor = |v: &f64| {
            if is_multiple_of_decade(*v, &[1.0]) {
                String::new()
            } else {
                (x.format)(v)
            }
        };
        let y_minor = |v: &f64| {
            if is_multiple_of_decade(*v, &[1.0]) {
                String::new()
            } else {
                (y.format)(v)
            }
        };
        plot.configure_mesh()
            .x_labels(minors(x))
            .y_labels(minors(y))
            .x_label_formatter(if x.minor { &x_minor } else { &blank })
            .y_label_formatter(if y.minor { &y_minor } else { &blank })
            .bold_line_style(GRID_MINOR)
            .light_line_style(TRANSPARENT)
            .axis_style(AXIS)
            .set_all_tick_mark_size(3)
            .label_style(label_style.clone())
            .draw()?;
    }
    // The decades of a log axis, or the ticks of a linear one.
    plot.configure_mesh()
        .x_labels(x.labels)
        .y_labels(y.labels)
        .x_label_formatter(x.format)
        .y_label_formatter(y.format)
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .axis_style(AXIS)
        .set_all_tick_mark_size(6)
        .label_style(label_style)
        .draw()?;
    // Axis titles centered on the plot area, at fixed distances from the chart's edges.
    let (xs, ys) = plot.plotting_area().get_pixel_range();
    let style = text_style(14, INK, HPos::Center, VPos::Center);
    label(
        root,
        x.desc,
        ((xs.start + xs.end) / 2, HEIGHT as i32 - 24),
        &style,
    )?;
    let style = style.transform(FontTransform::Rotate270);
    label(root, y.desc, (24, (ys.start + ys.end) / 2), &style)?;
    Ok(())
}

/// A log axis over `min..max`. Its start is nudged down a hair: `plotters` computes the first
/// decade tick as 10^ceil(log10(min)), which float rounding can push a decade up (0.1 → 1).
pub(super) fn log_range(min: f64, max: f64) -> LogCoord<f64> {
    ((min * (1.0 - 1e-9))..max).log_scale().into()
}

/// Whole decades between `min` and `max`.
pub(super) fn decades(min: f64, max: f64) -> usize {
    ((max / min).log10().round() as usize).max(1)
}

/// Step of about `target` intervals over `range`: 1, 2, 2.5 or 5 × 10^k.
fn nice_step(range: f64, target: f64) -> f64 {
    let raw = (range / target).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let n = raw / mag;
    let f = if n <= 1.0 {
        1.0
    } else if n <= 2.0 {
        2.0
    } else if n <= 2.5 {
        2.5
    } else if n <= 5.0 {
        5.0
    } else {
        10.0
    };
    f * mag
}

/// The smallest multiple of a nice step that is ≥ `v` (> 0).
pub(super) fn nice_top(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let step = nice_step(v, 5.0);
    (v / step - 1e-9).ceil() * step
}

pub(super) fn decade_floor(v: f64) -> f64 {
    if v > 0.0 && v.is_finite() {
        10f64.powf(v.log10().floor())
    } else {
        1.0
    }
}

pub(super) fn decade_ceil(v: f64) -> f64 {
    if v > 0.0 && v.is_finite() {
        10f64.powf(v.log10().ceil())
    } else {
        1.0
    }
}

/// Whether `v` is `k` × 10^n for one of `ks`.
fn is_multiple_of_decade(v: f64, ks: &[f64]) -> bool {
    if !(v > 0.0 && v.is_finite()) {
        return false;
    }
    let m = v / decade_floor(v * (1.0 + 1e-9));
    ks.iter().any(|k| (m - k).abs() < 1e-6 * k)
}

/// The label of a log-axis tick over `min..max`: decades, and 2× and 5× over two decades or
/// less; empty for the other ticks (`plotters` draws 1..9 × each decade).
pub(super) fn log_tick_label(v: f64, min: f64, max: f64) -> String {
    let few = (max / min).log10() <= 2.0 + 1e-9;
    let ks: &[f64] = if few { &[1.0, 2.0, 5.0] } else { &[1.0] };
    if is_multiple_of_decade(v, ks) {
        fmt_axis(v)
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_labels() {
        assert_eq!(nice_top(22.4), 25.0);
        assert_eq!(nice_top(0.0), 1.0);
        assert_eq!((decade_floor(0.35), decade_ceil(1234.0)), (0.1, 10_000.0));
        let labels: Vec<String> = [0.1, 0.2, 0.5, 1.0, 3.0, 100.0, 1000.0]
            .into_iter()
            .map(|v| log_tick_label(v, 0.1, 1000.0))
            .collect();
        assert_eq!(labels, ["0.1", "", "", "1", "", "100", "1000"]);
        assert_eq!(log_tick_label(20.0, 10.0, 1000.0), "20");
        assert_eq!(log_tick_label(30.0, 10.0, 1000.0), "");
    }
}
