//! Every failure the node's API can report, with its status and code, in one place; the JSON
//! shape itself is `wire::ErrorEnvelope`, shared with the router.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use wire::limits::Limited;
use wire::ErrorEnvelope;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Validation(String),
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidId(String),
    /// A stream's `Last-Event-ID` that is no id a stream sends.
    #[error(transparent)]
    InvalidLastEventId(#[from] wire::stream::BadStreamId),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("no route for this method and path")]
    RouteNotFound,
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    #[error("not enough tickets: {message}")]
    SoldOut {
        message: String,
        available: BTreeMap<String, i64>,
    },
    #[error(
        "at most {cap} tickets of this event per user, held or bought, across all orders: you \
         have {held}, so you may take {} more, and this order asks for {asked}",
        (*cap - *held).max(0)
    )]
    TicketLimit { cap: i64, held: i64, asked: i64 },
    #[error("the hold on booking {0} expired before it was confirmed; any payment was voided")]
    HoldExpired(String),
    #[error("booking {booking} is {status}, not held")]
    NotHeld { booking: String, status: String },
    #[error("event {0} is not on sale")]
    EventNotOnSale(String),
    #[error("a request with this Idempotency-Key is still being processed")]
    IdempotencyInProgress,
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error("{0}")]
    Conflict(String),
    // The waiting room (issue 11): its settings and joins.
    #[error("the waiting room of event {0} is closed to new joins")]
    QueueClosed(String),
    #[error("the waiting room of event {0} has opened (its lobby was drawn): opensAt can no longer change")]
    QueueAlreadyOpen(String),
    #[error("writes for events homed in {home} go to that region; this node serves {local}")]
    Misdirected { home: String, local: String },
    #[error("accounts with this email live in {home}; this node serves {local}")]
    MisdirectedAccount { home: String, local: String },
    #[error("an account with this email already exists")]
    EmailTaken,
    /// A user's or an event's budget is spent (`limits`); nothing was done.
    #[error(transparent)]
    RateLimited(#[from] Limited),
    #[error("the server is busy; retry shortly")]
    Unavailable,
    #[error("the request took too long")]
    Timeout,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),

    // The waiting room's places and passes (DESIGN section 10).
    /// The event exists but is not queued.
    #[error("event {0} has no waiting room")]
    QueueNotFound(String),
    /// The caller has no place in the event's queue.
    #[error("you have not joined the queue of event {0}")]
    NotInQueue(String),
    /// A pass was asked for while the place is in the lobby or still waiting.
    #[error("your place in the queue is not admitted yet")]
    QueueNotAdmitted,
    /// A pass missing, refused, expired or used: `403` with the pass's own code.
    #[error(transparent)]
    QueuePass(#[from] crate::queue::pass::PassError),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            Validation(_) | InvalidJson(_) | InvalidId(_) | InvalidLastEventId(_) => {
                StatusCode::BAD_REQUEST
            }
            PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Forbidden(_) | QueuePass(_) => StatusCode::FORBIDDEN,
            NotFound(_) | RouteNotFound | QueueNotFound(_) | NotInQueue(_) => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            SoldOut { .. }
            | TicketLimit { .. }
            | HoldExpired(_)
            | NotHeld { .. }
            | EventNotOnSale(_)
            | IdempotencyInProgress
            | EmailTaken
            | QueueNotAdmitted
            | Conflict(_)
            | QueueClosed(_)
            | QueueAlreadyOpen(_) => StatusCode::CONFLICT,
            IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Misdirected { .. } | MisdirectedAccount { .. } => StatusCode::MISDIRECTED_REQUEST,
            RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Timeout => StatusCode::GATEWAY_TIMEOUT,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            Validation(_) => "validation",
            InvalidJson(_) => "invalid_json",
            InvalidId(_) => "invalid_id",
            InvalidLastEventId(_) => "invalid_last_event_id",
            PayloadTooLarge { .. } => "payload_too_large",
            Unauthorized(_) => "unauthorized",
            Forbidden(_) => "forbidden",
            NotFound(_) | RouteNotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            SoldOut { .. } => "sold_out",
            TicketLimit { .. } => "ticket_limit",
            HoldExpired(_) => "hold_expired",
            NotHeld { .. } => "not_held",
            EventNotOnSale(_) => "event_not_on_sale",
            IdempotencyInProgress => "idempotency_in_progress",
            IdempotencyKeyReused => "idempotency_key_reused",
            Conflict(_) => "conflict",
            QueueClosed(_) => "queue_closed",
            QueueAlreadyOpen(_) => "queue_already_open",
            EmailTaken => "email_taken",
            Misdirected { .. } | MisdirectedAccount { .. } => "misdirected",
            RateLimited(_) => "rate_limited",
            Unavailable => "unavailable",
            Timeout => "timeout",
            Internal(_) => "internal",
            QueueNotFound(_) => "queue_not_found",
            NotInQueue(_) => "not_in_queue",
            QueueNotAdmitted => "queue_not_admitted",
            QueuePass(refused) => refused.code(),
        }
    }

    /// The JSON error of DESIGN section 5, with extra fields where they help the client.
    pub fn envelope(&self) -> ErrorEnvelope {
        let envelope = ErrorEnvelope::new(self.status(), self.code(), self.to_string());
        match self {
            ApiError::SoldOut { available, .. } => envelope.with("available", json!(available)),
            ApiError::TicketLimit { cap, held, .. } => envelope
                .with("maxTicketsPerUser", json!(cap))
                .with("mayAdd", json!((cap - held).max(0))),
            ApiError::RateLimited(limited) => limited.envelope(),
            _ => envelope,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            // Pool exhausted for longer than the acquire timeout: overload, not a bug.
            sqlx::Error::PoolTimedOut => ApiError::Unavailable,
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<id_gen::IdError> for ApiError {
    fn from(err: id_gen::IdError) -> Self {
        // The clock stepped back too far or the lease lapsed: refuse rather than risk a reissue.
        tracing::error!(error = %err, "cannot mint an id");
        ApiError::Unavailable
    }
}

/// A request without a valid bearer token: the message is `wire`'s own, never the library's.
impl From<wire::token::TokenError> for ApiError {
    fn from(err: wire::token::TokenError) -> Self {
        ApiError::Unauthorized(err.to_string())
    }
}

/// A malformed email is a bad request; a malformed refresh token, a bad credential.
impl From<wire::accounts::AccountError> for ApiError {
    fn from(err: wire::accounts::AccountError) -> Self {
        match err {
            wire::accounts::AccountError::BadEmail => ApiError::Validation(err.to_string()),
            wire::accounts::AccountError::BadRefreshToken => {
                ApiError::Unauthorized(err.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Its own answer: the envelope with Retry-After and the RateLimit fields.
        if let ApiError::RateLimited(limited) = self {
            return limited.into_response();
        }
        if let ApiError::Internal(err) = &self {
            tracing::error!(error = ?err, "internal error");
        }
        self.envelope().into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
