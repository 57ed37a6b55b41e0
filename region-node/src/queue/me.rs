//! A user's own place and pass, read from this region's replica of the event's shard (never
//! across the WAN): `GET /events/{id}/queue/me` and `POST /events/{id}/queue/pass`.

use chrono::{DateTime, Utc};
use id_gen::Id;
use serde::Serialize;

use crate::catalog::store::find_event;
use crate::error::{ApiError, ApiResult};
use crate::identity::auth::AuthUser;
use crate::queue::pass::{PassClaims, PassError};
use crate::queue::place::{place_state, PlaceState, QueuePlace};
use crate::queue::store::{self, PlaceRow, QueueRow};
use crate::reads::answer::ReadAnswer;
use crate::reads::consistency::ReadAfter;
use crate::reads::replica::ReadSource;
use crate::state::Node;

/// A signed pass for an admitted place.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueuePass {
    /// Send it as `queuePass` with the reserve.
    pub pass: String,
    pub event_id: String,
    pub position: i64,
    /// The end of the place's window: the pass is refused from then on.
    pub expires_at: DateTime<Utc>,
}

/// The caller's place, as `GET /events/{id}/queue/me` answers it.
pub async fn me(
    node: &Node,
    user: AuthUser,
    event: Id,
    after: &ReadAfter,
) -> ApiResult<ReadAnswer> {
    let (source, queue, place) = read_place(node, user, event, after).await?;
    ReadAnswer::uncached(&QueuePlace::new(&place, &queue), &source)
}

/// A pass for the caller's place if it is admitted; else why not (`409 queue_not_admitted`,
/// `403 queue_pass_expired`, `403 queue_pass_used`).
pub async fn pass(
    node: &Node,
    user: AuthUser,
    event: Id,
    after: &ReadAfter,
) -> ApiResult<ReadAnswer> {
    let (source, queue, place) = read_place(node, user, event, after).await?;
    let (position, expires_at) = admitted(&place, &queue)?;
    let claims = PassClaims::new(
        place.user_id,
        place.event_id,
        position,
        queue.db_now.timestamp(),
        expires_at.timestamp(),
    );
    let pass = node.passes.sign(&claims).map_err(ApiError::Internal)?;
    node.metrics.queue.passes_issued.inc();
    ReadAnswer::uncached(
        &QueuePass {
            pass,
            event_id: place.event_id.to_string(),
            position,
            expires_at,
        },
        &source,
    )
}

/// The position and window end of an admitted place, or why it gets no pass.
fn admitted(place: &PlaceRow, queue: &QueueRow) -> ApiResult<(i64, DateTime<Utc>)> {
    match place_state(place, queue.serving, queue.db_now) {
        PlaceState::Lobby | PlaceState::Waiting => Err(ApiError::QueueNotAdmitted),
        PlaceState::Expired => Err(PassError::Expired.into()),
        PlaceState::Used => Err(PassError::Used.into()),
        PlaceState::Admitted => match (place.position, place.pass_expires_at) {
            (Some(position), Some(end)) => Ok((position, end)),
            _ => Err(ApiError::Internal(anyhow::anyhow!(
                "an admitted place without a position or window"
            ))),
        },
    }
}

/// The event's queue and the caller's place in it, from one connection to this region's copy
/// of the event's shard that honours the caller's consistency token: `404 not_found` for no
/// event, `404 queue_not_found` for an event without a queue, `404 not_in_queue`.
async fn read_place(
    node: &Node,
    user: AuthUser,
    event: Id,
    after: &ReadAfter,
) -> ApiResult<(ReadSource, QueueRow, PlaceRow)> {
    let source = node.read_source(node.shard_of(event)?, after).await?;
    let mut conn = source.pool.acquire().await?;
    let Some(queue) = store::queue(&mut *conn, event.as_i64()).await? else {
        // Only a miss costs this second look: no event at all is a plain 404.
        find_event(&mut conn, event).await?;
        return Err(ApiError::QueueNotFound(event.to_string()));
    };
    let place = store::place(&mut *conn, event.as_i64(), user.id.as_i64())
        .await?
        .ok_or_else(|| ApiError::NotInQueue(event.to_string()))?;
    drop(conn);
    Ok((source, queue, place))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn queue(serving: i64, now: i64) -> QueueRow {
        QueueRow {
            event_id: 1,
            opens_at: at(0),
            closes_at: None,
            target_active: 10,
            max_admit_per_second: 5.0,
            pass_seconds: 60,
            drawn_at: Some(at(0)),
            lobby_size: 3,
            last_position: 10,
            serving,
            admitted_per_window: vec![0; 6],
            first_admitted_at: Some(at(0)),
            db_now: at(now),
        }
    }

    fn place(position: Option<i64>, admitted_at: Option<i64>, used: bool) -> PlaceRow {
        PlaceRow {
            event_id: 1,
            user_id: 2,
            joined_at: at(-100),
            position,
            admitted_at: admitted_at.map(at),
            pass_expires_at: admitted_at.map(|s| at(s) + Duration::seconds(60)),
            used,
        }
    }

    #[test]
    fn only_an_admitted_place_gets_a_pass_until_its_window_ends() {
        assert_eq!(
            admitted(&place(Some(4), Some(10), false), &queue(5, 30)).unwrap(),
            (4, at(70))
        );
        let refusal = |p: PlaceRow, q: QueueRow| admitted(&p, &q).unwrap_err().code();
        assert_eq!(
            refusal(place(None, None, false), queue(0, 30)),
            "queue_not_admitted"
        );
        assert_eq!(
            refusal(place(Some(6), None, false), queue(5, 30)),
            "queue_not_admitted"
        );
        assert_eq!(
            refusal(place(Some(4), Some(10), false), queue(5, 70)),
            "queue_pass_expired"
        );
        assert_eq!(
            refusal(place(Some(4), Some(10), true), queue(5, 30)),
            "queue_pass_used"
        );
    }
}
