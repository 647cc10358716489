//! The state of one remote cluster, and of the local in-sync gate, as the manager keeps them.
//!
//! Explicit enums in the style of kube-runtime's `watcher::State`: a remote either runs a source
//! (and is healthy, lost, or lost long enough to have its data withdrawn) or is incomplete and
//! runs nothing; the local in-sync is pending, held for some remotes, or open.

use std::collections::HashSet;

use tokio::time::Instant;

use crate::error::ConfigError;
use crate::rcc::{Rcc, RemoteConfig};

/// One RCC and what the manager does about it.
pub(crate) struct Remote {
    pub(crate) rcc: Rcc,
    pub(crate) state: RemoteState,
    /// Still holds the local in-sync back (until its first InSync, its first failure, or it
    /// stops).
    pub(crate) holds_gate: bool,
}

/// Whether a remote's source runs.
pub(crate) enum RemoteState {
    /// Just added; its configuration is resolved next.
    New,
    /// No source runs: the RCC is incomplete or refused.
    Incomplete(ConfigError),
    /// A source runs with this configuration (boxed: a datastore description is large).
    Running {
        config: Box<RemoteConfig>,
        link: Link,
    },
}

/// What a running remote's source last said about its connection, for the lost-cluster policy.
pub(crate) enum Link {
    /// Connecting, listing or in sync.
    Up,
    /// `ConnectionFailed`: its data is kept; with `withdraw` it goes at `withdraw_at`.
    Lost {
        reason: String,
        withdraw_at: Option<Instant>,
    },
    /// Lost for longer than the grace period: its data was withdrawn, to be restored by a full
    /// listing: the one its source started after reconnecting (`relisting`: the etcd source
    /// relists on reconnect), or, for a source that resumes without one (the Kubernetes
    /// watchers), a restart of the source when it is in sync again.
    Withdrawn { relisting: bool },
}

impl Remote {
    /// A new RCC, before its configuration is resolved.
    pub(crate) fn new(rcc: Rcc) -> Self {
        Remote {
            rcc,
            state: RemoteState::New,
            holds_gate: true,
        }
    }

    pub(crate) fn is_running(&self) -> bool {
        matches!(self.state, RemoteState::Running { .. })
    }

    /// The running configuration, if a source runs.
    pub(crate) fn running_config(&self) -> Option<&RemoteConfig> {
        match &self.state {
            RemoteState::Running { config, .. } => Some(config),
            RemoteState::New | RemoteState::Incomplete(_) => None,
        }
    }

    /// When its data is due to be withdrawn, if it is lost under a `withdraw` policy.
    pub(crate) fn withdraw_at(&self) -> Option<Instant> {
        match &self.state {
            RemoteState::Running {
                link: Link::Lost { withdraw_at, .. },
                ..
            } => *withdraw_at,
            _ => None,
        }
    }

    /// True while its data is withdrawn.
    pub(crate) fn is_withdrawn(&self) -> bool {
        matches!(
            self.state,
            RemoteState::Running {
                link: Link::Withdrawn { .. },
                ..
            }
        )
    }
}

/// The local in-sync gate (as Calico's remote-cluster syncer: the local in-sync waits for the
/// remotes known when the local datastore first synced).
pub(crate) enum LocalGate {
    /// The local datastore has not reported InSync yet.
    Pending,
    /// Its InSync is held until these remotes are in sync or have failed.
    Holding(HashSet<String>),
    /// InSync passes through (later remotes never delay it).
    Open,
}
