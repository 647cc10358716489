//! The `stalled` scenario: some agents stop reading in the middle of churn. Rounds alternate a
//! baseline churn step (every agent reads) with a stalled one (`--stalled-fraction` of the agents
//! stop reading before the writes start and until the step's deliveries are drained), so both see
//! the same machine at nearly the same time. Measured per round: the healthy agents' latency
//! against the baseline's, the fan-out process's resident memory before, at its peak during and
//! after the stall, how many stalled agents the server disconnected, and how long after the
//! resume every agent held a marker written then (caught up, by whichever path the server chose:
//! the buffered stream, one coalesced difference, or a new connection and snapshot).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::RunArgs;
use super::steps::{Bench, churn_step_for, report_step};
use crate::model::{AgentsMessage, StalledResult, StalledRound};
use crate::{procs, workload};

/// Runs `--stalled-rounds` (baseline, stalled) pairs on the connected agents.
pub(super) async fn stalled(bench: &mut Bench, args: &RunArgs) -> anyhow::Result<StalledResult> {
    let stalled_agents = ((args.agents as f64 * args.stalled_fraction).round() as usize)
        .clamp(1, args.agents.saturating_sub(1).max(1));
    let healthy = args.agents - stalled_agents;
    let mut result = StalledResult {
        stalled_agents,
        write_timeout_s: args.meshsync_write_timeout().unwrap_or(f64::NAN),
        rounds: Vec::new(),
    };
    for round in 0..args.stalled_rounds {
        eprintln!(
            "  stalled round {} of {}: baseline, then {stalled_agents} of {} agents stop reading",
            round + 1,
            args.stalled_rounds,
            args.agents
        );
        let baseline = churn_step_for(bench, args, args.rate, args.duration, args.agents).await?;
        report_step("baseline", &baseline);

        let pid = bench.fanout_pid();
        let rss_before = procs::sample(pid).rss_bytes;
        let reconnects_before = bench.agents.reconnects;
        let peak = RssPeak::start(pid);
        bench
            .agents
            .command(&format!("stall {stalled_agents}"))
            .await?;
        bench
            .agents
            .wait_progress(Duration::from_secs(60), |m| {
                matches!(m, AgentsMessage::Progress { stalled, .. } if *stalled == stalled_agents)
            })
            .await?;
        let stalled = churn_step_for(bench, args, args.rate, args.duration, healthy).await?;
        report_step(
            &format!("healthy agents ({stalled_agents} stalled)"),
            &stalled,
        );

        // Expect a marker of a new generation, resume (commands are handled in order, so the
        // resume's acknowledgement follows the catch-up's), write the marker and wait until every
        // agent holds it.
        bench.generation += 1;
        let marker = bench.generation;
        bench.agents.command(&format!("catchup {marker}")).await?;
        bench.agents.command("resume").await?;
        let resumed = Instant::now();
        bench
            .agents
            .wait_progress(Duration::from_secs(60), |m| {
                matches!(m, AgentsMessage::Progress { stalled: 0, .. })
            })
            .await?;
        bench
            .writer
            .put(
                workload::key(0),
                workload::value(0, marker, workload::now_ns()),
            )
            .await?;
        let timeout = Duration::from_secs_f64(args.drain_timeout.max(60.0));
        let caught_up = bench
            .agents
            .wait_progress(timeout, |m| {
                matches!(m, AgentsMessage::Progress { caught_up, .. } if *caught_up == args.agents)
            })
            .await
            .is_ok();
        let recovery_s = resumed.elapsed().as_secs_f64();
        let rss_peak = peak.stop();
        let rss_after = procs::sample(pid).rss_bytes;
        let caught = bench.agents.caught_up;
        let reconnected = bench.agents.reconnects.saturating_sub(reconnects_before);
        eprintln!(
            "  recovery: {caught} of {} agents caught up {:.2} s after the resume ({reconnected} reconnected); server RSS {:.1} → peak {:.1} → {:.1} MiB",
            args.agents,
            recovery_s,
            mib(rss_before),
            mib(rss_peak.max(rss_before)),
            mib(rss_after)
        );
        anyhow::ensure!(
            caught_up,
            "only {caught} of {} agents caught up within {timeout:?} of the resume",
            args.agents
        );
        result.rounds.push(StalledRound {
            p99_ratio: ratio(stalled.latency.p99_us, baseline.latency.p99_us),
            baseline,
            stalled,
            rss_before_bytes: rss_before,
            rss_peak_bytes: rss_peak.max(rss_before),
            rss_after_bytes: rss_after,
            reconnected_agents: reconnected,
            recovery_s,
        });
    }
    Ok(result)
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// The highest resident set of a process, sampled every 100 ms until stopped.
struct RssPeak {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssPeak {
    fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while !s.load(Ordering::Relaxed) {
                tick.tick().await;
                p.fetch_max(procs::sample(pid).rss_bytes, Ordering::Relaxed);
            }
        });
        RssPeak { peak, stop }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.peak.load(Ordering::Relaxed)
    }
}
