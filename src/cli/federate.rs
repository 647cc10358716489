//! `meshsync federate --datastore URL --server URL`: the federated services controller
//! (calico-model.md §6). Subscribes to the server with the `federation` subscription and keeps the
//! federated Services' `Endpoints` and EndpointSlices in the local datastore: etcd (compare-and-swap)
//! or, for `file:DIR`, JSON files under `DIR/generated/`. See `meshsync_federation::controller`.
//! `meshsync serve --federation` runs the same controller in-process ([`controller_datastore`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use meshsync_agent::AgentConfig;
use meshsync_datastore::DatastoreUrl;
use meshsync_etcd::{EtcdConfig, EtcdTls};
use meshsync_federation::controller::{self, ControllerConfig, LocalDatastore};
use tracing::info;

#[derive(Args, Debug)]
pub struct FederateArgs {
    /// The local cluster's datastore, written to: `etcd://host:port[,host:port…][?prefix=/calico]`
    /// or `file:DIR` (objects written as files under `DIR/generated/`).
    #[arg(long, env = "MESHSYNC_DATASTORE")]
    datastore: DatastoreUrl,
    /// Server URL(s), e.g. http://127.0.0.1:5473; repeat or comma-separate for failover.
    #[arg(long, required = true, value_delimiter = ',', env = "MESHSYNC_SERVER")]
    server: Vec<String>,
    /// etcd: CA bundle (PEM) that signed the etcd servers' certificates; enables TLS.
    #[arg(long, env = "MESHSYNC_ETCD_CA_FILE")]
    etcd_ca_file: Option<PathBuf>,
    /// etcd: client certificate (PEM); enables TLS.
    #[arg(long, env = "MESHSYNC_ETCD_CERT_FILE")]
    etcd_cert_file: Option<PathBuf>,
    /// etcd: client key (PEM).
    #[arg(long, env = "MESHSYNC_ETCD_KEY_FILE")]
    etcd_key_file: Option<PathBuf>,
    /// etcd: user name (with --etcd-password or MESHSYNC_ETCD_PASSWORD).
    #[arg(long, env = "MESHSYNC_ETCD_USERNAME")]
    etcd_username: Option<String>,
    /// etcd: password. Prefer the MESHSYNC_ETCD_PASSWORD variable over the flag.
    #[arg(long, env = "MESHSYNC_ETCD_PASSWORD", hide_env_values = true)]
    etcd_password: Option<String>,
    /// Recalculate this many milliseconds after the first update of a batch.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 50,
        env = "MESHSYNC_FEDERATION_DEBOUNCE_MS"
    )]
    debounce_ms: u64,
}

fn read_pem(path: &Option<PathBuf>) -> anyhow::Result<Option<Vec<u8>>> {
    path.as_ref()
        .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
        .transpose()
}

/// etcd credentials and TLS files, as the `serve` and `federate` flags give them.
pub struct EtcdCredentials<'a> {
    pub ca_file: &'a Option<PathBuf>,
    pub cert_file: &'a Option<PathBuf>,
    pub key_file: &'a Option<PathBuf>,
    pub username: &'a Option<String>,
    pub password: &'a Option<String>,
}

/// Where the controller writes, for a local datastore URL.
pub fn controller_datastore(
    url: &DatastoreUrl,
    creds: EtcdCredentials<'_>,
) -> anyhow::Result<LocalDatastore> {
    let (endpoints, prefix) = match url {
        DatastoreUrl::Etcd { endpoints, prefix } => (endpoints, prefix),
        DatastoreUrl::File(dir) => return Ok(LocalDatastore::Files { dir: dir.clone() }),
    };
    anyhow::ensure!(
        creds.cert_file.is_some() == creds.key_file.is_some(),
        "--etcd-cert-file and --etcd-key-file go together"
    );
    let tls = EtcdTls {
        ca_pem: read_pem(creds.ca_file)?,
        cert_pem: read_pem(creds.cert_file)?,
        key_pem: read_pem(creds.key_file)?,
    };
    let uses_tls = tls.ca_pem.is_some() || tls.cert_pem.is_some();
    let scheme = if uses_tls { "https" } else { "http" };
    let mut etcd = EtcdConfig::new(
        endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect(),
    );
    etcd.username = creds.username.clone();
    etcd.password = creds.password.clone();
    if uses_tls {
        etcd.tls = Some(tls);
    }
    Ok(LocalDatastore::Etcd {
        config: etcd,
        prefix: prefix.clone(),
    })
}

pub async fn run(args: FederateArgs) -> anyhow::Result<ExitCode> {
    let datastore = controller_datastore(
        &args.datastore,
        EtcdCredentials {
            ca_file: &args.etcd_ca_file,
            cert_file: &args.etcd_cert_file,
            key_file: &args.etcd_key_file,
            username: &args.etcd_username,
            password: &args.etcd_password,
        },
    )?;
    let mut agent = AgentConfig::new(String::new());
    agent.servers = args.server.clone();
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
