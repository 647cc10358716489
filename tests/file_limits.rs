#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;

// The file datastore's limits (defects 10 and 11a): a YAML file of thousands of documents is
// served whole while a YAML bomb is still refused, and a file larger than the file-size limit is
// refused from its metadata, before anything is read (peak memory stays flat), with a log line
// and a count. Real files; every wait is on a condition with a timeout.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use meshsync_datastore::SourceEvent;
use meshsync_datastore::file::{FileSourceConfig, watch};
use support::source::{is_in_sync, until};
use support::{logs, within};

fn config(dir: &std::path::Path) -> FileSourceConfig {
    let mut config = FileSourceConfig::new(dir, "".into());
    config.rescan_interval = Duration::from_secs(3600);
    config
}

fn upserted(events: &[SourceEvent]) -> BTreeSet<String> {
    events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Upsert { key, .. } => Some(key.name().to_string()),
            _ => None,
        })
        .collect()
}

fn node_yaml(name: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {name}\n  labels: {{zone: a}}\nspec:\n  bgp: {{ipv4Address: 10.0.0.1/24}}\n"
    )
}

/// Writes atomically (hidden temporary file, then rename).
fn write(path: &std::path::Path, text: &[u8]) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The process's peak resident set (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number");
    kib * 1024
}

#[tokio::test]
async fn a_yaml_file_of_2000_documents_is_served_whole_and_a_bomb_is_still_refused() {
    logs::install();
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..2000).map(|i| format!("doc-node-{i:04}")).collect();
    let text: Vec<String> = names.iter().map(|n| node_yaml(n)).collect();
    write(&dir.path().join("many.yaml"), text.join("---\n").as_bytes());
    // Billion laughs: nine levels of ten aliases each, under an otherwise valid Node.
    let mut bomb = String::from("kind: Node\nmetadata: {name: bomb-node}\nspec:\n");
    bomb.push_str("  a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    let levels = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for w in levels.windows(2) {
        let (prev, cur) = (w[0], w[1]);
        let refs = vec![format!("*{prev}"); 10].join(",");
        bomb.push_str(&format!("  {cur}: &{cur} [{refs}]\n"));
    }
    write(&dir.path().join("bomb.yaml"), bomb.as_bytes());

    let mut source = watch(config(dir.path())).unwrap();
    let events = until(&mut source, "in sync", is_in_sync).await;
    let served = upserted(&events);
    assert_eq!(served.len(), 2000, "served {} of 2000", served.len());
    assert_eq!(served, names.iter().cloned().collect::<BTreeSet<_>>());
    let lines = logs::wait_for_line(&["bomb.yaml", "cannot parse"], Duration::from_secs(5)).await;
    assert!(lines[0].contains("budget"), "{lines:?}");
}

#[tokio::test]
async fn a_file_above_the_size_limit_is_refused_before_it_is_read() {
    logs::install();
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("small.yaml"),
        node_yaml("fs-small").as_bytes(),
    );
    // 400 MiB of nothing (sparse): reading it would cost 400 MiB of memory.
    let big = dir.path().join("big.json");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(400 << 20)
        .unwrap();
    let config = config(dir.path());
    let counters = config.common.counters.clone();
    let before = peak_rss();
    let mut source = watch(config).unwrap();
    let events = until(&mut source, "in sync", is_in_sync).await;
    let grew = peak_rss().saturating_sub(before);
    eprintln!(
        "file_limits: peak RSS grew by {} MiB while listing a 400 MiB file",
        grew >> 20
    );
    assert!(grew < 64 << 20, "peak RSS grew by {} MiB", grew >> 20);
    assert_eq!(upserted(&events), ["fs-small".to_string()].into());
    assert_eq!(counters.refused_files(), 1);
    let lines = logs::wait_for_line(&["big.json", "larger than"], Duration::from_secs(5)).await;
    assert!(
        lines[0].contains("ERROR") || lines[0].contains("WARN"),
        "{lines:?}"
    );
}

#[tokio::test]
async fn the_size_limit_is_exact_and_a_file_that_outgrows_it_loses_its_objects() {
    logs::install();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grow.yaml");
    let body = node_yaml("fs-grow");
    let limit = 4096u64;
    // Exactly at the limit: served (padding is a YAML comment).
    let pad = |total: u64| {
        let mut text = body.clone();
        text.push('#');
        while (text.len() as u64) < total - 1 {
            text.push('x');
        }
        text.push('\n');
        assert_eq!(text.len() as u64, total);
        text
    };
    write(&file, pad(limit).as_bytes());
    let mut config = config(dir.path());
    config.max_file_bytes = limit;
    let counters = config.common.counters.clone();
    let mut source = watch(config).unwrap();
    let events = until(&mut source, "in sync", is_in_sync).await;
    assert_eq!(upserted(&events), ["fs-grow".to_string()].into());
    // One byte more: refused, and its objects go (a fresh source would not have them either).
    write(&file, pad(limit + 1).as_bytes());
    let event = within("the delete", source.next()).await.unwrap();
    assert!(
        matches!(&event, SourceEvent::Delete { key, .. } if key.name() == "fs-grow"),
        "{event:?}"
    );
    assert_eq!(counters.refused_files(), 1);
    logs::wait_for_line(&["grow.yaml", "larger than"], Duration::from_secs(5)).await;
    // Back under the limit: served again.
    write(&file, pad(limit - 10).as_bytes());
    let event = within("the upsert", source.next()).await.unwrap();
    assert!(
        matches!(&event, SourceEvent::Upsert { key, .. } if key.name() == "fs-grow"),
        "{event:?}"
    );
}
