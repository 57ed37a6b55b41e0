//! All SQL of the waiting room (settings, members, the draw, the serving counter, admissions),
//! each statement written once. Functions run on the connection, transaction or pool they are
//! given: the home primary for writes, this region's replica of the shard for reads.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};

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

/// `user`'s place in `event`'s queue, if they joined.
pub async fn place<'e>(
    db: impl PgExecutor<'e>,
    event_id: i64,
    user_id: i64,
) -> ApiResult<Option<PlaceRow>> {
    Ok(places(db, event_id, &[user_id]).await?.pop())
}

/// The places of those of `user_ids` who joined `event`'s queue, in no particular order. The
/// covering admission is found by the admissions' key (first position at or below the place,
/// the latest such).
pub async fn places<'e>(
    db: impl PgExecutor<'e>,
    event_id: i64,
    user_ids: &[i64],
) -> ApiResult<Vec<PlaceRow>> {
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
         WHERE m.event_id = $1 AND m.user_id = ANY($2)",
    )
    .bind(event_id)
    .bind(user_ids)
    .fetch_all(db)
    .await?)
}

// --- Settings, joins, the draw and the serving loop (home primary), and the queue list -------
// Every write below runs with the queue row locked FOR UPDATE: joins, the draw and the loop of
// one queue never interleave. `updated_at` doubles as the serving loop's clock: the draw sets
// it, each advance sets it, and the loop's rate credit accrues from it.

/// An event's queue settings, checked (`queue::settings`).
#[derive(Debug, Clone)]
pub struct SettingsRow {
    pub opens_at: DateTime<Utc>,
    pub closes_at: Option<DateTime<Utc>>,
    pub target_active: i32,
    pub max_admit_per_second: f64,
    pub pass_seconds: i32,
}

/// The settings a PUT may change, locked: (opens_at, drawn) of `event_id`'s queue, if any.
pub async fn lock_settings(
    conn: &mut PgConnection,
    event_id: i64,
) -> ApiResult<Option<(DateTime<Utc>, bool)>> {
    Ok(sqlx::query_as(
        "SELECT opens_at, drawn_at IS NOT NULL FROM event_queues WHERE event_id = $1 FOR UPDATE",
    )
    .bind(event_id)
    .fetch_optional(conn)
    .await?)
}

/// Creates `event_id`'s queue or changes its settings (counters untouched).
pub async fn save_settings(
    conn: &mut PgConnection,
    event_id: i64,
    settings: &SettingsRow,
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO event_queues
             (event_id, opens_at, closes_at, target_active, max_admit_per_second, pass_seconds)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (event_id) DO UPDATE SET
             opens_at = EXCLUDED.opens_at, closes_at = EXCLUDED.closes_at,
             target_active = EXCLUDED.target_active,
             max_admit_per_second = EXCLUDED.max_admit_per_second,
             pass_seconds = EXCLUDED.pass_seconds, updated_at = now()",
    )
    .bind(event_id)
    .bind(settings.opens_at)
    .bind(settings.closes_at)
    .bind(settings.target_active)
    .bind(settings.max_admit_per_second)
    .bind(settings.pass_seconds)
    .execute(conn)
    .await?;
    Ok(())
}

/// Locks `event_id`'s queue for a batch of joins: `Some(closed)` (past `closes_at` by the
/// database's clock), `None` when the event has no queue. Waits for a draw in progress.
pub async fn lock_for_joins(conn: &mut PgConnection, event_id: i64) -> ApiResult<Option<bool>> {
    Ok(sqlx::query_scalar(
        "SELECT closes_at IS NOT NULL AND now() >= closes_at
         FROM event_queues WHERE event_id = $1 FOR UPDATE",
    )
    .bind(event_id)
    .fetch_optional(conn)
    .await?)
}

/// Adds the users of `arrivals` (in arrival order, each once) who are not members yet. Before
/// the draw they wait in the lobby (no position); after it they take `last_position + 1, ...`
/// in arrival order and `last_position` moves past them. The queue row must be locked (so
/// the members read here cannot change under the statement). Returns how many were added.
pub async fn add_members(
    conn: &mut PgConnection,
    event_id: i64,
    arrivals: &[i64],
) -> ApiResult<i64> {
    Ok(sqlx::query_scalar(
        "WITH arriving AS (
             SELECT w.user_id, w.arrival
             FROM unnest($2::int8[]) WITH ORDINALITY AS w(user_id, arrival)
             WHERE NOT EXISTS (SELECT 1 FROM queue_members m
                               WHERE m.event_id = $1 AND m.user_id = w.user_id)
         ), placed AS (
             INSERT INTO queue_members (event_id, user_id, position)
             SELECT $1, a.user_id,
                    CASE WHEN q.drawn_at IS NOT NULL
                         THEN q.last_position + row_number() OVER (ORDER BY a.arrival) END
             FROM arriving a JOIN event_queues q ON q.event_id = $1
             ON CONFLICT DO NOTHING
             RETURNING position
         ), moved AS (
             UPDATE event_queues q
             SET last_position = q.last_position + (SELECT count(*) FROM placed)
             WHERE q.event_id = $1 AND q.drawn_at IS NOT NULL
         )
         SELECT count(*) FROM placed",
    )
    .bind(event_id)
    .bind(arrivals)
    .fetch_one(conn)
    .await?)
}

