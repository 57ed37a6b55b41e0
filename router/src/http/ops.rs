//! The router's own operations endpoints: `/healthz`, `/readyz`, `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::json;

use crate::readiness;
use crate::state::App;

/// The process is up.
pub async fn healthz(State(app): State<Arc<App>>) -> impl IntoResponse {
    axum::Json(json!({
        "status": "ok",
        "region": app.config.region,
        "router": app.config.router_name,
    }))
}

/// `200` when ready or degraded (see `readiness`), `503` when not; each check in the body.
pub async fn readyz(State(app): State<Arc<App>>) -> impl IntoResponse {
    let readiness = readiness::check(&app.forwarder, &app.regions).await;
    let (status, label) = readiness.verdict();
    (
        status,
        axum::Json(json!({
            "status": label,
            "region": app.config.region,
            "router": app.config.router_name,
            "checks": readiness.checks(),
        })),
    )
}

/// Prometheus metrics, in the OpenMetrics text format.
pub async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
}
