//! All SQL of the booking aggregate (bookings and the hold, sale and release of their tickets),
//! each statement written once. Every function runs on the connection or transaction it is
//! given, so a request path never asks the pool for a second connection while holding one.

use std::collections::HashMap;

use id_gen::Id;
use sqlx::PgConnection;

use crate::booking::request::Prepared;
use crate::booking::views::{BookingRow, TicketRef};
use crate::error::{ApiError, ApiResult};
use crate::queue::pass::PassError;

const BOOKING_COLUMNS: &str = "id, event_id, user_id, status, expires_at > now() AS live, \
                               quantity, lines, total_cents, expires_at, created_at, updated_at, \
                               confirmed_at";

/// The claim, with its row-locking clause as a parameter so that it is written once: per
/// wanted tier, up to the quantity of claimable tickets, locked. Available tickets first, by id,
/// through the partial index of available tickets only (so the claim costs the same for the
/// last ticket as for the first); then, only for a tier still short, holds that have lapsed,
/// which are claimable the moment they lapse. Never a lock on the event row.
/// Binds: $1 event id, $2 tiers (text[]), $3 quantities (int4[]).
macro_rules! claim_statement {
    ($locking:literal) => {
        concat!(
            "WITH wanted AS (SELECT * FROM unnest($2::text[], $3::int4[]) AS w(tier, qty)),
             available AS (
                 SELECT c.id, w.tier FROM wanted w CROSS JOIN LATERAL (
                     SELECT t.id FROM tickets t
                     WHERE t.event_id = $1 AND t.tier = w.tier AND t.status = 'available'
                     ORDER BY t.id LIMIT w.qty ",
            $locking,
            ") c),
             short AS (
                 SELECT w.tier, w.qty - (SELECT count(*) FROM available a WHERE a.tier = w.tier) AS qty
                 FROM wanted w),
             lapsed AS (
                 SELECT c.id, s.tier FROM short s CROSS JOIN LATERAL (
                     SELECT t.id FROM tickets t
                     WHERE t.event_id = $1 AND t.tier = s.tier AND t.status = 'held'
                       AND t.hold_expires_at <= now()
                     ORDER BY t.hold_expires_at LIMIT s.qty ",
            $locking,
            ") c
                 WHERE s.qty > 0)
             SELECT id, tier FROM available UNION ALL SELECT id, tier FROM lapsed"
        )
    };
}

/// The claim every reserve runs: rows other transactions hold are skipped, never waited for.
pub const CLAIM: &str = claim_statement!("FOR UPDATE SKIP LOCKED");

/// Test-only: the same claim without row locks, so that concurrent reserves take the same
/// tickets. It exists to prove the race tests can see an oversell.
#[cfg(feature = "unlocked-claims-for-race-tests")]
pub const CLAIM_UNLOCKED: &str = claim_statement!("");

/// How this node claims tickets: with row locks, always, but for the race tests' negative
/// control, which can only switch them off in a build with the test-only feature.
#[derive(Debug, Clone, Copy, Default)]
pub struct Claims {
    #[cfg(feature = "unlocked-claims-for-race-tests")]
    unlocked: bool,
}

impl Claims {
    /// Test-only: claims that take no row locks and bypass the guard trigger, so concurrent
    /// reserves overwrite each other's tickets; nor do they lock a holder's count for the
    /// per-user cap.
    #[cfg(feature = "unlocked-claims-for-race-tests")]
    pub fn without_row_locks() -> Claims {
        Claims { unlocked: true }
    }

    pub fn unlocked(&self) -> bool {
        #[cfg(feature = "unlocked-claims-for-race-tests")]
        return self.unlocked;
        #[cfg(not(feature = "unlocked-claims-for-race-tests"))]
        false
    }

    /// Set-up of a reserve's transaction: nothing, unless the claims are unlocked.
    pub async fn prepare_transaction(&self, conn: &mut PgConnection) -> ApiResult<()> {
        if self.unlocked() {
            // Replica role skips triggers: the guard would otherwise refuse the oversell.
            sqlx::query("SET LOCAL session_replication_role = replica")
                .execute(conn)
                .await?;
        }
        Ok(())
    }

    /// Locks each (holder, `event_id`) pair until the transaction ends (unlocked: does not), then
    /// counts the tickets each holder holds (live holds) or bought of the event: what the
    /// per-user cap weighs a reserve against. One round trip, through the function
    /// `lock_and_count_holdings` of migration 0004, whose count reads after the locks are
    /// granted. Run it first in a reserve's transaction, before the claim.
    pub async fn holdings(
        &self,
        conn: &mut PgConnection,
        event_id: i64,
        holders: &[i64],
    ) -> ApiResult<HashMap<i64, i64>> {
        lock_and_count_holdings(conn, event_id, holders, !self.unlocked()).await
    }

    /// Locks (or, unlocked, just reads) up to the wanted quantity of claimable tickets per tier
    /// of `event_id`; see [`CLAIM`].
    pub async fn claim(
        &self,
        conn: &mut PgConnection,
        event_id: i64,
        wanted: &[(String, i32)],
    ) -> ApiResult<Vec<TicketRef>> {
        #[cfg(feature = "unlocked-claims-for-race-tests")]
        let statement = if self.unlocked { CLAIM_UNLOCKED } else { CLAIM };
        #[cfg(not(feature = "unlocked-claims-for-race-tests"))]
        let statement = CLAIM;
        claim(conn, statement, event_id, wanted).await
    }
}

async fn claim(
    conn: &mut PgConnection,
    statement: &'static str,
    event_id: i64,
    wanted: &[(String, i32)],
) -> ApiResult<Vec<TicketRef>> {
    let tiers: Vec<&str> = wanted.iter().map(|(t, _)| t.as_str()).collect();
    let quantities: Vec<i32> = wanted.iter().map(|(_, q)| *q).collect();
    Ok(sqlx::query_as(statement)
        .bind(event_id)
        .bind(&tiers)
        .bind(&quantities)
        .fetch_all(conn)
        .await?)
}

async fn lock_and_count_holdings(
    conn: &mut PgConnection,
    event_id: i64,
    holders: &[i64],
    lock: bool,
) -> ApiResult<HashMap<i64, i64>> {
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("SELECT user_id, tickets FROM lock_and_count_holdings($1, $2, $3)")
            .bind(event_id)
            .bind(holders)
            .bind(lock)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().collect())
}

/// Holds the tickets a batch handed out and inserts its held bookings, in one statement (one
/// round trip inside the reserve's transaction, which claimed the tickets): each ticket held by
/// its request's booking and user for its hold length, each booking listing its tickets and,
/// for a queued event, its pass's queue position. A reused `Idempotency-Key` fails it with a
/// unique violation; a refused queue place with one of [`pass_refusal`]'s.
pub async fn hold_and_insert(
    conn: &mut PgConnection,
    event_id: i64,
    placed: &[(&Prepared, &[TicketRef])],
) -> Result<HashMap<i64, BookingRow>, sqlx::Error> {
    let mut ticket_ids = Vec::new();
    let mut ticket_bookings = Vec::new();
    for (request, tickets) in placed {
        for ticket in tickets.iter() {
            ticket_ids.push(ticket.id);
            ticket_bookings.push(request.booking_id.as_i64());
        }
    }
    let requests: Vec<&Prepared> = placed.iter().map(|(p, _)| *p).collect();
    let lines: Vec<serde_json::Value> = requests
        .iter()
        .map(|p| serde_json::to_value(&p.lines).unwrap_or(serde_json::Value::Null))
        .collect();
    let column = |f: fn(&Prepared) -> i64| requests.iter().map(|p| f(p)).collect::<Vec<i64>>();
    let rows: Vec<BookingRow> = sqlx::query_as(&format!(
        "WITH b AS (
             SELECT * FROM unnest($3::bigint[], $4::bigint[], $5::int4[], $6::jsonb[],
                                  $7::bigint[], $8::float8[], $9::text[], $11::int8[])
                 AS b(id, holder, quantity, lines, total, hold, key, queue_position)),
         held AS (
             UPDATE tickets t SET status = 'held', booking_id = b.id, user_id = b.holder,
                                  hold_expires_at = now() + make_interval(secs => b.hold),
                                  updated_at = now()
             FROM unnest($1::bigint[], $2::bigint[]) AS u(id, booking)
             JOIN b ON b.id = u.booking
             WHERE t.id = u.id)
         INSERT INTO bookings (id, event_id, user_id, status, quantity, lines, ticket_ids,
                               total_cents, expires_at, idempotency_key, queue_position)
         SELECT b.id, $10, b.holder, 'held', b.quantity, b.lines,
                ARRAY(SELECT u.id FROM unnest($1::bigint[], $2::bigint[]) AS u(id, booking)
                      WHERE u.booking = b.id ORDER BY u.id),
                b.total, now() + make_interval(secs => b.hold), b.key, b.queue_position
         FROM b
         RETURNING {BOOKING_COLUMNS}"
    ))
    .bind(&ticket_ids)
    .bind(&ticket_bookings)
    .bind(column(|p| p.booking_id.as_i64()))
    .bind(column(|p| p.user_id.as_i64()))
    .bind(requests.iter().map(|p| p.quantity).collect::<Vec<_>>())
    .bind(lines)
    .bind(column(|p| p.total_cents))
    .bind(
        requests
            .iter()
            .map(|p| f64::from(p.hold_seconds))
            .collect::<Vec<_>>(),
    )
    .bind(
        requests
            .iter()
            .map(|p| p.idempotency_key.clone())
            .collect::<Vec<_>>(),
    )
    .bind(event_id)
    .bind(
        requests
            .iter()
            .map(|p| p.queue_position)
            .collect::<Vec<_>>(),
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|row| (row.id, row)).collect())
}

