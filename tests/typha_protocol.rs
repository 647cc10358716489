//! meshsync's Typha port against Calico's own clients and against clients that break the
//! protocol (the negative cases of Typha's fv suite): an unknown syncer type, garbage, a nil
//! message, a client that never answers pings, a client without decoder restart.
//!
//! Real parts: the `meshsync` binary on a file datastore, Calico's unmodified `typha-client` and
//! `typha-gob-check` (Go's own gob and snappy decoders on Calico's syncproto types), real loopback
//! sockets. The hostile clients write bytes by hand (with `meshsync_typha`'s Go-like client
//! encoder, a test double checked against Go's bytes in that crate's tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meshsync_typha::gob::write::{TypeDef, message, put_int, put_type_definition, put_uint};
use meshsync_typha::gob::{self};
use meshsync_typha::messages::ClientHello;
use meshsync_typha::messages::go_like_client::GoLikeClient;
use support::apiserver::peers_bin;
use support::binary::Serve;
use support::log_text::text_field;

const FIXTURE: &str = r#"
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata:
  name: default
spec:
  logSeverityScreen: Info
---
apiVersion: projectcalico.org/v3
kind: ClusterInformation
metadata:
  name: default
spec:
  clusterGUID: guid-1
  calicoVersion: v3.31.0
  datastoreReady: true
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pool-1
spec:
  cidr: 10.10.0.0/16
  vxlanMode: Always
  natOutgoing: true
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: default.allow-db
spec:
  tier: default
  selector: app == "db"
  ingress:
  - action: Allow
    source:
      selector: app == "web"
"#;

/// A server with a Typha port on a file datastore holding [`FIXTURE`], pinging every second and
/// closing a connection without a pong for 3 s.
fn serve() -> (Serve, SocketAddr, tempfile::TempDir) {
    let (serve, typha, _, dir) = serve_with_metrics();
    (serve, typha, dir)
}

/// [`serve`], with `/metrics` on the returned address.
fn serve_with_metrics() -> (Serve, SocketAddr, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("calico.yaml"), FIXTURE).unwrap();
    let datastore = format!("file:{}", dir.path().display());
    let mut serve = Serve::on_loopback(
        &datastore,
        &[
            "--typha-listen",
            "127.0.0.1:0",
            "--keepalive-interval",
            "1",
            "--keepalive-timeout",
            "3",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let line = serve.wait_serving();
    let addr = |field: &str| -> SocketAddr {
        text_field(&line, field)
            .and_then(|t| t.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok())
            .unwrap_or_else(|| panic!("no {field}= in {line:?}"))
    };
    let (typha, metrics) = (addr("typha"), addr("metrics"));
    serve.wait_line("in sync", |l| l.contains("Sending in-sync update"));
    (serve, typha, metrics, dir)
}

/// The `/metrics` text.
fn metrics(addr: SocketAddr) -> String {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    socket.read_to_string(&mut text).unwrap();
    text
}

/// Runs Calico's `typha-client` on `syncer` until it reports in sync; returns its stderr lines.
fn typha_client_in_sync(addr: SocketAddr, syncer: &str) -> Vec<String> {
    let mut cmd = Command::new(peers_bin().join("typha-client"));
    cmd.arg(format!("--server={addr}"));
    if !syncer.is_empty() {
        cmd.arg(format!("--type={syncer}"));
    }
    for flag in [
        "--key-file=",
        "--cert-file=",
        "--ca-file=",
        "--server-cn=",
        "--server-uri=",
    ] {
        cmd.arg(flag);
    }
    let mut child = support::binary::ChildGuard(
        // Calico's client logs to stdout.
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn typha-client"),
    );
    let stderr = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut lines = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                let done = line.contains("Status received") && line.contains("status=in-sync");
                lines.push(line);
                if done {
                    return lines;
                }
            }
            Err(_) => break,
        }
    }
    panic!(
        "typha-client ({syncer:?}) did not report in sync; its stderr:\n{}",
        lines.join("\n")
    );
}

#[test]
fn calicos_typha_client_reports_in_sync_on_every_syncer() {
    let (mut serve, typha, _dir) = serve();
    for syncer in ["", "felix", "bgp", "tunnel-ip-allocation", "node-status"] {
        let lines = typha_client_in_sync(typha, syncer);
        // The client switched to snappy after the decoder restart, as Felix does.
        assert!(
            lines
                .iter()
                .any(|l| l.contains("Server selected snappy compression")),
            "{syncer:?}: no snappy restart:\n{}",
            lines.join("\n")
        );
        let expected = if syncer.is_empty() { "felix" } else { syncer };
        serve.wait_line("the client's admission", |l| {
            l.contains("new Typha client") && l.contains(&format!("syncer=\"{expected}\""))
        });
    }
    // The felix syncer's data: updates arrived before the in-sync status.
    let lines = typha_client_in_sync(typha, "felix");
    assert!(
        lines.iter().any(|l| l.contains("Updates received")),
        "no updates before in-sync:\n{}",
        lines.join("\n")
    );
}

