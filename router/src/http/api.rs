//! `/api/v1/*`: every API request spends its client's rate-limit budget; an event stream goes to
//! its relay (`streams`); otherwise its caller is checked where the route needs one, then its
//! body is read (bounded) and handed to the proxy; nodes answer unknown API routes themselves.

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Body as _;

use crate::error::RouterError;
use crate::http::middleware::rate_limit;
use crate::identity;
use crate::proxy;
use crate::state::App;
use crate::streams::stream_event;
use crate::upstream::answer::UpstreamTiming;

/// Whether `path` is the API's, which the router forwards: `/api/v1` and anything below it
/// (not `/api/v1/` itself, which no route ever matched).
pub fn is_api(path: &str) -> bool {
    match path.strip_prefix("/api/v1") {
        Some(rest) => rest.is_empty() || (rest.starts_with('/') && rest.len() > 1),
        None => false,
    }
}

/// Any API request from `peer`: within its rate limits, its caller checked (identity first:
/// before its body is read), routed and forwarded. The upstream's timing, when one answered, is returned beside the
/// response for `Server-Timing`.
pub async fn api(
    app: &App,
    peer: SocketAddr,
    request: Request,
) -> (Response, Option<UpstreamTiming<'_>>) {
    if let Err(limited) = rate_limit(app, peer.ip(), &request) {
        return (RouterError::from(limited).into_response(), None);
    }
    if let Some(event) = stream_event(request.method(), request.uri().path()) {
        let client = app
            .client_regions
            .client_address(peer.ip(), request.headers());
        let answer = app.streams.open(event, client, request.headers()).await;
        return (answer.unwrap_or_else(IntoResponse::into_response), None);
    }
    let (parts, body) = request.into_parts();
    if let Err(error) = identity::check(&app.tokens, &parts) {
        let unread = !body.is_end_stream();
        return (closing_if(unread, error.into_response()), None);
    }
    match read_body(body, &parts.headers, app.config.http.body_limit_bytes).await {
        Ok(body) => proxy::proxy(app, peer.ip(), parts, body)
            .await
            .into_response(),
        Err(error) => (closing_if(true, error.into_response()), None),
    }
}

/// An answer given before the request's body was read whole: the connection cannot carry
/// another request (hyper closes it), so the client is told, rather than finding out by
/// writing its next request into a closed socket.
fn closing_if(unread_body: bool, mut response: Response) -> Response {
    if unread_body {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The whole request body, refused with `413` past `limit` (early, from `Content-Length`,
/// when the client declares it). One chunk, the usual case, is taken as it is, not copied.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, RouterError> {
    let too_large = || RouterError::PayloadTooLarge { limit };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large()),
        Err(e) => {
            // hyper's words for a broken upload are for our logs, not the client.
            tracing::debug!(error = %e, "reading a request body failed");
            Err(RouterError::Validation(
                "could not read the request body".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_are_those_the_route_table_forwarded() {
        for path in [
            "/api/v1",
            "/api/v1/x",
            "/api/v1//",
            "/api/v1/x/",
            "/api/v1/%2F",
        ] {
            assert!(is_api(path), "{path}");
        }
        for path in ["/api/v1/", "/api/v1x", "/API/v1/x", "/api", "/healthz", "/"] {
            assert!(!is_api(path), "{path}");
        }
    }
}
