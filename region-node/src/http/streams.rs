//! Handler of `GET /events/{id}/stream`: an event's live state as Server-Sent Events.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use crate::catalog::events;
use crate::error::ApiResult;
use crate::http::answers::{BadRequest, NotFound};
use crate::http::extract::PathId;
use crate::reads::consistency::ReadAfter;
use crate::state::Node;
use crate::streams::subscription;

/// An event's live state (Server-Sent Events)
///
/// A `text/event-stream`: first `retry: 2000`, then an `event: state` message whenever the
/// event's state changes (at most one per watcher interval, 250 ms by default), its `data` a
/// one-line `StreamState` JSON (availability per tier, the waiting room's figures), its `id`
/// `<WAL position hex>.<digest hex>`; a `: keep-alive` comment after 15 s of silence. The first
/// message is the current state. Reconnect with `Last-Event-ID` (in any region): a state the
/// client has is not sent again, and one older than it is never sent.
#[utoipa::path(
    get,
    path = "/api/v1/events/{id}/stream",
    operation_id = "streamEvent",
    tag = "events",
    params(
        PathId,
        ("Last-Event-ID" = Option<String>, Header,
            description = "The id of the last message received (`<hex>.<16 hex digits>`), when reconnecting"),
    ),
    responses(
        (status = 200, description = "The stream; each message's `data` is a `StreamState`",
            content_type = "text/event-stream", body = String,
            headers(
                ("Cache-Control" = String, description = "`no-cache`"),
                ("X-Accel-Buffering" = String, description = "`no`: proxies must not buffer it"),
            )),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    )
)]
pub async fn stream(
    State(node): State<Arc<Node>>,
    PathId(id): PathId,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let last = subscription::last_event_id(&headers)?;
    // The cached event read: a missing event is a JSON 404, not a stream.
    events::get(&node, id, &ReadAfter::default()).await?;
    Ok(subscription::respond(&node, id, last))
}
