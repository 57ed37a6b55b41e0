//! Handlers of `/events`: the list, one event, creation (admin).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use crate::catalog::events::{self, EventView, NewEvent, Page};
use crate::error::ApiResult;
use crate::http::extract::{Admin, After, Json, PathId, Query};
use crate::http::list_limit;
use crate::reads::answer::ReadAnswer;
use crate::state::Node;

/// `?limit=&after=`: a page of the event list; the next page's address is in `Link`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventListParams {
    limit: Option<i64>,
    after: Option<String>,
}

pub async fn list(
    State(node): State<Arc<Node>>,
    After(after): After,
    Query(params): Query<EventListParams>,
) -> ApiResult<ReadAnswer> {
    let page = Page {
        limit: list_limit(params.limit)?,
        after: params.after.as_deref().map(str::parse).transpose()?,
    };
    events::list(&node, page, &after).await
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
