//! The sweeper. Lapsed holds are already claimable by the claim query the moment they lapse; this
//! only tidies them: bookings become `expired` and their tickets `available`, in bounded batches,
//! and aged idempotency records go.

use std::sync::Arc;
use std::time::Duration;

use crate::app::Node;
use crate::booking;
use crate::idempotency;

/// Most batches per tick, so one tick never runs for long whatever the backlog.
const MAX_BATCHES_PER_TICK: u32 = 20;

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
        match booking::expire_lapsed(node, batch).await {
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
    if let Err(error) = idempotency::purge_aged(node, batch).await {
        tracing::warn!(%error, "idempotency purge failed");
    }
    expired
}
