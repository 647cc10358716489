//! What several subcommands print the same way: the `(local)` cluster label, a resource's path,
//! a mirror's state, a cluster's status as JSON, and the exit for bad input. Written once so that
//! `agent`, `eval` and `status` cannot drift apart in what operators and scripts read.

use std::process::ExitCode;

use meshsync_agent::{Mirror, cluster_state_name, sync_state_name};
use meshsync_proto::{self as pb, LogSafe};
use serde_json::json;

/// How the local cluster (whose name is `""`) is shown.
pub const LOCAL_LABEL: &str = "(local)";

/// A cluster's name for people: [`LOCAL_LABEL`] for the local cluster.
pub fn cluster_label(cluster: &str) -> &str {
    if cluster.is_empty() {
        LOCAL_LABEL
    } else {
        cluster
    }
}

/// A string from a server (or, through it, from an agent or a datastore) as a terminal may show
/// it: control and invisible formatting characters escaped and the length bounded, as
/// [`LogSafe`] does for logs, so no value can forge a table row or send the terminal a command.
pub fn shown(text: &str) -> String {
    LogSafe(text).to_string()
}

/// A JSON document as printed for scripts and terminals alike: pretty, with every character
/// [`LogSafe`] escapes written as `\uXXXX` (serde_json escapes only U+0000 to U+001F; DEL, the C1
/// controls and U+2028 would otherwise reach the terminal raw). The document's values are
/// unchanged. Those characters can only occur inside strings, where the escape is valid JSON, and
/// all are in the Basic Multilingual Plane.
pub fn terminal_json(doc: &serde_json::Value) -> serde_json::Result<String> {
    Ok(escape_json_text(serde_json::to_string_pretty(doc)?))
}

/// One JSON document on one line (`agent --output json`), escaped as [`terminal_json`] does.
pub fn terminal_json_line(doc: &serde_json::Value) -> String {
    escape_json_text(doc.to_string())
}

/// Writes every character [`LogSafe`] escapes as `\uXXXX`, except the newlines a pretty document
/// is laid out with (a newline inside a string is already `\n`).
fn escape_json_text(text: String) -> String {
    if !text.chars().any(|c| c != '\n' && LogSafe::needs_escape(c)) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c != '\n' && LogSafe::needs_escape(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// `cluster/kind/namespace/name`, or `cluster/kind/name` for a cluster-scoped resource.
pub fn resource_path(cluster: &str, kind: &str, namespace: &str, name: &str) -> String {
    let cluster = cluster_label(cluster);
    if namespace.is_empty() {
        format!("{cluster}/{kind}/{name}")
    } else {
        format!("{cluster}/{kind}/{namespace}/{name}")
    }
}

/// The mirror's overall state, or `not connected` before the first status.
pub fn describe_state(mirror: &Mirror) -> &'static str {
    mirror
        .overall()
        .map(sync_state_name)
        .unwrap_or("not connected")
}

/// One cluster's status, as `agent --output json` and `status --output json` print it.
pub fn cluster_status_json(c: &pb::ClusterStatus) -> serde_json::Value {
    json!({
        "cluster": c.cluster,
        "state": cluster_state_name(c.state()),
        "error": c.error,
        "keys": c.keys,
        "digest": format!("{:016x}", c.digest),
    })
}

/// Prints `meshsync <command>: <message>` to stderr; exit code 2.
pub fn bad_input(command: &str, message: &str) -> ExitCode {
    eprintln!("meshsync {command}: {message}");
    ExitCode::from(2)
}

/// `--compression`: what a server offers, or an agent accepts, for its update frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressionFlag {
    /// zstd, each frame compressed once and shared by every agent that accepts it.
    Zstd,
    /// Plain frames only.
    None,
}

impl CompressionFlag {
    /// The algorithms an agent offers in its request.
    pub fn accepted(self) -> Vec<pb::Compression> {
        match self {
            CompressionFlag::Zstd => vec![pb::Compression::Zstd],
            CompressionFlag::None => Vec::new(),
        }
    }
}

/// How a hello's compression is shown: `zstd` or `none`.
pub fn compression_name(compression: i32) -> &'static str {
    match pb::Compression::try_from(compression) {
        Ok(pb::Compression::Zstd) => "zstd",
        Ok(pb::Compression::None) => "none",
        Err(_) => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DEL, a C1 control (CSI) and U+2028 pass serde_json raw; the terminal forms escape them and
    /// keep the values.
    #[test]
    fn terminal_json_escapes_what_serde_leaves_raw_and_keeps_the_values() {
        let doc = serde_json::json!({"name": "a\u{7f}b\u{9b}31mc\u{2028}d\u{1b}e"});
        for text in [terminal_json(&doc).unwrap(), terminal_json_line(&doc)] {
            assert!(
                !text.chars().any(|c| c != '\n' && LogSafe::needs_escape(c)),
                "{text:?}"
            );
            let back: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(back, doc);
        }
        assert!(!terminal_json_line(&doc).contains('\n'));
    }
}
