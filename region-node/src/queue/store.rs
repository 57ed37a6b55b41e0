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