/// The pass refusal a failed booking insert stands for, if any, by the constraint of
/// migration 0005 it broke: a second order with one place (`bookings_one_per_pass`), no
/// admitted place for a queued event (the trigger `bookings_need_an_admitted_place`, e.g. a
/// reserve that read the event's terms before it was queued), or a place not the user's own.
pub fn pass_refusal(error: &dyn sqlx::error::DatabaseError) -> Option<PassError> {
    match error.constraint()? {
        "bookings_one_per_pass" => Some(PassError::Used),
        "bookings_need_an_admitted_place" => Some(PassError::Required),
        "bookings_pass_is_the_users_place" => Some(PassError::Invalid),
        _ => None,
    }
}

pub async fn find(conn: &mut PgConnection, id: Id) -> ApiResult<BookingRow> {
    sqlx::query_as(&format!(
        "SELECT {BOOKING_COLUMNS} FROM bookings WHERE id = $1"
    ))
    .bind(id.as_i64())
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("booking {id}")))
}

/// A user's bookings, newest first.
pub async fn of_user(conn: &mut PgConnection, user: Id, limit: i64) -> ApiResult<Vec<BookingRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {BOOKING_COLUMNS} FROM bookings WHERE user_id = $1 ORDER BY id DESC LIMIT $2"
    ))
    .bind(user.as_i64())
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// The tickets the given bookings hold or bought, as (booking id, ticket), by ticket id.
pub async fn tickets_of(
    conn: &mut PgConnection,
    booking_ids: &[i64],
) -> ApiResult<Vec<(i64, TicketRef)>> {
    let rows: Vec<(i64, i64, String)> = sqlx::query_as(
        "SELECT booking_id, id, tier FROM tickets WHERE booking_id = ANY($1) ORDER BY id",
    )
    .bind(booking_ids)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(booking, id, tier)| (booking, TicketRef { id, tier }))
        .collect())
}

