//! PNG charts of a run.
//!
//! Pure Rust and self-contained: a tiny RGB raster [`Canvas`] (anti-aliased thick polylines with
//! optional dashes, rectangles, round markers) encoded with the `png` crate, text rendered by
//! `ab_glyph` from a TTF found at runtime ([`Text`]), axis helpers ([`Scale`], [`Axes`], ticks,
//! legend) and one function per chart. Without a font the charts are drawn without text.

use std::path::{Path, PathBuf};

use ab_glyph::{Font, FontVec, PxScale, ScaleFont, point};
use anyhow::Context;

use crate::model::{ChurnResult, RunResult, SnapshotResult, SystemResult};

/// Size of every chart, pixels.
pub const WIDTH: u32 = 900;
pub const HEIGHT: u32 = 560;

/// Where a TTF is looked for, after `$MESHSYNC_BENCH_FONT`.
const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Writes every chart the run has data for into `dir` (which must exist); returns their paths.
pub fn write_charts(run: &RunResult, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let text = Text::load();
    if text.font.is_none() {
        eprintln!(
            "meshsync-bench: no font found (set MESHSYNC_BENCH_FONT or install DejaVuSans.ttf); \
             charts are drawn without text"
        );
    }
    write_charts_with(run, dir, &text)
}

/// The charts `run` has data for, as (file name, caption), in the order they are written.
pub fn planned(run: &RunResult) -> Vec<(&'static str, &'static str)> {
    Chart::ALL
        .iter()
        .filter(|c| c.has_data(run))
        .map(|c| (c.file(), c.caption()))
        .collect()
}

fn write_charts_with(run: &RunResult, dir: &Path, text: &Text) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for chart in Chart::ALL.iter().filter(|c| c.has_data(run)) {
        let path = dir.join(chart.file());
        chart.draw(run, text).save(&path)?;
        written.push(path);
    }
    Ok(written)
}

// ---------------------------------------------------------------------------------------------
// The charts
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Chart {
    LatencyCdf,
    Cpu,
    Memory,
    Snapshot,
    Saturate,
}

impl Chart {
    const ALL: [Chart; 5] = [
        Chart::LatencyCdf,
        Chart::Cpu,
        Chart::Memory,
        Chart::Snapshot,
        Chart::Saturate,
    ];

    fn file(self) -> &'static str {
        match self {
            Chart::LatencyCdf => "latency-cdf.png",
            Chart::Cpu => "cpu.png",
            Chart::Memory => "memory.png",
            Chart::Snapshot => "snapshot.png",
            Chart::Saturate => "saturate.png",
        }
    }

    fn caption(self) -> &'static str {
        match self {
            Chart::LatencyCdf => "Write→agent latency CDF (churn)",
            Chart::Cpu => "Server CPU per delivered update (churn)",
            Chart::Memory => "Server memory per connected agent (snapshot)",
            Chart::Snapshot => "Time until all agents are in sync (snapshot)",
            Chart::Saturate => "p99 latency vs delivered updates/s (saturate)",
        }
    }

    fn has_data(self, run: &RunResult) -> bool {
        match self {
            Chart::LatencyCdf => !cdf_series(run).is_empty(),
            Chart::Cpu => !cpu_bars(run).is_empty(),
            Chart::Memory => !memory_bars(run).is_empty(),
            Chart::Snapshot => !snapshot_bars(run).is_empty(),
            Chart::Saturate => !saturate_series(run).is_empty(),
        }
    }

    fn draw(self, run: &RunResult, text: &Text) -> Canvas {
        match self {
            Chart::LatencyCdf => latency_cdf(run, text),
            Chart::Cpu => cpu(run, text),
            Chart::Memory => memory(run, text),
            Chart::Snapshot => snapshot(run, text),
            Chart::Saturate => saturate(run, text),
        }
    }
}

/// Systems with a `churn` CDF: (name, churn).
fn cdf_series(run: &RunResult) -> Vec<(&str, &ChurnResult)> {
    run.systems
        .iter()
        .filter_map(|s| Some((s.system.as_str(), s.churn.as_ref()?)))
        .filter(|(_, c)| c.latency.cdf.iter().any(|&(us, f)| us > 0 && f.is_finite()))
        .collect()
}

fn snapshot_of(s: &SystemResult) -> Option<&SnapshotResult> {
    s.snapshot.as_ref()
}

