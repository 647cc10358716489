#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
//! TLS on meshsync's Typha port, as Typha's fv suite checks it: Calico's own client (the
//! syncclient in typha-dump, configured as Felix is) verifies the server certificate's CN or URI
//! SAN against its CA, and the server requires a client certificate whose CN or URI SAN is
//! allowed. Real binary, real Go client, certificates made for the test.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::binary::Serve;
use support::certs::{LeafSpec, leaf, new_ca};
use support::log_text::text_field;
use support::typha::{DumpError, Syncer, TyphaDump};

const SERVER_CN: &str = "typha-server";
const SERVER_URI: &str = "spiffe://cluster.local/ns/calico-system/sa/calico-typha";
const CLIENT_CN: &str = "typha-client";
const CLIENT_URI: &str = "spiffe://cluster.local/ns/calico-system/sa/calico-node";

/// How long a client may take to get its first map, or to give up.
const WITHIN: Duration = Duration::from_secs(30);

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn pair(&self, name: &str, (cert, key): (String, String)) {
        std::fs::write(self.path(&format!("{name}.crt")), cert).unwrap();
        std::fs::write(self.path(&format!("{name}.key")), key).unwrap();
    }
}

/// One CA for both sides (as an operator install has); a server certificate with Typha's CN and
/// URI SAN; clients: Felix's CN, another CN with the allowed URI SAN, a CN and URI SAN not
/// allowed, and Felix's CN from a CA the server does not trust.
fn pki() -> Pki {
    let pki = Pki {
        dir: tempfile::tempdir().unwrap(),
    };
    let (ca, issuer) = new_ca("calico-ca");
    let (_, stranger) = new_ca("some-other-ca");
    std::fs::write(pki.path("ca.crt"), ca).unwrap();
    pki.pair(
        "server",
        leaf(
            &issuer,
            &LeafSpec {
                common_name: SERVER_CN,
                names: &["127.0.0.1", "localhost"],
                uris: &[SERVER_URI],
                ..LeafSpec::default()
            },
        ),
    );
    let client = |cn, uris| LeafSpec {
        common_name: cn,
        uris,
        client: true,
        ..LeafSpec::default()
    };
    pki.pair("felix", leaf(&issuer, &client(CLIENT_CN, &[])));
    pki.pair("uri", leaf(&issuer, &client("node-7", &[CLIENT_URI])));
    pki.pair(
        "intruder",
        leaf(&issuer, &client("intruder", &["spiffe://elsewhere/x"])),
    );
    pki.pair("foreign", leaf(&stranger, &client(CLIENT_CN, &[])));
    pki
}

fn serve(pki: &Pki) -> (Serve, SocketAddr, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("felix.yaml"),
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\nspec:\n  logSeverityScreen: Info\n",
    )
    .unwrap();
    let s = |p: PathBuf| p.display().to_string();
    let (cert, key, ca) = (
        s(pki.path("server.crt")),
        s(pki.path("server.key")),
        s(pki.path("ca.crt")),
    );
    let mut serve = Serve::on_loopback(
        &format!("file:{}", data.path().display()),
        &[
            "--typha-listen",
            "127.0.0.1:0",
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-client-ca-file",
            &ca,
            "--tls-client-cn",
            CLIENT_CN,
            "--tls-client-uri-san",
            CLIENT_URI,
        ],
    );
    let line = serve.wait_serving();
    let typha = text_field(&line, "typha")
        .and_then(|t| t.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok())
        .unwrap_or_else(|| panic!("no typha= in {line:?}"));
    (serve, typha, data)
}

/// typha-dump's TLS flags: the CA, a client pair (if any) and what the server must be.
fn flags(pki: &Pki, client: Option<&str>, server: (&str, &str)) -> Vec<String> {
    let p = |name: &str| pki.path(name).display().to_string();
    let mut args = vec!["--ca-file".to_string(), p("ca.crt")];
    if let Some(name) = client {
        args.extend([
            "--cert-file".into(),
            p(&format!("{name}.crt")),
            "--key-file".into(),
            p(&format!("{name}.key")),
        ]);
    }
    let (flag, value) = server;
    args.extend([flag.to_string(), value.to_string()]);
    args
}

/// The dump's first map, or why there was none within `within`.
async fn first_map_within(
    addr: SocketAddr,
    args: &[String],
    within: Duration,
) -> Result<usize, DumpError> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut dump = TyphaDump::start_with(&addr.to_string(), Syncer::Felix, &args);
    dump.next_map(within).await.map(|m| m.len())
}

async fn first_map(addr: SocketAddr, args: &[String]) -> Result<usize, DumpError> {
    first_map_within(addr, args, WITHIN).await
}

/// A client that got no map: it gave up (a server it refuses), or keeps reconnecting because
/// the server refuses it (Calico's client retries a lost connection). Its stderr says why.
fn refused(result: Result<usize, DumpError>, case: &str) -> String {
    match result {
        Err(DumpError::Exited { stderr, .. }) => stderr,
        Err(DumpError::Timeout {
            last: None, stderr, ..
        }) => stderr,
        other => panic!("{case}: expected no map, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typhas_tls_matrix_on_meshsyncs_typha_port() {
    let pki = pki();
    let (mut serve, typha, _data) = serve(&pki);

    // Felix's CN, server checked by CN, then by URI SAN: served.
    for server in [("--server-cn", SERVER_CN), ("--server-uri-san", SERVER_URI)] {
        let keys = first_map(typha, &flags(&pki, Some("felix"), server))
            .await
            .unwrap_or_else(|e| panic!("{server:?}: {e}"));
        assert!(keys > 0, "{server:?}: an empty map");
    }
    // A client allowed by its URI SAN alone.
    first_map(typha, &flags(&pki, Some("uri"), ("--server-cn", SERVER_CN)))
        .await
        .unwrap_or_else(|e| panic!("URI SAN client: {e}"));

    // The client refuses a server whose CN or URI SAN is not the one it expects.
    let stderr = refused(
        first_map(
            typha,
            &flags(&pki, Some("felix"), ("--server-cn", "someone-else")),
        )
        .await,
        "wrong server CN",
    );
    assert!(!stderr.is_empty());
    refused(
        first_map(
            typha,
            &flags(&pki, Some("felix"), ("--server-uri-san", "spiffe://x/y")),
        )
        .await,
        "wrong server URI SAN",
    );

    // The server refuses clients it does not allow, each with a log line. (Calico's client
    // cannot connect without a certificate of its own; the core's TLS tests cover that case.)
    for (client, case) in [
        (Some("intruder"), "CN and URI SAN not allowed"),
        (Some("foreign"), "a CA the server does not trust"),
    ] {
        let stderr = refused(
            first_map_within(
                typha,
                &flags(&pki, client, ("--server-cn", SERVER_CN)),
                Duration::from_secs(5),
            )
            .await,
            case,
        );
        assert!(stderr.contains("tls"), "{case}: {stderr}");
    }
    serve.wait_line("a refused handshake", |l| {
        l.contains("refusing a connection: TLS handshake failed")
    });

    // A plaintext client on the TLS port gets nothing.
    let plain = TyphaDump::start(&typha.to_string(), Syncer::Felix)
        .next_map(Duration::from_secs(6))
        .await;
    assert!(plain.is_err(), "a plaintext client got a map");
    assert!(Path::new(&pki.path("ca.crt")).exists());
}
