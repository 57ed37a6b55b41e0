//! Handlers of the operations endpoints: `/healthz`, `/readyz`, `/metrics`, `/cluster`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::json;

use crate::ops::health;
use crate::state::Node;

/// The process is up.
pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let (status, body) = health::readiness(&node).await;
    (status, axum::Json(body))
}

pub async fn cluster(State(node): State<Arc<Node>>) -> impl IntoResponse {
    axum::Json(health::cluster_view(&node))
}

pub async fn metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        health::metrics_text(&node),
    )
}