/// A bar per system with a finite value, and an empty slot per system that failed.
fn bars(run: &RunResult, value: impl Fn(&SystemResult) -> Option<f64>) -> Vec<Bar> {
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
type Bar = (String, Option<f64>);

fn cpu_bars(run: &RunResult) -> Vec<Bar> {
    bars(run, |s| {
        let c = s.churn.as_ref()?;
        (c.deliveries > 0).then_some(c.server_cpu_us_per_delivery)
    })
}

fn memory_bars(run: &RunResult) -> Vec<Bar> {
    bars(run, |s| {
        Some(snapshot_of(s)?.server_bytes_per_agent / 1024.0)
    })
}

fn snapshot_bars(run: &RunResult) -> Vec<Bar> {
    bars(run, |s| Some(snapshot_of(s)?.total_s))
}

/// Saturate steps that can be placed on log axes: (name, capacity, [(deliveries/s, p99 ms, lost)]).
type SaturateSeries<'a> = (&'a str, Option<f64>, Vec<(f64, f64, bool)>);

fn saturate_series(run: &RunResult) -> Vec<SaturateSeries<'_>> {
    run.systems
        .iter()
        .filter_map(|s| {
            let steps: Vec<(f64, f64, bool)> = s
                .saturate
                .iter()
                .filter(|c| c.deliveries_per_s.is_finite() && c.deliveries_per_s > 0.0)
                .map(|c| {
                    let p99_ms = (c.latency.p99_us as f64 / 1000.0).max(0.001);
                    (c.deliveries_per_s, p99_ms, c.lost > 0)
                })
                .collect();
            (!steps.is_empty()).then_some((s.system.as_str(), s.capacity_deliveries_per_s, steps))
        })
        .collect()
}

fn churn_subtitle(run: &RunResult) -> String {
    format!(
        "churn: {} writes/s for {} s to {} agents",
        fmt_axis(run.rate),
        fmt_axis(run.duration_s),
        fmt_count(run.agents)
    )
}

