//! PNG charts of a run.
//!
//! Drawn with `plotters` into an RGB buffer and encoded with the `png` crate (which keeps
//! `plotters`' `image` dependency out). Text comes from a font compiled into the binary, so no
//! system font is needed and the output is the same everywhere; it is drawn by [`raster`], the
//! bitmap backend with correctly spaced glyphs. One function per chart ([`lines`], [`bars`]) over
//! the series taken out of the results ([`series`]); the frame, palette and font ([`style`]);
//! axis ranges, ticks and grid ([`axes`]).

mod axes;
mod bars;
mod format;
mod lines;
mod raster;
mod series;
mod style;

use std::path::{Path, PathBuf};

use crate::model::RunResult;

use anyhow::Context;

use series::{cdf_series, cpu_bars, memory_bars, saturate_series, snapshot_bars};

/// Size of every chart, pixels.
pub const WIDTH: u32 = 900;
pub const HEIGHT: u32 = 560;

/// Writes every chart the run has data for into `dir` (which must exist); returns their paths.
pub fn write_charts(run: &RunResult, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for chart in Chart::ALL.iter().filter(|c| c.has_data(run)) {
        let path = dir.join(chart.file());
        let png = chart
            .draw(run)
            .with_context(|| format!("drawing {}", chart.file()))?;
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// The charts `run` has data for, as (file name, caption), in the order they are written.
pub fn planned(run: &RunResult) -> Vec<(&'static str, &'static str)> {
    Chart::ALL
        .iter()
        .filter(|c| c.has_data(run))
        .map(|c| (c.file(), c.caption()))
        .collect()
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

    /// The chart as a PNG.
    fn draw(self, run: &RunResult) -> anyhow::Result<Vec<u8>> {
        match self {
            Chart::LatencyCdf => lines::latency_cdf(run),
            Chart::Cpu => bars::cpu(run),
            Chart::Memory => bars::memory(run),
            Chart::Snapshot => bars::snapshot(run),
            Chart::Saturate => lines::saturate(run),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChurnResult, Latency, SnapshotResult, SystemResult};

    /// A decoded chart: its size and RGB pixels.
    struct Decoded {
        w: u32,
        h: u32,
        rgb: Vec<u8>,
    }

    impl Decoded {
        fn open(path: &Path) -> anyhow::Result<Self> {
            let decoder = png::Decoder::new(std::fs::File::open(path)?);
            let mut reader = decoder.read_info()?;
            let mut rgb = vec![0; reader.output_buffer_size()];
            let info = reader.next_frame(&mut rgb)?;
            assert_eq!(info.color_type, png::ColorType::Rgb);
            rgb.truncate(info.buffer_size());
            Ok(Decoded {
                w: info.width,
                h: info.height,
                rgb,
            })
        }

        /// Pixels in the rectangle [x0, x1) × [y0, y1) for which `f(r, g, b)` holds.
        fn count(
            &self,
            (x0, y0, x1, y1): (u32, u32, u32, u32),
            f: impl Fn(u8, u8, u8) -> bool,
        ) -> usize {
            let mut n = 0;
            for y in y0..y1.min(self.h) {
                for x in x0..x1.min(self.w) {
                    let i = (y * self.w + x) as usize * 3;
                    n += usize::from(f(self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]));
                }
            }
            n
        }

        /// Pixels of exactly `name`'s system colour.
        fn of_system(&self, name: &str) -> usize {
            let c = style::system_color(name);
            self.count(PLOT, |r, g, b| (r, g, b) == (c.0, c.1, c.2))
        }
    }

    /// The plot area of every chart (see `style::plot_area`).
    const PLOT: (u32, u32, u32, u32) = (92, 80, WIDTH - 32, HEIGHT - 72);
    /// The title band.
    const TITLE: (u32, u32, u32, u32) = (0, 0, WIDTH, 40);

    fn dark(r: u8, g: u8, b: u8) -> bool {
        u32::from(r) + u32::from(g) + u32::from(b) < 3 * 128
    }

    fn churn(cdf: Vec<(u64, f64)>, p99_us: u64) -> ChurnResult {
        ChurnResult {
            deliveries: 100,
            latency: Latency {
                p99_us,
                cdf,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn bar_charts_for_snapshot_only() -> anyhow::Result<()> {
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
        let written = write_charts(&run, dir.path())?;
        let names: Vec<String> = written
            .iter()
            .filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(names, ["memory.png", "snapshot.png"]);
        assert_eq!(
            planned(&run).iter().map(|p| p.0).collect::<Vec<_>>(),
            ["memory.png", "snapshot.png"]
        );
        for path in &written {
            let png = Decoded::open(path)?;
            assert_eq!((png.w, png.h), (WIDTH, HEIGHT));
            // The title is text (the embedded font draws), the bar is a filled block of the
            // system's colour (at least 40 × 100 px: it reaches about 90% of the axis).
            assert!(png.count(TITLE, dark) > 200, "{}: no title", path.display());
            assert!(
                png.of_system("meshsync") > 40 * 100,
                "{}: no bar",
                path.display()
            );
        }
        Ok(())
    }

    #[test]
    fn line_charts_draw_every_series() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let cdf = |scale: u64| (1..=50).map(|i| (i * scale, i as f64 / 50.0)).collect();
        let steps = |p99_ms: [u64; 3]| {
            p99_ms
                .iter()
                .enumerate()
                .map(|(i, &ms)| ChurnResult {
                    deliveries_per_s: 1000.0 * 10f64.powi(i as i32),
                    lost: u64::from(i == 2),
                    ..churn(Vec::new(), ms * 1000)
                })
                .collect()
        };
        let run = RunResult {
            agents: 10,
            rate: 100.0,
            duration_s: 5.0,
            systems: vec![
                SystemResult {
                    system: "meshsync".into(),
                    churn: Some(churn(cdf(100), 5_000)),
                    saturate: steps([2, 20, 2000]),
                    capacity_deliveries_per_s: Some(10_000.0),
                    ..Default::default()
                },
                SystemResult {
                    system: "grpc-proxy".into(),
                    churn: Some(churn(cdf(2_000), 100_000)),
                    saturate: steps([5, 300, 900]),
                    ..Default::default()
                },
                SystemResult {
                    system: "etcd".into(),
                    error: Some("did not start".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            planned(&run).iter().map(|p| p.0).collect::<Vec<_>>(),
            ["latency-cdf.png", "cpu.png", "saturate.png"]
        );
        write_charts(&run, dir.path())?;
        let again = tempfile::tempdir()?;
        write_charts(&run, again.path())?;
        for chart in ["latency-cdf.png", "saturate.png"] {
            let bytes = std::fs::read(dir.path().join(chart))?;
            assert_eq!(
                bytes,
                std::fs::read(again.path().join(chart))?,
                "{chart}: not deterministic"
            );
            let png = Decoded::open(&dir.path().join(chart))?;
            assert_eq!((png.w, png.h), (WIDTH, HEIGHT));
            assert!(png.count(TITLE, dark) > 200, "{chart}: no title");
            for system in ["meshsync", "grpc-proxy"] {
                // A line across the plot plus its legend swatch.
                assert!(png.of_system(system) > 150, "{chart}: no {system} line");
            }
            // The red dashed 1 s limit (saturate) or the grey p50/p90/p99 guides (CDF).
            let guide =
                |r: u8, g: u8, b: u8| (r, g, b) == (200, 40, 40) || (r, g, b) == (190, 190, 190);
            assert!(png.count(PLOT, guide) > 300, "{chart}: no reference line");
            // The failed system has no line (its legend entry is text only; anti-aliased
            // grey text may hit its colour on a few pixels).
            assert!(png.of_system("etcd") < 20, "{chart}");
        }
        Ok(())
    }
}
