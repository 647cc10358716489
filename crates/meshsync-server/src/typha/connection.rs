//! One Typha client's connection: hello, admission, server hello, the optional decoder restart
//! into snappy, then the core's session with pings, and the client's pongs.
//!
//! The order is Typha's, and where Go's client is strict we are too: nothing is sent between a
//! decoder restart and the client's ACK (its first decoder may have read ahead; bytes sent then
//! would be lost when it switches), every stream starts with the same type preamble (so shared
//! units decode on it), and after the handshake the only message a client may send is a pong.
//! Everything else — an unknown syncer, a refusal at the connection limit, garbage, a client
//! that stops answering pings, a stalled reader — ends the connection with one log line, which
//! is Typha's only way to say anything to a client.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use meshsync_proto::LogSafe;
use meshsync_typha::v1::{Dialect, Syncer};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::encoding::{Framing, TyphaEncoding, subscription_of};
use super::wire::{self, ClientMessage, ClientReader};
use meshsync_typha::v1::remote::RemoteNamespaces;

use crate::core::accept::GuardedIo;
use crate::core::{Applicant, ServerCore, SessionItem};

/// The front end's settings (Typha's defaults).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    /// Whether v3 values carry their datastore's resource version, as Calico's syncer gives them
    /// on the Kubernetes datastore (on etcd it leaves them without one).
    pub(crate) v3_resource_versions: bool,
    /// Remote pods in local namespaced policies (see `meshsync_typha::v1::remote`).
    pub(crate) remote_namespaces: RemoteNamespaces,
    /// How long the client has for its hello (and, with TLS, the handshake before it).
    pub(crate) handshake: Duration,
    /// A ping every this long (with up to 10 % jitter)…
    pub(crate) ping_interval: Duration,
    /// …and a connection without a pong for this long is closed. Also the wait for an ACK.
    pub(crate) pong_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            v3_resource_versions: false,
            remote_namespaces: RemoteNamespaces::Same,
            handshake: Duration::from_secs(10),
            ping_interval: Duration::from_secs(10),
            pong_timeout: Duration::from_secs(60),
        }
    }
}

/// Why a connection ended (one log line each).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Closed {
    #[error("connection closed by the client")]
    Eof,
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("no hello within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("unknown syncer type {0:?}")]
    UnknownSyncer(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("no pong for {0:?}")]
    PongTimeout(Duration),
    #[error("server is shutting down")]
    Shutdown,
    #[error("{0}")]
    Leave(String),
}

/// Serves one accepted connection until it ends; logs why it ended.
pub(crate) async fn serve(core: Arc<ServerCore>, io: GuardedIo, settings: Settings) {
    let conn = io.state.clone();
    let peer = conn.peer.to_string();
    let (read, write) = tokio::io::split(io);
    let mut reader = Reader {
        read,
        decoder: ClientReader::default(),
    };
    let mut writer = write;
    let result = run(&core, &peer, &mut reader, &mut writer, settings, &conn).await;
    let _ = writer.shutdown().await;
    match result {
        Ok(()) | Err(Closed::Eof) | Err(Closed::Shutdown) => {
            debug!(peer = %peer, "Typha connection ended")
        }
        Err(Closed::Leave(why)) => info!(peer = %peer, reason = %why, "closing Typha connection"),
        Err(e) => warn!(peer = %peer, error = %LogSafe(&e.to_string()), "closing Typha connection"),
    }
}

/// The client's side of the stream: the plain gob stream it writes for the whole connection.
struct Reader {
    read: ReadHalf<GuardedIo>,
    decoder: ClientReader,
}

impl Reader {
    /// The next client message, waiting for more bytes as needed.
    async fn next(&mut self) -> Result<ClientMessage, Closed> {
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            if let Some(message) = self
                .decoder
                .next_message()
                .map_err(|e| Closed::Protocol(e.to_string()))?
            {
                return Ok(message);
            }
            buf.clear();
            if self.read.read_buf(&mut buf).await? == 0 {
                return Err(Closed::Eof);
            }
            self.decoder.feed(&buf);
        }
    }
}

