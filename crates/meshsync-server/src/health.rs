//! Health endpoints, on their own port as Typha's: `/liveness` (the process serves) and
//! `/readiness` (the cache is in sync, so a new agent would get a complete snapshot).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use meshsync_cache::{SnapshotCache, SyncState};

/// The health router.
pub fn router(cache: SnapshotCache) -> Router {
    Router::new()
        .route("/liveness", get(liveness))
        .route("/readiness", get(readiness))
        .with_state(cache)
}

/// Live while the cache can still move forward: a dead writer means no agent will ever get another
/// update, so the process should be restarted.
async fn liveness(State(cache): State<SnapshotCache>) -> (StatusCode, String) {
    match cache.supervisor().failure() {
        None => (StatusCode::OK, "live\n".to_string()),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not live: the cache writer stopped: {reason}\n"),
        ),
    }
}

async fn readiness(State(cache): State<SnapshotCache>) -> (StatusCode, String) {
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
