//! The container image ships a stripped binary: the Dockerfile's build step must use a Cargo
//! profile that drops line tables and symbols (the release profile keeps line tables, which made
//! the image's binary about six times larger than it needs to be).
//!
//! There is no container engine on the test machines, so this reads the two files the image build
//! is made of — `docker/Dockerfile` and the workspace `Cargo.toml` — and checks that they agree.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::path::Path;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The value of `--profile NAME` in the Dockerfile's `cargo build` of the meshsync binary
/// (`--release` counts as the `release` profile), and the path it installs from.
fn dockerfile_build() -> (String, String) {
    let dockerfile = read("docker/Dockerfile");
    let joined = dockerfile.replace("\\\n", " ");
    let build = joined
        .lines()
        .find(|l| l.contains("cargo build") && l.contains("--bin meshsync"))
        .expect("the Dockerfile builds the meshsync binary with cargo build");
    let words: Vec<&str> = build.split_whitespace().collect();
    let profile = if words.contains(&"--release") {
        "release".to_string()
    } else {
        let at = words
            .iter()
            .position(|w| *w == "--profile")
            .expect("cargo build names its profile");
        words[at + 1].to_string()
    };
    let installed = words
        .iter()
        .find(|w| w.starts_with("target/") && w.ends_with("/meshsync"))
        .expect("the build step installs target/<profile>/meshsync")
        .to_string();
    (profile, installed)
}

/// The value of `key` in `[profile.NAME]` of the workspace manifest, following `inherits`, as
/// written (`"symbols"`, `false`). Cargo's profile tables are flat `key = value` lines, which is
/// all this reads.
fn profile_setting(manifest: &str, profile: &str, key: &str) -> Option<String> {
    let header = format!("[profile.{profile}]");
    let mut lines = manifest.lines().skip_while(|l| l.trim() != header);
    lines.next()?;
    let table: Vec<(String, String)> = lines
        .take_while(|l| !l.trim_start().starts_with('['))
        .filter_map(|l| {
            let l = l.split('#').next().unwrap_or("");
            let (k, v) = l.split_once('=')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let get = |k: &str| {
        table
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
    };
    get(key).or_else(|| {
        let parent = get("inherits")?;
        profile_setting(manifest, parent.trim_matches('"'), key)
    })
}

#[test]
fn the_image_ships_a_binary_without_line_tables_or_symbols() {
    let (profile, installed) = dockerfile_build();
    let dir = if profile == "dev" { "debug" } else { &profile };
    assert_eq!(
        installed,
        format!("target/{dir}/meshsync"),
        "the image must install what its build step built"
    );
    let manifest = read("Cargo.toml");
    let strip = profile_setting(&manifest, &profile, "strip");
    assert!(
        matches!(strip.as_deref(), Some("\"symbols\"" | "true")),
        "profile {profile} must strip symbols, has strip = {strip:?}"
    );
    let debug = profile_setting(&manifest, &profile, "debug");
    assert!(
        matches!(debug.as_deref(), None | Some("false" | "0" | "\"none\"")),
        "profile {profile} must not keep debug information, has debug = {debug:?}"
    );
}
