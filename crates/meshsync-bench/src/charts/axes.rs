//! Axes: linear and log [`Scale`]s mapping values to pixels, "nice" ticks, the gridded plot
//! area with its labels ([`Axes`]) and the title frame every chart starts from.

use super::canvas::{AXIS, Canvas, GRID, GRID_MINOR, INK, MUTED, WHITE, crisp};
use super::format::fmt_axis;
use super::text::{HAlign, Style, Text, VAlign};
use super::{HEIGHT, WIDTH};

#[derive(Clone, Copy, Debug)]
pub(super) enum Scale {
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
    pub(super) fn norm(self, v: f64) -> f32 {
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
pub(super) struct Tick {
    pub(super) v: f64,
    /// Empty for minor ticks.
    pub(super) label: String,
    pub(super) major: bool,
}

impl Tick {
    pub(super) fn major(v: f64, label: String) -> Self {
        Tick {
            v,
            label,
            major: true,
        }
    }
}

/// The plot area of a chart and its scales.
pub(super) struct Axes {
    pub(super) left: f32,
    pub(super) top: f32,
    pub(super) right: f32,
    pub(super) bottom: f32,
    pub(super) x: Scale,
    pub(super) y: Scale,
}

impl Axes {
    pub(super) fn new(x: Scale, y: Scale) -> Self {
        Axes {
            left: 92.0,
            top: 80.0,
            right: WIDTH as f32 - 32.0,
            bottom: HEIGHT as f32 - 72.0,
            x,
            y,
        }
    }

    pub(super) fn px(&self, v: f64) -> f32 {
        self.left + self.x.norm(v) * (self.right - self.left)
    }

    pub(super) fn py(&self, v: f64) -> f32 {
        self.bottom - self.y.norm(v) * (self.bottom - self.top)
    }

    /// Grid, axis lines, tick marks and labels, and the axis titles.
    pub(super) fn draw(
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
pub(super) fn frame(text: &Text, title: &str, subtitle: &str) -> Canvas {
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
pub(super) fn nice_step(range: f64, target: f64) -> f64 {
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

pub(super) fn lin_ticks(min: f64, max: f64) -> Vec<Tick> {
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
pub(super) fn log_ticks(min: f64, max: f64) -> Vec<Tick> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
