//! The real `meshsync agent` against a malicious server (a scripted fake on loopback, see
//! `support/fake_server.rs`), issue 21: a batch that is small in bytes but huge in updates is
//! refused before it is decoded; an anti-entropy repair costs time linear in its size and the
//! mirror's; the server's strings cannot forge or colour the agent's log; and a server that sends
//! `Reconnect` after `Reconnect`, or hello after hello, makes the agent back off, not spin.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::process::Command;
use std::sync::mpsc::TryRecvError;
use std::time::{Duration, Instant};

use bytes::Bytes;
use meshsync_proto::digest::entry_hash;
use meshsync_proto::{self as pb, Frame, sync_event::Event};
use prost::Message;
use support::binary::{Serve, meshsync};
use support::fake_server::{Answer, FakeServer, Then, message};
use support::hostile::{rss_kib, wait_until};
use support::log_text::text_message_is;

const IN_SYNC: &str = "mirror in sync";

/// `meshsync agent` subscribed to `server`, its stderr read line by line.
fn agent(server: &FakeServer) -> Serve {
    let mut cmd: Command = meshsync();
    cmd.args([
        "agent",
        "--server",
        &server.url(),
        "--node-name",
        "hostile-test",
        "--output",
        "quiet",
    ]);
    Serve::spawn(cmd)
}

/// Moves the lines written so far into `agent.lines`; returns how many there are now.
fn collect(agent: &mut Serve) -> usize {
    loop {
        match agent.rx.try_recv() {
            Ok(line) => agent.lines.push(line),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => return agent.lines.len(),
        }
    }
}

fn hello(epoch: u64, path: pb::SyncPath, compression: pb::Compression) -> Bytes {
    message(Event::Hello(pb::Hello {
        epoch,
        server_version: "fake".into(),
        subscription: "felix".into(),
        compression: compression as i32,
        path: path as i32,
        stream_id: 1,
        ..Default::default()
    }))
}

/// An in-sync status of the local cluster holding `keys` keys with `digest`.
fn status(seq: u64, keys: u64, digest: u64) -> Bytes {
    message(Event::Status(pb::Status {
        seq,
        overall: pb::SyncState::InSync as i32,
        clusters: vec![pb::ClusterStatus {
            cluster: String::new(),
            state: pb::ClusterState::InSync as i32,
            keys,
            digest,
            in_sync_seq: seq,
            ..Default::default()
        }],
        consistent_seq: seq,
    }))
}

