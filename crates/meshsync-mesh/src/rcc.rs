//! RemoteClusterConfiguration: parsing, validation (Calico's rules for the resource) and the remote
//! configuration it resolves to: the datastore's [`DatastoreSpec`] (the same description the CLI's
//! `--datastore` becomes) and how the mesh syncs it.
//!
//! Validation problems, a missing Secret or an unsupported datastore type are not errors of the
//! server: they become the cluster's `ConfigIncomplete` status with the reason, and nothing else
//! is disturbed.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use meshsync_datastore::DatastoreSpec;
use meshsync_datastore::etcd::TlsFiles;
use meshsync_datastore::kubernetes::{EndpointAccess, KubeAccess};
use meshsync_etcd::{EtcdConfig, EtcdTls};
use serde::Deserialize;

use crate::error::{ConfigError, SecretError};
use crate::secret::SecretData;

/// Annotation selecting what happens to a lost cluster's data: `keep` (default) or `withdraw`.
pub const LOST_CLUSTER_POLICY_ANNOTATION: &str = "meshsync.io/lost-cluster-policy";
/// Annotation with the grace period before `withdraw` deletes a lost cluster's data (`30s`, `2m`,
/// or plain seconds). Default 30 s.
pub const LOST_CLUSTER_GRACE_ANNOTATION: &str = "meshsync.io/lost-cluster-grace-period";

/// What to do with a remote cluster's data while it cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostClusterPolicy {
    /// Keep serving the last known data (Calico's behaviour).
    Keep,
    /// Delete it after the grace period; it comes back when the cluster does.
    Withdraw { grace: Duration },
}

/// Checks an RCC's name, which becomes the cluster's name in every key and status: a DNS-1123
/// subdomain (lower-case letters, digits, `-` and `.`, starting and ending with a letter or digit,
/// at most 253 characters), as the Kubernetes API would require of the object. Anything else
/// (`(local)`, `a/b`, `" "`, …) could be confused with the local cluster or break key paths.
pub fn validate_cluster_name(name: &str) -> Result<(), InvalidClusterName> {
    if meshsync_model::is_remote_cluster_name(name) {
        Ok(())
    } else {
        Err(InvalidClusterName(
            name.escape_debug().to_string().chars().take(300).collect(),
        ))
    }
}

/// An RCC name that is not a DNS-1123 subdomain (escaped, cut at 300 characters).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "RemoteClusterConfiguration name \"{0}\" is not a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters)"
)]
pub struct InvalidClusterName(pub String);

/// The prefix under which Calico keeps its etcdv3 data; remotes are always read there.
pub const CALICO_ETCD_PREFIX: &str = "/calico";

/// Everything that decides how a remote source runs; a change restarts that one source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteConfig {
    pub datastore: DatastoreSpec,
    pub overlay: bool,
    pub policy: LostClusterPolicy,
}

