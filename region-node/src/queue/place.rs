//! A user's place in a queue as they see it: its state (lobby, waiting, admitted, used,
//! expired), how many are ahead and the wait to expect; the same answer to a join and to
//! `GET /events/{id}/queue/me`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::queue::estimate::{wait_range, WaitRange};
use crate::queue::store::{PlaceRow, QueueRow};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PlaceState {
    /// Joined before the draw: no position yet.
    Lobby,
    /// Behind the serving counter.
    Waiting,
    /// The counter passed the place and its pass window is open.
    Admitted,
    /// An order was made with the place's pass.
    Used,
    /// The window closed without an order.
    Expired,
}

/// The state of a place from its row and the database clock.
pub fn place_state(row: &PlaceRow, serving: i64, now: DateTime<Utc>) -> PlaceState {
    match row.position {
        None => PlaceState::Lobby,
        Some(_) if row.used => PlaceState::Used,
        Some(position) if position > serving || row.admitted_at.is_none() => PlaceState::Waiting,
        Some(_) => match row.pass_expires_at {
            Some(end) if now < end => PlaceState::Admitted,
            _ => PlaceState::Expired,
        },
    }
}

/// A join waiting for its batch (`queue::join`): whose place, in which event's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joining {
    pub event_id: i64,
    pub user_id: i64,
}

/// A user's place, as answered.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueuePlace {
    pub event_id: String,
    pub user_id: String,
    pub state: PlaceState,
    /// `null` in the lobby (positions are drawn at opening).
    pub position: Option<i64>,
    pub serving: i64,
    /// Places between this one and the counter (`null` in the lobby).
    pub ahead_of_you: Option<i64>,
    pub opens_at: DateTime<Utc>,
    /// While waiting: from the measured admission rate (`null` otherwise).
    pub estimated_wait: Option<WaitRange>,
    /// While admitted: the end of the window to use the pass in.
    pub pass_expires_at: Option<DateTime<Utc>>,
    /// On a join's answer: the write's token, for reading the place back in any region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency_token: Option<String>,
}

impl QueuePlace {
    pub fn new(row: &PlaceRow, queue: &QueueRow) -> QueuePlace {
        let state = place_state(row, queue.serving, queue.db_now);
        let ahead = row.position.map(|p| (p - queue.serving - 1).max(0));
        QueuePlace {
            event_id: row.event_id.to_string(),
            user_id: row.user_id.to_string(),
            state,
            position: row.position,
            serving: queue.serving,
            ahead_of_you: ahead,
            opens_at: queue.opens_at,
            estimated_wait: match (state, row.position) {
                (PlaceState::Waiting, Some(p)) => {
                    Some(wait_range(p - queue.serving, &queue.admit_rate()))
                }
                _ => None,
            },
            pass_expires_at: (state == PlaceState::Admitted)
                .then_some(row.pass_expires_at)
                .flatten(),
            consistency_token: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn row(position: Option<i64>, admitted: Option<i64>, used: bool) -> PlaceRow {
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        PlaceRow {
            event_id: 1,
            user_id: 2,
            joined_at: t0,
            position,
            admitted_at: admitted.map(|s| t0 + Duration::seconds(s)),
            pass_expires_at: admitted.map(|s| t0 + Duration::seconds(s + 60)),
            used,
        }
    }

    #[test]
    fn a_place_goes_from_lobby_to_waiting_to_admitted_to_expired_or_used() {
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let at = |s| t0 + Duration::seconds(s);
        assert_eq!(
            place_state(&row(None, None, false), 0, at(0)),
            PlaceState::Lobby
        );
        assert_eq!(
            place_state(&row(Some(5), None, false), 4, at(0)),
            PlaceState::Waiting
        );
        assert_eq!(
            place_state(&row(Some(5), Some(10), false), 5, at(30)),
            PlaceState::Admitted
        );
        assert_eq!(
            place_state(&row(Some(5), Some(10), false), 9, at(70)),
            PlaceState::Expired
        );
        assert_eq!(
            place_state(&row(Some(5), Some(10), true), 9, at(70)),
            PlaceState::Used
        );
        assert_eq!(
            place_state(&row(Some(5), Some(10), true), 9, at(20)),
            PlaceState::Used
        );
    }
}
