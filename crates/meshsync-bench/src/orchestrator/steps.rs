//! The measurements on one system's running processes: the `snapshot` (every agent connects at
//! once), one `churn` step (writes at a rate, deliveries drained, CPU and latency measured) and the
//! `saturate` ramp of churn steps; each printed to stderr as it ends.

use std::time::Duration;

use meshsync_etcd::EtcdClient;

use super::RunArgs;
use super::agents_proc::AgentsProc;
use super::writer::write_load;
use crate::model::{
    AgentsMessage, ChurnResult, ProcessUsage, SnapshotResult, System, SystemResult,
};
use crate::procs::{self, EtcdProc, Proc, Sample};

/// Everything running for one system.
pub(super) struct Bench {
    pub(super) system: System,
    pub(super) etcd: EtcdProc,
    pub(super) server: Option<Proc>,
    pub(super) writer: EtcdClient,
    pub(super) agents: AgentsProc,
    pub(super) generation: u64,
}

impl Bench {
    /// The process that does the fan-out (whose memory per agent is reported).
    pub(super) fn fanout_pid(&self) -> u32 {
        self.server
            .as_ref()
            .map(|p| p.pid)
            .unwrap_or(self.etcd.proc.pid)
    }

    pub(super) fn server_samples(&self) -> Vec<(String, u32, Sample)> {
        let mut v = vec![(
            "etcd".to_string(),
            self.etcd.proc.pid,
            self.etcd.proc.sample(),
        )];
        if let Some(s) = &self.server {
            v.push((s.role.clone(), s.pid, s.sample()));
        }
        v
    }
}

pub(super) fn server_usage(before: &[(String, u32, Sample)]) -> Vec<ProcessUsage> {
    before
        .iter()
        .map(|(role, pid, b)| procs::usage(role, *b, procs::sample(*pid)))
        .collect()
}

/// Writes `rate` updates/s for `duration` seconds (generation g), waits for deliveries, measures.
pub(super) async fn churn_step(
    bench: &mut Bench,
    args: &RunArgs,
    rate: f64,
    duration: f64,
) -> anyhow::Result<ChurnResult> {
    churn_step_for(bench, args, rate, duration, args.agents).await
}

/// [`churn_step`] where `agents` of the agents read (the others are stalled and count nothing).
pub(super) async fn churn_step_for(
    bench: &mut Bench,
    args: &RunArgs,
    rate: f64,
    duration: f64,
    agents: usize,
) -> anyhow::Result<ChurnResult> {
    bench.generation += 1;
    let generation = bench.generation;
    bench.agents.command(&format!("reset {generation}")).await?;
    // Progress lines queued before the reset carry the old count: skip to the reset's
    // acknowledgement (a Progress with nothing received yet).
    loop {
        if let AgentsMessage::Progress { received: 0, .. } =
            bench.agents.next(Duration::from_secs(60)).await?
        {
            break;
        }
    }
    bench.agents.received = 0;
    let before = bench.server_samples();
    let agents_before = bench.agents.proc.sample();
    let (writes, write_time) = write_load(
        &bench.writer,
        args.keys,
        rate,
        Duration::from_secs_f64(duration),
        generation,
    )
    .await?;
    let expected = writes * agents as u64;
    let (received, latency, _) = bench
        .agents
        .drain_and_report(expected, Duration::from_secs_f64(args.drain_timeout))
        .await?;
    let server = server_usage(&before);
    let agents_process = procs::usage("agents", agents_before, bench.agents.proc.sample());
    let cpu: f64 = server.iter().map(|u| u.cpu_seconds).sum();
    let secs = write_time.as_secs_f64().max(1e-9);
    Ok(ChurnResult {
        rate,
        achieved_rate: writes as f64 / secs,
        duration_s: secs,
        writes,
        expected_deliveries: expected,
        deliveries: received,
        lost: expected.saturating_sub(received),
        deliveries_per_s: received as f64 / secs,
        latency,
        server,
        agents_process,
        server_cpu_us_per_delivery: if received > 0 {
            cpu * 1e6 / received as f64
        } else {
            f64::NAN
        },
    })
}

pub(super) fn report_snapshot(s: Option<&SnapshotResult>) {
    if let Some(s) = s {
        let cpu: f64 = s.server.iter().map(|u| u.cpu_seconds).sum();
        eprintln!(
            "  snapshot: all {} agents in sync in {:.2} s (agent min {:.2} / median {:.2} / max {:.2} s), {} failed, server CPU {:.2} s, {:.1} KiB/agent",
            s.agents,
            s.total_s,
            s.agent_min_s,
            s.agent_median_s,
            s.agent_max_s,
            s.failed_agents,
            cpu,
            s.server_bytes_per_agent / 1024.0
        );
    }
}

pub(super) fn report_step(name: &str, c: &ChurnResult) {
    eprintln!(
        "  {name}: {:.0} writes/s, {} deliveries, {} lost, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {:.2} µs server CPU/delivery",
        c.achieved_rate,
        c.deliveries,
        c.lost,
        c.latency.p50_us as f64 / 1000.0,
        c.latency.p99_us as f64 / 1000.0,
        c.latency.max_us as f64 / 1000.0,
        c.server_cpu_us_per_delivery
    );
}