fn latency_cdf(run: &RunResult, text: &Text) -> Canvas {
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

fn cpu(run: &RunResult, text: &Text) -> Canvas {
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

fn memory(run: &RunResult, text: &Text) -> Canvas {
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

fn snapshot(run: &RunResult, text: &Text) -> Canvas {
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

fn saturate(run: &RunResult, text: &Text) -> Canvas {
    let series = saturate_series(run);
    let (mut x_min, mut x_max, mut y_min, mut y_max) =
        (f64::INFINITY, 0.0f64, f64::INFINITY, 0.0f64);
    for (_, _, steps) in &series {
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

fn bar_chart(text: &Text, chart: &BarChart) -> Canvas {
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

// ---------------------------------------------------------------------------------------------
// Colors
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rgb(u8, u8, u8);

const WHITE: Rgb = Rgb(255, 255, 255);
const INK: Rgb = Rgb(34, 34, 34);
const MUTED: Rgb = Rgb(110, 110, 110);
const AXIS: Rgb = Rgb(90, 90, 90);
const GRID: Rgb = Rgb(225, 225, 225);
const GRID_MINOR: Rgb = Rgb(242, 242, 242);
const GUIDE: Rgb = Rgb(190, 190, 190);
const LIMIT: Rgb = Rgb(200, 40, 40);

/// The fixed color of a system in every chart.
fn system_color(name: &str) -> Rgb {
    match name {
        "meshsync" => Rgb(31, 119, 180),
        "grpc-proxy" => Rgb(255, 127, 14),
        "etcd" => Rgb(127, 127, 127),
        "floor" => Rgb(44, 160, 44),
        _ => Rgb(148, 103, 189),
    }
}

// ---------------------------------------------------------------------------------------------
// Canvas
// ---------------------------------------------------------------------------------------------

/// An RGB raster with alpha-blended, anti-aliased drawing.
struct Canvas {
    w: u32,
    h: u32,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: u32, h: u32, background: Rgb) -> Self {
        let mut px = Vec::with_capacity(w as usize * h as usize * 3);
        for _ in 0..(w as usize * h as usize) {
            px.extend_from_slice(&[background.0, background.1, background.2]);
        }
        Canvas { w, h, px }
    }

    /// Blends `color` over pixel (x, y) with coverage `alpha` in 0..=1; outside pixels are ignored.
    fn blend(&mut self, x: i64, y: i64, color: Rgb, alpha: f32) {
        if x < 0 || y < 0 || x >= i64::from(self.w) || y >= i64::from(self.h) || alpha <= 0.0 {
            return;
        }
        let a = alpha.min(1.0);
        let i = (y as usize * self.w as usize + x as usize) * 3;
        for (k, c) in [color.0, color.1, color.2].into_iter().enumerate() {
            let old = f32::from(self.px[i + k]);
            self.px[i + k] = (old + (f32::from(c) - old) * a).round() as u8;
        }
    }

    /// Fills the rectangle between the corners (rounded to whole pixels).
    fn fill_rect(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, color: Rgb) {
        let (xa, xb) = (x0.min(x1).round() as i64, x0.max(x1).round() as i64);
        let (ya, yb) = (y0.min(y1).round() as i64, y0.max(y1).round() as i64);
        for y in ya..yb {
            for x in xa..xb {
                self.blend(x, y, color, 1.0);
            }
        }
    }

    /// An anti-aliased disc.
    fn fill_circle(&mut self, cx: f32, cy: f32, r: f32, color: Rgb) {
        let (x0, x1) = ((cx - r - 1.0).floor() as i64, (cx + r + 1.0).ceil() as i64);
        let (y0, y1) = ((cy - r - 1.0).floor() as i64, (cy + r + 1.0).ceil() as i64);
        for y in y0..=y1 {
            for x in x0..=x1 {
                let d = ((x as f32 + 0.5 - cx).powi(2) + (y as f32 + 0.5 - cy).powi(2)).sqrt();
                self.blend(x, y, color, (r + 0.5 - d).clamp(0.0, 1.0));
            }
        }
    }

    /// Strokes a polyline `width` pixels wide with round joins, optionally dashed (on, off
    /// lengths in pixels). Coverage is accumulated per pixel with `max` before blending, so joints
    /// and overlapping segments do not darken. For crisp 1-pixel lines, place them on `k + 0.5`.
    fn stroke(&mut self, pts: &[(f32, f32)], color: Rgb, width: f32, dash: Option<(f32, f32)>) {
        let pts: Vec<(f32, f32)> = pts
            .iter()
            .copied()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        let segments = match dash {
            Some((on, off)) if on > 0.0 && off > 0.0 => dash_segments(&pts, on, off),
            _ => pts.windows(2).map(|w| (w[0], w[1])).collect(),
        };
        if segments.is_empty() {
            return;
        }
        let hw = width / 2.0;
        let pad = hw + 1.5;
        let clip_x = |v: f32| (v.floor() as i64).clamp(0, i64::from(self.w));
        let clip_y = |v: f32| (v.floor() as i64).clamp(0, i64::from(self.h));
        let (mut bx0, mut by0, mut bx1, mut by1) = (i64::MAX, i64::MAX, i64::MIN, i64::MIN);
        for &(a, b) in &segments {
            bx0 = bx0.min(clip_x(a.0.min(b.0) - pad));
            by0 = by0.min(clip_y(a.1.min(b.1) - pad));
            bx1 = bx1.max(clip_x(a.0.max(b.0) + pad) + 1);
            by1 = by1.max(clip_y(a.1.max(b.1) + pad) + 1);
        }
        bx1 = bx1.min(i64::from(self.w));
        by1 = by1.min(i64::from(self.h));
        if bx0 >= bx1 || by0 >= by1 {
            return;
        }
        let mw = (bx1 - bx0) as usize;
        let mut mask = vec![0.0f32; mw * (by1 - by0) as usize];
        for &(a, b) in &segments {
            let x0 = clip_x(a.0.min(b.0) - pad).max(bx0);
            let x1 = (clip_x(a.0.max(b.0) + pad) + 1).min(bx1);
            let y0 = clip_y(a.1.min(b.1) - pad).max(by0);
            let y1 = (clip_y(a.1.max(b.1) + pad) + 1).min(by1);
            for y in y0..y1 {
                let row = (y - by0) as usize * mw;
                for x in x0..x1 {
                    let d = dist_to_segment((x as f32 + 0.5, y as f32 + 0.5), a, b);
                    let cov = (hw + 0.5 - d).clamp(0.0, 1.0);
                    let m = &mut mask[row + (x - bx0) as usize];
                    *m = m.max(cov);
                }
            }
        }
        for (i, &cov) in mask.iter().enumerate() {
            if cov > 0.0 {
                let x = bx0 + (i % mw) as i64;
                let y = by0 + (i / mw) as i64;
                self.blend(x, y, color, cov);
            }
        }
    }

    fn encode_png(&self) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut out, self.w, self.h);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header().context("encoding PNG header")?;
            writer
                .write_image_data(&self.px)
                .context("encoding PNG data")?;
            writer.finish().context("finishing PNG")?;
        }
        Ok(out)
    }

    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let bytes = self.encode_png()?;
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
    }
}

/// Distance from `p` to the segment `a`–`b`.
fn dist_to_segment(p: (f32, f32), a: (f32, f32), b: (f32, f32)) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (qx, qy) = (a.0 + t * dx, a.1 + t * dy);
    ((p.0 - qx).powi(2) + (p.1 - qy).powi(2)).sqrt()
}

type Segment = ((f32, f32), (f32, f32));

/// The "on" pieces of a polyline dashed with `on`/`off` pixel lengths.
fn dash_segments(pts: &[(f32, f32)], on: f32, off: f32) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut drawing = true;
    let mut left = on;
    for w in pts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
        if len <= 0.0 {
            continue;
        }
        let at = |t: f32| (a.0 + (b.0 - a.0) * t / len, a.1 + (b.1 - a.1) * t / len);
        let mut pos = 0.0;
        while pos < len {
            let step = left.min(len - pos);
            if drawing {
                out.push((at(pos), at(pos + step)));
            }
            pos += step;
            left -= step;
            if left <= 0.0 {
                drawing = !drawing;
                left = if drawing { on } else { off };
            }
        }
    }
    out
}

