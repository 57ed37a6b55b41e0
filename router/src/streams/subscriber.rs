//! One client of a relay: its position in the stream (what it was last sent, by the resume
//! rule of `wire::stream`) and its response body, which writes each message on its own as it
//! comes (the relay's shared `Bytes`, never a copy), and a keep-alive comment when nothing was
//! written for a while.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use tokio::sync::watch;
use tokio::time::Instant;
use wire::stream::{resume, Resume, StreamId, KEEP_ALIVE};

use crate::metrics::Held;
use crate::streams::caps::StreamPermit;
use crate::streams::relay::{Message, Phase, Relayed};

/// The first thing a client is sent: how long to wait before reconnecting, as the node says.
pub const RETRY: &[u8] = b"retry: 2000\n\n";

/// Where a client is in its relay's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The id of the last message it was sent (or its `Last-Event-ID`).
    pub last: Option<StreamId>,
    /// The relay's number of the latest message it has decided on.
    pub seen: u64,
}

impl Position {
    pub fn new(last_event_id: Option<StreamId>) -> Position {
        Position {
            last: last_event_id,
            seen: 0,
        }
    }

    /// What to write of the relay's latest message, if anything: a message decided on once is
    /// never looked at again; one without an id is sent; else `wire::stream::resume` decides
    /// (already seen: skipped; older than what the client has: not sent, the next one may be).
    pub fn next(&mut self, latest: Option<&Message>) -> Option<Bytes> {
        let latest = latest.filter(|m| m.seq > self.seen)?;
        self.seen = latest.seq;
        let Some(id) = latest.id else {
            return Some(latest.bytes.clone());
        };
        match resume(self.last, id) {
            Resume::Send => {
                self.last = Some(id);
                Some(latest.bytes.clone())
            }
            Resume::Skip | Resume::Wait => None,
        }
    }
}

/// A client's stream body, holding its place under the per-address cap (and its unit of the
/// subscribers gauge) until it ends.
pub fn body(
    rx: watch::Receiver<Relayed>,
    position: Position,
    keepalive: Duration,
    held: (StreamPermit, Held),
) -> Body {
    let subscriber = Subscriber {
        rx,
        position,
        keepalive,
        next_beat: Instant::now() + keepalive,
        retry_sent: false,
        _held: held,
    };
    Body::from_stream(futures::stream::unfold(subscriber, |mut s| async move {
        let bytes = s.next().await?;
        Some((Ok::<_, Infallible>(bytes), s))
    }))
}

struct Subscriber {
    rx: watch::Receiver<Relayed>,
    position: Position,
    keepalive: Duration,
    /// When a keep-alive is due if nothing else is written before.
    next_beat: Instant,
    retry_sent: bool,
    _held: (StreamPermit, Held),
}

impl Subscriber {
    /// The next bytes to write, one message at a time (each its own frame, written and
    /// flushed as it comes); `None` ends the stream.
    async fn next(&mut self) -> Option<Bytes> {
        if !self.retry_sent {
            self.retry_sent = true;
            return Some(Bytes::from_static(RETRY));
        }
        loop {
            let message = {
                let relayed = self.rx.borrow_and_update();
                if matches!(relayed.phase, Phase::Ended | Phase::Refused(_)) {
                    return None;
                }
                self.position.next(relayed.latest.as_ref())
            };
            if let Some(bytes) = message {
                self.next_beat = Instant::now() + self.keepalive;
                return Some(bytes);
            }
            tokio::select! {
                changed = self.rx.changed() => changed.ok()?,
                () = tokio::time::sleep_until(self.next_beat) => {
                    self.next_beat = Instant::now() + self.keepalive;
                    return Some(Bytes::from_static(KEEP_ALIVE));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64, id: Option<(u64, u64)>) -> Message {
        Message {
            seq,
            id: id.map(|(lsn, digest)| StreamId::at(lsn, digest)),
            bytes: Bytes::from(format!("data: {seq}\n\n")),
        }
    }

    #[test]
    fn a_client_gets_each_new_state_once_and_never_an_older_one() {
        let mut fresh = Position::new(None);
        assert_eq!(fresh.next(None), None);
        let first = message(1, Some((10, 1)));
        assert!(fresh.next(Some(&first)).is_some());
        // The same message again (a phase change woke the client): not resent.
        assert_eq!(fresh.next(Some(&first)), None);
        assert!(fresh.next(Some(&message(2, Some((11, 2))))).is_some());
        assert_eq!(fresh.last, Some(StreamId::at(11, 2)));

        // Resumed at (10, 1): that state is skipped, an older one waited past, a newer sent.
        let mut resumed = Position::new(Some(StreamId::at(10, 1)));
        assert_eq!(resumed.next(Some(&message(5, Some((12, 1))))), None);
        assert_eq!(resumed.next(Some(&message(6, Some((9, 3))))), None);
        assert!(resumed.next(Some(&message(7, Some((13, 4))))).is_some());
        assert_eq!(resumed.last, Some(StreamId::at(13, 4)));

        // A message without an id cannot be compared: sent.
        let mut plain = Position::new(Some(StreamId::at(10, 1)));
        assert!(plain.next(Some(&message(1, None))).is_some());
        assert_eq!(plain.last, Some(StreamId::at(10, 1)));
    }

    #[test]
    fn messages_are_the_relays_bytes_not_copies() {
        let shared = message(1, None);
        let sent = Position::new(None).next(Some(&shared)).unwrap();
        assert_eq!(sent.as_ptr(), shared.bytes.as_ptr());
    }
}
