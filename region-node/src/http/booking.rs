//! Handlers of `/booking/*`: reserve, confirm, cancel, one booking, a user's bookings.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use wire::headers::{CONSISTENCY_TOKEN, IDEMPOTENT_REPLAYED};

use crate::booking::idempotency::{self, WriteAnswer};
use crate::booking::request::{CancelRequest, ConfirmRequest, ReserveRequest};
use crate::booking::views::BookingView;
use crate::booking::{cancel, confirm, lookup, reserve};
use crate::error::ApiResult;
use crate::http::answers::{
    BadRequest, Conflict, Forbidden, KeyReused, Misdirected, NotFound, Unauthorized,
};
use crate::http::extract::{After, Caller, IdempotencyKey, Json, PathId, Query, Writer};
use crate::http::ListParams;
use crate::reads::answer::ReadAnswer;
use crate::state::Node;

/// Reserve tickets
///
/// Holds tickets of every tier asked for (all or none) until `expiresAt`; confirm to buy them.
/// The event's home region runs it: a router sends it there. A queued event's reserve needs
/// `queuePass`, the pass of the caller's admitted place (`403` without a good one).
#[utoipa::path(
    post,
    path = "/api/v1/booking/reserve",
    operation_id = "reserve",
    tag = "booking",
    params(IdempotencyKey),
    request_body = ReserveRequest,
    responses(
        (status = 201, description = "Held (or, for a repeated `Idempotency-Key`, the booking as it is now)",
            body = BookingView,
            headers(
                ("X-Consistency-Token" = String, description = "The write's consistency token (also in the body): present it on a read to see this write"),
                ("Idempotent-Replayed" = String, description = "`true` when this answers an earlier request with the same `Idempotency-Key`"),
            ),
            links(
                ("confirm" = (operation_id = "confirm",
                    request_body = json!({"bookingId": "$response.body#/bookingId", "paymentSimulation": "success"}),
                    description = "Pay for the hold")),
                ("cancel" = (operation_id = "cancel",
                    request_body = json!({"bookingId": "$response.body#/bookingId"}),
                    description = "Give the tickets back")),
                ("booking" = (operation_id = "getBooking",
                    parameters(("id" = "$response.body#/bookingId"), ("X-Consistency-Token" = "$response.header.X-Consistency-Token")),
                    description = "The booking, read after this write")),
                ("ticket" = (operation_id = "getTicket",
                    parameters(("id" = "$response.body#/tickets/0/id"), ("X-Consistency-Token" = "$response.header.X-Consistency-Token")),
                    description = "A ticket it holds")),
            )),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 421, response = Misdirected),
        (status = 422, response = KeyReused),
    ),
    security(("bearer" = []))
)]
pub async fn reserve(
    State(node): State<Arc<Node>>,
    Writer(user): Writer,
    IdempotencyKey(key): IdempotencyKey,
    Json(request): Json<ReserveRequest>,
) -> ApiResult<WriteAnswer> {
    let reserved = reserve::reserve(&node, user, request, key.as_deref()).await?;
    WriteAnswer::new(StatusCode::CREATED, reserved.view, reserved.replayed)
}

/// Confirm a booking
///
/// Pays for a held booking (the payment is simulated) and sells its tickets. A declined payment
/// answers the booking `payment_failed`, its tickets released; a hold that lapsed gives
/// `409 hold_expired`.
#[utoipa::path(
    post,
    path = "/api/v1/booking/confirm",
    operation_id = "confirm",
    tag = "booking",
    params(IdempotencyKey),
    request_body = ConfirmRequest,
    responses(
        (status = 200, description = "Confirmed", body = BookingView,
            headers(
                ("X-Consistency-Token" = String, description = "The write's consistency token (also in the body): present it on a read to see this write"),
                ("Idempotent-Replayed" = String, description = "`true` when this answers an earlier request with the same `Idempotency-Key`"),
            ),
            links(
                ("cancel" = (operation_id = "cancel",
                    request_body = json!({"bookingId": "$response.body#/bookingId"}),
                    description = "Give the tickets back")),
                ("booking" = (operation_id = "getBooking",
                    parameters(("id" = "$response.body#/bookingId"), ("X-Consistency-Token" = "$response.header.X-Consistency-Token")))),
            )),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 421, response = Misdirected),
        (status = 422, response = KeyReused),
    ),
    security(("bearer" = []))
)]
pub async fn confirm(
    State(node): State<Arc<Node>>,
    Writer(user): Writer,
    IdempotencyKey(key): IdempotencyKey,
    Json(request): Json<ConfirmRequest>,
) -> ApiResult<WriteAnswer> {
    idempotency::run(
        &node,
        user.id,
        key.as_deref(),
        "confirm",
        request,
        StatusCode::OK,
        |request| confirm::confirm(&node, user, request),
    )
    .await
}