/// Centers a 1-pixel line on a pixel row/column.
fn crisp(v: f32) -> f32 {
    v.floor() + 0.5
}

// ---------------------------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------------------------

/// Text rendering; every call is a no-op when no font was found.
struct Text {
    font: Option<FontVec>,
}

#[derive(Clone, Copy, Debug)]
enum HAlign {
    Left,
    Center,
    Right,
}

/// What the `y` of a text call refers to.
#[derive(Clone, Copy, Debug)]
enum VAlign {
    /// The top of capital letters.
    Top,
    /// The middle of capital letters.
    Middle,
    Baseline,
}

#[derive(Clone, Copy, Debug)]
struct Style {
    size: f32,
    color: Rgb,
    h: HAlign,
    v: VAlign,
}

impl Style {
    fn new(size: f32, color: Rgb, h: HAlign, v: VAlign) -> Self {
        Style { size, color, h, v }
    }
}

/// A line of text rasterized to a coverage mask, glyphs placed at (`PAD` + caret, `PAD` + ascent).
struct TextMask {
    w: usize,
    h: usize,
    cov: Vec<f32>,
    /// Advance width of the text.
    width: f32,
    ascent: f32,
}

const PAD: f32 = 2.0;

impl Text {
    /// Loads the first font found at `$MESHSYNC_BENCH_FONT` or [`FONT_PATHS`].
    fn load() -> Self {
        let env = std::env::var_os("MESHSYNC_BENCH_FONT").map(PathBuf::from);
        let font = env
            .into_iter()
            .chain(FONT_PATHS.iter().map(PathBuf::from))
            .filter_map(|p| std::fs::read(p).ok())
            .find_map(|bytes| FontVec::try_from_vec(bytes).ok());
        Text { font }
    }

    #[cfg(test)]
    fn none() -> Self {
        Text { font: None }
    }

    fn render(&self, s: &str, size: f32) -> Option<TextMask> {
        let font = self.font.as_ref()?;
        let scale = PxScale::from(size);
        let scaled = font.as_scaled(scale);
        let (ascent, descent) = (scaled.ascent(), scaled.descent());
        let mut glyphs = Vec::new();
        let mut caret = 0.0f32;
        let mut prev = None;
        for ch in s.chars() {
            let id = scaled.glyph_id(ch);
            if let Some(p) = prev {
                caret += scaled.kern(p, id);
            }
            glyphs.push(id.with_scale_and_position(scale, point(PAD + caret, PAD + ascent)));
            caret += scaled.h_advance(id);
            prev = Some(id);
        }
        let w = (caret + 2.0 * PAD).ceil() as usize + 1;
        let h = (ascent - descent + 2.0 * PAD).ceil() as usize + 1;
        let mut cov = vec![0.0f32; w * h];
        for glyph in glyphs {
            let Some(outline) = font.outline_glyph(glyph) else {
                continue;
            };
            let b = outline.px_bounds();
            outline.draw(|gx, gy, c| {
                let x = b.min.x as i64 + i64::from(gx);
                let y = b.min.y as i64 + i64::from(gy);
                if x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h {
                    let m = &mut cov[y as usize * w + x as usize];
                    *m = (*m + c).min(1.0);
                }
            });
        }
        Some(TextMask {
            w,
            h,
            cov,
            width: caret,
            ascent,
        })
    }

