//! Markdown and JSON output of a run, and the `report` subcommand that re-renders them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use crate::charts;
use crate::model::{ChurnResult, ProcessUsage, RunResult, SystemResult};

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

/// Writes `results.md` and the charts into `dir`, creating it.
fn render(run: &RunResult, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    charts::write_charts(run, dir)?;
    let path = dir.join("results.md");
    std::fs::write(&path, markdown(run)).with_context(|| format!("writing {}", path.display()))
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The run as Markdown: parameters, one table per scenario, the issue's targets, the charts.
pub fn markdown(run: &RunResult) -> String {
    let mut md = String::new();
    header(&mut md, run);
    snapshot_table(&mut md, run);
    churn_table(&mut md, run);
    saturate_tables(&mut md, run);
    targets_table(&mut md, run);
    charts_section(&mut md, run);
    md
}

fn header(md: &mut String, run: &RunResult) {
    let systems: Vec<&str> = run.systems.iter().map(|s| s.system.as_str()).collect();
    let _ = writeln!(md, "# meshsync benchmark\n");
    let _ = writeln!(md, "Started {}.\n", or_na(&run.started_at));
    let _ = writeln!(md, "```sh\n{}\n```\n", run.command.trim());
    let _ = writeln!(md, "| Parameter | Value |\n|---|---|");
    let _ = writeln!(md, "| Machine | {} |", cell(or_na(&run.machine)));
    let _ = writeln!(md, "| Agents (N) | {} |", int(run.agents as u64));
    let _ = writeln!(md, "| Keys (K) | {} |", int(run.keys as u64));
    let _ = writeln!(md, "| Value size | ~{} B |", int(run.value_bytes as u64));
    let _ = writeln!(md, "| Churn write rate (R) | {} /s |", num(run.rate, 1));
    let _ = writeln!(md, "| Churn duration (D) | {} s |", num(run.duration_s, 1));
    let _ = writeln!(md, "| Systems | {} |\n", systems.join(", "));
    let failures: Vec<&SystemResult> = run.systems.iter().filter(|s| s.error.is_some()).collect();
    for s in &failures {
        let _ = writeln!(
            md,
            "> ⚠️ **{}** failed: {}",
            s.system,
            one_line(s.error.as_deref().unwrap_or_default())
        );
    }
    if !failures.is_empty() {
        md.push('\n');
    }
}

fn snapshot_table(md: &mut String, run: &RunResult) {
    let rows: Vec<_> = run
        .systems
        .iter()
        .filter_map(|s| Some((s, s.snapshot.as_ref()?)))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## Snapshot\n\n{} agents connect at once to {} preloaded keys; time until every agent \
         holds every key.\n",
        int(run.agents as u64),
        int(run.keys as u64)
    );
    let _ = writeln!(
        md,
        "| System | Total s | Agent min s | Agent median s | Agent max s | Failed | Server CPU s \
         | Server peak RSS MiB | Server KiB/agent | Sent MiB | Agents CPU s |"
    );
    let _ = writeln!(
        md,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (s, snap) in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.system,
            num(snap.total_s, 2),
            num(snap.agent_min_s, 2),
            num(snap.agent_median_s, 2),
            num(snap.agent_max_s, 2),
            int(snap.failed_agents as u64),
            num(server_cpu(&snap.server), 2),
            num(mib(server_peak_rss(&snap.server)), 1),
            num(snap.server_bytes_per_agent / 1024.0, 2),
            sent_mib(&snap.server),
            num(snap.agents_process.cpu_seconds, 2),
        );
    }
    let _ = writeln!(
        md,
        "\nServer = every server-side process (etcd and the proxy, meshsync or floor); peak RSS \
         is their sum. KiB/agent = (RSS of the fan-out process with N agents − with none) / N. \
         Sent = bytes written by the process serving the agents.\n"
    );
}

