//! `meshsync connect`: joins two Kubernetes clusters into a mesh, both ways, as `cilium
//! clustermesh connect` does. For each direction (A reads B, B reads A) it writes:
//!
//! * in the cluster that is read (the *remote*): the Namespace, the ServiceAccount
//!   `meshsync-remote`, the ClusterRole `meshsync-remote` and its ClusterRoleBinding — the very
//!   documents of `deploy/kubernetes/rbac.yaml` (compiled in, so the rules exist once) — and asks
//!   the TokenRequest API for a token of that ServiceAccount;
//! * in the cluster that reads (the *local* one): a Secret `meshsync-remote-<remote>` with the
//!   keys `datastoreType: kubernetes` and `kubeconfig` (the remote's API server URL, its CA and the
//!   token: what `meshsync-mesh`'s `secret.rs`/`rcc.rs` read), and the RemoteClusterConfiguration
//!   `<remote>` naming that Secret.
//!
//! Why server-side apply, and forced only for some objects: every object is applied with the
//! field manager `meshsync-connect`, so running it again changes nothing but the token (the
//! Secret). The Secret and the RCC exist only because of `connect` (labelled
//! `app.kubernetes.io/managed-by: meshsync-connect`), so their apply is forced: `connect` is the
//! authority on them. The Namespace, ServiceAccount, ClusterRole and ClusterRoleBinding are also
//! in `rbac.yaml`, which the user applies with `kubectl`: they are applied unforced, so an edited
//! copy is reported as a conflict naming the other manager instead of being overwritten.
//!
//! Why TokenRequest tokens: legacy token Secrets need the token controller and never expire; a
//! TokenRequest token expires after `--token-hours` (default a year; the API server may shorten
//! it, `--service-account-max-token-expiration`, and the printed expiry is the real one). Running
//! `connect` again before then renews it; meshsync picks up the changed Secret and reconnects
//! that cluster without agents seeing any difference. Deleting the ServiceAccount revokes it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use clap::Args;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

/// The field manager of every apply.
pub const FIELD_MANAGER: &str = "meshsync-connect";
/// The ServiceAccount (and ClusterRole, ClusterRoleBinding) a remote cluster grants meshsync.
pub const REMOTE_ACCOUNT: &str = "meshsync-remote";
/// The label marking the objects `connect` owns (the Secret and the RCC).
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", FIELD_MANAGER);
/// `deploy/kubernetes/rbac.yaml`, the one copy of the remote role's rules.
const RBAC_YAML: &str = include_str!("../../deploy/kubernetes/rbac.yaml");
/// Stands for the token in `--dry-run` output.
pub const TOKEN_PLACEHOLDER: &str =
    "<redacted: a TokenRequest token, issued when run without --dry-run>";
/// The longest wait for connecting to an API server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The shortest token lifetime the TokenRequest API accepts is 10 minutes; less than an hour
/// makes no sense for a mesh link.
const MIN_TOKEN_HOURS: u64 = 1;
/// Ten years: beyond it a token is as good as a legacy one that never expires.
const MAX_TOKEN_HOURS: u64 = 87_600;

/// `connect --help`'s description (set on the subcommand in `main.rs`).
pub const LONG_ABOUT: &str =
    "Connect two Kubernetes clusters into a meshsync cluster mesh, both ways.

In each cluster it creates, for the other one to read it: ServiceAccount NAMESPACE/meshsync-remote,
ClusterRole meshsync-remote (the rules of deploy/kubernetes/rbac.yaml) and its ClusterRoleBinding,
and requests a token for that ServiceAccount (TokenRequest API, --token-hours). In each cluster it
then writes, to read the other: Secret NAMESPACE/meshsync-remote-<other> holding a kubeconfig with
the other's API server URL, CA and token, and the RemoteClusterConfiguration <other> pointing at it.
Objects are written with server-side apply (field manager meshsync-connect): running it again
changes nothing but the token, which it renews. The RemoteClusterConfiguration CRD
(deploy/crds/remoteclusterconfigurations.yaml) must be installed in both clusters.

Examples:
  meshsync connect --context-a kind-east --context-b kind-west
  meshsync connect --kubeconfig-a east.yaml --kubeconfig-b west.yaml --name-a east --name-b west
  meshsync connect --context-a east --context-b west --server-a https://10.0.0.1:6443 --dry-run";

