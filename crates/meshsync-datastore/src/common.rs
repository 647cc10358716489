//! The skeleton every driver shares: what every source is configured with ([`SourceCommon`], as
//! kube-runtime's `watcher::Config` is shared by every watcher) and the one way a driver task
//! talks to its consumer ([`SourceTx`]).
//!
//! A driver's own configuration holds a `common: SourceCommon` beside what only it needs (a
//! directory, endpoints, a kubeconfig), and its task owns a [`SourceTx`]. The invariant every
//! driver keeps: **no source stream ends on its own.** Whatever goes wrong (a missing directory,
//! an unreachable etcd, a forbidden API) is reported as `ConnectionFailed` and retried with
//! [`SourceCommon::backoff`]; the task ends only when the consumer drops the stream.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use meshsync_model::jittered_backoff;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::validate::ValueLimits;
use crate::{ClusterName, ResourceKey, SourceCounters, SourceEvent, SourceStatus};

/// A started source, whichever its driver.
pub type SourceStream = Pin<Box<dyn Stream<Item = SourceEvent> + Send>>;

/// Capacity of a source's event channel: a slow consumer slows the driver, no queue grows.
const EVENT_CHANNEL_CAPACITY: usize = 1024;

/// How long a driver waits between failed attempts: jittered, growing from `min` to `max`
/// ([`meshsync_model::jittered_backoff`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (0 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        jittered_backoff(self.min, self.max, attempt)
    }
}

impl Default for Backoff {
    /// 0.5 s, doubling up to 10 s.
    fn default() -> Self {
        Backoff {
            min: Duration::from_millis(500),
            max: Duration::from_secs(10),
        }
    }
}

/// What every source is configured with, whichever its driver.
#[derive(Clone, Debug)]
pub struct SourceCommon {
    /// The cluster the objects belong to; `""` for the local cluster.
    pub cluster: ClusterName,
    /// Only these kinds are emitted (`None`: every kind the driver knows).
    pub kinds: Option<HashSet<String>>,
    /// Values larger or deeper are refused (logged, counted). Default 1 MiB, depth 64.
    pub limits: ValueLimits,
    /// Retry delays after a failure (connection, listing, missing directory).
    pub backoff: Backoff,
    /// What this source refused (invalid values, malformed keys, oversized files); shared with
    /// readers (`/metrics`), and usually between every source of a process.
    pub counters: Arc<SourceCounters>,
}

impl SourceCommon {
    /// Every kind, the default limits and backoff, fresh counters.
    pub fn new(cluster: ClusterName) -> Self {
        SourceCommon {
            cluster,
            kinds: None,
            limits: ValueLimits::default(),
            backoff: Backoff::default(),
            counters: Arc::default(),
        }
    }

    /// Whether objects of `key`'s kind are emitted.
    pub fn wants(&self, key: &ResourceKey) -> bool {
        self.kinds.as_ref().is_none_or(|k| k.contains(key.kind()))
    }

    /// Whether `event` is emitted: everything but the objects of unwanted kinds.
    pub fn wants_event(&self, event: &SourceEvent) -> bool {
        match event {
            SourceEvent::Upsert { key, .. }
            | SourceEvent::Delete { key, .. }
            | SourceEvent::Unreadable { key, .. } => self.wants(key),
            _ => true,
        }
    }
}

/// The consumer dropped the stream: the driver stops.
#[derive(Debug)]
pub struct Closed;

/// A driver's end of its source stream: sends events, sends a status only when it changes, and
/// tells when the consumer has gone.
#[derive(Debug)]
pub struct SourceTx {
    tx: mpsc::Sender<SourceEvent>,
    cluster: ClusterName,
    status: Option<SourceStatus>,
}

impl SourceTx {
    /// A bounded channel for `cluster`'s events: the driver's end and the consumer's stream.
    pub fn channel(cluster: ClusterName) -> (SourceTx, ReceiverStream<SourceEvent>) {
        let (tx, rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let tx = SourceTx {
            tx,
            cluster,
            status: None,
        };
        (tx, ReceiverStream::new(rx))
    }

    /// The cluster this source reports for.
    pub fn cluster(&self) -> &ClusterName {
        &self.cluster
    }

    /// Sends one event, waiting while the consumer is behind.
    pub async fn send(&self, event: SourceEvent) -> Result<(), Closed> {
        self.tx.send(event).await.map_err(|_| Closed)
    }

    /// Sends `status` unless it is the one last sent.
    pub async fn set_status(&mut self, status: SourceStatus) -> Result<(), Closed> {
        if self.status.as_ref() == Some(&status) {
            return Ok(());
        }
        self.status = Some(status.clone());
        self.send(SourceEvent::Status {
            cluster: self.cluster.clone(),
            status,
        })
        .await
    }

    /// The status last sent.
    pub fn status(&self) -> Option<&SourceStatus> {
        self.status.as_ref()
    }

    /// Resolves when the consumer has dropped the stream.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Waits `delay` (a backoff), or fails early when the consumer has gone.
    pub async fn sleep(&self, delay: Duration) -> Result<(), Closed> {
        tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(()),
            _ = self.tx.closed() => Err(Closed),
        }
    }
}
