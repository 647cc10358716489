//! The Markdown tables of a run, one per scenario (snapshot, churn, saturate), its header and the
//! charts section, and the per-system figures they are made of.

use std::fmt::Write as _;

use super::format::*;
use crate::charts;
use crate::model::{ChurnResult, ProcessUsage, RunResult, SystemResult};

pub(super) fn header(md: &mut String, run: &RunResult) {
    let systems = run.system_names();
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
    let _ = writeln!(md, "| Systems | {} |", systems.join(", "));
    let _ = writeln!(
        md,
        "| Rounds | {} (systems interleaved: every system once per round) |\n",
        run.rounds()
    );
    let failures: Vec<&SystemResult> = run.systems.iter().filter(|s| s.error.is_some()).collect();
    for s in &failures {
        let _ = writeln!(
            md,
            "> ⚠️ **{}** failed{}: {}",
            s.system,
            if run.rounds() > 1 {
                format!(" in round {}", s.round + 1)
            } else {
                String::new()
            },
            one_line(s.error.as_deref().unwrap_or_default())
        );
    }
    if !failures.is_empty() {
        md.push('\n');
    }
}

pub(super) fn snapshot_table(md: &mut String, run: &RunResult) {
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
         | Server peak RSS MiB | Server KiB/agent | Sent MiB | Received KiB/agent | Agents CPU s |"
    );
    let _ = writeln!(
        md,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (s, snap) in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
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
            received(&s.system, &snap.agents_process, snap.agents as u64, 1024.0),
            num(snap.agents_process.cpu_seconds, 2),
        );
    }
    let _ = writeln!(
        md,
        "\nServer = every server-side process (etcd and the proxy, meshsync, Typha or floor); peak RSS \
         is their sum. KiB/agent = (RSS of the fan-out process with N agents − with none) / N. \
         Sent = bytes written by the process serving the agents (`write(2)`-type calls only: a \
         server that sends with `send(2)` shows less). Received = bytes the agents read off \
         their sockets, per agent: measured for Typha's Go clients only (on Typha and on \
         meshsync's Typha port), the bytes on the wire of either server.\n"
    );
}

pub(super) fn churn_table(md: &mut String, run: &RunResult) {
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
    head.push_str(
        " Server µs/delivery | Fan-out writes/delivery | Received B/delivery | Agents CPU s |",
    );
    align.push_str("---:|---:|---:|---:|");
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
            " {} | {} | {} | {} |",
            per_delivery(c),
            writes_per_delivery(c),
            received(&s.system, &c.agents_process, c.deliveries, 1.0),
            num(c.agents_process.cpu_seconds, 2)
        );
        let _ = writeln!(md, "{row}");
    }
    md.push('\n');
}

pub(super) fn saturate_tables(md: &mut String, run: &RunResult) {
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
            "| Rate /s | Achieved writes/s | Deliveries/s | p99 ms | Lost | Server µs/delivery | \
             Fan-out writes/delivery | Within limits |\n\
             |---:|---:|---:|---:|---:|---:|---:|:---:|"
        );
        for c in &s.saturate {
            let ok = c.within_limits();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                int_f(c.rate),
                num(c.achieved_rate, 1),
                int_f(c.deliveries_per_s),
                ms(c.latency.p99_us),
                int(c.lost),
                per_delivery(c),
                writes_per_delivery(c),
                if ok { "✅" } else { "❌" }
            );
        }
        md.push('\n');
    }
}

pub(super) fn charts_section(md: &mut String, run: &RunResult) {
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

pub(super) fn find<'a>(run: &'a RunResult, name: &str) -> Option<&'a SystemResult> {
    run.systems.iter().find(|s| s.system == name)
}

pub(super) fn server_cpu(ps: &[ProcessUsage]) -> f64 {
    ps.iter().map(|p| p.cpu_seconds).sum()
}

pub(super) fn server_peak_rss(ps: &[ProcessUsage]) -> u64 {
    ps.iter().map(|p| p.peak_rss_bytes).sum()
}

/// Bytes written by the process serving the agents (the one that is not etcd, else etcd), MiB.
pub(super) fn sent_mib(ps: &[ProcessUsage]) -> String {
    let fanout = ps
        .iter()
        .rev()
        .find(|p| p.role != "etcd")
        .or_else(|| ps.iter().find(|p| p.role == "etcd"));
    fanout.map_or("n/a".into(), |p| num(mib(p.bytes_written), 1))
}

/// Bytes the agents read, per `per` (agents, deliveries) in units of `unit` bytes: only for
/// Typha's Go clients, which read with `read(2)` (counted in `rchar`); `n/a` for others.
pub(super) fn received(system: &str, agents: &ProcessUsage, per: u64, unit: f64) -> String {
    use clap::ValueEnum;
    let typha_clients = crate::model::System::value_variants()
        .iter()
        .any(|s| s.name() == system && s.typha_clients());
    if typha_clients && per > 0 && agents.bytes_read > 0 {
        num(agents.bytes_read as f64 / per as f64 / unit, 1)
    } else {
        "n/a".into()
    }
}

pub(super) fn per_delivery(c: &ChurnResult) -> String {
    if c.deliveries > 0 {
        num(c.server_cpu_us_per_delivery, 2)
    } else {
        "n/a".into()
    }
}

/// Write syscalls of the process serving the agents per delivered update: below 1 when one write
/// carries several updates to a connection.
pub(super) fn writes_per_delivery(c: &ChurnResult) -> String {
    let fanout = c
        .server
        .iter()
        .rev()
        .find(|p| p.role != "etcd")
        .or_else(|| c.server.iter().find(|p| p.role == "etcd"));
    match fanout {
        Some(p) if c.deliveries > 0 && p.write_syscalls > 0 => {
            num(p.write_syscalls as f64 / c.deliveries as f64, 3)
        }
        _ => "n/a".into(),
    }
}

pub(super) fn capacity(s: &SystemResult) -> String {
    s.capacity_deliveries_per_s
        .map_or("none within limits".into(), int_f)
}