/// Connects and writes `bytes`; returns everything the server sent until it closed the
/// connection, or panics if it stays open for `within`.
fn closed_after(addr: SocketAddr, bytes: &[u8], within: Duration) -> Vec<u8> {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket.write_all(bytes).unwrap();
    socket.set_read_timeout(Some(within)).unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!(
                "the server kept the connection open for {:?} ({e}); {} bytes received",
                start.elapsed(),
                got.len()
            ),
        }
        assert!(
            start.elapsed() < within,
            "the server kept the connection open for {within:?}"
        );
    }
}

fn hello(syncer: &str, decoder_restart: bool) -> ClientHello {
    ClientHello {
        hostname: "node-1".into(),
        info: "test".into(),
        version: "v3.31.0".into(),
        syncer_type: syncer.into(),
        supports_decoder_restart: decoder_restart,
        supported_compression_algorithms: if decoder_restart {
            vec!["snappy".into()]
        } else {
            Vec::new()
        },
        client_conn_id: 7,
        supports_modern_policy_keys: false,
    }
}

#[test]
fn broken_clients_are_closed_with_a_log_line_and_the_rest_keeps_flowing() {
    let (mut serve, typha, _dir) = serve();
    let within = Duration::from_secs(10);

    // An unknown syncer type: Typha closes without a word.
    let mut client = GoLikeClient::new();
    client.hello(&hello("not-a-syncer", true));
    let got = closed_after(typha, &client.out, within);
    assert!(
        got.is_empty(),
        "sent {} bytes to an unknown syncer",
        got.len()
    );
    serve.wait_line("the unknown syncer's log line", |l| {
        l.contains("closing Typha connection") && l.contains("unknown syncer type")
    });

    // Garbage instead of a gob stream (an HTTP request, long enough to hold the "message" its
    // first byte announces as a gob length).
    let mut garbage = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    garbage.extend(std::iter::repeat_n(b'x', 1024));
    closed_after(typha, &garbage, within);
    serve.wait_line("the garbage's log line", |l| {
        l.contains("closing Typha connection") && l.contains("protocol")
    });

    // An Envelope without a message (a nil interface).
    let mut nil = Vec::new();
    nil.extend_from_slice(&message(|s| {
        put_type_definition(
            s,
            65,
            &TypeDef::Struct {
                name: "Envelope",
                fields: &[("Message", gob::ids::INTERFACE)],
            },
        )
    }));
    nil.extend_from_slice(&message(|s| {
        put_int(s, 65);
        put_uint(s, 0);
    }));
    closed_after(typha, &nil, within);
    serve.wait_line("the nil message's log line", |l| {
        l.contains("closing Typha connection") && l.contains("without a message")
    });

    // A hello, then something other than an ACK after the decoder restart.
    let mut client = GoLikeClient::new();
    client.hello(&hello("felix", true));
    client.hello(&hello("felix", true));
    closed_after(typha, &client.out, within);
    serve.wait_line("the second hello's log line", |l| {
        l.contains("closing Typha connection") && l.contains("expected the ACK")
    });

    // Everyone else is still served.
    typha_client_in_sync(typha, "felix");
}

#[test]
fn a_client_that_never_answers_pings_is_closed_at_the_pong_timeout() {
    let (mut serve, typha, _dir) = serve();
    let mut client = GoLikeClient::new();
    client.hello(&hello("felix", false));
    let start = Instant::now();
    // Pings every second, no pong for 3 s: closed after about 3 s, never before.
    let got = closed_after(typha, &client.out, Duration::from_secs(15));
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "closed after {:?}, before the pong timeout",
        start.elapsed()
    );
    assert!(!got.is_empty());
    serve.wait_line("the pong timeout's log line", |l| {
        l.contains("closing Typha connection") && l.contains("no pong")
    });
}

