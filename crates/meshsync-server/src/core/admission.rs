//! Admission: whether a new agent may have a session, and how it starts.
//!
//! The same for every front end: the connection limit in force (this replica's share when
//! rebalancing), the counters, the agent registry, and the start of the session — a resume from
//! the retained history (with its private-repair reservation), anti-entropy against the agent's
//! mirror, or the shared full snapshot. The front end has already checked its request's own
//! fields and parsed the subscription; it logs the admitted session with what it negotiated.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::Stream;
use meshsync_cache::{Breadcrumb, Encoding, Subscription};
use tracing::warn;

use super::ServerCore;
use super::accept::ConnState;
use super::agents::Registered;
use super::connections::ConnectionGuard;
use super::repairs::RepairSlot;
use super::session::{Session, SessionItem};
use super::streams::{Position, StreamShared};

/// How a session starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SyncPath {
    /// The shared full snapshot.
    Full,
    /// One coalesced difference from the agent's resume point (this server, this epoch).
    Resume,
    /// The agent's differing buckets (its mirror's digests against the head).
    AntiEntropy,
}

impl SyncPath {
    /// `full` / `resume` / `anti-entropy`, for log lines.
    pub(crate) fn name(self) -> &'static str {
        match self {
            SyncPath::Full => "full",
            SyncPath::Resume => "resume",
            SyncPath::AntiEntropy => "anti-entropy",
        }
    }
}

/// An agent asking for a session.
pub(crate) struct Applicant<'a> {
    pub(crate) peer: &'a str,
    /// Already escaped for logging ([`meshsync_proto::LogSafe`]).
    pub(crate) node: &'a str,
    pub(crate) sub: Subscription,
    /// The front end's protocol, for the registry and `/metrics` (`grpc`, `typha`).
    pub(crate) protocol: &'static str,
    /// The connection it came on (its kill switch, its identity), when the core accepted it.
    pub(crate) conn: Option<Arc<ConnState>>,
    /// `(epoch, seq)` of the cut the agent holds, if it asks to resume.
    pub(crate) resume: Option<(u64, u64)>,
    /// The agent sent its mirror's digests (anti-entropy when it cannot resume).
    pub(crate) has_mirror: bool,
    /// The agent is told why it should go and where (gRPC's `Reconnect`), rather than only
    /// closed.
    pub(crate) reconnect_capable: bool,
}

/// Why an agent was refused: the message its front end sends it.
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) String);

/// An admitted agent: holds its slot of the connection limit and its registry entry until its
/// session ends.
pub(crate) struct Admitted {
    pub(crate) path: SyncPath,
    /// Why the agent did not resume (for the log line), when it did not.
    pub(crate) not_resumed: Option<String>,
    /// The id of the agent's registry entry (and of its stream, in `Report`s).
    pub(crate) stream_id: u64,
    pub(crate) epoch: u64,
    sub: Subscription,
    shared: Arc<StreamShared>,
    repair: Option<RepairSlot>,
    guard: ConnectionGuard,
    registered: Registered,
}

