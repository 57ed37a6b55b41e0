//! Handlers of `/events`: the list, one event, creation (admin).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use utoipa::IntoParams;

use crate::booking::idempotency::WriteAnswer;
use crate::catalog::events::{self, EventView, NewEvent, Page};
use crate::error::ApiResult;
use crate::http::answers::{BadRequest, Forbidden, Misdirected, NotFound, Unauthorized};
use crate::http::extract::{Admin, After, Json, PathId, Query};
use crate::http::list_limit;
use crate::reads::answer::ReadAnswer;
use crate::state::Node;

/// `?limit=&after=`: a page of the event list; the next page's address is in `Link`.
#[derive(serde::Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventListParams {
    /// Events per page, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// Where the page starts: the cursor from the previous page's `Link` header.
    #[param(pattern = "^-?[0-9]{1,17}\\.[0-9]{1,18}$", example = json!("1909157400000000.386164735021809669"))]
    after: Option<String>,
}

/// The event list
///
/// Every region's events, soonest first, a page at a time; the next page's address is in the
/// `Link` header (`rel="next"`), absent on the last page.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    operation_id = "listEvents",
    tag = "events",
    params(EventListParams, After),
    responses(
        (status = 200, description = "A page of events", body = Vec<EventView>,
            headers(
                ("Link" = String, description = "`</api/v1/events?limit=…&after=…>; rel=\"next\"` while more pages follow"),
                ("X-Missing-Shards" = String, description = "Regions whose events could not be read: the page is partial"),
            ),
            links(("event" = (operation_id = "getEvent", parameters(("id" = "$response.body#/0/id")),
                description = "The first event of the page")))),
        (status = 400, response = BadRequest),
    )
)]
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

/// Create an event (admin)
///
/// Homed in `homeRegion`: a router sends it there. Tickets are added with `POST /tickets/create`.
#[utoipa::path(
    post,
    path = "/api/v1/events",
    operation_id = "createEvent",
    tag = "events",
    request_body = NewEvent,
    responses(
        (status = 201, description = "Created", body = EventView,
            headers(("X-Consistency-Token" = String, description = "The write's consistency token (also in the body): present it on a read to see this write")),
            links(
                ("event" = (operation_id = "getEvent", parameters(("id" = "$response.body#/id"),
                    ("X-Consistency-Token" = "$response.header.X-Consistency-Token")))),
                ("tickets" = (operation_id = "createTickets",
                    request_body = json!({"eventId": "$response.body#/id", "tiers": {"GA": 10}}),
                    description = "Put tickets on sale")),
                ("availability" = (operation_id = "getAvailability",
                    parameters(("eventId" = "$response.body#/id"),
                        ("X-Consistency-Token" = "$response.header.X-Consistency-Token")))),
            )),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 421, response = Misdirected),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(node): State<Arc<Node>>,
    _admin: Admin,
    Json(new): Json<NewEvent>,
) -> ApiResult<WriteAnswer> {
    WriteAnswer::new(
        StatusCode::CREATED,
        events::create(&node, new).await?,
        false,
    )
}

/// One event
///
/// With what is left of each tier.
#[utoipa::path(
    get,
    path = "/api/v1/events/{id}",
    operation_id = "getEvent",
    tag = "events",
    params(PathId, After),
    responses(
        (status = 200, description = "The event", body = EventView,
            links(("reserve" = (operation_id = "reserve",
                request_body = json!({"eventId": "$response.body#/id",
                                      "tickets": [{"tier": "$response.body#/tiers/0/name", "quantity": 1}]}),
                description = "Reserve a ticket of its first tier")))),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    )
)]
pub async fn get(
    State(node): State<Arc<Node>>,
    After(after): After,
    PathId(id): PathId,
) -> ApiResult<ReadAnswer> {
    events::get(&node, id, &after).await
}
