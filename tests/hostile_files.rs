#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;
// Files that are not what they claim (issue 21), with the real binary: a TLS certificate or a
// `--config` file that is a FIFO, a device or far too large is refused at start with a message
// naming it (never a hang, never memory exhaustion); a certificate replaced by a FIFO while
// serving (a hung secret mount) never wedges the accept loop or the health server — the previous
// certificate keeps being served, the log says so once, and a later good file is loaded.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::binary::{BIN, Finished, Serve, meshsync, run, without_meshsync_env};
use support::certs::{LeafSpec, leaf, new_ca};
use support::log_text::text_field;

fn mkfifo(path: &Path) {
    let c = CString::new(path.to_str().expect("utf-8 path")).expect("path");
    // SAFETY: mkfifo reads one NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A server CA and two server certificates for 127.0.0.1 (`server`, `server-2` from another CA).
fn pki() -> Pki {
    let pki = Pki {
        dir: tempfile::tempdir().expect("tempdir"),
    };
    for (suffix, ca_name) in [("", "meshsync-files-ca"), ("-2", "meshsync-files-ca-2")] {
        let (ca, issuer) = new_ca(ca_name);
        std::fs::write(pki.path(&format!("ca{suffix}.crt")), ca).expect("write");
        let (cert, key) = leaf(
            &issuer,
            &LeafSpec {
                common_name: "meshsync",
                names: &["127.0.0.1", "localhost"],
                ..LeafSpec::default()
            },
        );
        std::fs::write(pki.path(&format!("server{suffix}.crt")), cert).expect("write");
        std::fs::write(pki.path(&format!("server{suffix}.key")), key).expect("write");
    }
    pki
}

/// `meshsync ARGS` under a 4 GiB address-space limit (so that a read without a bound fails
/// instead of taking the machine's memory), to completion within 30 s.
fn run_bounded(args: &[&str]) -> Finished {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -v 4194304 && exec \"$0\" \"$@\"")
        .arg(BIN)
        .args(args);
    without_meshsync_env(&mut cmd);
    run(&mut cmd, Duration::from_secs(30))
}

fn assert_refused(done: &Finished, path: &Path, what: &str) {
    assert!(!done.status.success(), "{}", done.describe());
    let named = done
        .stderr
        .lines()
        .any(|l| l.contains(&path.display().to_string()) && l.contains(what));
    assert!(
        named,
        "no line naming {} and {what:?}: {}",
        path.display(),
        done.describe()
    );
}

#[test]
fn tls_and_config_files_that_are_not_small_regular_files_are_refused_at_start() {
    let pki = pki();
    let data = tempfile::tempdir().expect("tempdir");
    let datastore = format!("file:{}", data.path().display());
    let fifo = pki.path("fifo");
    mkfifo(&fifo);
    let large = pki.path("large.pem");
    std::fs::File::create(&large)
        .and_then(|f| f.set_len(64 << 20))
        .expect("a 64 MiB sparse file");
    let zero = PathBuf::from("/dev/zero");
    let key = pki.path("server.key");
    for (cert, what) in [
        (&fifo, "not a regular file (a FIFO)"),
        (&zero, "not a regular file (a device)"),
        (&large, "larger than"),
    ] {
        let done = run_bounded(&[
            "serve",
            "--datastore",
            &datastore,
            "--listen",
            "127.0.0.1:0",
            "--health-listen",
            "127.0.0.1:0",
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
        ]);
        assert_refused(&done, cert, what);
    }
    for (config, what) in [
        (&fifo, "not a regular file (a FIFO)"),
        (&zero, "not a regular file (a device)"),
        (&large, "larger than"),
    ] {
        let done = run_bounded(&["serve", "--config", config.to_str().unwrap()]);
        assert_refused(&done, config, what);
    }
}

/// `meshsync agent --until-in-sync` over TLS trusting `ca`.
fn agent(url: &str, ca: &Path) -> Finished {
    let mut cmd = meshsync();
    cmd.args([
        "agent",
        "--server",
        url,
        "--syncer",
        "all",
        "--until-in-sync",
        "--timeout",
        "15",
        "--output",
        "quiet",
    ]);
    cmd.arg("--tls-ca-file").arg(ca);
    run(&mut cmd, Duration::from_secs(40))
}

/// `GET path` on `addr`, failing the test if it takes more than 5 s: the status line.
fn probe(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr:?}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out)
        .unwrap_or_else(|e| panic!("{path} did not answer: {e}"));
    out.lines().next().unwrap_or_default().to_string()
}

#[test]
fn a_certificate_replaced_by_a_fifo_never_wedges_the_server() {
    let pki = pki();
    let mesh = support::copy_example_mesh();
    let datastore = format!("file:{}", mesh.path().join("cluster-a").display());
    let (cert, key) = (pki.path("server.crt"), pki.path("server.key"));
    let mut serve = Serve::on_loopback(
        &datastore,
        &[
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
        ],
    );
    let serving = serve.wait_serving();
    let grpc = text_field(&serving, "grpc").expect("grpc=").to_string();
    let health = text_field(&serving, "health")
        .and_then(|h| h.strip_prefix("Some(")?.strip_suffix(')'))
        .expect("health=")
        .to_string();
    let url = format!("https://{grpc}");
    let (ca, new_ca) = (pki.path("ca.crt"), pki.path("ca-2.crt"));
    assert!(agent(&url, &ca).status.success());

    // The certificate becomes a FIFO nobody writes (a read of it never returns).
    std::fs::remove_file(&cert).expect("remove");
    mkfifo(&cert);
    let first = agent(&url, &ca);
    assert!(
        first.status.success(),
        "an agent after the FIFO: {}",
        first.describe()
    );
    assert!(probe(&health, "/liveness").contains("200"));
    let warning = |l: &str| l.contains("TLS files changed but cannot be loaded");
    let line = serve.wait_line("the warning", warning);
    assert!(
        line.contains(&cert.display().to_string()) && line.contains("FIFO"),
        "{line}"
    );
    // Later looks (one a second) see the same FIFO: agents and probes are served throughout,
    // and the log still has one line about it.
    let since = std::time::Instant::now();
    while since.elapsed() < Duration::from_secs(3) {
        assert!(agent(&url, &ca).status.success());
        assert!(probe(&health, "/readiness").contains("200"));
    }
    while let Ok(line) = serve.rx.try_recv() {
        serve.lines.push(line);
    }
    assert_eq!(serve.count(warning), 1, "{:?}", serve.lines);

    // A good pair renamed in is loaded.
    for ext in ["crt", "key"] {
        let staged = pki.path(&format!("staged.{ext}"));
        std::fs::copy(pki.path(&format!("server-2.{ext}")), &staged).expect("copy");
        std::fs::rename(&staged, pki.path(&format!("server.{ext}"))).expect("rename");
    }
    serve.wait_line("the reload line", |l| {
        l.contains("TLS files changed; new connections use them")
    });
    assert!(agent(&url, &new_ca).status.success());
}
