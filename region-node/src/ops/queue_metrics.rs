//! The waiting rooms' gauges of `/metrics`, a named background loop: every
//! `queue.metrics_interval_ms` it reads every shard's queues from this region's replicas, so
//! every node shows every queue's figures; the node's own shard's queues also get their closed
//! loop (`queue_active`, `queue_target`) from the home primary.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ApiResult;
use crate::ops::metrics::QueueGauges;
use crate::queue::store;
use crate::reads::consistency::ReadAfter;
use crate::reads::replica::ShardReader;
use crate::state::Node;

/// Refreshes the gauges every `queue.metrics_interval_ms`, forever (aborted on shutdown).
pub async fn run(node: Arc<Node>) {
    let mut tick =
        tokio::time::interval(Duration::from_millis(node.config.queue.metrics_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shown = HashSet::new();
    loop {
        tick.tick().await;
        shown = refresh(&node, shown).await;
    }
}

/// One refresh; `shown` are the events shown so far. Events no longer listed (closed over an
/// hour ago) are dropped from the gauges; a shard that cannot be read keeps its last figures.
pub async fn refresh(node: &Node, shown: HashSet<i64>) -> HashSet<i64> {
    let mut now_shown = HashSet::new();
    let mut unread = false;
    for shard in node.readers.shards() {
        match shard_figures(node, shard).await {
            Ok(events) => now_shown.extend(events),
            Err(error) => {
                unread = true;
                tracing::warn!(shard = %shard.name, %error, "queue metrics: shard unreadable");
            }
        }
    }
    if unread {
        // Which of the old events belong to the unread shard is unknown: forget nothing.
        now_shown.extend(shown);
        return now_shown;
    }
    for gone in shown.difference(&now_shown) {
        node.metrics.queue.forget(*gone);
    }
    now_shown
}

/// Admissions per second measured over the last 30 s; 0 before any (the ceiling the answers
/// show then is not a measurement).
fn measured_rate(queue: &store::QueueRow) -> f64 {
    let rate = queue.admit_rate();
    if rate.measured {
        rate.per_second
    } else {
        0.0
    }
}

/// Shows the queues of one shard; returns their events.
async fn shard_figures(node: &Node, shard: &ShardReader) -> ApiResult<Vec<i64>> {
    let source = node.read_source(shard, &ReadAfter::default()).await?;
    let ids = store::queue_ids(&source.pool).await?;
    let queues = store::queues(&source.pool, &ids).await?;
    let home = shard.region_id == node.region_id.get();
    for queue in &queues {
        node.metrics.queue.show(
            queue.event_id,
            QueueGauges {
                serving: queue.serving,
                last_position: queue.last_position,
                lobby_size: queue.lobby_size,
                admit_rate: measured_rate(queue),
            },
        );
        if home {
            let active = store::active(&node.pool, queue.event_id).await?;
            node.metrics
                .queue
                .show_loop(queue.event_id, active, queue.target_active.into());
        }
    }
    Ok(ids)
}