/// Cancel a booking
///
/// Gives a held or confirmed booking's tickets back.
#[utoipa::path(
    post,
    path = "/api/v1/booking/cancel",
    operation_id = "cancel",
    tag = "booking",
    params(IdempotencyKey),
    request_body = CancelRequest,
    responses(
        (status = 200, description = "Cancelled", body = BookingView,
            headers(
                ("X-Consistency-Token" = String, description = "The write's consistency token (also in the body): present it on a read to see this write"),
                ("Idempotent-Replayed" = String, description = "`true` when this answers an earlier request with the same `Idempotency-Key`"),
            ),
            links(("booking" = (operation_id = "getBooking",
                parameters(("id" = "$response.body#/bookingId"), ("X-Consistency-Token" = "$response.header.X-Consistency-Token")))))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 421, response = Misdirected),
        (status = 422, response = KeyReused),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(node): State<Arc<Node>>,
    Writer(user): Writer,
    IdempotencyKey(key): IdempotencyKey,
    Json(request): Json<CancelRequest>,
) -> ApiResult<WriteAnswer> {
    idempotency::run(
        &node,
        user.id,
        key.as_deref(),
        "cancel",
        request,
        StatusCode::OK,
        |request| cancel::cancel(&node, user, request),
    )
    .await
}

/// A user's bookings
///
/// The caller's own, or anyone's for an admin; newest first.
#[utoipa::path(
    get,
    path = "/api/v1/booking/user/{id}",
    operation_id = "listUserBookings",
    tag = "booking",
    params(PathId, ListParams, After),
    responses(
        (status = 200, description = "The bookings", body = Vec<BookingView>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    ),
    security(("bearer" = []))
)]
pub async fn for_user(
    State(node): State<Arc<Node>>,
    Caller(caller): Caller,
    After(after): After,
    PathId(user): PathId,
    Query(params): Query<ListParams>,
) -> ApiResult<ReadAnswer> {
    lookup::for_user(&node, caller, user, params.limit()?, &after).await
}

/// One booking
///
/// The caller's own, or any for an admin.
#[utoipa::path(
    get,
    path = "/api/v1/booking/{id}",
    operation_id = "getBooking",
    tag = "booking",
    params(PathId, After),
    responses(
        (status = 200, description = "The booking", body = BookingView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(node): State<Arc<Node>>,
    Caller(caller): Caller,
    After(after): After,
    PathId(id): PathId,
) -> ApiResult<ReadAnswer> {
    lookup::get(&node, caller, id, &after).await
}

/// A write's JSON answer; its consistency token also goes in `X-Consistency-Token`, and a
/// replayed answer says so in `Idempotent-Replayed`.
impl IntoResponse for WriteAnswer {
    fn into_response(self) -> Response {
        let token = self
            .body
            .get("consistencyToken")
            .and_then(|t| t.as_str())
            .and_then(|t| HeaderValue::from_str(t).ok());
        let mut response = (self.status, axum::Json(self.body)).into_response();
        let headers = response.headers_mut();
        if let Some(token) = token {
            headers.insert(CONSISTENCY_TOKEN, token);
        }
        if self.replayed {
            headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        }
        response
    }
}
