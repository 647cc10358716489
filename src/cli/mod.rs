//! The subcommands, one file each.

pub mod agent;
pub mod common;
pub mod connect;
pub mod etcd_flags;
pub mod eval;
pub mod federate;
pub mod selector;
pub mod serve;
pub mod status;
pub mod tls_flags;

/// The longest time any flag of seconds accepts: beyond it `Duration` and `Instant` arithmetic
/// overflow (and panic), and nothing sensible waits that long.
pub const MAX_SECONDS: f64 = 100.0 * 365.0 * 24.0 * 3600.0;

/// A flag given in seconds as a `Duration`: finite, at least `min` (0 or a positive floor), at
/// most [`MAX_SECONDS`]; an error naming the flag otherwise.
pub fn seconds(flag: &str, secs: f64, positive: bool) -> anyhow::Result<std::time::Duration> {
    let low_ok = if positive { secs > 0.0 } else { secs >= 0.0 };
    anyhow::ensure!(
        secs.is_finite() && low_ok && secs <= MAX_SECONDS,
        "{flag} must be a {} number of seconds up to {MAX_SECONDS}, got {secs:?}",
        if positive { "positive" } else { "non-negative" }
    );
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
