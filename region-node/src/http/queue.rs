//! Handlers of `/events/{id}/queue`: an event's waiting room, its settings (admin), its
//! figures, and joining it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use crate::booking::idempotency::WriteAnswer;
use crate::error::ApiResult;
use crate::http::answers::{BadRequest, Conflict, Forbidden, Misdirected, NotFound, Unauthorized};
use crate::http::extract::{Admin, After, Json, PathId, Writer};
use crate::queue::join;
use crate::queue::place::QueuePlace;
use crate::queue::settings::{self, QueueSettings, QueueSettled};
use crate::queue::views::QueueFigures;
use crate::reads::answer::ReadAnswer;
use crate::state::Node;

/// Set up an event's waiting room (admin)
///
/// Creates the event's queue or changes its settings. Joins before `opensAt` wait in a lobby;
/// at `opensAt` the lobby is drawn into random positions, later joins queue behind them.
/// `opensAt` cannot change once the lobby was drawn. The event's home region runs it.
#[utoipa::path(
    put,
    path = "/api/v1/events/{id}/queue",
    operation_id = "putQueue",
    tag = "queue",
    params(PathId),
    request_body = QueueSettings,
    responses(
        (status = 200, description = "The queue as set", body = QueueSettled,
            headers(("X-Consistency-Token" = String, description = "The write's consistency token (also in the body): present it on a read to see this write")),
            links(("queue" = (operation_id = "getQueue", parameters(("id" = "$response.body#/eventId"),
                ("X-Consistency-Token" = "$response.header.X-Consistency-Token")))))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 421, response = Misdirected),
    ),
    security(("bearer" = []))
)]
pub async fn put(
    State(node): State<Arc<Node>>,
    _admin: Admin,
    PathId(id): PathId,
    Json(new): Json<QueueSettings>,
) -> ApiResult<WriteAnswer> {
    WriteAnswer::new(StatusCode::OK, settings::put(&node, id, new).await?, false)
}

/// An event's waiting room
///
/// Its settings, serving counter, positions handed out and measured admission rate, read in
/// this region. `404 queue_not_found` when the event has no waiting room.
#[utoipa::path(
    get,
    path = "/api/v1/events/{id}/queue",
    operation_id = "getQueue",
    tag = "queue",
    params(PathId, After),
    responses(
        (status = 200, description = "The queue", body = QueueFigures),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    )
)]
pub async fn get(
    State(node): State<Arc<Node>>,
    After(after): After,
    PathId(id): PathId,
) -> ApiResult<ReadAnswer> {
    settings::figures(&node, id, &after).await
}

/// Join an event's waiting room
///
/// The caller's place: in the lobby before the draw, else the next position. Joining again,
/// from any device or region, answers the same place. The event's home region runs it.
#[utoipa::path(
    post,
    path = "/api/v1/events/{id}/queue",
    operation_id = "joinQueue",
    tag = "queue",
    params(PathId),
    responses(
        (status = 200, description = "The caller's place", body = QueuePlace,
            headers(("X-Consistency-Token" = String, description = "The write's consistency token (also in the body): present it on a read to see this write"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 421, response = Misdirected),
    ),
    security(("bearer" = []))
)]
pub async fn join(
    State(node): State<Arc<Node>>,
    Writer(user): Writer,
    PathId(id): PathId,
) -> ApiResult<WriteAnswer> {
    WriteAnswer::new(StatusCode::OK, join::join(&node, user, id).await?, false)
}
