//! The live streams' registry, shared by all of a node's subscribers: one `watch` channel per
//! watched event, the node's shutdown signal for streams, and the watcher gauge. It knows
//! nothing of how an event is read (`watcher` does), so the node's state can hold it without a
//! module circle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

use crate::streams::state::Published;

/// The latest state of an event (`None` until its first read).
pub type Latest = Option<Published>;

/// The channel an event's watcher publishes on.
pub type Channel = Arc<watch::Sender<Latest>>;

pub struct Hub {
    /// The channel of each watched event. Subscribing and a watcher's ending both happen under
    /// this lock, so no subscriber joins a watcher that is leaving.
    watchers: Mutex<HashMap<i64, Channel>>,
    /// Set at shutdown: streams end, so a graceful stop is not held up by them.
    closing: watch::Sender<bool>,
    /// Events watched now (`stream_watchers`).
    gauge: Gauge,
}

impl Hub {
    pub fn new(gauge: Gauge) -> Hub {
        Hub {
            watchers: Mutex::default(),
            closing: watch::Sender::new(false),
            gauge,
        }
    }

    /// A receiver of `event`'s states; when it has no watcher, `start` is given the new
    /// channel to start one on.
    pub fn subscribe(&self, event: i64, start: impl FnOnce(Channel)) -> watch::Receiver<Latest> {
        let mut watchers = self.watchers.lock().expect("stream watchers");
        if let Some(channel) = watchers.get(&event) {
            return channel.subscribe();
        }
        let (sender, receiver) = watch::channel(None);
        let channel = Arc::new(sender);
        watchers.insert(event, Arc::clone(&channel));
        self.gauge.set(watchers.len() as i64);
        start(channel);
        receiver
    }

    /// Forgets `event`'s watcher if nobody subscribed meanwhile (or at shutdown, whatever
    /// subscribed); true when it was forgotten and its watcher is to end.
    pub fn retire(&self, event: i64, channel: &Channel) -> bool {
        let mut watchers = self.watchers.lock().expect("stream watchers");
        if channel.receiver_count() > 0 && !*self.closing.borrow() {
            return false;
        }
        watchers.remove(&event);
        self.gauge.set(watchers.len() as i64);
        true
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_of_an_event_share_one_channel_until_it_retires_with_none_left() {
        let hub = Hub::new(Gauge::default());
        let mut started = Vec::new();
        let first = hub.subscribe(7, |c| started.push(c));
        let second = hub.subscribe(7, |_| panic!("a second watcher"));
        let _other = hub.subscribe(8, |c| started.push(c));
        assert_eq!((started.len(), hub.watched(), hub.gauge.get()), (2, 2, 2));
        let channel = Arc::clone(&started[0]);
        assert!(!hub.retire(7, &channel), "retired with subscribers");
        drop((first, second));
        assert!(hub.retire(7, &channel));
        assert_eq!((hub.watched(), hub.gauge.get()), (1, 1));
        // The next subscriber starts a new watcher.
        let _again = hub.subscribe(7, |c| started.push(c));
        assert_eq!(started.len(), 3);
        // At shutdown a watcher retires whoever still listens.
        hub.close();
        assert!(hub.retire(8, &started[1]));
    }
}
