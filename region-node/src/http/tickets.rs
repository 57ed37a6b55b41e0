//! Handlers of `/tickets`: creation in bulk (admin), availability, one ticket.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use crate::catalog::tickets::{self, CreateTickets, CreatedTickets};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{Admin, After, Json, PathId, Query};
use crate::input::parse_id;
use crate::reads::answer::ReadAnswer;
use crate::state::Node;

pub async fn create(
    State(node): State<Arc<Node>>,
    _admin: Admin,
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
    After(after): After,
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
    After(after): After,
    PathId(id): PathId,
) -> ApiResult<ReadAnswer> {
    tickets::get(&node, id, &after).await
}