fn churn_table(md: &mut String, run: &RunResult) {
    let rows: Vec<_> = run
        .systems
        .iter()
        .filter_map(|s| Some((s, s.churn.as_ref()?)))
        .collect();
    if rows.is_empty() {
        return;
    }
    let mut roles: Vec<&str> = Vec::new();
    for (_, c) in &rows {
        for p in &c.server {
            if !roles.contains(&p.role.as_str()) {
                roles.push(&p.role);
            }
        }
    }
    let _ = writeln!(
        md,
        "## Churn\n\n{} agents in sync; a writer puts {} updates/s for {} s; latency from the etcd \
         write to receipt over every (agent, update) pair.\n",
        int(run.agents as u64),
        num(run.rate, 1),
        num(run.duration_s, 1)
    );
    let mut head = String::from(
        "| System | Writes/s | Deliveries | Lost | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |",
    );
    let mut align = String::from("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for role in &roles {
        let _ = write!(head, " {role} CPU s |");
        align.push_str("---:|");
    }
    head.push_str(" Server µs/delivery | Agents CPU s |");
    align.push_str("---:|---:|");
    let _ = writeln!(md, "{head}\n{align}");
    for (s, c) in rows {
        let mut row = format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.system,
            num(c.achieved_rate, 1),
            int(c.deliveries),
            int(c.lost),
            ms(c.latency.p50_us),
            ms(c.latency.p90_us),
            ms(c.latency.p99_us),
            ms(c.latency.p999_us),
            ms(c.latency.max_us),
        );
        for role in &roles {
            let cpu: Vec<f64> = c
                .server
                .iter()
                .filter(|p| p.role == *role)
                .map(|p| p.cpu_seconds)
                .collect();
            if cpu.is_empty() {
                row.push_str(" – |");
            } else {
                let _ = write!(row, " {} |", num(cpu.iter().sum(), 2));
            }
        }
        let _ = write!(
            row,
            " {} | {} |",
            per_delivery(c),
            num(c.agents_process.cpu_seconds, 2)
        );
        let _ = writeln!(md, "{row}");
    }
    md.push('\n');
}

fn saturate_tables(md: &mut String, run: &RunResult) {
    let systems: Vec<&SystemResult> = run
        .systems
        .iter()
        .filter(|s| !s.saturate.is_empty())
        .collect();
    if systems.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## Saturate\n\n`churn` with the write rate stepped up until p99 passes 1 s or an update is \
         lost; capacity = deliveries/s of the last step within both limits.\n"
    );
    let _ = writeln!(md, "| System | Capacity deliveries/s |\n|---|---:|");
    for s in &systems {
        let _ = writeln!(md, "| {} | {} |", s.system, capacity(s));
    }
    md.push('\n');
    for s in systems {
        let _ = writeln!(md, "### {}\n", s.system);
        let _ = writeln!(
            md,
            "| Rate /s | Achieved writes/s | Deliveries/s | p99 ms | Lost | Within limits |\n\
             |---:|---:|---:|---:|---:|:---:|"
        );
        for c in &s.saturate {
            let ok = c.lost == 0 && c.latency.p99_us <= 1_000_000 && c.deliveries > 0;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                int_f(c.rate),
                num(c.achieved_rate, 1),
                int_f(c.deliveries_per_s),
                ms(c.latency.p99_us),
                int(c.lost),
                if ok { "✅" } else { "❌" }
            );
        }
        md.push('\n');
    }
}

/// One row of the targets table.
struct Target {
    what: &'static str,
    measured: String,
    reference: String,
    /// Shown in the ratio column (`—` when the goal is absolute).
    ratio: String,
    goal: &'static str,
    met: Option<bool>,
}

/// A target on the ratio of a meshsync figure to another system's.
struct Compare {
    what: &'static str,
    goal: &'static str,
    /// Whether the ratio meets the goal.
    ok: fn(f64) -> bool,
    unit: &'static str,
    fmt: fn(f64) -> String,
    ours: Option<f64>,
    reference: &'static str,
    theirs: Option<f64>,
}

fn relative(c: Compare) -> Target {
    let ratio = match (c.ours, c.theirs) {
        (Some(m), Some(r)) if r > 0.0 && m.is_finite() && r.is_finite() => Some(m / r),
        _ => None,
    };
    let (unit, fmt) = (c.unit, c.fmt);
    Target {
        what: c.what,
        measured: c.ours.map_or("n/a".into(), |v| format!("{}{unit}", fmt(v))),
        reference: match c.theirs {
            Some(v) => format!("{} {}{unit}", c.reference, fmt(v)),
            None => format!("{} n/a", c.reference),
        },
        ratio: ratio.map_or("n/a".into(), |x| format!("{x:.2}×")),
        goal: c.goal,
        met: ratio.map(c.ok),
    }
}

