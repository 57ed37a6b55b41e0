//! An event's watcher, shared by all its subscribers on this node: the first subscriber starts
//! it; every `streams.interval_ms` it reads the event's state once (whatever the number of
//! subscribers) from this region's copy of the event's shard and publishes it on the event's
//! channel, waking subscribers only when the state changed. It ends `streams.idle_watcher_ms`
//! after its last subscriber left, or when the node shuts down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use id_gen::Id;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tracing::Instrument;

use crate::catalog::store as catalog;
use crate::error::ApiResult;
use crate::queue::store as queue;
use crate::queue::views::QueueFigures;
use crate::reads::answer;
use crate::state::Node;
use crate::streams::hub::{Channel, Latest};
use crate::streams::state::{self, Published, StreamState};

/// A receiver of `event`'s states, starting its watcher if it has none.
pub fn subscribe(node: &Arc<Node>, event: Id) -> watch::Receiver<Latest> {
    node.streams.subscribe(event.as_i64(), |channel| {
        tokio::spawn(
            watch_event(Arc::clone(node), event, channel)
                .instrument(tracing::info_span!("stream_watcher", event = %event)),
        );
    })
}

/// Reads `event`'s state from this region's replica of its shard (see
/// `Readers::stream_source`), on one connection: the WAL position first, so the state holds at
/// least everything up to it, then availability and the queue, then the position again, so it
/// holds nothing past that (the id carries both: `wire::stream`).
pub async fn read(node: &Node, event: Id) -> ApiResult<Published> {
    let source = node.readers.stream_source(node.shard_of(event)?).await?;
    let (mut conn, lsn) = answer::snapshot(&source).await?;
    let tiers = catalog::availability(&mut *conn, &[event.as_i64()]).await?;
    let queue = queue::queue(&mut *conn, event.as_i64())
        .await?
        .map(|row| QueueFigures::from_row(&row));
    let upto = answer::position(&mut conn, &source).await?;
    StreamState::new(event, &tiers, queue).publish_at(lsn.0, upto.0)
}

/// One read per interval, published when the state changed. It keeps reading while idle
/// (until it retires), so a subscriber arriving then is given a current state at once.
async fn watch_event(node: Arc<Node>, event: Id, channel: Channel) {
    let config = &node.config.streams;
    let idle_limit = Duration::from_millis(config.idle_watcher_ms);
    let mut tick = tokio::time::interval(Duration::from_millis(config.interval_ms));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut closing = node.streams.closing();
    let mut idle_since: Option<Instant> = None;
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = closing.wait_for(|closing| *closing) => {
                node.streams.retire(event.as_i64(), &channel);
                return;
            }
        }
        if channel.receiver_count() == 0 {
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= idle_limit && node.streams.retire(event.as_i64(), &channel) {
                return;
            }
        } else {
            idle_since = None;
        }
        match read(&node, event).await {
            Ok(read) => {
                failing = false;
                channel.send_if_modified(|latest| state::publish(latest, read));
            }
            // Subscribers keep the last state and their keep-alives; said once per outage.
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "reading a streamed event's state failed");
            }
            Err(_) => {}
        }
    }
}
