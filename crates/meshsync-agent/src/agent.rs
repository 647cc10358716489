//! The reconnecting subscription: connect, subscribe, apply everything to the [`Mirror`], and on
//! any failure move to the next server after a jittered, growing backoff.
//!
//! The agent is a small state machine (`State`: connecting, backing off, streaming) driven by
//! [`Agent::next`]; a stream's snapshot has its own phase, because the status that ends a snapshot
//! is the one the mirror's digests are checked against.

use std::collections::VecDeque;
use std::time::Duration;

use futures::Stream;
use meshsync_model::{error_chain, jittered_backoff};
use meshsync_proto::{self as pb, LogSafe, sync_client::SyncClient};
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, warn};

use crate::codec::{Received, SubscribeCodec};

mod subscribed;

use crate::mirror::{DigestMismatch, Mirror, MirrorKey};
pub use subscribed::sync_path_name;
use subscribed::{Accepted, Incoming, SnapshotPhase, Subscribed, Violation, is_resume};

/// The capability an agent advertises to receive [`pb::Reconnect`].
pub const CAPABILITY_RECONNECT: &str = "reconnect";

/// How to reach the server(s) and what to ask for.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Server URLs (`http://host:port`); tried in order, moving on after a failure.
    pub servers: Vec<String>,
    pub node_name: String,
    /// Subscription type (`felix`, `all`, …).
    pub subscription: String,
    /// Clusters that must be in sync before the agent calls itself in sync.
    pub required_clusters: Vec<String>,
    pub connect_timeout: Duration,
    /// First reconnect delay; doubles per failed attempt up to `backoff_max`. Each delay is drawn
    /// between half and the whole of that.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Largest message accepted from the server.
    pub max_message_bytes: usize,
    /// TLS towards the server(s); `None`: plaintext.
    pub tls: Option<crate::ClientTls>,
    /// Compressions offered in the request (the server picks one and names it in the hello).
    /// Default: zstd, which the server compresses once per frame for every agent alike.
    pub accept_compression: Vec<pb::Compression>,
    /// Send a resume token when reconnecting with a verified mirror, so that the same server
    /// (same epoch, within its retained history) sends only what changed. Default: true.
    pub resume: bool,
    /// How often the agent tells its server what its mirror holds (`Report`), besides right after
    /// every in-sync. Zero: never.
    pub report_interval: Duration,
}

impl AgentConfig {
    pub fn new(server: impl Into<String>) -> Self {
        AgentConfig {
            servers: vec![server.into()],
            node_name: default_node_name(),
            subscription: "felix".into(),
            required_clusters: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            max_message_bytes: 64 << 20,
            tls: None,
            accept_compression: vec![pb::Compression::Zstd],
            resume: true,
            report_interval: Duration::from_secs(30),
        }
    }
}

fn default_node_name() -> String {
    std::env::var("NODENAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "meshsync-agent".into())
}

/// What happened, in the order it happened. Every event has already been applied to the mirror
/// when it is returned.
#[derive(Clone, Debug)]
pub enum AgentEvent {
    /// Subscribed; a full snapshot follows.
    Connected { server: String, hello: pb::Hello },
    /// One resource changed.
    Update(pb::Update),
    /// A key the new snapshot no longer contains was deleted from the mirror.
    Removed(MirrorKey),
    /// The server's status. `in_sync` is the mirror's view (including required clusters).
    Status { status: pb::Status, in_sync: bool },
    /// The mirror's digests disagree with the server's: the agent resubscribes.
    DigestMismatch(Vec<DigestMismatch>),
    /// The server asked the agent to move (it drains or sheds load): the agent reconnects to the
    /// next server — at once the first time; asked again before a stream delivered a verified
    /// snapshot, or within `backoff_max` of the last prompt move, after the usual backoff.
    Reconnect { server: String, reason: String },
    /// The connection failed or ended; the agent retries after `retry_in`.
    Disconnected {
        server: String,
        error: String,
        retry_in: Duration,
    },
}

/// Errors that retrying cannot fix.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("no server address given")]
    NoServers,
    #[error("invalid server address {server:?}: {reason}")]
    BadAddress { server: String, reason: String },
    #[error("server {server} refused the subscription: {message}")]
    Refused { server: String, message: String },
    #[error("{0}")]
    BadTls(String),
}