/// `meshsync` against `grpc-proxy` and `floor`, exactly the issue's targets.
fn targets(run: &RunResult) -> Vec<Target> {
    let ms_sys = find(run, "meshsync");
    let proxy = find(run, "grpc-proxy");
    let floor = find(run, "floor");
    let cpu = |s: Option<&SystemResult>| {
        let c = s?.churn.as_ref()?;
        (c.deliveries > 0).then_some(c.server_cpu_us_per_delivery)
    };
    let p99 = |s: Option<&SystemResult>| {
        let c = s?.churn.as_ref()?;
        (c.deliveries > 0).then_some(c.latency.p99_us as f64 / 1000.0)
    };
    let snap = |s: Option<&SystemResult>| Some(s?.snapshot.as_ref()?.total_s);
    let cap = |s: Option<&SystemResult>| s?.capacity_deliveries_per_s;
    let kib =
        |s: Option<&SystemResult>| Some(s?.snapshot.as_ref()?.server_bytes_per_agent / 1024.0);

    let mut out = vec![
        relative(Compare {
            what: "CPU per delivered update vs grpc-proxy (churn)",
            goal: "≤ 0.5×",
            ok: |x| x <= 0.5,
            unit: " µs",
            fmt: num2,
            ours: cpu(ms_sys),
            reference: "grpc-proxy",
            theirs: cpu(proxy),
        }),
        relative(Compare {
            what: "CPU per delivered update vs floor (churn)",
            goal: "≤ 1.5×",
            ok: |x| x <= 1.5,
            unit: " µs",
            fmt: num2,
            ours: cpu(ms_sys),
            reference: "floor",
            theirs: cpu(floor),
        }),
        relative(Compare {
            what: "Capacity vs grpc-proxy (saturate)",
            goal: "≥ 5×",
            ok: |x| x >= 5.0,
            unit: " /s",
            fmt: int_f,
            ours: cap(ms_sys),
            reference: "grpc-proxy",
            theirs: cap(proxy),
        }),
        relative(Compare {
            what: "p99 write → agent vs grpc-proxy (churn)",
            goal: "≤ 1/3 (0.33×)",
            ok: |x| x <= 1.0 / 3.0,
            unit: " ms",
            fmt: num2,
            ours: p99(ms_sys),
            reference: "grpc-proxy",
            theirs: p99(proxy),
        }),
        relative(Compare {
            what: "All agents in sync vs grpc-proxy (snapshot)",
            goal: "≤ 0.25×",
            ok: |x| x <= 0.25,
            unit: " s",
            fmt: num2,
            ours: snap(ms_sys),
            reference: "grpc-proxy",
            theirs: snap(proxy),
        }),
    ];
    let mem = kib(ms_sys).filter(|v| v.is_finite());
    out.push(Target {
        what: "Server memory per connected agent (snapshot)",
        measured: mem.map_or("n/a".into(), |v| format!("{} KiB", num(v, 2))),
        reference: kib(proxy)
            .filter(|v| v.is_finite())
            .map_or("—".into(), |v| format!("grpc-proxy {} KiB", num(v, 1))),
        ratio: "—".into(),
        goal: "≤ 8 KiB",
        met: mem.map(|v| v <= 8.0),
    });
    let lost = |s: &SystemResult| s.churn.as_ref().map(|c| c.lost);
    let others: Vec<String> = run
        .systems
        .iter()
        .filter(|s| s.system != "meshsync")
        .map(|s| format!("{} {}", s.system, lost(s).map_or("n/a".into(), int)))
        .collect();
    let m_lost = ms_sys.and_then(lost);
    out.push(Target {
        what: "Lost updates (churn)",
        measured: m_lost.map_or("n/a".into(), int),
        reference: if others.is_empty() {
            "—".into()
        } else {
            others.join(", ")
        },
        ratio: "—".into(),
        goal: "0",
        met: m_lost.map(|l| l == 0),
    });
    out
}

fn targets_table(md: &mut String, run: &RunResult) {
    let _ = writeln!(
        md,
        "## Targets\n\nmeshsync against grpc-proxy and floor in this run (ratio = meshsync ÷ \
         reference).\n"
    );
    let _ = writeln!(
        md,
        "| Target | meshsync | Reference | Ratio | Goal | Met |\n|---|---:|---:|---:|---:|:---:|"
    );
    for t in targets(run) {
        let met = match t.met {
            Some(true) => "✅",
            Some(false) => "❌",
            None => "n/a",
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            t.what, t.measured, t.reference, t.ratio, t.goal, met
        );
    }
    md.push('\n');
}

