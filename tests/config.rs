#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;
// One configuration schema from flags, MESHSYNC_* variables and a YAML file (issue 13), with the
// real binary: precedence flag > environment > file > default, `--print-config` with each value's
// source and secrets redacted, errors naming the setting (and the file), and a server that runs
// with what the file says.

use std::time::Duration;

use support::binary::{Serve, meshsync, run};

fn print_config(file: &std::path::Path, env: &[(&str, &str)], flags: &[&str]) -> String {
    let mut cmd = meshsync();
    cmd.args(["serve", "--datastore", "file:/nonexistent", "--config"])
        .arg(file)
        .args(flags)
        .arg("--print-config");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let done = run(&mut cmd, Duration::from_secs(20));
    assert!(done.status.success(), "{}", done.describe());
    done.stdout
}

fn line<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
}

#[test]
fn flags_beat_the_environment_which_beats_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("meshsync.yaml");
    std::fs::write(
        &file,
        "max-connections: 7\nmax-batch: 8\nlisten: 127.0.0.1:6000\netcd-password: hunter2\nno-health: true\n",
    )
    .unwrap();
    let out = print_config(
        &file,
        &[
            ("MESHSYNC_MAX_BATCH", "9"),
            ("MESHSYNC_LISTEN", "127.0.0.1:7000"),
        ],
        &["--listen", "127.0.0.1:8000"],
    );
    assert_eq!(
        line(&out, "max-connections"),
        "max-connections: 7  # config file"
    );
    assert_eq!(line(&out, "max-batch"), "max-batch: 9  # environment");
    assert_eq!(line(&out, "listen"), "listen: \"127.0.0.1:8000\"  # flag");
    assert_eq!(line(&out, "no-health"), "no-health: true  # config file");
    assert_eq!(line(&out, "write-timeout"), "write-timeout: 120  # default");
    assert_eq!(
        line(&out, "etcd-password"),
        "etcd-password: \"<redacted>\"  # config file"
    );
    assert!(!out.contains("hunter2"), "secrets never printed:\n{out}");
}

#[test]
fn bad_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for (text, needles) in [
        (
            "max-conections: 7\n",
            &["unknown setting `max-conections`", "meshsync.yaml"][..],
        ),
        (
            "max-connections: lots\n",
            &["--max-connections", "meshsync.yaml", "lots"][..],
        ),
        (
            "- just\n- a list\n",
            &["must be a mapping", "meshsync.yaml"][..],
        ),
        ("listen: [1, {a: b}]\n", &["`listen`", "meshsync.yaml"][..]),
    ] {
        let file = dir.path().join("meshsync.yaml");
        std::fs::write(&file, text).unwrap();
        let mut cmd = meshsync();
        cmd.args(["serve", "--datastore", "file:/nonexistent", "--config"])
            .arg(&file);
        let done = run(&mut cmd, Duration::from_secs(20));
        assert!(
            !done.status.success(),
            "{text:?} must fail: {}",
            done.describe()
        );
        for n in needles {
            assert!(
                done.stderr.contains(n),
                "{text:?}: {n:?} not in {}",
                done.stderr
            );
        }
    }
}

#[test]
fn a_server_runs_with_what_its_file_says() {
    let mesh = support::copy_example_mesh();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("meshsync.yaml");
    std::fs::write(
        &file,
        format!(
            "datastore: file:{}\nlisten: 127.0.0.1:0\nhealth-listen: 127.0.0.1:0\nmax-connections: 3\n",
            mesh.path().join("cluster-a").display()
        ),
    )
    .unwrap();
    let mut cmd = meshsync();
    cmd.arg("serve").arg("--config").arg(&file);
    let mut serve = Serve::spawn(cmd);
    let serving = serve.wait_serving();
    assert!(serving.contains("grpc=127.0.0.1:"), "{serving}");
    serve.wait_line("in sync", |l| {
        l.contains("Sending in-sync update for local datastore")
    });
}
