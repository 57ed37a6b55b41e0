//! The documented answers every operation shares, for the OpenAPI document: the error answers
//! (`BadRequest`, `Unauthorized`, ...: the one JSON envelope with their headers) and the headers
//! every answer, and every regional read's, carries. Handlers name these in their
//! `#[utoipa::path]`; `openapi` adds them to the document. Kept apart from `openapi`, which
//! imports the handlers, so that the handlers do not import it back.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::ToResponse;

/// An error answer: the JSON envelope, with `headers` beside those of every answer.
pub fn error_answer(description: &str, headers: &[(&str, &str, Type)]) -> RefOr<Response> {
    let mut answer = ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                .build(),
        )
        .build();
    for (name, about, kind) in EVERY_ANSWER.iter().chain(headers) {
        answer
            .headers
            .insert((*name).to_owned(), header(about, kind.clone()));
    }
    answer.into()
}

pub fn header(description: &str, kind: Type) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(kind))
        .description(Some(description))
        .build()
}

/// The headers every answer carries.
pub const EVERY_ANSWER: [(&str, &str, Type); 2] = [
    (
        "X-Request-Id",
        "The request's id: the one it came with, or a new one",
        Type::String,
    ),
    (
        "X-Served-By",
        "`<region>/<node>` that answered",
        Type::String,
    ),
];

/// The freshness headers of a read answered in the region (see `reads::answer`).
pub const READ_ANSWER: [(&str, &str, Type); 4] = [
    (
        "X-Cache",
        "`hit` or `miss`: whether the node's cache answered",
        Type::String,
    ),
    (
        "X-Data-Age-Ms",
        "An upper bound, in milliseconds, on how stale the data may be",
        Type::Integer,
    ),
    (
        "X-Read-Source",
        "Where each region's data came from: `us-east=replica, eu-west=primary`",
        Type::String,
    ),
    (
        "X-Stale",
        "`true` when a replica past the lag bound answered (its primary was out of reach)",
        Type::String,
    ),
];

pub const RETRY_AFTER: (&str, &str, Type) = (
    "Retry-After",
    "Seconds to wait before retrying",
    Type::Integer,
);

/// The shared error answers, each a component `#/components/responses/<name>` that operations
/// refer to by status.
macro_rules! error_answers {
    ($($name:ident: $description:literal $(, $header:expr)*;)*) => {$(
        #[doc = $description]
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (stringify!($name), error_answer($description, &[$($header),*]))
            }
        }
    )*};
}

error_answers! {
    BadRequest: "The request is malformed: invalid JSON, a missing or invalid field, parameter \
        or header (`validation`, `invalid_json`, `invalid_id`, `invalid_last_event_id`)";
    Unauthorized: "No valid bearer token, or on login a wrong email or password, or on refresh \
        and logout a refresh token that is unknown, expired, revoked or already rotated \
        (`unauthorized`)";
    Forbidden: "The caller may not do this: it needs the admin role, or the record is another \
        user's (`forbidden`); or a queued event's pass is missing or refused \
        (`queue_pass_required`, `queue_pass_invalid`, `queue_pass_wrong_event`, \
        `queue_pass_wrong_user`, `queue_pass_expired`, `queue_pass_used`)";
    NotFound: "No such record (`not_found`); for a queue, the event has none \
        (`queue_not_found`) or the caller has not joined it (`not_in_queue`)";
    Conflict: "The request conflicts with the state of the record: `sold_out` (with `available` \
        per tier), `ticket_limit` (the event's per-user cap: with `maxTicketsPerUser` and \
        `mayAdd`), `hold_expired`, `not_held`, `event_not_on_sale`, `idempotency_in_progress`, \
        `email_taken` (sign-up: an account with this email exists, in any letter case), \
        `queue_not_admitted` (a pass asked for before the place was admitted), `conflict`";
    PayloadTooLarge: "The body is larger than the configured limit (`payload_too_large`)";
    KeyReused: "This `Idempotency-Key` was used for a different request \
        (`idempotency_key_reused`)";
    Misdirected: "A write reached a region that is not its home, or a sign-up a node whose shard \
        does not hold its email (`misdirected`); routers send both home, so only a direct caller \
        of a node sees this";
    TooManyRequests: "A rate limit tripped (`rate_limited`, with `policy` and \
        `retryAfterSeconds`): per client address at the router, per user for booking writes and \
        per event for reserves at the home node; retry after `Retry-After` seconds",
        RETRY_AFTER,
        ("RateLimit", "What is left of the limit: `\"<policy>\";r=0;t=<seconds>`",
            Type::String),
        ("RateLimit-Policy", "The limit: `\"<policy>\";q=<burst>;w=<window seconds>`",
            Type::String);
    Unavailable: "Overloaded (`unavailable`; over the connection cap, before the request is \
        read), or the region that must answer is unreachable (`home_region_unreachable`, \
        `region_unreachable`); safe to retry, with the same `Idempotency-Key` for a write",
        RETRY_AFTER;
    Timeout: "The answer took longer than the request time limit (`timeout`, \
        `upstream_timeout`)";
}
