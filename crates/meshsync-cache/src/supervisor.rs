//! Supervision of the cache's writer task.
//!
//! The writer is the only task that moves the cache forward, and it also polls the mesh and every
//! source (they are streams it drains). If it panics or its input ends, nothing reaches an agent
//! again, while every connection and the health port would happily carry on. A server in that
//! state must never look healthy: the [`Supervisor`] awaits the task, records the first failure
//! (logged once), and makes it visible to `/liveness` and to `meshsync serve`, which exits.

use std::sync::OnceLock;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::error;

/// Why the writer stopped. Set once; never cleared (a dead writer does not come back).
#[derive(Debug)]
pub struct Supervisor {
    failure: OnceLock<String>,
    failed_tx: watch::Sender<bool>,
}

impl Supervisor {
    pub(crate) fn new() -> Self {
        Supervisor {
            failure: OnceLock::new(),
            failed_tx: watch::channel(false).0,
        }
    }

    /// The failure, if the writer has stopped.
    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// Resolves once the writer has stopped, with the reason.
    pub async fn failed(&self) -> String {
        let mut rx = self.failed_tx.subscribe();
        let _ = rx.wait_for(|failed| *failed).await;
        self.failure()
            .unwrap_or("the cache writer stopped")
            .to_string()
    }

    /// Records a failure (the first one wins) and logs it once.
    pub(crate) fn fail(&self, reason: String) {
        if self.failure.set(reason.clone()).is_ok() {
            error!(error = %reason, "the cache writer stopped: no update can reach any agent; liveness fails from now on");
            self.failed_tx.send_replace(true);
        }
    }

    /// Watches the writer task: a panic or a return (its input, the mesh, ended) is a failure.
    pub(crate) async fn watch(&self, task: JoinHandle<()>) {
        let reason = match task.await {
            Ok(()) => {
                "its input ended (the local datastore's stream or the mesh stopped)".to_string()
            }
            Err(e) if e.is_panic() => format!("it panicked: {}", panic_message(e.into_panic())),
            Err(e) => format!("it was cancelled: {e}"),
        };
        self.fail(reason);
    }
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}
