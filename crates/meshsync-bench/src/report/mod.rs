//! Markdown and JSON output of a run, and the `report` subcommand that re-renders them.

//!
//! [`tables`] writes one table per scenario, [`targets`] the comparison with the goals,
//! [`baseline`] the comparison of meshsync with its baseline build, [`format`] the numbers; the
//! charts come from [`crate::charts`].

mod baseline;
pub(crate) mod format;
mod stalled;
mod stats;
mod storm;
mod summary;
mod tables;
mod targets;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use crate::charts;
use crate::model::RunResult;
use baseline::baseline_table;
use stalled::stalled_tables;
use storm::storm_tables;
use summary::summary_table;
use tables::{charts_section, churn_table, header, saturate_tables, snapshot_table};
use targets::targets_table;

/// Re-render `results.md` and the charts from a `results.json`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The `results.json` of a run.
    #[arg(value_name = "RESULTS_JSON")]
    pub input: PathBuf,
    /// Where to write; default: the input's directory. Another directory also gets a copy of
    /// `results.json`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let json = std::fs::read_to_string(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let run: RunResult =
        serde_json::from_str(&json).with_context(|| format!("parsing {}", args.input.display()))?;
    let input_dir = args
        .input
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let out = args.out.unwrap_or_else(|| input_dir.to_path_buf());
    if same_dir(&out, input_dir) {
        render(&run, &out)?;
    } else {
        write_all(&run, &out)?;
    }
    println!("wrote {}", out.join("results.md").display());
    Ok(())
}

/// Writes `results.json` (pretty), `results.md` and the charts into `dir`, creating it.
pub fn write_all(run: &RunResult, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(run).context("serializing the results")?;
    let path = dir.join("results.json");
    std::fs::write(&path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    render(run, dir)
}

/// Writes `results.md` and the charts into `dir`, creating it. With several rounds the charts
/// show the first round (a chart of medians would mix steps of different rounds).
fn render(run: &RunResult, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    charts::write_charts(&chart_view(run), dir)?;
    let path = dir.join("results.md");
    std::fs::write(&path, markdown(run)).with_context(|| format!("writing {}", path.display()))
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn chart_view(run: &RunResult) -> RunResult {
    if run.rounds() > 1 {
        run.round_view(0)
    } else {
        run.clone()
    }
}

/// The run as Markdown: parameters, one table per scenario, the targets, the charts.
/// With several rounds: the medians and ranges first, the targets over rounds, then every
/// round's own tables.
pub fn markdown(run: &RunResult) -> String {
    let mut md = String::new();
    header(&mut md, run);
    let rounds = run.rounds();
    if rounds > 1 {
        summary_table(&mut md, run);
        baseline_table(&mut md, run);
        targets_table(&mut md, run);
        stalled_tables(&mut md, run);
        storm_tables(&mut md, run);
        for r in 0..rounds {
            let view = run.round_view(r);
            md.push_str(&format!("# Round {} of {rounds}\n\n", r + 1));
            snapshot_table(&mut md, &view);
            churn_table(&mut md, &view);
            saturate_tables(&mut md, &view);
        }
        md.push_str("# Charts (round 1)\n\n");
        charts_section(&mut md, &chart_view(run));
    } else {
        snapshot_table(&mut md, run);
        churn_table(&mut md, run);
        saturate_tables(&mut md, run);
        baseline_table(&mut md, run);
        targets_table(&mut md, run);
        stalled_tables(&mut md, run);
        storm_tables(&mut md, run);
        charts_section(&mut md, run);
    }
    md
}