impl ServerCore {
    /// Admits `applicant` or says why not. See the module documentation.
    pub(crate) fn admit(&self, applicant: Applicant<'_>) -> Result<Admitted, Refused> {
        let Applicant {
            peer,
            node,
            sub,
            conn,
            ..
        } = applicant;
        let limit = self.limit.get();
        let Some(guard) = self.connections.try_acquire(limit) else {
            return Err(self.refuse_at_limit(peer, node, limit));
        };
        self.connections.accepted.fetch_add(1, Ordering::Relaxed);
        let resume = self.resume_point(applicant.resume, sub, peer, node);
        let path = match &resume {
            Ok(_) => SyncPath::Resume,
            Err(_) if applicant.has_mirror => SyncPath::AntiEntropy,
            Err(_) => SyncPath::Full,
        };
        let counter = match path {
            SyncPath::Resume => &self.connections.resumed,
            SyncPath::AntiEntropy => &self.connections.anti_entropy,
            SyncPath::Full => &self.connections.full_snapshots,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let registered = self.connections.agents.register(
            node.to_string(),
            peer.to_string(),
            sub,
            applicant.protocol,
            conn.clone(),
        );
        let shared = Arc::new(StreamShared::new(
            peer.to_string(),
            node.to_string(),
            conn,
            applicant.reconnect_capable,
        ));
        let (repair, not_resumed) = match resume {
            Ok((from, slot)) => {
                // The session's first step sends one coalesced difference from there to the head.
                *shared.position() = Position::Released {
                    seq: from.seq,
                    snapshot: from.snapshot.clone(),
                };
                (Some(slot), None)
            }
            Err(why) => (None, Some(why)),
        };
        self.streams.register(&shared);
        Ok(Admitted {
            path,
            not_resumed,
            stream_id: registered.id,
            epoch: self.cache.epoch(),
            sub,
            shared,
            repair,
            guard,
            registered,
        })
    }

    /// Counts and logs a refusal at the connection limit, naming this replica's share and
    /// another replica when rebalancing knows one.
    fn refuse_at_limit(&self, peer: &str, node: &str, limit: usize) -> Refused {
        self.connections
            .refused_limit
            .fetch_add(1, Ordering::Relaxed);
        warn!(peer = %peer, node = %node, limit, max_connections = self.max_connections,
            "connection limit reached; subscription refused");
        let replicas = self.limit.replicas.load(Ordering::Acquire);
        let share = if limit < self.max_connections && replicas > 1 {
            format!(", this replica's share among {replicas} replicas")
        } else {
            String::new()
        };
        let elsewhere = self
            .limit
            .elsewhere()
            .map(|a| format!(", e.g. {a}"))
            .unwrap_or_default();
        Refused(format!(
            "server is at its connection limit ({limit}{share}); try another server{elsewhere}"
        ))
    }

    /// Where a resuming agent continues from, with its reservation of a private repair (for the
    /// stream of `node` at `peer`), or why it gets a full snapshot.
    fn resume_point(
        &self,
        token: Option<(u64, u64)>,
        sub: Subscription,
        peer: &str,
        node: &str,
    ) -> Result<(Arc<Breadcrumb>, RepairSlot), String> {
        let Some((epoch, seq)) = token else {
            return Err("no resume token".into());
        };
        if epoch != self.cache.epoch() {
            return Err("resume token of another server or an earlier run".into());
        }
        let from = self.cache.resume_point(seq).ok_or_else(|| {
            let (oldest, _) = self.cache.history_span();
            format!(
                "resume token seq {seq} is outside the retained history (seq {oldest} to {})",
                self.cache.head().seq
            )
        })?;
        // The difference is encoded for this stream alone; the snapshot is shared.
        let Some(entries) = self.cache.private_resume_size(&from, sub) else {
            return Err(format!(
                "more than 1/{} of the snapshot changed since seq {seq}: the shared snapshot is cheaper",
                meshsync_cache::REPAIR_SHARE_DIVISOR,
            ));
        };
        let slot = self
            .connections
            .reserve_private_repair(
                peer,
                node,
                "resume",
                entries as u64,
                self.cache.head().status.total_keys(),
            )
            .map_err(|refusal| refusal.reason())?;
        Ok((from, slot))
    }
}

impl Admitted {
    /// The agent's session in `encoding`: `first` (the front end's hello), then the snapshot (or
    /// the resume's difference, or the anti-entropy repair of `mirror`), the status and every
    /// later breadcrumb. Holds the agent's slot and registry entry until dropped.
    pub(crate) fn session<E: Encoding>(
        self,
        core: &ServerCore,
        encoding: E,
        first: Vec<E::Unit>,
        mirror: Option<Vec<meshsync_proto::BucketDigests>>,
    ) -> impl Stream<Item = SessionItem<E::Unit>> + Send + use<E> {
        Session {
            shared: self.shared,
            sub: self.sub,
            encoding,
            cache: core.cache.clone(),
            first,
            mirror: mirror.filter(|_| self.path == SyncPath::AntiEntropy),
            repair: self.repair,
            connections: core.connections.clone(),
            lag_limit: core.lag_limit,
            shutdown: core.shutdown.clone(),
            _guard: self.guard,
            _registered: self.registered,
        }
        .into_stream()
    }
}