#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// The kubeconfig holding both clusters' contexts [default: $KUBECONFIG, else
    /// ~/.kube/config].
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// Cluster A's kubeconfig, when the clusters are in separate files [default: --kubeconfig].
    #[arg(long, value_name = "PATH")]
    kubeconfig_a: Option<PathBuf>,
    /// Cluster B's kubeconfig [default: --kubeconfig].
    #[arg(long, value_name = "PATH")]
    kubeconfig_b: Option<PathBuf>,
    /// Cluster A's context in its kubeconfig [default: its current context].
    #[arg(long, value_name = "CONTEXT")]
    context_a: Option<String>,
    /// Cluster B's context in its kubeconfig [default: its current context].
    #[arg(long, value_name = "CONTEXT")]
    context_b: Option<String>,
    /// Cluster A's name in the mesh: the name of the RemoteClusterConfiguration in cluster B and
    /// the cluster of every key taken from A [default: A's context name as a DNS-1123 label].
    #[arg(long, value_name = "NAME")]
    name_a: Option<String>,
    /// Cluster B's name in the mesh [default: B's context name as a DNS-1123 label].
    #[arg(long, value_name = "NAME")]
    name_b: Option<String>,
    /// Cluster A's API server URL as cluster B reaches it, when the kubeconfig's URL only works
    /// from here (a loopback address, a tunnel) [default: the kubeconfig's].
    #[arg(long, value_name = "URL")]
    server_a: Option<String>,
    /// Cluster B's API server URL as cluster A reaches it [default: the kubeconfig's].
    #[arg(long, value_name = "URL")]
    server_b: Option<String>,
    /// The namespace meshsync runs in, in both clusters: it holds the meshsync-remote
    /// ServiceAccount and the Secrets the RemoteClusterConfigurations name.
    #[arg(long, value_name = "NAMESPACE", default_value = "meshsync")]
    namespace: String,
    /// Also sync each other's Nodes, IP pools and IPAM blocks (syncOptions.overlayRoutingMode:
    /// Enabled), so that Felix programs overlay (VXLAN) routes to the other cluster's pods.
    #[arg(long)]
    overlay_routing: bool,
    /// Lifetime of the tokens, hours (1 to 87600). Run connect again before they expire.
    #[arg(long, value_name = "HOURS", default_value_t = 8760)]
    token_hours: u64,
    /// Print every object it would write, as YAML documents (tokens replaced by a placeholder),
    /// and change nothing: no cluster is contacted.
    #[arg(long)]
    dry_run: bool,
}

/// One of the two clusters, as its kubeconfig describes it.
struct Side {
    /// `A` or `B`, for messages.
    label: char,
    /// The cluster's name in the mesh.
    name: String,
    context: String,
    kubeconfig: Kubeconfig,
    /// The API server URL the other cluster uses to reach this one.
    server_for_peer: String,
    /// The cluster's CA (base64 PEM, as a kubeconfig's `certificate-authority-data`), if any.
    ca_data: Option<String>,
    insecure_skip_tls_verify: bool,
    tls_server_name: Option<String>,
}

pub async fn run(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        (MIN_TOKEN_HOURS..=MAX_TOKEN_HOURS).contains(&args.token_hours),
        "--token-hours must be from {MIN_TOKEN_HOURS} to {MAX_TOKEN_HOURS}, got {}",
        args.token_hours
    );
    anyhow::ensure!(
        is_dns_label(&args.namespace),
        "--namespace {:?} is not a DNS-1123 label",
        args.namespace
    );
    let a = load_side(
        'A',
        args.kubeconfig_a.as_ref().or(args.kubeconfig.as_ref()),
        args.context_a.as_deref(),
        args.name_a.as_deref(),
        args.server_a.as_deref(),
    )?;
    let b = load_side(
        'B',
        args.kubeconfig_b.as_ref().or(args.kubeconfig.as_ref()),
        args.context_b.as_deref(),
        args.name_b.as_deref(),
        args.server_b.as_deref(),
    )?;
    anyhow::ensure!(
        a.name != b.name,
        "both clusters would be named {:?}: give --name-a and --name-b",
        a.name
    );
    anyhow::ensure!(
        a.server_for_peer != b.server_for_peer,
        "contexts {:?} and {:?} reach the same API server ({}): connect two different clusters",
        a.context,
        b.context,
        a.server_for_peer
    );
    for (side, flag) in [(&a, "--server-a"), (&b, "--server-b")] {
        if is_loopback_url(&side.server_for_peer) && !flag_given(&args, side.label) {
            eprintln!(
                "meshsync connect: warning: cluster {} ({}) is reached at {}, a loopback address: the other cluster can only use it if it runs on this host; give {flag} with a URL it can reach",
                side.label, side.name, side.server_for_peer
            );
        }
    }
    if args.dry_run {
        print!("{}", dry_run(&args, &a, &b)?);
        return Ok(ExitCode::SUCCESS);
    }
    let client_a = client(&a).await?;
    let client_b = client(&b).await?;
    // First what each cluster grants the other, with its token; then what each reads the other
    // with. Nothing is written to read a cluster that failed to grant access.
    let token_b = grant_access(&client_b, &b, &args).await?;
    let token_a = grant_access(&client_a, &a, &args).await?;
    read_remote(&client_a, &a, &b, &token_b, &args).await?;
    read_remote(&client_b, &b, &a, &token_a, &args).await?;
    println!(
        "connected: {} reads {} and {} reads {} (tokens expire {} and {}; run connect again before then)",
        a.name, b.name, b.name, a.name, token_b.expires, token_a.expires
    );
    Ok(ExitCode::SUCCESS)
}