impl RemoteConfig {
    /// The kinds synced from this cluster (the kinds registry's remote column).
    pub fn kinds(&self) -> HashSet<String> {
        meshsync_model::kinds::remote_kinds(self.overlay)
            .map(String::from)
            .collect()
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct ObjectRef {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct SyncOptions {
    #[serde(default)]
    overlay_routing_mode: Option<String>,
}

/// `spec` of a RemoteClusterConfiguration (plus `filePath`, our extension).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct RccSpec {
    datastore_type: Option<String>,
    cluster_access_secret: Option<ObjectRef>,
    etcd_endpoints: Option<String>,
    etcd_username: Option<String>,
    etcd_password: Option<String>,
    etcd_key_file: Option<String>,
    etcd_cert_file: Option<String>,
    #[serde(rename = "etcdCACertFile")]
    etcd_ca_cert_file: Option<String>,
    etcd_key: Option<String>,
    etcd_cert: Option<String>,
    #[serde(rename = "etcdCACert")]
    etcd_ca_cert: Option<String>,
    kubeconfig: Option<String>,
    #[serde(rename = "k8sAPIEndpoint")]
    k8s_api_endpoint: Option<String>,
    k8s_key_file: Option<String>,
    k8s_cert_file: Option<String>,
    #[serde(rename = "k8sCAFile")]
    k8s_ca_file: Option<String>,
    #[serde(rename = "k8sAPIToken")]
    k8s_api_token: Option<String>,
    #[serde(rename = "k8sInsecureSkipTLSVerify")]
    k8s_insecure_skip_tls_verify: Option<bool>,
    kubeconfig_inline: Option<String>,
    file_path: Option<String>,
    sync_options: Option<SyncOptions>,
}

fn set(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|s| !s.is_empty())
}

impl RccSpec {
    /// True if any connection field other than the secret reference (and syncOptions) is set.
    fn has_connection_fields(&self) -> bool {
        [
            &self.datastore_type,
            &self.etcd_endpoints,
            &self.etcd_username,
            &self.etcd_password,
            &self.etcd_key_file,
            &self.etcd_cert_file,
            &self.etcd_ca_cert_file,
            &self.etcd_key,
            &self.etcd_cert,
            &self.etcd_ca_cert,
            &self.kubeconfig,
            &self.k8s_api_endpoint,
            &self.k8s_key_file,
            &self.k8s_cert_file,
            &self.k8s_ca_file,
            &self.k8s_api_token,
            &self.kubeconfig_inline,
            &self.file_path,
        ]
        .into_iter()
        .any(set)
            || self.k8s_insecure_skip_tls_verify.unwrap_or(false)
    }

