//! The floor: the physical reference server. One etcd watch; every change is encoded once into a
//! length-prefixed `SyncEvent` frame and the same bytes are queued to every plain TCP connection.
//! No cache, no gRPC, no HTTP/2: what is left is the cost of the kernel's sends, which is what the
//! fan-out systems are compared against.
//!
//! Wire format (also read by the `floor` agents): frames of a 4-byte big-endian length followed by
//! an encoded [`SyncEvent`]. A new connection receives the snapshot (batches of at most
//! [`SNAPSHOT_BATCH`] updates, then one `Status{overall: IN_SYNC}`), then one frame per etcd watch
//! response.
//!
//! Whatever a client sends is read and discarded (the agents send one byte after connecting, so
//! that a connection the kernel completed with a SYN cookie but dropped from a full accept queue
//! is repaired or reset instead of hanging silently); a client that closes is dropped at once.
//!
//! The process binds its listener only after the initial list and watch, so an open port means
//! "ready". It stops when stdin reaches EOF or reads `quit`.

use std::collections::BTreeMap;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use meshsync_etcd::{EtcdClient, EtcdConfig, WatchStream, pb as etcd};
use meshsync_proto::{self as proto, SyncEvent, sync_event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::child::{raise_nofile_limit, stdin_lines};
use crate::frame::encode_frame;
use crate::workload;

/// Updates per snapshot frame.
pub const SNAPSHOT_BATCH: usize = 1000;
/// Frames handed to one `writev`.
const IOV_BATCH: usize = 64;
/// Listen backlog (the kernel caps it at `net.core.somaxconn`): room for a connection storm.
const BACKLOG: u32 = 65_535;

#[derive(Args, Debug)]
pub struct FloorArgs {
    /// etcd endpoint, e.g. `http://127.0.0.1:2379`.
    #[arg(long)]
    pub etcd: String,
    /// Address to listen on, e.g. `127.0.0.1:5480`. Bound only once the initial list is loaded.
    #[arg(long)]
    pub listen: String,
}

/// The name of the resource stored at etcd key `key`: its last path segment.
fn name_of(key: &[u8]) -> String {
    let last = key.rsplit(|b| *b == b'/').next().unwrap_or(key);
    String::from_utf8_lossy(last).into_owned()
}

fn update_of(kv: &etcd::KeyValue, kind: proto::UpdateType, value: Bytes) -> proto::Update {
    proto::Update {
        seq: kv.mod_revision.max(0) as u64,
        cluster: String::new(),
        kind: "WorkloadEndpoint".into(),
        namespace: "bench".into(),
        name: name_of(&kv.key),
        r#type: kind as i32,
        value,
        revision: kv.mod_revision.to_string(),
    }
}

fn updates_frame(updates: Vec<proto::Update>, unordered: bool) -> Bytes {
    encode_frame(&SyncEvent {
        event: Some(sync_event::Event::Updates(proto::UpdateBatch {
            updates,
            unordered,
            ..Default::default()
        })),
    })
}

/// The status frame that ends a snapshot.
pub fn in_sync_frame(revision: i64) -> Bytes {
    encode_frame(&SyncEvent {
        event: Some(sync_event::Event::Status(proto::Status {
            seq: revision.max(0) as u64,
            overall: proto::SyncState::InSync as i32,
            clusters: Vec::new(),
            ..Default::default()
        })),
    })
}

/// The snapshot of `map` at `revision` as frames: batches of at most [`SNAPSHOT_BATCH`] updates,
/// then the in-sync status.
fn snapshot_frames(map: &BTreeMap<Bytes, etcd::KeyValue>, revision: i64) -> Arc<[Bytes]> {
    let mut frames = Vec::with_capacity(map.len() / SNAPSHOT_BATCH + 2);
    let mut batch = Vec::with_capacity(SNAPSHOT_BATCH.min(map.len()));
    for kv in map.values() {
        batch.push(update_of(kv, proto::UpdateType::New, kv.value.clone()));
        if batch.len() == SNAPSHOT_BATCH {
            frames.push(updates_frame(std::mem::take(&mut batch), true));
        }
    }
    if !batch.is_empty() {
        frames.push(updates_frame(batch, true));
    }
    frames.push(in_sync_frame(revision));
    frames.into()
}

/// The one frame for a watch response's events (`None` for a progress notification).
fn watch_frame(events: &[etcd::Event]) -> Option<Bytes> {
    let updates: Vec<proto::Update> = events
        .iter()
        .filter_map(|ev| {
            let kv = ev.kv.as_ref()?;
            Some(if ev.r#type == etcd::event::EventType::Delete as i32 {
                update_of(kv, proto::UpdateType::Deleted, Bytes::new())
            } else if kv.create_revision == kv.mod_revision {
                update_of(kv, proto::UpdateType::New, kv.value.clone())
            } else {
                update_of(kv, proto::UpdateType::Updated, kv.value.clone())
            })
        })
        .collect();
    (!updates.is_empty()).then(|| updates_frame(updates, false))
}

