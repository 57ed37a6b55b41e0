//! One watcher per watched event, shared by all its subscribers on this node: the first
//! subscriber starts it; every `streams.interval_ms` it reads the event's state once (whatever
//! the number of subscribers) and publishes it through the event's one `watch` channel, waking
//! subscribers only when the state changed. It ends `streams.idle_watcher_ms` after its last
//! subscriber left, or when the node shuts down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use id_gen::Id;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tracing::Instrument;

use crate::state::Node;
use crate::streams::state::{self, Published};

/// The latest state of an event (`None` until its first read).
pub type Latest = Option<Published>;

pub struct Hub {
    /// The channel of each watched event. Subscribing and a watcher's ending both happen under
    /// this lock, so no subscriber joins a watcher that is leaving.
    watchers: Mutex<HashMap<i64, Arc<watch::Sender<Latest>>>>,
    /// Set at shutdown: streams end, so a graceful stop is not held up by them.
    closing: watch::Sender<bool>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        Hub {
            watchers: Mutex::default(),
            closing: watch::Sender::new(false),
        }
    }

    /// A receiver of `event`'s states, starting its watcher if it has none.
    pub fn subscribe(&self, node: &Arc<Node>, event: Id) -> watch::Receiver<Latest> {
        let mut watchers = self.watchers.lock().expect("stream watchers");
        if let Some(sender) = watchers.get(&event.as_i64()) {
            return sender.subscribe();
        }
        let (sender, receiver) = watch::channel(None);
        let sender = Arc::new(sender);
        watchers.insert(event.as_i64(), Arc::clone(&sender));
        node.metrics.stream_watchers.set(watchers.len() as i64);
        tokio::spawn(
            watch_event(Arc::clone(node), event, sender)
                .instrument(tracing::info_span!("stream_watcher", event = %event)),
        );
        receiver
    }

    /// A receiver that sees `true` when the node shuts down.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Ends every stream and watcher (at shutdown).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Events watched now.
    pub fn watched(&self) -> usize {
        self.watchers.lock().expect("stream watchers").len()
    }

    /// Forgets `event`'s watcher if nobody subscribed meanwhile; true when it was forgotten.
    fn retire(&self, node: &Node, event: Id, sender: &watch::Sender<Latest>) -> bool {
        let mut watchers = self.watchers.lock().expect("stream watchers");
        if sender.receiver_count() > 0 {
            return false;
        }
        watchers.remove(&event.as_i64());
        node.metrics.stream_watchers.set(watchers.len() as i64);
        true
    }
}

/// The watcher of `event`: one read per interval, published when the state changed. It keeps
/// reading while idle (until it retires), so a subscriber arriving then is given a current
/// state at once.
async fn watch_event(node: Arc<Node>, event: Id, sender: Arc<watch::Sender<Latest>>) {
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
            _ = closing.wait_for(|closing| *closing) => break,
        }
        if sender.receiver_count() == 0 {
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= idle_limit && node.streams.retire(&node, event, &sender) {
                break;
            }
        } else {
            idle_since = None;
        }
        match state::read(&node, event).await {
            Ok(read) => {
                failing = false;
                sender.send_if_modified(|latest| state::publish(latest, read));
            }
            // Subscribers keep the last state and their keep-alives; said once per outage.
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "reading a streamed event's state failed");
            }
            Err(_) => {}
        }
    }
    // At shutdown the entry goes too, so the gauge says what runs.
    if *closing.borrow() {
        let mut watchers = node.streams.watchers.lock().expect("stream watchers");
        watchers.remove(&event.as_i64());
        node.metrics.stream_watchers.set(watchers.len() as i64);
    }
}