    /// The spec a Secret's data describes (as in Calico: `kubeconfig` maps to
    /// `kubeconfigInline`; file paths cannot come from a Secret, except our `filePath`).
    fn from_secret(secret: &SecretData) -> Result<RccSpec, SecretError> {
        Ok(RccSpec {
            datastore_type: secret.text("datastoreType")?,
            etcd_endpoints: secret.text("etcdEndpoints")?,
            etcd_username: secret.text("etcdUsername")?,
            etcd_password: secret.text("etcdPassword")?,
            etcd_key: secret.text("etcdKey")?,
            etcd_cert: secret.text("etcdCert")?,
            etcd_ca_cert: secret.text("etcdCACert")?,
            kubeconfig_inline: secret.text("kubeconfig")?,
            file_path: secret.text("filePath")?,
            ..RccSpec::default()
        })
    }
}

/// A parsed RemoteClusterConfiguration.
#[derive(Clone, Debug, PartialEq)]
pub struct Rcc {
    /// `metadata.name`: the cluster's name in every key.
    pub name: String,
    spec: Result<RccSpec, ConfigError>,
    annotations: BTreeMap<String, String>,
}

/// Where a Secret lives.
pub type SecretRef = (String, String);

/// The Secrets of the local cluster that RCCs may name: decoded, or why a present Secret could not
/// be decoded (so that an RCC reports "malformed", never "not found", for a Secret that exists).
pub type Secrets = BTreeMap<SecretRef, Result<SecretData, SecretError>>;

impl Rcc {
    /// Parses an RCC object. A malformed spec is kept as an error, reported as `ConfigIncomplete`.
    pub fn parse(name: &str, value: &[u8]) -> Rcc {
        let object: Result<serde_json::Value, ConfigError> =
            serde_json::from_slice(value).map_err(|e| ConfigError::NotJson(e.into()));
        let annotations = object
            .as_ref()
            .ok()
            .and_then(|o| o.pointer("/metadata/annotations"))
            .and_then(|a| a.as_object())
            .map(|a| {
                a.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let spec = object.and_then(|o| {
            let spec = o.get("spec").cloned().unwrap_or(serde_json::Value::Null);
            if spec.is_null() {
                return Ok(RccSpec::default());
            }
            serde_json::from_value::<RccSpec>(spec).map_err(|e| ConfigError::InvalidSpec(e.into()))
        });
        Rcc {
            name: name.to_string(),
            spec,
            annotations,
        }
    }

    /// The Secret this RCC reads its access details from, if any.
    pub fn secret_ref(&self) -> Option<SecretRef> {
        let r = self.spec.as_ref().ok()?.cluster_access_secret.as_ref()?;
        Some((r.namespace.clone(), r.name.clone()))
    }

    /// Resolves the RCC (and its Secret) into a remote configuration, or the reason it is
    /// incomplete. `base_dir` anchors relative `filePath`s (the local file datastore's directory).
    pub fn resolve(
        &self,
        secrets: &Secrets,
        base_dir: Option<&Path>,
    ) -> Result<RemoteConfig, ConfigError> {
        let spec = self.spec.as_ref().map_err(Clone::clone)?;
        let overlay = match spec
            .sync_options
            .as_ref()
            .and_then(|o| o.overlay_routing_mode.as_deref())
        {
            None | Some("") | Some("Disabled") => false,
            Some("Enabled") => true,
            Some(other) => {
                return Err(ConfigError::field(
                    "OverlayRoutingMode",
                    format!("{other:?} is not Enabled or Disabled"),
                ));
            }
        };
        let policy = self.policy()?;
        let effective = match &spec.cluster_access_secret {
            Some(reference) => {
                if spec.has_connection_fields() {
                    return Err(ConfigError::SecretWithConnectionFields);
                }
                if !reference.kind.is_empty() && reference.kind != "Secret" {
                    return Err(ConfigError::NotASecret(reference.kind.clone()));
                }
                if reference.name.is_empty() || reference.namespace.is_empty() {
                    return Err(ConfigError::SecretRefIncomplete);
                }
                let key = (reference.namespace.clone(), reference.name.clone());
                let (namespace, name) = key.clone();
                let secret = match secrets.get(&key) {
                    None => return Err(ConfigError::SecretNotFound { namespace, name }),
                    Some(Err(source)) => {
                        return Err(ConfigError::SecretMalformed {
                            namespace,
                            name,
                            source: source.clone(),
                        });
                    }
                    Some(Ok(secret)) => secret,
                };
                RccSpec::from_secret(secret).map_err(|source| ConfigError::SecretField {
                    namespace,
                    name,
                    source,
                })?
            }
            None => spec.clone(),
        };
        let datastore = validate(&effective, base_dir)?;
        Ok(RemoteConfig {
            datastore,
            overlay,
            policy,
        })
    }

    fn policy(&self) -> Result<LostClusterPolicy, ConfigError> {
        let grace = match self.annotations.get(LOST_CLUSTER_GRACE_ANNOTATION) {
            None => Duration::from_secs(30),
            Some(text) => parse_duration(text).map_err(|reason| ConfigError::Annotation {
                annotation: LOST_CLUSTER_GRACE_ANNOTATION,
                reason,
            })?,
        };
        match self
            .annotations
            .get(LOST_CLUSTER_POLICY_ANNOTATION)
            .map(String::as_str)
        {
            None | Some("keep") => Ok(LostClusterPolicy::Keep),
            Some("withdraw") => Ok(LostClusterPolicy::Withdraw { grace }),
            Some(other) => Err(ConfigError::Annotation {
                annotation: LOST_CLUSTER_POLICY_ANNOTATION,
                reason: format!("{other:?} is not keep or withdraw"),
            }),
        }
    }
}

/// The longest grace period an RCC may ask for. Anything longer is almost certainly a mistake
/// (and arbitrary numbers must never reach `Duration`/`Instant` arithmetic, which panics on
/// overflow): use `keep` to keep a lost cluster's data for good.
pub const MAX_LOST_CLUSTER_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

/// `30s`, `2m`, `1h`, `500ms` or plain seconds, from 0 up to [`MAX_LOST_CLUSTER_GRACE`].
fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let invalid = || format!("{text:?} is not a duration such as 30s or 2m");
    // Digits and at most one dot only: no signs, exponents, `inf` or `NaN`.
    if number.is_empty() || number.matches('.').count() > 1 || number == "." {
        return Err(invalid());
    }
    let n: f64 = number.parse().map_err(|_| invalid())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(invalid()),
    };
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if d <= MAX_LOST_CLUSTER_GRACE => Ok(d),
        _ => Err(format!(
            "{text:?} is longer than the longest grace period, {}h (use {LOST_CLUSTER_POLICY_ANNOTATION}: keep to keep a lost cluster's data)",
            MAX_LOST_CLUSTER_GRACE.as_secs() / 3600
        )),
    }
}