/// Peak resident set of the agent (`VmHWM`), KiB: what decoding a batch cost at its worst.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_millions_of_empty_updates_is_refused_before_it_is_decoded() {
    // Two million empty updates: 4 MiB plain (well within the 64 MiB message limit), a few
    // hundred bytes compressed. Decoded, they cost the agent hundreds of MiB.
    // Written by hand: decoded, they would cost this test what they cost the agent.
    let plain = empty_updates_event(2_000_000);
    let compressed =
        meshsync_proto::compression::compress_frame(&Frame::encode(&Raw(plain.clone())));
    let compressed = compressed.message();
    assert!(
        compressed.len() < 64 << 10,
        "{} bytes compressed",
        compressed.len()
    );
    let server = FakeServer::start(move |n, _| match n {
        // The compressed bomb, then the plain one; then an honest, empty, in-sync server.
        0 => Answer::Stream {
            messages: vec![
                hello(1, pb::SyncPath::Full, pb::Compression::Zstd),
                compressed.clone(),
            ],
            then: Then::Hang,
        },
        1 => Answer::Stream {
            messages: vec![
                hello(1, pb::SyncPath::Full, pb::Compression::None),
                plain.clone(),
            ],
            then: Then::Hang,
        },
        _ => Answer::Stream {
            messages: vec![
                hello(2, pb::SyncPath::Full, pb::Compression::None),
                status(1, 0, 0),
            ],
            then: Then::Hang,
        },
    })
    .await;
    let mut agent = agent(&server);
    let pid = agent.child.0.id();
    agent.wait_line("the agent in sync after both bombs", |l| {
        text_message_is(l, IN_SYNC)
    });
    let refusals = agent.count(|l| {
        text_message_is(
            l,
            "dropping the stream on what the server sent; resubscribing",
        ) && l.contains("updates in a batch: 2000000")
    });
    assert_eq!(
        refusals,
        2,
        "both batches refused, each with a warning naming the limit:\n{}",
        agent.lines.join("\n")
    );
    let peak = peak_rss_kib(pid);
    assert!(
        peak < 128 << 10,
        "the agent peaked at {} MiB decoding two batches of empty updates (now {} MiB)",
        peak >> 10,
        rss_kib(pid) >> 10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_of_many_entries_costs_linear_time() {
    // A mirror of 8,000 keys, then a `Replace` of 65,536 entries (within every limit, ~0.6 MB)
    // naming one bucket each: 5 × 10⁸ steps when each entry scanned the mirror (minutes), about
    // 10⁵ when applied linearly.
    const KEYS: usize = 8_000;
    const ENTRIES: u32 = 65_536;
    let updates: Vec<pb::Update> = (0..KEYS)
        .map(|i| pb::Update {
            seq: i as u64 + 1,
            kind: "Node".into(),
            name: format!("node-{i}"),
            r#type: pb::UpdateType::New as i32,
            value: Bytes::from_static(b"{}"),
            revision: "1".into(),
            ..Default::default()
        })
        .collect();
    let digest = updates.iter().fold(0u64, |sum, u| {
        sum.wrapping_add(entry_hash("", &u.kind, "", &u.name, &u.value))
    });
    let mut snapshot = vec![hello(1, pb::SyncPath::Full, pb::Compression::None)];
    for chunk in updates.chunks(1000) {
        snapshot.push(message(Event::Updates(pb::UpdateBatch {
            updates: chunk.to_vec(),
            unordered: true,
            cut_seq: 0,
        })));
    }
    snapshot.push(status(KEYS as u64, KEYS as u64, digest));
    let server = FakeServer::start(move |n, request| {
        if n == 0 {
            return Answer::Stream {
                messages: snapshot.clone(),
                then: Then::Close,
            };
        }
        // Anti-entropy in the agent's own bucket count; the mirror loses everything.
        let buckets = request
            .mirror
            .iter()
            .find(|c| c.cluster.is_empty())
            .map_or(1, |c| c.digests.len() as u32);
        let replace = pb::Replace {
            clusters: (0..ENTRIES)
                .map(|i| pb::ReplacedBuckets {
                    cluster: String::new(),
                    buckets,
                    bucket: vec![i % buckets],
                })
                .collect(),
        };
        let replace = message(Event::Replace(replace));
        assert!(replace.len() < 1 << 20);
        Answer::Stream {
            messages: vec![
                hello(2, pb::SyncPath::AntiEntropy, pb::Compression::None),
                replace,
                status(1, 0, 0),
            ],
            then: Then::Hang,
        }
    })
    .await;
    let mut agent = agent(&server);
    agent.wait_line("the first snapshot", |l| {
        text_message_is(l, IN_SYNC) && l.contains("resources=8000")
    });
    // `wait_line` allows 30 s; the quadratic repair took minutes.
    let repaired = agent.wait_line("the repaired mirror", |l| {
        text_message_is(l, IN_SYNC) && l.contains("resources=0")
    });
    assert!(repaired.contains("resources=0"), "{repaired}");
    assert!(
        !agent
            .lines
            .iter()
            .any(|l| l.contains("mirror digest differs")),
        "{}",
        agent.lines.join("\n")
    );
}

/// A line starting with this would be a forged record.
const FORGED: &str = "2026-12-04T00:00:00.000000Z  INFO meshsync: forged";

/// Text with a newline that starts a forged record, and terminal escapes.
fn forging(what: &str) -> String {
    format!("{what}\n{FORGED} line\u{1b}[31m red \u{1b}]0;title\u{7}")
}

/// Runs the agent against `server` for a window of `WINDOW` from its first subscription; returns
/// the agent with its stderr so far and the subscriptions made in the window.
async fn watch(server: &FakeServer) -> (Serve, usize) {
    const WINDOW: Duration = Duration::from_secs(3);
    let mut agent = agent(server);
    wait_until("the first subscription", Duration::from_secs(30), || {
        server.subscriptions() >= 1
    });
    let start = Instant::now();
    while start.elapsed() < WINDOW {
        tokio::time::sleep(Duration::from_millis(100)).await;
        collect(&mut agent);
    }
    let subscriptions = server.subscriptions();
    collect(&mut agent);
    (agent, subscriptions)
}

fn assert_nothing_forged(agent: &Serve) {
    let all = agent.lines.join("\n");
    assert!(
        !all.contains('\u{1b}') && !all.contains('\u{7}'),
        "raw escapes on stderr:\n{all}"
    );
    assert!(
        !agent.lines.iter().any(|l| l.starts_with(FORGED)),
        "a forged line:\n{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_from_the_server_neither_forge_log_lines_nor_make_the_agent_spin() {
    let server = FakeServer::start(|_, _| Answer::Stream {
        messages: vec![
            hello(1, pb::SyncPath::Full, pb::Compression::None),
            message(Event::Reconnect(pb::Reconnect {
                reason: forging("draining"),
                elsewhere: forging("10.0.0.1"),
            })),
        ],
        then: Then::Hang,
    })
    .await;
    let (agent, subscriptions) = watch(&server).await;
    assert_nothing_forged(&agent);
    assert!(
        agent
            .lines
            .iter()
            .any(|l| l.contains("reconnect elsewhere") && l.contains("draining\\n2026-12-04")),
        "the reason is logged, escaped:\n{}",
        agent.lines.join("\n")
    );
    // The first move is at once, then the backoff grows (100 ms doubling to 5 s): about eight in
    // three seconds. Without a backoff: thousands.
    assert!(
        subscriptions <= 20,
        "{subscriptions} subscriptions in 3 s:\n{}",
        agent.lines.join("\n")
    );
    assert!(
        agent.lines.len() <= 60,
        "{} log lines in 3 s",
        agent.lines.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_naming_another_replica_cannot_forge_log_lines() {
    let server = FakeServer::start(|_, _| Answer::Refuse {
        code: tonic::Code::ResourceExhausted as u32,
        message: forging("at its connection limit; try another server, e.g."),
    })
    .await;
    let (agent, subscriptions) = watch(&server).await;
    assert_nothing_forged(&agent);
    assert!(
        agent
            .lines
            .iter()
            .any(|l| l.contains("connection lost") && l.contains("e.g.\\n2026-12-04")),
        "the refusal is logged, escaped:\n{}",
        agent.lines.join("\n")
    );
    assert!(subscriptions <= 20, "{subscriptions} subscriptions in 3 s");

    // `meshsync eval` (the same library) names the last connection error when it gives up.
    let url = server.url();
    let eval = tokio::task::spawn_blocking(move || {
        support::binary::run(
            meshsync().args(["eval", "all()", "--server", &url, "--timeout", "1"]),
            Duration::from_secs(30),
        )
    })
    .await
    .expect("eval");
    assert!(!eval.status.success(), "{}", eval.describe());
    assert!(
        eval.stderr.contains("e.g.\\n2026-12-04") && !eval.stderr.contains('\u{1b}'),
        "{}",
        eval.describe()
    );
    assert!(
        !eval.stderr.lines().any(|l| l.starts_with(FORGED)),
        "{}",
        eval.describe()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_stream_of_hellos_is_dropped_and_the_agent_backs_off() {
    let server = FakeServer::start(|_, _| Answer::Stream {
        messages: vec![hello(1, pb::SyncPath::Full, pb::Compression::None)],
        then: Then::Repeat,
    })
    .await;
    let (agent, subscriptions) = watch(&server).await;
    assert_nothing_forged(&agent);
    assert!(
        agent
            .lines
            .iter()
            .any(|l| l.contains("a second hello on the same stream")),
        "{}",
        agent.lines.join("\n")
    );
    assert!(subscriptions <= 20, "{subscriptions} subscriptions in 3 s");
    assert!(
        agent.lines.len() <= 60,
        "{} log lines in 3 s:\n{}",
        agent.lines.len(),
        agent.lines[..20.min(agent.lines.len())].join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_verifies_then_asks_to_move_every_time_is_followed_with_a_backoff() {
    // Hello, an empty verified snapshot, Reconnect — on every subscription: each stream counts
    // as verified, yet the agent moves at once at most once per `backoff_max` and logs one
    // subscription line per 10 s.
    let server = FakeServer::start(|_, _| Answer::Stream {
        messages: vec![
            hello(1, pb::SyncPath::Full, pb::Compression::None),
            status(1, 0, 0),
            message(Event::Reconnect(pb::Reconnect {
                reason: "draining".into(),
                elsewhere: String::new(),
            })),
        ],
        then: Then::Hang,
    })
    .await;
    let (agent, subscriptions) = watch(&server).await;
    // The backoff after a verified stream is 50–100 ms: at most ~60 in 3 s. Without: thousands.
    assert!(subscriptions <= 80, "{subscriptions} subscriptions in 3 s");
    let subscribed_lines = agent
        .lines
        .iter()
        .filter(|l| text_message_is(l, "subscribed; receiving a full snapshot"))
        .count();
    assert!(
        subscribed_lines <= 2,
        "{subscribed_lines} subscription lines for {subscriptions} subscriptions"
    );
}

/// An encoded `SyncEvent { updates: UpdateBatch { updates: [Update::default(); n] } }`.
fn empty_updates_event(n: usize) -> Bytes {
    // `UpdateBatch.updates` (field 1, length-delimited) of length 0, n times.
    let batch = [0x0a_u8, 0x00].repeat(n);
    let mut event = vec![0x12_u8]; // `SyncEvent.updates`: field 2, length-delimited
    prost::encoding::encode_varint(batch.len() as u64, &mut event);
    event.extend_from_slice(&batch);
    Bytes::from(event)
}

/// Bytes that are already an encoded message, for `Frame::encode`.
#[derive(Debug, Default)]
struct Raw(Bytes);

impl Message for Raw {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        _tag: u32,
        _wire_type: prost::encoding::WireType,
        _buf: &mut impl bytes::Buf,
        _ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        unreachable!("only encoded")
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0 = Bytes::new();
    }
}
