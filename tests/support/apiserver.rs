//! A real Kubernetes API server for tests: `kube-apiserver` (built by `scripts/peers.sh` from the
//! pinned `peers/kubernetes` module) on a free loopback port, over its own real etcd (its own
//! `--etcd-prefix`), with TLS certificates generated here, an admin identity (`O=system:masters`),
//! RBAC authorisation, service-account signing keys and a kubeconfig, and with Calico's real
//! `crd.projectcalico.org/v1` CRDs plus meshsync's RemoteClusterConfiguration CRD installed and
//! Established.
//!
//! [`shared`] starts one API server per test binary (later callers reuse it); [`ApiServer::start`]
//! starts a private one, stopped when dropped. Either way the processes die with the test binary
//! ([`super::process`]). Tests talk to it with the machine's `kubectl` ([`ApiServer::kubectl`]).
//!
//! The binary comes from `$MESHSYNC_PEERS_BIN` (`scripts/test.sh` sets it), or else from running
//! `scripts/peers.sh` once and taking its last line.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rcgen::{ExtendedKeyUsagePurpose, Issuer, KeyPair};

use super::certs::{new_ca, new_leaf};
use super::etcd::Etcd;

/// Longest wait for `/readyz` (a first start on a loaded 2-core machine takes seconds).
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for the CRDs to be Established.
pub const CRD_TIMEOUT: Duration = Duration::from_secs(60);

/// The CRD files installed into every API server, relative to the repository.
pub const CRD_FILES: &[&str] = &[
    // Calico's own CRDs, unchanged (tests/data/crds/README.md).
    "tests/data/crds/calico-crd.projectcalico.org-v1.yaml",
    // RemoteClusterConfiguration: Calico Open Source has none; this one is meshsync's.
    "deploy/crds/remoteclusterconfigurations.yaml",
];

/// Calico's native `projectcalico.org/v3` CRDs (its v3 CRD mode) and meshsync's RCC CRD.
pub const V3_CRD_FILES: &[&str] = &[
    "tests/data/crds/calico-projectcalico.org-v3.yaml",
    "deploy/crds/remoteclusterconfigurations.yaml",
];

/// The service-account issuer the API server signs tokens as.
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The folder with the built peers: `$MESHSYNC_PEERS_BIN`, or the last line `scripts/peers.sh`
/// prints (run once per test binary; its progress goes to this process's stderr).
pub fn peers_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(dir) = std::env::var_os("MESHSYNC_PEERS_BIN").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        eprintln!(
            "MESHSYNC_PEERS_BIN is not set: running scripts/peers.sh (builds the peers once)"
        );
        let out = Command::new(repo().join("scripts/peers.sh"))
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/peers.sh");
        assert!(
            out.status.success(),
            "scripts/peers.sh failed ({}); it needs Go >= 1.26 and the Go module proxy",
            out.status
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .expect("scripts/peers.sh prints the bin folder as its last line");
        PathBuf::from(last.trim())
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// How long the start took, logged to stderr.
#[derive(Clone, Copy, Debug)]
pub struct Startup {
    /// Starting its etcd until that answered.
    pub etcd: Duration,
    /// Spawning kube-apiserver until `/readyz` said ok.
    pub ready: Duration,
    /// Applying the CRDs until all were Established.
    pub crds: Duration,
}

/// File paths of what [`ApiServer`] generated.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The CA that signed the serving certificate (what clients trust).
    pub server_ca: PathBuf,
    /// The CA the API server trusts for client certificates.
    pub client_ca: PathBuf,
    /// The admin identity: `CN=meshsync-test-admin, O=system:masters`.
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    /// A kubeconfig for the admin identity.
    pub kubeconfig: PathBuf,
}

/// A running kube-apiserver with its own etcd.
pub struct ApiServer {
    pub name: String,
    pub port: u16,
    /// The key prefix of this API server's data in its etcd.
    pub etcd_prefix: String,
    pub credentials: Credentials,
    pub startup: Startup,
    pub etcd: Etcd,
    dir: tempfile::TempDir,
    client_issuer: Issuer<'static, KeyPair>,
    child: Mutex<Option<Child>>,
    extra_args: Vec<String>,
}

impl ApiServer {
    /// Starts a private API server (stopped when dropped) and installs the CRDs. Blocks; fails the
    /// test with the server's log when it does not come up.
    pub fn start(name: &str) -> ApiServer {
        Self::start_with(name, &[])
    }

    /// [`ApiServer::start`] with extra kube-apiserver flags (kept across [`ApiServer::restart`]),
    /// e.g. `--watch-cache=false`.
    pub fn start_with(name: &str, extra_args: &[&str]) -> ApiServer {
        Self::start_with_crds(name, CRD_FILES, extra_args)
    }

