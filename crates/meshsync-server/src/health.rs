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
        .route("/liveness", get(|| async { (StatusCode::OK, "live\n") }))
        .route("/readiness", get(readiness))
        .with_state(cache)
}

async fn readiness(State(cache): State<SnapshotCache>) -> (StatusCode, String) {
    let status = cache.status();
    match status.overall {
        SyncState::InSync => (StatusCode::OK, "ready: in sync\n".to_string()),
        other => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {other:?}\n"),
        ),
    }
}
