//! Accepting agents' sockets, for every front end: a cap on open sockets, backoff when the
//! process is out of file descriptors, and a per-connection IO wrapper that closes connections
//! which do not complete a request within the handshake timeout, or that the server decided to
//! drop (a stalled reader).
//!
//! tonic's own accept loop retries a failing `accept` immediately and logs at `trace`: at the
//! open-file limit that is a busy loop on one core. Here every accept error is handled in the
//! stream itself, which never yields an error to the front end.
//!
//! With TLS ([`crate::tls`]) each accepted socket's handshake runs in its own task, within the
//! handshake timeout and holding its slot of the socket cap, so a slow or hostile handshake never
//! delays the next accept; only completed handshakes reach the front end. A failed handshake (a
//! plaintext client, a wrong CA, an identity not allowed) is one rate-limited log line with its
//! reason. On a plaintext port whose protocol has a fixed [`Preface`], the first byte that differs
//! from it closes the connection, and a client whose first byte opens a TLS record is told apart
//! from garbage the same way.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::Stream;
use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tracing::{info, warn};

use crate::core::connections::Connections;

/// Lines about events that can repeat at the peer's rate (refused sockets, handshake timeouts)
/// are logged at most this often, with a count of what was not logged.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// First and longest pause after `accept` failed for lack of resources.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// At most one line per [`LOG_EVERY`]; counts the events in between.
#[derive(Debug, Default)]
pub(crate) struct RateLimit {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl RateLimit {
    /// A rate limit that has logged nothing yet (usable in a `static`).
    pub(crate) const fn new() -> Self {
        RateLimit {
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(events not logged since the last line)` if a line may be logged now.
    pub(crate) fn hit(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(Instant::now());
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// What the server knows about one accepted connection, shared by its IO and its streams.
#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) peer: SocketAddr,
    handshake_done: AtomicBool,
    killed: AtomicBool,
    waker: AtomicWaker,
    /// Bytes of request bodies read and not yet done with (a front end's request bodies, e.g. gRPC's).
    pub(crate) request_bytes: AtomicUsize,
}

impl ConnState {
    /// The connection completed a request: the handshake timeout no longer applies.
    pub(crate) fn handshake_done(&self) {
        self.handshake_done.store(true, Ordering::Release);
    }

    /// Closes the connection: its IO fails from the next poll on, so hyper drops it and every
    /// stream on it.
    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.waker.wake();
    }

    pub(crate) fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }
}

/// What a front end's clients send first on a plaintext port, so that anything else is refused
/// at its first wrong byte with one log line per cause.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Preface {
    pub(crate) bytes: &'static [u8],
    /// The protocol, for the log line ("does not speak gRPC (HTTP/2)").
    pub(crate) protocol: &'static str,
    /// Why a client sent `bytes` at `offset` of the preface instead (a TLS client, HTTP/1.x,
    /// garbage): one of a few fixed causes, each rate-limited on its own.
    pub(crate) refusal: fn(offset: usize, bytes: &[u8]) -> &'static str,
}

/// Holds one slot of the socket cap while the socket is open.
#[derive(Debug)]
struct SocketPermit(Arc<Connections>);

impl Drop for SocketPermit {
    fn drop(&mut self) {
        self.0.sockets.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The bytes under HTTP/2: a plain socket or a TLS session over one.
pub(crate) enum Transport {
    Plain {
        socket: TcpStream,
        /// How many bytes of the front end's [`Preface`] the peer has sent correctly so far;
        /// the first byte that differs (TLS, HTTP/1.x, garbage) closes the connection with one
        /// log line per cause.
        sniffed: usize,
        preface: Option<Preface>,
    },
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// An accepted gRPC socket. See the module documentation.
pub(crate) struct GuardedIo {
    inner: Transport,
    pub(crate) state: Arc<ConnState>,
    /// Armed until the connection completes a request.
    handshake: Option<Pin<Box<Sleep>>>,
    counters: Arc<Connections>,
    _permit: SocketPermit,
}

impl GuardedIo {
    /// Fails once the connection is killed or its handshake timed out; registers the task so a
    /// later kill wakes it.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.state.waker.register(cx.waker());
        if self.state.is_killed() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection closed by the server",
            ));
        }
        if let Some(timer) = self.handshake.as_mut() {
            if self.state.handshake_done.load(Ordering::Acquire) {
                self.handshake = None;
            } else if timer.as_mut().poll(cx).is_ready() {
                self.handshake = None;
                self.counters
                    .closed_handshake
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(more) = self.counters.handshake_log.hit() {
                    info!(peer = %self.state.peer, also_closed_since_last_line = more,
                        "closing a connection that completed no request within the handshake timeout");
                }
                self.state.killed.store(true, Ordering::Release);
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request within the handshake timeout",
                ));
            }
        }
        Ok(())
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        let this = &mut *self;
        match &mut this.inner {
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
            Transport::Plain {
                socket,
                sniffed,
                preface,
            } => {
                let before = buf.filled().len();
                let result = Pin::new(socket).poll_read(cx, buf);
                let Some(preface) = preface else {
                    return result;
                };
                if *sniffed < preface.bytes.len() && buf.filled().len() > before {
                    let new = &buf.filled()[before..];
                    let expected = &preface.bytes[*sniffed..];
                    let n = new.len().min(expected.len());
                    if new[..n] == expected[..n] {
                        *sniffed += n;
                    } else {
                        let cause = (preface.refusal)(*sniffed, new);
                        *sniffed = preface.bytes.len();
                        this.counters
                            .refused_protocol
                            .fetch_add(1, Ordering::Relaxed);
                        if let Some(more) =
                            this.counters.tls_log[crate::tls::refusal_kind(cause)].hit()
                        {
                            warn!(peer = %this.state.peer, cause, also_refused_since_last_line = more,
                                "refusing a connection that does not speak {}", preface.protocol);
                        }
                        this.state.killed.store(true, Ordering::Release);
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, cause)));
                    }
                }
                result
            }
        }
    }
}

impl Transport {
    fn pin_write(&mut self) -> Pin<&mut (dyn AsyncWrite + Send + Unpin)> {
        match self {
            Transport::Plain { socket, .. } => Pin::new(socket),
            Transport::Tls(tls) => Pin::new(tls.as_mut()),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain { socket, .. } => socket.is_write_vectored(),
            Transport::Tls(tls) => tls.is_write_vectored(),
        }
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        self.inner.pin_write().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        self.inner.pin_write().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        self.inner.pin_write().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.pin_write().poll_shutdown(cx)
    }
}

/// Settings of the accept loop.
#[derive(Clone, Debug)]
pub(crate) struct AcceptConfig {
    /// The front end's name in log lines ("grpc", "typha").
    pub(crate) listener: &'static str,
    /// What its clients send first, when the protocol has a fixed preface.
    pub(crate) preface: Option<Preface>,
    pub(crate) max_sockets: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) tcp_keepalive: Duration,
}

/// The soft open-file limit of this process, if known.
/// Raises the soft open-file limit to the hard one, as Go's runtime does for Typha: thousands of
/// agents need thousands of descriptors, and the usual soft default (1024) is far below what the
/// hard limit allows. Returns (old, new) when it changed anything.
pub fn raise_open_file_limit() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the pointed-to, properly aligned struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0
        || limit.rlim_cur >= limit.rlim_max
    {
        return None;
    }
    let old = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads one properly initialised rlimit; raising the soft limit up to the
    // hard one needs no privilege.
    (unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0).then_some((old, limit.rlim_cur))
}

fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the pointed-to, properly aligned struct.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// The socket cap: the configured one, or `max_connections` + 10 % + 64, and never more than the
/// open-file limit leaves after a reserve (an eighth, at least 32) for everything else the process
/// needs and after the `http_sockets` the health and metrics ports may hold — so that the health
/// endpoints still answer when agents take every socket they may.
pub(crate) fn socket_cap(
    configured: Option<usize>,
    max_connections: usize,
    http_sockets: usize,
) -> usize {
    let wanted = configured.unwrap_or_else(|| {
        max_connections
            .saturating_add(max_connections / 10)
            .saturating_add(64)
    });
    let Some(nofile) = open_file_limit() else {
        return wanted;
    };
    let usable = usize::try_from(nofile.saturating_sub((nofile / 8).max(32)))
        .unwrap_or(usize::MAX)
        .saturating_sub(http_sockets)
        .max(1);
    match configured {
        Some(n) if n > usable => {
            warn!(
                max_sockets = n,
                open_file_limit = nofile,
                usable,
                "--max-sockets is above what the open-file limit leaves; accept will back off at the limit"
            );
            n
        }
        Some(n) => n,
        None if wanted > usable => {
            warn!(
                wanted,
                open_file_limit = nofile,
                max_sockets = usable,
                "the open-file limit caps the number of gRPC sockets; raise it (ulimit -n) for more agents"
            );
            usable
        }
        None => wanted,
    }
}

/// True for `accept` errors that mean the process or system ran out of a resource (descriptors,
/// buffers, memory): retrying at once would spin.
fn is_resource_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Errors about one connection that is already gone: skip it and accept the next.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Accepts one socket, retrying connection errors and backing off (one log line per episode)
/// when the process cannot accept. Used by the gRPC and the health/metrics listeners.
pub(crate) async fn accept_with_backoff(
    listener: &TcpListener,
    what: &str,
) -> (TcpStream, SocketAddr) {
    let mut failures = 0u64;
    let mut delay = BACKOFF_MIN;
    loop {
        match listener.accept().await {
            Ok(accepted) => {
                if failures > 0 {
                    info!(listener = what, failures, "accepting connections again");
                }
                return accepted;
            }
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                if failures == 0 {
                    warn!(listener = what, error = %e, retry_in = ?delay,
                        "accept failed; backing off until it succeeds (one line per episode)");
                }
                failures += 1;
                // Out of descriptors, buffers or memory, or anything unknown: back off, never spin.
                if !is_resource_error(&e) {
                    delay = delay.max(BACKOFF_MAX / 4);
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// A front end's listener as a stream of accepted connections: capped, backed off, wrapped, and
/// with `tls` each connection's handshake done in its own task. Never yields an error.
pub(crate) fn incoming(
    listener: TcpListener,
    config: AcceptConfig,
    counters: Arc<Connections>,
    tls: Option<Arc<crate::tls::TlsReloader>>,
    mut stop_accepting: tokio::sync::watch::Receiver<bool>,
) -> impl Stream<Item = Result<GuardedIo, io::Error>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<GuardedIo, io::Error>>(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = accept_with_backoff(&listener, config.listener) => Some(accepted),
                _ = tx.closed() => return,
                stop = stop_accepting.wait_for(|stop| *stop) => {
                    drop(stop);
                    None
                }
            };
            let Some((socket, peer)) = accepted else {
                // Close the listening socket (new agents are refused by the kernel and go to
                // another replica), but keep the stream open: the front end keeps serving what
                // is connected until the drain is over.
                drop(listener);
                info!(
                    listener = config.listener,
                    "no longer accepting connections"
                );
                tx.closed().await;
                return;
            };
            let Some(permit) = take_socket_slot(&counters, &config, peer) else {
                drop(socket);
                continue;
            };
            tune(&socket, &config);
            let pending = Pending {
                peer,
                deadline: tokio::time::Instant::now() + config.handshake_timeout,
                counters: counters.clone(),
                permit,
            };
            match &tls {
                None => {
                    let io = pending.guard(Transport::Plain {
                        socket,
                        sniffed: 0,
                        preface: config.preface,
                    });
                    counters.track(&io.state);
                    if tx.send(Ok(io)).await.is_err() {
                        return;
                    }
                }
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
                    tokio::spawn(tls_handshake(acceptor, socket, pending, tx.clone()));
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A slot of the socket cap for a new socket from `peer`, or `None` (counted, and logged at most
/// once per [`LOG_EVERY`]) when every slot is taken.
fn take_socket_slot(
    counters: &Arc<Connections>,
    config: &AcceptConfig,
    peer: SocketAddr,
) -> Option<SocketPermit> {
    let taken = counters
        .sockets
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < config.max_sockets).then_some(n + 1)
        });
    if taken.is_ok() {
        return Some(SocketPermit(counters.clone()));
    }
    counters.refused_sockets.fetch_add(1, Ordering::Relaxed);
    if let Some(more) = counters.refused_log.hit() {
        warn!(peer = %peer, max_sockets = config.max_sockets,
            also_refused_since_last_line = more,
            "socket limit reached; closing new connections");
    }
    None
}

/// Socket options our own listener must set (a framework's would): no Nagle — it would hold
/// small frames back for up to a delayed-ACK timeout (~40 ms) — and TCP keepalive.
fn tune(socket: &TcpStream, config: &AcceptConfig) {
    let _ = socket.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new().with_time(config.tcp_keepalive);
    let _ = socket2::SockRef::from(socket).set_tcp_keepalive(&keepalive);
}

/// An accepted socket holding its slot, not yet handed to the front end (a TLS handshake may be
/// under way).
struct Pending {
    peer: SocketAddr,
    /// The handshake timeout's deadline, from the accept.
    deadline: tokio::time::Instant,
    counters: Arc<Connections>,
    permit: SocketPermit,
}

impl Pending {
    /// The connection as the front end gets it; the slot moves into it.
    fn guard(self, inner: Transport) -> GuardedIo {
        GuardedIo {
            inner,
            state: Arc::new(ConnState {
                peer: self.peer,
                handshake_done: AtomicBool::new(false),
                killed: AtomicBool::new(false),
                waker: AtomicWaker::new(),
                request_bytes: AtomicUsize::new(0),
            }),
            handshake: Some(Box::pin(tokio::time::sleep_until(self.deadline))),
            counters: self.counters,
            _permit: self.permit,
        }
    }
}

/// One connection's TLS handshake, in a task of its own within the handshake timeout: the
/// connection goes to the front end, or is refused with a rate-limited log line and its slot
/// given back.
async fn tls_handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    socket: TcpStream,
    pending: Pending,
    tx: tokio::sync::mpsc::Sender<Result<GuardedIo, io::Error>>,
) {
    let (peer, counters) = (pending.peer, pending.counters.clone());
    let reason = match tokio::time::timeout_at(pending.deadline, acceptor.accept(socket)).await {
        Ok(Ok(stream)) => {
            let io = pending.guard(Transport::Tls(Box::new(stream)));
            counters.track(&io.state);
            let _ = tx.send(Ok(io)).await;
            return;
        }
        Ok(Err(e)) => crate::tls::handshake_reason(&e),
        Err(_) => "no TLS handshake within the handshake timeout".to_string(),
    };
    counters.refused_tls.fetch_add(1, Ordering::Relaxed);
    if let Some(more) = counters.tls_log[crate::tls::refusal_kind(&reason)].hit() {
        warn!(peer = %peer, reason = %reason, also_refused_since_last_line = more,
            "refusing a connection: TLS handshake failed");
    }
}
