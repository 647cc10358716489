//! `meshsync federate --datastore URL --server URL`: the federated services controller
//! (calico-model.md §6). Subscribes to the server with the `federation` subscription and keeps the
//! federated Services' `Endpoints` and EndpointSlices in the local datastore: etcd (compare-and-swap),
//! for `file:DIR` JSON files under `DIR/generated/`, or for `kubernetes[:KUBECONFIG]` the API
//! (server-side apply as the field manager `meshsync-federation`). See `meshsync_federation::controller`.
//! `meshsync serve --federation` runs the same controller in-process ([`controller_datastore`]).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use meshsync_agent::AgentConfig;
use meshsync_datastore::DatastoreUrl;
use meshsync_datastore::kubernetes::KubeAccess;
use meshsync_federation::controller::{self, ControllerConfig, KubeConnect, LocalDatastore};
use tracing::info;

use super::etcd_flags::EtcdFlags;

#[derive(Args, Debug)]
pub struct FederateArgs {
    /// The local cluster's datastore, written to: `etcd://host:port[,host:port…][?prefix=/calico]`,
    /// `file:DIR` (objects written as files under `DIR/generated/`), or `kubernetes[:KUBECONFIG]`
    /// (the API, with server-side apply; that kubeconfig, else `$KUBECONFIG`/`~/.kube/config`,
    /// else in-cluster).
    #[arg(long, env = "MESHSYNC_DATASTORE")]
    datastore: DatastoreUrl,
    /// Server URL(s), e.g. http://127.0.0.1:5473; repeat or comma-separate for failover.
    #[arg(long, required = true, value_delimiter = ',', env = "MESHSYNC_SERVER")]
    server: Vec<String>,
    #[command(flatten)]
    tls: super::tls_flags::ClientTlsFlags,
    #[command(flatten)]
    etcd: EtcdFlags,
    /// Recalculate this many milliseconds after the first update of a batch.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 50,
        env = "MESHSYNC_FEDERATION_DEBOUNCE_MS"
    )]
    debounce_ms: u64,
}

/// Where the controller writes, for a local datastore URL.
pub fn controller_datastore(
    url: &DatastoreUrl,
    etcd: &EtcdFlags,
) -> anyhow::Result<LocalDatastore> {
    match url {
        DatastoreUrl::Etcd { endpoints, prefix } => {
            let (config, tls_files) = etcd.etcd_config(endpoints)?;
            Ok(LocalDatastore::Etcd {
                config,
                prefix: prefix.clone(),
                tls_files,
            })
        }
        DatastoreUrl::File(dir) => Ok(LocalDatastore::Files { dir: dir.clone() }),
        DatastoreUrl::Kubernetes { kubeconfig } => {
            // The kubeconfig is read again at each connection attempt, as the source does.
            let access = KubeAccess::Kubeconfig(kubeconfig.clone());
            Ok(LocalDatastore::Kubernetes {
                connect: KubeConnect::new(move || {
                    let access = access.clone();
                    async move { access.client().await.map_err(Into::into) }
                }),
            })
        }
    }
}

pub async fn run(args: FederateArgs) -> anyhow::Result<ExitCode> {
    let datastore = controller_datastore(&args.datastore, &args.etcd)?;
    let mut agent = AgentConfig::new(String::new());
    agent.servers = args.server.clone();
    agent.tls = args.tls.client_tls()?;
    agent.node_name = "meshsync-federation".into();
    let mut config = ControllerConfig::with_datastore(agent, datastore);
    config.debounce = Duration::from_millis(args.debounce_ms);
    info!(servers = ?args.server, datastore = ?args.datastore,
        "starting the federated services controller");
    match controller::run(config, super::shutdown_signal()).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("meshsync federate: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