fn charts_section(md: &mut String, run: &RunResult) {
    let planned = charts::planned(run);
    if planned.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Charts\n");
    for (file, caption) in planned {
        let _ = writeln!(md, "![{caption}]({file})\n");
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn find<'a>(run: &'a RunResult, name: &str) -> Option<&'a SystemResult> {
    run.systems.iter().find(|s| s.system == name)
}

fn server_cpu(ps: &[ProcessUsage]) -> f64 {
    ps.iter().map(|p| p.cpu_seconds).sum()
}

fn server_peak_rss(ps: &[ProcessUsage]) -> u64 {
    ps.iter().map(|p| p.peak_rss_bytes).sum()
}

/// Bytes written by the process serving the agents (the one that is not etcd, else etcd), MiB.
fn sent_mib(ps: &[ProcessUsage]) -> String {
    let fanout = ps
        .iter()
        .rev()
        .find(|p| p.role != "etcd")
        .or_else(|| ps.iter().find(|p| p.role == "etcd"));
    fanout.map_or("n/a".into(), |p| num(mib(p.bytes_written), 1))
}

fn per_delivery(c: &ChurnResult) -> String {
    if c.deliveries > 0 {
        num(c.server_cpu_us_per_delivery, 2)
    } else {
        "n/a".into()
    }
}

fn capacity(s: &SystemResult) -> String {
    s.capacity_deliveries_per_s
        .map_or("none within limits".into(), int_f)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn num2(v: f64) -> String {
    num(v, 2)
}

fn num(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "n/a".into()
    }
}

/// Microseconds as milliseconds with about three significant digits.
fn ms(us: u64) -> String {
    let v = us as f64 / 1000.0;
    let digits = if v < 10.0 {
        2
    } else if v < 100.0 {
        1
    } else {
        0
    };
    num(v, digits)
}

/// An integer with thousands separators.
fn int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn int_f(v: f64) -> String {
    if v.is_finite() && v >= 0.0 {
        int(v.round() as u64)
    } else {
        num(v, 0)
    }
}

fn or_na(s: &str) -> &str {
    if s.trim().is_empty() { "n/a" } else { s }
}

