//! The federated services controller in process, for the tests that run it over real etcd
//! processes behind the mesh, the cache and an in-process server; and what those tests and the
//! file-datastore one read and write alike (RCCs, Services, ports, the address set of an Endpoints object).

use std::collections::BTreeSet;
use std::time::Duration;

use meshsync_etcd::EtcdConfig;
use meshsync_federation::controller::{self, ControllerConfig};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::TestServer;
use super::etcd::Cluster;

/// The controller running in process; [`RunningController::stop`] stops it and checks it ended
/// cleanly.
pub struct RunningController {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningController {
    /// Fires the stop signal and waits for the controller to return `Ok`.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        super::within("the controller to stop", self.task)
            .await
            .expect("controller task");
    }
}

/// Starts the controller in process, reading `server`'s `federation` subscription and writing to
/// the local cluster `a`.
pub fn start_controller(server: &TestServer, a: &Cluster) -> RunningController {
    let mut config = ControllerConfig::new(
        server.agent_config("federation"),
        EtcdConfig::new(vec![a.etcd.url()]),
    );
    config.debounce = Duration::from_millis(20);
    config.retry_delay = Duration::from_millis(200);
    start_controller_with(config)
}

/// Starts the controller in process with `config` as it is.
pub fn start_controller_with(config: ControllerConfig) -> RunningController {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let result = controller::run(config, async {
            let _ = stopped.await;
        })
        .await;
        assert!(result.is_ok(), "controller failed: {result:?}");
    });
    RunningController { stop, task }
}

/// Writes the RemoteClusterConfiguration `name` into the local cluster `a`, pointing at the etcd
/// of `remote`.
pub async fn add_remote(a: &Cluster, name: &str, remote: &Cluster) {
    let rcc = json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "RemoteClusterConfiguration",
        "metadata": {"name": name},
        "spec": {"datastoreType": "etcdv3", "etcdEndpoints": remote.etcd.url()}
    });
    a.put("RemoteClusterConfiguration", "", name, &rcc).await;
}

/// A Kubernetes Service `ns/name` with `labels`, `annotations` and `ports`.
pub fn service(
    ns: &str,
    name: &str,
    labels: Value,
    annotations: Value,
    ports: &[(&str, &str, i64)],
) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations},
        "spec": {"ports": ports_json(ports)}
    })
}

/// Service or Endpoints ports from `(name, protocol, port)`.
pub fn ports_json(ports: &[(&str, &str, i64)]) -> Vec<Value> {
    ports
        .iter()
        .map(|(n, p, port)| json!({"name": n, "protocol": p, "port": port}))
        .collect()
}

/// `(ip, targetRef.name)` of every address listed under any of `fields` (`"addresses"`,
/// `"notReadyAddresses"`) of an Endpoints object; an address without a targetRef has an empty
/// name.
pub fn address_set(eps: &Value, fields: &[&str]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for subset in eps["subsets"].as_array().into_iter().flatten() {
        for field in fields {
            for a in subset[*field].as_array().into_iter().flatten() {
                out.insert((
                    a["ip"].as_str().unwrap_or_default().to_string(),
                    a["targetRef"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                ));
            }
        }
    }
    out
}
