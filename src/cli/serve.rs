//! `meshsync serve`: one source per datastore → the snapshot cache → the gRPC server.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use meshsync_cache::{CacheConfig, SnapshotCache};
use meshsync_datastore::{DatastoreUrl, LOCAL_CLUSTER, file};
use meshsync_server::{BoundServer, ServerConfig};
use tracing::info;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The local cluster's datastore: `file:DIR` (a directory of YAML/JSON manifests, watched live).
    #[arg(long, env = "MESHSYNC_DATASTORE")]
    datastore: DatastoreUrl,
    /// gRPC listen address (Typha's port).
    #[arg(long, default_value = "0.0.0.0:5473", env = "MESHSYNC_LISTEN")]
    listen: SocketAddr,
    /// Health endpoints (`/liveness`, `/readiness`) listen address.
    #[arg(long, default_value = "0.0.0.0:9098", env = "MESHSYNC_HEALTH_LISTEN")]
    health_listen: SocketAddr,
    /// Disable the health endpoints.
    #[arg(long, env = "MESHSYNC_NO_HEALTH")]
    no_health: bool,
    /// Refuse subscriptions above this many connected agents.
    #[arg(long, default_value_t = 20_000, env = "MESHSYNC_MAX_CONNECTIONS")]
    max_connections: usize,
    /// Objects larger than this many bytes are refused (logged, previous value kept).
    #[arg(long, default_value_t = 1 << 20, env = "MESHSYNC_MAX_VALUE_BYTES")]
    max_value_bytes: usize,
    /// Most source events applied as one batch.
    #[arg(long, default_value_t = 1000, env = "MESHSYNC_MAX_BATCH")]
    max_batch: usize,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.max_connections > 0,
        "--max-connections must be at least 1"
    );
    anyhow::ensure!(args.max_batch > 0, "--max-batch must be at least 1");
    let source = match &args.datastore {
        DatastoreUrl::File(dir) => {
            let mut config = file::FileSourceConfig::new(dir.clone(), LOCAL_CLUSTER.into());
            config.max_value_bytes = args.max_value_bytes;
            info!(datastore = %dir.display(), "starting the file datastore");
            file::watch(config).with_context(|| format!("file datastore {}", dir.display()))?
        }
    };
    let cache = SnapshotCache::spawn(
        source,
        CacheConfig {
            max_batch: args.max_batch,
            max_value_bytes: args.max_value_bytes,
            ..CacheConfig::default()
        },
    );
    let server = BoundServer::bind(
        cache,
        ServerConfig {
            listen: args.listen,
            health_listen: (!args.no_health).then_some(args.health_listen),
            max_connections: args.max_connections,
            ..ServerConfig::default()
        },
    )
    .await?;
    info!(grpc = %server.grpc_addr()?, health = ?server.health_addr(), version = meshsync_server::SERVER_VERSION,
        "meshsync serving");
    server.serve(super::shutdown_signal()).await?;
    info!("meshsync stopped");
    Ok(ExitCode::SUCCESS)
}