#[test]
fn a_client_without_decoder_restart_gets_plain_gob_that_go_decodes() {
    let (_serve, typha, metrics_addr, _dir) = serve_with_metrics();
    let mut client = GoLikeClient::new();
    client.hello(&hello("felix", false));
    let mut socket = TcpStream::connect(typha).unwrap();
    socket.write_all(&client.out).unwrap();
    // Read for 2 s: the snapshot, the in-sync status and pings (every second); the client never
    // answers them, so the server closes the connection at 3 s.
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match socket.read(&mut buf) {
            Ok(0) => panic!("closed before the pong timeout"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    // Still connected: counted by protocol and syncer.
    let text = metrics(metrics_addr);
    assert!(
        text.contains(r#"meshsync_agents_connected{protocol="typha",subscription="felix"} 1"#),
        "{text}"
    );
    let mut decode = Command::new(peers_bin().join("typha-gob-check"))
        .arg("-decode")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    decode.stdin.take().unwrap().write_all(&got).unwrap();
    let out = decode.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let messages: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let types: Vec<&str> = messages.iter().filter_map(|m| m["type"].as_str()).collect();
    assert_eq!(
        types.first().copied(),
        Some("syncproto.MsgServerHello"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hello = &messages[0];
    assert_eq!(hello["SyncerType"], "felix");
    assert_eq!(hello["SupportsNodeResourceUpdates"], true);
    assert!(!types.contains(&"syncproto.MsgDecoderRestart"), "{types:?}");
    let kvs: Vec<&serde_json::Value> = messages
        .iter()
        .filter(|m| m["type"] == "syncproto.MsgKVs")
        .flat_map(|m| m["KVs"].as_array().into_iter().flatten())
        .collect();
    let keys: Vec<&str> = kvs.iter().filter_map(|kv| kv["Key"].as_str()).collect();
    for expected in [
        "/calico/v1/config/LogSeverityScreen",
        "/calico/v1/Ready",
        "/calico/v1/ipam/v4/pool/10.10.0.0-16",
        "/calico/v1/policy/tier/default/policy/default.allow-db",
    ] {
        assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
    }
    let in_sync = messages
        .iter()
        .position(|m| m["type"] == "syncproto.MsgSyncStatus" && m["SyncStatus"] == 2)
        .unwrap_or_else(|| panic!("no in-sync status in {types:?}"));
    let last_kvs = types
        .iter()
        .rposition(|t| *t == "syncproto.MsgKVs")
        .unwrap();
    assert!(
        last_kvs < in_sync,
        "in sync announced before the data: {types:?}"
    );
    assert!(
        types.contains(&"syncproto.MsgPing"),
        "no ping within 2 s: {types:?}"
    );
}

/// The value of an unlabelled metric.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// Encode once, send many: clients of one syncer and wire form that connect together share one
/// encoding of the snapshot, and every client receives the very same bytes after its hello.
#[test]
fn typha_clients_connecting_together_share_one_snapshot_encoding() {
    const CLIENTS: usize = 12;
    let (_serve, typha, metrics_addr, _dir) = serve_with_metrics();
    let before = metric(&metrics(metrics_addr), "meshsync_snapshot_encodings_total");
    let sockets: Vec<TcpStream> = (0..CLIENTS)
        .map(|i| {
            let mut client = GoLikeClient::new();
            let mut h = hello("felix", false);
            h.hostname = format!("node-{i}");
            client.hello(&h);
            let mut socket = TcpStream::connect(typha).unwrap();
            socket.write_all(&client.out).unwrap();
            socket
        })
        .collect();
    // Each stream: the preamble, the server hello (its connection id differs), then the shared
    // snapshot and status. Read each until it holds the in-sync status.
    let streams: Vec<Vec<u8>> = sockets
        .into_iter()
        .map(|mut socket| {
            socket
                .set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 65536];
            let deadline = Instant::now() + Duration::from_millis(500);
            while Instant::now() < deadline {
                if let Ok(n) = socket.read(&mut buf) {
                    got.extend_from_slice(&buf[..n]);
                }
            }
            got
        })
        .collect();
    let after = metric(&metrics(metrics_addr), "meshsync_snapshot_encodings_total");
    assert_eq!(
        after - before,
        1,
        "{CLIENTS} felix clients of one wire form: the snapshot encoded {} times",
        after - before
    );
    // The same snapshot bytes in every stream: everything after the server hello up to the
    // first ping (pings carry each connection's clock) is identical.
    let preamble = meshsync_typha::messages::preamble();
    let body = |s: &Vec<u8>| -> Vec<u8> {
        assert!(s.starts_with(&preamble), "a stream without the preamble");
        s[preamble.len()..].to_vec()
    };
    let first = body(&streams[0]);
    assert!(first.len() > 200, "only {} bytes", first.len());
    for s in &streams[1..] {
        let other = body(s);
        // Skip the server hello (one gob message: its length is its first byte here).
        let skip = |b: &[u8]| (b[0] as usize) + 1;
        let (a, b) = (&first[skip(&first)..], &other[skip(&other)..]);
        let n = a.len().min(b.len()).min(200);
        assert_eq!(&a[..n], &b[..n], "streams differ after the server hello");
    }
}
