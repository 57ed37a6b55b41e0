//! Handlers of `/users`: sign-up and lookup.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use crate::error::ApiResult;
use crate::http::extract::{After, Caller, Json, PathId};
use crate::identity::users::{self, NewUser, SignedUpUser};
use crate::reads::answer::ReadAnswer;
use crate::state::Node;

pub async fn create(
    State(node): State<Arc<Node>>,
    Json(new): Json<NewUser>,
) -> ApiResult<(StatusCode, axum::Json<SignedUpUser>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(users::create(&node, new).await?),
    ))
}

pub async fn get(
    State(node): State<Arc<Node>>,
    Caller(caller): Caller,
    After(after): After,
    PathId(id): PathId,
) -> ApiResult<ReadAnswer> {
    users::get(&node, caller, id, &after).await
}
