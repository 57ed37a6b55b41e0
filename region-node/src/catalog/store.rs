//! All SQL of the catalog (events, their tiers, and their tickets' creation and lookup), each
//! statement written once. Functions run on the connection, transaction or pool they are given.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use id_gen::Id;
use sqlx::{PgConnection, PgExecutor};

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub venue: String,
    pub starts_at: DateTime<Utc>,
    pub home_region: String,
    pub status: String,
    pub hold_seconds: i32,
    pub max_per_order: i32,
    /// `None`: the node's default (`booking.default_max_tickets_per_user`).
    pub max_tickets_per_user: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const EVENT_COLUMNS: &str = "id, name, description, venue, starts_at, home_region, status, \
                             hold_seconds, max_per_order, max_tickets_per_user, created_at, \
                             updated_at";

/// A tier with its tickets created and left.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TierAvailability {
    pub event_id: i64,
    pub name: String,
    pub price_cents: i64,
    pub ticket_count: i64,
    pub available: i64,
}

/// A new event's row, before the database adds status and times.
pub struct NewEventRow<'a> {
    pub id: Id,
    pub name: &'a str,
    pub description: &'a str,
    pub venue: &'a str,
    pub starts_at: DateTime<Utc>,
    pub home_region: &'a str,
    pub hold_seconds: i32,
    pub max_per_order: i32,
    pub max_tickets_per_user: Option<i32>,
    /// (name, price in cents).
    pub tiers: Vec<(String, i64)>,
}

/// Inserts the event and its tiers; run it in a transaction.
pub async fn insert_event(conn: &mut PgConnection, new: &NewEventRow<'_>) -> ApiResult<EventRow> {
    let row: EventRow = sqlx::query_as(&format!(
        "INSERT INTO events (id, name, description, venue, starts_at, home_region, hold_seconds,
                             max_per_order, max_tickets_per_user)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         RETURNING {EVENT_COLUMNS}"
    ))
    .bind(new.id.as_i64())
    .bind(new.name)
    .bind(new.description)
    .bind(new.venue)
    .bind(new.starts_at)
    .bind(new.home_region)
    .bind(new.hold_seconds)
    .bind(new.max_per_order)
    .bind(new.max_tickets_per_user)
    .fetch_one(&mut *conn)
    .await?;
    let (names, prices): (Vec<&str>, Vec<i64>) =
        new.tiers.iter().map(|(n, p)| (n.as_str(), *p)).unzip();
    sqlx::query(
        "INSERT INTO tiers (event_id, name, price_cents)
         SELECT $1, t.name, t.price FROM unnest($2::text[], $3::bigint[]) AS t(name, price)",
    )
    .bind(new.id.as_i64())
    .bind(&names)
    .bind(&prices)
    .execute(conn)
    .await?;
    Ok(row)
}

pub async fn find_event(conn: &mut PgConnection, id: Id) -> ApiResult<EventRow> {
    sqlx::query_as(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1"))
        .bind(id.as_i64())
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("event {id}")))
}

/// A page of the shard's events, soonest first: the `limit` after `(starts_at, id)`, through
/// the `(starts_at, id)` index whatever the page.
pub async fn list_events(
    conn: &mut PgConnection,
    after: (DateTime<Utc>, i64),
    limit: i64,
) -> ApiResult<Vec<EventRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE (starts_at, id) > ($1, $2)
         ORDER BY starts_at, id LIMIT $3"
    ))
    .bind(after.0)
    .bind(after.1)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// What a reserve needs to know about its event.
#[derive(Debug, sqlx::FromRow)]
pub struct SaleTerms {
    pub id: i64,
    pub status: String,
    pub max_per_order: i32,
    /// `None`: the node's default (`booking.default_max_tickets_per_user`).
    pub max_tickets_per_user: Option<i32>,
    pub hold_seconds: i32,
    /// (tier, price in cents).
    pub prices: sqlx::types::Json<Vec<(String, i64)>>,
    /// The event has a waiting room: a reserve needs a queue pass.
    pub queued: bool,
}

