//! `meshsync status`: one unary `Status` call, printed as a table for people or JSON for scripts.
//!
//! Every string in the answer came from the server, and through it from agents and datastores:
//! the table shows each escaped ([`shown`]) and the JSON escapes every control character, so no
//! name can forge a row or send the terminal a command.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use meshsync_agent::{cluster_state_name, sync_state_name};
use meshsync_proto::{self as pb, sync_client::SyncClient};
use serde_json::json;

use super::common::{cluster_label, cluster_status_json, shown, terminal_json};

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
    /// With --agents: list at most N agents (the DIVERGED first, then those without a recent
    /// verdict); 0 is as many as the server lists at most (1000).
    #[arg(long, value_name = "N", default_value_t = 0)]
    agents_limit: u32,
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

/// An agent's clusters as `name=STATE` (or `-` before its first report), escaped.
fn agent_clusters(a: &pb::AgentInfo) -> String {
    if a.clusters.is_empty() {
        return if a.reported_seq == 0 {
            "STALE (no report yet)".into()
        } else {
            "-".into()
        };
    }
    let mut listed: Vec<String> = a
        .clusters
        .iter()
        .map(|c| {
            let state = agent_state_name(c.state);
            let name = shown(cluster_label(&c.cluster));
            if c.state == pb::AgentClusterState::Diverged as i32 {
                format!("{name}={state} ({} keys, server {})", c.keys, c.server_keys)
            } else {
                format!("{name}={state}")
            }
        })
        .collect();
    if a.unlisted_clusters > 0 {
        listed.push(format!(
            "(+{} more clusters not shown)",
            a.unlisted_clusters
        ));
    }
    listed.join(" ")
}

pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let mut response = fetch_status(&args).await?;
    let status = response.status.take().unwrap_or_default();
    match args.output {
        Output::Json => print_json(&args, &response, &status)?,
        Output::Table => print_tables(&args, &response, &status),
    }
    Ok(ExitCode::SUCCESS)
}

/// Connects to the server and makes the `Status` call.
async fn fetch_status(args: &StatusArgs) -> anyhow::Result<pb::StatusResponse> {
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
            agents_limit: args.agents_limit,
        })
        .await
        // The server's message is escaped like everything else it sends.
        .map_err(|status| anyhow::anyhow!("{}", shown(&status.to_string())))
        .with_context(|| format!("Status call to {} failed", args.server))?
        .into_inner();
    Ok(response)
}

/// The answer as one JSON document (with `agents` and `agents_total` when asked for).
fn print_json(
    args: &StatusArgs,
    response: &pb::StatusResponse,
    status: &pb::Status,
) -> anyhow::Result<()> {
    let mut doc = json!({
        "server": args.server,
        "server_version": response.server_version,
        "epoch": response.epoch,
        "connections": response.connections,
        "seq": status.seq,
        "overall": sync_state_name(status.overall()),
        "clusters": status.clusters.iter().map(cluster_status_json).collect::<Vec<_>>(),
        "consistent_seq": status.consistent_seq,
    });
    if args.agents {
        doc["agents"] = response.agents.iter().map(agent_json).collect();
        doc["agents_total"] = json!(agents_total(response.agents_total, response.agents.len()));
    }
    println!("{}", terminal_json(&doc)?);
    Ok(())
}

/// One listed agent, for the JSON output.
fn agent_json(a: &pb::AgentInfo) -> serde_json::Value {
    json!({
        "node": a.node_name, "peer": a.peer, "subscription": a.subscription,
        "stream_id": a.stream_id, "seq": a.reported_seq, "lag": a.lag,
        "report_age_ms": a.report_age_ms,
        "clusters": a.clusters.iter().map(|c| json!({
            "cluster": c.cluster, "state": agent_state_name(c.state),
            "keys": c.keys, "server_keys": c.server_keys,
        })).collect::<Vec<_>>(),
        "unlisted_clusters": a.unlisted_clusters,
    })
}

/// The answer for people: a summary, the clusters' table and, when asked for, the agents' table.
fn print_tables(args: &StatusArgs, response: &pb::StatusResponse, status: &pb::Status) {
    println!(
        "Server:      {} (version {}, epoch {:016x})",
        args.server,
        shown(&response.server_version),
        response.epoch
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
                shown(cluster_label(&c.cluster)),
                cluster_state_name(c.state()).to_string(),
                c.keys.to_string(),
                format!("{:016x}", c.digest),
                shown(&c.error),
            ]
        })
        .collect();
    print_table(["CLUSTER", "STATE", "KEYS", "DIGEST", "ERROR"], &rows);
    if args.agents {
        println!();
        print_agents_table(response);
    }
}

/// The listed agents' table, and how many more are connected than listed.
fn print_agents_table(response: &pb::StatusResponse) {
    let rows: Vec<[String; 6]> = response
        .agents
        .iter()
        .map(|a| {
            [
                shown(&a.node_name),
                shown(&a.peer),
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
    let more = agents_total(response.agents_total, response.agents.len())
        .saturating_sub(response.agents.len());
    if more > 0 {
        println!("{more} more agents not shown (the DIVERGED are listed first)");
    }
}

/// Connected agents in all: the server's count, or what it listed (servers before the count).
fn agents_total(total: u32, listed: usize) -> usize {
    usize::try_from(total).unwrap_or(usize::MAX).max(listed)
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
