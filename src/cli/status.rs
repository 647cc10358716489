//! `meshsync status`: one unary `Status` call, printed as a table for people or JSON for scripts.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use meshsync_agent::{cluster_state_name, sync_state_name};
use meshsync_proto::{self as pb, sync_client::SyncClient};
use serde_json::json;

use super::common::{cluster_label, cluster_status_json};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    #[default]
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Server URL, e.g. http://127.0.0.1:5473.
    #[arg(long, env = "MESHSYNC_SERVER")]
    server: String,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Give up after SECS.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    timeout: f64,
    /// Also list every connected agent: node, seq, lag and, per cluster, `OK` / `STALE` /
    /// `DIVERGED` from its last report of what it holds.
    #[arg(long)]
    agents: bool,
    #[command(flatten)]
    tls: super::tls_flags::ClientTlsFlags,
}

fn agent_state_name(state: i32) -> &'static str {
    match pb::AgentClusterState::try_from(state) {
        Ok(pb::AgentClusterState::Ok) => "OK",
        Ok(pb::AgentClusterState::Stale) => "STALE",
        Ok(pb::AgentClusterState::Diverged) => "DIVERGED",
        _ => "UNKNOWN",
    }
}

/// An agent's clusters as `name=STATE` (or `-` before its first report).
fn agent_clusters(a: &pb::AgentInfo) -> String {
    if a.clusters.is_empty() {
        return if a.reported_seq == 0 {
            "STALE (no report yet)".into()
        } else {
            "-".into()
        };
    }
    a.clusters
        .iter()
        .map(|c| {
            let state = agent_state_name(c.state);
            if c.state == pb::AgentClusterState::Diverged as i32 {
                format!(
                    "{}={state} ({} keys, server {})",
                    cluster_label(&c.cluster),
                    c.keys,
                    c.server_keys
                )
            } else {
                format!("{}={state}", cluster_label(&c.cluster))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let timeout = super::seconds("--timeout", args.timeout, true)?;
    let tls = args.tls.client_tls()?;
    let endpoint = meshsync_agent::endpoint(&args.server, tls.as_ref(), timeout)?.timeout(timeout);
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", args.server))?;
    let response = SyncClient::new(channel)
        .status(pb::StatusRequest {
            agents: args.agents,
        })
        .await
        .with_context(|| format!("Status call to {} failed", args.server))?
        .into_inner();
    let status = response.status.unwrap_or_default();
    match args.output {
        Output::Json => {
            let doc = json!({
                "server": args.server,
                "server_version": response.server_version,
                "epoch": response.epoch,
                "connections": response.connections,
                "seq": status.seq,
                "overall": sync_state_name(status.overall()),
                "clusters": status.clusters.iter().map(cluster_status_json).collect::<Vec<_>>(),
                "consistent_seq": status.consistent_seq,
            });
            let mut doc = doc;
            if args.agents {
                doc["agents"] = response
                    .agents
                    .iter()
                    .map(|a| {
                        json!({
                            "node": a.node_name, "peer": a.peer, "subscription": a.subscription,
                            "stream_id": a.stream_id, "seq": a.reported_seq, "lag": a.lag,
                            "report_age_ms": a.report_age_ms,
                            "clusters": a.clusters.iter().map(|c| json!({
                                "cluster": c.cluster, "state": agent_state_name(c.state),
                                "keys": c.keys, "server_keys": c.server_keys,
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
            }
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Output::Table => {
            println!(
                "Server:      {} (version {}, epoch {:016x})",
                args.server, response.server_version, response.epoch
            );
            println!(
                "Overall:     {} at seq {}",
                sync_state_name(status.overall()),
                status.seq
            );
            println!("Connections: {}", response.connections);
            println!();
            let rows: Vec<[String; 5]> = status
                .clusters
                .iter()
                .map(|c| {
                    [
                        cluster_label(&c.cluster).to_string(),
                        cluster_state_name(c.state()).to_string(),
                        c.keys.to_string(),
                        format!("{:016x}", c.digest),
                        c.error.clone(),
                    ]
                })
                .collect();
            print_table(["CLUSTER", "STATE", "KEYS", "DIGEST", "ERROR"], &rows);
            if args.agents {
                println!();
                let rows: Vec<[String; 6]> = response
                    .agents
                    .iter()
                    .map(|a| {
                        [
                            a.node_name.clone(),
                            a.peer.clone(),
                            a.reported_seq.to_string(),
                            a.lag.to_string(),
                            format!("{:.1}s", a.report_age_ms as f64 / 1000.0),
                            agent_clusters(a),
                        ]
                    })
                    .collect();
                print_table(
                    ["AGENT", "PEER", "SEQ", "LAG", "REPORTED", "CLUSTERS"],
                    &rows,
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
