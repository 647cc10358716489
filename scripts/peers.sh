#!/usr/bin/env bash
# Builds the peers meshsync is tested and measured against — real kube-apiserver and Calico Typha —
# from the pinned Go modules in peers/ (never linked into meshsync, never shipped with it):
#
#   kube-apiserver       peers/kubernetes   (k8s.io/kubernetes/cmd/kube-apiserver)
#   calico-typha         peers/calico       (./cmd/calico-typha: Calico's typha/pkg/daemon, as
#                                           typha/cmd/calico-typha runs it, + a Go 1.26 JSON fix)
#   typha-client         peers/calico       (github.com/projectcalico/calico/typha/cmd/typha-client)
#   every other main     peers/calico/cmd/* (test and benchmark clients: typha-bench-agents, …;
#                                           calico-felix, Calico's felix/daemon + the same JSON
#                                           fix, and felix-dataplane-recorder, its test dataplane)
#
# into ${MESHSYNC_PEERS_DIR:-$HOME/.cache/meshsync/peers}/<pin>/bin, where <pin> is a hash of the
# pins (both modules' go.mod, without comments, and go.sum; the Go version; the build recipe). A binary is rebuilt
# only when it is missing or its inputs changed, so a second run takes seconds. Progress and the
# time of each build go to stderr; the LAST line on stdout is the bin folder.
#
# Needs Go >= 1.26 on PATH and the Go module proxy; the first build downloads about 1 GB of module
# sources and takes minutes on 2 cores (see README "Testing").
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PEERS="$ROOT/peers"

say() { printf 'peers: %s\n' "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}

if ! command -v go >/dev/null 2>&1; then
  die "Go (>= 1.26) is required to build the test peers (kube-apiserver, calico-typha); install it and put 'go' on PATH"
fi
GO_VERSION="$(go env GOVERSION)"
case "$GO_VERSION" in
  go1.2[6-9]* | go1.[3-9][0-9]* | go[2-9]*) ;;
  *) die "Go >= 1.26 is required (found $GO_VERSION)" ;;
esac

# The Go module proxy's checksum database has no entries for the pinned Calico pseudo-versions;
# their hashes are pinned in peers/calico/go.sum instead (see the comment in peers/calico/go.mod).
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/projectcalico"
export CGO_ENABLED=0
BUILD_FLAGS=(-trimpath -buildvcs=false)
# Bump when the way binaries are built here changes (flags below), so that they are rebuilt.
BUILD_RECIPE=2

PIN="$(
  {
    printf '%s\n' "$GO_VERSION" "$(go env GOOS GOARCH)" "CGO_ENABLED=$CGO_ENABLED" "${BUILD_FLAGS[*]}" "recipe $BUILD_RECIPE"
    # go.mod as Go reads it (comments do not count), and go.sum.
    for m in kubernetes calico; do
      (cd "$PEERS/$m" && go mod edit -json && cat go.sum)
    done
  } | sha256sum | cut -c1-16
)"
BASE="${MESHSYNC_PEERS_DIR:-$HOME/.cache/meshsync/peers}"
OUT="$BASE/$PIN"
BIN="$OUT/bin"
mkdir -p "$BIN"

# One build at a time per pin (test binaries may call this script in parallel).
exec 9>"$OUT/.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi

fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# build NAME MODULE_DIR PACKAGE STAMP [LDFLAGS]: builds PACKAGE from MODULE_DIR into $BIN/NAME
# unless the binary exists and was built from the same STAMP (a hash of its inputs).
build() {
  local name="$1" dir="$2" pkg="$3" stamp="$4" ldflags="${5:-}"
  local target="$BIN/$name" stamp_file="$BIN/.$name.inputs"
  if [ -x "$target" ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
    say "$name: up to date"
    return 0
  fi
  local log="$OUT/$name.build.log" start now total
  start=$(date +%s)
  # Resolving the packages also downloads the module sources they need.
  total="$(cd "$dir" && go list -deps "$pkg" | grep -vc '^[a-z]*\(/\|$\)' || true)"
  say "$name: building $pkg: ${total:-?} packages outside the standard library (go $GO_VERSION; log $log)"
  # Go prints nothing while it compiles; a heartbeat shows it is alive and how far it got
  # (`-v` lists each package as it is compiled; packages already in Go's build cache are skipped).
  (
    while sleep 30; do
      now=$(date +%s)
      done_count="$(grep -c . "$log" 2>/dev/null || true)"
      say "$name: still building, $(fmt_secs $((now - start))), ${done_count:-0} packages compiled"
    done
  ) &
  local beat=$!
  local rc=0
  (cd "$dir" && go build "${BUILD_FLAGS[@]}" -ldflags="$ldflags" -v -o "$target.tmp" "$pkg") >"$log" 2>&1 || rc=$?
  kill "$beat" 2>/dev/null || true
  wait "$beat" 2>/dev/null || true
  now=$(date +%s)
  if [ "$rc" -ne 0 ]; then
    say "$name: build FAILED after $(fmt_secs $((now - start))); last lines of $log:"
    tail -n 30 "$log" >&2
    rm -f "$target.tmp"
    return "$rc"
  fi
  mv -f "$target.tmp" "$target"
  printf '%s\n' "$stamp" >"$stamp_file"
  say "$name: built in $(fmt_secs $((now - start))) ($(du -h "$target" | cut -f1))"
}


# Version stamps, as the projects' own builds set them (`kube-apiserver --version`, Typha's log).
module_version() { (cd "$1" && go list -m -f '{{.Version}}' "$2"); }
K8S_VERSION="$(module_version "$PEERS/kubernetes" k8s.io/kubernetes)"
K8S_MINOR="$(echo "$K8S_VERSION" | cut -d. -f2)"
K8S_LDFLAGS=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  K8S_LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$K8S_MINOR -X $pkg.gitTreeState=clean"
done
CALICO_VERSION="$(module_version "$PEERS/calico" github.com/projectcalico/calico)"
CALICO_LDFLAGS="-X github.com/projectcalico/calico/pkg/buildinfo.Version=$CALICO_VERSION"
CALICO_LDFLAGS+=" -X github.com/projectcalico/calico/pkg/buildinfo.GitRevision=${CALICO_VERSION##*-}"

total_start=$(date +%s)
say "building into $BIN (Kubernetes $K8S_VERSION, Calico $CALICO_VERSION)"
build kube-apiserver "$PEERS/kubernetes" k8s.io/kubernetes/cmd/kube-apiserver "$PIN" "$K8S_LDFLAGS"
# Binaries with a main of this repository: their stamp also covers every Go file of the module.
LOCAL_STAMP="$(
  cd "$PEERS/calico" && find . -name '*.go' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
)-$PIN"
# Calico's own typha/cmd/calico-typha built with Go >= 1.26 panics on the first labelled resource
# (peers/calico/internal/jsonfix says why); ./cmd/calico-typha is that main plus the fix.
build calico-typha "$PEERS/calico" ./cmd/calico-typha "$LOCAL_STAMP" "$CALICO_LDFLAGS"
build typha-client "$PEERS/calico" github.com/projectcalico/calico/typha/cmd/typha-client "$PIN" "$CALICO_LDFLAGS"
# Every other main under peers/calico/cmd/ (test and benchmark clients on Calico's own packages).
for dir in "$PEERS"/calico/cmd/*/; do
  name="$(basename "$dir")"
  [ "$name" = calico-typha ] && continue
  build "$name" "$PEERS/calico" "./cmd/$name" "$LOCAL_STAMP" "$CALICO_LDFLAGS"
done
say "done in $(fmt_secs $(($(date +%s) - total_start)))"
echo "$BIN"
