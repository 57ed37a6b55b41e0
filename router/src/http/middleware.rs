//! Middleware on every answer: the W3C trace context carried through (or started), and the
//! stamp of `Server-Timing`, `X-Served-By` and the request counter.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use wire::headers::{SERVER_TIMING, TRACEPARENT, X_SERVED_BY};

use crate::metrics::RequestLabels;
use crate::routing::plan::is_read;
use crate::state::App;
use crate::trace::{is_valid_traceparent, new_traceparent};
use crate::upstream::answer::UpstreamTiming;

/// Passes a valid W3C `traceparent` on unchanged and starts a trace for requests without one
/// (or with a malformed one), so the node's logs join the router's. The client gets it back.
pub async fn trace_context(mut request: Request, next: Next) -> Response {
    let incoming = request
        .headers()
        .get(TRACEPARENT)
        .filter(|v| v.to_str().is_ok_and(is_valid_traceparent))
        .cloned();
    let traceparent = match incoming {
        Some(v) => v,
        None => {
            let v = new_traceparent();
            request.headers_mut().insert(TRACEPARENT, v.clone());
            v
        }
    };
    let mut response = next.run(request).await;
    response.headers_mut().insert(TRACEPARENT, traceparent);
    response
}

/// `Server-Timing` (router time and upstream time, after the node's own entries),
/// `X-Served-By` for answers the router gave itself, and the request counter.
pub async fn stamp(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let kind = request_kind(&request);
    let mut response = next.run(request).await;
    let total = start.elapsed();
    let upstream = response.extensions().get::<UpstreamTiming>().cloned();
    let headers = response.headers_mut();
    if !headers.contains_key(X_SERVED_BY) {
        headers.insert(X_SERVED_BY, app.name.clone());
    }
    append_server_timing(headers, total, upstream.as_ref());
    app.metrics
        .requests
        .get_or_create(&RequestLabels {
            kind,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// The request counter's `kind`: `ops` outside the API, else `read` or `write`.
fn request_kind(request: &Request) -> &'static str {
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
    upstream: Option<&UpstreamTiming>,
) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let router = total.saturating_sub(upstream.map_or(Duration::ZERO, |u| u.duration));
    let mut entries: Vec<String> = headers
        .get_all(SERVER_TIMING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    entries.push(format!("router;dur={:.1}", ms(router)));
    if let Some(u) = upstream {
        entries.push(format!(
            "upstream;desc=\"{}\";dur={:.1}",
            u.region,
            ms(u.duration)
        ));
    }
    if let Ok(v) = HeaderValue::from_str(&entries.join(", ")) {
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
            region: "eu-west".into(),
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
