//! One configuration schema from three places: flags, `MESHSYNC_*` variables and an optional
//! YAML file (`serve --config FILE`, or `MESHSYNC_CONFIG`), in that order of precedence, over the
//! defaults.
//!
//! Why through clap: the flags *are* the schema (names, types, defaults, help, validation), so the
//! file cannot drift from them. A file's keys are the long flag names without `--`
//! (`max-connections: 5000`, `tls-cert-file: /etc/meshsync/tls.crt`); each key is checked against
//! the subcommand's flags (an unknown key is an error naming it and the file), and each value is
//! handed to clap as if it had been typed, but only where neither the command line nor the
//! environment set that flag. clap's own errors then name the setting; they are prefixed with the
//! file when a file value caused them. `serve --print-config` prints the effective value of every
//! setting and where it came from, secrets redacted.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

/// The subcommand that takes `--config`.
const CONFIGURABLE: &str = "serve";
/// Settings whose values are never printed.
const SECRETS: &[&str] = &["etcd-password"];

/// The config file and the settings it supplied (for `--print-config`).
pub type FileSettings = (PathBuf, Vec<String>);

/// `argv` with the config file's settings added where the command line and environment are
/// silent, or an error naming the bad setting. Also returns the file's path and the settings it
/// supplied, for `--print-config`.
pub fn merged_args(
    command: &Command,
    argv: Vec<OsString>,
) -> anyhow::Result<(Vec<OsString>, Option<FileSettings>)> {
    // A first parse only to see which subcommand runs, which flags were given and the file —
    // with nothing required, since the file may supply what is (`datastore`).
    let lenient = command.clone().mut_subcommand(CONFIGURABLE, |sub| {
        let ids: Vec<clap::Id> = sub.get_arguments().map(|a| a.get_id().clone()).collect();
        ids.into_iter()
            .fold(sub, |sub, id| sub.mut_arg(id, |a| a.required(false)))
    });
    let Ok(matches) = lenient.try_get_matches_from(&argv) else {
        // Let the real parse report it.
        return Ok((argv, None));
    };
    let Some((name, sub)) = matches.subcommand() else {
        return Ok((argv, None));
    };
    if name != CONFIGURABLE {
        return Ok((argv, None));
    }
    let Some(path) = sub.get_one::<PathBuf>("config").cloned() else {
        return Ok((argv, None));
    };
    // A regular file of bounded size: a FIFO or a device would hang or exhaust the start.
    let bytes = meshsync_server::read_small_file(&path, meshsync_server::MAX_SMALL_FILE_BYTES)
        .with_context(|| format!("cannot read --config {}", path.display()))?;
    let text = String::from_utf8(bytes)
        .with_context(|| format!("cannot read --config {}: not UTF-8", path.display()))?;
    let settings = parse_file(&path, &text)?;
    let Some(sub_command) = command.find_subcommand(CONFIGURABLE) else {
        return Ok((argv, None));
    };
    let mut extra: Vec<OsString> = Vec::new();
    let mut supplied = Vec::new();
    for (key, value) in settings {
        let Some(arg) = sub_command
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
        else {
            let mut known: Vec<&str> = sub_command
                .get_arguments()
                .filter_map(|a| a.get_long())
                .filter(|l| !matches!(*l, "config" | "print-config" | "help"))
                .collect();
            known.sort_unstable();
            anyhow::bail!(
                "{}: unknown setting `{key}` (settings are serve's flags without `--`: {})",
                path.display(),
                known.join(", ")
            );
        };
        if matches!(key.as_str(), "config" | "print-config") {
            anyhow::bail!("{}: `{key}` cannot be set in the file", path.display());
        }
        let id = arg.get_id().as_str();
        if matches!(
            sub.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let flag = format!("--{key}");
        match value {
            Value::Bool(true) => extra.push(flag.into()),
            Value::Bool(false) => {}
            Value::One(v) => {
                extra.push(flag.into());
                extra.push(v.into());
            }
            Value::Many(list) => {
                for v in list {
                    extra.push(flag.clone().into());
                    extra.push(v.into());
                }
            }
        }
        supplied.push(key);
    }
    // The subcommand's own arguments go after it, so insert right after `serve`.
    let at = argv
        .iter()
        .position(|a| a == CONFIGURABLE)
        .map_or(argv.len(), |i| i + 1);
    let mut merged = argv;
    let tail = merged.split_off(at);
    merged.extend(extra);
    merged.extend(tail);
    Ok((merged, Some((path, supplied))))
}

/// A setting's value as the file gives it.
enum Value {
    Bool(bool),
    One(String),
    Many(Vec<String>),
}

fn parse_file(path: &Path, text: &str) -> anyhow::Result<Vec<(String, Value)>> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
    };
    let doc: serde_json::Value = serde_saphyr::from_str_with_options(text, options)
        .with_context(|| format!("{}: not YAML", path.display()))?;
    let map = match doc {
        serde_json::Value::Object(map) => map,
        serde_json::Value::Null => return Ok(Vec::new()),
        _ => anyhow::bail!("{}: must be a mapping of settings", path.display()),
    };
    let scalar = |key: &str, v: &serde_json::Value| -> anyhow::Result<String> {
        match v {
            serde_json::Value::String(s) => Ok(s.clone()),
            serde_json::Value::Number(n) => Ok(n.to_string()),
            serde_json::Value::Bool(b) => Ok(b.to_string()),
            _ => anyhow::bail!(
                "{}: `{key}` must be a string, a number or a boolean",
                path.display()
            ),
        }
    };
    let mut out = Vec::new();
    for (key, v) in map {
        let value = match &v {
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Array(list) => Value::Many(
                list.iter()
                    .map(|item| scalar(&key, item))
                    .collect::<anyhow::Result<_>>()?,
            ),
            serde_json::Value::Null => continue,
            other => Value::One(scalar(&key, other)?),
        };
        out.push((key, value));
    }
    Ok(out)
}

