//! Health endpoints, on their own port as Typha's: `/liveness` (the process serves) and
//! `/readiness` (the cache is in sync, so a new agent would get a complete snapshot).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use meshsync_cache::{SnapshotCache, SyncState};

use crate::core::drain::Draining;

#[derive(Clone)]
struct Health {
    cache: SnapshotCache,
    draining: Arc<Draining>,
}

/// The health router.
pub(crate) fn router(cache: SnapshotCache, draining: Arc<Draining>) -> Router {
    Router::new()
        .route("/liveness", get(liveness))
        .route("/readiness", get(readiness))
        .with_state(Health { cache, draining })
}

/// Live while the cache can still move forward: a dead writer means no agent will ever get another
/// update, so the process should be restarted.
async fn liveness(State(health): State<Health>) -> (StatusCode, String) {
    match health.cache.supervisor().failure() {
        None => (StatusCode::OK, "live\n".to_string()),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not live: the cache writer stopped: {reason}\n"),
        ),
    }
}

async fn readiness(State(health): State<Health>) -> (StatusCode, String) {
    if health.draining.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: draining for shutdown\n".to_string(),
        );
    }
    let cache = &health.cache;
    if let Some(reason) = cache.supervisor().failure() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the cache writer stopped: {reason}\n"),
        );
    }
    let status = cache.status();
    match status.overall {
        SyncState::InSync => (StatusCode::OK, "ready: in sync\n".to_string()),
        other => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {other:?}\n"),
        ),
    }
}
