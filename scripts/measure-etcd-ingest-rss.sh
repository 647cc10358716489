#!/usr/bin/env bash
# Measures whether values that survive from an etcd listing pin the listing's Range responses
# (issue 22): runs the ignored test tests/etcd_ingest_rss.rs against the release `meshsync`, which
# lists 20,000 keys of ~1.5 KiB from a real etcd, rewrites them three times (every key, or all but
# 2 %) and prints the server's RSS after the churn, median and range over the runs.
#
#   scripts/measure-etcd-ingest-rss.sh [RUNS]     (default 3 runs per case; a few minutes)
#
# MESHSYNC_RSS_BIN=/path/to/meshsync measures another binary instead of building the release one.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
if [ -z "${MESHSYNC_RSS_BIN:-}" ]; then
  cargo build --release -p meshsync
  export MESHSYNC_RSS_BIN="$CARGO_TARGET_DIR/release/meshsync"
fi
export MESHSYNC_RSS_RUNS="${1:-3}"
cargo test --test etcd_ingest_rss -- --ignored --nocapture --test-threads 1 2>&1 \
  | grep -E '^(binary|[0-9]+ keys|run |RSS|excess|test result|.*panicked|values surviving)'
