//! Text on a [`Canvas`]: glyphs rasterised by `ab_glyph` from a TTF found at run time
//! (`$MESHSYNC_BENCH_FONT`, else DejaVu Sans), aligned and measured. Without a font every call
//! is a no-op, so the charts are still written, without text.

use std::path::PathBuf;

use ab_glyph::{Font, FontVec, PxScale, ScaleFont, point};

use super::canvas::{Canvas, Rgb};

/// Where a TTF is looked for, after `$MESHSYNC_BENCH_FONT`.
pub(super) const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Text rendering; every call is a no-op when no font was found.
pub(super) struct Text {
    pub(super) font: Option<FontVec>,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum HAlign {
    Left,
    Center,
    Right,
}

/// What the `y` of a text call refers to.
#[derive(Clone, Copy, Debug)]
pub(super) enum VAlign {
    /// The top of capital letters.
    Top,
    /// The middle of capital letters.
    Middle,
    Baseline,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Style {
    pub(super) size: f32,
    pub(super) color: Rgb,
    pub(super) h: HAlign,
    pub(super) v: VAlign,
}

impl Style {
    pub(super) fn new(size: f32, color: Rgb, h: HAlign, v: VAlign) -> Self {
        Style { size, color, h, v }
    }
}

/// A line of text rasterized to a coverage mask, glyphs placed at (`PAD` + caret, `PAD` + ascent).
pub(super) struct TextMask {
    pub(super) w: usize,
    pub(super) h: usize,
    pub(super) cov: Vec<f32>,
    /// Advance width of the text.
    pub(super) width: f32,
    pub(super) ascent: f32,
}

pub(super) const PAD: f32 = 2.0;

impl Text {
    /// Loads the first font found at `$MESHSYNC_BENCH_FONT` or [`FONT_PATHS`].
    pub(super) fn load() -> Self {
        let env = std::env::var_os("MESHSYNC_BENCH_FONT").map(PathBuf::from);
        let font = env
            .into_iter()
            .chain(FONT_PATHS.iter().map(PathBuf::from))
            .filter_map(|p| std::fs::read(p).ok())
            .find_map(|bytes| FontVec::try_from_vec(bytes).ok());
        Text { font }
    }

    #[cfg(test)]
    pub(super) fn none() -> Self {
        Text { font: None }
    }

    pub(super) fn render(&self, s: &str, size: f32) -> Option<TextMask> {
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
    pub(super) fn width(&self, s: &str, size: f32) -> f32 {
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
    pub(super) fn draw(&self, c: &mut Canvas, s: &str, x: f32, y: f32, style: Style) {
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
    pub(super) fn draw_vertical(
        &self,
        c: &mut Canvas,
        s: &str,
        x: f32,
        y: f32,
        size: f32,
        color: Rgb,
    ) {
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
pub(super) fn cap_height(ascent: f32) -> f32 {
    ascent * 0.785
}