/// Text safe inside a table cell.
fn cell(s: &str) -> String {
    one_line(s).replace('|', "\\|")
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Latency, SnapshotResult};

    fn usage(role: &str, cpu: f64, rss_mib: u64, written_mib: u64) -> ProcessUsage {
        ProcessUsage {
            role: role.into(),
            cpu_seconds: cpu,
            rss_bytes: rss_mib << 20,
            peak_rss_bytes: (rss_mib + rss_mib / 10) << 20,
            bytes_written: written_mib << 20,
        }
    }

    /// A smooth CDF through the given percentiles (µs), geometric in latency between them.
    fn latency(p50: u64, p90: u64, p99: u64, p999: u64, max: u64) -> Latency {
        let knots = [
            (p50 / 3, 0.0),
            (p50 * 2 / 3, 0.15),
            (p50, 0.5),
            (p90, 0.9),
            (p99, 0.99),
            (p999, 0.999),
            (max, 1.0),
        ];
        let mut cdf = Vec::new();
        for w in knots.windows(2) {
            let ((a, fa), (b, fb)) = (w[0], w[1]);
            for k in 0..8 {
                let t = k as f64 / 8.0;
                let us = (a as f64 * (b as f64 / a as f64).powf(t)) as u64;
                cdf.push((us, fa + (fb - fa) * t));
            }
        }
        cdf.push((max, 1.0));
        Latency {
            count: 3_996_000,
            p50_us: p50,
            p90_us: p90,
            p99_us: p99,
            p999_us: p999,
            max_us: max,
            cdf,
        }
    }

    fn churn(
        rate: f64,
        cpu_us: f64,
        lat: Latency,
        lost: u64,
        server: Vec<ProcessUsage>,
    ) -> ChurnResult {
        let writes = (rate * 20.0) as u64;
        let expected = writes * 1000;
        ChurnResult {
            rate,
            achieved_rate: rate * 0.999,
            duration_s: 20.0,
            writes,
            expected_deliveries: expected,
            deliveries: expected - lost,
            lost,
            deliveries_per_s: (expected - lost) as f64 / 20.0,
            latency: lat,
            server,
            agents_process: usage("agents", rate / 40.0, 300, 1),
            server_cpu_us_per_delivery: cpu_us,
        }
    }

    /// Doubling steps from 200/s; p99 (ms) per step; the last step loses updates.
    fn saturate(p99_ms: &[u64], cpu_us: f64) -> Vec<ChurnResult> {
        p99_ms
            .iter()
            .enumerate()
            .map(|(i, &p99)| {
                let rate = 200.0 * f64::from(1u32 << i);
                let lost = if i + 1 == p99_ms.len() { 1234 } else { 0 };
                let lat = latency(p99 * 300, p99 * 700, p99 * 1000, p99 * 1500, p99 * 2000);
                churn(rate, cpu_us, lat, lost, vec![usage("etcd", 1.0, 80, 10)])
            })
            .collect()
    }

    fn snapshot(total_s: f64, kib_per_agent: f64, server: Vec<ProcessUsage>) -> SnapshotResult {
        SnapshotResult {
            agents: 1000,
            keys: 10_000,
            total_s,
            agent_min_s: total_s * 0.3,
            agent_median_s: total_s * 0.7,
            agent_max_s: total_s,
            failed_agents: 0,
            server,
            agents_process: usage("agents", 3.5, 400, 1),
            server_bytes_per_agent: kib_per_agent * 1024.0,
        }
    }

    fn sample_run() -> RunResult {
        let meshsync = SystemResult {
            system: "meshsync".into(),
            snapshot: Some(snapshot(
                2.4,
                5.5,
                vec![usage("etcd", 0.9, 90, 12), usage("meshsync", 1.6, 60, 9800)],
            )),
            churn: Some(churn(
                200.0,
                4.0,
                latency(2_100, 4_800, 9_000, 14_000, 21_000),
                0,
                vec![usage("etcd", 0.4, 90, 5), usage("meshsync", 15.6, 62, 800)],
            )),
            // Deliveries/s 200k, 400k, …; p99 ≤ 1 s through 1.6M/s, lost at 6.4M/s.
            saturate: saturate(&[9, 12, 30, 120, 1400, 2400], 2.0),
            capacity_deliveries_per_s: Some(1_600_000.0),
            error: None,
        };
        let proxy = SystemResult {
            system: "grpc-proxy".into(),
            snapshot: Some(snapshot(
                12.0,
                600.0,
                vec![
                    usage("etcd", 6.0, 120, 30),
                    usage("grpc-proxy", 14.0, 700, 9900),
                ],
            )),
            churn: Some(churn(
                200.0,
                20.0,
                latency(11_000, 30_000, 54_000, 90_000, 140_000),
                0,
                vec![
                    usage("etcd", 9.0, 120, 5),
                    usage("grpc-proxy", 71.0, 720, 800),
                ],
            )),
            saturate: saturate(&[54, 1400, 2500], 19.0),
            capacity_deliveries_per_s: Some(200_000.0),
            error: None,
        };
        let etcd = SystemResult {
            system: "etcd".into(),
            error: Some("etcd exited with status 1:\nbind: address in use".into()),
            ..Default::default()
        };
        let floor = SystemResult {
            system: "floor".into(),
            snapshot: Some(snapshot(
                1.1,
                3.0,
                vec![usage("etcd", 0.8, 90, 12), usage("floor", 0.7, 40, 9800)],
            )),
            churn: Some(churn(
                200.0,
                3.2,
                latency(900, 2_000, 4_000, 7_000, 12_000),
                0,
                vec![usage("etcd", 0.4, 90, 5), usage("floor", 12.4, 41, 800)],
            )),
            saturate: Vec::new(),
            capacity_deliveries_per_s: None,
            error: None,
        };
        RunResult {
            started_at: "2025-01-01T12:00:00Z".into(),
            command: "cargo run --release -p meshsync-bench -- run all".into(),
            machine: "2 cores, Linux".into(),
            agents: 1000,
            keys: 10_000,
            value_bytes: 1024,
            rate: 200.0,
            duration_s: 20.0,
            systems: vec![meshsync, proxy, etcd, floor],
        }
    }

    fn png_size(path: &Path) -> anyhow::Result<(u32, u32)> {
        let decoder = png::Decoder::new(std::fs::File::open(path)?);
        let mut reader = decoder.read_info()?;
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf)?;
        Ok((info.width, info.height))
    }

    fn target_row<'a>(md: &'a str, starts: &str) -> &'a str {
        md.lines()
            .find(|l| l.starts_with(&format!("| {starts}")))
            .unwrap_or("")
    }

    #[test]
    fn writes_everything() -> anyhow::Result<()> {
        let run = sample_run();
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("run");
        write_all(&run, &out)?;
        // To look at the charts: MESHSYNC_BENCH_SAMPLE_DIR=/some/dir cargo test -p meshsync-bench
        if let Some(sample) = std::env::var_os("MESHSYNC_BENCH_SAMPLE_DIR") {
            write_all(&run, Path::new(&sample))?;
        }
        let back: RunResult =
            serde_json::from_str(&std::fs::read_to_string(out.join("results.json"))?)?;
        assert_eq!(back.systems.len(), 4);
        for chart in [
            "latency-cdf.png",
            "cpu.png",
            "memory.png",
            "snapshot.png",
            "saturate.png",
        ] {
            assert_eq!(
                png_size(&out.join(chart))?,
                (charts::WIDTH, charts::HEIGHT),
                "{chart}"
            );
        }
        let md = std::fs::read_to_string(out.join("results.md"))?;
        for chart in [
            "latency-cdf.png",
            "cpu.png",
            "memory.png",
            "snapshot.png",
            "saturate.png",
        ] {
            assert!(md.contains(&format!("]({chart})")), "{chart} not linked");
        }
        assert!(md.contains("## Targets"));
        assert!(md.contains("**etcd** failed: etcd exited with status 1: bind: address in use"));

        let row = target_row(&md, "CPU per delivered update vs grpc-proxy");
        assert!(row.contains("| 0.20× |") && row.ends_with("✅ |"), "{row}");
        let row = target_row(&md, "CPU per delivered update vs floor");
        assert!(row.contains("| 1.25× |") && row.ends_with("✅ |"), "{row}");
        let row = target_row(&md, "Capacity vs grpc-proxy");
        assert!(row.contains("| 8.00× |") && row.ends_with("✅ |"), "{row}");
        let row = target_row(&md, "p99 write → agent vs grpc-proxy");
        assert!(row.contains("| 0.17× |") && row.ends_with("✅ |"), "{row}");
        let row = target_row(&md, "All agents in sync vs grpc-proxy");
        assert!(row.contains("| 0.20× |") && row.ends_with("✅ |"), "{row}");
        let row = target_row(&md, "Server memory per connected agent");
        assert!(
            row.contains("| 5.50 KiB |") && row.ends_with("✅ |"),
            "{row}"
        );
        let row = target_row(&md, "Lost updates");
        assert!(row.contains("etcd n/a") && row.ends_with("✅ |"), "{row}");
        Ok(())
    }

    #[test]
    fn missing_and_failing_targets() {
        let mut run = sample_run();
        run.systems.retain(|s| s.system != "floor");
        if let Some(c) = run.systems[0].churn.as_mut() {
            c.server_cpu_us_per_delivery = 15.0;
            c.lost = 3;
        }
        let md = markdown(&run);
        let row = target_row(&md, "CPU per delivered update vs grpc-proxy");
        assert!(row.contains("| 0.75× |") && row.ends_with("❌ |"), "{row}");
        let row = target_row(&md, "CPU per delivered update vs floor");
        assert!(row.contains("floor n/a") && row.ends_with("n/a |"), "{row}");
        let row = target_row(&md, "Lost updates");
        assert!(row.ends_with("❌ |"), "{row}");
        // No saturate chart without saturate steps.
        run.systems.iter_mut().for_each(|s| s.saturate.clear());
        assert!(!markdown(&run).contains("saturate.png"));
    }

    #[test]
    fn report_subcommand_rerenders() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        write_all(&sample_run(), dir.path())?;
        std::fs::remove_file(dir.path().join("results.md"))?;
        std::fs::remove_file(dir.path().join("cpu.png"))?;
        run(ReportArgs {
            input: dir.path().join("results.json"),
            out: None,
        })?;
        assert!(dir.path().join("results.md").exists());
        assert!(dir.path().join("cpu.png").exists());
        let other = dir.path().join("other");
        run(ReportArgs {
            input: dir.path().join("results.json"),
            out: Some(other.clone()),
        })?;
        assert!(other.join("results.json").exists() && other.join("latency-cdf.png").exists());
        Ok(())
    }

    #[test]
    fn formatting() {
        assert_eq!(int(0), "0");
        assert_eq!(int(1234), "1,234");
        assert_eq!(int(1_234_567), "1,234,567");
        assert_eq!(ms(54_000), "54.0");
        assert_eq!(ms(2_100), "2.10");
        assert_eq!(cell("a|b\nc"), "a\\|b c");
    }
}
