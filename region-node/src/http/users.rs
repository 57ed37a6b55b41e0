use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use crate::app::Node;
use crate::auth::AuthUser;
use crate::consistency::ReadAfter;
use crate::error::ApiResult;
use crate::extract::{Json, PathId};
use crate::reads::ReadAnswer;
use crate::users::{self, NewUser, SignedUpUser};

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
    caller: AuthUser,
    after: ReadAfter,
    PathId(id): PathId,
) -> ApiResult<ReadAnswer> {
    users::get(&node, caller, id, &after).await
}
