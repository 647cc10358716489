//! Prometheus metrics (`/metrics`, off unless a listen address is given; Typha uses 9093), rendered in the text
//! exposition format from the cache's counters and status — no metrics registry on the hot path.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use meshsync_cache::{Breadcrumb, CacheMetrics, SnapshotCache};
use meshsync_model::SourceStatus;

use crate::core::connections::Connections;

/// Calico's values for `remote_cluster_connection_status`.
fn connection_status_value(status: &SourceStatus) -> u8 {
    match status {
        SourceStatus::ConnectionFailed(_) => 0,
        SourceStatus::Connecting => 1,
        SourceStatus::InSync => 2,
        SourceStatus::ResyncInProgress => 3,
        SourceStatus::ConfigIncomplete(_) => 5,
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics text for the current state.
pub fn render(
    cache: &SnapshotCache,
    connections: &Connections,
    sources: &meshsync_model::SourceCounters,
) -> String {
    let head = cache.head();
    let mut out = String::new();
    write_cluster_metrics(&mut out, &head.status);
    write_agent_metrics(&mut out, connections);
    for (name, help, value) in gauges(&head, connections) {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    for (name, help, value) in counters(cache.metrics(), connections, sources) {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    out
}

/// Connected agents per front end protocol and subscription (syncer).
fn write_agent_metrics(out: &mut String, connections: &Connections) {
    let _ = writeln!(
        out,
        "# HELP meshsync_agents_connected Connected agents per protocol (grpc, typha) and subscription (Typha's syncer type)."
    );
    let _ = writeln!(out, "# TYPE meshsync_agents_connected gauge");
    for ((protocol, subscription), n) in connections.agents.by_protocol() {
        let _ = writeln!(
            out,
            "meshsync_agents_connected{{protocol=\"{protocol}\",subscription=\"{subscription}\"}} {n}"
        );
    }
}

/// A metric's name, help text and value.
type Sample = (&'static str, &'static str, u64);

/// The per-cluster gauges: each remote's connection status (Calico's values) and every cluster's
/// key count.
fn write_cluster_metrics(out: &mut String, status: &meshsync_cache::SyncStatus) {
    let _ = writeln!(
        out,
        "# HELP meshsync_remote_cluster_connection_status 0-ConnectionFailed, 1-Connecting, 2-InSync, 3-ResyncInProgress, 4-ConfigChangeRestartRequired, 5-ConfigIncomplete."
    );
    let _ = writeln!(
        out,
        "# TYPE meshsync_remote_cluster_connection_status gauge"
    );
    for (name, cluster) in status.clusters.iter().filter(|(n, _)| !n.is_empty()) {
        let _ = writeln!(
            out,
            "meshsync_remote_cluster_connection_status{{remote_cluster_name=\"{}\"}} {}",
            escape_label(&name.to_lowercase()),
            connection_status_value(&cluster.status)
        );
    }
    let _ = writeln!(
        out,
        "# HELP meshsync_remote_cluster_refused_resources Resources of a remote cluster the mesh does not merge because they would collide with other clusters' (overlapping pools, a node name taken locally, another encapsulation)."
    );
    let _ = writeln!(
        out,
        "# TYPE meshsync_remote_cluster_refused_resources gauge"
    );
    for (name, cluster) in status.clusters.iter().filter(|(n, _)| !n.is_empty()) {
        let _ = writeln!(
            out,
            "meshsync_remote_cluster_refused_resources{{remote_cluster_name=\"{}\"}} {}",
            escape_label(&name.to_lowercase()),
            cluster.refused.as_ref().map_or(0, |(n, _)| *n)
        );
    }
    let _ = writeln!(
        out,
        "# HELP meshsync_cache_keys Keys held per cluster (\"\" is the local cluster)."
    );
    let _ = writeln!(out, "# TYPE meshsync_cache_keys gauge");
    for (name, cluster) in &status.clusters {
        let _ = writeln!(
            out,
            "meshsync_cache_keys{{cluster=\"{}\"}} {}",
            escape_label(name),
            cluster.keys()
        );
    }
}

/// The process-wide gauges: sockets, streams, breadcrumbs, sync state.
fn gauges(head: &Breadcrumb, connections: &Connections) -> [Sample; 9] {
    let status = &head.status;
    let (repairs, repair_entries) = connections.repairs.in_flight();
    [
        (
            "meshsync_repairs_private_in_flight",
            "Repairs (resume, anti-entropy) encoded for one stream and not yet handed to HTTP/2 (bounded per client and in total).",
            repairs as u64,
        ),
        (
            "meshsync_repairs_private_entries",
            "Entries of those private repairs (bounded by a multiple of the cache's keys).",
            repair_entries,
        ),
        (
            "meshsync_agents_diverged",
            "Connected agents whose last report of what they hold differs from the server's state at that seq on some cluster.",
            connections.agents.diverged(),
        ),
        (
            "meshsync_sockets_open",
            "gRPC sockets open (streaming or not).",
            connections.sockets() as u64,
        ),
        (
            "meshsync_stream_backlog_bytes_max",
            "Largest backlog (bytes of changes behind the head) a stream pinned at the last check.",
            connections.backlog_max(),
        ),
        (
            "meshsync_breadcrumbs_live",
            "Breadcrumbs alive in the process (the head and whatever streams still hold).",
            meshsync_cache::live_breadcrumbs() as u64,
        ),
        (
            "meshsync_in_sync",
            "1 when the local datastore (and the remotes it waits for) is in sync.",
            u64::from(status.overall == meshsync_cache::SyncState::InSync),
        ),
        (
            "meshsync_breadcrumb_seq",
            "Sequence number of the newest breadcrumb.",
            head.seq,
        ),
        (
            "meshsync_connections_active",
            "Agents currently streaming.",
            connections.active() as u64,
        ),
    ]
}

/// The counters: what the cache did, what the server did to protect itself, what compression
/// saved, and what the sources refused.
fn counters(
    m: &CacheMetrics,
    connections: &Connections,
    sources: &meshsync_model::SourceCounters,
) -> Vec<Sample> {
    let mut out = Vec::new();
    out.extend(cache_counters(m));
    out.extend(protection_counters(connections));
    out.extend(compression_counters());
    out.extend(source_counters(sources));
    out
}

/// A metric's name, help text and the atomic counter holding its value.
type CounterRow<'a> = (&'static str, &'static str, &'a AtomicU64);

/// The samples of a table of atomic counters, read now.
fn load<const N: usize>(rows: [CounterRow<'_>; N]) -> [Sample; N] {
    rows.map(|(name, help, counter)| (name, help, counter.load(Ordering::Relaxed)))
}

/// What the cache did.
fn cache_counters(m: &CacheMetrics) -> [Sample; 6] {
    load([
        (
            "meshsync_updates_total",
            "Changes accepted by the cache.",
            &m.updates,
        ),
        (
            "meshsync_updates_skipped_total",
            "Upserts dropped because the value was unchanged.",
            &m.skipped,
        ),
        (
            "meshsync_updates_rejected_total",
            "Upserts refused (value too large).",
            &m.rejected,
        ),
        (
            "meshsync_snapshots_generated_total",
            "Shared snapshots taken for new clients (each then encoded once per wire form asked for).",
            &m.snapshots_generated,
        ),
        (
            "meshsync_snapshot_encodings_total",
            "Encodings of shared snapshots made: one per snapshot and wire form (gRPC plain or zstd, each Typha syncer, dialect and framing), however many clients receive it.",
            &m.snapshot_encodings,
        ),
        (
            "meshsync_snapshots_reused_total",
            "New clients served an already encoded snapshot.",
            &m.snapshots_reused,
        ),
    ])
}

/// What the server did to protect itself: sockets, connections and reports refused or closed,
/// and how subscriptions were served.
fn protection_counters(connections: &Connections) -> [Sample; 14] {
    load([
        (
            "meshsync_sockets_refused_total",
            "Sockets closed at once because the socket limit was reached.",
            &connections.refused_sockets,
        ),
        (
            "meshsync_connections_closed_handshake_total",
            "Connections closed for completing no request within the handshake timeout.",
            &connections.closed_handshake,
        ),
        (
            "meshsync_connections_closed_stalled_total",
            "Connections closed because their stream sent nothing within the write timeout.",
            &connections.closed_stalled,
        ),
        (
            "meshsync_connections_accepted_total",
            "Subscriptions accepted (Typha: typha_connections_accepted).",
            &connections.accepted,
        ),
        (
            "meshsync_connections_refused_total",
            "Subscriptions refused at the connection limit (--max-connections, or this replica's share when rebalancing).",
            &connections.refused_limit,
        ),
        (
            "meshsync_connections_shed_total",
            "Agents asked to move to another replica because this one was over its share (Typha drops them: typha_connections_dropped).",
            &connections.shed,
        ),
        (
            "meshsync_subscriptions_resumed_total",
            "Subscriptions whose resume token was of this server's epoch and within the retained history: sent only what changed since.",
            &connections.resumed,
        ),
        (
            "meshsync_subscriptions_anti_entropy_total",
            "Subscriptions of agents from another epoch (another replica, or before a restart) sent only the buckets of their mirror that differ.",
            &connections.anti_entropy,
        ),
        (
            "meshsync_repairs_shared_fallback_total",
            "Repairs (resume, anti-entropy) sent as the shared full snapshot because the client already had its private repairs in flight, or all private repairs in flight held their budget of entries.",
            &connections.repairs_shared_fallback,
        ),
        (
            "meshsync_subscriptions_full_total",
            "Subscriptions sent a full snapshot (no resume token, another epoch, or outside the retained history).",
            &connections.full_snapshots,
        ),
        (
            "meshsync_connections_refused_protocol_total",
            "Plaintext connections closed because they did not start with the HTTP/2 preface (HTTP/1.x, TLS, garbage).",
            &connections.refused_protocol,
        ),
        (
            "meshsync_connections_refused_tls_total",
            "Connections refused for a failed TLS handshake (not TLS, unknown CA, identity not allowed, expired, timeout).",
            &connections.refused_tls,
        ),
        (
            "meshsync_reports_refused_total",
            "Agent reports refused: naming a stream of another connection, or malformed (too many clusters, a name no cluster can have).",
            &connections.refused_reports,
        ),
        (
            "meshsync_streams_released_total",
            "Times a stream that was not keeping up released the breadcrumbs it pinned.",
            &connections.released,
        ),
    ])
}

/// What zstd compression of the update frames did.
fn compression_counters() -> [Sample; 3] {
    let c = &meshsync_proto::compression::COUNTERS;
    load([
        (
            "meshsync_compression_frames_total",
            "Update frames compressed with zstd, each once however many agents receive it.",
            &c.frames,
        ),
        (
            "meshsync_compression_input_bytes_total",
            "Bytes of the update frames compressed, before compression.",
            &c.input_bytes,
        ),
        (
            "meshsync_compression_output_bytes_total",
            "Bytes of the update frames compressed, after compression (the bytes shared by every zstd agent).",
            &c.output_bytes,
        ),
    ])
}

/// What the sources refused.
fn source_counters(sources: &meshsync_model::SourceCounters) -> [Sample; 4] {
    [
        (
            "meshsync_datastore_invalid_values_total",
            "Values a source refused (not a JSON object within the size and depth limits, invalid UTF-8, or kind/name not matching the key); their keys are deleted.",
            sources.invalid_values(),
        ),
        (
            "meshsync_datastore_malformed_keys_total",
            "etcd keys of a served layout with extra or missing path segments or empty names.",
            sources.malformed_keys(),
        ),
        (
            "meshsync_datastore_expired_relists_total",
            "Relists forced because the datastore's history no longer reached a watch's position (etcd compaction, Kubernetes 410 Gone); agents still receive only the differences.",
            sources.expired_relists(),
        ),
        (
            "meshsync_datastore_refused_files_total",
            "Files of a file datastore refused whole (above the file-size limit).",
            sources.refused_files(),
        ),
    ]
}

/// The metrics router.
pub fn router(
    cache: SnapshotCache,
    connections: Arc<Connections>,
    sources: Arc<meshsync_model::SourceCounters>,
) -> Router {
    Router::new()
        .route("/metrics", get(serve))
        .with_state((cache, connections, sources))
}

type MetricsState = (
    SnapshotCache,
    Arc<Connections>,
    Arc<meshsync_model::SourceCounters>,
);

async fn serve(State((cache, connections, sources)): State<MetricsState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&cache, &connections, &sources),
    )
}
