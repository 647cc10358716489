//! Our gob and snappy against Go's: `typha-gob-check` (peers/calico/cmd/typha-gob-check, built
//! by scripts/peers.sh on Calico v3.31.0's `syncproto` with the real `encoding/gob` and
//! `golang/snappy`) decodes what we encode exactly as Calico's syncclient does, and encodes
//! client messages exactly as the syncclient does for our decoder.
//!
//! Both sides describe each message as one JSON line in the tool's format: `{"type":
//! "syncproto.MsgX", <field>: …}`, byte slices in hex (null when nil), interfaces as
//! `{"type": %T, "value": %v}`, times as `{"unix", "nanos", "utc", "offset"}` (null when zero).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use meshsync_typha::gob::{GoTime, GoZone};
use meshsync_typha::messages::{
    ClientDecoder, ClientMessage, Compression, KvRef, ServerHello, SyncStatus, UpdateType,
    encode_decoder_restart, encode_kvs, encode_ping, encode_server_hello, encode_sync_status,
    preamble,
};
use meshsync_typha::snappy;
use serde_json::{Value, json};

/// The folder with the built peers: `$MESHSYNC_PEERS_BIN`, or the last line `scripts/peers.sh`
/// prints (run once per test binary), as the workspace's other tests find them.
fn peers_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(dir) = std::env::var_os("MESHSYNC_PEERS_BIN").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        eprintln!(
            "MESHSYNC_PEERS_BIN is not set: running scripts/peers.sh (builds the peers once)"
        );
        let out = Command::new(repo.join("scripts/peers.sh"))
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/peers.sh");
        assert!(
            out.status.success(),
            "scripts/peers.sh failed ({})",
            out.status
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .expect("scripts/peers.sh prints the bin folder as its last line");
        PathBuf::from(last.trim())
    })
}

fn checker() -> Command {
    Command::new(peers_bin().join("typha-gob-check"))
}

/// `typha-gob-check -decode` fed segment by segment: after each segment but the last, its
/// output is read up to the line of the `MsgDecoderRestart` that ends the segment (the client's
/// ACK), as a Typha server waits for the ACK before it writes the new stream.
struct GoClient {
    child: Child,
    lines: BufReader<ChildStdout>,
    seen: Vec<Value>,
}

impl GoClient {
    fn start() -> Self {
        let mut child = checker()
            .arg("-decode")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start typha-gob-check");
        let lines = BufReader::new(child.stdout.take().expect("stdout"));
        GoClient {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        let stdin = self.child.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to typha-gob-check");
        stdin.flush().expect("flush");
    }

    fn read_line(&mut self) -> Option<Value> {
        let mut line = String::new();
        // typha-gob-check answers at once or exits; the child is killed if the test hangs.
        if self
            .lines
            .read_line(&mut line)
            .expect("read typha-gob-check")
            == 0
        {
            return None;
        }
        let v: Value = serde_json::from_str(&line).expect("a JSON line");
        assert!(
            v.get("error").is_none(),
            "Go's decoder failed: {v} after {:?}",
            self.seen
        );
        self.seen.push(v.clone());
        Some(v)
    }

    /// Reads lines until the decoder restart's.
    fn await_restart(&mut self) {
        loop {
            let v = self
                .read_line()
                .expect("the restart before the end of output");
            if v["type"] == "syncproto.MsgDecoderRestart" {
                return;
            }
        }
    }

    /// Closes the stream and returns every line, checking the tool exited cleanly.
    fn finish(mut self) -> Vec<Value> {
        drop(self.child.stdin.take());
        while self.read_line().is_some() {}
        let status = self.child.wait().expect("wait");
        assert!(
            status.success(),
            "typha-gob-check -decode: {status}; lines {:?}",
            self.seen
        );
        std::mem::take(&mut self.seen)
    }
}

impl Drop for GoClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn time_json(t: &GoTime) -> Value {
    let (utc, offset) = match t.zone {
        GoZone::Utc => (true, 0),
        GoZone::Offset(o) => (false, o),
    };
    json!({"unix": t.unix_seconds, "nanos": t.nanos, "utc": utc, "offset": offset})
}

/// Owned KVs, so a test can keep them beside the `KvRef`s it encodes.
struct Kv {
    key: String,
    value: Option<Vec<u8>>,
    revision: String,
    v3_resource_version: String,
    update_type: UpdateType,
}

impl Kv {
    fn as_ref(&self) -> KvRef<'_> {
        KvRef {
            key: &self.key,
            value: self.value.as_deref(),
            revision: &self.revision,
            v3_resource_version: &self.v3_resource_version,
            update_type: self.update_type,
        }
    }

