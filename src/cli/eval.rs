//! `meshsync eval 'EXPR' --server URL`: what `calicoq eval` does for Calico. Subscribes with the
//! `felix` subscription, waits until the mirror is in sync, and lists every WorkloadEndpoint and
//! HostEndpoint of the whole mesh (every cluster) whose labels the selector matches.
//!
//! The labels are those a node agent evaluates policy against: the `labelsToApply` of each profile
//! named in the endpoint's `spec.profiles`, in order (a later profile overrides an earlier one),
//! looked up in the endpoint's own cluster; then the endpoint's own `metadata.labels`, which win.
//!
//! Exit codes: 0 on success (also when nothing matches), 1 when the mirror is not in sync within
//! `--timeout` or the server refuses the subscription, 2 on bad input (selector, timeout, address).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use meshsync_agent::{Agent, AgentConfig, AgentEvent, Mirror, MirrorKey, cluster_state_name};
use meshsync_proto::{self as pb, LogSafe};
use meshsync_selector::Selector;
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::common::{cluster_label, describe_state, resource_path, shown, terminal_json};

const WORKLOAD_ENDPOINT: &str = "WorkloadEndpoint";
const HOST_ENDPOINT: &str = "HostEndpoint";
const PROFILE: &str = "Profile";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// One line per matching endpoint, then a summary line.
    #[default]
    Text,
    /// One JSON document: selector, unique ID and the matches with their effective labels.
    Json,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The selector expression, e.g. "app == 'postgres'".
    pub expr: String,
    /// Server URL(s), e.g. http://127.0.0.1:5473; repeat or comma-separate for failover.
    #[arg(long, required = true, value_delimiter = ',', env = "MESHSYNC_SERVER")]
    pub server: Vec<String>,
    #[command(flatten)]
    pub tls: super::tls_flags::ClientTlsFlags,
    /// How to print the matches.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Fail (exit 1) if the mirror is not in sync within SECS.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,
}

/// One endpoint the selector matched.
#[derive(Debug)]
struct Match<'a> {
    key: &'a MirrorKey,
    node: String,
    ips: Vec<String>,
    labels: BTreeMap<String, String>,
}

