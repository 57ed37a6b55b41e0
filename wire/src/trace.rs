//! The span every request is logged under, the same in router and node, so one request's lines
//! can be followed across both by its request id and W3C `traceparent`; and which client
//! request ids are kept.

use axum::http::{HeaderMap, Request};

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

/// Whether a client's `X-Request-Id` is kept: 1 to 64 characters of `A-Z a-z 0-9 . _ : -`, so
/// it is safe in logs and headers. Anything else is replaced by a fresh id, never echoed.
pub fn is_valid_request_id(id: &[u8]) -> bool {
    (1..=64).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Removes `X-Request-Id` unless it is one valid value; the service then mints its own. Called
/// for every request as it comes off the connection (`server`), in both services.
pub fn drop_invalid_request_id(headers: &mut HeaderMap) {
    let mut ids = headers.get_all(X_REQUEST_ID).iter();
    let keep = match (ids.next(), ids.next()) {
        (None, _) => return,
        (Some(id), None) => is_valid_request_id(id.as_bytes()),
        (Some(_), Some(_)) => false,
    };
    if !keep {
        headers.remove(X_REQUEST_ID);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn request_ids_are_kept_only_when_short_and_plain() {
        for good in [
            "a",
            "req-1",
            "0af7651916cd43dd8448eb211c80319c",
            "x.y_z:1-2",
        ] {
            assert!(is_valid_request_id(good.as_bytes()), "{good}");
        }
        let long = "a".repeat(65);
        for bad in [
            "",
            "a b",
            "<script>",
            "id\u{e9}",
            "a/b",
            "a,b",
            long.as_str(),
        ] {
            assert!(!is_valid_request_id(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn a_bad_or_repeated_request_id_is_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("ok-1"));
        drop_invalid_request_id(&mut headers);
        assert_eq!(headers[X_REQUEST_ID], "ok-1");
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("not ok"));
        drop_invalid_request_id(&mut headers);
        assert!(headers.get(X_REQUEST_ID).is_none());
        headers.append(X_REQUEST_ID, HeaderValue::from_static("a"));
        headers.append(X_REQUEST_ID, HeaderValue::from_static("b"));
        drop_invalid_request_id(&mut headers);
        assert!(headers.get(X_REQUEST_ID).is_none());
    }
}
