//! Every answer the router gives on its own (rather than passing a node's through): which status
//! and code each failure gets. The JSON envelope and `Retry-After` are `wire`'s, so the router's
//! errors look exactly like the nodes'.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use wire::limits::Limited;
use wire::ErrorEnvelope;

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The write's body is not a JSON object, so its home region cannot be known.
    #[error("request body is not a JSON object: {0}")]
    InvalidJson(String),
    /// A field needed to route the request is missing or has the wrong type.
    #[error("{0}")]
    Validation(String),
    /// An id that cannot be decoded, or whose region bits name no configured region.
    #[error("{0}")]
    InvalidId(String),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// No valid bearer token on a protected route, or a refresh token that names no session.
    #[error("{0}")]
    Unauthorized(String),
    /// A path outside `/api/v1` and the router's own operations endpoints.
    #[error("no route for this method and path")]
    NotFound,
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    /// A peer router sent us a write that is not homed here: configurations disagree, and
    /// forwarding it again could loop or cross the ocean twice.
    #[error("writes for {home} go to that region; this router serves {local}")]
    Misdirected { home: String, local: String },
    /// The write's home region gave no sign of life in time. The write was not sent anywhere
    /// else, and it is safe to retry with the same `Idempotency-Key`. `detail` (addresses,
    /// socket errors) is logged, never sent to the client.
    #[error("home region {region} is unreachable; retry with the same Idempotency-Key")]
    HomeRegionUnreachable { region: String, detail: String },
    /// No region's node could answer a read; `detail` is logged only.
    #[error("no region could serve this read")]
    ReadUnavailable { detail: String },
    /// The upstream was alive but did not answer within the request timeout.
    #[error("region {region} did not answer in time")]
    UpstreamTimeout { region: String },
    /// A stream's `Last-Event-ID` that is not an id a stream sent.
    #[error(transparent)]
    InvalidLastEventId(#[from] wire::stream::BadStreamId),
    /// A client address already holds `limit` open event streams on this router.
    #[error("at most {limit} event streams may be open at once from one address")]
    TooManyStreams { limit: u32 },
    /// A client address spent its budget (`limits`); nothing was forwarded.
    #[error(transparent)]
    RateLimited(#[from] Limited),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl RouterError {
    pub fn status(&self) -> StatusCode {
        use RouterError::*;
        match self {
            InvalidJson(_) | Validation(_) | InvalidId(_) | InvalidLastEventId(_) => {
                StatusCode::BAD_REQUEST
            }
            PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Unauthorized(_) => StatusCode::UNAUTHORIZED,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Misdirected { .. } => StatusCode::MISDIRECTED_REQUEST,
            HomeRegionUnreachable { .. } | ReadUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            RateLimited(_) | TooManyStreams { .. } => StatusCode::TOO_MANY_REQUESTS,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        use RouterError::*;
        match self {
            InvalidJson(_) => "invalid_json",
            Validation(_) => "validation",
            InvalidId(_) => "invalid_id",
            PayloadTooLarge { .. } => "payload_too_large",
            Unauthorized(_) => "unauthorized",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            Misdirected { .. } => "misdirected",
            HomeRegionUnreachable { .. } => "home_region_unreachable",
            ReadUnavailable { .. } => "region_unreachable",
            UpstreamTimeout { .. } => "upstream_timeout",
            InvalidLastEventId(_) => "invalid_last_event_id",
            TooManyStreams { .. } => "too_many_streams",
            RateLimited(_) => "rate_limited",
            Internal(_) => "internal",
        }
    }

    /// The JSON error of DESIGN section 5, as nodes answer.
    pub fn envelope(&self) -> ErrorEnvelope {
        match self {
            RouterError::RateLimited(limited) => limited.envelope(),
            _ => ErrorEnvelope::new(self.status(), self.code(), self.to_string()),
        }
    }
}

/// The token's own message (`wire`'s, never the library's), as the node would answer.
impl From<wire::token::TokenError> for RouterError {
    fn from(err: wire::token::TokenError) -> Self {
        RouterError::Unauthorized(err.to_string())
    }
}

/// The field a sign-up or a refresh is routed by, malformed: as the node would answer.
impl From<wire::accounts::AccountError> for RouterError {
    fn from(err: wire::accounts::AccountError) -> Self {
        match err {
            wire::accounts::AccountError::BadEmail => RouterError::Validation(err.to_string()),
            wire::accounts::AccountError::BadRefreshToken => {
                RouterError::Unauthorized(err.to_string())
            }
        }
    }
}

impl IntoResponse for RouterError {
    fn into_response(self) -> Response {
        // Its own answer: the envelope with Retry-After and the RateLimit fields.
        if let RouterError::RateLimited(limited) = self {
            return limited.into_response();
        }
        match &self {
            RouterError::Internal(err) => tracing::error!(error = ?err, "internal error"),
            RouterError::HomeRegionUnreachable { detail, .. }
            | RouterError::ReadUnavailable { detail } => {
                tracing::warn!(error = %self, %detail, "upstream")
            }
            RouterError::UpstreamTimeout { .. } => tracing::warn!(error = %self, "upstream"),
            _ => {}
        }
        let retry = matches!(self, RouterError::TooManyStreams { .. });
        let mut response = self.envelope().into_response();
        if retry {
            // Another of its streams may end any moment; a place is then free.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(wire::error::RETRY_AFTER_SECS),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_failures_tell_the_client_the_region_not_the_addresses() {
        let detail = "cannot connect: tcp connect error: 127.0.10.2:9082: Connection refused";
        for error in [
            RouterError::HomeRegionUnreachable {
                region: "eu-west".into(),
                detail: detail.into(),
            },
            RouterError::ReadUnavailable {
                detail: format!("eu-west: {detail}"),
            },
        ] {
            let message = error.envelope().error.message;
            assert!(!message.contains("127.0."), "{message}");
            assert!(!message.contains("tcp"), "{message}");
        }
    }

    #[test]
    fn too_many_streams_is_a_429_with_retry_after() {
        let response = RouterError::TooManyStreams { limit: 32 }.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[axum::http::header::RETRY_AFTER], "1");
        let error = RouterError::from(wire::stream::BadStreamId);
        assert_eq!(
            (error.status(), error.code()),
            (StatusCode::BAD_REQUEST, "invalid_last_event_id")
        );
    }
}