pub async fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let selector = match meshsync_selector::parse(&args.expr) {
        Ok(selector) => selector,
        Err(err) => return Ok(bad_input(&format!("invalid selector: {err}"))),
    };
    if !(args.timeout.is_finite() && args.timeout >= 0.0) {
        return Ok(bad_input(&format!(
            "--timeout must be a non-negative number of seconds, got {}",
            args.timeout
        )));
    }
    let mut config = AgentConfig::new(String::new());
    config.servers = args.server.clone();
    config.tls = args.tls.client_tls()?;
    config.subscription = "felix".into();
    config.node_name = "meshsync-eval".into();
    let mut agent = match Agent::new(config) {
        Ok(agent) => agent,
        Err(err) => return Ok(bad_input(&err.to_string())),
    };

    let deadline = match super::seconds("--timeout", args.timeout, false) {
        Ok(timeout) => Instant::now() + timeout,
        Err(e) => return Ok(bad_input(&e.to_string())),
    };
    let mut shutdown = std::pin::pin!(super::shutdown_signal());
    let mut last_error: Option<String> = None;
    while !agent.mirror().in_sync() {
        let event = tokio::select! {
            event = agent.next() => event,
            _ = tokio::time::sleep_until(deadline) => {
                let mut message = format!(
                    "meshsync eval: timed out after {}s waiting for the mirror of {} to be in sync \
                     (overall state: {}, {} resources mirrored)",
                    args.timeout,
                    args.server.join(","),
                    describe_state(agent.mirror()),
                    agent.mirror().len()
                );
                if let Some(error) = &last_error {
                    message.push_str(&format!("; last connection error: {error}"));
                }
                eprintln!("{message}");
                return Ok(ExitCode::FAILURE);
            }
            _ = &mut shutdown => {
                eprintln!("meshsync eval: interrupted before the mirror was in sync");
                return Ok(ExitCode::FAILURE);
            }
        };
        match event {
            Ok(AgentEvent::Disconnected { server, error, .. }) => {
                let error = LogSafe(&error);
                debug!(server = %server, error = %error, "connection lost; will retry");
                last_error = Some(format!("{server}: {error}"));
            }
            Ok(_) => {}
            Err(err) => {
                eprintln!("meshsync eval: {err}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }

    let mirror = agent.mirror();
    for (cluster, info) in mirror.clusters() {
        if info.state != pb::ClusterState::InSync {
            let name = cluster_label(cluster);
            warn!(cluster = %LogSafe(name), state = cluster_state_name(info.state), error = %LogSafe(&info.error),
                "cluster is not in sync: its endpoints may be missing or stale");
        }
    }
    let matches = evaluate(&selector, mirror);
    let printed = match args.output {
        Output::Text => print_text(&selector, &matches),
        Output::Json => print_json(&selector, &matches),
    };
    match printed {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
    }
}

fn bad_input(message: &str) -> ExitCode {
    super::common::bad_input("eval", message)
}

/// Every endpoint of the mirror whose effective labels the selector matches, sorted by
/// (cluster, kind, namespace, name).
fn evaluate<'a>(selector: &Selector, mirror: &'a Mirror) -> Vec<Match<'a>> {
    let resources = mirror.resources();
    // Profiles' labelsToApply by (cluster, name), each parsed once.
    let mut profiles: HashMap<(&str, &str), BTreeMap<String, String>> = HashMap::new();
    for (key, entry) in resources {
        if key.kind != PROFILE || !key.namespace.is_empty() {
            continue;
        }
        let Some(object) = parse_object(key, &entry.value) else {
            continue;
        };
        let labels = string_map(key, object.get("spec").and_then(|s| s.get("labelsToApply")));
        profiles.insert((key.cluster.as_str(), key.name.as_str()), labels);
    }

    let mut matches = Vec::new();
    for (key, entry) in resources {
        let ips_field = match key.kind.as_str() {
            WORKLOAD_ENDPOINT => "ipNetworks",
            HOST_ENDPOINT => "expectedIPs",
            _ => continue,
        };
        let Some(object) = parse_object(key, &entry.value) else {
            continue;
        };
        let spec = object.get("spec");
        let mut labels = BTreeMap::new();
        let profile_names = spec
            .and_then(|s| s.get("profiles"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for name in profile_names.iter().filter_map(Value::as_str) {
            match profiles.get(&(key.cluster.as_str(), name)) {
                Some(applied) => {
                    labels.extend(applied.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                None => debug!(endpoint = %LogSafe(&describe_key(key)), profile = %LogSafe(name),
                    "profile not found in the endpoint's cluster; it contributes no labels"),
            }
        }
        labels.extend(string_map(
            key,
            object.get("metadata").and_then(|m| m.get("labels")),
        ));
        if !selector.evaluate(&labels) {
            continue;
        }
        let node = spec
            .and_then(|s| s.get("node"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let ips = spec
            .and_then(|s| s.get(ips_field))
            .and_then(Value::as_array)
            .map(|ips| {
                ips.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        matches.push(Match {
            key,
            node,
            ips,
            labels,
        });
    }
    // The mirror is already ordered by key; sorting keeps the output order explicit.
    matches.sort_by(|a, b| a.key.cmp(b.key));
    matches
}

fn describe_key(key: &MirrorKey) -> String {
    resource_path(&key.cluster, &key.kind, &key.namespace, &key.name)
}

/// The value as a JSON object, or `None` (with a warning) when it is anything else.
fn parse_object(key: &MirrorKey, value: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(value) {
        Ok(Value::Object(object)) => Some(object),
        Ok(other) => {
            warn!(resource = %LogSafe(&describe_key(key)), found = json_type(&other),
                "skipping a value that is not a JSON object");
            None
        }
        Err(err) => {
            warn!(resource = %LogSafe(&describe_key(key)), error = %err,
                "skipping a value that is not valid JSON");
            None
        }
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A label map (`metadata.labels`, `spec.labelsToApply`): absent or null is empty; entries whose
/// value is not a string, or a map that is not an object, are skipped with a warning.
fn string_map(key: &MirrorKey, value: Option<&Value>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    match value {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                match v {
                    Value::String(s) => {
                        labels.insert(k.clone(), s.clone());
                    }
                    other => warn!(resource = %LogSafe(&describe_key(key)), label = %LogSafe(k),
                        found = json_type(other), "ignoring a label whose value is not a string"),
                }
            }
        }
        Some(other) => warn!(resource = %LogSafe(&describe_key(key)), found = json_type(other),
            "ignoring labels that are not a JSON object"),
    }
    labels
}

fn print_text(selector: &Selector, matches: &[Match<'_>]) -> std::io::Result<()> {
    let rows: Vec<[String; 6]> = matches
        .iter()
        .map(|m| {
            // Every cell is the datastore's, relayed by the server: escaped for the terminal.
            [
                shown(cluster_label(&m.key.cluster)),
                shown(&m.key.kind),
                shown(&or_dash(&m.key.namespace)),
                shown(&m.key.name),
                shown(&or_dash(&m.node)),
                shown(&or_dash(&m.ips.join(","))),
            ]
        })
        .collect();
    let mut widths = [0usize; 6];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = std::io::stdout().lock();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{line}")?;
    }
    writeln!(
        out,
        "{} endpoints match {}",
        matches.len(),
        selector.canonical_str()
    )?;
    out.flush()
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        text.to_string()
    }
}

fn print_json(selector: &Selector, matches: &[Match<'_>]) -> std::io::Result<()> {
    let doc = json!({
        "selector": selector.canonical_str(),
        "unique_id": selector.unique_id_str(),
        "matches": matches.iter().map(|m| json!({
            "cluster": m.key.cluster,
            "kind": m.key.kind,
            "namespace": m.key.namespace,
            "name": m.key.name,
            "node": m.node,
            "ips": m.ips,
            "labels": m.labels,
        })).collect::<Vec<_>>(),
    });
    let text = terminal_json(&doc).map_err(std::io::Error::other)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}
