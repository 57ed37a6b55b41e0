//! Handlers of the operations endpoints: `/healthz`, `/readyz`, `/metrics`, `/cluster`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::json;

use crate::ops::health;
use crate::state::Node;

/// The process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    responses((status = 200, description = "Up: `{\"status\": \"ok\"}`", body = Object))
)]
pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

/// Ready to take traffic
///
/// `ready` or `degraded` (still serving) with `200`; `not_ready` with `503`; each check in the
/// body.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready or degraded", body = Object),
        (status = 503, description = "Not ready", body = Object),
    )
)]
pub async fn readyz(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let (status, body) = health::readiness(&node).await;
    (status, axum::Json(body))
}

/// This node's view of the cluster
///
/// Regions, shard readers with their lag, cache use.
pub async fn cluster(State(node): State<Arc<Node>>) -> impl IntoResponse {
    axum::Json(health::cluster_view(&node))
}

/// Metrics
///
/// In the OpenMetrics text format.
pub async fn metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        health::metrics_text(&node),
    )
}
