//! Log setup: human-readable text by default (greppable: `grep "Sending in-sync update"`), JSON
//! lines with `--log-format json`. Logs go to stderr so stdout stays free for command output.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The default filter of the one-shot commands (`status`, `selector`, `eval`): their result goes
/// to stdout, and stderr says something only when something is wrong.
pub const ONE_SHOT_LEVEL: &str = "warn";

/// Installs the global subscriber. The filter comes from `--log-level` (or `MESHSYNC_LOG_LEVEL`),
/// in `tracing`'s directive syntax (`info`, `meshsync_cache=debug,info`).
///
/// Unless the filter names `kube_client`, its warnings are left out: it logs one line per broken
/// watch connection (`eof in poll`, dozens when an API server restarts), which the Kubernetes
/// source already reports once per resource, with the API's own message.
pub fn init(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let directives = if level.contains("kube_client") {
        level.to_string()
    } else {
        format!("{level},kube_client=error")
    };
    let filter = EnvFilter::try_new(&directives)
        .map_err(|e| anyhow::anyhow!("invalid --log-level {level:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
