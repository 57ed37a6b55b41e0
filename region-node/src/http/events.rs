//! Handlers of `/events`: the list, one event, creation (admin).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use crate::catalog::events::{self, EventView, NewEvent};
use crate::error::ApiResult;
use crate::http::extract::{Admin, After, Json, PathId, Query};
use crate::http::ListParams;
use crate::reads::answer::ReadAnswer;
use crate::state::Node;

pub async fn list(
    State(node): State<Arc<Node>>,
    After(after): After,
    Query(params): Query<ListParams>,
) -> ApiResult<ReadAnswer> {
    events::list(&node, params.limit()?, &after).await
}

pub async fn create(
    State(node): State<Arc<Node>>,
    _admin: Admin,
    Json(new): Json<NewEvent>,
) -> ApiResult<(StatusCode, axum::Json<EventView>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(events::create(&node, new).await?),
    ))
}

pub async fn get(
    State(node): State<Arc<Node>>,
    After(after): After,
    PathId(id): PathId,
) -> ApiResult<ReadAnswer> {
    events::get(&node, id, &after).await
}