/// Everything behind one lock, so a new connection's snapshot and the live frames that follow it
/// have neither a gap nor an overlap.
struct State {
    map: BTreeMap<Bytes, etcd::KeyValue>,
    revision: i64,
    /// The encoded snapshot of the current state, until the next change.
    snapshot: Option<Arc<[Bytes]>>,
    connections: Vec<mpsc::UnboundedSender<Bytes>>,
}

impl State {
    fn snapshot(&mut self) -> Arc<[Bytes]> {
        if let Some(frames) = &self.snapshot {
            return frames.clone();
        }
        let frames = snapshot_frames(&self.map, self.revision);
        self.snapshot = Some(frames.clone());
        frames
    }

    fn apply(&mut self, events: Vec<etcd::Event>) {
        for ev in events {
            let Some(kv) = ev.kv else { continue };
            self.revision = self.revision.max(kv.mod_revision);
            if ev.r#type == etcd::event::EventType::Delete as i32 {
                self.map.remove(&kv.key);
            } else {
                self.map.insert(kv.key.clone(), kv);
            }
        }
        self.snapshot = None;
    }
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

pub async fn run(args: FloorArgs) -> anyhow::Result<()> {
    match raise_nofile_limit() {
        Ok(limit) => info!(limit, "open-file limit"),
        Err(e) => warn!("cannot raise the open-file limit: {e}"),
    }
    let config = EtcdConfig::new(vec![args.etcd.clone()]);
    let client = EtcdClient::connect(&config)
        .await
        .with_context(|| format!("connecting to etcd at {}", args.etcd))?;
    let prefix = workload::PREFIX.as_bytes();
    let (kvs, revision) = client
        .list_prefix(prefix, 0, 5000)
        .await
        .context("listing the benchmark prefix")?;
    let watch = client
        .watch_prefix(prefix, revision + 1)
        .await
        .context("watching the benchmark prefix")?;
    let keys = kvs.len();
    let state: Shared = Arc::new(Mutex::new(State {
        map: kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect(),
        revision,
        snapshot: None,
        connections: Vec::new(),
    }));
    // Encode the first snapshot before opening the port.
    lock(&state).snapshot();
    let listener = listen(&args.listen).with_context(|| format!("binding {}", args.listen))?;
    info!(listen = %args.listen, keys, revision, "floor ready");

    let commands = stdin_lines();
    let watching = tokio::spawn(watch_loop(client, watch, revision, state.clone()));
    let accepting = tokio::spawn(accept_loop(listener, state));
    let result = tokio::select! {
        () = wait_for_quit(commands) => Ok(()),
        r = watching => r.context("the watch task panicked").and_then(|r| r),
    };
    accepting.abort();
    result
}

fn listen(address: &str) -> anyhow::Result<TcpListener> {
    let address: SocketAddr = address.parse().context("expected an IP:port")?;
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    Ok(socket.listen(BACKLOG)?)
}

/// Resolves at `quit` or when stdin closes.
async fn wait_for_quit(mut commands: mpsc::UnboundedReceiver<String>) {
    while let Some(line) = commands.recv().await {
        if line.trim() == "quit" {
            return;
        }
    }
}