fn flag_given(args: &ConnectArgs, label: char) -> bool {
    match label {
        'A' => args.server_a.is_some(),
        _ => args.server_b.is_some(),
    }
}

/// Reads a side's kubeconfig and resolves its context, name, URL and CA.
fn load_side(
    label: char,
    path: Option<&PathBuf>,
    context: Option<&str>,
    name: Option<&str>,
    server: Option<&str>,
) -> anyhow::Result<Side> {
    let (kubeconfig, source) = match path {
        Some(p) => (
            Kubeconfig::read_from(p).with_context(|| {
                format!("cannot read cluster {label}'s kubeconfig {}", p.display())
            })?,
            p.display().to_string(),
        ),
        None => (
            Kubeconfig::read().with_context(|| {
                format!("cannot read cluster {label}'s kubeconfig ($KUBECONFIG or ~/.kube/config)")
            })?,
            "$KUBECONFIG or ~/.kube/config".to_string(),
        ),
    };
    let context = match context.or(kubeconfig.current_context.as_deref()) {
        Some(c) => c.to_string(),
        None => bail!(
            "{source} has no current context: give --context-{}",
            label.to_ascii_lowercase()
        ),
    };
    let Some(named) = kubeconfig.contexts.iter().find(|c| c.name == context) else {
        bail!("{source} has no context {context:?} (cluster {label})");
    };
    let cluster_name = named
        .context
        .as_ref()
        .map(|c| c.cluster.clone())
        .unwrap_or_default();
    let Some(cluster) = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.as_ref())
    else {
        bail!(
            "{source}: context {context:?} names cluster {cluster_name:?}, which it does not define"
        );
    };
    let server_for_peer = match server.or(cluster.server.as_deref()) {
        Some(s) => s.trim_end_matches('/').to_string(),
        None => bail!("{source}: cluster {cluster_name:?} has no server URL"),
    };
    anyhow::ensure!(
        server_for_peer.starts_with("https://") || server_for_peer.starts_with("http://"),
        "cluster {label}'s API server URL {server_for_peer:?} is not http(s)://host[:port]"
    );
    let ca_data = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) => Some(data.clone()),
        (None, Some(file)) => {
            let pem = std::fs::read(file)
                .with_context(|| format!("cannot read cluster {label}'s CA file {file}"))?;
            Some(base64::engine::general_purpose::STANDARD.encode(pem))
        }
        (None, None) => None,
    };
    let name = match name {
        Some(n) => {
            anyhow::ensure!(
                meshsync_model::is_remote_cluster_name(n),
                "--name-{} {n:?} is not a DNS-1123 subdomain (lower-case letters, digits, '-' and '.')",
                label.to_ascii_lowercase()
            );
            n.to_string()
        }
        None => {
            let n = dns_label(&context);
            anyhow::ensure!(
                !n.is_empty(),
                "context {context:?} gives no usable cluster name: give --name-{}",
                label.to_ascii_lowercase()
            );
            n
        }
    };
    Ok(Side {
        label,
        name,
        context,
        server_for_peer,
        ca_data,
        insecure_skip_tls_verify: cluster.insecure_skip_tls_verify.unwrap_or(false),
        tls_server_name: cluster.tls_server_name.clone(),
        kubeconfig,
    })
}