    /// Advance width of `s` at `size` (0 without a font).
    fn width(&self, s: &str, size: f32) -> f32 {
        let Some(font) = self.font.as_ref() else {
            return 0.0;
        };
        let scaled = font.as_scaled(PxScale::from(size));
        let mut caret = 0.0;
        let mut prev = None;
        for ch in s.chars() {
            let id = scaled.glyph_id(ch);
            if let Some(p) = prev {
                caret += scaled.kern(p, id);
            }
            caret += scaled.h_advance(id);
            prev = Some(id);
        }
        caret
    }

    /// Draws `s` horizontally, anchored at (x, y) per `style`.
    fn draw(&self, c: &mut Canvas, s: &str, x: f32, y: f32, style: Style) {
        let Some(m) = self.render(s, style.size) else {
            return;
        };
        let cap = cap_height(m.ascent);
        let baseline = match style.v {
            VAlign::Top => y + cap,
            VAlign::Middle => y + cap / 2.0,
            VAlign::Baseline => y,
        };
        let left = match style.h {
            HAlign::Left => x,
            HAlign::Center => x - m.width / 2.0,
            HAlign::Right => x - m.width,
        };
        let ox = (left - PAD).round() as i64;
        let oy = (baseline - m.ascent - PAD).round() as i64;
        for my in 0..m.h {
            for mx in 0..m.w {
                let a = m.cov[my * m.w + mx];
                if a > 0.0 {
                    c.blend(ox + mx as i64, oy + my as i64, style.color, a);
                }
            }
        }
    }

    /// Draws `s` rotated a quarter turn counter-clockwise (read bottom to top), centered on (x, y).
    fn draw_vertical(&self, c: &mut Canvas, s: &str, x: f32, y: f32, size: f32, color: Rgb) {
        let Some(m) = self.render(s, size) else {
            return;
        };
        let cap = cap_height(m.ascent);
        // Mask pixel (mx, my) lands on canvas (ox + my, oy - mx).
        let ox = (x - (PAD + m.ascent - cap / 2.0)).round() as i64;
        let oy = (y + PAD + m.width / 2.0).round() as i64;
        for my in 0..m.h {
            for mx in 0..m.w {
                let a = m.cov[my * m.w + mx];
                if a > 0.0 {
                    c.blend(ox + my as i64, oy - mx as i64, color, a);
                }
            }
        }
    }
}

/// Height of capital letters for a font's scaled ascent (DejaVu-like proportions).
fn cap_height(ascent: f32) -> f32 {
    ascent * 0.785
}

// ---------------------------------------------------------------------------------------------
// Axes
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Scale {
    Lin {
        min: f64,
        max: f64,
    },
    /// Base 10; `min` > 0.
    Log {
        min: f64,
        max: f64,
    },
}

impl Scale {
    /// Position of `v` along the axis, 0..=1 (clamped).
    fn norm(self, v: f64) -> f32 {
        let t = match self {
            Scale::Lin { min, max } => (v - min) / (max - min),
            Scale::Log { min, max } => {
                (v.max(min * 1e-3).log10() - min.log10()) / (max.log10() - min.log10())
            }
        };
        if t.is_finite() {
            t.clamp(0.0, 1.0) as f32
        } else {
            0.0
        }
    }
}

#[derive(Clone, Debug)]
struct Tick {
    v: f64,
    /// Empty for minor ticks.
    label: String,
    major: bool,
}

impl Tick {
    fn major(v: f64, label: String) -> Self {
        Tick {
            v,
            label,
            major: true,
        }
    }
}

/// The plot area of a chart and its scales.
struct Axes {
    left: f32,
    top: f32,
    right: f32,
    bottom: f32,
    x: Scale,
    y: Scale,
}

