//! `meshsync federate --datastore URL --server URL`: the federated services controller
//! (Calico Enterprise's, reimplemented). Subscribes to the server with the `federation`
//! subscription and keeps the federated Services' `Endpoints` and EndpointSlices in the local
//! datastore: etcd (compare-and-swap), for `file:DIR` JSON files under `DIR/generated/`, or for `kubernetes[:KUBECONFIG]` the API
//! (server-side apply as the field manager `meshsync-federation`). See `meshsync_federation::controller`.
//! `meshsync serve --federation` runs the same controller in-process ([`controller_datastore`]).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use meshsync_agent::AgentConfig;
use meshsync_datastore::{DatastoreSpec, DatastoreUrl};
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

/// Where the controller writes, for the local datastore the source reads: the same place,
/// described for a writer (see [`LocalDatastore`] for why that is its own type).
pub fn controller_datastore(datastore: &DatastoreSpec) -> LocalDatastore {
    match datastore {
        DatastoreSpec::Etcd {
            etcd,
            tls_files,
            prefix,
        } => LocalDatastore::Etcd {
            config: etcd.clone(),
            prefix: prefix.clone(),
            tls_files: tls_files.clone(),
        },
        DatastoreSpec::File { dir } => LocalDatastore::Files { dir: dir.clone() },
        DatastoreSpec::Kubernetes { access } => {
            // The kubeconfig is read again at each connection attempt, as the source does.
            let access = access.clone();
            LocalDatastore::Kubernetes {
                connect: KubeConnect::new(move || {
                    let access = access.clone();
                    async move { access.client().await.map_err(Into::into) }
                }),
            }
        }
    }
}

pub async fn run(args: FederateArgs) -> anyhow::Result<ExitCode> {
    let datastore = controller_datastore(&args.datastore.spec(|e| args.etcd.etcd_config(e))?);
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