/// Where the agent is with its servers. Each turn of [`Agent::next`] takes one step from here, in
/// the style of kube-runtime's `watcher::State`.
enum State {
    /// Subscribe to the current server next: at the start, and once a backoff has passed.
    Connecting,
    /// The last attempt failed or the stream was lost (the server index has already moved on):
    /// wait `retry_in`, then connect.
    BackingOff { retry_in: Duration },
    /// Subscribed: receiving and applying the server's messages.
    Streaming(Box<Subscribed>),
}

/// A node agent's subscription and mirror.
pub struct Agent {
    config: AgentConfig,
    mirror: Mirror,
    state: State,
    /// Index of the current server in `config.servers` (moves on after every failure).
    server: usize,
    /// Failed attempts since the last verified snapshot; grows the backoff.
    attempt: u32,
    /// Events ready to be returned, in order.
    events: VecDeque<AgentEvent>,
    /// A stream delivered a verified snapshot since the agent last followed a `Reconnect` at once
    /// (true at the start).
    verified_since_move: bool,
    /// When the agent last followed a `Reconnect` at once.
    moved_at: Option<tokio::time::Instant>,
    /// The INFO lines said once per subscription (its hello, a `Reconnect`): each at most once
    /// per [`CHATTY_LOG_INTERVAL`].
    hello_log: LogBudget,
    reconnect_log: LogBudget,
}

/// Lines logged once per subscription are said at INFO at most once per this interval (the rest
/// at DEBUG, counted in the next INFO line): a server that makes the agent resubscribe in a loop
/// must not flood its log.
const CHATTY_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Rate limit for a log line: [`LogBudget::take`] says whether to log at INFO now, and how many
/// lines went to DEBUG since the last one.
#[derive(Default)]
struct LogBudget {
    last: Option<tokio::time::Instant>,
    suppressed: u64,
}

impl LogBudget {
    /// `Some(suppressed since the last INFO line)` when this line may be logged at INFO.
    fn take(&mut self, interval: Duration) -> Option<u64> {
        let now = tokio::time::Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < interval)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

impl Agent {
    pub fn new(config: AgentConfig) -> Result<Self, AgentError> {
        if config.servers.is_empty() {
            return Err(AgentError::NoServers);
        }
        for server in &config.servers {
            Endpoint::from_shared(server.clone()).map_err(|e| AgentError::BadAddress {
                server: server.clone(),
                reason: e.to_string(),
            })?;
        }
        if let Some(tls) = &config.tls
            && tls.cert_file.is_some() != tls.key_file.is_some()
        {
            return Err(AgentError::BadTls(
                crate::ConnectError::HalfIdentity.to_string(),
            ));
        }
        Ok(Agent {
            mirror: Mirror::new(config.required_clusters.clone()),
            config,
            state: State::Connecting,
            server: 0,
            attempt: 0,
            events: VecDeque::new(),
            verified_since_move: true,
            moved_at: None,
            hello_log: LogBudget::default(),
            reconnect_log: LogBudget::default(),
        })
    }

    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    /// The mirror, writable: for tests that corrupt it on purpose (divergence detection). For
    /// tests only (feature `test-support`).
    #[cfg(feature = "test-support")]
    pub fn mirror_mut_for_test(&mut self) -> &mut Mirror {
        &mut self.mirror
    }

