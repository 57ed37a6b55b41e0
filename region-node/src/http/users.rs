//! Handlers of `/users`: sign-up and lookup.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use crate::booking::idempotency::WriteAnswer;
use crate::error::ApiResult;
use crate::http::extract::{After, Caller, Json, PathId};
use crate::identity::signup::{self, NewUser};
use crate::identity::users;
use crate::reads::answer::ReadAnswer;
use crate::state::Node;

/// `201` with the account and its first tokens; the consistency token also in its header.
pub async fn create(
    State(node): State<Arc<Node>>,
    Json(new): Json<NewUser>,
) -> ApiResult<WriteAnswer> {
    WriteAnswer::new(
        StatusCode::CREATED,
        signup::create(&node, new).await?,
        false,
    )
}

pub async fn get(
    State(node): State<Arc<Node>>,
    Caller(caller): Caller,
    After(after): After,
    PathId(id): PathId,
) -> ApiResult<ReadAnswer> {
    users::get(&node, caller, id, &after).await
}
