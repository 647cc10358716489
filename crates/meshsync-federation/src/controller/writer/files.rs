//! The file writer: each managed object is one pretty-printed JSON file in a file datastore's
//! `DIR/generated/`.
//!
//! The file datastore watches `DIR` recursively, so the generated files come back through the
//! subscription and the mirror tells what the datastore holds, exactly as with etcd. A file is
//! written atomically (a hidden temp file in `generated/`, which the datastore ignores, then a
//! rename) and only when its content differs; an unneeded object is deleted by removing its file.
//! Nothing outside `generated/` is ever written.
//!
//! File names are `<kind>_<namespace>_<name>.json`, each part `%XX`-escaped outside `[a-z0-9.-]`,
//! so `_` never occurs in a part and every object has its own file. Files named as earlier
//! versions did (`endpoints-<ns>-<name>.json`, ambiguous) are removed at start when managed, and
//! written again under the new name.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tracing::{info, warn};

use super::{ApplyError, Outcome, PrepareError, check_name};
use crate::controller::LOG_TARGET;
use crate::controller::merge::{merge, remove_server_fields};
use crate::controller::plan::Action;
use crate::is_managed;

/// Writes files into `dir` (a file datastore's `DIR/generated`), created on the first
/// [`FileWriter::prepare`].
pub(in crate::controller) struct FileWriter {
    dir: PathBuf,
}

impl FileWriter {
    pub(super) fn new(dir: PathBuf) -> Self {
        FileWriter { dir }
    }

    /// Creates the directory and removes managed files with legacy names.
    pub(super) async fn prepare(&self) -> Result<(), PrepareError> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|source| PrepareError::CreateDir {
                path: self.dir.clone(),
                source,
            })?;
        remove_legacy_files(&self.dir).await.map(|_| ())
    }

    pub(super) async fn apply_one(&self, action: &Action) -> Result<Outcome, ApplyError> {
        apply_one_file(&self.dir, action).await
    }
}

