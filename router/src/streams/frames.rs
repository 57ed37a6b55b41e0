//! The upstream's stream cut into whole Server-Sent Events frames (each ended by a blank line),
//! as bytes ready to pass on unchanged: a relay publishes a message only once it is whole.

use axum::body::Bytes;
use wire::stream::{id_of, StreamId};

/// Past this much without the end of a frame the upstream is not speaking SSE as the node does
/// (one-line JSON states are a few kilobytes), and the relay drops its connection.
pub const MAX_FRAME: usize = 1 << 20;

/// One whole frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A frame with data: a state, passed on to clients as it came.
    Message { id: Option<StreamId>, bytes: Bytes },
    /// Comments (keep-alives) and `retry:` lines: the router writes its own.
    Control,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an upstream stream frame is longer than {MAX_FRAME} bytes")]
pub struct FrameTooLong;

/// Bytes received and not yet a whole frame.
#[derive(Debug, Default)]
pub struct Frames {
    pending: Vec<u8>,
    /// Where to look for the next frame end: bytes before it were already searched.
    searched: usize,
}

impl Frames {
    /// Takes the next chunk of the upstream's body.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), FrameTooLong> {
        self.pending.extend_from_slice(chunk);
        let end_found = self.pending[self.searched.saturating_sub(1)..]
            .windows(2)
            .any(|w| w == b"\n\n");
        if !end_found && self.pending.len() > MAX_FRAME {
            return Err(FrameTooLong);
        }
        Ok(())
    }

    /// The next whole frame, if one has arrived.
    pub fn next_frame(&mut self) -> Option<Frame> {
        let from = self.searched.saturating_sub(1);
        let Some(at) = self.pending[from..].windows(2).position(|w| w == b"\n\n") else {
            self.searched = self.pending.len();
            return None;
        };
        let end = from + at + 2;
        let bytes = Bytes::copy_from_slice(&self.pending[..end]);
        self.pending.drain(..end);
        self.searched = 0;
        let has_data = bytes
            .split(|b| *b == b'\n')
            .any(|line| line.starts_with(b"data"));
        Some(if has_data {
            Frame::Message {
                id: id_of(&bytes),
                bytes,
            }
        } else {
            Frame::Control
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::stream::{message, KEEP_ALIVE};

    #[test]
    fn frames_are_cut_where_they_end_whatever_the_chunks() {
        let id = StreamId::at(16, 7);
        let first = message(id, "state", r#"{"a":1}"#);
        let second = "data: 2\n\n";
        let all = format!("retry: 2000\n\n{first}{second}");
        let all = [all.as_bytes(), KEEP_ALIVE].concat();
        // Every way of cutting the bytes in two gives the same frames.
        for cut in 0..all.len() {
            let mut frames = Frames::default();
            let mut got = Vec::new();
            for chunk in [&all[..cut], &all[cut..]] {
                frames.push(chunk).unwrap();
                while let Some(frame) = frames.next_frame() {
                    got.push(frame);
                }
            }
            assert_eq!(
                got,
                vec![
                    Frame::Control,
                    Frame::Message {
                        id: Some(id),
                        bytes: Bytes::from(first.clone())
                    },
                    Frame::Message {
                        id: None,
                        bytes: Bytes::from_static(second.as_bytes())
                    },
                    Frame::Control,
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_frame_that_never_ends_is_refused() {
        let mut frames = Frames::default();
        frames.push(b"data: ").unwrap();
        let long = vec![b'x'; MAX_FRAME];
        assert_eq!(frames.push(&long), Err(FrameTooLong));
        let mut frames = Frames::default();
        frames.push(&long).unwrap();
        assert_eq!(frames.next_frame(), None);
    }
}
