use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use super::ListParams;
use crate::app::Node;
use crate::auth::AdminUser;
use crate::consistency::ReadAfter;
use crate::error::ApiResult;
use crate::events::{self, EventView, NewEvent};
use crate::extract::{Json, PathId, Query};
use crate::reads::ReadAnswer;

pub async fn list(
    State(node): State<Arc<Node>>,
    after: ReadAfter,
    Query(params): Query<ListParams>,
) -> ApiResult<ReadAnswer> {
    events::list(&node, params.limit()?, &after).await
}

pub async fn create(
    State(node): State<Arc<Node>>,
    _admin: AdminUser,
    Json(new): Json<NewEvent>,
) -> ApiResult<(StatusCode, axum::Json<EventView>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(events::create(&node, new).await?),
    ))
}

pub async fn get(
    State(node): State<Arc<Node>>,
    after: ReadAfter,
    PathId(id): PathId,
) -> ApiResult<ReadAnswer> {
    events::get(&node, id, &after).await
}
