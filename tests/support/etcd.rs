//! Real etcd processes for tests: one per simulated cluster, on free loopback ports, in a
//! temporary directory, stopped (killed) when dropped, and killed with the test binary in any case
//! ([`super::process::spawn_tied`]). Needs the `etcd` binary (Debian's `etcd-server`;
//! `scripts/test.sh` installs it).
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::future::Future;

use bytes::Bytes;
use meshsync_datastore::layout::key_path;
use meshsync_etcd::{EtcdClient, EtcdConfig, pb};
use serde_json::Value;

/// Longest wait of [`wait_for`].
pub const LONG: Duration = Duration::from_secs(30);

/// A running etcd.
pub struct Etcd {
    pub name: String,
    pub client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Etcd {
    /// Starts a fresh single-member etcd and waits until it answers.
    pub async fn start(name: &str) -> Etcd {
        let mut etcd = Etcd {
            name: name.to_string(),
            client_port: free_port(),
            peer_port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        etcd.spawn().await;
        etcd
    }

    /// The temporary folder (data, log).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// `127.0.0.1:PORT`, for `etcd://` datastore URLs.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    async fn spawn(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).expect("log file");
        let mut cmd = Command::new("etcd");
        cmd.arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("{}={peer}", self.name))
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = super::process::spawn_tied(cmd)
            .expect("etcd must be installed (Debian package etcd-server); run scripts/test.sh");
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut config = EtcdConfig::new(vec![self.url()]);
            config.connect_timeout = Duration::from_millis(500);
            config.request_timeout = Duration::from_secs(2);
            if let Ok(client) = EtcdClient::connect(&config).await
                && client.list_prefix(b"/health-probe/", 0, 1).await.is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd {} did not become ready; log: {}",
                self.name,
                std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client for writing test data.
    pub async fn client(&self) -> EtcdClient {
        EtcdClient::connect(&EtcdConfig::new(vec![self.url()]))
            .await
            .expect("connect to test etcd")
    }

    /// The process id of the running etcd (for signals such as SIGSTOP).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process (data stays on disk).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports with the same data.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A simulated cluster for tests that write Kubernetes/Calico objects and read them back.
pub struct Cluster {
    pub etcd: Etcd,
    pub client: EtcdClient,
}

impl Cluster {
    pub async fn start(name: &str) -> Cluster {
        let etcd = Etcd::start(name).await;
        let client = etcd.client().await;
        Cluster { etcd, client }
    }

    pub fn key(kind: &str, ns: &str, name: &str) -> String {
        key_path("/calico", kind, ns, name).expect("key layout")
    }

    pub async fn put(&self, kind: &str, ns: &str, name: &str, value: &Value) {
        let key = Self::key(kind, ns, name);
        self.client
            .put(key.clone(), serde_json::to_vec(value).expect("JSON"))
            .await
            .unwrap_or_else(|e| panic!("etcd put {key}: {e}"));
    }

    pub async fn delete(&self, kind: &str, ns: &str, name: &str) {
        let key = Self::key(kind, ns, name);
        self.client
            .delete(key.clone())
            .await
            .unwrap_or_else(|e| panic!("etcd delete {key}: {e}"));
    }

    /// The object and its mod_revision.
    pub async fn get(&self, kind: &str, ns: &str, name: &str) -> Option<(Value, i64)> {
        let key = Self::key(kind, ns, name);
        let response = self
            .client
            .range(pb::RangeRequest {
                key: Bytes::from(key.clone()),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("etcd get {key}: {e}"));
        response.kvs.first().map(|kv| {
            (
                serde_json::from_slice(&kv.value).expect("stored JSON"),
                kv.mod_revision,
            )
        })
    }

    /// Polls the object until it exists and `matches` holds; returns it with its mod_revision.
    /// Fails after `LONG` with `what` and the last version seen.
    pub async fn wait_object(
        &self,
        kind: &str,
        ns: &str,
        name: &str,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> (Value, i64) {
        let deadline = Instant::now() + LONG;
        loop {
            let got = self.get(kind, ns, name).await;
            if let Some((value, rev)) = &got
                && matches(value)
            {
                return (value.clone(), *rev);
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {LONG:?} waiting for {what}:\nlast {got:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Polls `check` until it returns `Some`, failing after `LONG` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + LONG;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {LONG:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
