#!/usr/bin/env bash
# One-off demonstration (NOT part of ./scripts/test.sh, needs root): meshsync's cluster mesh
# programs a REAL Linux dataplane. tests/felix_mesh.rs proves what Felix asks its dataplane for
# (with the recorder test double); this script shows, once, that the unmodified calico-felix with
# its INTERNAL dataplane (iptables, ipset, the VXLAN device vxlan.calico, routes, ARP/FDB) turns
# what meshsync sends into working pod-to-pod traffic between two clusters:
#
#   cluster A: netns msdemo-a1 (node a1, 10.0.0.1) ─ veth underlay ─ netns msdemo-b1 (node b1,
#   10.0.0.2): cluster B. Each node netns runs its cluster's etcd (127.0.0.1:2379 and
#   10.0.0.x:2379), a `meshsync serve` (Typha port 127.0.0.1:5473) with an RCC for the other
#   cluster (overlay routing on), and calico-felix (FELIX_FELIXHOSTNAME=a1/b1). Pods are netns
#   msdemo-<node>-db / -web attached by a veth whose node side is the WorkloadEndpoint's
#   interfaceName (cali…), IPs from the node's block (10.1.0.2/3 in A, 10.2.0.2/3 in B).
#
# It waits (polling, with a timeout) until node a1 has B's db pod in an IP set, the route to B's
# block over vxlan.calico and B's VTEP MAC in the FDB (and the mirror image on b1), then pings
# A's db pod → B's db pod (allowed: the GlobalNetworkPolicy allows ingress from app == "db") and
# A's web pod → B's db pod (must be refused by B's policy). Prints a greppable report (lines
# "demo: …", "RESULT: …") and exits 0 when all of it holds, non-zero with the reason otherwise.
# Everything it creates (netns, veths, processes, temporary folder) goes on exit.
#
# Needs: root, ip/bridge (iproute2), iptables + ipset (Debian: apt-get install iptables ipset),
# ping (iputils-ping), jq, etcd + etcdctl, the kernel's VXLAN/ipset/netfilter support, the
# meshsync binary (MESHSYNC_BIN, default $CARGO_TARGET_DIR or target/debug/meshsync) and the
# calico-felix peer (MESHSYNC_PEERS_BIN, default: what scripts/peers.sh prints).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TIMEOUT="${DEMO_TIMEOUT:-120}" # seconds, for each wait
MESHSYNC_BIN="${MESHSYNC_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/meshsync}"
if [[ -z "${MESHSYNC_PEERS_BIN:-}" ]]; then
  MESHSYNC_PEERS_BIN="$("$ROOT/scripts/peers.sh" | tail -n 1)"
fi
FELIX_BIN="$MESHSYNC_PEERS_BIN/calico-felix"

say() { printf 'demo: %s\n' "$*"; }
fail() {
  printf 'RESULT: FAILED: %s\n' "$*"
  exit 1
}

[[ $EUID -eq 0 ]] || fail "needs root (network namespaces, iptables)"
for tool in ip bridge iptables ipset ping jq etcd etcdctl sha1sum ss; do
  command -v "$tool" >/dev/null || fail "missing tool: $tool"
done
[[ -x "$MESHSYNC_BIN" ]] || fail "no meshsync binary at $MESHSYNC_BIN (cargo build, or set MESHSYNC_BIN)"
[[ -x "$FELIX_BIN" ]] || fail "no calico-felix at $FELIX_BIN (scripts/peers.sh, or set MESHSYNC_PEERS_BIN)"

NODES=(a1 b1)
PODS=(db web)
declare -A CLUSTER=([a1]=a [b1]=b) N=([a1]=1 [b1]=2) OTHER=([a1]=b1 [b1]=a1)
WORK="$(mktemp -d /tmp/msdemo.XXXXXX)"
PIDS=()
declare -A NAME_OF=() # pid → what it is (its log is $WORK/<name>.log)

