//! One subscriber's Server-Sent Events answer: `retry: 2000`, then the event's states as
//! `wire::stream::resume` decides against what this subscriber was last sent (its
//! `Last-Event-ID` at first), and a keep-alive after `streams.keepalive_ms` of silence. The
//! request time limit bounds only the time to the answer's head, so it never cuts a stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use id_gen::Id;
use tokio::sync::watch;
use tokio::time::{Interval, MissedTickBehavior};
use wire::stream::{self, Resume, StreamId};

use crate::error::ApiResult;
use crate::state::Node;
use crate::streams::hub::Latest;
use crate::streams::watcher;

/// The first line of every stream: a client reconnects after 2 s.
const RETRY: &[u8] = b"retry: 2000\n\n";

/// The `Last-Event-ID` a reconnecting client sent, if any.
pub fn last_event_id(headers: &HeaderMap) -> ApiResult<Option<StreamId>> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| stream::BadStreamId)?;
    Ok(Some(text.parse()?))
}

/// The streamed answer for `event` (known to exist) to a subscriber last sent `last`.
pub fn respond(node: &Arc<Node>, event: Id, last: Option<StreamId>) -> Response {
    let subscription = Subscription::new(node, event, last);
    let body = futures::stream::unfold(subscription, |mut s| async move {
        s.next().await.map(|bytes| (Ok::<_, Infallible>(bytes), s))
    });
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(stream::CONTENT_TYPE),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// What to write next to one subscriber.
struct Subscription {
    node: Arc<Node>,
    states: watch::Receiver<Latest>,
    closing: watch::Receiver<bool>,
    /// The id of the last state this subscriber has (sent, or its `Last-Event-ID`).
    last: Option<StreamId>,
    /// The latest state is behind `last` (this region's replica lags): look again each
    /// interval, since a position moving on alone wakes nobody.
    waiting: bool,
    /// The current state has not been judged yet (true at first: it is the first message).
    unseen: bool,
    retry_sent: bool,
    keepalive: Interval,
    recheck: Interval,
}

impl Subscription {
    fn new(node: &Arc<Node>, event: Id, last: Option<StreamId>) -> Subscription {
        let config = &node.config.streams;
        let every = |ms: u64| {
            let period = Duration::from_millis(ms);
            let mut interval =
                tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            interval
        };
        node.metrics.stream_subscribers.inc();
        Subscription {
            states: watcher::subscribe(node, event),
            closing: node.streams.closing(),
            node: Arc::clone(node),
            last,
            waiting: false,
            unseen: true,
            retry_sent: false,
            keepalive: every(config.keepalive_ms),
            recheck: every(config.interval_ms),
        }
    }

    /// The next bytes of the answer; `None` ends it (at shutdown).
    async fn next(&mut self) -> Option<Bytes> {
        if !std::mem::replace(&mut self.retry_sent, true) {
            return Some(Bytes::from_static(RETRY));
        }
        loop {
            if std::mem::take(&mut self.unseen) {
                if let Some(message) = self.judge() {
                    self.keepalive.reset();
                    self.node.metrics.stream_messages.inc();
                    return Some(Bytes::from(message));
                }
            }
            tokio::select! {
                _ = self.closing.wait_for(|closing| *closing) => return None,
                changed = self.states.changed() => {
                    changed.ok()?;
                    self.unseen = true;
                }
                _ = self.recheck.tick(), if self.waiting => self.unseen = true,
                _ = self.keepalive.tick() => return Some(Bytes::from_static(stream::KEEP_ALIVE)),
            }
        }
    }

    /// The latest state's message if this subscriber is to be sent it.
    fn judge(&mut self) -> Option<String> {
        let latest = self.states.borrow_and_update().clone()?;
        match stream::resume(self.last, latest.id) {
            Resume::Send => {
                self.last = Some(latest.id);
                self.waiting = false;
                Some(latest.message())
            }
            Resume::Skip => {
                self.waiting = false;
                None
            }
            Resume::Wait => {
                self.waiting = true;
                None
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.node.metrics.stream_subscribers.dec();
    }
}
