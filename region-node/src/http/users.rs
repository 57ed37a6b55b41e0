use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use crate::app::Node;
use crate::auth::AuthUser;
use crate::error::ApiResult;
use crate::extract::{Json, PathId};
use crate::users::{self, NewUser, SignedUpUser, UserView};

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
    PathId(id): PathId,
) -> ApiResult<axum::Json<UserView>> {
    Ok(axum::Json(users::get(&node, caller, id).await?))
}