impl Axes {
    fn new(x: Scale, y: Scale) -> Self {
        Axes {
            left: 92.0,
            top: 80.0,
            right: WIDTH as f32 - 32.0,
            bottom: HEIGHT as f32 - 72.0,
            x,
            y,
        }
    }

    fn px(&self, v: f64) -> f32 {
        self.left + self.x.norm(v) * (self.right - self.left)
    }

    fn py(&self, v: f64) -> f32 {
        self.bottom - self.y.norm(v) * (self.bottom - self.top)
    }

    /// Grid, axis lines, tick marks and labels, and the axis titles.
    fn draw(
        &self,
        c: &mut Canvas,
        text: &Text,
        xticks: &[Tick],
        yticks: &[Tick],
        x_label: &str,
        y_label: &str,
    ) {
        let tick_style = |h, v| Style::new(13.0, MUTED, h, v);
        for minor_pass in [true, false] {
            for t in xticks.iter().filter(|t| t.major != minor_pass) {
                let x = crisp(self.px(t.v));
                let color = if t.major { GRID } else { GRID_MINOR };
                c.stroke(&[(x, self.top), (x, self.bottom)], color, 1.0, None);
            }
            for t in yticks.iter().filter(|t| t.major != minor_pass) {
                let y = crisp(self.py(t.v));
                let color = if t.major { GRID } else { GRID_MINOR };
                c.stroke(&[(self.left, y), (self.right, y)], color, 1.0, None);
            }
        }
        let (l, b) = (crisp(self.left), crisp(self.bottom));
        c.stroke(&[(l, self.top), (l, b), (self.right, b)], AXIS, 1.0, None);
        for t in xticks {
            let x = crisp(self.px(t.v));
            let len = if t.major { 6.0 } else { 3.0 };
            c.stroke(&[(x, b), (x, b + len)], AXIS, 1.0, None);
            if !t.label.is_empty() {
                let style = tick_style(HAlign::Center, VAlign::Top);
                text.draw(c, &t.label, x, b + 10.0, style);
            }
        }
        for t in yticks {
            let y = crisp(self.py(t.v));
            let len = if t.major { 6.0 } else { 3.0 };
            c.stroke(&[(l - len, y), (l, y)], AXIS, 1.0, None);
            if !t.label.is_empty() {
                let style = tick_style(HAlign::Right, VAlign::Middle);
                text.draw(c, &t.label, l - 10.0, y, style);
            }
        }
        if !x_label.is_empty() {
            let style = Style::new(14.0, INK, HAlign::Center, VAlign::Middle);
            text.draw(
                c,
                x_label,
                (self.left + self.right) / 2.0,
                HEIGHT as f32 - 24.0,
                style,
            );
        }
        if !y_label.is_empty() {
            text.draw_vertical(c, y_label, 24.0, (self.top + self.bottom) / 2.0, 14.0, INK);
        }
    }
}

