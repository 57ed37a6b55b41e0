//! Handlers of a user's own place in an event's queue: `GET /events/{id}/queue/me` and
//! `POST /events/{id}/queue/pass`, both answered from this region's copy of the event's shard.

use std::sync::Arc;

use axum::extract::State;

use crate::error::ApiResult;
use crate::http::answers::{BadRequest, Conflict, Forbidden, NotFound, Unauthorized};
use crate::http::extract::{After, Caller, PathId};
use crate::queue::me::{self, QueuePass};
use crate::queue::place::QueuePlace;
use crate::reads::answer::ReadAnswer;
use crate::state::Node;

/// Your place in an event's queue
///
/// Its state (`lobby` before the draw, `waiting`, `admitted`, `used`, `expired`), how many are
/// ahead, the wait to expect while waiting and, once admitted, when the pass window ends. Read
/// in your own region; present a join's consistency token to see the join.
#[utoipa::path(
    get,
    path = "/api/v1/events/{id}/queue/me",
    operation_id = "getMyQueuePlace",
    tag = "queue",
    params(PathId, After),
    responses(
        (status = 200, description = "Your place", body = QueuePlace,
            links(("pass" = (operation_id = "getQueuePass",
                parameters(("id" = "$response.body#/eventId")),
                description = "Once admitted: the pass to reserve with")))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
    ),
    security(("bearer" = []))
)]
pub async fn me(
    State(node): State<Arc<Node>>,
    Caller(user): Caller,
    After(after): After,
    PathId(id): PathId,
) -> ApiResult<ReadAnswer> {
    me::me(&node, user, id, &after).await
}

/// A pass for your admitted place
///
/// Signed by your own region's node from its copy of the queue (no other region is asked).
/// Send it as `queuePass` with the reserve before `expiresAt`; it makes one order.
#[utoipa::path(
    post,
    path = "/api/v1/events/{id}/queue/pass",
    operation_id = "getQueuePass",
    tag = "queue",
    params(PathId, After),
    responses(
        (status = 200, description = "The pass", body = QueuePass,
            links(("reserve" = (operation_id = "reserve",
                request_body = json!({"eventId": "$response.body#/eventId",
                                      "tickets": [{"tier": "GA", "quantity": 1}],
                                      "queuePass": "$response.body#/pass"}),
                description = "Reserve with the pass")))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
    security(("bearer" = []))
)]
pub async fn pass(
    State(node): State<Arc<Node>>,
    Caller(user): Caller,
    After(after): After,
    PathId(id): PathId,
) -> ApiResult<ReadAnswer> {
    me::pass(&node, user, id, &after).await
}