    /// [`ApiServer::start_with`] installing `crd_files` (paths from the repository root) instead of
    /// [`CRD_FILES`].
    pub fn start_with_crds(name: &str, crd_files: &[&str], extra_args: &[&str]) -> ApiServer {
        let extra_args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
        let bin = peers_bin().join("kube-apiserver");
        assert!(
            bin.is_file(),
            "{} is missing; run scripts/peers.sh (or unset MESHSYNC_PEERS_BIN)",
            bin.display()
        );
        let t0 = Instant::now();
        let etcd = start_etcd(&format!("{name}-etcd"));
        let etcd_time = t0.elapsed();

        let dir = tempfile::Builder::new()
            .prefix(&format!("apiserver-{name}-"))
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let (credentials, client_issuer) = write_credentials(dir.path(), port);
        static SERIAL: AtomicUsize = AtomicUsize::new(0);
        let etcd_prefix = format!(
            "/meshsync-test-apiserver-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        );

        let t1 = Instant::now();
        let child = spawn_apiserver(
            &bin,
            dir.path(),
            port,
            &etcd,
            &etcd_prefix,
            &credentials,
            &extra_args,
        );
        let mut server = ApiServer {
            name: name.to_string(),
            port,
            etcd_prefix,
            credentials,
            startup: Startup {
                etcd: etcd_time,
                ready: Duration::ZERO,
                crds: Duration::ZERO,
            },
            etcd,
            dir,
            client_issuer,
            child: Mutex::new(Some(child)),
            extra_args,
        };
        server.wait_ready();
        let ready = t1.elapsed();
        let t2 = Instant::now();
        let applied = server.install_crds(crd_files);
        let crds = t2.elapsed();
        server.startup.ready = ready;
        server.startup.crds = crds;
        // Straight to stderr, past the test harness's capture: start-up times show in every run.
        let line = format!(
            "apiserver {name}: https://127.0.0.1:{port} ready; etcd {:.2}s, kube-apiserver to /readyz {:.2}s, CRDs created in {:.2}s and Established {:.2}s after the create began (total {:.2}s)\n",
            etcd_time.as_secs_f64(),
            ready.as_secs_f64(),
            applied.as_secs_f64(),
            crds.as_secs_f64(),
            t0.elapsed().as_secs_f64()
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        server
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.credentials.kubeconfig
    }

    /// Writes a kubeconfig for a client certificate with `CN=user` and `O=` each of `groups`,
    /// signed by the client CA: an identity with only the rights RBAC gives it.
    pub fn kubeconfig_for(&self, user: &str, groups: &[&str]) -> PathBuf {
        let (cert, key) = new_leaf(
            &self.client_issuer,
            user,
            groups,
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let cert_file = self.dir.path().join(format!("user-{user}.crt"));
        let key_file = self.dir.path().join(format!("user-{user}.key"));
        write(&cert_file, &cert);
        write(&key_file, &key);
        let kubeconfig = self.dir.path().join(format!("kubeconfig-{user}"));
        write(
            &kubeconfig,
            &kubeconfig_text(
                self.port,
                &self.credentials.server_ca,
                &cert_file,
                &key_file,
            ),
        );
        kubeconfig
    }

    /// The folder holding the certificates, keys, kubeconfig and `kube-apiserver.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The API server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kube-apiserver.log")).unwrap_or_default()
    }

    /// `kubectl --kubeconfig <admin kubeconfig>`, with no stdin and no kubeconfig from the
    /// environment.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.env_remove("KUBECONFIG")
            .arg("--kubeconfig")
            .arg(&self.credentials.kubeconfig)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `kubectl ARGS` (with `stdin` if given) and returns its output, whatever its status.
    pub fn kubectl_output(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.kubectl();
        cmd.args(args);
        let Some(input) = stdin else {
            return cmd.output().expect("kubectl must be on PATH");
        };
        use std::io::Write;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl must be on PATH");
        let mut pipe = child.stdin.take().expect("stdin is piped");
        // A thread writes so that a large input cannot deadlock against full output pipes.
        let input = input.to_string();
        let writer = std::thread::spawn(move || pipe.write_all(input.as_bytes()));
        let out = child.wait_with_output().expect("wait for kubectl");
        writer
            .join()
            .expect("stdin writer")
            .expect("write kubectl's stdin");
        out
    }

    /// Runs `kubectl ARGS`, failing the test unless it succeeds; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        self.kubectl_ok_with(args, None)
    }

    /// Runs `kubectl ARGS` with `stdin`, failing the test unless it succeeds; returns stdout.
    pub fn kubectl_ok_with(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_output(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply -f -` of `yaml` (server-side, so large objects are fine).
    pub fn apply(&self, yaml: &str) -> String {
        self.kubectl_ok_with(
            &[
                "apply",
                "--server-side",
                "--field-manager=meshsync-tests",
                "-f",
                "-",
            ],
            Some(yaml),
        )
    }

    /// `kubectl get KIND NAME [-n NS] -o json`, parsed.
    pub fn get_json(&self, kind: &str, namespace: Option<&str>, name: &str) -> serde_json::Value {
        let mut args = vec!["get", kind, name, "-o", "json"];
        if let Some(ns) = namespace {
            args.extend(["-n", ns]);
        }
        let text = self.kubectl_ok(&args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("kubectl get JSON: {e}\n{text}"))
    }

    /// Creates a namespace and its `default` ServiceAccount. No controller manager runs here, so
    /// nothing else creates that account, and Pods (which the ServiceAccount admission plugin
    /// gives it) cannot be created without it.
    pub fn create_namespace(&self, name: &str) {
        self.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: default\n  namespace: {name}\n"
        ));
    }

    /// The process id of kube-apiserver while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(Child::id)
    }

    /// Kills kube-apiserver and starts it again on the same port, etcd and credentials (its data
    /// and its CRDs survive); blocks until `/readyz` says ok.
    pub fn restart(&self) {
        self.kill();
        let bin = peers_bin().join("kube-apiserver");
        let child = spawn_apiserver(
            &bin,
            self.dir.path(),
            self.port,
            &self.etcd,
            &self.etcd_prefix,
            &self.credentials,
            &self.extra_args,
        );
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        self.wait_ready();
    }

    /// A kubeconfig (its text) that authenticates as ServiceAccount `namespace/name` with a token
    /// from the TokenRequest API (`kubectl create token`), as a user of `deploy/kubernetes/rbac.yaml`
    /// hands a remote cluster's access to the local one.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> String {
        let token = self.kubectl_ok(&["create", "token", name, "-n", namespace, "--duration=24h"]);
        let ca = std::fs::read_to_string(&self.credentials.server_ca).expect("server CA");
        use base64::Engine;
        let ca_data = base64::engine::general_purpose::STANDARD.encode(ca);
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: {cluster}
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority-data: {ca_data}
users:
- name: {name}
  user:
    token: {token}
contexts:
- name: {cluster}
  context:
    cluster: {cluster}
    user: {name}
current-context: {cluster}
",
            cluster = self.name,
            port = self.port,
            token = token.trim(),
        )
    }

    /// Kills kube-apiserver (its etcd stops when this is dropped).
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn exited(&self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    fn fail(&self, what: &str) -> ! {
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "apiserver {}: {what}; last lines of {}:\n{}",
            self.name,
            self.dir.path().join("kube-apiserver.log").display(),
            tail.join("\n")
        );
    }

    /// Polls until the port accepts and `/readyz` says `ok`.
    fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut last = String::new();
        loop {
            if let Some(status) = self.exited() {
                self.fail(&format!(
                    "kube-apiserver exited ({status}) before it was ready"
                ));
            }
            // Cheap check first: is it listening yet? Then ask it, as the admin.
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                let out =
                    self.kubectl_output(&["get", "--raw", "/readyz", "--request-timeout=5s"], None);
                let body = String::from_utf8_lossy(&out.stdout);
                if out.status.success() && body.trim() == "ok" {
                    return;
                }
                last = format!("{body}{}", String::from_utf8_lossy(&out.stderr));
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "not ready after {READY_TIMEOUT:?}; last /readyz answer: {last}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Applies `crd_files` and waits until every CRD is Established; returns how long the apply
    /// took.
    fn install_crds(&self, crd_files: &[&str]) -> Duration {
        // `create`, not `apply`: the server is new, and applying (server-side) these large CRDs takes
        // seconds longer.
        let mut apply = vec!["create"];
        let mut wait = vec![
            "wait".to_string(),
            "--for=condition=Established".to_string(),
            format!("--timeout={}s", CRD_TIMEOUT.as_secs()),
        ];
        let files: Vec<String> = crd_files
            .iter()
            .map(|f| repo().join(f).display().to_string())
            .collect();
        for f in &files {
            apply.extend(["-f", f.as_str()]);
            wait.extend(["-f".to_string(), f.clone()]);
        }
        let t0 = Instant::now();
        let out = self.kubectl_output(&apply, None);
        if !out.status.success() {
            self.fail(&format!(
                "kubectl apply of the CRDs failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let applied = t0.elapsed();
        let wait: Vec<&str> = wait.iter().map(String::as_str).collect();
        let out = self.kubectl_output(&wait, None);
        if !out.status.success() {
            self.fail(&format!(
                "CRDs not Established: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        applied
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The API server shared by every test of this test binary: started by the first caller,
/// stopped when the binary exits. Tests that use it must not depend on being alone in it (use
/// their own namespaces and names).
pub fn shared() -> &'static ApiServer {
    static SHARED: OnceLock<ApiServer> = OnceLock::new();
    static STARTING: Mutex<()> = Mutex::new(());
    if let Some(server) = SHARED.get() {
        return server;
    }
    // One start at a time; a failed start leaves it unset, so the next test tries again.
    let _guard = STARTING.lock().unwrap_or_else(|p| p.into_inner());
    SHARED.get_or_init(|| {
        let server = ApiServer::start("shared");
        let pids = [server.pid(), server.etcd.pid()]
            .into_iter()
            .flatten()
            .collect();
        super::process::remove_at_exit(pids, server.dir().to_path_buf());
        if let Some(pid) = server.etcd.pid() {
            super::process::remove_at_exit(vec![pid], server.etcd.dir().to_path_buf());
        }
        server
    })
}

/// Starts an etcd from synchronous code, on a thread with its own runtime (callers may be inside a
/// tokio runtime, where blocking on another one is not allowed).
fn start_etcd(name: &str) -> Etcd {
    let name = name.to_string();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(Etcd::start(&name))
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

fn spawn_apiserver(
    bin: &Path,
    dir: &Path,
    port: u16,
    etcd: &Etcd,
    etcd_prefix: &str,
    c: &Credentials,
    extra_args: &[String],
) -> Child {
    let log = std::fs::File::create(dir.join("kube-apiserver.log")).expect("log file");
    let sa_key = dir.join("service-account.key");
    let sa_pub = dir.join("service-account.pub");
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--etcd-servers={}", etcd.url()))
        .arg(format!("--etcd-prefix={etcd_prefix}"))
        .arg("--bind-address=127.0.0.1")
        .arg("--advertise-address=127.0.0.1")
        .arg(format!("--secure-port={port}"))
        .arg(format!("--cert-dir={}", dir.join("certs").display()))
        .arg(format!(
            "--tls-cert-file={}",
            dir.join("serving.crt").display()
        ))
        .arg(format!(
            "--tls-private-key-file={}",
            dir.join("serving.key").display()
        ))
        .arg(format!("--client-ca-file={}", c.client_ca.display()))
        .arg("--authorization-mode=Node,RBAC")
        .arg("--anonymous-auth=false")
        .arg(format!("--service-account-key-file={}", sa_pub.display()))
        .arg(format!(
            "--service-account-signing-key-file={}",
            sa_key.display()
        ))
        .arg(format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"))
        .arg("--service-cluster-ip-range=10.96.0.0/16")
        // The `kubernetes` Service's endpoints would name 127.0.0.1, which the API rejects.
        .arg("--endpoint-reconciler-type=none")
        .arg("--profiling=false")
        .arg("--v=1")
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log);
    super::process::spawn_tied(cmd).unwrap_or_else(|e| panic!("start {}: {e}", bin.display()))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Generates the CAs, the serving and admin certificates, the service-account key pair and the
/// admin kubeconfig into `dir`.
fn write_credentials(dir: &Path, port: u16) -> (Credentials, Issuer<'static, KeyPair>) {
    let (server_ca, server_issuer) = new_ca("meshsync-test-apiserver-ca");
    let (client_ca, client_issuer) = new_ca("meshsync-test-client-ca");
    let (serving_cert, serving_key) = new_leaf(
        &server_issuer,
        "kube-apiserver",
        &[],
        &[
            "127.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "10.96.0.1",
        ],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (admin_cert, admin_key) = new_leaf(
        &client_issuer,
        "meshsync-test-admin",
        &["system:masters"],
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let sa = KeyPair::generate().expect("generate a key");

    let c = Credentials {
        server_ca: dir.join("server-ca.crt"),
        client_ca: dir.join("client-ca.crt"),
        admin_cert: dir.join("admin.crt"),
        admin_key: dir.join("admin.key"),
        kubeconfig: dir.join("kubeconfig"),
    };
    write(&c.server_ca, &server_ca);
    write(&c.client_ca, &client_ca);
    write(&dir.join("serving.crt"), &serving_cert);
    write(&dir.join("serving.key"), &serving_key);
    write(&c.admin_cert, &admin_cert);
    write(&c.admin_key, &admin_key);
    write(&dir.join("service-account.key"), &sa.serialize_pem());
    write(&dir.join("service-account.pub"), &sa.public_key_pem());
    write(
        &c.kubeconfig,
        &kubeconfig_text(port, &c.server_ca, &c.admin_cert, &c.admin_key),
    );
    (c, client_issuer)
}

/// A kubeconfig for the server on `port` and a client certificate.
fn kubeconfig_text(port: u16, ca: &Path, cert: &Path, key: &Path) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: meshsync-test
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority: {ca}
users:
- name: user
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: meshsync-test
  context:
    cluster: meshsync-test
    user: user
current-context: meshsync-test
",
        ca = ca.display(),
        cert = cert.display(),
        key = key.display(),
    )
}
