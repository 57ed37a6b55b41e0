//! A Server-Sent Events reader for tests of live streams (`GET /events/{id}/stream`), on a
//! node or through a router: the frames a stream sends, one at a time, within a time bound.

use std::time::{Duration, Instant};

use serde_json::Value;
use wire::stream::{StreamId, KEEP_ALIVE};

/// One frame of a stream (the text up to a blank line).
#[derive(Debug)]
pub enum Frame {
    /// `retry: <ms>`.
    Retry(String),
    KeepAlive,
    /// An `event: state` message.
    State {
        id: StreamId,
        data: Value,
    },
}

pub struct Sse {
    response: reqwest::Response,
    buffer: Vec<u8>,
    /// The server ended the stream.
    pub ended: bool,
}

impl Sse {
    /// Checks a stream's head (`200`, `text/event-stream`, not cached, not buffered) and its
    /// first line (`retry: 2000`).
    pub async fn from_response(response: reqwest::Response) -> Sse {
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers["content-type"], wire::stream::CONTENT_TYPE);
        assert_eq!(headers["cache-control"], "no-cache");
        assert_eq!(headers["x-accel-buffering"], "no");
        let mut sse = Sse {
            response,
            buffer: Vec::new(),
            ended: false,
        };
        match sse.next(Duration::from_secs(5)).await {
            Some(Frame::Retry(ms)) => assert_eq!(ms, "2000"),
            other => panic!("the stream began with {other:?}"),
        }
        sse
    }

    /// `GET url` (a stream's address), resuming after `last` if given.
    pub async fn open(http: &reqwest::Client, url: &str, last: Option<StreamId>) -> Sse {
        let mut request = http.get(url);
        if let Some(last) = last {
            request = request.header("last-event-id", last.to_string());
        }
        Sse::from_response(request.send().await.expect("the server answers")).await
    }

    /// The next frame within `within`; `None` if none came or the stream ended (`ended`).
    pub async fn next(&mut self, within: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.buffer.drain(..end + 2).collect();
                return Some(parse(&frame));
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return None,
                Ok(Ok(Some(chunk))) => self.buffer.extend_from_slice(&chunk),
                Ok(Ok(None) | Err(_)) => self.ended = true,
            }
        }
    }

    /// The next state message within `within`, passing keep-alives.
    pub async fn next_state(&mut self, within: Duration) -> Option<(StreamId, Value)> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await? {
                Frame::State { id, data } => return Some((id, data)),
                Frame::KeepAlive => {}
                Frame::Retry(_) => panic!("retry sent twice"),
            }
        }
    }

    /// Asserts that no state message comes within `within` and that the stream stays open
    /// (keep-alives may come); returns how many keep-alives came.
    pub async fn no_state(&mut self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        let mut keep_alives = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                None => {
                    assert!(!self.ended, "the stream ended");
                    return keep_alives;
                }
                Some(Frame::KeepAlive) => keep_alives += 1,
                Some(frame) => panic!("expected nothing but keep-alives, got {frame:?}"),
            }
        }
    }
}

fn parse(frame: &[u8]) -> Frame {
    if frame == KEEP_ALIVE {
        return Frame::KeepAlive;
    }
    let frame = std::str::from_utf8(frame).expect("a stream is UTF-8");
    if let Some(ms) = frame.strip_prefix("retry: ") {
        return Frame::Retry(ms.trim().to_owned());
    }
    let field = |name: &str| {
        frame
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {frame:?}"))
    };
    assert_eq!(field("event: "), "state");
    Frame::State {
        id: field("id: ").parse().expect("a stream id"),
        data: serde_json::from_str(field("data: ")).expect("JSON data"),
    }
}
