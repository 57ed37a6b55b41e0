use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use crate::app::Node;
use crate::auth::AdminUser;
use crate::consistency::ReadAfter;
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_id, Json, PathId, Query};
use crate::reads::ReadAnswer;
use crate::tickets::{self, CreateTickets, CreatedTickets};

pub async fn create(
    State(node): State<Arc<Node>>,
    _admin: AdminUser,
    Json(request): Json<CreateTickets>,
) -> ApiResult<(StatusCode, axum::Json<CreatedTickets>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(tickets::create(&node, request).await?),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AvailabilityParams {
    event_id: Option<String>,
}

pub async fn availability(
    State(node): State<Arc<Node>>,
    after: ReadAfter,
    Query(params): Query<AvailabilityParams>,
) -> ApiResult<ReadAnswer> {
    let raw = params
        .event_id
        .ok_or_else(|| ApiError::Validation("eventId is required: /tickets?eventId=<id>".into()))?;
    let event_id = parse_id("eventId", &raw)?;
    tickets::availability(&node, event_id, &after).await
}

pub async fn get(
    State(node): State<Arc<Node>>,
    after: ReadAfter,
    PathId(id): PathId,
) -> ApiResult<ReadAnswer> {
    tickets::get(&node, id, &after).await
}