/// A white chart with its title and subtitle.
fn frame(text: &Text, title: &str, subtitle: &str) -> Canvas {
    let mut c = Canvas::new(WIDTH, HEIGHT, WHITE);
    let mid = WIDTH as f32 / 2.0;
    text.draw(
        &mut c,
        title,
        mid,
        18.0,
        Style::new(20.0, INK, HAlign::Center, VAlign::Top),
    );
    text.draw(
        &mut c,
        subtitle,
        mid,
        48.0,
        Style::new(13.0, MUTED, HAlign::Center, VAlign::Top),
    );
    c
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
fn nice_top(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let step = nice_step(v, 5.0);
    (v / step - 1e-9).ceil() * step
}

fn lin_ticks(min: f64, max: f64) -> Vec<Tick> {
    if min.is_nan() || max.is_nan() || max <= min {
        return Vec::new();
    }
    let step = nice_step(max - min, 6.0);
    let first = (min / step - 1e-9).ceil() as i64;
    let last = (max / step + 1e-9).floor() as i64;
    (first..=last)
        .map(|k| {
            let v = k as f64 * step;
            Tick::major(v, fmt_axis(v))
        })
        .collect()
}

/// Decades (labeled) and 2..9 × decade minors; over two decades or less, 2× and 5× are labeled.
fn log_ticks(min: f64, max: f64) -> Vec<Tick> {
    if !(min > 0.0 && max > min) {
        return Vec::new();
    }
    let (d0, d1) = (min.log10().floor() as i32, max.log10().ceil() as i32);
    let few = d1 - d0 <= 2;
    let mut out = Vec::new();
    for d in d0..=d1 {
        let base = 10f64.powi(d);
        for k in 1..10 {
            let v = base * f64::from(k);
            if v < min * (1.0 - 1e-9) || v > max * (1.0 + 1e-9) {
                continue;
            }
            let labeled = k == 1 || (few && (k == 2 || k == 5));
            out.push(Tick {
                v,
                label: if labeled { fmt_axis(v) } else { String::new() },
                major: k == 1,
            });
        }
    }
    out
}

fn decade_floor(v: f64) -> f64 {
    if v > 0.0 && v.is_finite() {
        10f64.powf(v.log10().floor())
    } else {
        1.0
    }
}

fn decade_ceil(v: f64) -> f64 {
    if v > 0.0 && v.is_finite() {
        10f64.powf(v.log10().ceil())
    } else {
        1.0
    }
}

// ---------------------------------------------------------------------------------------------
// Legend
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Swatch {
    Line,
    LineMarker,
    /// No sample, muted text: a system that could not be measured.
    Failed,
}

struct LegendEntry {
    label: String,
    color: Rgb,
    swatch: Swatch,
}

/// How many points, sampled every 2 px along the polylines, fall inside the rectangle.
fn points_inside(lines: &[Vec<(f32, f32)>], (l, t, r, b): (f32, f32, f32, f32)) -> usize {
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
fn failed_entries(run: &RunResult) -> Vec<LegendEntry> {
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
enum Corner {
    TopLeft,
    TopRight,
    BottomLeft,
    BottomRight,
}

/// Draws the legend in the first of `corners` that covers the fewest points of the `drawn`
/// polylines (pixel coordinates).
fn draw_legend(
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

// ---------------------------------------------------------------------------------------------
// Number formatting
// ---------------------------------------------------------------------------------------------

/// About three significant digits.
fn sig3(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "n/a".into()
    } else if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A count with thousands separators.
fn fmt_count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Axis numbers: `k`/`M` suffixes from 10,000 on, otherwise up to 3 decimals, trailing zeros off.
fn fmt_axis(v: f64) -> String {
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e4 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let s = format!("{scaled:.3}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    let s = if s == "-0" { "0" } else { s };
    format!("{s}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_numbers() {
        assert_eq!(fmt_axis(0.1), "0.1");
        assert_eq!(fmt_axis(1000.0), "1000");
        assert_eq!(fmt_axis(20_000.0), "20k");
        assert_eq!(fmt_axis(1_500_000.0), "1.5M");
        assert_eq!(fmt_axis(0.6000000000000001), "0.6");
        assert_eq!(sig3(19.64), "19.6");
        assert_eq!(sig3(0.5), "0.500");
    }

    #[test]
    fn ticks() {
        let labels: Vec<String> = log_ticks(0.1, 1000.0)
            .into_iter()
            .filter(|t| !t.label.is_empty())
            .map(|t| t.label)
            .collect();
        assert_eq!(labels, ["0.1", "1", "10", "100", "1000"]);
        let lin: Vec<f64> = lin_ticks(0.0, 25.0).into_iter().map(|t| t.v).collect();
        assert_eq!(lin, [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]);
        assert_eq!(nice_top(22.4), 25.0);
    }

    #[test]
    fn dashes_cover_about_half() {
        let segs = dash_segments(&[(0.0, 0.0), (100.0, 0.0)], 5.0, 5.0);
        assert_eq!(segs.len(), 10);
        let on: f32 = segs.iter().map(|(a, b)| b.0 - a.0).sum();
        assert!((on - 50.0).abs() < 1e-3);
    }

    #[test]
    fn draws_without_a_font() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let run = RunResult {
            agents: 10,
            systems: vec![SystemResult {
                system: "meshsync".into(),
                snapshot: Some(SnapshotResult {
                    total_s: 1.5,
                    server_bytes_per_agent: 4096.0,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let written = write_charts_with(&run, dir.path(), &Text::none())?;
        let names: Vec<String> = written
            .iter()
            .filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(names, ["memory.png", "snapshot.png"]);
        assert_eq!(
            planned(&run).iter().map(|p| p.0).collect::<Vec<_>>(),
            ["memory.png", "snapshot.png"]
        );
        Ok(())
    }
}
