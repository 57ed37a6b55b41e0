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
    let shards = node.readers.health();
    let lagging: Vec<&str> = shards
        .iter()
        .filter(|s| s.lagging)
        .map(|s| s.shard.as_str())
        .collect();
    let ready = database && lease;
    // Degraded still serves: lagging shards are read elsewhere.
    let (status, word) = match (ready, lagging.is_empty()) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
        (true, true) => (StatusCode::OK, "ready"),
        (true, false) => (StatusCode::OK, "degraded"),
    };
    (
        status,
        axum::Json(json!({
            "status": word,
            "region": node.config.region,
            "node": node.config.node_name,
            "checks": { "primary": database, "machineLease": lease },
            "machine": node.ids.lease().machine(),
            "laggingShards": lagging,
            "shards": shards,
        })),
    )
}

/// This node's view of the cluster: regions, its shard readers with their lag, cache use.
pub async fn cluster(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let cache = &node.cache;
    axum::Json(json!({
        "region": node.config.region,
        "node": node.config.node_name,
        "regions": node.config.regions,
        "maxReplicaLagMs": node.config.reads.max_replica_lag_ms,
        "shards": node.readers.health(),
        "cache": {
            "hits": cache.hits(),
            "misses": cache.misses(),
            "hitRatio": cache.hit_ratio(),
        },
        "pool": { "size": node.pool.size(), "idle": node.pool.num_idle() },
    }))
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