/// What a reserve needs of an event (see `catalog::terms`).
pub async fn sale_terms(conn: &mut PgConnection, id: Id) -> ApiResult<SaleTerms> {
    sqlx::query_as(
        "SELECT e.id, e.status, e.max_per_order, e.max_tickets_per_user, e.hold_seconds,
                coalesce((SELECT json_agg(json_build_array(t.name, t.price_cents)
                                          ORDER BY t.price_cents DESC, t.name)
                          FROM tiers t WHERE t.event_id = e.id), '[]') AS prices,
                EXISTS (SELECT 1 FROM event_queues q WHERE q.event_id = e.id) AS queued
         FROM events e WHERE e.id = $1",
    )
    .bind(id.as_i64())
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("event {id}")))
}

/// Tickets left per tier of the events `$1` (bigint[]); see [`availability`].
pub const AVAILABILITY: &str = "
    SELECT tr.event_id, tr.name, tr.price_cents, tr.ticket_count,
           (SELECT coalesce(sum(s.available), 0)::int8 FROM tier_stock s
             WHERE s.event_id = tr.event_id AND s.tier = tr.name)
         + (SELECT count(*) FROM tickets t
             WHERE t.event_id = tr.event_id AND t.tier = tr.name AND t.status = 'held'
               AND t.hold_expires_at <= now()) AS available
    FROM tiers tr
    WHERE tr.event_id = ANY($1)
    ORDER BY tr.event_id, tr.price_cents DESC, tr.name";

/// Tickets left per tier of each event, in O(tiers): the counts the writes keep
/// (`tier_stock`, see migration 0002) plus the holds that have lapsed but are not yet swept,
/// which are available the moment they lapse. Neither reads a row per ticket.
pub async fn availability<'e>(
    db: impl PgExecutor<'e>,
    event_ids: &[i64],
) -> ApiResult<Vec<TierAvailability>> {
    Ok(sqlx::query_as(AVAILABILITY)
        .bind(event_ids)
        .fetch_all(db)
        .await?)
}

/// Availability of one event as a tier -> count map, for `409 sold_out` answers.
pub async fn available_by_tier(
    conn: &mut PgConnection,
    event_id: i64,
) -> ApiResult<BTreeMap<String, i64>> {
    Ok(availability(conn, &[event_id])
        .await?
        .into_iter()
        .map(|t| (t.name, t.available))
        .collect())
}

/// Creates `ids.len()` available tickets of `tier` and counts them in the tier; run it in the
/// creation's transaction.
pub async fn insert_tickets(
    conn: &mut PgConnection,
    event_id: i64,
    tier: &str,
    ids: &[i64],
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO tickets (id, event_id, tier)
         SELECT u.id, $2, $3 FROM unnest($1::bigint[]) AS u(id)",
    )
    .bind(ids)
    .bind(event_id)
    .bind(tier)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE tiers SET ticket_count = ticket_count + $3 WHERE event_id = $1 AND name = $2",
    )
    .bind(event_id)
    .bind(tier)
    .bind(ids.len() as i64)
    .execute(conn)
    .await?;
    Ok(())
}

/// One ticket as the public may see it (no holder).
#[derive(Debug, sqlx::FromRow)]
pub struct TicketRow {
    pub id: i64,
    pub event_id: i64,
    pub tier: String,
    pub status: String,
    pub lapsed_hold: bool,
    pub price_cents: i64,
    pub sold_at: Option<DateTime<Utc>>,
}

pub async fn find_ticket<'e>(db: impl PgExecutor<'e>, id: Id) -> ApiResult<TicketRow> {
    sqlx::query_as(
        "SELECT t.id, t.event_id, t.tier, t.status,
                (t.status = 'held' AND t.hold_expires_at <= now()) AS lapsed_hold,
                tr.price_cents, t.sold_at
         FROM tickets t JOIN tiers tr ON tr.event_id = t.event_id AND tr.name = t.tier
         WHERE t.id = $1",
    )
    .bind(id.as_i64())
    .fetch_optional(db)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("ticket {id}")))
}