async fn watch_loop(
    client: EtcdClient,
    mut watch: WatchStream,
    mut revision: i64,
    state: Shared,
) -> anyhow::Result<()> {
    loop {
        match watch.next().await {
            Ok(response) => {
                let Some(frame) = watch_frame(&response.events) else {
                    continue;
                };
                for ev in &response.events {
                    if let Some(kv) = &ev.kv {
                        revision = revision.max(kv.mod_revision);
                    }
                }
                let mut st = lock(&state);
                st.apply(response.events);
                st.connections.retain(|tx| tx.send(frame.clone()).is_ok());
            }
            Err(e) if e.is_compacted() => return Err(e).context("the etcd watch failed"),
            Err(e) => {
                warn!(
                    "etcd watch failed ({e}); resuming from revision {}",
                    revision + 1
                );
                watch = rewatch(&client, revision + 1).await?;
            }
        }
    }
}

/// Re-creates the watch from `from`, retrying for about half a minute (an etcd restart).
async fn rewatch(client: &EtcdClient, from: i64) -> anyhow::Result<WatchStream> {
    let mut last = None;
    for attempt in 0..20u32 {
        tokio::time::sleep(Duration::from_millis((100 << attempt.min(5)).min(2000))).await;
        match client.watch_prefix(workload::PREFIX.as_bytes(), from).await {
            Ok(watch) => return Ok(watch),
            Err(e) if e.is_compacted() => return Err(e).context("re-creating the etcd watch"),
            Err(e) => last = Some(e),
        }
    }
    Err(anyhow::anyhow!(
        "cannot re-create the etcd watch: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

async fn accept_loop(listener: TcpListener, state: Shared) {
    loop {
        let socket = match listener.accept().await {
            Ok((socket, _)) => socket,
            Err(e) => {
                // Typically EMFILE under a connection storm: back off briefly.
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut st = lock(&state);
            let snapshot = st.snapshot();
            for frame in snapshot.iter() {
                let _ = tx.send(frame.clone());
            }
            st.connections.push(tx);
        }
        tokio::spawn(write_loop(socket, rx));
    }
}

/// Writes everything queued for one connection, all queued frames together per wakeup. Ends (and
/// so drops the connection) on the first write error or when the client closes.
async fn write_loop(mut socket: TcpStream, mut queue: mpsc::UnboundedReceiver<Bytes>) {
    let (mut reader, mut writer) = socket.split();
    let mut frames = Vec::new();
    let mut discard = [0u8; 64];
    loop {
        tokio::select! {
            received = queue.recv_many(&mut frames, IOV_BATCH) => {
                if received == 0 {
                    return;
                }
                if write_all_vectored(&mut writer, &frames).await.is_err() {
                    return;
                }
                frames.clear();
            }
            read = reader.read(&mut discard) => {
                if !matches!(read, Ok(n) if n > 0) {
                    return;
                }
            }
        }
    }
}

/// Writes every frame in `frames`, in order, with as few `writev` calls as the socket allows.
pub async fn write_all_vectored<W>(out: &mut W, frames: &[Bytes]) -> io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let (mut index, mut offset) = (0usize, 0usize);
    while index < frames.len() {
        let mut slices = [IoSlice::new(&[]); IOV_BATCH];
        let mut count = 0;
        for (i, frame) in frames[index..].iter().take(IOV_BATCH).enumerate() {
            slices[i] = IoSlice::new(if i == 0 { &frame[offset..] } else { frame });
            count += 1;
        }
        let mut written = out.write_vectored(&slices[..count]).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while written > 0 && index < frames.len() {
            let left = frames[index].len() - offset;
            if written >= left {
                written -= left;
                index += 1;
                offset = 0;
            } else {
                offset += written;
                written = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::next_frame;
    use bytes::BytesMut;
    use prost::Message;

    fn kv(key: &str, value: &str, create: i64, modr: i64) -> etcd::KeyValue {
        etcd::KeyValue {
            key: Bytes::from(key.to_string()),
            value: Bytes::from(value.to_string()),
            create_revision: create,
            mod_revision: modr,
            ..Default::default()
        }
    }

    fn decode_all(mut wire: BytesMut) -> Vec<SyncEvent> {
        let mut events = Vec::new();
        while let Some(frame) = next_frame(&mut wire).unwrap() {
            events.push(SyncEvent::decode(frame).unwrap());
        }
        assert!(wire.is_empty());
        events
    }

    #[test]
    fn frames_round_trip_through_the_reader() {
        let put = |kv| etcd::Event {
            r#type: etcd::event::EventType::Put as i32,
            kv: Some(kv),
            prev_kv: None,
        };
        let events = [
            put(kv("/p/a", "1", 2, 2)),
            put(kv("/p/b", "2", 2, 5)),
            etcd::Event {
                r#type: etcd::event::EventType::Delete as i32,
                kv: Some(kv("/p/c", "", 0, 6)),
                prev_kv: None,
            },
        ];
        let frame = watch_frame(&events).unwrap();
        let status = in_sync_frame(6);
        let mut wire = BytesMut::new();
        // Fed in small pieces, as a socket would.
        let all = [frame.clone(), status].concat();
        let mut out = Vec::new();
        for chunk in all.chunks(7) {
            wire.extend_from_slice(chunk);
            while let Some(f) = next_frame(&mut wire).unwrap() {
                out.push(SyncEvent::decode(f).unwrap());
            }
        }
        assert_eq!(out.len(), 2);
        let Some(sync_event::Event::Updates(batch)) = &out[0].event else {
            panic!("not updates: {:?}", out[0]);
        };
        let names: Vec<_> = batch.updates.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let types: Vec<_> = batch.updates.iter().map(|u| u.r#type()).collect();
        assert_eq!(
            types,
            [
                proto::UpdateType::New,
                proto::UpdateType::Updated,
                proto::UpdateType::Deleted
            ]
        );
        assert_eq!(batch.updates[1].value, Bytes::from("2"));
        assert_eq!(batch.updates[1].seq, 5);
        assert!(batch.updates[2].value.is_empty());
        let Some(sync_event::Event::Status(status)) = &out[1].event else {
            panic!("not a status: {:?}", out[1]);
        };
        assert_eq!(status.overall(), proto::SyncState::InSync);
        assert_eq!(status.seq, 6);
        // The length prefix is the message length.
        assert_eq!(
            u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize,
            frame.len() - 4
        );
    }

    #[test]
    fn snapshots_are_batched_and_end_in_sync() {
        let map: BTreeMap<Bytes, etcd::KeyValue> = (0..2500)
            .map(|i| {
                let k = workload::key(i);
                (Bytes::from(k.clone()), kv(&k, "v", 3, 3))
            })
            .collect();
        let frames = snapshot_frames(&map, 9);
        assert_eq!(frames.len(), 4);
        let events = decode_all(BytesMut::from(frames.concat().as_slice()));
        let sizes: Vec<usize> = events
            .iter()
            .filter_map(|e| match &e.event {
                Some(sync_event::Event::Updates(b)) => Some(b.updates.len()),
                _ => None,
            })
            .collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        assert!(matches!(
            events.last().and_then(|e| e.event.as_ref()),
            Some(sync_event::Event::Status(s)) if s.overall() == proto::SyncState::InSync
        ));
        let empty = snapshot_frames(&BTreeMap::new(), 1);
        assert_eq!(empty.len(), 1);
    }

    #[tokio::test]
    async fn vectored_writes_deliver_every_frame_in_order() {
        let (mut a, mut b) = tokio::io::duplex(1000);
        let frames: Vec<Bytes> = (0..200u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8; 1 + (i as usize * 37) % 3000]))
            .collect();
        let expected = frames.concat();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b, &mut got)
                .await
                .unwrap();
            got
        });
        write_all_vectored(&mut a, &frames).await.unwrap();
        drop(a);
        assert_eq!(reader.await.unwrap(), expected);
    }
}
