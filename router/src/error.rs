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
            InvalidJson(_) | Validation(_) | InvalidId(_) => StatusCode::BAD_REQUEST,
            PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Misdirected { .. } => StatusCode::MISDIRECTED_REQUEST,
            HomeRegionUnreachable { .. } | ReadUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
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
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            Misdirected { .. } => "misdirected",
            HomeRegionUnreachable { .. } => "home_region_unreachable",
            ReadUnavailable { .. } => "region_unreachable",
            UpstreamTimeout { .. } => "upstream_timeout",
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
        self.envelope().into_response()
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
}
