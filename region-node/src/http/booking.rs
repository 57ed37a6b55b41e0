use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::ListParams;
use crate::app::Node;
use crate::auth::AuthUser;
use crate::booking::{self, CancelRequest, ConfirmRequest, ReserveRequest};
use crate::consistency::ReadAfter;
use crate::error::ApiResult;
use crate::extract::{Json, PathId, Query};
use crate::idempotency::{self, IdempotencyKey};
use crate::reads::ReadAnswer;

pub async fn reserve(
    State(node): State<Arc<Node>>,
    user: AuthUser,
    IdempotencyKey(key): IdempotencyKey,
    Json(request): Json<ReserveRequest>,
) -> Response {
    match booking::reserve(&node, user, request, key.as_deref()).await {
        Ok(r) => idempotency::respond(StatusCode::CREATED, r.view, r.replayed),
        Err(e) => e.into_response(),
    }
}

pub async fn confirm(
    State(node): State<Arc<Node>>,
    user: AuthUser,
    IdempotencyKey(key): IdempotencyKey,
    Json(request): Json<ConfirmRequest>,
) -> Response {
    idempotency::run(
        &node,
        user.id,
        key.as_deref(),
        "confirm",
        request,
        StatusCode::OK,
        |request| booking::confirm(&node, user, request),
    )
    .await
}

pub async fn cancel(
    State(node): State<Arc<Node>>,
    user: AuthUser,
    IdempotencyKey(key): IdempotencyKey,
    Json(request): Json<CancelRequest>,
) -> Response {
    idempotency::run(
        &node,
        user.id,
        key.as_deref(),
        "cancel",
        request,
        StatusCode::OK,
        |request| booking::cancel(&node, user, request),
    )
    .await
}

pub async fn for_user(
    State(node): State<Arc<Node>>,
    caller: AuthUser,
    after: ReadAfter,
    PathId(user): PathId,
    Query(params): Query<ListParams>,
) -> ApiResult<ReadAnswer> {
    booking::for_user(&node, caller, user, params.limit()?, &after).await
}

pub async fn get(
    State(node): State<Arc<Node>>,
    caller: AuthUser,
    after: ReadAfter,
    PathId(id): PathId,
) -> ApiResult<ReadAnswer> {
    booking::get(&node, caller, id, &after).await
}
