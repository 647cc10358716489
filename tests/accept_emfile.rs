//! The real `meshsync serve` at its open-file limit (set to 128 by the shell that starts it):
//! it must not spin on a failing `accept`, must keep answering `/liveness`, must log one line
//! rather than one per failure, and must recover once sockets close.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use meshsync_proto::{self as pb, sync_client::SyncClient};
use support::hostile::{cpu_time, serve_with};
use support::{http_get, within};

const NOFILE: u32 = 128;
const IDLE: usize = 200;
/// CPU the server may use while 200 idle sockets sit at its limit for `WINDOW` (a spinning
/// accept loop uses all of it).
const WINDOW: Duration = Duration::from_secs(2);
const MAX_CPU: Duration = Duration::from_millis(400);

fn open_idle(addr: SocketAddr) -> Vec<TcpStream> {
    (0..IDLE)
        .map(|_| TcpStream::connect(addr).expect("connect (the kernel queues it)"))
        .collect()
}

async fn liveness(addr: SocketAddr) -> u16 {
    match tokio::time::timeout(Duration::from_secs(5), http_get(addr, "/liveness")).await {
        Ok((code, _)) => code,
        Err(_) => panic!("/liveness did not answer within 5 s"),
    }
}

async fn status_call(grpc: SocketAddr) {
    within("a Status call after the sockets closed", async {
        loop {
            if let Ok(mut client) = SyncClient::connect(format!("http://{grpc}")).await
                && client.status(pb::StatusRequest::default()).await.is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

fn cpu_over_window(pid: u32) -> Duration {
    let before = cpu_time(pid);
    std::thread::sleep(WINDOW);
    cpu_time(pid) - before
}

#[tokio::test]
async fn at_the_open_file_limit_extra_sockets_are_shed_and_liveness_answers() {
    let mut s = serve_with(&["--handshake-timeout", "60"], Some(NOFILE));
    let pid = s.serve.child.0.id();
    let idle = open_idle(s.grpc);
    s.serve.wait_line("the socket-limit line", |l| {
        l.contains("socket limit reached")
    });
    let cpu = cpu_over_window(pid);
    assert!(
        cpu < MAX_CPU,
        "the server used {cpu:?} of CPU in {WINDOW:?} at its limit"
    );
    assert_eq!(liveness(s.health).await, 200);
    drop(idle);
    status_call(s.grpc).await;
    assert_eq!(liveness(s.health).await, 200);
}

#[tokio::test]
async fn accept_backs_off_when_out_of_file_descriptors_and_recovers() {
    // A socket cap above what the limit allows: accept itself fails with EMFILE.
    let mut s = serve_with(
        &["--handshake-timeout", "60", "--max-sockets", "1000"],
        Some(NOFILE),
    );
    let pid = s.serve.child.0.id();
    let idle = open_idle(s.grpc);
    s.serve.wait_line("the backoff line", |l| {
        l.contains("accept failed; backing off")
    });
    let cpu = cpu_over_window(pid);
    assert!(
        cpu < MAX_CPU,
        "the server used {cpu:?} of CPU in {WINDOW:?} at EMFILE"
    );
    drop(idle);
    status_call(s.grpc).await;
    assert_eq!(liveness(s.health).await, 200);
    s.serve.wait_line("the recovery line", |l| {
        l.contains("accepting connections again")
    });
    let backoff_lines = s.serve.count(|l| l.contains("accept failed"));
    assert!(
        backoff_lines <= 2,
        "{backoff_lines} backoff lines (one per episode and listener expected):\n{}",
        s.serve.lines.join("\n")
    );
}
