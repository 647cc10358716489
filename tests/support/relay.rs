//! A TCP relay between a client and a server that a test can cut, slow down, stall and restore:
//! the most faithful way to take a live connection away (a dead link, a firewall, a congested or
//! blackholed path) while both ends keep running. Test code only.
//!
//! [`Relay::cut`] closes every relayed connection and refuses new ones (accepted, then closed at
//! once); [`Relay::delay`] holds every chunk for a while before forwarding it; [`Relay::stall`]
//! stops forwarding without closing anything (a blackhole: the bytes wait, the sockets stay
//! open); [`Relay::restore`] undoes all three.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

pub struct Relay {
    pub port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    cut: AtomicBool,
    delay_ms: AtomicU64,
    /// `true` while stalled; pumps wait for `false` before forwarding.
    stalled: watch::Sender<bool>,
    live: Mutex<Vec<AbortHandle>>,
}

/// Copies one direction chunk by chunk, honouring delay and stall; closes the write half at EOF.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shared: Arc<Shared>,
) {
    let mut buf = vec![0u8; 64 << 10];
    let mut stalled = shared.stalled.subscribe();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = shared.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if stalled.wait_for(|s| !*s).await.is_err() {
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Relay {
    /// Relays `127.0.0.1:<port>` to `target`.
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("relay addr").port();
        let shared = Arc::new(Shared {
            cut: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
            stalled: watch::Sender::new(false),
            live: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if s.cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let shared = s.clone();
                let handle = tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    // Both directions in this one task, so that a cut (abort) closes both.
                    tokio::join!(
                        pump(client_read, server_write, shared.clone()),
                        pump(server_read, client_write, shared)
                    );
                });
                let mut live = s.live.lock().unwrap_or_else(|p| p.into_inner());
                live.retain(|h| !h.is_finished());
                live.push(handle.abort_handle());
            }
        });
        Relay { port, shared, task }
    }

    /// Closes every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        for h in self
            .shared
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            h.abort();
        }
    }

    /// Holds every chunk `delay` before forwarding it (both directions).
    pub fn delay(&self, delay: Duration) {
        self.shared
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Stops forwarding without closing anything.
    pub fn stall(&self) {
        self.shared.stalled.send_replace(true);
    }

    /// Relays again, at full speed.
    pub fn restore(&self) {
        self.shared.delay_ms.store(0, Ordering::Relaxed);
        self.shared.stalled.send_replace(false);
        self.shared.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}