/// Sells exactly the booking's held, unexpired tickets, guarded so that a lapsed or released
/// hold sells nothing. Run inside the confirm transaction.
pub async fn sell(conn: &mut PgConnection, booking: Id) -> ApiResult<Vec<TicketRef>> {
    Ok(sqlx::query_as(
        "UPDATE tickets SET status = 'sold', sold_at = now(), updated_at = now()
         WHERE booking_id = $1 AND status = 'held' AND hold_expires_at > now()
         RETURNING id, tier",
    )
    .bind(booking.as_i64())
    .fetch_all(conn)
    .await?)
}

/// Marks a held booking confirmed; `None` if it was no longer held.
pub async fn mark_confirmed(conn: &mut PgConnection, booking: Id) -> ApiResult<Option<BookingRow>> {
    Ok(sqlx::query_as(&format!(
        "UPDATE bookings SET status = 'confirmed', confirmed_at = now(), updated_at = now()
         WHERE id = $1 AND status = 'held'
         RETURNING {BOOKING_COLUMNS}"
    ))
    .bind(booking.as_i64())
    .fetch_optional(conn)
    .await?)
}

/// Ends a held booking with `new_status` and frees the tickets it still holds, in one
/// transaction on `conn`. `None` if the booking was no longer held; else the tickets freed.
pub async fn release(
    conn: &mut PgConnection,
    booking: Id,
    new_status: &str,
) -> ApiResult<Option<u64>> {
    use sqlx::Connection;
    let mut tx = conn.begin().await?;
    let ended = sqlx::query(
        "UPDATE bookings SET status = $2, updated_at = now() WHERE id = $1 AND status = 'held'",
    )
    .bind(booking.as_i64())
    .bind(new_status)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if ended == 0 {
        tx.rollback().await?;
        return Ok(None);
    }
    let freed = sqlx::query(
        "UPDATE tickets SET status = 'available', booking_id = NULL, user_id = NULL,
                            hold_expires_at = NULL, updated_at = now()
         WHERE booking_id = $1 AND status = 'held'",
    )
    .bind(booking.as_i64())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(Some(freed))
}