    /// The next event. Connection problems are reported as [`AgentEvent::Disconnected`] and
    /// retried; only errors retrying cannot fix are returned as `Err`.
    ///
    /// Cancel-safe between steps: a caller that drops the future (a `select!` on a deadline)
    /// resumes where it was, except that an interrupted backoff is not waited out again.
    pub async fn next(&mut self) -> Result<AgentEvent, AgentError> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(event);
            }
            match &mut self.state {
                State::Connecting => self.connect().await?,
                State::BackingOff { retry_in } => {
                    let delay = *retry_in;
                    self.state = State::Connecting;
                    tokio::time::sleep(delay).await;
                }
                State::Streaming(subscribed) => {
                    if let Some(incoming) = subscribed.received.pop_front() {
                        self.apply(incoming);
                        continue;
                    }
                    // A quiet stream still reports on time (the mirror is at its last cut).
                    let reporting = subscribed.snapshot == SnapshotPhase::Following
                        && !self.config.report_interval.is_zero();
                    let message = tokio::select! {
                        message = subscribed.stream.message() => message,
                        () = &mut subscribed.report_timer, if reporting => {
                            if self.mirror.at_cut() && self.mirror.resume_token().is_some() {
                                self.report();
                            } else if let State::Streaming(s) = &mut self.state {
                                s.report_at(tokio::time::Instant::now() + self.config.report_interval);
                            }
                            continue;
                        }
                    };
                    let received = match message {
                        Ok(Some(Received::Event(event))) => subscribed.receive(event),
                        Ok(Some(Received::Refused(e))) => Err(Violation::Refused(e)),
                        Ok(None) => {
                            self.lost("server closed the stream".into());
                            continue;
                        }
                        Err(status) => {
                            self.lost(describe(&status));
                            continue;
                        }
                    };
                    if let Err(e) = received {
                        // What the message carried is lost: only a new snapshot repairs that.
                        warn!(server = %self.server_url(), error = %e,
                            "dropping the stream on what the server sent; resubscribing");
                        self.lost(e.to_string());
                    }
                }
            }
        }
    }

    /// The agent as a `Stream` of events (ends after a fatal error).
    pub fn into_stream(self) -> impl Stream<Item = Result<AgentEvent, AgentError>> {
        futures::stream::unfold(Some(self), |agent| async move {
            let mut agent = agent?;
            match agent.next().await {
                Ok(event) => Some((Ok(event), Some(agent))),
                Err(e) => Some((Err(e), None)),
            }
        })
    }

    fn server_url(&self) -> &str {
        &self.config.servers[self.server % self.config.servers.len()]
    }

    async fn connect(&mut self) -> Result<(), AgentError> {
        let server = self.server_url().to_string();
        match self.subscribe(&server).await {
            Ok((client, stream)) => {
                debug!(server = %server, "subscribed");
                self.state = State::Streaming(Box::new(Subscribed {
                    stream,
                    client,
                    stream_id: 0,
                    report_timer: Box::pin(tokio::time::sleep_until(
                        tokio::time::Instant::now() + self.config.report_interval,
                    )),
                    received: VecDeque::new(),
                    snapshot: SnapshotPhase::AwaitingHello,
                    hello_path: None,
                    replace_expected: false,
                    compression: Accepted {
                        zstd: self
                            .config
                            .accept_compression
                            .contains(&pb::Compression::Zstd),
                        max_bytes: self.config.max_message_bytes,
                    },
                }));
                Ok(())
            }
            Err(status) if is_fatal(&status) => Err(AgentError::Refused {
                server,
                message: status.message().to_string(),
            }),
            Err(status) => {
                self.lost(describe(&status));
                Ok(())
            }
        }
    }

    async fn subscribe(
        &self,
        server: &str,
    ) -> Result<(SyncClient<Channel>, tonic::Streaming<Received>), tonic::Status> {
        let endpoint = crate::endpoint(
            server,
            self.config.tls.as_ref(),
            self.config.connect_timeout,
        )
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        let channel: Channel = endpoint.connect().await.map_err(|e| {
            tonic::Status::unavailable(format!("cannot connect: {}", error_chain(&e)))
        })?;
        let client = SyncClient::new(channel.clone());
        let request = pb::SubscribeRequest {
            node_name: self.config.node_name.clone(),
            client_version: env!("CARGO_PKG_VERSION").to_string(),
            subscription: self.config.subscription.clone(),
            required_clusters: self.config.required_clusters.clone(),
            capabilities: vec![CAPABILITY_RECONNECT.to_string()],
            accept_compression: self
                .config
                .accept_compression
                .iter()
                .map(|c| *c as i32)
                .collect(),
            resume: self.resume_token(),
            // Anti-entropy, for when the server cannot resume the token (another epoch).
            mirror: if self.config.resume {
                self.mirror.bucket_digests()
            } else {
                Vec::new()
            },
        };
        // The generated client's call, with a decoder that bounds what a message may contain
        // before decoding it (`codec`).
        let mut grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(self.config.max_message_bytes);
        grpc.ready().await.map_err(|e| {
            tonic::Status::unavailable(format!("cannot connect: {}", error_chain(&e)))
        })?;
        let path =
            tonic::codegen::http::uri::PathAndQuery::from_static("/meshsync.v1.Sync/Subscribe");
        let stream = grpc
            .server_streaming(tonic::Request::new(request), path, SubscribeCodec)
            .await?
            .into_inner();
        Ok((client, stream))
    }

    /// Tells the server what the mirror holds at its current cut, without waiting for the answer
    /// (a report that fails is only logged: the next one will do).
    fn report(&mut self) {
        let State::Streaming(subscribed) = &mut self.state else {
            return;
        };
        if self.config.report_interval.is_zero() || subscribed.stream_id == 0 {
            return;
        }
        subscribed.report_at(tokio::time::Instant::now() + self.config.report_interval);
        let report = pb::AgentReport {
            stream_id: subscribed.stream_id,
            epoch: self.mirror.epoch(),
            seq: self.mirror.seq(),
            clusters: self.mirror.cluster_digests(),
        };
        let mut client = subscribed.client.clone();
        tokio::spawn(async move {
            if let Err(status) = client.report(report).await {
                debug!(error = %LogSafe(&describe(&status)), "report not taken");
            }
        });
    }

    /// Reports when one is due and the mirror is at a verified cut.
    fn report_if_due(&mut self) {
        let due = match &self.state {
            State::Streaming(s) => {
                s.snapshot == SnapshotPhase::Following
                    && s.received.is_empty()
                    && tokio::time::Instant::now() >= s.report_timer.deadline()
            }
            _ => false,
        };
        if due && self.mirror.at_cut() && self.mirror.resume_token().is_some() {
            self.report();
        }
    }

    /// The token sent when subscribing, if the mirror can resume.
    fn resume_token(&self) -> Option<pb::ResumeToken> {
        if !self.config.resume {
            return None;
        }
        let (epoch, seq) = self.mirror.resume_token()?;
        Some(pb::ResumeToken { epoch, seq })
    }

    /// Moves the stream's snapshot phase on; `None` when not subscribed.
    fn advance_snapshot(&mut self, to: SnapshotPhase) -> Option<SnapshotPhase> {
        match &mut self.state {
            State::Streaming(subscribed) => Some(std::mem::replace(&mut subscribed.snapshot, to)),
            State::Connecting | State::BackingOff { .. } => None,
        }
    }

    /// Applies one received message to the mirror and queues the resulting events. (Whether the
    /// message may come at that point at all was checked when it was received: [`Subscribed::receive`].)
    fn apply(&mut self, incoming: Incoming) {
        match incoming {
            Incoming::Hello(hello) => self.apply_hello(hello),
            Incoming::Update(update, ordered) => {
                self.mirror.apply_update(&update, ordered);
                self.events.push_back(AgentEvent::Update(update));
            }
            Incoming::Status(status) => self.apply_status(status),
            Incoming::Replace(replace) => {
                self.mirror.replace_buckets(&replace);
            }
            Incoming::Cut(seq) => {
                self.mirror.apply_cut(seq);
                self.report_if_due();
            }
            Incoming::Reconnect(reconnect) => self.apply_reconnect(reconnect),
        }
    }

    /// The stream's hello: starts the snapshot, resume or anti-entropy pass it announces — or
    /// resubscribes when the server resumed a stream this mirror cannot take a difference for.
    fn apply_hello(&mut self, hello: pb::Hello) {
        if let State::Streaming(s) = &mut self.state {
            s.stream_id = hello.stream_id;
        }
        let ours = self
            .mirror
            .resume_token()
            .is_some_and(|(epoch, _)| epoch == hello.epoch);
        if is_resume(&hello) && !ours {
            // Applying a difference to a mirror it was not computed for would lose keys.
            warn!(server = %self.server_url(), "the server resumed a stream this agent did not ask to resume; resubscribing");
            self.mirror.forget_resume();
            self.lost("unexpected resume".into());
            return;
        }
        let what = if hello.path == pb::SyncPath::AntiEntropy as i32 {
            self.mirror.begin_anti_entropy(hello.epoch);
            "subscribed; the server sends the buckets of the mirror that differ"
        } else if is_resume(&hello) {
            self.mirror.begin_resume();
            "subscribed; the server sends only what changed since"
        } else {
            self.mirror.begin_snapshot(hello.epoch);
            "subscribed; receiving a full snapshot"
        };
        self.log_subscribed(&hello, what);
        self.advance_snapshot(SnapshotPhase::Receiving);
        self.events.push_back(AgentEvent::Connected {
            server: self.server_url().to_string(),
            hello,
        });
    }

    /// Logs a subscription at info level, at most once per [`CHATTY_LOG_INTERVAL`] (with how many
    /// were not logged since), at debug level otherwise.
    fn log_subscribed(&mut self, hello: &pb::Hello, what: &str) {
        let server = self.server_url().to_string();
        let path = sync_path_name(hello);
        match self.hello_log.take(CHATTY_LOG_INTERVAL) {
            Some(0) => info!(%server, path, keys = self.mirror.len(), "{what}"),
            Some(unlogged) => info!(%server, path, keys = self.mirror.len(),
                unlogged_subscriptions = unlogged, "{what}"),
            None => debug!(%server, path, keys = self.mirror.len(), "{what}"),
        }
    }

    /// A status: applies the clusters it drops and, when it ends a snapshot, verifies the mirror
    /// against the server's digests before passing it on.
    fn apply_status(&mut self, status: pb::Status) {
        for key in self.mirror.apply_status(&status) {
            self.events.push_back(AgentEvent::Removed(key));
        }
        let was = self.advance_snapshot(SnapshotPhase::Following);
        if was == Some(SnapshotPhase::Receiving) && !self.verify_snapshot() {
            return;
        }
        let in_sync = self.mirror.in_sync();
        self.events
            .push_back(AgentEvent::Status { status, in_sync });
    }

    /// At the end of a snapshot: marks the mirror consistent when its digests match the server's
    /// and schedules a report; otherwise resubscribes. Whether they matched.
    fn verify_snapshot(&mut self) -> bool {
        let mismatches = self.mirror.verify();
        if !mismatches.is_empty() {
            self.resubscribe_after_mismatch(mismatches);
            return false;
        }
        self.attempt = 0;
        self.verified_since_move = true;
        self.mirror.mark_consistent();
        // Tell the server what we hold now that it is verified — soon, not at once:
        // after a restart every agent gets here together, and their reports would
        // compete with the others' resynchronisation. Within 0.5–1 s (or the interval).
        if let State::Streaming(s) = &mut self.state {
            let soon = self.config.report_interval.min(Duration::from_secs(1));
            s.report_at(tokio::time::Instant::now() + jittered_backoff(soon, soon, 0));
        }
        true
    }

    /// The mirror differs from the server's digests after a snapshot: logs the first clusters that
    /// differ, reports them, and resubscribes from scratch.
    fn resubscribe_after_mismatch(&mut self, mismatches: Vec<DigestMismatch>) {
        // Cluster names come from the server: escaped, and only the first few.
        let first: Vec<String> = mismatches
            .iter()
            .take(3)
            .map(|m| {
                format!(
                    "{} ({} keys on the server, {} here)",
                    LogSafe(&m.cluster),
                    m.server_keys,
                    m.local_keys
                )
            })
            .collect();
        warn!(
            clusters = mismatches.len(),
            first = %first.join(", "),
            "mirror digest differs from the server's; resubscribing"
        );
        self.events
            .push_back(AgentEvent::DigestMismatch(mismatches));
        self.mirror.forget_resume();
        // Through the normal backoff: a persistent mismatch must not spin.
        self.lost("mirror digest differs from the server's".into());
    }

    /// The server asks this agent to go elsewhere: reports it and moves to the next server, at
    /// once or after the backoff.
    fn apply_reconnect(&mut self, reconnect: pb::Reconnect) {
        let server = self.server_url().to_string();
        self.log_reconnect(&server, &reconnect);
        self.events.push_back(AgentEvent::Reconnect {
            server,
            reason: reconnect.reason.clone(),
        });
        let error = format!("server asked to reconnect: {}", reconnect.reason);
        // Asked, not failed: a draining or shedding server is left for the next one at
        // once — the first time. Asked again before any stream delivered a verified
        // snapshot, or within `backoff_max` of the last prompt move, the agent backs off
        // as after any lost stream: a server that answers every subscription with a
        // `Reconnect` must not make it spin.
        let now = tokio::time::Instant::now();
        let prompt = self.verified_since_move
            && self
                .moved_at
                .is_none_or(|at| now.duration_since(at) >= self.config.backoff_max);
        if prompt {
            self.verified_since_move = false;
            self.moved_at = Some(now);
            self.lose(error, Some(Duration::ZERO));
        } else {
            self.lost(error);
        }
    }

    /// Logs a `Reconnect` at info level, at most once per [`CHATTY_LOG_INTERVAL`] (with how many
    /// were not logged since), at debug level otherwise.
    fn log_reconnect(&mut self, server: &str, reconnect: &pb::Reconnect) {
        let (reason, elsewhere) = (LogSafe(&reconnect.reason), LogSafe(&reconnect.elsewhere));
        match self.reconnect_log.take(CHATTY_LOG_INTERVAL) {
            Some(0) => info!(%server, %reason, %elsewhere,
                "the server asked this agent to reconnect elsewhere"),
            Some(unlogged) => {
                info!(%server, %reason, %elsewhere, unlogged_subscriptions = unlogged,
                "the server asked this agent to reconnect elsewhere")
            }
            None => debug!(%server, %reason, %elsewhere,
                "the server asked this agent to reconnect elsewhere"),
        }
    }

    /// Drops the connection (and whatever it delivered that is not applied yet) and schedules the
    /// retry on the next server after the backoff, which grows with each failed attempt.
    fn lost(&mut self, error: String) {
        self.lose(error, None);
    }

    /// [`Agent::lost`], retrying after `retry_in` when given (without growing the backoff).
    fn lose(&mut self, error: String, retry_in: Option<Duration>) {
        let server = self.server_url().to_string();
        self.mirror.disconnected();
        let retry_in = retry_in.unwrap_or_else(|| {
            let backoff = jittered_backoff(
                self.config.backoff_initial,
                self.config.backoff_max,
                self.attempt,
            );
            self.attempt = self.attempt.saturating_add(1);
            backoff
        });
        self.server = self.server.wrapping_add(1);
        self.events.push_back(AgentEvent::Disconnected {
            server,
            error,
            retry_in,
        });
        self.state = State::BackingOff { retry_in };
    }
}

fn is_fatal(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::InvalidArgument | tonic::Code::Unimplemented | tonic::Code::PermissionDenied
    )
}

fn describe(status: &tonic::Status) -> String {
    let mut text = if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        format!("{:?}: {}", status.code(), status.message())
    };
    // A transport failure keeps its cause (e.g. the TLS alert the server sent) as the source.
    if let Some(source) = std::error::Error::source(status) {
        text.push_str(": ");
        text.push_str(&error_chain(source));
    }
    text
}
