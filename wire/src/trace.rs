//! The span every request is logged under, the same in router and node, so one request's lines
//! can be followed across both by its request id and W3C `traceparent`.

use axum::http::Request;

use crate::headers::{TRACEPARENT, X_REQUEST_ID};

/// `request{method, uri, request_id, traceparent}`; `-` for a header that is absent or not text.
pub fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let header = |name| {
        request
            .headers()
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
    };
    tracing::info_span!(
        "request",
        method = %request.method(),
        uri = %request.uri(),
        request_id = %header(X_REQUEST_ID),
        traceparent = %header(TRACEPARENT),
    )
}
