//! The raster every chart is drawn on: an RGB [`Canvas`] with alpha-blended, anti-aliased thick
//! polylines (optionally dashed), rectangles and round markers, saved with the `png` crate; and the
//! palette (one fixed colour per system, so a system looks the same in every chart).

use std::path::Path;

use anyhow::Context;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Rgb(u8, u8, u8);

pub(super) const WHITE: Rgb = Rgb(255, 255, 255);
pub(super) const INK: Rgb = Rgb(34, 34, 34);
pub(super) const MUTED: Rgb = Rgb(110, 110, 110);
pub(super) const AXIS: Rgb = Rgb(90, 90, 90);
pub(super) const GRID: Rgb = Rgb(225, 225, 225);
pub(super) const GRID_MINOR: Rgb = Rgb(242, 242, 242);
pub(super) const GUIDE: Rgb = Rgb(190, 190, 190);
pub(super) const LIMIT: Rgb = Rgb(200, 40, 40);

/// The fixed color of a system in every chart.
pub(super) fn system_color(name: &str) -> Rgb {
    match name {
        "meshsync" => Rgb(31, 119, 180),
        "meshsync-zstd" => Rgb(23, 190, 207),
        "meshsync-full" => Rgb(188, 189, 34),
        "typha" => Rgb(148, 103, 189),
        "grpc-proxy" => Rgb(255, 127, 14),
        "etcd" => Rgb(127, 127, 127),
        "floor" => Rgb(44, 160, 44),
        _ => Rgb(140, 86, 75),
    }
}

/// An RGB raster with alpha-blended, anti-aliased drawing.
pub(super) struct Canvas {
    pub(super) w: u32,
    pub(super) h: u32,
    pub(super) px: Vec<u8>,
}

impl Canvas {
    pub(super) fn new(w: u32, h: u32, background: Rgb) -> Self {
        let mut px = Vec::with_capacity(w as usize * h as usize * 3);
        for _ in 0..(w as usize * h as usize) {
            px.extend_from_slice(&[background.0, background.1, background.2]);
        }
        Canvas { w, h, px }
    }

    /// Blends `color` over pixel (x, y) with coverage `alpha` in 0..=1; outside pixels are ignored.
    pub(super) fn blend(&mut self, x: i64, y: i64, color: Rgb, alpha: f32) {
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
    pub(super) fn fill_rect(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, color: Rgb) {
        let (xa, xb) = (x0.min(x1).round() as i64, x0.max(x1).round() as i64);
        let (ya, yb) = (y0.min(y1).round() as i64, y0.max(y1).round() as i64);
        for y in ya..yb {
            for x in xa..xb {
                self.blend(x, y, color, 1.0);
            }
        }
    }

    /// An anti-aliased disc.
    pub(super) fn fill_circle(&mut self, cx: f32, cy: f32, r: f32, color: Rgb) {
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
    pub(super) fn stroke(
        &mut self,
        pts: &[(f32, f32)],
        color: Rgb,
        width: f32,
        dash: Option<(f32, f32)>,
    ) {
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

    pub(super) fn encode_png(&self) -> anyhow::Result<Vec<u8>> {
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

    pub(super) fn save(&self, path: &Path) -> anyhow::Result<()> {
        let bytes = self.encode_png()?;
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
    }
}

/// Distance from `p` to the segment `a`–`b`.
pub(super) fn dist_to_segment(p: (f32, f32), a: (f32, f32), b: (f32, f32)) -> f32 {
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

pub(super) type Segment = ((f32, f32), (f32, f32));

/// The "on" pieces of a polyline dashed with `on`/`off` pixel lengths.
pub(super) fn dash_segments(pts: &[(f32, f32)], on: f32, off: f32) -> Vec<Segment> {
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
pub(super) fn crisp(v: f32) -> f32 {
    v.floor() + 0.5
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashes_cover_about_half() {
        let segs = dash_segments(&[(0.0, 0.0), (100.0, 0.0)], 5.0, 5.0);
        assert_eq!(segs.len(), 10);
        let on: f32 = segs.iter().map(|(a, b)| b.0 - a.0).sum();
        assert!((on - 50.0).abs() < 1e-3);
    }
}
