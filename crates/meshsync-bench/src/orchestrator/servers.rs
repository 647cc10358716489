//! The server side of each system, started on a free loopback port next to its etcd: meshsync
//! (`meshsync serve` on etcd, waited for until in sync), `etcd grpc-proxy`, the floor, or nothing
//! (the agents watch etcd itself).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use super::RunArgs;
use crate::model::System;
use crate::procs::{self, EtcdProc, Proc};

pub(super) async fn start_server(
    system: System,
    etcd: &EtcdProc,
    args: &RunArgs,
    meshsync_bin: &Path,
    logs: &Path,
) -> anyhow::Result<(Option<Proc>, String)> {
    let port = procs::free_port()?;
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    match system {
        System::Etcd => Ok((None, etcd.url())),
        System::Meshsync => {
            let mut cmd = Command::new(meshsync_bin);
            cmd.arg("serve")
                .arg("--datastore")
                .arg(format!("etcd://127.0.0.1:{}", etcd.port))
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--no-health")
                .arg("--log-level")
                .arg("warn")
                .arg("--max-connections")
                .arg((args.agents + 100).to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            let proc = Proc::spawn("meshsync", cmd, &logs.join("meshsync.log"))?;
            let url = format!("http://{addr}");
            wait_meshsync_in_sync(&url, args.keys).await?;
            Ok((Some(proc), url))
        }
        System::GrpcProxy => {
            let mut cmd = Command::new(&args.etcd_bin);
            cmd.arg("grpc-proxy")
                .arg("start")
                .arg(format!("--endpoints=127.0.0.1:{}", etcd.port))
                .arg(format!("--listen-addr={addr}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            let proc = Proc::spawn("grpc-proxy", cmd, &logs.join("grpc-proxy.log"))?;
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

pub(super) async fn wait_meshsync_in_sync(url: &str, keys: usize) -> anyhow::Result<()> {
    use meshsync_proto::sync_client::SyncClient;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(mut client) = SyncClient::connect(url.to_string()).await
            && let Ok(resp) = client.status(meshsync_proto::StatusRequest {}).await
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