fn endpoint_ok(e: &str) -> bool {
    let rest = e
        .strip_prefix("http://")
        .or_else(|| e.strip_prefix("https://"));
    match rest.and_then(|r| r.rsplit_once(':')) {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(':')
                && !host.contains('/')
                && !port.is_empty()
                && port.chars().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.clone().filter(|s| !s.is_empty())
}

fn path_field(v: &Option<String>, field: &'static str) -> Result<Option<PathBuf>, ConfigError> {
    match non_empty(v) {
        None => Ok(None),
        Some(p) if p.contains('\0') => Err(ConfigError::field(field, "contains a NUL byte")),
        Some(p) => Ok(Some(PathBuf::from(p))),
    }
}

/// How a `datastoreType: kubernetes` RCC reaches its API server (as in Calico:
/// `kubeconfigInline` overrides `kubeconfig`; the endpoint fields are the alternative).
fn kube_access(spec: &RccSpec, base_dir: Option<&Path>) -> Result<KubeAccess, ConfigError> {
    if let Some(text) = non_empty(&spec.kubeconfig_inline) {
        return Ok(KubeAccess::KubeconfigInline(text));
    }
    if let Some(path) = path_field(&spec.kubeconfig, "Kubeconfig")? {
        let path = match base_dir {
            Some(base) if path.is_relative() => base.join(path),
            _ => path,
        };
        return Ok(KubeAccess::Kubeconfig(Some(path)));
    }
    let Some(server) = non_empty(&spec.k8s_api_endpoint) else {
        return Err(ConfigError::field(
            "Kubeconfig",
            "kubernetes needs kubeconfig, kubeconfigInline (or a Secret's kubeconfig) or k8sAPIEndpoint",
        ));
    };
    if !endpoint_ok(&server) {
        return Err(ConfigError::field(
            "K8sAPIEndpoint",
            format!("{server:?} is not http(s)://host:port"),
        ));
    }
    Ok(KubeAccess::Endpoint(EndpointAccess {
        server,
        token: non_empty(&spec.k8s_api_token),
        ca_file: path_field(&spec.k8s_ca_file, "K8sCAFile")?,
        cert_file: path_field(&spec.k8s_cert_file, "K8sCertFile")?,
        key_file: path_field(&spec.k8s_key_file, "K8sKeyFile")?,
        insecure_skip_tls_verify: spec.k8s_insecure_skip_tls_verify.unwrap_or(false),
    }))
}

/// The etcd datastore an `etcdv3` spec describes.
fn etcd_spec(spec: &RccSpec) -> Result<DatastoreSpec, ConfigError> {
    let endpoints: Vec<String> = spec
        .etcd_endpoints
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(String::from)
        .collect();
    if endpoints.is_empty() {
        return Err(ConfigError::field(
            "EtcdEndpoints",
            "etcdv3 needs etcdEndpoints",
        ));
    }
    if let Some(bad) = endpoints.iter().find(|e| !endpoint_ok(e)) {
        return Err(ConfigError::field(
            "EtcdEndpoints",
            format!("{bad:?} is not http(s)://host:port"),
        ));
    }
    let (ca, cert, key) = (
        non_empty(&spec.etcd_ca_cert),
        non_empty(&spec.etcd_cert),
        non_empty(&spec.etcd_key),
    );
    let mut etcd = EtcdConfig::new(endpoints);
    etcd.username = non_empty(&spec.etcd_username);
    etcd.password = non_empty(&spec.etcd_password);
    if ca.is_some() || cert.is_some() || key.is_some() {
        etcd.tls = Some(EtcdTls {
            ca_pem: ca.map(String::into_bytes),
            cert_pem: cert.map(String::into_bytes),
            key_pem: key.map(String::into_bytes),
        });
    }
    // A remote that accepts connections but never answers must fail within seconds, so it
    // cannot hold the local in-sync for long (Calico's tests expect ~15 s at most).
    etcd.connect_timeout = Duration::from_secs(3);
    etcd.request_timeout = Duration::from_secs(5);
    let tls_files = TlsFiles {
        ca: path_field(&spec.etcd_ca_cert_file, "EtcdCACertFile")?,
        cert: path_field(&spec.etcd_cert_file, "EtcdCertFile")?,
        key: path_field(&spec.etcd_key_file, "EtcdKeyFile")?,
    };
    Ok(DatastoreSpec::Etcd {
        etcd,
        tls_files,
        prefix: CALICO_ETCD_PREFIX.into(),
    })
}

fn validate(spec: &RccSpec, base_dir: Option<&Path>) -> Result<DatastoreSpec, ConfigError> {
    match spec.datastore_type.as_deref().unwrap_or("") {
        "etcdv3" => etcd_spec(spec),
        "kubernetes" => {
            if [
                &spec.etcd_endpoints,
                &spec.etcd_ca_cert_file,
                &spec.etcd_cert_file,
                &spec.etcd_key_file,
                &spec.etcd_password,
            ]
            .into_iter()
            .any(set)
            {
                return Err(ConfigError::field(
                    "DatastoreType",
                    "kubernetes does not take etcd fields",
                ));
            }
            kube_access(spec, base_dir).map(|access| DatastoreSpec::Kubernetes { access })
        }
        "file" => {
            let path = non_empty(&spec.file_path).ok_or_else(|| {
                ConfigError::field("FilePath", "datastoreType file needs filePath")
            })?;
            let path = PathBuf::from(path);
            let dir = match base_dir {
                Some(base) if path.is_relative() => base.join(path),
                _ => path,
            };
            Ok(DatastoreSpec::File { dir })
        }
        "" => Err(ConfigError::field(
            "DatastoreType",
            "required (etcdv3 or kubernetes)",
        )),
        other => Err(ConfigError::field(
            "DatastoreType",
            format!("{other:?} is not etcdv3, kubernetes or file"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcc(json: &str) -> Rcc {
        Rcc::parse("cluster-b", json.as_bytes())
    }

    fn none() -> Secrets {
        BTreeMap::new()
    }

    #[test]
    fn inline_etcd_config() {
        let r = rcc(
            r#"{"spec":{"datastoreType":"etcdv3","etcdEndpoints":"http://a:2379, https://b:2380","syncOptions":{"overlayRoutingMode":"Enabled"}}}"#,
        );
        let c = r.resolve(&none(), None).unwrap();
        assert!(c.overlay);
        assert_eq!(c.policy, LostClusterPolicy::Keep);
        assert!(c.kinds().contains("IPAMBlock"));
        assert!(c.kinds().contains("Service") && c.kinds().contains("EndpointSlice"));
        assert!(!c.kinds().contains("GlobalNetworkPolicy"));
        match c.datastore {
            DatastoreSpec::Etcd { etcd, prefix, .. } => {
                assert_eq!(etcd.endpoints, ["http://a:2379", "https://b:2380"]);
                assert_eq!(prefix, CALICO_ETCD_PREFIX);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invalid_configs_say_why() {
        for (json, needle) in [
            (r#"{"spec":{}}"#, "DatastoreType: required"),
            (
                r#"{"spec":{"datastoreType":"this-is-not-valid"}}"#,
                "DatastoreType",
            ),
            (r#"{"spec":{"datastoreType":"etcdv3"}}"#, "EtcdEndpoints"),
            (
                r#"{"spec":{"datastoreType":"etcdv3","etcdEndpoints":"foo:1"}}"#,
                "EtcdEndpoints",
            ),
            (
                r#"{"spec":{"datastoreType":"kubernetes"}}"#,
                "Kubeconfig: kubernetes needs kubeconfig",
            ),
            (
                r#"{"spec":{"datastoreType":"kubernetes","k8sAPIEndpoint":"nohost"}}"#,
                "K8sAPIEndpoint",
            ),
            (
                r#"{"spec":{"datastoreType":"kubernetes","etcdEndpoints":"http://a:1"}}"#,
                "etcd fields",
            ),
            (
                r#"{"spec":{"datastoreType":42}}"#,
                "invalid RemoteClusterConfiguration spec",
            ),
            (r#"{"spec":{"datastoreType":"file"}}"#, "filePath"),
            (
                r#"{"spec":{"clusterAccessSecret":{"namespace":"ns","name":"s"},"etcdEndpoints":"http://a:1"}}"#,
                "should not be set",
            ),
            (
                r#"{"spec":{"clusterAccessSecret":{"namespace":"ns","name":"s"}}}"#,
                "was not found",
            ),
            (
                r#"{"spec":{"datastoreType":"etcdv3","etcdEndpoints":"http://a:1","syncOptions":{"overlayRoutingMode":"Sometimes"}}}"#,
                "OverlayRoutingMode",
            ),
            (
                r#"{"metadata":{"annotations":{"meshsync.io/lost-cluster-policy":"panic"}},"spec":{"datastoreType":"etcdv3","etcdEndpoints":"http://a:1"}}"#,
                "keep or withdraw",
            ),
            ("nope", "not JSON"),
        ] {
            let err = rcc(json).resolve(&none(), None).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn secret_config_and_policy() {
        let r = rcc(
            r#"{"metadata":{"annotations":{"meshsync.io/lost-cluster-policy":"withdraw","meshsync.io/lost-cluster-grace-period":"2m"}},
               "spec":{"clusterAccessSecret":{"kind":"Secret","namespace":"ns","name":"s"}}}"#,
        );
        assert_eq!(r.secret_ref(), Some(("ns".into(), "s".into())));
        let mut secrets = none();
        secrets.insert(
            ("ns".into(), "s".into()),
            SecretData::parse(br#"{"stringData":{"datastoreType":"file","filePath":"../b"}}"#),
        );
        let c = r.resolve(&secrets, Some(Path::new("/x/a"))).unwrap();
        assert_eq!(
            c.datastore,
            DatastoreSpec::File {
                dir: "/x/a/../b".into()
            }
        );
        assert_eq!(
            c.policy,
            LostClusterPolicy::Withdraw {
                grace: Duration::from_secs(120)
            }
        );
        // A secret with an invalid type is reported as such.
        secrets.insert(
            ("ns".into(), "s".into()),
            SecretData::parse(br#"{"stringData":{"datastoreType":"bogus"}}"#),
        );
        assert!(
            r.resolve(&secrets, None)
                .unwrap_err()
                .to_string()
                .contains("DatastoreType")
        );
        // A Secret that exists but does not decode is "malformed", not "not found".
        secrets.insert(
            ("ns".into(), "s".into()),
            SecretData::parse(br#"{"data":{"datastoreType":"!!not base64!!"}}"#),
        );
        let err = r.resolve(&secrets, None).unwrap_err().to_string();
        assert!(
            err.contains("ns/s is malformed") && err.contains("not base64"),
            "{err}"
        );
    }

    #[test]
    fn cluster_names_are_dns_1123_subdomains() {
        for good in ["cluster-b", "a", "0", "eu-west.prod-1", &"a".repeat(253)] {
            assert_eq!(validate_cluster_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "(local)",
            "a/b",
            " ",
            "A",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a_b",
            "a\nb",
            &"a".repeat(254),
        ] {
            assert!(validate_cluster_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("168h"), Ok(MAX_LOST_CLUSTER_GRACE));
        for bad in [
            "x", "5d", "", "s", ".", "1.2.3", "-5", "+5", "1e3", "inf", "NaN",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        // Digits only, so they parse as a number: far too big for a Duration (this panicked the
        // cache writer through `Duration::from_secs_f64`), or merely longer than allowed.
        for big in ["99999999999999999999", "169h", "1e400", "604801"] {
            let err = parse_duration(big).unwrap_err();
            assert!(
                err.contains("longest") || err.contains("not a duration"),
                "{big}: {err}"
            );
        }
    }

    #[test]
    fn an_absurd_grace_period_is_a_config_error_not_a_panic() {
        let r = rcc(
            r#"{"metadata":{"annotations":{"meshsync.io/lost-cluster-policy":"withdraw","meshsync.io/lost-cluster-grace-period":"99999999999999999999"}},
               "spec":{"datastoreType":"etcdv3","etcdEndpoints":"http://a:1"}}"#,
        );
        let err = r.resolve(&none(), None).unwrap_err().to_string();
        assert!(
            err.contains(LOST_CLUSTER_GRACE_ANNOTATION) && err.contains("longest"),
            "{err}"
        );
    }
}