/// A context name as a DNS-1123 label: lower case, every run of other characters one `-`, no
/// `-` at either end, at most 63 characters (`kind-East_1` → `kind-east-1`,
/// `arn:aws:eks:…:cluster/prod` → `arn-aws-eks-…-cluster-prod`).
pub fn dns_label(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(63);
    out.trim_end_matches('-').to_string()
}

fn is_dns_label(text: &str) -> bool {
    !text.is_empty() && text.len() <= 63 && dns_label(text) == text
}

fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The documents of `rbac.yaml` a remote cluster needs (its `meshsync-remote` part), moved into
/// `namespace`, preceded by that Namespace.
pub fn remote_access_objects(namespace: &str) -> anyhow::Result<Vec<Value>> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(RBAC_YAML)
        .context("the compiled-in deploy/kubernetes/rbac.yaml does not parse")?;
    let mut out = vec![json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": namespace},
    })];
    for kind in ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"] {
        let Some(mut document) = documents
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == REMOTE_ACCOUNT)
            .cloned()
        else {
            bail!("the compiled-in deploy/kubernetes/rbac.yaml has no {kind} {REMOTE_ACCOUNT}");
        };
        if kind == "ServiceAccount" {
            document["metadata"]["namespace"] = json!(namespace);
        }
        if let Some(subjects) = document.get_mut("subjects").and_then(Value::as_array_mut) {
            for subject in subjects {
                subject["namespace"] = json!(namespace);
            }
        }
        out.push(document);
    }
    Ok(out)
}

/// The Secret's name in the reading cluster for the remote cluster `remote`.
pub fn secret_name(remote: &str) -> String {
    format!("{REMOTE_ACCOUNT}-{remote}")
}

/// The kubeconfig through which a reading cluster reaches `remote` with `token`.
fn token_kubeconfig(remote: &Side, token: &str) -> anyhow::Result<String> {
    let mut cluster = json!({"server": remote.server_for_peer});
    if let Some(ca) = &remote.ca_data {
        cluster["certificate-authority-data"] = json!(ca);
    }
    if remote.insecure_skip_tls_verify {
        cluster["insecure-skip-tls-verify"] = json!(true);
    }
    if let Some(name) = &remote.tls_server_name {
        cluster["tls-server-name"] = json!(name);
    }
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": remote.name, "cluster": cluster}],
        "users": [{"name": REMOTE_ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": remote.name, "context": {"cluster": remote.name, "user": REMOTE_ACCOUNT}}],
        "current-context": remote.name,
    });
    serde_saphyr::to_string(&config).context("cannot write the token kubeconfig as YAML")
}

/// What the reading cluster holds to read `remote`: the Secret and the RCC naming it.
fn read_remote_objects(
    remote: &Side,
    token: &str,
    namespace: &str,
    overlay: bool,
) -> anyhow::Result<Vec<Value>> {
    let secret = secret_name(&remote.name);
    let labels = json!({MANAGED_BY.0: MANAGED_BY.1});
    Ok(vec![
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret, "namespace": namespace, "labels": labels},
            "type": "Opaque",
            "stringData": {
                "datastoreType": "kubernetes",
                "kubeconfig": token_kubeconfig(remote, token)?,
            },
        }),
        json!({
            "apiVersion": "crd.projectcalico.org/v1",
            "kind": "RemoteClusterConfiguration",
            "metadata": {"name": remote.name, "labels": labels},
            "spec": {
                "clusterAccessSecret": {"kind": "Secret", "namespace": namespace, "name": secret},
                "syncOptions": {
                    "overlayRoutingMode": if overlay { "Enabled" } else { "Disabled" },
                },
            },
        }),
    ])
}

/// Every object, as YAML documents, each after a comment naming its cluster.
fn dry_run(args: &ConnectArgs, a: &Side, b: &Side) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut emit = |side: &Side, objects: Vec<Value>| -> anyhow::Result<()> {
        for object in objects {
            out.push_str(&format!(
                "---\n# cluster {} ({}, context {})\n",
                side.label, side.name, side.context
            ));
            out.push_str(&serde_saphyr::to_string(&object).context("cannot write YAML")?);
        }
        Ok(())
    };
    emit(a, remote_access_objects(&args.namespace)?)?;
    emit(b, remote_access_objects(&args.namespace)?)?;
    emit(
        a,
        read_remote_objects(b, TOKEN_PLACEHOLDER, &args.namespace, args.overlay_routing)?,
    )?;
    emit(
        b,
        read_remote_objects(a, TOKEN_PLACEHOLDER, &args.namespace, args.overlay_routing)?,
    )?;
    Ok(out)
}

