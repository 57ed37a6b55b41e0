//! An upstream's answer on its way back to the client: whole, or streamed as it comes (Server-Sent
//! Events), labelled with the region that answered and the time the call took.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::Response;
use hyper::body::Incoming;

use crate::headers::X_READ_FALLBACK;
use crate::upstream::hygiene::remove_response_hop_headers;
use crate::upstream::request::Upstream;

/// An upstream's answer, on its way back to the client. It borrows region names from the
/// router's region table, which outlives every request.
pub struct Answer<'a> {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: AnswerBody,
    /// The region that answered.
    pub region: &'a str,
    /// Time across the upstream call, retries included (up to the headers, for streams).
    pub upstream_time: Duration,
    /// Set when a read was served by another region: the region it should have come from.
    pub fallback_from: Option<&'a str>,
}

/// An answer's body: read whole, or still coming.
pub enum AnswerBody {
    Full(Bytes),
    /// Server-Sent Events: passed on as they come, with no overall deadline.
    Stream(Incoming),
}

/// Where the router measured its upstream time, for `Server-Timing`.
#[derive(Clone, Copy, Debug)]
pub struct UpstreamTiming<'a> {
    pub region: &'a str,
    pub duration: Duration,
}

impl<'a> Answer<'a> {
    /// An answer read whole.
    pub fn full(
        upstream: Upstream<'a>,
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    ) -> Answer<'a> {
        Answer::new(upstream, status, headers, AnswerBody::Full(body))
    }

    /// An answer whose body is passed on as it arrives.
    pub fn streamed(
        upstream: Upstream<'a>,
        status: StatusCode,
        headers: HeaderMap,
        body: Incoming,
    ) -> Answer<'a> {
        Answer::new(upstream, status, headers, AnswerBody::Stream(body))
    }

    fn new(
        upstream: Upstream<'a>,
        status: StatusCode,
        headers: HeaderMap,
        body: AnswerBody,
    ) -> Answer<'a> {
        Answer {
            status,
            headers,
            body,
            region: upstream.region,
            upstream_time: Duration::ZERO,
            fallback_from: None,
        }
    }

    /// The client's response: the upstream's status, headers (minus hop-by-hop ones) and body,
    /// plus `X-Read-Fallback` when another region served a read; and the upstream's timing.
    pub fn into_response(self) -> (Response, UpstreamTiming<'a>) {
        let timing = UpstreamTiming {
            region: self.region,
            duration: self.upstream_time,
        };
        let (status, headers, body) = self.into_parts();
        let body = match body {
            AnswerBody::Full(bytes) => Body::from(bytes),
            // Frames pass through as they come; an upstream error ends the stream.
            AnswerBody::Stream(body) => Body::new(body),
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        (response, timing)
    }

    /// What goes to the client: the status, the headers (minus hop-by-hop ones, and with
    /// `X-Read-Fallback` when another region served a read; no `Content-Length` on a stream)
    /// and the body.
    pub fn into_parts(self) -> (StatusCode, HeaderMap, AnswerBody) {
        let mut headers = self.headers;
        remove_response_hop_headers(&mut headers);
        // Room for the router's own answer headers (home region, key, ids, timing, fallback).
        headers.reserve(6);
        if matches!(self.body, AnswerBody::Stream(_)) {
            headers.remove(header::CONTENT_LENGTH);
        }
        if let Some(from) = self.fallback_from {
            if let Ok(v) = HeaderValue::from_str(&format!("{from} -> {}", self.region)) {
                headers.insert(X_READ_FALLBACK, v);
            }
        }
        (self.status, headers, self.body)
    }
}

/// Whether an answer is a Server-Sent Events stream (to be passed on unbuffered).
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_streams_are_recognised() {
        let mut h = HeaderMap::new();
        assert!(!is_event_stream(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        assert!(is_event_stream(&h));
    }
}
