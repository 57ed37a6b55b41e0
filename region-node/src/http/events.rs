use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use super::ListParams;
use crate::app::Node;
use crate::auth::AdminUser;
use crate::error::ApiResult;
use crate::events::{self, EventView, NewEvent};
use crate::extract::{Json, PathId, Query};

pub async fn list(
    State(node): State<Arc<Node>>,
    Query(params): Query<ListParams>,
) -> ApiResult<axum::Json<Vec<EventView>>> {
    Ok(axum::Json(events::list(&node, params.limit()?).await?))
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
    PathId(id): PathId,
) -> ApiResult<axum::Json<EventView>> {
    Ok(axum::Json(events::get(&node, id).await?))
}
