//! The router's own operations endpoints.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use futures::future::join_all;
use serde_json::{json, Map, Value};

use crate::app::App;
use crate::forward::Upstream;

/// Bound on each readiness check, so `/readyz` answers even when regions are black holes.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// The process is up.
pub async fn healthz(State(app): State<Arc<App>>) -> impl IntoResponse {
    axum::Json(json!({
        "status": "ok",
        "region": app.config.region,
        "router": app.config.router_name,
    }))
}

/// Ready when the local node is ready; still ready ("degraded") when it is not but reads can
/// fall back to another region's node. Details per upstream in the body.
pub async fn readyz(State(app): State<Arc<App>>) -> impl IntoResponse {
    let forwarder = &app.forwarder;
    let own = app.regions.own();
    let fallbacks: Vec<_> = app.regions.read_order().skip(1).collect();
    let peers: Vec<_> = app
        .regions
        .all()
        .iter()
        .filter(|r| r.name != own.name)
        .collect();
    let (local, fallback_status, peer_status) = tokio::join!(
        forwarder.probe(Upstream::node(own), "/readyz", CHECK_TIMEOUT),
        join_all(fallbacks.iter().map(|r| forwarder.probe(
            Upstream::node(r),
            "/healthz",
            CHECK_TIMEOUT
        ))),
        join_all(peers.iter().map(|r| forwarder.probe(
            Upstream::router(r),
            "/healthz",
            CHECK_TIMEOUT
        ))),
    );
    let ok = |s: &Option<StatusCode>| s.is_some_and(|s| s.is_success());
    let local_ready = ok(&local);
    let can_fall_back = fallback_status.iter().any(ok);
    let (status, label) = match (local_ready, can_fall_back) {
        (true, _) => (StatusCode::OK, "ready"),
        (false, true) => (StatusCode::OK, "degraded"),
        (false, false) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
    };
    let describe = |s: &Option<StatusCode>| match s {
        Some(s) => json!({ "ok": s.is_success(), "status": s.as_u16() }),
        None => json!({ "ok": false, "status": null }),
    };
    let by_region = |regions: &[&crate::regions::Region], statuses: &[Option<StatusCode>]| {
        regions
            .iter()
            .zip(statuses)
            .map(|(r, s)| (r.name.clone(), describe(s)))
            .collect::<Map<String, Value>>()
    };
    (
        status,
        axum::Json(json!({
            "status": label,
            "region": app.config.region,
            "router": app.config.router_name,
            "checks": {
                "localNode": describe(&local),
                "fallbackNodes": by_region(&fallbacks, &fallback_status),
                "peerRouters": by_region(&peers, &peer_status),
            },
        })),
    )
}

pub async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
}
