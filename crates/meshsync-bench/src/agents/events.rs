//! Clients reading `SyncEvent`s into a plain map: the floor (length-prefixed frames on TCP, see
//! [`crate::frame`]) and meshsync with `--meshsync-client raw` (the generated gRPC client, no
//! mirror) — the same work per update in both.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use meshsync_proto::{self as proto, SyncEvent, sync_client::SyncClient, sync_event};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tonic::transport::Endpoint;
use tracing::warn;

use super::recorder::{LOGGED_FAILURES, Recorder};
use super::{AgentsArgs, backoff};
use crate::frame::next_frame;
use crate::model::System;
use crate::workload::now_ns;

/// A client's local copy: resource name → value.
pub(super) type NameMap = HashMap<String, Bytes>;

/// The state of one client that survives its reconnections.
pub(super) struct EventClient<'a> {
    id: usize,
    args: &'a AgentsArgs,
    shared: &'a Recorder,
    map: NameMap,
    /// Past the snapshot of the current connection: updates are deliveries.
    live: bool,
    synced: bool,
    slot: Option<OwnedSemaphorePermit>,
}

impl EventClient<'_> {
    /// Applies one event; the first status ends the snapshot.
    pub(super) fn handle(&mut self, event: SyncEvent) {
        let event = match event.event {
            // The same work as a plain batch once decompressed (the decompression is the
            // compressed system's extra client cost, measured in the agents process's CPU).
            Some(sync_event::Event::Compressed(compressed)) => {
                match proto::compression::decompress_batch(&compressed, 64 << 20) {
                    Ok(batch) => Some(sync_event::Event::Updates(batch)),
                    Err(e) => {
                        if self.shared.logged.fetch_add(1, Ordering::Relaxed) < LOGGED_FAILURES {
                            warn!(client = self.id, "unreadable compressed batch: {e}");
                        }
                        None
                    }
                }
            }
            other => other,
        };
        match event {
            Some(sync_event::Event::Updates(batch)) => {
                self.shared
                    .stall
                    .observe(self.id, batch.updates.iter().map(|u| &u.value[..]));
                if self.live {
                    let now = now_ns();
                    let values = batch.updates.iter().map(|u| &u.value[..]);
                    self.shared.record(self.id, now, values);
                }
                for update in batch.updates {
                    if update.r#type == proto::UpdateType::Deleted as i32 {
                        self.map.remove(&update.name);
                    } else {
                        self.map.insert(update.name, update.value);
                    }
                }
            }
            Some(sync_event::Event::Status(status)) => {
                self.live = true;
                if !self.synced && status.overall() == proto::SyncState::InSync {
                    self.synced = true;
                    self.slot.take();
                    if self.map.len() < self.args.keys
                        && self.shared.logged.fetch_add(1, Ordering::Relaxed) < LOGGED_FAILURES
                    {
                        warn!(
                            client = self.id,
                            got = self.map.len(),
                            expected = self.args.keys,
                            "fewer keys than expected"
                        );
                    }
                    self.shared.mark_synced();
                }
            }
            _ => {}
        }
    }
}

/// Runs sessions until the client fails: before its first sync a client gets `attempts`
/// consecutive failures; afterwards it reconnects for ever (each time through a full snapshot,
/// which is not counted).
pub(super) async fn event_client(
    id: usize,
    args: &AgentsArgs,
    shared: &Recorder,
    slot: Option<OwnedSemaphorePermit>,
) {
    let mut client = EventClient {
        id,
        args,
        shared,
        map: NameMap::with_capacity(args.keys),
        live: false,
        synced: false,
        slot,
    };
    let mut failures = 0u32;
    loop {
        client.live = false;
        client.map.clear();
        let result = match args.system {
            System::Floor => floor_session(&mut client).await,
            _ => meshsync_raw_session(&mut client).await,
        };
        let error = match result {
            Ok(()) => anyhow::anyhow!("the server ended the stream"),
            Err(e) => e,
        };
        if client.live {
            failures = 0;
            shared.lost_connection(id, &format_args!("{error:#}"));
        } else {
            failures += 1;
            if !client.synced && failures >= args.attempts {
                return shared.mark_failed(id, &format!("{error:#}"));
            }
        }
        tokio::time::sleep(backoff(id, failures)).await;
    }
}

/// One floor connection: connect, then read frames until it fails.
pub(super) async fn floor_session(client: &mut EventClient<'_>) -> anyhow::Result<()> {
    let args = client.args;
    let timeout = Duration::from_secs_f64(args.connect_timeout_s);
    let mut socket = tokio::time::timeout(timeout, TcpStream::connect(&args.target))
        .await
        .map_err(|_| anyhow::anyhow!("connecting to {} timed out", args.target))?
        .with_context(|| format!("connecting to {}", args.target))?;
    let _ = socket.set_nodelay(true);
    // One byte, which the floor discards: if the kernel completed this connection with a SYN
    // cookie and then dropped it from a full accept queue, the byte repairs it (or draws a reset)
    // instead of leaving us waiting for ever.
    socket
        .write_all(b"\n")
        .await
        .context("sending the hello byte")?;
    let mut buf = BytesMut::with_capacity(64 << 10);
    loop {
        while let Some(frame) = next_frame(&mut buf)? {
            client.handle(SyncEvent::decode(frame).context("decoding a frame")?);
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 << 10);
        }
        if socket.read_buf(&mut buf).await? == 0 {
            anyhow::bail!("the floor closed the connection");
        }
    }
}

/// One meshsync subscription through the generated client, without the agent library's mirror.
pub(super) async fn meshsync_raw_session(client: &mut EventClient<'_>) -> anyhow::Result<()> {
    let args = client.args;
    let channel = Endpoint::from_shared(args.target.clone())?
        .connect_timeout(Duration::from_secs_f64(args.connect_timeout_s))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20))
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.target))?;
    let mut sync = SyncClient::new(channel).max_decoding_message_size(64 << 20);
    let request = proto::SubscribeRequest {
        node_name: format!("bench-agent-{}", client.id),
        client_version: env!("CARGO_PKG_VERSION").to_string(),
        subscription: "felix".into(),
        accept_compression: if args.system.zstd() {
            vec![proto::Compression::Zstd as i32]
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    let mut stream = sync.subscribe(request).await?.into_inner();
    loop {
        // A stalled client stops polling its stream (the `stalled` scenario).
        client.shared.stall.wait_while_stalled(client.id).await;
        let Some(event) = stream.message().await? else {
            return Ok(());
        };
        client.handle(event);
    }
}
