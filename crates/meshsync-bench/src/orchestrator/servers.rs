//! The server side of each system, started on a free loopback port next to its etcd: meshsync
//! (`meshsync serve` on etcd, waited for until in sync; for `meshsync-baseline` the same command
//! of the `--baseline-bin` build; for `meshsync-typha` the same command with `--typha-listen` on
//! that port, gRPC moved to another), Calico's `calico-typha` (on etcd, waited for until its caches
//! are in sync), `etcd grpc-proxy`, the floor, or nothing (the agents watch etcd itself).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::RunArgs;
use super::peers::Bins;
use crate::model::System;
use crate::procs::{self, EtcdProc, Proc};

/// Calico's Typha, built by `scripts/peers.sh`.
pub(super) const TYPHA_BIN: &str = "calico-typha";

pub(super) async fn start_server(
    system: System,
    etcd: &EtcdProc,
    args: &RunArgs,
    bins: &Bins,
    logs: &Path,
) -> anyhow::Result<(Option<Proc>, String)> {
    start_server_at(system, etcd, args, bins, logs, procs::free_port()?, "").await
}

/// [`start_server`] on a given port, its log file named with `tag` (a restart, a replica).
pub(super) async fn start_server_at(
    system: System,
    etcd: &EtcdProc,
    args: &RunArgs,
    bins: &Bins,
    logs: &Path,
    port: u16,
    tag: &str,
) -> anyhow::Result<(Option<Proc>, String)> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    match system {
        System::Etcd => Ok((None, etcd.url())),
        System::Meshsync
        | System::MeshsyncZstd
        | System::MeshsyncFull
        | System::MeshsyncBaseline
        | System::MeshsyncTypha => {
            // meshsync-typha: the clients' port (`port`) is the Typha port; gRPC, which the
            // in-sync wait asks, goes on a port of its own.
            let (grpc, typha) = if system == System::MeshsyncTypha {
                (([127, 0, 0, 1], other_free_port(port)?).into(), Some(addr))
            } else {
                (addr, None)
            };
            let mut cmd = Command::new(bins.meshsync(system)?);
            cmd.arg("serve")
                .arg("--datastore")
                .arg(format!("etcd://127.0.0.1:{}", etcd.port))
                .arg("--listen")
                .arg(grpc.to_string())
                .arg("--no-health")
                .arg("--log-level")
                .arg("warn")
                .arg("--max-connections")
                .arg((args.agents + 100).to_string());
            if let Some(timeout) = args.meshsync_write_timeout() {
                cmd.arg("--write-timeout").arg(timeout.to_string());
            }
            if let Some(typha) = typha {
                cmd.arg("--typha-listen").arg(typha.to_string());
            }
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
            // The log is named for the system: the meshsync systems of a round share `logs`.
            let log = logs.join(format!("{}{tag}.log", system.name()));
            let proc = Proc::spawn("meshsync", cmd, &log)?;
            let url = format!("http://{grpc}");
            wait_meshsync_in_sync(&url, args.keys).await?;
            // The Typha port is bound with the gRPC one, before gRPC answers: no wait (and no
            // probing connection in the server's log). Typha's clients take host:port.
            let target = typha.map_or(url, |typha| typha.to_string());
            Ok((Some(proc), target))
        }
        System::Typha => {
            let health: SocketAddr = ([127, 0, 0, 1], other_free_port(port)?).into();
            let mut cmd = Command::new(bins.peer(TYPHA_BIN)?);
            typha_command(&mut cmd, etcd, addr, health, args.agents, logs);
            let log = logs.join("calico-typha.log");
            // Typha logs on stdout.
            let mut proc = Proc::spawn_logging_stdout("typha", cmd, &log)?;
            wait_typha_ready(&mut proc, health, &log, Duration::from_secs(120)).await?;
            Ok((Some(proc), addr.to_string()))
        }
        System::GrpcProxy => {
            let mut cmd = Command::new(&args.etcd_bin);
            cmd.arg("grpc-proxy")
                .arg("start")
                .arg(format!("--endpoints=127.0.0.1:{}", etcd.port))
                .arg(format!("--listen-addr={addr}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            let proc = Proc::spawn(
                "grpc-proxy",
                cmd,
                &logs.join(format!("grpc-proxy{tag}.log")),
            )?;
            procs::wait_port(addr, Duration::from_secs(30)).await?;
            Ok((Some(proc), format!("http://{addr}")))
        }
        System::Floor => {
            let mut cmd = Command::new(std::env::current_exe()?);
            cmd.arg("floor")
                .arg("--etcd")
                .arg(etcd.url())
                .arg("--listen")
                .arg(addr.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::null());
            let proc = Proc::spawn("floor", cmd, &logs.join("floor.log"))?;
            procs::wait_port(addr, Duration::from_secs(120)).await?;
            Ok((Some(proc), addr.to_string()))
        }
    }
}