# ---------------------------------------------------------------------------------------------
# Clean-up: our processes (by pid), then our namespaces (their veths, iptables, ipsets, VXLAN
# devices and routes go with them), then the temporary folder.
# ---------------------------------------------------------------------------------------------
cleanup() {
  local status=$?
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  # Anything else still running in the namespaces created here (a process keeps its namespace,
  # veths and iptables alive after `ip netns del`).
  for node in "${NODES[@]}"; do
    for ns in "msdemo-$node" "${PODS[@]/#/msdemo-$node-}"; do
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null; done
    done
  done
  for node in "${NODES[@]}"; do
    for pod in "${PODS[@]}"; do ip netns del "msdemo-$node-$pod" 2>/dev/null; done
    ip netns del "msdemo-$node" 2>/dev/null
  done
  if [[ -n "${KEEP_WORK:-}" ]]; then
    echo "demo: logs kept in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# For commands run to completion. Long-running ones are started with `ip netns exec … &`
# directly, so that $! is the process itself (a function run with & would be a subshell).
in_ns() {
  local ns=$1
  shift
  ip netns exec "$ns" "$@"
}

# Polls `$2…` (a command) until it succeeds; fails the demo with `$1` after $TIMEOUT seconds.
wait_for() {
  local what=$1
  shift
  local deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      say "timed out after ${TIMEOUT}s waiting for: $what"
      dump_logs
      fail "$what"
    fi
    for pid in "${PIDS[@]}"; do
      kill -0 "$pid" 2>/dev/null || {
        dump_logs
        fail "${NAME_OF[$pid]} (pid $pid) exited while waiting for: $what"
      }
    done
    sleep 0.5
  done
  say "ok: $what"
}

dump_logs() {
  for f in "$WORK"/*.log; do
    echo "----- last lines of $f"
    tail -n 25 "$f"
  done
}

# ---------------------------------------------------------------------------------------------
# 1. Namespaces: the underlay, then the pods
# ---------------------------------------------------------------------------------------------
for node in "${NODES[@]}"; do
  ip netns add "msdemo-$node"
  in_ns "msdemo-$node" ip link set lo up
  in_ns "msdemo-$node" sysctl -qw net.ipv4.ip_forward=1
done
ip link add msdemo-a1-eth0 netns msdemo-a1 type veth peer name msdemo-b1-eth0 netns msdemo-b1
for node in "${NODES[@]}"; do
  ip -n "msdemo-$node" link set "msdemo-$node-eth0" name eth0
  ip -n "msdemo-$node" addr add "10.0.0.${N[$node]}/24" dev eth0
  ip -n "msdemo-$node" link set eth0 up
  # The node's default gateway (here: the other node). Pods route via 169.254.1.1, which the
  # node answers by proxy ARP on the cali… interface, and Linux proxies ARP only for an address
  # the node itself has a route to (on a real node: its default route).
  ip -n "msdemo-$node" route add default via "10.0.0.${N[${OTHER[$node]}]}" dev eth0
done

# The WorkloadEndpoint's interfaceName (≤ 15 characters, Felix's "cali" prefix) and pod MAC.
ifname() { echo "cali$1$2"; }
pod_ip() { echo "10.${N[$1]}.0.$([[ $2 == db ]] && echo 2 || echo 3)"; }
pod_mac() { printf '0a:58:0a:%02x:00:%02x' "${N[$1]}" "$([[ $2 == db ]] && echo 2 || echo 3)"; }
for node in "${NODES[@]}"; do
  for pod in "${PODS[@]}"; do
    ns="msdemo-$node-$pod"
    ip netns add "$ns"
    ip -n "msdemo-$node" link add "$(ifname "$node" "$pod")" type veth peer name eth0 netns "$ns"
    # As Calico's CNI plugin: the node side has MAC ee:ee:ee:ee:ee:ee, the pod a /32 and a
    # default route via 169.254.1.1 (answered by proxy ARP, which Felix turns on).
    ip -n "msdemo-$node" link set "$(ifname "$node" "$pod")" address ee:ee:ee:ee:ee:ee up
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 address "$(pod_mac "$node" "$pod")" up
    ip -n "$ns" addr add "$(pod_ip "$node" "$pod")/32" dev eth0
    ip -n "$ns" route add 169.254.1.1 dev eth0 scope link
    ip -n "$ns" route add default via 169.254.1.1 dev eth0
  done
done
say "namespaces: underlay msdemo-a1 (10.0.0.1) <-> msdemo-b1 (10.0.0.2), pods $(ip netns list | grep -o 'msdemo-[ab]1-[a-z]*' | sort | tr '\n' ' ')"

# ---------------------------------------------------------------------------------------------
# 2. etcd per cluster (in its node's netns), the dataset, the RCC for the other cluster
# ---------------------------------------------------------------------------------------------
for node in "${NODES[@]}"; do
  ip="10.0.0.${N[$node]}"
  ip netns exec "msdemo-$node" etcd --name "msdemo-$node" --data-dir "$WORK/etcd-$node" \
    --listen-client-urls "http://127.0.0.1:2379,http://$ip:2379" \
    --advertise-client-urls "http://$ip:2379" \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "msdemo-$node=http://127.0.0.1:2380" \
    --logger=zap --log-level=warn >"$WORK/etcd-$node.log" 2>&1 &
  PIDS+=($!)
  NAME_OF[$!]="etcd-$node"
done
etcd_ok() { in_ns "msdemo-$1" etcdctl --endpoints "http://10.0.0.${N[$1]}:2379" endpoint health; }
for node in "${NODES[@]}"; do wait_for "etcd of cluster ${CLUSTER[$node]} answers" etcd_ok "$node"; done

V3=/calico/resources/v3/projectcalico.org
IPAM=/calico/ipam/v2
put() { in_ns "msdemo-$1" etcdctl --endpoints http://127.0.0.1:2379 put "$2" "$3" >/dev/null; }
# put_v3 NODE PLURAL KIND NAMESPACE|"" NAME LABELS-JSON|null SPEC-JSON
put_v3() {
  local node=$1 plural=$2 kind=$3 ns=$4 name=$5 labels=$6 spec=$7 key
  key="$V3/$plural/${ns:+$ns/}$name"
  put "$node" "$key" "$(jq -nc --arg kind "$kind" --arg ns "$ns" --arg name "$name" \
    --argjson labels "$labels" --argjson spec "$spec" '
    {kind: $kind, apiVersion: "projectcalico.org/v3",
     metadata: ({name: $name, uid: ("msdemo-" + $kind + "-" + $ns + "-" + $name),
                 creationTimestamp: "2026-01-01T00:00:00Z"}
                + (if $ns == "" then {} else {namespace: $ns} end)
                + (if $labels == null then {} else {labels: $labels} end)),
     spec: $spec}')"
}

write_cluster() {
  local node=$1 n=${N[$1]} other=${OTHER[$1]}
  local ip="10.0.0.$n" block="10.$n.0.0/26"
  put_v3 "$node" clusterinformations ClusterInformation "" default null \
    "{\"clusterGUID\":\"${n}0000000000000000000000000000000\",\"clusterType\":\"k8s,typha\",\"calicoVersion\":\"v3.31.0\",\"datastoreReady\":true}"
  put_v3 "$node" felixconfigurations FelixConfiguration "" default null \
    '{"reportingInterval":"0s","bpfEnabled":false}'
  put_v3 "$node" ippools IPPool "" default-ipv4-ippool null \
    "{\"cidr\":\"10.$n.0.0/16\",\"blockSize\":26,\"ipipMode\":\"Never\",\"vxlanMode\":\"Always\",\"natOutgoing\":true,\"nodeSelector\":\"all()\",\"allowedUses\":[\"Workload\",\"Tunnel\"]}"
  put_v3 "$node" nodes Node "" "$node" "{\"kubernetes.io/hostname\":\"$node\"}" \
    "{\"bgp\":{\"ipv4Address\":\"$ip/24\"},\"ipv4VXLANTunnelAddr\":\"10.$n.0.1\",\"addresses\":[{\"address\":\"$ip\",\"type\":\"InternalIP\"}],\"orchRefs\":[{\"nodeName\":\"$node\",\"orchestrator\":\"k8s\"}]}"
  put "$node" "$IPAM/assignment/ipv4/block/${block/\//-}" "$(jq -nc --arg cidr "$block" --arg node "$node" '
    [{o: 1, ns: "", pod: "tunnel"}, {o: 2, ns: "prod", pod: "db"}, {o: 3, ns: "prod", pod: "web"}] as $used
    | ($used | map(.o)) as $ords
    | {cidr: $cidr, affinity: ("host:" + $node), strictAffinity: false,
       allocations: [range(64) as $i | $ords | index($i)],
       unallocated: [range(64) | select(. as $i | $ords | index($i) | not)],
       attributes: ($used | map({handle_id: ("k8s-pod-network.cid-" + .pod),
         secondary: {namespace: .ns, node: $node, pod: .pod, timestamp: "2026-01-01 00:00:00 +0000 UTC"}})),
       deleted: false, sequenceNumber: 0}')"
  put "$node" "$IPAM/host/$node/ipv4/block/${block/\//-}" '{"state":"confirmed","deleted":false}'
  put_v3 "$node" tiers Tier "" default null '{"order":1000000,"defaultAction":"Deny"}'
  put_v3 "$node" profiles Profile "" kns.prod null \
    "{\"ingress\":[{\"action\":\"Allow\"}],\"egress\":[{\"action\":\"Allow\"}],\"labelsToApply\":{\"pcns.projectcalico.org/name\":\"prod\",\"pcns.team\":\"${CLUSTER[$node]}\"}}"
  put_v3 "$node" profiles Profile "" ksa.prod.default null \
    '{"labelsToApply":{"pcsa.projectcalico.org/name":"default"}}'
  for pod in "${PODS[@]}"; do
    put_v3 "$node" workloadendpoints WorkloadEndpoint prod "$node-k8s-$pod-eth0" \
      "{\"app\":\"$pod\",\"projectcalico.org/namespace\":\"prod\",\"projectcalico.org/orchestrator\":\"k8s\",\"projectcalico.org/serviceaccount\":\"default\"}" \
      "{\"orchestrator\":\"k8s\",\"node\":\"$node\",\"containerID\":\"cid-$pod\",\"pod\":\"$pod\",\"endpoint\":\"eth0\",\"serviceAccountName\":\"default\",\"ipNetworks\":[\"$(pod_ip "$node" "$pod")/32\"],\"profiles\":[\"kns.prod\",\"ksa.prod.default\"],\"interfaceName\":\"$(ifname "$node" "$pod")\",\"mac\":\"$(pod_mac "$node" "$pod")\"}"
  done
  # The only policy: every endpoint accepts ingress from app == "db" (of either cluster), the
  # tier's default action denies the rest (so A's web pod is refused by B). felix_mesh.rs's
  # namespaced "allow from the other cluster" policy is left out: it would admit A's web pod.
  put_v3 "$node" globalnetworkpolicies GlobalNetworkPolicy "" default.allow-from-db null \
    '{"tier":"default","order":100,"selector":"all()","types":["Ingress"],"ingress":[{"action":"Allow","source":{"selector":"app == \"db\""}}]}'
  # The RCC for the other cluster: its etcd over the underlay, overlay routing on.
  put "$node" "$V3/remoteclusterconfigurations/${CLUSTER[$other]}" "$(jq -nc \
    --arg name "${CLUSTER[$other]}" --arg etcd "http://10.0.0.${N[$other]}:2379" '
    {apiVersion: "projectcalico.org/v3", kind: "RemoteClusterConfiguration",
     metadata: {name: $name},
     spec: {datastoreType: "etcdv3", etcdEndpoints: $etcd,
            syncOptions: {overlayRoutingMode: "Enabled"}}}')"
}
for node in "${NODES[@]}"; do write_cluster "$node"; done
say "datasets written (pools 10.1.0.0/16 and 10.2.0.0/16 VXLAN Always, GNP allow from app == \"db\", RCCs a->b and b->a)"

# ---------------------------------------------------------------------------------------------
# 3. meshsync serve, then calico-felix with its internal (Linux) dataplane, per node
# ---------------------------------------------------------------------------------------------
for node in "${NODES[@]}"; do
  ip netns exec "msdemo-$node" "$MESHSYNC_BIN" serve --datastore etcd://127.0.0.1:2379 \
    --listen 127.0.0.1:5474 --health-listen 127.0.0.1:9098 --typha-listen 127.0.0.1:5473 \
    >"$WORK/meshsync-$node.log" 2>&1 &
  PIDS+=($!)
  NAME_OF[$!]="meshsync-$node"
done
typha_listens() { in_ns "msdemo-$1" ss -ltnH 'sport = :5473' | grep -q 5473; }
for node in "${NODES[@]}"; do wait_for "meshsync of cluster ${CLUSTER[$node]} listens on 127.0.0.1:5473" typha_listens "$node"; done

# Felix writes /var/lib/calico/mtu (a fixed path): it runs in a mount namespace of its own where
# /var/lib is a folder of $WORK. FELIX_DebugSkipCTLBCleanup: with BPF off, Felix starts by removing a BPF connect-time load
# balancer a previous run may have left, through libbpf; the peer is built without cgo (its libbpf
# is a stub that panics), and there is nothing to remove here, so that clean-up is skipped (the
# switch Calico's own functional tests use).
for node in "${NODES[@]}"; do
  mkdir -p "$WORK/felix-$node/endpoint-status" "$WORK/felix-$node/var-lib"
  ip netns exec "msdemo-$node" unshare --mount --propagation private \
    sh -c 'mount --bind "$0" /var/lib && exec "$@"' "$WORK/felix-$node/var-lib" \
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    DATASTORE_TYPE=etcdv3 FELIX_DATASTORETYPE=etcdv3 ETCD_ENDPOINTS=http://127.0.0.1:2379 \
    FELIX_FELIXHOSTNAME="$node" FELIX_TYPHAADDR=127.0.0.1:5473 \
    FELIX_USEINTERNALDATAPLANEDRIVER=true FELIX_BPFENABLED=false FELIX_NFTABLESMODE=Disabled \
    FELIX_IPTABLESBACKEND="${DEMO_IPTABLES_BACKEND:-auto}" FELIX_IPV6SUPPORT=false \
    FELIX_DebugSkipCTLBCleanup=true \
    FELIX_LOGSEVERITYSCREEN="${FELIX_LOGSEVERITYSCREEN:-INFO}" FELIX_LOGFILEPATH=none \
    FELIX_LOGSEVERITYFILE=none FELIX_LOGSEVERITYSYS=none FELIX_DEBUGDISABLELOGDROPPING=true \
    FELIX_USAGEREPORTINGENABLED=false FELIX_HEALTHENABLED=true FELIX_HEALTHHOST=127.0.0.1 \
    FELIX_HEALTHPORT=9099 FELIX_ENDPOINTSTATUSPATHPREFIX="$WORK/felix-$node/endpoint-status" \
    "$FELIX_BIN" --config-file "$WORK/felix-$node/felix.cfg.absent" \
    >"$WORK/felix-$node.log" 2>&1 &
  PIDS+=($!)
  NAME_OF[$!]="felix-$node"
done
say "started: etcd, meshsync serve and calico-felix in msdemo-a1 and msdemo-b1 (logs in $WORK)"

# ---------------------------------------------------------------------------------------------
# 4. What each node's kernel must hold for the other cluster
# ---------------------------------------------------------------------------------------------
vtep_mac() { # Felix's MAC for a node without vxlanTunnelMACAddr: 0x66 + sha1(name)[0..5]
  printf '66:%s' "$(printf '%s' "$1" | sha1sum | cut -c1-10 | sed 's/../&:/g; s/:$//')"
}
has_ipset_member() { in_ns "msdemo-$1" ipset list | grep -qx "$2"; }
has_route() { in_ns "msdemo-$1" ip route show "$2" | grep -q "via $3 dev vxlan.calico onlink"; }
has_fdb() { bridge -n "msdemo-$1" fdb show dev vxlan.calico | grep -q "^$2 dst $3 "; }
for node in "${NODES[@]}"; do
  other=${OTHER[$node]}
  m=${N[$other]}
  wait_for "$node: an IP set holds $other's db pod 10.$m.0.2" has_ipset_member "$node" "10.$m.0.2"
  wait_for "$node: route 10.$m.0.0/26 via 10.$m.0.1 dev vxlan.calico onlink" \
    has_route "$node" "10.$m.0.0/26" "10.$m.0.1"
  wait_for "$node: FDB $(vtep_mac "$other") dst 10.0.0.$m on vxlan.calico" \
    has_fdb "$node" "$(vtep_mac "$other")" "10.0.0.$m"
done

report() {
  local node=$1
  say "===== node $node (netns msdemo-$node) ====="
  say "--- ipset list (sets with members)"
  in_ns "msdemo-$node" ipset list | awk '/^Name:/ {name=$2} /^Members:/ {m=1; next} /^$/ {m=0} m && NF {print "demo:   " name " " $0}'
  say "--- ip route"
  in_ns "msdemo-$node" ip route | sed 's/^/demo:   /'
  say "--- ip neigh dev vxlan.calico"
  in_ns "msdemo-$node" ip neigh show dev vxlan.calico | sed 's/^/demo:   /'
  say "--- bridge fdb show dev vxlan.calico"
  bridge -n "msdemo-$node" fdb show dev vxlan.calico | sed 's/^/demo:   /'
  say "--- ip -d link show vxlan.calico"
  in_ns "msdemo-$node" ip -d link show vxlan.calico | sed 's/^/demo:   /'
}
for node in "${NODES[@]}"; do report "$node"; done

# ---------------------------------------------------------------------------------------------
# 5. Traffic: A's db pod → B's db pod must pass, A's web pod → B's db pod must be refused
# ---------------------------------------------------------------------------------------------
# The first packets can race Felix's last iptables writes: allow a few attempts for the allowed
# path (bounded by the timeout), a single fixed-count attempt for the refused one.
ping_ok() { in_ns msdemo-a1-db ping -c 1 -W 1 10.2.0.2; }
wait_for "a ping from A's db pod (10.1.0.2) reaches B's db pod (10.2.0.2)" ping_ok
say "--- ping -c 3 from msdemo-a1-db (10.1.0.2) to 10.2.0.2"
db_out="$(in_ns msdemo-a1-db ping -c 3 -W 2 10.2.0.2 2>&1)" || true
sed 's/^/demo:   /' <<<"$db_out"
grep -q ' 0% packet loss' <<<"$db_out" || fail "ping db(A) -> db(B) lost packets"
say "--- ping -c 3 from msdemo-a1-web (10.1.0.3, app=web) to 10.2.0.2"
web_out="$(in_ns msdemo-a1-web ping -c 3 -W 2 10.2.0.2 2>&1)" || true
sed 's/^/demo:   /' <<<"$web_out"
grep -q ' 100% packet loss' <<<"$web_out" || fail "ping web(A) -> db(B) was not refused"
# Where it was refused: the drop at the end of the policy tier in B's db pod's ingress ("to
# workload") chain counts the web pod's packets. Felix chose the iptables backend (auto): read
# the one that has its chains.
say "--- b1: packet counters [packets:bytes] of B's db pod's ingress chain (policy verdicts)"
for save in iptables-legacy-save iptables-nft-save; do
  rules="$(in_ns msdemo-b1 "$save" -c -t filter 2>/dev/null | grep -- "-A cali-tw-$(ifname b1 db) ")" || continue
  grep -E 'Return if policy accepted|End of tier' <<<"$rules" | sed "s/^/demo:   ($save) /"
  break
done

say "RESULT: OK: the real Felix dataplane of a1 holds cluster B's pod in its IP sets, a route via vxlan.calico and B's VTEP in its FDB; db(A) -> db(B) pings pass, web(A) -> db(B) is refused"
