//! Whether this router can serve: ready when its local node is ready, still ready ("degraded")
//! when it is not but reads can fall back to another region's node. Each check is bounded, so
//! the answer comes even when regions are black holes.

use std::time::Duration;

use axum::http::StatusCode;
use futures::future::join_all;
use serde_json::{json, Map, Value};

use crate::routing::regions::{Region, Regions};
use crate::upstream::forwarder::Forwarder;
use crate::upstream::request::Upstream;

/// Bound on each readiness check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// What the checks found: `None` where an upstream did not answer at all.
pub struct Readiness<'a> {
    /// The local node's `/readyz`.
    pub local: Option<StatusCode>,
    /// Each fallback region's node's `/healthz`, in read order.
    pub fallbacks: Vec<(&'a Region, Option<StatusCode>)>,
    /// Each peer router's `/healthz`.
    pub peers: Vec<(&'a Region, Option<StatusCode>)>,
}

/// Runs every check at once.
pub async fn check<'a>(forwarder: &Forwarder, regions: &'a Regions) -> Readiness<'a> {
    let own = regions.own();
    let fallbacks: Vec<&Region> = regions.read_order().skip(1).collect();
    let peers: Vec<&Region> = regions
        .all()
        .iter()
        .filter(|r| r.name != own.name)
        .collect();
    let healthz = |upstream| forwarder.probe(upstream, "/healthz", CHECK_TIMEOUT);
    let (local, fallback_status, peer_status) = tokio::join!(
        forwarder.probe(Upstream::node(own), "/readyz", CHECK_TIMEOUT),
        join_all(fallbacks.iter().map(|&r| healthz(Upstream::node(r)))),
        join_all(peers.iter().map(|&r| healthz(Upstream::router(r)))),
    );
    Readiness {
        local,
        fallbacks: fallbacks.into_iter().zip(fallback_status).collect(),
        peers: peers.into_iter().zip(peer_status).collect(),
    }
}

impl Readiness<'_> {
    /// The HTTP status and the label: `ready`, `degraded` or `not_ready`.
    pub fn verdict(&self) -> (StatusCode, &'static str) {
        let can_fall_back = self.fallbacks.iter().any(|(_, s)| answered_ok(s));
        match (answered_ok(&self.local), can_fall_back) {
            (true, _) => (StatusCode::OK, "ready"),
            (false, true) => (StatusCode::OK, "degraded"),
            (false, false) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
        }
    }

    /// Each check as `{"ok", "status"}`: `localNode`, and `fallbackNodes` and `peerRouters`
    /// by region.
    pub fn checks(&self) -> Value {
        json!({
            "localNode": describe(&self.local),
            "fallbackNodes": by_region(&self.fallbacks),
            "peerRouters": by_region(&self.peers),
        })
    }
}

fn answered_ok(status: &Option<StatusCode>) -> bool {
    status.is_some_and(|s| s.is_success())
}

fn describe(status: &Option<StatusCode>) -> Value {
    match status {
        Some(s) => json!({ "ok": s.is_success(), "status": s.as_u16() }),
        None => json!({ "ok": false, "status": null }),
    }
}

fn by_region(checks: &[(&Region, Option<StatusCode>)]) -> Value {
    let map: Map<String, Value> = checks
        .iter()
        .map(|(r, s)| (r.name.clone(), describe(s)))
        .collect();
    Value::Object(map)
}