/// The effective configuration of `serve`, one `key: value  # source` line per setting, secrets
/// redacted.
pub fn print_config(command: &Command, sub: &ArgMatches, file: Option<&FileSettings>) -> String {
    let Some(serve) = command.find_subcommand(CONFIGURABLE) else {
        return String::new();
    };
    let mut out = String::from(
        "# meshsync serve: effective configuration (flag > MESHSYNC_* > --config file > default)\n",
    );
    for arg in serve.get_arguments() {
        let Some(long) = arg.get_long() else {
            continue;
        };
        if matches!(long, "config" | "print-config" | "help") {
            continue;
        }
        let id = arg.get_id().as_str();
        let values: Vec<String> = sub
            .get_raw(id)
            .map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let source = match sub.value_source(id) {
            Some(ValueSource::CommandLine)
                if file.is_some_and(|(_, keys)| keys.iter().any(|k| k == long)) =>
            {
                "config file"
            }
            Some(ValueSource::CommandLine) => "flag",
            Some(ValueSource::EnvVariable) => "environment",
            Some(ValueSource::DefaultValue) => "default",
            _ => "unset",
        };
        let shown = if values.is_empty() {
            "~".to_string()
        } else if SECRETS.contains(&long) {
            "\"<redacted>\"".to_string()
        } else if values.len() == 1 {
            yaml_scalar(&values[0])
        } else {
            format!(
                "[{}]",
                values
                    .iter()
                    .map(|v| yaml_scalar(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        out.push_str(&format!("{long}: {shown}  # {source}\n"));
    }
    out
}

/// Numbers and booleans bare, everything else quoted.
fn yaml_scalar(v: &str) -> String {
    if v == "true" || v == "false" || v.parse::<f64>().is_ok_and(f64::is_finite) {
        return v.to_string();
    }
    serde_json::to_string(v).unwrap_or_else(|_| format!("{v:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_are_scalars_lists_and_booleans() {
        let settings = parse_file(
            Path::new("c.yaml"),
            "max-connections: 5\nfederation: true\nno-health: false\nlisten: 127.0.0.1:1\n",
        )
        .unwrap();
        let mut keys: Vec<&str> = settings.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["federation", "listen", "max-connections", "no-health"]
        );
        assert!(parse_file(Path::new("c.yaml"), "- a\n- b\n").is_err());
        assert!(parse_file(Path::new("c.yaml"), "a: {b: 1}\n").is_err());
    }
}
