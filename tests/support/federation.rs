//! The federated services controller in process, for the tests that run it over real etcd
//! processes behind the mesh, the cache and an in-process server.

use std::time::Duration;

use meshsync_etcd::EtcdConfig;
use meshsync_federation::controller::{self, ControllerConfig};
use tokio::sync::oneshot;

use super::TestServer;
use super::etcd::Cluster;

/// Starts the controller in process, reading `server`'s `federation` subscription and writing to
/// the local cluster `a`; firing (or dropping) the sender stops it.
pub fn start_controller(
    server: &TestServer,
    a: &Cluster,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let mut config = ControllerConfig::new(
        server.agent_config("federation"),
        EtcdConfig::new(vec![a.etcd.url()]),
    );
    config.debounce = Duration::from_millis(20);
    config.retry_delay = Duration::from_millis(200);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let result = controller::run(config, async {
            let _ = stopped.await;
        })
        .await;
        assert!(result.is_ok(), "controller failed: {result:?}");
    });
    (stop, task)
}
