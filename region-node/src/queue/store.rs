//! All SQL of the waiting room (settings, members, the draw, the serving counter, admissions),
//! each statement written once. Functions run on the connection, transaction or pool they are
//! given: the home primary for writes, this region's replica of the shard for reads.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::error::ApiResult;
use crate::queue::estimate::{self, AdmitRate, WINDOWS};

/// An event's queue as stored: settings and counters, with the admissions per measuring window
/// and the database's clock (so the maths never mixes two clocks).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QueueRow {
    pub event_id: i64,
    pub opens_at: DateTime<Utc>,
    pub closes_at: Option<DateTime<Utc>>,
    pub target_active: i32,
    pub max_admit_per_second: f64,
    pub pass_seconds: i32,
    pub drawn_at: Option<DateTime<Utc>>,
    pub lobby_size: i64,
    pub last_position: i64,
    pub serving: i64,
    /// Positions admitted in each of the last `WINDOWS` windows of `WINDOW_SECONDS`, latest
    /// first.
    pub admitted_per_window: Vec<i64>,
    /// When the first admission happened (`None`: none yet).
    pub first_admitted_at: Option<DateTime<Utc>>,
    pub db_now: DateTime<Utc>,
}

impl QueueRow {
    /// The measured admission rate (see `estimate::admit_rate`).
    pub fn admit_rate(&self) -> AdmitRate {
        let since = self
            .first_admitted_at
            .map(|t| (self.db_now - t).num_milliseconds() as f64 / 1000.0);
        estimate::admit_rate(&self.admitted_per_window, since, self.max_admit_per_second)
    }

    /// Joins are refused after `closes_at`.
    pub fn closed(&self) -> bool {
        self.closes_at.is_some_and(|c| self.db_now >= c)
    }
}

const QUEUE_ROWS: &str = "
    SELECT q.event_id, q.opens_at, q.closes_at, q.target_active, q.max_admit_per_second,
           q.pass_seconds, q.drawn_at, q.lobby_size, q.last_position, q.serving,
           ARRAY(
               SELECT coalesce(sum(a.last_position - a.first_position + 1), 0)::int8
               FROM generate_series(0, $2 - 1) AS w(n)
               LEFT JOIN queue_admissions a
                 ON a.event_id = q.event_id
                AND a.admitted_at >  now() - make_interval(secs => (w.n + 1) * $3)
                AND a.admitted_at <= now() - make_interval(secs => w.n * $3)
               GROUP BY w.n ORDER BY w.n
           ) AS admitted_per_window,
           (SELECT min(a.admitted_at) FROM queue_admissions a WHERE a.event_id = q.event_id)
               AS first_admitted_at,
           now() AS db_now
    FROM event_queues q
    WHERE q.event_id = ANY($1)";

/// The queues of `event_ids` that have one (an event without a row is not queued), in no
/// particular order. O(events + admissions of the last 30 s).
pub async fn queues<'e>(db: impl PgExecutor<'e>, event_ids: &[i64]) -> ApiResult<Vec<QueueRow>> {
    Ok(sqlx::query_as(QUEUE_ROWS)
        .bind(event_ids)
        .bind(WINDOWS as i32)
        .bind(estimate::WINDOW_SECONDS)
        .fetch_all(db)
        .await?)
}

/// One event's queue, if it has one.
pub async fn queue<'e>(db: impl PgExecutor<'e>, event_id: i64) -> ApiResult<Option<QueueRow>> {
    Ok(queues(db, &[event_id]).await?.pop())
}

/// A user's place in a queue, with what decides its state: the admission that covered its
/// position (if any) and whether an order was made with it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PlaceRow {
    pub event_id: i64,
    pub user_id: i64,
    pub joined_at: DateTime<Utc>,
    /// `None` while in the lobby.
    pub position: Option<i64>,
    /// When the serving counter passed the position (`None`: not yet).
    pub admitted_at: Option<DateTime<Utc>>,
    /// `admitted_at` + the queue's pass window.
    pub pass_expires_at: Option<DateTime<Utc>>,
    /// A booking was made with this place's pass.
    pub used: bool,
}

/// `user`'s place in `event`'s queue, if they joined. The covering admission is found by the
/// admissions' key (first position at or below the place, the latest such).
pub async fn place<'e>(
    db: impl PgExecutor<'e>,
    event_id: i64,
    user_id: i64,
) -> ApiResult<Option<PlaceRow>> {
    Ok(sqlx::query_as(
        "SELECT m.event_id, m.user_id, m.joined_at, m.position,
                a.admitted_at,
                a.admitted_at + make_interval(secs => q.pass_seconds) AS pass_expires_at,
                EXISTS (SELECT 1 FROM bookings b
                        WHERE b.event_id = m.event_id AND b.queue_position = m.position) AS used
         FROM queue_members m
         JOIN event_queues q ON q.event_id = m.event_id
         LEFT JOIN LATERAL (
             SELECT a.admitted_at FROM queue_admissions a
             WHERE a.event_id = m.event_id AND a.first_position <= m.position
               AND a.last_position >= m.position
             ORDER BY a.first_position DESC LIMIT 1) a ON true
         WHERE m.event_id = $1 AND m.user_id = $2",
    )
    .bind(event_id)
    .bind(user_id)
    .fetch_optional(db)
    .await?)
}
