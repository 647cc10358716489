#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;
// TLS with client identity on the agents' port (issue 13), with the real binary on both sides and
// certificates generated here: the allowed agent (by CN, or by URI SAN) syncs; a wrong CA, an
// identity not allowed, an expired certificate, a plaintext client and a TLS client to a plaintext
// server are each refused with one clear line on each side; certificate files rotate without a
// restart; no key material ever reaches a log line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::binary::{Finished, Serve, meshsync, run};
use support::certs::{LeafSpec, leaf, new_ca};
use support::log_text::text_field;

const AGENT_CN: &str = "meshsync-agent";
const AGENT_URI: &str = "spiffe://mesh.example/ns/calico-system/sa/calico-node";

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    /// Writes `<name>.crt` and `<name>.key`.
    fn pair(&self, name: &str, (cert, key): (String, String)) {
        self.write(&format!("{name}.crt"), &cert);
        self.write(&format!("{name}.key"), &key);
    }
}

fn pki() -> Pki {
    let pki = Pki {
        dir: tempfile::tempdir().expect("tempdir"),
    };
    let (server_ca, server_issuer) = new_ca("meshsync-test-server-ca");
    let (client_ca, client_issuer) = new_ca("meshsync-test-client-ca");
    let (_, other_issuer) = new_ca("some-other-ca");
    pki.write("server-ca.crt", &server_ca);
    pki.write("client-ca.crt", &client_ca);
    let server = |cn| LeafSpec {
        common_name: cn,
        names: &["127.0.0.1", "localhost"],
        ..LeafSpec::default()
    };
    pki.pair("server", leaf(&server_issuer, &server("meshsync")));
    let client = |cn, uris| LeafSpec {
        common_name: cn,
        uris,
        client: true,
        ..LeafSpec::default()
    };
    pki.pair("agent", leaf(&client_issuer, &client(AGENT_CN, &[])));
    pki.pair(
        "agent-uri",
        leaf(&client_issuer, &client("node-7", &[AGENT_URI])),
    );
    pki.pair(
        "intruder",
        leaf(
            &client_issuer,
            &client("intruder", &["spiffe://elsewhere/x"]),
        ),
    );
    pki.pair("foreign", leaf(&other_issuer, &client(AGENT_CN, &[])));
    pki.pair(
        "expired",
        leaf(
            &client_issuer,
            &LeafSpec {
                expired: true,
                ..client(AGENT_CN, &[])
            },
        ),
    );
    // For the rotation: a new server CA and certificate.
    let (new_ca_pem, new_issuer) = new_ca("meshsync-test-server-ca-2");
    pki.write("server-ca-2.crt", &new_ca_pem);
    pki.pair("server-2", leaf(&new_issuer, &server("meshsync")));
    pki
}

fn tls_serve(pki: &Pki) -> Serve {
    let mesh = support::copy_example_mesh();
    let datastore = format!("file:{}", mesh.path().join("cluster-a").display());
    // The copy lives as long as the test binary; the server reads it at start and then watches.
    std::mem::forget(mesh);
    let (cert, key, ca) = (
        pki.path("server.crt"),
        pki.path("server.key"),
        pki.path("client-ca.crt"),
    );
    let args = [
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
        "--tls-client-ca-file",
        ca.to_str().unwrap(),
        "--tls-client-cn",
        AGENT_CN,
        "--tls-client-uri-san",
        AGENT_URI,
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    Serve::on_loopback(&datastore, &args)
}

fn grpc_port(serving: &str) -> u16 {
    let grpc = text_field(serving, "grpc").unwrap_or_else(|| panic!("no grpc= in {serving:?}"));
    grpc.rsplit(':').next().unwrap().parse().expect("port")
}

/// `meshsync agent --until-in-sync` with `tls` flags (`(ca, Some((cert, key)))`).
fn agent(url: &str, tls: Option<(&Path, Option<(&Path, &Path)>)>, timeout: &str) -> Finished {
    let mut cmd = meshsync();
    cmd.args([
        "agent",
        "--server",
        url,
        "--syncer",
        "all",
        "--until-in-sync",
        "--timeout",
        timeout,
    ]);
    cmd.args(["--output", "quiet"]);
    if let Some((ca, identity)) = tls {
        cmd.arg("--tls-ca-file").arg(ca);
        if let Some((cert, key)) = identity {
            cmd.arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key);
        }
    }
    run(&mut cmd, Duration::from_secs(40))
}

fn assert_no_key_material(lines: &[String]) {
    for l in lines {
        assert!(
            !l.contains("PRIVATE KEY") && !l.contains("BEGIN CERTIFICATE"),
            "key material in a log line: {l}"
        );
    }
}