async fn client(side: &Side) -> anyhow::Result<kube::Client> {
    let options = KubeConfigOptions {
        context: Some(side.context.clone()),
        ..KubeConfigOptions::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(side.kubeconfig.clone(), &options)
        .await
        .with_context(|| format!("cluster {} (context {:?})", side.label, side.context))?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    kube::Client::try_from(config)
        .with_context(|| format!("cannot build a client for cluster {}", side.label))
}

/// A token issued by the TokenRequest API.
struct Token {
    token: String,
    expires: String,
}

/// Writes in `side` what lets the other cluster read it, and requests the token.
async fn grant_access(
    client: &kube::Client,
    side: &Side,
    args: &ConnectArgs,
) -> anyhow::Result<Token> {
    for object in remote_access_objects(&args.namespace)? {
        apply(client, side, &object, false).await?;
    }
    let accounts: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &args.namespace,
        &api_resource("ServiceAccount")?,
    );
    let request = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": args.token_hours * 3600},
    });
    let response: Value = accounts
        .create_subresource("token", REMOTE_ACCOUNT, &PostParams::default(), &request)
        .await
        .with_context(|| {
            format!(
                "cluster {} ({}): cannot request a token for ServiceAccount {}/{REMOTE_ACCOUNT}",
                side.label, side.name, args.namespace
            )
        })?;
    let Some(token) = response["status"]["token"]
        .as_str()
        .filter(|t| !t.is_empty())
    else {
        bail!(
            "cluster {} ({}): the TokenRequest API answered without a token",
            side.label,
            side.name
        );
    };
    let expires = response["status"]["expirationTimestamp"]
        .as_str()
        .unwrap_or("(unknown)")
        .to_string();
    println!(
        "{}: token for serviceaccount {}/{REMOTE_ACCOUNT} issued, expires {expires}",
        side.name, args.namespace
    );
    Ok(Token {
        token: token.to_string(),
        expires,
    })
}

/// Writes in `local` the Secret and RCC through which it reads `remote`.
async fn read_remote(
    client: &kube::Client,
    local: &Side,
    remote: &Side,
    token: &Token,
    args: &ConnectArgs,
) -> anyhow::Result<()> {
    for object in read_remote_objects(remote, &token.token, &args.namespace, args.overlay_routing)?
    {
        apply(client, local, &object, true).await?;
    }
    Ok(())
}

/// The API coordinates of the kinds `connect` writes.
fn api_resource(kind: &str) -> anyhow::Result<ApiResource> {
    let (group, plural) = match kind {
        "Namespace" => ("", "namespaces"),
        "ServiceAccount" => ("", "serviceaccounts"),
        "Secret" => ("", "secrets"),
        "ClusterRole" => ("rbac.authorization.k8s.io", "clusterroles"),
        "ClusterRoleBinding" => ("rbac.authorization.k8s.io", "clusterrolebindings"),
        "RemoteClusterConfiguration" => ("crd.projectcalico.org", "remoteclusterconfigurations"),
        other => bail!("connect does not write {other} objects"),
    };
    Ok(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, "v1", kind),
        plural,
    ))
}