/// What one sweep step did.
pub struct Expired {
    pub bookings: u64,
    pub tickets: u64,
    /// The events whose bookings it ended (their cached views are stale now).
    pub events: Vec<i64>,
}

/// The sweeper's step: ends up to `batch` lapsed holds as `expired` and frees their tickets,
/// skipping any a request is working on.
pub async fn expire_lapsed(conn: &mut PgConnection, batch: i64) -> ApiResult<Expired> {
    let (bookings, events, tickets): (i64, Vec<i64>, i64) = sqlx::query_as(
        "WITH lapsed AS (
             SELECT id FROM bookings
             WHERE status = 'held' AND expires_at <= now()
             ORDER BY expires_at LIMIT $1
             FOR UPDATE SKIP LOCKED),
         freed AS (
             UPDATE tickets t SET status = 'available', booking_id = NULL, user_id = NULL,
                                  hold_expires_at = NULL, updated_at = now()
             FROM lapsed WHERE t.booking_id = lapsed.id AND t.status = 'held'
             RETURNING t.id),
         ended AS (
             UPDATE bookings b SET status = 'expired', updated_at = now()
             FROM lapsed WHERE b.id = lapsed.id
             RETURNING b.id, b.event_id)
         SELECT (SELECT count(*) FROM ended),
                (SELECT coalesce(array_agg(DISTINCT event_id), '{}') FROM ended),
                (SELECT count(*) FROM freed)",
    )
    .bind(batch)
    .fetch_one(conn)
    .await?;
    Ok(Expired {
        bookings: bookings as u64,
        tickets: tickets as u64,
        events,
    })
}
