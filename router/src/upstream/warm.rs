//! Keeping connections warm: `GET /healthz` on the local node and on every peer router, so a
//! warm connection (and a fresh DNS answer) is ready before the next request needs it. A write
//! that finds no idle connection to its home region pays a TCP handshake: a second ocean crossing.

use std::time::Duration;

use futures::future::join_all;

use crate::config::Config;
use crate::routing::regions::Regions;
use crate::upstream::forwarder::Forwarder;
use crate::upstream::request::Upstream;

/// One round of warming: the local node once, each peer router `upstream.warm_connections`
/// times at once (so each probe takes, and leaves warm, its own connection).
pub async fn warm(forwarder: &Forwarder, regions: &Regions, config: &Config) {
    let own = regions.own();
    let mut targets = vec![Upstream::node(own)];
    for peer in regions.all().iter().filter(|r| r.name != own.name) {
        for _ in 0..config.upstream.warm_connections.max(1) {
            targets.push(Upstream::router(peer));
        }
    }
    let timeout = Duration::from_millis(config.timeouts.unreachable_ms);
    join_all(
        targets
            .into_iter()
            .map(|u| forwarder.probe(u, "/healthz", timeout)),
    )
    .await;
}
