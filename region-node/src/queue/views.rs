//! What the API shows of a queue: its public figures (`QueueFigures`), the same in the queue's
//! own answer and in every live stream message, so a client reads one shape everywhere.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::queue::estimate::AdmitRate;
use crate::queue::store::QueueRow;

/// An event's waiting room as everyone may see it: settings, the counters, the measured rate.
/// A client works out its own distance from its position and `serving`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueFigures {
    /// Id as a string (64-bit ids exceed what JavaScript numbers hold).
    pub event_id: String,
    pub opens_at: DateTime<Utc>,
    pub closes_at: Option<DateTime<Utc>>,
    /// The lobby was drawn: positions exist and the counter may move.
    pub open: bool,
    /// Joins are refused (past `closesAt`).
    pub closed: bool,
    /// The serving counter: positions up to it are admitted.
    pub serving: i64,
    /// Positions handed out so far (1..lastPosition).
    pub last_position: i64,
    /// How many of them went to the lobby's draw.
    pub lobby_size: i64,
    pub target_active: i32,
    pub max_admit_per_second: f64,
    pub pass_seconds: i32,
    pub admit_rate: AdmitRate,
}

impl QueueFigures {
    pub fn from_row(row: &QueueRow) -> QueueFigures {
        QueueFigures {
            event_id: row.event_id.to_string(),
            opens_at: row.opens_at,
            closes_at: row.closes_at,
            open: row.drawn_at.is_some(),
            closed: row.closed(),
            serving: row.serving,
            last_position: row.last_position,
            lobby_size: row.lobby_size,
            target_active: row.target_active,
            max_admit_per_second: row.max_admit_per_second,
            pass_seconds: row.pass_seconds,
            admit_rate: row.admit_rate(),
        }
    }
}