/// A free loopback port other than `taken` (a second port of the same server).
fn other_free_port(taken: u16) -> anyhow::Result<u16> {
    loop {
        let port = procs::free_port()?;
        if port != taken {
            return Ok(port);
        }
    }
}

pub(super) async fn wait_meshsync_in_sync(url: &str, keys: usize) -> anyhow::Result<()> {
    use meshsync_proto::sync_client::SyncClient;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(mut client) = SyncClient::connect(url.to_string()).await
            && let Ok(resp) = client
                .status(meshsync_proto::StatusRequest::default())
                .await
        {
            let status = resp.into_inner().status.unwrap_or_default();
            let total: u64 = status.clusters.iter().map(|c| c.keys).sum();
            if status.overall() == meshsync_proto::SyncState::InSync && total as usize >= keys {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "meshsync did not reach in-sync with {keys} keys"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Typha's configuration, all through its environment (`TYPHA_<PARAM>`; any `TYPHA_*` variable
/// of ours is removed first): the etcdv3 datastore at `etcd` (no Kubernetes API involved), the
/// client port on loopback, readiness on its own loopback port, warnings and errors on stdout (its
/// screen log; `TYPHA_LOGSEVERITYSCREEN=INFO` in our environment shows more) and no log file or
/// syslog, and connection limits above the number of agents (with rebalancing off, the upper
/// limit is the one that applies).
fn typha_command(
    cmd: &mut Command,
    etcd: &EtcdProc,
    listen: SocketAddr,
    health: SocketAddr,
    agents: usize,
    logs: &Path,
) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TYPHA_") {
            cmd.env_remove(name);
        }
    }
    let screen = std::env::var("TYPHA_LOGSEVERITYSCREEN").unwrap_or_else(|_| "WARNING".into());
    let limit = (agents + 100).to_string();
    let upper = (agents + 100).max(10_000).to_string();
    cmd.env("TYPHA_DATASTORETYPE", "etcdv3")
        .env("TYPHA_ETCDENDPOINTS", etcd.url())
        .env("TYPHA_SERVERHOST", listen.ip().to_string())
        .env("TYPHA_SERVERPORT", listen.port().to_string())
        .env("TYPHA_HEALTHENABLED", "true")
        .env("TYPHA_HEALTHHOST", health.ip().to_string())
        .env("TYPHA_HEALTHPORT", health.port().to_string())
        .env("TYPHA_PROMETHEUSMETRICSENABLED", "false")
        .env("TYPHA_LOGSEVERITYSCREEN", screen)
        .env("TYPHA_LOGFILEPATH", "none")
        .env("TYPHA_LOGSEVERITYFILE", "none")
        .env("TYPHA_LOGSEVERITYSYS", "none")
        .env("TYPHA_CONNECTIONREBALANCINGMODE", "none")
        .env("TYPHA_MAXCONNECTIONSLOWERLIMIT", &limit)
        .env("TYPHA_MAXCONNECTIONSUPPERLIMIT", &upper)
        // An absent file, so a stray /etc/calico/typha.cfg cannot change the run.
        .arg("--config-file")
        .arg(logs.join("calico-typha.cfg.absent"))
        .stdin(Stdio::null());
}

/// Waits until Typha's `/readiness` answers 200, which it does once every syncer's cache is in
/// sync with the datastore (the keys were preloaded, so then it holds them all).
async fn wait_typha_ready(
    proc: &mut Proc,
    health: SocketAddr,
    log: &Path,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Err(e) = proc.check_alive() {
            anyhow::bail!(
                "{e}; the end of {}:\n{}",
                log.display(),
                procs::log_tail(log, 10)
            );
        }
        if http_status(health, "/readiness").await == Some(200) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "calico-typha was not ready after {timeout:?}; the end of {}:\n{}",
            log.display(),
            procs::log_tail(log, 10)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The status code of a plain HTTP GET of `path` on `addr` (`None` when there is no answer).
async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        status_code(&response)
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
}

/// The code in an HTTP response's status line.
fn status_code(response: &[u8]) -> Option<u16> {
    let line = response.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    words.next().filter(|w| w.starts_with("HTTP/"))?;
    words.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::status_code;

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.0 200 OK\r\nA: b\r\n\r\nok"), Some(200));
        assert_eq!(
            status_code(b"HTTP/1.1 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_code(b"SSH-2.0\r\n"), None);
        assert_eq!(status_code(b""), None);
    }
}