async fn run(
    core: &Arc<ServerCore>,
    peer: &str,
    reader: &mut Reader,
    writer: &mut WriteHalf<GuardedIo>,
    settings: Settings,
    conn: &Arc<crate::core::accept::ConnState>,
) -> Result<(), Closed> {
    let hello = match tokio::time::timeout(settings.handshake, reader.next()).await {
        Err(_) => return Err(Closed::HandshakeTimeout(settings.handshake)),
        Ok(Ok(ClientMessage::Hello(hello))) => hello,
        Ok(Ok(other)) => {
            return Err(Closed::Protocol(format!(
                "expected a client hello, got {}",
                wire::message_name(&other)
            )));
        }
        Ok(Err(e)) => return Err(e),
    };
    let syncer = Syncer::by_name(&hello.syncer_type)
        .ok_or_else(|| Closed::UnknownSyncer(LogSafe(&hello.syncer_type).to_string()))?;
    let dialect = if hello.supports_modern_policy_keys {
        Dialect::Modern
    } else {
        Dialect::V331
    };
    let node = LogSafe(&hello.hostname).to_string();
    let sub = subscription_of(syncer);
    let admitted = core
        .admit(Applicant {
            peer,
            node: &node,
            sub,
            protocol: "typha",
            conn: Some(conn.clone()),
            resume: None,
            has_mirror: false,
            reconnect_capable: false,
        })
        .map_err(|refused| Closed::Refused(refused.0))?;
    let snappy = hello.supports_decoder_restart
        && hello
            .supported_compression_algorithms
            .iter()
            .any(|a| a == "snappy");
    info!(peer = %peer, node = %node, syncer = syncer.name(), dialect = ?dialect,
        client_version = %LogSafe(&hello.version), compression = if snappy { "snappy" } else { "none" },
        "new Typha client");
    writer.write_all(&wire::preamble()).await?;
    writer
        .write_all(&wire::server_hello(syncer.name(), crate::SERVER_VERSION))
        .await?;
    let framing = if snappy {
        restart_into_snappy(reader, writer, settings).await?;
        Framing::Snappy
    } else {
        Framing::Plain
    };
    conn.handshake_done();
    let encoding = TyphaEncoding {
        syncer,
        dialect,
        framing,
        v3_resource_versions: settings.v3_resource_versions,
        remote_namespaces: settings.remote_namespaces,
    };
    let session = admitted.session(core, encoding, Vec::new(), None);
    stream(session, reader, writer, framing, settings).await
}

/// Sends the decoder restart, waits for the ACK (sending nothing meanwhile), and starts the new
/// snappy stream with its identifier and the type preamble.
async fn restart_into_snappy(
    reader: &mut Reader,
    writer: &mut WriteHalf<GuardedIo>,
    settings: Settings,
) -> Result<(), Closed> {
    writer
        .write_all(&wire::decoder_restart("enable compression: snappy"))
        .await?;
    writer.flush().await?;
    match tokio::time::timeout(settings.pong_timeout, reader.next()).await {
        Err(_) => {
            return Err(Closed::Protocol(format!(
                "no ACK of the decoder restart within {:?}",
                settings.pong_timeout
            )));
        }
        Ok(Ok(ClientMessage::Ack)) => {}
        Ok(Ok(other)) => {
            return Err(Closed::Protocol(format!(
                "expected the ACK of the decoder restart, got {}",
                wire::message_name(&other)
            )));
        }
        Ok(Err(e)) => return Err(e),
    }
    writer.write_all(wire::snappy_stream_identifier()).await?;
    writer.write_all(&wire::frame(&wire::preamble())).await?;
    Ok(())
}

/// Writes the session's units and pings until the session ends or the client fails; reads the
/// client's pongs meanwhile.
async fn stream(
    session: impl futures::Stream<Item = SessionItem<Bytes>> + Send,
    reader: &mut Reader,
    writer: &mut WriteHalf<GuardedIo>,
    framing: Framing,
    settings: Settings,
) -> Result<(), Closed> {
    let mut session = std::pin::pin!(session);
    let (pong_tx, mut pong_rx) = watch::channel(tokio::time::Instant::now());
    let pongs = async {
        loop {
            match reader.next().await? {
                ClientMessage::Pong(_) => {
                    let _ = pong_tx.send(tokio::time::Instant::now());
                }
                other => {
                    return Err::<(), Closed>(Closed::Protocol(format!(
                        "only pongs are expected after the handshake, got {}",
                        wire::message_name(&other)
                    )));
                }
            }
        }
    };
    let writes = async {
        let mut ping = tokio::time::interval_at(
            tokio::time::Instant::now() + jittered(settings.ping_interval),
            settings.ping_interval,
        );
        let mut check = tokio::time::interval(settings.ping_interval / 2);
        loop {
            tokio::select! {
                item = session.next() => match item {
                    Some(SessionItem::Send(unit)) => writer.write_all(&unit).await?,
                    Some(SessionItem::Shutdown) => return Err(Closed::Shutdown),
                    Some(SessionItem::Leave { reason, .. }) => return Err(Closed::Leave(reason)),
                    None => return Ok(()),
                },
                _ = ping.tick() => {
                    let message = wire::ping(std::time::SystemTime::now());
                    match framing {
                        Framing::Plain => writer.write_all(&message).await?,
                        Framing::Snappy => writer.write_all(&wire::frame(&message)).await?,
                    }
                }
                _ = check.tick() => {
                    if pong_rx.borrow_and_update().elapsed() > settings.pong_timeout {
                        return Err(Closed::PongTimeout(settings.pong_timeout));
                    }
                }
            }
        }
    };
    tokio::select! {
        result = pongs => result,
        result = writes => result,
    }
}

/// `interval` plus up to 10 % (Typha jitters its pings so that clients do not answer at once).
fn jittered(interval: Duration) -> Duration {
    interval + interval.mul_f64(rand::random::<f64>() * 0.1)
}
