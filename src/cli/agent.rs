//! `meshsync agent`: the reference node agent. Keeps a mirror, prints events, writes dumps.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use meshsync_agent::{
    Agent, AgentConfig, AgentEvent, Mirror, MirrorKey, cluster_state_name, sync_state_name,
};
use meshsync_proto::{self as pb, LogSafe};
use serde_json::json;
use tokio::time::Instant;
use tracing::{info, warn};

use super::common::{
    cluster_label, cluster_status_json, describe_state, resource_path, terminal_json_line,
};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per received event (JSON lines).
    Json,
    /// Print nothing per event.
    Quiet,
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// Server URL(s), e.g. http://127.0.0.1:5473; repeat or comma-separate for failover.
    #[arg(long, required = true, value_delimiter = ',', env = "MESHSYNC_SERVER")]
    server: Vec<String>,
    #[command(flatten)]
    tls: super::tls_flags::ClientTlsFlags,
    /// Subscription type: felix, bgp, tunnel-ip-allocation, node-status, federation or all.
    #[arg(long, default_value = "felix")]
    syncer: String,
    /// Node name sent to the server (default: $NODENAME or $HOSTNAME).
    #[arg(long)]
    node_name: Option<String>,
    /// Only call the mirror in sync once this cluster is in sync too (repeatable).
    #[arg(long = "require-cluster")]
    required_clusters: Vec<String>,
    /// Exit 0 as soon as the mirror is in sync.
    #[arg(long)]
    until_in_sync: bool,
    /// With --until-in-sync: fail if not in sync within SECS. Otherwise: run for SECS, then exit 0.
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Write the mirror as one JSON document to FILE on in-sync and on exit.
    #[arg(long, value_name = "FILE")]
    dump: Option<PathBuf>,
    /// How to print events.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Compression to accept from the server: `zstd` (the server says in its hello whether it
    /// uses it) or `none`.
    #[arg(long, value_enum, default_value_t = super::common::CompressionFlag::Zstd)]
    compression: super::common::CompressionFlag,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let mut config = AgentConfig::new(String::new());
    config.servers = args.server.clone();
    config.tls = args.tls.client_tls()?;
    config.subscription = args.syncer.clone();
    config.required_clusters = args.required_clusters.clone();
    config.accept_compression = args.compression.accepted();
    if let Some(node) = &args.node_name {
        config.node_name = node.clone();
    }
    let mut agent = Agent::new(config)?;
    let deadline = match args.timeout {
        Some(secs) => Some(Instant::now() + super::seconds("--timeout", secs, false)?),
        None => None,
    };
    let mut shutdown = std::pin::pin!(super::shutdown_signal());
    let mut was_in_sync = false;
    loop {
        let timeout = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            event = agent.next() => event,
            _ = timeout => {
                write_dump(&args, agent.mirror())?;
                if args.until_in_sync {
                    eprintln!("meshsync agent: timed out after {}s waiting for in-sync (overall state: {}, {} resources mirrored)",
                        args.timeout.unwrap_or_default(), describe_state(agent.mirror()), agent.mirror().len());
                    return Ok(ExitCode::FAILURE);
                }
                return Ok(ExitCode::SUCCESS);
            }
            _ = &mut shutdown => {
                write_dump(&args, agent.mirror())?;
                return Ok(ExitCode::SUCCESS);
            }
        };
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                write_dump(&args, agent.mirror())?;
                return Err(e.into());
            }
        };
        if let Err(e) = print_event(args.output, &event) {
            write_dump(&args, agent.mirror())?;
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(anyhow::Error::new(e).context("writing to stdout"));
        }
        if let AgentEvent::Disconnected {
            server,
            error,
            retry_in,
        } = &event
        {
            warn!(server = %server, error = %LogSafe(error), retry_in = ?retry_in, "connection lost; will retry");
        }
        let in_sync = agent.mirror().in_sync();
        if in_sync && !was_in_sync {
            info!(
                resources = agent.mirror().len(),
                seq = agent.mirror().seq(),
                "mirror in sync"
            );
            write_dump(&args, agent.mirror())?;
            if args.until_in_sync {
                return Ok(ExitCode::SUCCESS);
            }
        }
        was_in_sync = in_sync;
    }
}

fn write_dump(args: &AgentArgs, mirror: &Mirror) -> anyhow::Result<()> {
    let Some(path) = &args.dump else {
        return Ok(());
    };
    write_atomically(path, mirror).with_context(|| format!("writing dump {}", path.display()))
}

/// Writes the dump to a temporary file and renames it, so a reader never sees half a document.
fn write_atomically(path: &Path, mirror: &Mirror) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut bytes = serde_json::to_vec_pretty(&mirror.to_dump())?;
    bytes.push(b'\n');
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// [`resource_path`] of the server's key parts, each escaped.
fn safe_path(cluster: &str, kind: &str, namespace: &str, name: &str) -> String {
    let [cluster, kind, namespace, name] =
        [cluster, kind, namespace, name].map(|part| LogSafe(part).to_string());
    resource_path(&cluster, &kind, &namespace, &name)
}

