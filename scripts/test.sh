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

# The peers the tests and benchmarks run against (real kube-apiserver, Calico Typha) are built from
# the pinned Go modules in peers/ by scripts/peers.sh (minutes the first time, seconds after that).
if ! command -v go >/dev/null 2>&1; then
  echo "Go (>= 1.26) is required: scripts/peers.sh builds kube-apiserver and Calico Typha for the tests" >&2
  exit 1
fi
if ! command -v kubectl >/dev/null 2>&1; then
  echo "kubectl is required: the API-server tests write and read objects with it" >&2
  exit 1
fi
step "building the test peers (scripts/peers.sh)"
peers_bin="$(./scripts/peers.sh | tail -n 1)"
if [ ! -x "$peers_bin/kube-apiserver" ]; then
  echo "scripts/peers.sh did not produce $peers_bin/kube-apiserver" >&2
  exit 1
fi
export MESHSYNC_PEERS_BIN="$peers_bin"
echo "using the peers in $MESHSYNC_PEERS_BIN"

step "go vet and go test of our Go code in peers/calico (the Typha benchmark clients, the JSON fix)"
(cd peers/calico && GONOSUMDB=github.com/projectcalico CGO_ENABLED=0 go vet ./cmd/... ./internal/... &&
  GONOSUMDB=github.com/projectcalico CGO_ENABLED=0 go test ./cmd/... ./internal/...)

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

step "fuzz targets, a short pass each (scripts/fuzz.sh; longer runs: scripts/fuzz.sh 600)"
(cd fuzz && cargo fmt -- --check)
./scripts/fuzz.sh "${FUZZ_SECONDS:-10}"

echo
echo "all checks passed"
