//! meshsync clients built on the agent library (`--meshsync-client agent`): an [`Agent`] and its
//! mirror per client, what a node agent runs.

use std::time::Duration;

use meshsync_agent::{Agent, AgentConfig, AgentEvent};
use tokio::sync::OwnedSemaphorePermit;
use tracing::warn;

use super::AgentsArgs;
use super::recorder::Recorder;
use crate::workload::now_ns;

pub(super) async fn meshsync_client(
    id: usize,
    args: &AgentsArgs,
    shared: &Recorder,
    mut slot: Option<OwnedSemaphorePermit>,
) {
    let mut config = AgentConfig::new(args.target.clone());
    config.servers.extend(args.fallback_target.iter().cloned());
    // meshsync-full's agents never resume: every reconnect is a full snapshot (the baseline).
    config.resume = args.system != crate::model::System::MeshsyncFull;
    config.node_name = format!("bench-agent-{id}");
    config.subscription = "felix".into();
    config.connect_timeout = Duration::from_secs_f64(args.connect_timeout_s);
    config.backoff_initial = Duration::from_millis(50);
    config.backoff_max = Duration::from_secs(2);
    config.accept_compression = if args.system.zstd() {
        vec![meshsync_proto::Compression::Zstd]
    } else {
        Vec::new()
    };
    let mut agent = match Agent::new(config) {
        Ok(agent) => agent,
        Err(e) => return shared.mark_failed(id, &e.to_string()),
    };
    let mut synced = false;
    // True between a hello and the status ending its snapshot: those updates are not deliveries.
    let mut in_snapshot = true;
    let mut failures = 0u32;
    loop {
        let event = match agent.next().await {
            Ok(event) => event,
            Err(e) => {
                if !synced {
                    shared.mark_failed(id, &e.to_string());
                } else {
                    warn!(client = id, "agent stopped: {e}");
                }
                return;
            }
        };
        match event {
            AgentEvent::Update(update) => {
                shared.stall.observe(id, std::iter::once(&update.value[..]));
                if !in_snapshot {
                    shared.record(id, now_ns(), std::iter::once(&update.value[..]));
                } else if !synced {
                    continue;
                }
            }
            AgentEvent::Status { .. } => in_snapshot = false,
            AgentEvent::Connected { .. } => in_snapshot = true,
            AgentEvent::Disconnected { error, .. } => {
                if synced {
                    shared.lost_connection(id, &error);
                } else {
                    failures += 1;
                    if failures >= args.attempts {
                        return shared.mark_failed(id, &error);
                    }
                }
            }
            // A Disconnected event follows it; the agent moves on by itself.
            AgentEvent::Removed(_)
            | AgentEvent::DigestMismatch(_)
            | AgentEvent::Reconnect { .. } => {}
        }
        if !synced && agent.mirror().in_sync() && agent.mirror().len() >= args.keys {
            synced = true;
            slot.take();
            shared.mark_synced();
        }
    }
}
