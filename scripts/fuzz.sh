#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets/) for a bounded time each, starting from the
# committed corpus (fuzz/corpus/<target>/; new inputs found go to a scratch copy, not the repo).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default 60 s, every target)
#
# Needs a nightly toolchain (libFuzzer's sanitizer flags) and cargo-fuzz (installed here when
# missing). Without a nightly toolchain it says so and exits 0 with FUZZ_REQUIRED unset, so that a
# machine without one still runs the rest of the tests; with FUZZ_REQUIRED=1 it fails instead.
# A crash fails the script; its input is in fuzz/artifacts/<target>/.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SECONDS_PER_TARGET="${1:-60}"
shift || true
say() { printf 'fuzz: %s\n' "$*" >&2; }

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  if [ "${FUZZ_REQUIRED:-}" = 1 ]; then
    say "error: no nightly toolchain (rustup toolchain install nightly)"
    exit 1
  fi
  say "skipped: no nightly toolchain on this machine (rustup toolchain install nightly); FUZZ_REQUIRED=1 makes this an error"
  exit 0
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  say "installing cargo-fuzz…"
  cargo install cargo-fuzz --locked >&2
fi

cd "$ROOT/fuzz"
# A build directory of its own (nightly, sanitizer flags): never the main build's.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}-fuzz}"
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
  say "building $t…"
  cargo +nightly fuzz build "$t" >&2
  mkdir -p "$scratch/$t"
  cp -r "corpus/$t/." "$scratch/$t/" 2>/dev/null || true
  say "running $t for ${SECONDS_PER_TARGET}s…"
  start=$(date +%s)
  cargo +nightly fuzz run "$t" "$scratch/$t" -- -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 2>"$scratch/$t.log" || {
    tail -40 "$scratch/$t.log" >&2
    say "FAILED: $t (crash input in fuzz/artifacts/$t/)"
    exit 1
  }
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$t.log" | grep -o '[0-9]*$' || echo '?')
  say "$t: ok, ${runs} inputs in $(( $(date +%s) - start ))s"
done