/// One part of a generated file name: `[a-z0-9.-]` as they are (every valid Kubernetes name is
/// written as itself), anything else `%XX`-escaped, so `_` never occurs inside a part.
fn file_name_part(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for b in part.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The file of a managed object in `generated/`: `<kind>_<namespace>_<name>.json` (kind lower-
/// cased, parts as [`file_name_part`] writes them). `_` cannot occur in a part, so every
/// (kind, namespace, name) has its own file: `col/x-y` and `col-x/y` no longer share one.
fn generated_file(dir: &Path, action: &Action) -> Result<PathBuf, ApplyError> {
    check_name(&action.namespace)?;
    check_name(&action.name)?;
    Ok(dir.join(format!(
        "{}_{}_{}.json",
        action.kind.to_ascii_lowercase(),
        file_name_part(&action.namespace),
        file_name_part(&action.name)
    )))
}

/// Files an earlier version wrote (`endpoints-<ns>-<name>.json`, `endpointslice-<ns>-<name>.json`:
/// ambiguous, since `-` occurs in names). Removed at start when they are ours (managed), so the
/// objects they hold are written again under their unambiguous names.
async fn remove_legacy_files(dir: &Path) -> Result<usize, PrepareError> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(PrepareError::ListDir {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut removed = 0;
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name().to_string_lossy().into_owned();
        let legacy = (name.starts_with("endpoints-") || name.starts_with("endpointslice-"))
            && name.ends_with(".json");
        if !legacy {
            continue;
        }
        let path = entry.path();
        let managed = tokio::fs::read(&path)
            .await
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .is_some_and(|v| is_managed(&v));
        if managed && tokio::fs::remove_file(&path).await.is_ok() {
            info!(target: LOG_TARGET, path = %path.display(), "removed a federated object file with an old, ambiguous name; it is written again under its new name");
            removed += 1;
        }
    }
    Ok(removed)
}

/// Brings one object's file in `generated/` to its desired state.
async fn apply_one_file(dir: &Path, action: &Action) -> Result<Outcome, ApplyError> {
    let path = generated_file(dir, action)?;
    let existing = match tokio::fs::read(&path).await {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(ApplyError::Read { path, source }),
    };
    let content = match (&existing, &action.desired) {
        (None, None) => return Ok(Outcome::Unchanged),
        (None, Some(want)) => {
            let mut want = want.clone();
            remove_server_fields(&mut want);
            want
        }
        (Some(bytes), desired) => {
            let Ok(current) = serde_json::from_slice::<Value>(bytes) else {
                warn!(target: LOG_TARGET, path = %path.display(),
                    "unparseable file in the way of a federated object; leaving it alone");
                return Ok(Outcome::Unmanaged);
            };
            if !is_managed(&current) {
                info!(target: LOG_TARGET, path = %path.display(),
                    "object not managed by the federation controller (no selector annotation); leaving it alone");
                return Ok(Outcome::Unmanaged);
            }
            match desired {
                None => {
                    return match tokio::fs::remove_file(&path).await {
                        Ok(()) => Ok(Outcome::Deleted),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            Ok(Outcome::Unchanged)
                        }
                        Err(source) => Err(ApplyError::Remove { path, source }),
                    };
                }
                Some(want) => {
                    let Some(mut merged) = merge(&current, want) else {
                        return Ok(Outcome::Unmanaged);
                    };
                    remove_server_fields(&mut merged);
                    merged
                }
            }
        }
    };
    let mut bytes = serde_json::to_vec_pretty(&content).map_err(ApplyError::Encode)?;
    bytes.push(b'\n');
    if existing.as_deref() == Some(bytes.as_slice()) {
        return Ok(Outcome::Unchanged);
    }
    // Hidden, so the file datastore ignores it until the rename.
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{file_name}.tmp"));
    if let Err(source) = tokio::fs::write(&tmp, &bytes).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(ApplyError::Write { path, source });
    }
    if let Err(source) = tokio::fs::rename(&tmp, &path).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(ApplyError::Rename { path, source });
    }
    Ok(Outcome::Written)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::controller::plan::ENDPOINTS;

    fn action(desired: Option<Value>) -> Action {
        Action {
            kind: ENDPOINTS,
            namespace: "default".into(),
            name: "fed".into(),
            desired,
        }
    }

    /// Issue 8 item 3: `col/x-y` and `col-x/y` shared `endpoints-col-x-y.json`, so each overwrote
    /// the other's endpoints. Every (kind, namespace, name) now has its own file.
    #[tokio::test]
    async fn file_names_never_collide_across_namespaces() {
        let dir = tempfile::tempdir().unwrap();
        let object = |ns: &str, name: &str, ip: &str| Action {
            kind: ENDPOINTS,
            namespace: ns.into(),
            name: name.into(),
            desired: Some(json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": name, "namespace": ns,
                    "annotations": {"federation.tigera.io/serviceSelector": "all()"}},
                "subsets": [{"addresses": [{"ip": ip}]}]})),
        };
        let pairs = [
            ("col", "x-y", "10.0.0.1"),
            ("col-x", "y", "10.0.0.2"),
            ("c_o", "l", "10.0.0.3"),
            ("c", "o_l", "10.0.0.4"),
        ];
        for (ns, name, ip) in pairs {
            let outcome = apply_one_file(dir.path(), &object(ns, name, ip)).await;
            assert!(matches!(outcome, Ok(Outcome::Written)), "{ns}/{name}");
        }
        for (ns, name, ip) in pairs {
            let path = generated_file(dir.path(), &object(ns, name, ip)).unwrap();
            let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            assert_eq!(v["metadata"]["namespace"], ns);
            assert_eq!(v["metadata"]["name"], name);
            assert_eq!(
                v["subsets"][0]["addresses"][0]["ip"],
                ip,
                "{}",
                path.display()
            );
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), pairs.len());
        assert_eq!(file_name_part("my-app.v1"), "my-app.v1");
        assert_eq!(file_name_part("A_b c"), "%41%5Fb%20c");
    }

    /// Files named as before (ambiguous) are removed at start when they are ours, and only then.
    #[tokio::test]
    async fn legacy_file_names_are_removed_when_managed() {
        let dir = tempfile::tempdir().unwrap();
        let managed = r#"{"kind":"Endpoints","metadata":{"name":"a","namespace":"b","annotations":{"federation.tigera.io/serviceSelector":"all()"}}}"#;
        let unmanaged = r#"{"kind":"Endpoints","metadata":{"name":"c","namespace":"d"}}"#;
        std::fs::write(dir.path().join("endpoints-b-a.json"), managed).unwrap();
        std::fs::write(dir.path().join("endpoints-d-c.json"), unmanaged).unwrap();
        std::fs::write(dir.path().join("endpoints_b_a.json"), managed).unwrap();
        assert!(matches!(remove_legacy_files(dir.path()).await, Ok(1)));
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["endpoints-d-c.json", "endpoints_b_a.json"]);
    }

    /// The file writer: creates, leaves identical content alone, rewrites on change, never
    /// overwrites or removes an unmanaged file, deletes managed files, refuses path-like names.
    #[tokio::test]
    async fn file_writer() {
        let dir = std::env::temp_dir().join(format!(
            "meshsync-federation-file-writer-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let want = |ip: &str| {
            json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "fed", "namespace": "default",
                    "annotations": {"federation.tigera.io/serviceSelector": "run == 'x'"}},
                "subsets": [{"addresses": [{"ip": ip}]}]})
        };
        let path = dir.join("endpoints_default_fed.json");
        let outcome = apply_one_file(&dir, &action(Some(want("1.1.1.1")))).await;
        assert!(matches!(outcome, Ok(Outcome::Written)));
        let first = std::fs::read_to_string(&path).unwrap();
        assert!(
            first.ends_with("}\n") && first.contains("\n  \"subsets\""),
            "{first}"
        );
        let outcome = apply_one_file(&dir, &action(Some(want("1.1.1.1")))).await;
        assert!(matches!(outcome, Ok(Outcome::Unchanged)));
        let outcome = apply_one_file(&dir, &action(Some(want("2.2.2.2")))).await;
        assert!(matches!(outcome, Ok(Outcome::Written)));
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["subsets"][0]["addresses"][0]["ip"], "2.2.2.2");
        let outcome = apply_one_file(&dir, &action(None)).await;
        assert!(matches!(outcome, Ok(Outcome::Deleted)));
        assert!(!path.exists());
        let outcome = apply_one_file(&dir, &action(None)).await;
        assert!(matches!(outcome, Ok(Outcome::Unchanged)));

        let mine = r#"{"kind": "Endpoints", "metadata": {"name": "fed", "namespace": "default"}}"#;
        std::fs::write(&path, mine).unwrap();
        for desired in [Some(want("1.1.1.1")), None] {
            let outcome = apply_one_file(&dir, &action(desired)).await;
            assert!(matches!(outcome, Ok(Outcome::Unmanaged)));
            assert_eq!(std::fs::read_to_string(&path).unwrap(), mine);
        }

        for name in ["../escape", "", ".hidden", "a\\b", "a\0b"] {
            let mut bad = action(Some(want("1.1.1.1")));
            bad.name = name.into();
            assert!(
                matches!(
                    apply_one_file(&dir, &bad).await,
                    Err(ApplyError::BadName(_))
                ),
                "{name:?}"
            );
        }
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["endpoints_default_fed.json"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
