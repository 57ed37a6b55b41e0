//! The expiry sweeper, a named background loop. Lapsed holds are already claimable by the claim
//! the moment they lapse; this only tidies them: bookings become `expired` and their tickets
//! `available`, in bounded batches, and aged idempotency records go.

use std::sync::Arc;
use std::time::Duration;

use crate::booking::{idempotency, store};
use crate::error::ApiResult;
use crate::state::Node;

/// Most batches per tick, so one tick never runs for long whatever the backlog.
const MAX_BATCHES_PER_TICK: u32 = 20;

/// Sweeps every `booking.sweep_interval_ms`, forever (the node aborts it on shutdown).
pub async fn run(node: Arc<Node>) {
    let mut tick =
        tokio::time::interval(Duration::from_millis(node.config.booking.sweep_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sweep_once(&node).await;
    }
}

/// One pass; returns how many bookings it expired.
pub async fn sweep_once(node: &Node) -> u64 {
    let batch = i64::from(node.config.booking.sweep_batch);
    let mut expired = 0;
    for _ in 0..MAX_BATCHES_PER_TICK {
        match expire_batch(node, batch).await {
            Ok(n) => {
                expired += n;
                if (n as i64) < batch {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "expiry sweep failed");
                break;
            }
        }
    }
    if expired > 0 {
        tracing::debug!(expired, "lapsed holds expired");
    }
    let retention = node.config.booking.idempotency_ttl_hours;
    let purged = async {
        let mut conn = node.pool.acquire().await?;
        idempotency::purge_aged(&mut conn, retention, batch).await
    };
    if let Err(error) = purged.await {
        tracing::warn!(%error, "idempotency purge failed");
    }
    expired
}

/// One bounded step; the views of the events it touched are dropped from the cache.
async fn expire_batch(node: &Node, batch: i64) -> ApiResult<u64> {
    let mut conn = node.pool.acquire().await?;
    let expired = store::expire_lapsed(&mut conn, batch).await?;
    node.metrics.tickets_released.inc_by(expired.tickets);
    for event in expired.events {
        node.cache.invalidate_counts(event).await;
    }
    Ok(expired.bookings)
}
