//! PNG charts of a run.
//!
//! Pure Rust and self-contained: a tiny RGB raster ([`canvas`]) encoded with the `png` crate, text
//! rendered by `ab_glyph` from a TTF found at runtime ([`text`]), axis helpers ([`axes`]), the
//! legend ([`legend`]) and one function per chart ([`lines`], [`bars`]) over the series taken out
//! of the results ([`series`]). Without a font the charts are drawn without text.
//!
//! Why not a plotting crate: `plotters` would still need this module's legend placement (the
//! corner hiding the fewest points), guide and limit lines, hollow "lost" markers and failed-system
//! slots, and would bring the `image` crate in; these files draw the published charts, pixel for
//! pixel.

mod axes;
mod bars;
mod canvas;
mod format;
mod legend;
mod lines;
mod series;
mod text;

use std::path::{Path, PathBuf};

use crate::model::RunResult;

use canvas::Canvas;
use series::{cdf_series, cpu_bars, memory_bars, saturate_series, snapshot_bars};
use text::Text;

/// Size of every chart, pixels.
pub const WIDTH: u32 = 900;
pub const HEIGHT: u32 = 560;

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
            Chart::LatencyCdf => lines::latency_cdf(run, text),
            Chart::Cpu => bars::cpu(run, text),
            Chart::Memory => bars::memory(run, text),
            Chart::Snapshot => bars::snapshot(run, text),
            Chart::Saturate => lines::saturate(run, text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SnapshotResult, SystemResult};

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
