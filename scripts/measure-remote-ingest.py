#!/usr/bin/env python3
"""Two builds of `meshsync serve` taking in the same remote cluster of N WorkloadEndpoints (two
real etcds: the local one holds only the RCC): the time and CPU until the remote is in sync, and
the resident memory after, per round, the builds' order alternating. Written to measure what the
mesh's CollisionGuard (which judges, and keeps a handle on, every remote endpoint) costs against
the build before it (BENCHMARKS.md, issue 24).

Usage: scripts/measure-remote-ingest.py NEW_BIN OLD_BIN [N=20000] [ROUNDS=3]   (needs etcd)"""
import base64, json, os, re, socket, subprocess, sys, tempfile, time, urllib.request

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def start_etcd(name, tmp):
    cport, pport = free_port(), free_port()
    d = os.path.join(tmp, name)
    p = subprocess.Popen(["etcd", "--name", name, "--data-dir", d,
        "--listen-client-urls", f"http://127.0.0.1:{cport}", "--advertise-client-urls", f"http://127.0.0.1:{cport}",
        "--listen-peer-urls", f"http://127.0.0.1:{pport}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
        "--initial-cluster", f"{name}=http://127.0.0.1:{pport}", "--quota-backend-bytes", str(4 << 30)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{cport}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/health", timeout=1).read(); break
        except Exception:
            time.sleep(0.1)
    return p, url

def put(url, key, value):
    body = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                       "value": base64.b64encode(json.dumps(value).encode()).decode()}).encode()
    urllib.request.urlopen(urllib.request.Request(url + "/v3/kv/put", data=body), timeout=10).read()

def wep(i):
    node = f"node-{i // 50}"
    name = f"{node.replace('-', '--')}-k8s-pod--{i}-eth0"
    return name, {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": "prod", "labels": {"app": f"app-{i % 20}",
            "projectcalico.org/namespace": "prod", "projectcalico.org/orchestrator": "k8s",
            "team": "x" * 300}},
        "spec": {"orchestrator": "k8s", "node": node, "pod": f"pod-{i}", "endpoint": "eth0",
            "ipNetworks": [f"10.{66 + i // 65000}.{(i // 250) % 256}.{i % 250 + 1}/32"],
            "interfaceName": f"cali{i:011d}", "profiles": ["kns.prod", "ksa.prod.default"]}}

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

def measure(binary, local_url, tmp, label):
    log = open(os.path.join(tmp, f"{label}.log"), "w+")
    p = subprocess.Popen([binary, "serve", "--datastore", "etcd://" + local_url[len("http://"):],
        "--listen", f"127.0.0.1:{free_port()}", "--no-health"], stdout=log, stderr=log)
    t0 = time.time()
    while time.time() - t0 < 120:
        log.seek(0)
        if "Sending in-sync update for RemoteClusterConfiguration(b)" in log.read():
            break
        time.sleep(0.02)
    else:
        p.kill(); raise SystemExit(f"{label}: not in sync")
    synced = time.time() - t0
    with open(f"/proc/{p.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    time.sleep(3)
    r = rss_kib(p.pid)
    p.kill(); p.wait()
    return r, synced, cpu

def main():
    new, old = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    tmp = tempfile.mkdtemp(prefix="guard-")
    a, a_url = start_etcd("a", tmp)
    b, b_url = start_etcd("b", tmp)
    try:
        for i in range(n):
            name, v = wep(i)
            put(b_url, f"/calico/resources/v3/projectcalico.org/workloadendpoints/prod/{name}", v)
            if i % 5000 == 0:
                print(f"filled {i}/{n}", file=sys.stderr)
        put(a_url, "/calico/resources/v3/projectcalico.org/remoteclusterconfigurations/b",
            {"apiVersion": "projectcalico.org/v3", "kind": "RemoteClusterConfiguration",
             "metadata": {"name": "b"}, "spec": {"datastoreType": "etcdv3", "etcdEndpoints": b_url}})
        for r in range(rounds):
            order = [("new", new), ("old", old)] if r % 2 == 0 else [("old", old), ("new", new)]
            res = {}
            for label, binary in order:
                res[label] = measure(binary, a_url, tmp, f"{label}-{r}")
            nr, ns, nc = res['new']; orr, os_, oc = res['old']
            print(f"round {r + 1}: new {nr / 1024:.1f} MiB, in sync {ns:.2f} s, CPU {nc:.2f} s; "
                  f"old {orr / 1024:.1f} MiB, in sync {os_:.2f} s, CPU {oc:.2f} s; "
                  f"ratios RSS {nr / orr:.3f}, in-sync {ns / os_:.2f}, CPU {nc / max(oc, 0.01):.2f}")
    finally:
        a.kill(); b.kill()

main()