/// Server-side applies `object` in `side` (forced when `force`) and prints whether it was
/// created, changed or already so.
async fn apply(
    client: &kube::Client,
    side: &Side,
    object: &Value,
    force: bool,
) -> anyhow::Result<()> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = object["metadata"]["namespace"].as_str();
    let resource = api_resource(kind)?;
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let shown = match namespace {
        Some(ns) => format!("{} {ns}/{name}", kind.to_ascii_lowercase()),
        None => format!("{} {name}", kind.to_ascii_lowercase()),
    };
    let context = || {
        let hint = if kind == "RemoteClusterConfiguration" {
            " (is deploy/crds/remoteclusterconfigurations.yaml installed there?)"
        } else {
            ""
        };
        format!(
            "cluster {} ({}): cannot apply {shown}{hint}",
            side.label, side.name
        )
    };
    let before = api.get_opt(name).await.with_context(context)?;
    // A Namespace is only created: the API server rewrites an applied Namespace's managed fields
    // on every apply (its `kubernetes.io/metadata.name` label), so applying an existing one would
    // change it on every run.
    if kind == "Namespace" && before.is_some() {
        println!("{}: {shown} unchanged", side.name);
        return Ok(());
    }
    let mut params = PatchParams::apply(FIELD_MANAGER);
    if force {
        params = params.force();
    }
    let after = api
        .patch(name, &params, &Patch::Apply(object))
        .await
        .with_context(context)?;
    let what = match before {
        None => "created",
        Some(b) if b.metadata.resource_version != after.metadata.resource_version => "configured",
        Some(_) => "unchanged",
    };
    println!("{}: {shown} {what}", side.name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(name: &str) -> Side {
        Side {
            label: 'B',
            name: name.into(),
            context: name.into(),
            kubeconfig: Kubeconfig::default(),
            server_for_peer: "https://10.0.0.2:6443".into(),
            ca_data: Some("Q0E=".into()),
            insecure_skip_tls_verify: false,
            tls_server_name: None,
        }
    }

    #[test]
    fn context_names_become_dns_labels() {
        assert_eq!(dns_label("kind-East_1"), "kind-east-1");
        assert_eq!(
            dns_label("arn:aws:eks:us-west-2:123:cluster/prod"),
            "arn-aws-eks-us-west-2-123-cluster-prod"
        );
        assert_eq!(dns_label("gke_proj_zone_name"), "gke-proj-zone-name");
        assert_eq!(dns_label("--x--"), "x");
        assert_eq!(dns_label("@@"), "");
        assert_eq!(dns_label(&"a".repeat(100)).len(), 63);
        assert!(!dns_label(&format!("{}-b", "a".repeat(62))).ends_with('-'));
        assert!(is_dns_label("meshsync") && !is_dns_label("Meshsync") && !is_dns_label("a.b"));
    }

    #[test]
    fn loopback_urls_are_recognised() {
        for url in [
            "https://127.0.0.1:6443",
            "https://localhost",
            "https://[::1]:443/",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in ["https://10.0.0.1:6443", "https://api.example.com"] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }

    #[test]
    fn the_remote_objects_are_rbac_yaml_s_moved_into_the_namespace() {
        let objects = remote_access_objects("mesh").unwrap();
        let kinds: Vec<&str> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding"
            ]
        );
        assert_eq!(objects[1]["metadata"]["namespace"], "mesh");
        assert_eq!(objects[3]["subjects"][0]["namespace"], "mesh");
        assert!(objects[1].get("subjects").is_none(), "{}", objects[1]);
        let rules = objects[2]["rules"].as_array().unwrap();
        assert!(
            rules
                .iter()
                .any(|r| r["resources"].as_array().unwrap().contains(&json!("pods")))
        );
    }

    #[test]
    fn the_secret_is_what_the_mesh_reads() {
        let objects = read_remote_objects(&side("west"), "tok", "meshsync", true).unwrap();
        let secret = serde_json::to_vec(&objects[0]).unwrap();
        let data = meshsync_mesh::SecretData::parse(&secret).unwrap();
        assert_eq!(
            data.text("datastoreType").unwrap().as_deref(),
            Some("kubernetes")
        );
        let kubeconfig = data.text("kubeconfig").unwrap().unwrap();
        let parsed = Kubeconfig::from_yaml(&kubeconfig).unwrap();
        assert_eq!(parsed.current_context.as_deref(), Some("west"));
        let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://10.0.0.2:6443"));
        assert_eq!(cluster.certificate_authority_data.as_deref(), Some("Q0E="));
        let user = parsed.auth_infos[0].auth_info.as_ref().unwrap();
        assert!(user.token.is_some());
        assert_eq!(objects[1]["metadata"]["name"], "west");
        assert_eq!(
            objects[1]["spec"]["clusterAccessSecret"]["name"],
            "meshsync-remote-west"
        );
        assert_eq!(
            objects[1]["spec"]["syncOptions"]["overlayRoutingMode"],
            "Enabled"
        );
        let rcc = meshsync_mesh::Rcc::parse("west", &serde_json::to_vec(&objects[1]).unwrap());
        let secrets = [(
            ("meshsync".to_string(), "meshsync-remote-west".to_string()),
            Ok(data),
        )]
        .into_iter()
        .collect();
        let config = rcc.resolve(&secrets, None).unwrap();
        assert!(config.overlay);
    }
}