    fn json(&self) -> Value {
        json!({
            "type": "syncproto.SerializedUpdate",
            "Key": self.key,
            "Value": self.value.as_deref().filter(|v| !v.is_empty()).map(hex),
            "Revision": {"type": "string", "value": self.revision},
            "V3ResourceVersion": self.v3_resource_version,
            "TTL": 0,
            "UpdateType": self.update_type as u8,
        })
    }
}

fn encode(kvs: &[Kv]) -> Bytes {
    encode_kvs(&kvs.iter().map(Kv::as_ref).collect::<Vec<_>>())
}

fn kvs_json(kvs: &[Kv]) -> Value {
    let list: Vec<Value> = kvs.iter().map(Kv::json).collect();
    json!({"type": "syncproto.MsgKVs", "KVs": if list.is_empty() { Value::Null } else { Value::Array(list) }})
}

fn small_kvs() -> Vec<Kv> {
    vec![
        Kv {
            key: "/calico/v1/host/node-1/config/LogSeverityScreen".into(),
            value: Some(b"Info".to_vec()),
            revision: "12345".into(),
            v3_resource_version: String::new(),
            update_type: UpdateType::New,
        },
        Kv {
            // A deletion: nil value.
            key: "/calico/v1/host/node-1/config/Gone".into(),
            value: None,
            revision: "12346".into(),
            v3_resource_version: String::new(),
            update_type: UpdateType::Deleted,
        },
        Kv {
            key: "/calico/resources/v3/projectcalico.org/networkpolicies/ns-ü/pölicy-✓".into(),
            value: Some(
                "{\"spec\":{\"selector\":\"app == 'ünï'\"}}"
                    .as_bytes()
                    .to_vec(),
            ),
            revision: String::new(),
            v3_resource_version: "987".into(),
            update_type: UpdateType::Updated,
        },
        Kv {
            // Binary, with every byte value.
            key: "/calico/v1/host/node-1/bytes".into(),
            value: Some((0..=255u8).collect()),
            revision: "r".into(),
            v3_resource_version: String::new(),
            update_type: UpdateType::New,
        },
    ]
}

/// Values over 64 KiB, so each needs several snappy chunks: one that compresses, one that
/// does not.
fn long_kvs() -> Vec<Kv> {
    let compressible: Vec<u8> = b"{\"labels\":{\"app\":\"web\"}},"
        .iter()
        .copied()
        .cycle()
        .take(150_000)
        .collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..100_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    vec![
        Kv {
            key: "/calico/v1/policy/tier/default/policy/long".into(),
            value: Some(compressible),
            revision: "1".into(),
            v3_resource_version: String::new(),
            update_type: UpdateType::New,
        },
        Kv {
            key: "/calico/v1/policy/tier/default/policy/noise".into(),
            value: Some(noise),
            revision: "2".into(),
            v3_resource_version: String::new(),
            update_type: UpdateType::New,
        },
    ]
}

fn now() -> GoTime {
    GoTime::from_system_time(SystemTime::now())
}

