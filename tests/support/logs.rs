//! Capturing this test binary's own log lines (warnings and errors) to check what is reported.
//! One global subscriber per binary; tests tell their lines apart by the unique names they use.
#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The captured text so far (installs the capture on first use).
pub fn captured() -> String {
    let logs = sink();
    let bytes = logs.lock().unwrap_or_else(|e| e.into_inner()).clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Installs the capture; call before starting what should be observed.
pub fn install() {
    let _ = sink();
}

/// The captured lines containing every one of `needles`.
pub fn lines_with(needles: &[&str]) -> Vec<String> {
    captured()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_owned)
        .collect()
}

/// Waits (up to `timeout`) until at least one captured line contains all of `needles`.
pub async fn wait_for_line(needles: &[&str], timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let lines = lines_with(needles);
        if !lines.is_empty() {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needles:?} within {timeout:?}; captured:\n{}",
            captured()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Shows this binary's own log lines in the test output instead (filter `MESHSYNC_TEST_LOG`,
/// default `warn`); for tests that check what happens, not what is logged.
pub fn show_in_test_output() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MESHSYNC_TEST_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

fn sink() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || Sink(sink.clone()))
            .try_init()
            .expect("install the log capture");
        logs
    })
    .clone()
}
