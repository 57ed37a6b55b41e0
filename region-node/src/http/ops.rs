use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use serde_json::json;

use crate::app::Node;
use crate::metrics::PoolLabels;

/// The process is up.
pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

/// Ready to take traffic: the primary answers and the machine lease is held.
pub async fn readyz(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let database = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query("SELECT 1").execute(&node.pool),
    )
    .await
    .map(|r| r.is_ok())
    .unwrap_or(false);
    let lease = node.ids.lease().is_valid();
    let ready = database && lease;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({
            "status": if ready { "ready" } else { "not_ready" },
            "region": node.config.region,
            "node": node.config.node_name,
            "checks": { "primary": database, "machineLease": lease },
            "machine": node.ids.lease().machine(),
        })),
    )
}

pub async fn metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let idle = node.pool.num_idle() as i64;
    let size = i64::from(node.pool.size());
    for (state, value) in [("idle", idle), ("in_use", size - idle)] {
        node.metrics
            .pool
            .get_or_create(&PoolLabels {
                state: state.into(),
            })
            .set(value);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        node.metrics.encode(),
    )
}
