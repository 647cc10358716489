//! What every chart shares: the palette (one fixed colour per system, so a system looks the same
//! in every chart), the embedded font, text helpers, the titled white frame with its plot area,
//! and the PNG encoding of the RGB buffer `plotters` draws into.
//!
//! The font is a subset of DejaVu Sans (Latin-1, general punctuation, arrows, `−≤≥≈∞`) compiled
//! into the binary, so the charts look the same on every machine and need no system font; its
//! licence is `font/LICENSE`. `plotters` measures text with it, [`Raster`] draws it.

use std::sync::Once;

use ab_glyph::FontRef;
use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, RGBColor, register_font};

use super::raster::Raster;
use super::{HEIGHT, WIDTH};

pub(super) const INK: RGBColor = RGBColor(34, 34, 34);
pub(super) const MUTED: RGBColor = RGBColor(110, 110, 110);
pub(super) const AXIS: RGBColor = RGBColor(90, 90, 90);
pub(super) const GRID: RGBColor = RGBColor(225, 225, 225);
pub(super) const GRID_MINOR: RGBColor = RGBColor(242, 242, 242);
pub(super) const GUIDE: RGBColor = RGBColor(190, 190, 190);
pub(super) const LIMIT: RGBColor = RGBColor(200, 40, 40);

/// The fixed color of a system in every chart.
pub(super) fn system_color(name: &str) -> RGBColor {
    match name {
        "meshsync" => RGBColor(31, 119, 180),
        "meshsync-zstd" => RGBColor(23, 190, 207),
        "meshsync-full" => RGBColor(188, 189, 34),
        "typha" => RGBColor(148, 103, 189),
        "meshsync-typha" => RGBColor(227, 119, 194),
        "grpc-proxy" => RGBColor(255, 127, 14),
        "etcd" => RGBColor(127, 127, 127),
        "floor" => RGBColor(44, 160, 44),
        _ => RGBColor(140, 86, 75),
    }
}

/// The font family every text is drawn in.
const FAMILY: &str = "sans-serif";
static FONT: &[u8] = include_bytes!("font/DejaVuSans-subset.ttf");

/// The root area of a chart being drawn.
pub(super) type Root<'a> = DrawingArea<Raster<'a>, Shift>;

/// Text of `size` px in `color`, anchored at its (`h`, `v`) point.
pub(super) fn text_style(size: u32, color: RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&color).pos(Pos::new(h, v))
}

/// Draws `s` at pixel (x, y) of the chart.
pub(super) fn label(
    root: &Root<'_>,
    s: &str,
    at: (i32, i32),
    style: &TextStyle<'_>,
) -> anyhow::Result<()> {
    root.draw(&Text::new(s, at, style.clone()))?;
    Ok(())
}

/// Draws a chart of [`WIDTH`] × [`HEIGHT`] with `draw` on a white, titled frame and returns it
/// as a PNG.
pub(super) fn render(
    title: &str,
    subtitle: &str,
    draw: impl FnOnce(&Root<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<u8>> {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // Parsed again below: a font that does not parse fails there, with an error.
        let _ = register_font(FAMILY, FontStyle::Normal, FONT);
    });
    let font = FontRef::try_from_slice(FONT).context("parsing the embedded font")?;
    let mut rgb = vec![0u8; WIDTH as usize * HEIGHT as usize * 3];
    {
        let bitmap = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT));
        let root = Raster { bitmap, font }.into_drawing_area();
        root.fill(&WHITE)?;
        let mid = WIDTH as i32 / 2;
        label(
            &root,
            title,
            (mid, 18),
            &text_style(20, INK, HPos::Center, VPos::Top),
        )?;
        label(
            &root,
            subtitle,
            (mid, 48),
            &text_style(13, MUTED, HPos::Center, VPos::Top),
        )?;
        draw(&root)?;
        root.present()?;
    }
    encode_png(&rgb)
}

/// The plot area of every chart, as margins of the root (px): the title above it, the axis
/// labels and descriptions left of it and below it.
pub(super) fn plot_area<'a, 'b>(root: &'a Root<'b>) -> ChartBuilder<'a, 'b, Raster<'b>> {
    let mut builder = ChartBuilder::on(root);
    builder
        .margin_top(80)
        .margin_right(32)
        .x_label_area_size(72)
        .y_label_area_size(92);
    builder
}

fn encode_png(rgb: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, WIDTH, HEIGHT);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().context("encoding PNG header")?;
        writer.write_image_data(rgb).context("encoding PNG data")?;
        writer.finish().context("finishing PNG")?;
    }
    Ok(out)
}
