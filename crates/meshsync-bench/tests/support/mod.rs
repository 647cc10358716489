//! Running a scenario through the real `meshsync-bench` binary, as an operator does, and reading
//! back what it wrote: shared by the scenario tests (each test binary uses part of it).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The `meshsync` binary next to this one (`cargo test --workspace` builds it for the root
/// package's tests).
pub fn meshsync_bin() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_meshsync-bench"));
    let bin = bench.with_file_name("meshsync");
    assert!(
        bin.exists(),
        "no meshsync binary at {}: run the workspace's tests (cargo test --workspace), which build it",
        bin.display()
    );
    bin
}

/// What a run left: its `results.json`, its `results.md` and its stderr.
pub struct Run {
    pub json: serde_json::Value,
    pub md: String,
    pub stderr: String,
}

/// `meshsync-bench run <args> --meshsync-bin … --out <tmp>`, which must succeed.
pub fn run_bench(args: &[&str]) -> Run {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_meshsync-bench"))
        .arg("run")
        .args(args)
        .arg("--meshsync-bin")
        .arg(meshsync_bin())
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "meshsync-bench failed:\n{stderr}");
    let dir = std::fs::read_dir(out.path())
        .unwrap()
        .next()
        .expect("a results folder")
        .unwrap()
        .path();
    let json =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    let md = std::fs::read_to_string(dir.join("results.md")).unwrap();
    Run { json, md, stderr }
}
