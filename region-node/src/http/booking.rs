//! Handlers of `/booking/*`: reserve, confirm, cancel, one booking, a user's bookings.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use wire::headers::{CONSISTENCY_TOKEN, IDEMPOTENT_REPLAYED};

use crate::booking::idempotency::{self, WriteAnswer};
use crate::booking::request::{CancelRequest, ConfirmRequest, ReserveRequest};
use crate::booking::{cancel, confirm, lookup, reserve};
use crate::error::ApiResult;
use crate::http::extract::{After, Caller, IdempotencyKey, Json, PathId, Query, Writer};
use crate::http::ListParams;
use crate::reads::answer::ReadAnswer;
use crate::state::Node;

pub async fn reserve(
    State(node): State<Arc<Node>>,
    Writer(user): Writer,
    IdempotencyKey(key): IdempotencyKey,
    Json(request): Json<ReserveRequest>,
) -> ApiResult<WriteAnswer> {
    let reserved = reserve::reserve(&node, user, request, key.as_deref()).await?;
    WriteAnswer::new(StatusCode::CREATED, reserved.view, reserved.replayed)
}

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

pub async fn for_user(
    State(node): State<Arc<Node>>,
    Caller(caller): Caller,
    After(after): After,
    PathId(user): PathId,
    Query(params): Query<ListParams>,
) -> ApiResult<ReadAnswer> {
    lookup::for_user(&node, caller, user, params.limit()?, &after).await
}

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