fn update_type(t: i32) -> &'static str {
    match pb::UpdateType::try_from(t) {
        Ok(pb::UpdateType::New) => "NEW",
        Ok(pb::UpdateType::Updated) => "UPDATED",
        Ok(pb::UpdateType::Deleted) => "DELETED",
        _ => "UNKNOWN",
    }
}

fn status_json(s: &pb::Status) -> serde_json::Value {
    json!({
        "seq": s.seq,
        "overall": sync_state_name(s.overall()),
        "clusters": s.clusters.iter().map(cluster_status_json).collect::<Vec<_>>(),
    })
}

fn key_json(k: &MirrorKey) -> serde_json::Value {
    json!({"cluster": k.cluster, "kind": k.kind, "namespace": k.namespace, "name": k.name})
}

/// Prints one event. A closed stdout (`| head`) is an error the caller ends on, not a panic.
fn print_event(output: Output, event: &AgentEvent) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match output {
        Output::Quiet => Ok(()),
        Output::Json => writeln!(out, "{}", terminal_json_line(&event_json(event))),
        Output::Text => write_text_event(&mut out, event),
    }
}

/// One event as a line of `--output json`.
fn event_json(event: &AgentEvent) -> serde_json::Value {
    match event {
        AgentEvent::Connected { server, hello } => json!({
            "event": "connected", "server": server, "epoch": hello.epoch,
            "server_version": hello.server_version, "subscription": hello.subscription,
            "resumed": hello.resumed,
            "path": meshsync_agent::sync_path_name(hello),
            "compression": super::common::compression_name(hello.compression),
        }),
        AgentEvent::Update(u) => update_json(u),
        AgentEvent::Removed(k) => json!({"event": "removed", "key": key_json(k)}),
        AgentEvent::Status { status, in_sync } => {
            json!({"event": "status", "in_sync": in_sync, "status": status_json(status)})
        }
        AgentEvent::DigestMismatch(m) => json!({
            "event": "digest_mismatch",
            "clusters": m.iter().map(|m| m.cluster.clone()).collect::<Vec<_>>(),
        }),
        AgentEvent::Reconnect { server, reason } => {
            json!({"event": "reconnect", "server": server, "reason": reason})
        }
        AgentEvent::Disconnected {
            server,
            error,
            retry_in,
        } => json!({
            "event": "disconnected", "server": server, "error": error,
            "retry_in_ms": retry_in.as_millis() as u64,
        }),
    }
}

/// An update event; its value as JSON when it parses, else as a (lossy) string.
fn update_json(u: &pb::Update) -> serde_json::Value {
    let value = if u.value.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&u.value)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&u.value).into()))
    };
    json!({
        "event": "update", "type": update_type(u.r#type), "seq": u.seq,
        "cluster": u.cluster, "kind": u.kind, "namespace": u.namespace,
        "name": u.name, "revision": u.revision, "value": value,
    })
}

/// One event as a line of `--output text`. Text lines carry the server's strings escaped
/// (`LogSafe`): a newline or a terminal escape in a name or a reason cannot forge a line or reach
/// the terminal raw.
fn write_text_event(out: &mut impl std::io::Write, event: &AgentEvent) -> std::io::Result<()> {
    match event {
        AgentEvent::Connected { server, hello } => writeln!(
            out,
            "CONNECTED {server} epoch={:016x} server_version={} subscription={} compression={} path={}",
            hello.epoch,
            LogSafe(&hello.server_version),
            LogSafe(&hello.subscription),
            super::common::compression_name(hello.compression),
            meshsync_agent::sync_path_name(hello)
        ),
        AgentEvent::Update(u) => writeln!(
            out,
            "{} {} seq={} revision={}",
            update_type(u.r#type),
            safe_path(&u.cluster, &u.kind, &u.namespace, &u.name),
            u.seq,
            LogSafe(&u.revision)
        ),
        AgentEvent::Removed(k) => writeln!(
            out,
            "REMOVED {}",
            safe_path(&k.cluster, &k.kind, &k.namespace, &k.name)
        ),
        AgentEvent::Status { status, in_sync } => writeln!(
            out,
            "STATUS {} seq={} in_sync={} clusters: {}",
            sync_state_name(status.overall()),
            status.seq,
            in_sync,
            status_text_clusters(status)
        ),
        AgentEvent::DigestMismatch(m) => writeln!(out, "DIGEST-MISMATCH {m:?}"),
        AgentEvent::Reconnect { server, reason } => {
            writeln!(out, "RECONNECT {server}: {}", LogSafe(reason))
        }
        AgentEvent::Disconnected {
            server,
            error,
            retry_in,
        } => writeln!(
            out,
            "DISCONNECTED {server}: {} (retry in {retry_in:?})",
            LogSafe(error)
        ),
    }
}

/// A status's clusters for a text line: `name=state(N keys)`, space-separated.
fn status_text_clusters(status: &pb::Status) -> String {
    let clusters: Vec<String> = status
        .clusters
        .iter()
        .map(|c| {
            let name = LogSafe(cluster_label(&c.cluster));
            format!("{name}={}({} keys)", cluster_state_name(c.state()), c.keys)
        })
        .collect();
    clusters.join(" ")
}
