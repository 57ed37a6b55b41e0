//! What the node says about itself: readiness (`/readyz`), its view of the cluster
//! (`/cluster`), and its metrics in the Prometheus text format (`/metrics`).

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::ops::metrics::PoolLabels;
use crate::state::Node;

/// Ready to take traffic: the primary answers and the machine lease is held. Lagging replicas
/// make it `degraded`, which still serves (their shards are read elsewhere).
pub async fn readiness(node: &Node) -> (StatusCode, Value) {
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
    let (status, word) = match (database && lease, lagging.is_empty()) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
        (true, true) => (StatusCode::OK, "ready"),
        (true, false) => (StatusCode::OK, "degraded"),
    };
    let body = json!({
        "status": word,
        "region": node.config.region,
        "node": node.config.node_name,
        "checks": { "primary": database, "machineLease": lease },
        "machine": node.ids.lease().machine(),
        "laggingShards": lagging,
        "shards": shards,
    });
    (status, body)
}

/// This node's view of the cluster: regions, its shard readers with their lag, cache use.
pub fn cluster_view(node: &Node) -> Value {
    let cache = &node.cache;
    json!({
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
    })
}

/// Every metric, with the pool gauges read now.
pub fn metrics_text(node: &Node) -> String {
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
    node.metrics.encode()
}