#[test]
fn allowed_agents_sync_and_every_other_client_is_refused_with_a_reason() {
    let pki = pki();
    let mut serve = tls_serve(&pki);
    let port = grpc_port(&serve.wait_serving());
    let url = format!("https://127.0.0.1:{port}");
    let ca = pki.path("server-ca.crt");
    let id = |name: &str| {
        (
            pki.path(&format!("{name}.crt")),
            pki.path(&format!("{name}.key")),
        )
    };

    // Allowed by CN, and by URI SAN.
    for name in ["agent", "agent-uri"] {
        let (cert, key) = id(name);
        let done = agent(&url, Some((&ca, Some((&cert, &key)))), "15");
        assert!(
            done.status.success(),
            "{name} should sync: {}",
            done.describe()
        );
    }

    // Refused: identity not allowed, another CA, expired, no certificate at all.
    for (name, reason) in [
        ("intruder", "identity not allowed"),
        ("foreign", "UnknownIssuer"),
        ("expired", "certificate expired"),
    ] {
        let (cert, key) = id(name);
        let done = agent(&url, Some((&ca, Some((&cert, &key)))), "2");
        assert!(
            !done.status.success(),
            "{name} must be refused: {}",
            done.describe()
        );
        let line = serve.wait_line(&format!("the refusal of {name}"), |l| {
            l.contains("TLS handshake failed") && l.contains(reason)
        });
        eprintln!("server: {line}");
        let client = format!("{}{}", done.stdout, done.stderr);
        assert!(
            client.contains("cannot connect")
                || client.contains("transport error")
                || client.contains("tls"),
            "{name}: the client says why: {client}"
        );
    }
    let done = agent(&url, Some((&ca, None)), "2");
    assert!(
        !done.status.success(),
        "a client without a certificate must be refused"
    );
    serve.wait_line("the refusal of a client without a certificate", |l| {
        l.contains("TLS handshake failed") && l.contains("CertificateRequired")
            || l.contains("TLS handshake failed") && l.contains("NoCertificatesPresented")
            || l.contains("TLS handshake failed") && l.contains("peer sent no certificates")
    });

    // A plaintext client on the TLS port.
    let done = agent(&format!("http://127.0.0.1:{port}"), None, "2");
    assert!(
        !done.status.success(),
        "plaintext must be refused: {}",
        done.describe()
    );
    serve.wait_line("the refusal of plaintext", |l| {
        l.contains("TLS handshake failed") && l.contains("not TLS")
    });
    assert_no_key_material(&serve.lines);
    // Counted on /metrics: at least the five refusals above.
    let serving = serve.wait_serving();
    let metrics = text_field(&serving, "metrics").expect("metrics=");
    let addr = metrics.trim_start_matches("Some(").trim_end_matches(')');
    let body = http_get(addr, "/metrics");
    let refused: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("meshsync_connections_refused_tls_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no refused-TLS counter in {body}"));
    assert!(refused >= 5, "refused {refused}");
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr:?}: {e}"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn a_tls_client_on_the_plaintext_port_is_told_apart() {
    let pki = pki();
    let mesh = support::copy_example_mesh();
    let datastore = format!("file:{}", mesh.path().join("cluster-a").display());
    let mut serve = Serve::on_loopback(&datastore, &[]);
    let port = grpc_port(&serve.wait_serving());
    let (cert, key) = (pki.path("agent.crt"), pki.path("agent.key"));
    let done = agent(
        &format!("https://127.0.0.1:{port}"),
        Some((&pki.path("server-ca.crt"), Some((&cert, &key)))),
        "2",
    );
    assert!(!done.status.success(), "{}", done.describe());
    serve.wait_line("the plaintext server's line", |l| {
        l.contains("does not speak gRPC") && l.contains("a TLS client on the plaintext gRPC port")
    });
}

#[test]
fn certificate_files_rotate_without_a_restart() {
    let pki = pki();
    let mut serve = tls_serve(&pki);
    let port = grpc_port(&serve.wait_serving());
    let url = format!("https://127.0.0.1:{port}");
    let (cert, key) = (pki.path("agent.crt"), pki.path("agent.key"));
    let old_ca = pki.path("server-ca.crt");
    let new_ca = pki.path("server-ca-2.crt");
    assert!(
        agent(&url, Some((&old_ca, Some((&cert, &key)))), "15")
            .status
            .success()
    );

    // The new pair is written aside and renamed in (as cert-manager or a kubelet does).
    for ext in ["crt", "key"] {
        let staged = pki.path(&format!("staged.{ext}"));
        std::fs::copy(pki.path(&format!("server-2.{ext}")), &staged).expect("copy");
        std::fs::rename(&staged, pki.path(&format!("server.{ext}"))).expect("rename");
    }
    // The files are looked at again at a handshake a second after the last look: the first
    // attempts may still see the old certificate.
    let served_new = (0..10).any(|_| {
        agent(&url, Some((&new_ca, Some((&cert, &key)))), "2")
            .status
            .success()
    });
    assert!(
        served_new,
        "the new certificate is served without a restart"
    );
    serve.wait_line("the reload line", |l| {
        l.contains("TLS files changed; new connections use them")
    });
    let done = agent(&url, Some((&old_ca, Some((&cert, &key)))), "2");
    assert!(!done.status.success(), "the old CA no longer matches");
    assert_no_key_material(&serve.lines);
}
