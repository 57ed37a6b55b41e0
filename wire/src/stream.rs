//! Live streams (Server-Sent Events), as the node writes them and the router relays them: the
//! message id, which carries the WAL position the message's state was read at and a digest of
//! that state, and the one rule for what a subscriber resuming with `Last-Event-ID` is sent.
//!
//! The WAL position is the shard's, the same in every region (physical replication), so a
//! subscriber can resume in any region: what it was last sent is never shown older (a region
//! whose replica is behind waits until it has replayed that far) and never shown twice (the
//! same state, by digest, is skipped), and a change since is sent at once.
//!
//! A replica replays while a state is read, so a read knows its position only as a range: the
//! replay position before the read (the state holds everything up to it) and after it (the
//! state holds nothing past it). An id carries both when they differ, and a state is newer
//! than one already sent only if its lower bound is at or past the sent one's upper bound.

use std::fmt;
use std::str::FromStr;

/// `Content-Type` of a stream.
pub const CONTENT_TYPE: &str = "text/event-stream";
/// A comment line sent when nothing changed for a while, so that idle connections stay open
/// through proxies and the client knows the stream is alive.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// A message's id: `<lsn hex>.<digest hex>` for a state read at one position, e.g.
/// `3a1b2c8.9f00c2d41e5b7a60`, or `<lsn hex>-<upto hex>.<digest hex>` for one read while the
/// replica replayed from `lsn` to `upto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamId {
    /// The state holds everything the shard wrote up to this WAL position.
    pub lsn: u64,
    /// ... and nothing past this one (`>= lsn`).
    pub upto: u64,
    /// A digest of the state (`digest`); equal digests mean the same state.
    pub digest: u64,
}

impl StreamId {
    /// A state read at exactly `lsn`.
    pub fn at(lsn: u64, digest: u64) -> StreamId {
        StreamId {
            lsn,
            upto: lsn,
            digest,
        }
    }

    /// A state read while the replica replayed from `lsn` to `upto` (ordered whichever way
    /// they are given).
    pub fn between(lsn: u64, upto: u64, digest: u64) -> StreamId {
        StreamId {
            lsn: lsn.min(upto),
            upto: lsn.max(upto),
            digest,
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.upto == self.lsn {
            write!(f, "{:x}.{:016x}", self.lsn, self.digest)
        } else {
            write!(f, "{:x}-{:x}.{:016x}", self.lsn, self.upto, self.digest)
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Last-Event-ID must be an id this stream sent (<hex>[-<hex>].<16 hex digits>)")]
pub struct BadStreamId;

impl FromStr for StreamId {
    type Err = BadStreamId;

    fn from_str(s: &str) -> Result<StreamId, BadStreamId> {
        let (range, digest) = s.trim().split_once('.').ok_or(BadStreamId)?;
        let hex = |part: &str, max: usize| {
            if part.is_empty() || part.len() > max || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(BadStreamId);
            }
            u64::from_str_radix(part, 16).map_err(|_| BadStreamId)
        };
        let (lsn, upto) = match range.split_once('-') {
            Some((lsn, upto)) => (hex(lsn, 16)?, hex(upto, 16)?),
            None => (hex(range, 16)?, hex(range, 16)?),
        };
        if upto < lsn {
            return Err(BadStreamId);
        }
        Ok(StreamId::between(lsn, upto, hex(digest, 16)?))
    }
}

/// FNV-1a over a state's bytes: stable across processes and builds (unlike `DefaultHasher`),
/// so two regions give one state the same digest.
pub fn digest(state: &[u8]) -> u64 {
    state.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What to do with the latest state for a subscriber that was last sent `last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Send it.
    Send,
    /// The subscriber has it already: wait for the next change.
    Skip,
    /// It may be older than what the subscriber was sent (this region's replica is behind):
    /// wait until a state read at or past the subscriber's position.
    Wait,
}

/// The rule: the same state is never sent twice, an older one never at all.
pub fn resume(last: Option<StreamId>, latest: StreamId) -> Resume {
    match last {
        None => Resume::Send,
        Some(last) if last.digest == latest.digest => Resume::Skip,
        Some(last) if latest.lsn < last.upto => Resume::Wait,
        Some(_) => Resume::Send,
    }
}

/// One SSE message: `id`, `event` name and a one-line JSON `data`, ended by a blank line.
pub fn message(id: StreamId, event: &str, data: &str) -> String {
    debug_assert!(!data.contains('\n'), "SSE data must be one line here");
    format!("id: {id}\nevent: {event}\ndata: {data}\n\n")
}

/// The id of a framed message (`message`'s output, or a relayed one), if it has one.
pub fn id_of(message: &[u8]) -> Option<StreamId> {
    let text = std::str::from_utf8(message).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("id:"))
        .and_then(|id| id.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_parse_back() {
        let id = StreamId::at(0x3A1B2C8, 0x9f00c2d41e5b7a60);
        assert_eq!(id.to_string(), "3a1b2c8.9f00c2d41e5b7a60");
        assert_eq!(id.to_string().parse::<StreamId>(), Ok(id));
        let range = StreamId::between(0x20, 0x10, 7);
        assert_eq!((range.lsn, range.upto), (0x10, 0x20));
        assert_eq!(range.to_string(), "10-20.0000000000000007");
        assert_eq!(range.to_string().parse::<StreamId>(), Ok(range));
        for bad in [
            "",
            "1",
            ".1",
            "1.",
            "g.1",
            "1.2.3",
            "12345678901234567.1",
            "1. 2",
            "2-1.5",
            "1-.5",
            "-1.5",
        ] {
            assert_eq!(bad.parse::<StreamId>(), Err(BadStreamId), "{bad}");
        }
    }

    #[test]
    fn digests_are_stable_and_tell_states_apart() {
        assert_eq!(digest(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(digest(b"{\"a\":1}"), digest(b"{\"a\":1}"));
        assert_ne!(digest(b"{\"a\":1}"), digest(b"{\"a\":2}"));
    }

    #[test]
    fn a_resumed_stream_neither_repeats_nor_goes_back() {
        let at = StreamId::at;
        assert_eq!(resume(None, at(5, 1)), Resume::Send);
        // Same state, whatever the position: already seen.
        assert_eq!(resume(Some(at(5, 1)), at(9, 1)), Resume::Skip);
        assert_eq!(resume(Some(at(5, 1)), at(3, 1)), Resume::Skip);
        // Another state from behind the subscriber's position: this replica lags; wait.
        assert_eq!(resume(Some(at(5, 1)), at(3, 2)), Resume::Wait);
        // A newer state: send.
        assert_eq!(resume(Some(at(5, 1)), at(5, 2)), Resume::Send);
        assert_eq!(resume(Some(at(5, 1)), at(8, 2)), Resume::Send);
        // Sent a state read while replay went from 5 to 9: a state read from 7 on may be
        // older than it; one read from 9 on is not.
        let sent = StreamId::between(5, 9, 1);
        assert_eq!(
            resume(Some(sent), StreamId::between(7, 12, 2)),
            Resume::Wait
        );
        assert_eq!(resume(Some(sent), at(9, 2)), Resume::Send);
    }

    #[test]
    fn messages_carry_their_id() {
        let id = StreamId::at(16, 7);
        let framed = message(id, "state", "{\"x\":1}");
        assert_eq!(
            framed,
            "id: 10.0000000000000007\nevent: state\ndata: {\"x\":1}\n\n"
        );
        assert_eq!(id_of(framed.as_bytes()), Some(id));
        assert_eq!(id_of(KEEP_ALIVE), None);
    }
}
