//! Operations endpoints: liveness, readiness, metrics and the API document.

use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

pub fn router(doc: Arc<serde_json::Value>) -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/api/openapi.json",
            get(move || async move { Json((*doc).clone()) }),
        )
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
