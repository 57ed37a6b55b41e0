//! Handlers of `/tickets`: creation in bulk (admin), availability, one ticket.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use id_gen::Id;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::booking::idempotency::WriteAnswer;
use crate::catalog::tickets::{self, Availability, CreateTickets, CreatedTickets, TicketView};
use crate::error::{ApiError, ApiResult};
use crate::http::answers::{BadRequest, Forbidden, Misdirected, NotFound, Unauthorized};
use crate::http::extract::{Admin, After, Json, PathId, Query};
use crate::input::parse_id;
use crate::reads::answer::ReadAnswer;
use crate::state::Node;

/// Put tickets on sale (admin)
///
/// Adds tickets to tiers of an event homed in this region.
#[utoipa::path(
    post,
    path = "/api/v1/tickets/create",
    operation_id = "createTickets",
    tag = "tickets",
    request_body = CreateTickets,
    responses(
        (status = 201, description = "Created", body = CreatedTickets,
            headers(("X-Consistency-Token" = String, description = "The write's consistency token (also in the body): present it on a read to see this write")),
            links(
                ("reserve" = (operation_id = "reserve",
                    request_body = json!({"eventId": "$response.body#/eventId",
                                          "tickets": [{"tier": "$response.body#/tiers/0/name", "quantity": 1}]}),
                    description = "Reserve a ticket of the event's first tier")),
                ("availability" = (operation_id = "getAvailability",
                    parameters(("eventId" = "$response.body#/eventId"),
                        ("X-Consistency-Token" = "$response.header.X-Consistency-Token")))),
            )),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 421, response = Misdirected),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(node): State<Arc<Node>>,
    _admin: Admin,
    Json(request): Json<CreateTickets>,
) -> ApiResult<WriteAnswer> {
    WriteAnswer::new(
        StatusCode::CREATED,
        tickets::create(&node, request).await?,
        false,
    )
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AvailabilityParams {
    /// The event.
    #[param(required = true, inline, value_type = Id)]
    event_id: Option<String>,
}

/// What is left of an event
///
/// Tickets available per tier, in the seed's shape.
#[utoipa::path(
    get,
    path = "/api/v1/tickets",
    operation_id = "getAvailability",
    tag = "tickets",
    params(AvailabilityParams, After),
    responses(
        (status = 200, description = "Tickets left per tier", body = Availability),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    )
)]
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

/// One ticket
///
/// As the public sees it: no holder, and a lapsed hold shows as available.
#[utoipa::path(
    get,
    path = "/api/v1/tickets/{id}",
    operation_id = "getTicket",
    tag = "tickets",
    params(PathId, After),
    responses(
        (status = 200, description = "The ticket", body = TicketView),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    )
)]
pub async fn get(
    State(node): State<Arc<Node>>,
    After(after): After,
    PathId(id): PathId,
) -> ApiResult<ReadAnswer> {
    tickets::get(&node, id, &after).await
}