/// `snapshot`: waits until the agents, all connected at once, hold every key; measures the server
/// side since `before` and the agents process since `agents_before`.
pub(super) async fn snapshot(
    bench: &mut Bench,
    args: &RunArgs,
    before: &[(String, u32, Sample)],
    agents_before: Sample,
    rss_idle: u64,
) -> anyhow::Result<SnapshotResult> {
    let (mut per_agent, failed) = bench.agents.wait_synced(args.agents).await?;
    let server_use = server_usage(before);
    let agents_use = procs::usage("agents", agents_before, bench.agents.proc.sample());
    let rss_loaded = procs::sample(bench.fanout_pid()).rss_bytes;
    per_agent.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| -> f64 {
        if per_agent.is_empty() {
            return f64::NAN;
        }
        per_agent[((per_agent.len() - 1) as f64 * q).round() as usize]
    };
    Ok(SnapshotResult {
        agents: args.agents,
        keys: args.keys,
        total_s: per_agent.last().copied().unwrap_or(f64::NAN),
        agent_min_s: pick(0.0),
        agent_median_s: pick(0.5),
        agent_max_s: pick(1.0),
        failed_agents: failed,
        server: server_use,
        agents_process: agents_use,
        server_bytes_per_agent: rss_loaded.saturating_sub(rss_idle) as f64 / args.agents as f64,
    })
}

/// `saturate`: churn steps from `--saturate-start`, the rate multiplied by `--ramp-factor` each
/// time, until a step loses an update or its p99 passes 1 s, or the writer falls behind; then
/// `--bisect-steps` steps at the geometric midpoint between the last good and the first bad rate.
/// The highest delivery rate of a good step is the capacity.
pub(super) async fn saturate(
    bench: &mut Bench,
    args: &RunArgs,
    result: &mut SystemResult,
) -> anyhow::Result<()> {
    let mut rate = args.saturate_start;
    let mut bracket = Bracket::default();
    while rate <= args.saturate_max {
        let good = saturate_step(bench, args, result, rate, "saturate").await?;
        let writer_limited = result
            .saturate
            .last()
            .is_some_and(|s| s.achieved_rate < 0.8 * rate);
        if !good {
            bracket.bad = Some(rate);
            break;
        }
        bracket.good = Some(rate);
        if writer_limited {
            eprintln!("  the writer could not reach {rate}/s; stopping the ramp");
            return Ok(());
        }
        rate *= args.ramp_factor;
    }
    for _ in 0..args.bisect_steps {
        let Some(mid) = bracket.midpoint() else { break };
        if saturate_step(bench, args, result, mid, "bisect").await? {
            bracket.good = Some(mid);
        } else {
            bracket.bad = Some(mid);
        }
    }
    Ok(())
}

/// One step of the ramp or the bisection; records it and returns whether it was within limits.
async fn saturate_step(
    bench: &mut Bench,
    args: &RunArgs,
    result: &mut SystemResult,
    rate: f64,
    what: &str,
) -> anyhow::Result<bool> {
    let step = churn_step(bench, args, rate, args.step_duration).await?;
    report_step(&format!("{what} {rate:.0}/s"), &step);
    let good = step.within_limits();
    if good {
        result.capacity_deliveries_per_s = Some(
            result
                .capacity_deliveries_per_s
                .unwrap_or(0.0)
                .max(step.deliveries_per_s),
        );
    }
    result.saturate.push(step);
    Ok(good)
}

/// The rates known to be within limits and not, for the bisection.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Bracket {
    pub(crate) good: Option<f64>,
    pub(crate) bad: Option<f64>,
}

impl Bracket {
    /// The geometric midpoint of the last good and the first bad rate, when both are known.
    pub(crate) fn midpoint(&self) -> Option<f64> {
        match (self.good, self.bad) {
            (Some(g), Some(b)) if g > 0.0 && b > g => Some((g * b).sqrt()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Bracket;

    #[test]
    fn bisection_narrows_the_bracket_geometrically() {
        let mut b = Bracket {
            good: Some(100.0),
            bad: Some(150.0),
        };
        let m = b.midpoint().unwrap();
        assert!((m - (15_000f64).sqrt()).abs() < 1e-9);
        b.bad = Some(m);
        let m2 = b.midpoint().unwrap();
        assert!(m2 > 100.0 && m2 < m);
        // Two steps resolve a ×1.5 bracket to about ×1.107.
        assert!((m / 100.0) < 1.23 && (m2 / 100.0) < 1.11);
        assert_eq!(
            Bracket {
                good: None,
                bad: Some(5.0)
            }
            .midpoint(),
            None
        );
        assert_eq!(
            Bracket {
                good: Some(5.0),
                bad: None
            }
            .midpoint(),
            None
        );
    }
}