#[test]
fn go_decodes_every_server_message_plain_and_after_snappy_restarts() {
    let hello = encode_server_hello(&ServerHello {
        version: "meshsync-test",
        syncer_type: "felix",
        supports_node_resource_updates: true,
        server_conn_id: 0xfeed_beef_1234,
    });
    let restart_snappy = encode_decoder_restart(
        "enable compression: snappy;send binary snapshot",
        Compression::Snappy,
    );
    let end_of_snapshot =
        encode_decoder_restart("End of compressed snapshot.", Compression::Snappy);
    let restart_plain = encode_decoder_restart("", Compression::None);
    let small = small_kvs();
    let long = long_kvs();
    let small_bytes = encode(&small);
    let long_bytes = encode(&long);
    let empty_bytes = encode(&[]);
    let in_sync = encode_sync_status(SyncStatus::InSync);
    let resync = encode_sync_status(SyncStatus::ResyncInProgress);
    let waiting = encode_sync_status(SyncStatus::WaitForDatastore);
    let ping_time = now();
    let ping = encode_ping(&ping_time).unwrap();
    let old_ping_time = GoTime::from_system_time(UNIX_EPOCH - Duration::new(86_400 * 365, 1));
    let old_ping = encode_ping(&old_ping_time).unwrap();

    let framed = |parts: &[&Bytes]| {
        let mut out = snappy::stream_identifier().to_vec();
        out.extend_from_slice(&snappy::frame(&preamble()));
        for p in parts {
            out.extend_from_slice(&snappy::frame(p));
        }
        out
    };
    let plain = |parts: &[&Bytes]| {
        let mut out = preamble().to_vec();
        for p in parts {
            out.extend_from_slice(p);
        }
        out
    };

    let mut go = GoClient::start();
    // 1. The handshake on a plain stream, then a restart into snappy.
    go.write(&plain(&[
        &hello,
        &small_bytes,
        &resync,
        &ping,
        &restart_snappy,
    ]));
    go.await_restart();
    // 2. A snappy stream (as Typha's binary snapshot): the same shared message bytes, framed.
    go.write(&framed(&[
        &long_bytes,
        &small_bytes,
        &empty_bytes,
        &end_of_snapshot,
    ]));
    go.await_restart();
    // 3. Another snappy stream, then back to plain gob.
    go.write(&framed(&[
        &in_sync,
        &old_ping,
        &small_bytes,
        &restart_plain,
    ]));
    go.await_restart();
    // 4. Plain again: a fresh preamble and the same message bytes once more.
    go.write(&plain(&[&small_bytes, &waiting, &ping]));
    let got = go.finish();

    let hello_json = json!({"type": "syncproto.MsgServerHello", "Version": "meshsync-test",
        "SyncerType": "felix", "SupportsNodeResourceUpdates": true, "ServerConnID": 0xfeed_beef_1234u64});
    let restart = |text: &str, alg: &str| json!({"type": "syncproto.MsgDecoderRestart", "Message": text, "CompressionAlgorithm": alg});
    let status = |s: u8| json!({"type": "syncproto.MsgSyncStatus", "SyncStatus": s});
    let ping_json = |t: &GoTime| json!({"type": "syncproto.MsgPing", "Timestamp": time_json(t)});
    let want = vec![
        hello_json,
        kvs_json(&small),
        status(1),
        ping_json(&ping_time),
        restart("enable compression: snappy;send binary snapshot", "snappy"),
        kvs_json(&long),
        kvs_json(&small),
        kvs_json(&[]),
        restart("End of compressed snapshot.", "snappy"),
        status(2),
        ping_json(&old_ping_time),
        kvs_json(&small),
        restart("", ""),
        kvs_json(&small),
        status(0),
        ping_json(&ping_time),
    ];
    assert_eq!(got.len(), want.len(), "messages: {got:?}");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "message {i}");
    }
}

#[test]
fn go_accepts_standalone_type_definitions_then_values() {
    // The key fact of the encode-once design, on its own: a stream that is nothing but the
    // preamble's standalone definitions followed by value messages is what Go's decoder reads.
    let mut go = GoClient::start();
    let mut stream = preamble().to_vec();
    stream.extend_from_slice(&encode_sync_status(SyncStatus::InSync));
    go.write(&stream);
    let got = go.finish();
    assert_eq!(
        got,
        vec![json!({"type": "syncproto.MsgSyncStatus", "SyncStatus": 2})]
    );
}

