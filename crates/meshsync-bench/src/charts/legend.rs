//! The legend box: one entry per system (and one per failed system), placed in the first corner
//! of the plot area that hides the fewest plotted points.

use super::axes::Axes;
use super::canvas::{Canvas, GUIDE, INK, MUTED, Rgb, WHITE};
use super::text::{HAlign, Style, Text, VAlign};
use crate::model::RunResult;

#[derive(Clone, Copy, Debug)]
pub(super) enum Swatch {
    Line,
    LineMarker,
    /// No sample, muted text: a system that could not be measured.
    Failed,
}

pub(super) struct LegendEntry {
    pub(super) label: String,
    pub(super) color: Rgb,
    pub(super) swatch: Swatch,
}

/// How many points, sampled every 2 px along the polylines, fall inside the rectangle.
pub(super) fn points_inside(
    lines: &[Vec<(f32, f32)>],
    (l, t, r, b): (f32, f32, f32, f32),
) -> usize {
    let mut hits = 0;
    for line in lines {
        for w in line.windows(2) {
            let (a, e) = (w[0], w[1]);
            let len = ((e.0 - a.0).powi(2) + (e.1 - a.1).powi(2)).sqrt();
            let n = (len / 2.0).ceil().max(1.0) as usize;
            for k in 0..=n {
                let f = k as f32 / n as f32;
                let (x, y) = (a.0 + (e.0 - a.0) * f, a.1 + (e.1 - a.1) * f);
                if x >= l && x <= r && y >= t && y <= b {
                    hits += 1;
                }
            }
        }
    }
    hits
}

/// Legend entries for the systems that could not be measured.
pub(super) fn failed_entries(run: &RunResult) -> Vec<LegendEntry> {
    run.systems
        .iter()
        .filter(|s| s.error.is_some())
        .map(|s| LegendEntry {
            label: format!("{}   failed", s.system),
            color: MUTED,
            swatch: Swatch::Failed,
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Corner {
    TopLeft,
    TopRight,
    BottomLeft,
    BottomRight,
}

/// Draws the legend in the first of `corners` that covers the fewest points of the `drawn`
/// polylines (pixel coordinates).
pub(super) fn draw_legend(
    c: &mut Canvas,
    text: &Text,
    axes: &Axes,
    entries: &[LegendEntry],
    corners: &[Corner],
    drawn: &[Vec<(f32, f32)>],
) {
    if entries.is_empty() {
        return;
    }
    const SIZE: f32 = 13.0;
    const ROW: f32 = 22.0;
    const SAMPLE: f32 = 28.0;
    let text_w = entries
        .iter()
        .map(|e| text.width(&e.label, SIZE))
        .fold(0.0f32, f32::max);
    let w = (12.0 + SAMPLE + 8.0 + text_w + 12.0).round();
    let h = (entries.len() as f32 * ROW + 12.0).round();
    let origin = |at: Corner| {
        let x = match at {
            Corner::TopLeft | Corner::BottomLeft => axes.left + 14.0,
            Corner::TopRight | Corner::BottomRight => axes.right - 14.0 - w,
        };
        let y = match at {
            Corner::TopLeft | Corner::TopRight => axes.top + 12.0,
            Corner::BottomLeft | Corner::BottomRight => axes.bottom - 14.0 - h,
        };
        (x.round(), y.round())
    };
    let mut best: Option<((f32, f32), usize)> = None;
    for &at in corners {
        let (x, y) = origin(at);
        let hits = points_inside(drawn, (x - 6.0, y - 6.0, x + w + 6.0, y + h + 6.0));
        if best.is_none_or(|(_, b)| hits < b) {
            best = Some(((x, y), hits));
        }
    }
    let ((x0, y0), _) = best.unwrap_or((origin(Corner::TopLeft), 0));
    c.fill_rect(x0, y0, x0 + w, y0 + h, WHITE);
    let (l, t, r, b) = (x0 + 0.5, y0 + 0.5, x0 + w - 0.5, y0 + h - 0.5);
    c.stroke(&[(l, t), (r, t), (r, b), (l, b), (l, t)], GUIDE, 1.0, None);
    for (i, e) in entries.iter().enumerate() {
        let cy = y0 + 6.0 + ROW * (i as f32 + 0.5);
        let (sx0, sx1) = (x0 + 12.0, x0 + 12.0 + SAMPLE);
        match e.swatch {
            Swatch::Line => c.stroke(&[(sx0, cy), (sx1, cy)], e.color, 3.0, None),
            Swatch::LineMarker => {
                c.stroke(&[(sx0, cy), (sx1, cy)], e.color, 3.0, None);
                c.fill_circle((sx0 + sx1) / 2.0, cy, 4.5, e.color);
            }
            Swatch::Failed => {}
        }
        let color = if let Swatch::Failed = e.swatch {
            MUTED
        } else {
            INK
        };
        text.draw(
            c,
            &e.label,
            sx1 + 8.0,
            cy,
            Style::new(SIZE, color, HAlign::Left, VAlign::Middle),
        );
    }
}
