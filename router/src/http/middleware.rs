//! What every request and answer passes through, called by the front service in `server`: the
//! request id and the W3C trace context (`Ids`), the request's log events (`trace_answer`), the
//! stamp of `Server-Timing`, `X-Served-By` and the request counter (`stamp`), and, for API
//! requests, the rate limits per client address (`rate_limit`).
//!
//! Plain functions, not layers: `axum::middleware::from_fn` and tower-http's request-id and
//! trace layers each boxed a future, cloned a service or wrapped the body per request; a proxy
//! should not pay for that on every request. What they did is kept: the same headers, the same
//! span (`wire::trace::request_span`) and the same events, at the same levels.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use wire::headers::{SERVER_TIMING, TRACEPARENT, X_REQUEST_ID, X_SERVED_BY};
use wire::limits::Limited;

use crate::limits::classify;
use crate::metrics::RequestLabels;
use crate::routing::plan::is_read;
use crate::state::App;
use crate::trace::{is_valid_traceparent, new_request_id, new_traceparent};
use crate::upstream::answer::UpstreamTiming;

/// The request id and trace context of one request, carried upstream and back to the client.
pub struct Ids {
    request_id: HeaderValue,
    traceparent: HeaderValue,
}

impl Ids {
    /// Gives the request an `X-Request-Id` (the client's, or a new one) and a `traceparent` (a
    /// valid one passed on unchanged, else a new trace, as the W3C rule for a malformed one
    /// says), so the node's logs join the router's.
    pub fn on_request(request: &mut Request) -> Ids {
        let headers = request.headers_mut();
        // Room for what the router adds before the headers go upstream (ids, forwarding,
        // client region, idempotency key, hop mark): one allocation, not a regrowth per insert.
        headers.reserve(8);
        let request_id = match headers.get(X_REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = new_request_id();
                headers.insert(X_REQUEST_ID, id.clone());
                id
            }
        };
        let incoming = headers
            .get(TRACEPARENT)
            .filter(|v| v.to_str().is_ok_and(is_valid_traceparent))
            .cloned();
        let traceparent = match incoming {
            Some(v) => v,
            None => {
                let v = new_traceparent();
                headers.insert(TRACEPARENT, v.clone());
                v
            }
        };
        Ids {
            request_id,
            traceparent,
        }
    }

    /// The answer carries both back: the request id unless the upstream already answered with
    /// one, the traceparent always.
    pub fn on_response(self, response: &mut Response) {
        let headers = response.headers_mut();
        if !headers.contains_key(X_REQUEST_ID) {
            headers.insert(X_REQUEST_ID, self.request_id);
        }
        headers.insert(TRACEPARENT, self.traceparent);
    }
}

/// Spends an API request's rate-limit budgets (`limits`) under its client's address: the TCP
/// `peer`, or behind a trusted proxy the address it forwarded for. A write another region's
/// router forwarded counts here too (no header can vouch that it was counted there: a trusted
/// load balancer passes its clients' headers on), against its client when that router is
/// trusted, else against that router.
pub fn rate_limit(app: &App, peer: IpAddr, request: &Request) -> Result<(), Limited> {
    let client = app.client_regions.client_address(peer, request.headers());
    let class = classify(request.method(), request.uri().path());
    app.limits.admit(client, class)
}

/// The events tower-http's `TraceLayer` logged for an answer, in the request span: the answer
/// at debug level, and a server error at error level.
pub fn trace_answer(response: &Response, latency: Duration) {
    let latency = format_args!("{} ms", latency.as_millis());
    let status = response.status();
    tracing::debug!(
        %latency,
        status = i32::from(status.as_u16()),
        "finished processing request"
    );
    if status.is_server_error() {
        tracing::error!(
            classification = %format_args!("Status code: {status}"),
            %latency,
            "response failed"
        );
    }
}

/// `Server-Timing` (router time and upstream time, after the node's own entries), `X-Served-By`
/// for answers the router gave itself, and the request counter. `total` is the time since the
/// request reached the router's service.
pub fn stamp(
    app: &App,
    kind: &'static str,
    total: Duration,
    upstream: Option<&UpstreamTiming<'_>>,
    response: &mut Response,
) {
    let status = response.status().as_u16();
    let headers = response.headers_mut();
    if !headers.contains_key(X_SERVED_BY) {
        headers.insert(X_SERVED_BY, app.name.clone());
    }
    append_server_timing(headers, total, upstream);
    app.metrics
        .requests
        .get_or_create(&RequestLabels { kind, status })
        .inc();
}

/// The request counter's `kind`: `ops` outside the API, else `read` or `write`.
pub fn request_kind(request: &Request) -> &'static str {
    if !request.uri().path().starts_with("/api/") {
        "ops"
    } else if is_read(request.method()) {
        "read"
    } else {
        "write"
    }
}

/// Appends `router;dur=…` and (for forwarded requests) `upstream;desc="<region>";dur=…` to the
/// upstream's own `Server-Timing`, in milliseconds. Router time is total minus upstream.
pub fn append_server_timing(
    headers: &mut HeaderMap,
    total: Duration,
    upstream: Option<&UpstreamTiming<'_>>,
) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let router = total.saturating_sub(upstream.map_or(Duration::ZERO, |u| u.duration));
    let mut value = String::with_capacity(96);
    for entry in headers.get_all(SERVER_TIMING) {
        if let Ok(entry) = entry.to_str() {
            value.push_str(entry);
            value.push_str(", ");
        }
    }
    // Writing into a String cannot fail.
    let _ = write!(value, "router;dur={:.1}", ms(router));
    if let Some(u) = upstream {
        let _ = write!(
            value,
            ", upstream;desc=\"{}\";dur={:.1}",
            u.region,
            ms(u.duration)
        );
    }
    if let Ok(v) = HeaderValue::from_maybe_shared(axum::body::Bytes::from(value)) {
        headers.insert(SERVER_TIMING, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_is_appended_to_the_upstreams() {
        let mut h = HeaderMap::new();
        h.insert(SERVER_TIMING, HeaderValue::from_static("db;dur=3.0"));
        let upstream = UpstreamTiming {
            region: "eu-west",
            duration: Duration::from_micros(81_200),
        };
        append_server_timing(&mut h, Duration::from_micros(81_600), Some(&upstream));
        assert_eq!(
            h[SERVER_TIMING],
            "db;dur=3.0, router;dur=0.4, upstream;desc=\"eu-west\";dur=81.2"
        );
        let mut h = HeaderMap::new();
        append_server_timing(&mut h, Duration::from_micros(1_260), None);
        assert_eq!(h[SERVER_TIMING], "router;dur=1.3");
    }
}
