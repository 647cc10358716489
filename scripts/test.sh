#!/usr/bin/env bash
# The project's test command (README "Testing"; CI's .ci/run calls it).
# Installs what the tests need on a fresh machine, then runs formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi

# The etcd tests start real etcd processes (Debian's etcd-server package).
if ! command -v etcd >/dev/null 2>&1; then
  step "installing etcd (Debian package etcd-server)"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq etcd-server etcd-client >/dev/null
fi
echo "using $(etcd --version | sed -n 1p)"

# The file watcher needs inotify instances; hundreds of agents need file descriptors.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

step "benchmarks compile and run once (smoke)"
cargo test --benches --locked

echo
echo "all checks passed"