#[test]
fn go_refuses_a_value_without_the_preamble() {
    // The tool is not vacuous: the same value bytes without the definitions are refused.
    let mut child = checker()
        .arg("-decode")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start typha-gob-check");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(&encode_sync_status(SyncStatus::InSync))
        .expect("write");
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    assert!(!out.status.success());
    let line: Value = serde_json::from_slice(&out.stdout).expect("a JSON line");
    assert!(
        line["error"].as_str().is_some_and(|e| e.contains("gob")),
        "{line}"
    );
}

fn client_json(m: &ClientMessage) -> Value {
    let time = |t: &Option<GoTime>| t.as_ref().map(time_json).unwrap_or(Value::Null);
    match m {
        ClientMessage::Hello(h) => json!({
            "type": "syncproto.MsgClientHello",
            "Hostname": h.hostname,
            "Info": h.info,
            "Version": h.version,
            "SyncerType": h.syncer_type,
            "SupportsDecoderRestart": h.supports_decoder_restart,
            "SupportedCompressionAlgorithms": h.supported_compression_algorithms,
            "ClientConnID": h.client_conn_id,
        }),
        ClientMessage::Ack => json!({"type": "syncproto.MsgACK"}),
        ClientMessage::Pong(p) => json!({
            "type": "syncproto.MsgPong",
            "PingTimestamp": time(&p.ping_timestamp),
            "PongTimestamp": time(&p.pong_timestamp),
        }),
    }
}

/// Runs `typha-gob-check -encode VERSION` and decodes its bytes fed `step` bytes at a time.
fn decode_go_client(version: &str, step: usize) -> (Vec<ClientMessage>, Vec<Value>) {
    let dir = std::env::temp_dir().join(format!(
        "typha-gob-check-{}-{version}-{step}",
        std::process::id()
    ));
    let expect = dir.with_extension("jsonl");
    let out = checker()
        .args(["-encode", version, "-expect"])
        .arg(&expect)
        .stderr(Stdio::inherit())
        .output()
        .expect("run typha-gob-check -encode");
    assert!(
        out.status.success(),
        "typha-gob-check -encode {version}: {}",
        out.status
    );
    let want: Vec<Value> = std::fs::read_to_string(&expect)
        .expect("the expect file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let _ = std::fs::remove_file(&expect);
    let mut decoder = ClientDecoder::new();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for chunk in out.stdout.chunks(step) {
        buf.extend_from_slice(chunk);
        while let Some(m) = decoder.decode(&mut buf).expect("Go's client bytes decode") {
            got.push(m);
        }
    }
    assert!(
        buf.is_empty(),
        "{} bytes of Go's stream left undecoded",
        buf.len()
    );
    (got, want)
}

#[test]
fn we_decode_go_client_messages_v3_31() {
    for step in [1, 5, 4096] {
        let (got, want) = decode_go_client("v3.31", step);
        let got_json: Vec<Value> = got.iter().map(client_json).collect();
        assert_eq!(got_json, want, "fed {step} bytes at a time");
        let ClientMessage::Hello(hello) = &got[0] else {
            panic!("the first message is the hello: {got:?}");
        };
        assert!(!hello.supports_modern_policy_keys);
    }
}

#[test]
fn we_decode_go_client_messages_v3_32_with_modern_policy_keys() {
    let (got, want) = decode_go_client("v3.32", 3);
    let mut got_json: Vec<Value> = got.iter().map(client_json).collect();
    let ClientMessage::Hello(hello) = &got[0] else {
        panic!("the first message is the hello: {got:?}");
    };
    assert!(hello.supports_modern_policy_keys);
    got_json[0]["SupportsModernPolicyKeys"] = json!(true);
    assert_eq!(got_json, want);
}
