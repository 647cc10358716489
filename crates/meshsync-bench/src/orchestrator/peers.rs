//! The binaries each system runs: meshsync's (and, for `meshsync-baseline`, the baseline build
//! given by `--baseline-bin`), and the peers built from Go modules by `scripts/peers.sh`
//! (`calico-typha` and the Typha clients `typha-bench-agents`). The peers are looked up once per
//! run, and only when a system needs them; when they are missing, that system fails with the
//! reason and the others run.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;

use super::RunArgs;
use crate::model::System;

/// Where the binaries are.
pub(super) struct Bins {
    meshsync: PathBuf,
    /// `--baseline-bin`: the server of the `meshsync-baseline` system.
    meshsync_baseline: Option<PathBuf>,
    /// The peers' `bin` folder, or why there is none.
    peers: Result<PathBuf, String>,
}

impl Bins {
    pub(super) fn new(meshsync: PathBuf, peers: Result<PathBuf, String>) -> Self {
        Bins {
            meshsync,
            meshsync_baseline: None,
            peers,
        }
    }

    /// The same, with the baseline build of meshsync (`--baseline-bin`).
    pub(super) fn with_baseline(mut self, baseline: Option<PathBuf>) -> Self {
        self.meshsync_baseline = baseline;
        self
    }

    /// The `meshsync` binary a meshsync system's server runs: the baseline build for
    /// `meshsync-baseline`, the current one for the others.
    pub(super) fn meshsync(&self, system: System) -> anyhow::Result<&Path> {
        if system != System::MeshsyncBaseline {
            return Ok(&self.meshsync);
        }
        self.meshsync_baseline.as_deref().ok_or_else(|| {
            anyhow::anyhow!("the meshsync-baseline system needs --baseline-bin PATH")
        })
    }

    /// The peer binary `name`, or why it cannot be run.
    pub(super) fn peer(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.peers.as_ref().map_err(|e| {
            anyhow::anyhow!("the peers built from Go modules are not available: {e}")
        })?;
        let path = dir.join(name);
        anyhow::ensure!(
            path.is_file(),
            "no {name} in {}; build the peers with scripts/peers.sh (needs Go >= 1.26) or pass \
             --peers-bin",
            dir.display()
        );
        Ok(path)
    }
}

/// The peers' `bin` folder: `--peers-bin` (or `MESHSYNC_PEERS_BIN`), else the last line printed
/// by `scripts/peers.sh` of the checkout this binary was built from (which builds what is
/// missing, showing its progress on stderr, and takes seconds when everything is built).
pub(super) async fn peers_bin(args: &RunArgs) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &args.peers_bin {
        anyhow::ensure!(
            dir.is_dir(),
            "--peers-bin {} is not a directory",
            dir.display()
        );
        return Ok(dir.clone());
    }
    let root = repo_root();
    let script = root.join("scripts").join("peers.sh");
    anyhow::ensure!(
        script.is_file(),
        "no --peers-bin, MESHSYNC_PEERS_BIN is not set, and there is no {} (this binary was built \
         from another checkout)",
        script.display()
    );
    eprintln!("building or finding the peers with {}…", script.display());
    let output = tokio::process::Command::new(&script)
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "{} failed ({}); its output is above",
        script.display(),
        output.status
    );
    last_line(&output.stdout)
        .map(PathBuf::from)
        .with_context(|| format!("{} printed no bin folder", script.display()))
}

/// The repository root this crate was built from.
fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// The last non-empty line of `out`, trimmed.
fn last_line(out: &[u8]) -> Option<String> {
    String::from_utf8_lossy(out)
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_line_of_the_script_and_the_repo_root() {
        assert_eq!(last_line(b"a\n/x/bin\n\n"), Some("/x/bin".into()));
        assert_eq!(last_line(b"\n \n"), None);
        assert!(repo_root().join("crates").join("meshsync-bench").is_dir());
    }

    #[test]
    fn a_missing_peer_is_an_error_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let bins = Bins::new(PathBuf::from("meshsync"), Ok(dir.path().to_path_buf()));
        let e = bins.peer("calico-typha").unwrap_err().to_string();
        assert!(
            e.contains("no calico-typha in") && e.contains("scripts/peers.sh"),
            "{e}"
        );
        std::fs::write(dir.path().join("calico-typha"), b"").unwrap();
        assert_eq!(
            bins.peer("calico-typha").unwrap(),
            dir.path().join("calico-typha")
        );
        let bins = Bins::new(PathBuf::from("meshsync"), Err("Go is not installed".into()));
        let e = bins.peer("calico-typha").unwrap_err().to_string();
        assert!(e.contains("Go is not installed"), "{e}");
    }
}