/// Queues of this primary with work for the serving loop: a lobby due to be drawn, or places
/// behind the counter.
pub async fn due_queues<'e>(db: impl PgExecutor<'e>) -> ApiResult<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT event_id FROM event_queues
         WHERE (drawn_at IS NULL AND opens_at <= now())
            OR (drawn_at IS NOT NULL AND serving < last_position)",
    )
    .fetch_all(db)
    .await?)
}

/// Locks `event_id`'s queue if its lobby is due to be drawn and no one else holds it (another
/// node of the region drawing, or joins: the next tick tries again).
pub async fn lock_due_lobby(conn: &mut PgConnection, event_id: i64) -> ApiResult<bool> {
    Ok(sqlx::query_scalar::<_, i64>(
        "SELECT event_id FROM event_queues
         WHERE event_id = $1 AND drawn_at IS NULL AND opens_at <= now()
         FOR UPDATE SKIP LOCKED",
    )
    .bind(event_id)
    .fetch_optional(conn)
    .await?
    .is_some())
}

/// The fair draw of a locked, due lobby: every member gets a random position 1..n, and the
/// queue opens with `lobby_size = last_position = n`. A statement of its own after the lock,
/// so it sees every join committed before the lock was taken. Returns n.
pub async fn draw(conn: &mut PgConnection, event_id: i64) -> ApiResult<i64> {
    Ok(sqlx::query_scalar(
        "WITH drawn AS (
             UPDATE queue_members m SET position = r.position
             FROM (SELECT user_id, row_number() OVER (ORDER BY random()) AS position
                   FROM queue_members WHERE event_id = $1 AND position IS NULL) r
             WHERE m.event_id = $1 AND m.user_id = r.user_id
             RETURNING 1
         )
         UPDATE event_queues
         SET drawn_at = now(), lobby_size = (SELECT count(*) FROM drawn),
             last_position = (SELECT count(*) FROM drawn), updated_at = now()
         WHERE event_id = $1
         RETURNING lobby_size",
    )
    .bind(event_id)
    .fetch_one(conn)
    .await?)
}

/// What the serving loop needs of a queue it locked.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LoopRow {
    pub target_active: i32,
    pub max_admit_per_second: f64,
    pub serving: i64,
    pub last_position: i64,
    pub admit_credit: f64,
    /// Since the last advance (or the draw).
    pub elapsed_seconds: f64,
}

/// Locks `event_id`'s queue for an advance if it is drawn, has places behind the counter, and
/// no one else holds it (`SKIP LOCKED`: several nodes of a region never double-advance).
pub async fn lock_serving(conn: &mut PgConnection, event_id: i64) -> ApiResult<Option<LoopRow>> {
    Ok(sqlx::query_as(
        "SELECT target_active, max_admit_per_second, serving, last_position, admit_credit,
                extract(epoch FROM now() - updated_at)::float8 AS elapsed_seconds
         FROM event_queues
         WHERE event_id = $1 AND drawn_at IS NOT NULL AND serving < last_position
         FOR UPDATE SKIP LOCKED",
    )
    .bind(event_id)
    .fetch_optional(conn)
    .await?)
}

/// The closed loop's measurement: admitted places whose pass window is open and that have no
/// booking, plus live holds made with a pass. O(open admissions + bookings made with them).
pub async fn active<'e>(db: impl PgExecutor<'e>, event_id: i64) -> ApiResult<i64> {
    Ok(sqlx::query_scalar(
        "WITH open AS (
             SELECT a.first_position, a.last_position
             FROM queue_admissions a JOIN event_queues q ON q.event_id = a.event_id
             WHERE a.event_id = $1
               AND a.admitted_at > now() - make_interval(secs => q.pass_seconds)
         )
         SELECT (SELECT coalesce(sum(o.last_position - o.first_position + 1), 0) FROM open o)::int8
              - (SELECT count(*) FROM bookings b
                 WHERE b.event_id = $1
                   AND b.queue_position >= (SELECT min(o.first_position) FROM open o)
                   AND EXISTS (SELECT 1 FROM open o
                               WHERE b.queue_position BETWEEN o.first_position
                                                          AND o.last_position))
              + (SELECT count(*) FROM bookings b
                 WHERE b.event_id = $1 AND b.queue_position IS NOT NULL
                   AND b.status = 'held' AND b.expires_at > now())",
    )
    .bind(event_id)
    .fetch_one(db)
    .await?)
}

/// Moves `event_id`'s locked counter `count` places on (at least one) and records the
/// admission; `credit` is the rate credit carried to the next tick.
pub async fn advance(
    conn: &mut PgConnection,
    event_id: i64,
    count: i64,
    credit: f64,
) -> ApiResult<()> {
    sqlx::query(
        "WITH moved AS (
             UPDATE event_queues
             SET serving = serving + $2, admit_credit = $3, updated_at = now()
             WHERE event_id = $1
             RETURNING serving
         )
         INSERT INTO queue_admissions (event_id, first_position, last_position)
         SELECT $1, serving - $2 + 1, serving FROM moved",
    )
    .bind(event_id)
    .bind(count)
    .bind(credit)
    .execute(conn)
    .await?;
    Ok(())
}

/// Events with a queue worth showing: open, or closed less than an hour ago.
pub async fn queue_ids<'e>(db: impl PgExecutor<'e>) -> ApiResult<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT event_id FROM event_queues
         WHERE closes_at IS NULL OR closes_at > now() - interval '1 hour'",
    )
    .fetch_all(db)
    .await?)
}
