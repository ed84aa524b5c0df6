//! Operations endpoints: liveness, readiness, metrics and the API document.

use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

/// Liveness, readiness, metrics (unless a separate admin listener serves
/// them) and the API document (when one is given).
pub fn router(doc: Arc<serde_json::Value>, with_metrics: bool) -> Router<AppState> {
    let mut r = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz));
    if with_metrics {
        r = r.route("/metrics", get(metrics));
    }
    if !doc.is_null() {
        r = r.route(
            "/api/openapi.json",
            get(move || async move { Json((*doc).clone()) }),
        );
    }
    r
}

async fn readyz(State(s): State<AppState>) -> Response {
    let db = s.store.db.ping().await;
    let blobs = s.store.blobs.ping().await;
    match (db, blobs) {
        (Ok(()), Ok(())) => (StatusCode::OK, "ready").into_response(),
        (d, b) => {
            tracing::warn!(db = ?d.err().map(|e| e.to_string()), blobs = ?b.err().map(|e| e.to_string()), "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
        }
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}
