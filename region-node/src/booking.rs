//! The booking flow on the home primary: reserve (a hold), confirm (payment, then sale), cancel,
//! and the sweeper's release of lapsed holds. All booking and ticket-claim SQL is here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use id_gen::Id;
use serde::{Deserialize, Serialize};
use sqlx::types::Json as SqlJson;
use sqlx::{Connection, PgConnection};

use crate::app::Node;
use crate::auth::AuthUser;
use crate::consistency::ReadAfter;
use crate::error::{ApiError, ApiResult};
use crate::events::{self, ensure_home, id_from_db};
use crate::idempotency::KeyUse;
use crate::payment::{self, PaymentOutcome, PaymentSimulation};
use crate::reads::ReadAnswer;
use crate::tickets::unknown_tier;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReserveRequest {
    pub event_id: Id,
    pub tickets: Vec<TierQuantity>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierQuantity {
    pub tier: String,
    pub quantity: i64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfirmRequest {
    pub booking_id: Id,
    pub payment_simulation: PaymentSimulation,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelRequest {
    pub booking_id: Id,
}

/// One ordered tier, as stored in `bookings.lines`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub tier: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct BookingRow {
    id: i64,
    event_id: i64,
    user_id: i64,
    status: String,
    /// `expires_at > now()` by the database clock, the one clock every expiry check uses.
    live: bool,
    quantity: i32,
    lines: SqlJson<Vec<Line>>,
    total_cents: i64,
    expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    confirmed_at: Option<DateTime<Utc>>,
}

const BOOKING_COLUMNS: &str = "id, event_id, user_id, status, expires_at > now() AS live, \
                               quantity, lines, total_cents, expires_at, created_at, updated_at, \
                               confirmed_at";

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct TicketRef {
    #[serde(serialize_with = "serialize_db_id")]
    pub id: i64,
    pub tier: String,
}

fn serialize_db_id<S: serde::Serializer>(id: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingView {
    pub booking_id: Id,
    pub event_id: Id,
    pub user_id: Id,
    pub status: String,
    pub expires_at: DateTime<Utc>,
    pub total_cents: i64,
    pub lines: Vec<Line>,
    /// The tickets this booking holds or bought; empty once released.
    pub tickets: Vec<TicketRef>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    /// `<home region>:<LSN>` of the write, for read-your-writes on replicas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency_token: Option<String>,
}

impl BookingView {
    fn new(row: BookingRow, mut tickets: Vec<TicketRef>) -> ApiResult<BookingView> {
        tickets.sort_by_key(|t| t.id);
        // A lapsed hold is expired to the user even before the sweeper records it.
        let status = if row.status == "held" && !row.live {
            "expired".to_owned()
        } else {
            row.status
        };
        Ok(BookingView {
            booking_id: id_from_db(row.id)?,
            event_id: id_from_db(row.event_id)?,
            user_id: id_from_db(row.user_id)?,
            status,
            expires_at: row.expires_at,
            total_cents: row.total_cents,
            lines: row.lines.0,
            tickets,
            created_at: row.created_at,
            updated_at: row.updated_at,
            confirmed_at: row.confirmed_at,
            consistency_token: None,
        })
    }
}

/// Merges repeated tiers and checks quantities against the per-order maximum.
fn wanted_tiers(tickets: &[TierQuantity], max_per_order: i64) -> ApiResult<Vec<(String, i32)>> {
    if tickets.is_empty() {
        return Err(ApiError::Validation(
            "tickets must name at least one tier".into(),
        ));
    }
    let mut wanted: BTreeMap<&str, i64> = BTreeMap::new();
    for t in tickets {
        if t.quantity < 1 || t.quantity > max_per_order {
            return Err(ApiError::Validation(format!(
                "quantity for {:?} must be 1 to {max_per_order}, got {}",
                t.tier, t.quantity
            )));
        }
        *wanted.entry(t.tier.as_str()).or_default() += t.quantity;
    }
    let total: i64 = wanted.values().sum();
    if total > max_per_order {
        return Err(ApiError::Validation(format!(
            "at most {max_per_order} tickets per order, asked for {total}"
        )));
    }
    Ok(wanted
        .into_iter()
        .map(|(tier, q)| (tier.to_owned(), q as i32))
        .collect())
}

/// Where the claim takes tickets from. Lapsed holds are claimable the moment they lapse; they are
/// only tried when the available ones run short, which keeps the common claim on one index.
#[derive(Clone, Copy)]
enum ClaimSource {
    Available,
    LapsedHolds,
}

/// Takes up to `qty` tickets per tier with `FOR UPDATE SKIP LOCKED` (never a lock on the event
/// row) and marks them held by the booking, all in one statement.
pub const CLAIM_AVAILABLE: &str = "
    WITH wanted AS (SELECT * FROM unnest($2::text[], $3::int4[]) AS w(tier, qty)),
    claimed AS (
        SELECT c.id FROM wanted w CROSS JOIN LATERAL (
            SELECT t.id FROM tickets t
            WHERE t.event_id = $1 AND t.tier = w.tier AND t.status = 'available'
            ORDER BY t.id LIMIT w.qty
            FOR UPDATE SKIP LOCKED) c)
    UPDATE tickets t SET status = 'held', booking_id = $4, user_id = $5,
                         hold_expires_at = now() + make_interval(secs => $6), updated_at = now()
    FROM claimed WHERE t.id = claimed.id
    RETURNING t.id, t.tier";

const CLAIM_LAPSED: &str = "
    WITH wanted AS (SELECT * FROM unnest($2::text[], $3::int4[]) AS w(tier, qty)),
    claimed AS (
        SELECT c.id FROM wanted w CROSS JOIN LATERAL (
            SELECT t.id FROM tickets t
            WHERE t.event_id = $1 AND t.tier = w.tier AND t.status = 'held'
              AND t.hold_expires_at <= now()
            ORDER BY t.hold_expires_at LIMIT w.qty
            FOR UPDATE SKIP LOCKED) c)
    UPDATE tickets t SET status = 'held', booking_id = $4, user_id = $5,
                         hold_expires_at = now() + make_interval(secs => $6), updated_at = now()
    FROM claimed WHERE t.id = claimed.id
    RETURNING t.id, t.tier";

/// Test-only: the same claim without row locks or the guard trigger, so that concurrent
/// reserves overwrite each other's tickets. Exists to prove the race tests can see an oversell.
const CLAIM_UNLOCKED: &str = "
    WITH wanted AS (SELECT * FROM unnest($2::text[], $3::int4[]) AS w(tier, qty)),
    claimed AS (
        SELECT c.id FROM wanted w CROSS JOIN LATERAL (
            SELECT t.id FROM tickets t
            WHERE t.event_id = $1 AND t.tier = w.tier AND t.status = 'available'
            ORDER BY t.id LIMIT w.qty) c)
    UPDATE tickets t SET status = 'held', booking_id = $4, user_id = $5,
                         hold_expires_at = now() + make_interval(secs => $6), updated_at = now()
    FROM claimed WHERE t.id = claimed.id
    RETURNING t.id, t.tier";

#[allow(clippy::too_many_arguments)]
async fn claim(
    conn: &mut PgConnection,
    source: ClaimSource,
    unlocked: bool,
    event_id: i64,
    wanted: &[(String, i32)],
    booking_id: i64,
    user_id: i64,
    hold_seconds: i32,
) -> ApiResult<Vec<TicketRef>> {
    let sql = match (source, unlocked) {
        (ClaimSource::Available, false) => CLAIM_AVAILABLE,
        (ClaimSource::LapsedHolds, false) => CLAIM_LAPSED,
        (ClaimSource::Available, true) => CLAIM_UNLOCKED,
        (ClaimSource::LapsedHolds, true) => return Ok(Vec::new()),
    };
    let tiers: Vec<&str> = wanted.iter().map(|(t, _)| t.as_str()).collect();
    let quantities: Vec<i32> = wanted.iter().map(|(_, q)| *q).collect();
    Ok(sqlx::query_as(sql)
        .bind(event_id)
        .bind(&tiers)
        .bind(&quantities)
        .bind(booking_id)
        .bind(user_id)
        .bind(hold_seconds as f64)
        .fetch_all(conn)
        .await?)
}

/// What each tier still lacks after a claim.
fn shortfall(wanted: &[(String, i32)], claimed: &[TicketRef]) -> Vec<(String, i32)> {
    wanted
        .iter()
        .filter_map(|(tier, qty)| {
            let got = claimed.iter().filter(|t| &t.tier == tier).count() as i32;
            (got < *qty).then(|| (tier.clone(), qty - got))
        })
        .collect()
}

/// A reserve checked and priced, ready for the claim: what a batch is made of.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub event_id: i64,
    pub booking_id: Id,
    pub user_id: Id,
    pub hold_seconds: i32,
    pub wanted: Vec<(String, i32)>,
    pub lines: Vec<Line>,
    pub total_cents: i64,
    pub quantity: i32,
    pub idempotency_key: Option<String>,
}

/// A reserve's answer: the booking, and whether it answers an earlier request with the same
/// `Idempotency-Key` (then the booking is as it is now, with a fresh consistency token).
#[derive(Debug)]
pub struct Reserved {
    pub view: BookingView,
    pub replayed: bool,
}

/// Reserve: all tiers or nothing, on the home primary. Concurrent reserves of one event are
/// coalesced into one transaction (see `batching`), unless batching is off.
///
/// With an `Idempotency-Key`, the booking row is the key's record: it carries the key (unique
/// per user) and is written in the hold's own transaction, so a keyed reserve costs no commit
/// more than an unkeyed one; the generic record in `idempotency` costs two, which on the hot
/// path would undo group commit. A concurrent duplicate waits on the unique key and answers
/// with the first one's booking.
pub async fn reserve(
    node: &Arc<Node>,
    user: AuthUser,
    request: ReserveRequest,
    idempotency_key: Option<&str>,
) -> ApiResult<Reserved> {
    let prepared = prepare(node, user, request, idempotency_key).await?;
    if node.config.booking.batch_reserves && !node.config.booking.unsafe_disable_row_locks {
        node.batcher.submit(node, prepared).await
    } else {
        reserve_one(node, prepared).await
    }
}

/// Validation, the event's state and prices, and the booking's id: everything but the claim.
async fn prepare(
    node: &Node,
    user: AuthUser,
    request: ReserveRequest,
    idempotency_key: Option<&str>,
) -> ApiResult<Prepared> {
    let event_id = request.event_id;
    ensure_home(node, event_id)?;
    let event = node.terms.get(node, event_id).await?;
    if event.status != "on_sale" {
        return Err(ApiError::EventNotOnSale(event_id.to_string()));
    }
    let wanted = wanted_tiers(&request.tickets, event.max_per_order.into())?;
    let prices = &event.prices.0;
    let mut lines = Vec::with_capacity(wanted.len());
    for (tier, quantity) in &wanted {
        let Some((_, price)) = prices.iter().find(|(name, _)| name == tier) else {
            let known: Vec<(String,)> = prices.iter().map(|(n, _)| (n.clone(),)).collect();
            return Err(unknown_tier(tier, &known));
        };
        lines.push(Line {
            tier: tier.clone(),
            quantity: *quantity,
            unit_price_cents: *price,
        });
    }
    let total_cents: i64 = lines
        .iter()
        .map(|l| l.unit_price_cents * i64::from(l.quantity))
        .sum();
    Ok(Prepared {
        event_id: event.id,
        booking_id: node.ids.next()?,
        user_id: user.id,
        hold_seconds: event.hold_seconds,
        quantity: wanted.iter().map(|(_, q)| q).sum(),
        wanted,
        lines,
        total_cents,
        idempotency_key: idempotency_key.map(str::to_owned),
    })
}

/// One reserve in its own transaction, on one connection.
pub(crate) async fn reserve_one(node: &Node, prepared: Prepared) -> ApiResult<Reserved> {
    let mut conn = node.pool.acquire().await?;
    if let Some(key) = &prepared.idempotency_key {
        let key_use = crate::idempotency::key_use(&mut conn, prepared.user_id, key).await?;
        if let Some(earlier) = earlier_answer(node, &mut conn, &prepared, key_use).await? {
            return Ok(earlier);
        }
    }
    let Prepared {
        event_id,
        booking_id,
        user_id,
        hold_seconds,
        wanted,
        lines,
        total_cents,
        quantity,
        idempotency_key,
    } = prepared;
    let idempotency_key = idempotency_key.as_deref();
    let unlocked = node.config.booking.unsafe_disable_row_locks;
    let mut tx = conn.begin().await?;
    if unlocked {
        sqlx::query("SET LOCAL session_replication_role = replica")
            .execute(&mut *tx)
            .await?;
    }
    let mut tickets = claim(
        &mut tx,
        ClaimSource::Available,
        unlocked,
        event_id,
        &wanted,
        booking_id.as_i64(),
        user_id.as_i64(),
        hold_seconds,
    )
    .await?;
    let missing = shortfall(&wanted, &tickets);
    if !missing.is_empty() {
        tickets.extend(
            claim(
                &mut tx,
                ClaimSource::LapsedHolds,
                unlocked,
                event_id,
                &missing,
                booking_id.as_i64(),
                user_id.as_i64(),
                hold_seconds,
            )
            .await?,
        );
    }
    let missing = shortfall(&wanted, &tickets);
    if !missing.is_empty() {
        tx.rollback().await?;
        node.metrics.booking_outcome("sold_out");
        let available = events::available_by_tier(&mut conn, event_id).await?;
        let message = missing
            .iter()
            .map(|(tier, short)| {
                let want = wanted
                    .iter()
                    .find(|(t, _)| t == tier)
                    .map_or(0, |(_, q)| *q);
                format!("{tier} wanted {want}, {} left", want - short)
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Err(ApiError::SoldOut { message, available });
    }
    let lines = serde_json::to_value(&lines).map_err(|e| ApiError::Internal(e.into()))?;
    let inserted = insert_bookings(
        &mut tx,
        event_id,
        &[booking_id.as_i64()],
        &[user_id.as_i64()],
        &[quantity],
        &[lines],
        &[total_cents],
        &[f64::from(hold_seconds)],
        &[idempotency_key.map(str::to_owned)],
    )
    .await
    .map(|mut rows| rows.remove(&booking_id.as_i64()));
    let row = match inserted {
        Ok(Some(row)) => row,
        Ok(None) => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "booking insert returned nothing"
            )))
        }
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() && idempotency_key.is_some() => {
            // The same key already made a booking whose recorded response was lost (a crash
            // between commit and record): answer with that booking, book nothing new.
            tx.rollback().await?;
            let key = idempotency_key.unwrap_or_default();
            let view = find_by_idempotency_key(&mut conn, user_id, key).await?;
            return Ok(Reserved {
                view,
                replayed: true,
            });
        }
        Err(e) => return Err(e.into()),
    };
    tx.commit().await?;
    node.metrics.tickets_held.inc_by(tickets.len() as u64);
    node.metrics.booking_outcome("held");
    let mut view = BookingView::new(row, tickets)?;
    view.consistency_token = Some(after_write(node, &mut conn, view.event_id.as_i64()).await?);
    Ok(Reserved {
        view,
        replayed: false,
    })
}

/// Inserts held bookings, one per element of the (equally long) slices, in one statement. Each
/// booking's `ticket_ids` are the tickets already marked held for it in this transaction.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn insert_bookings(
    conn: &mut PgConnection,
    event_id: i64,
    ids: &[i64],
    users: &[i64],
    quantities: &[i32],
    lines: &[serde_json::Value],
    totals: &[i64],
    hold_seconds: &[f64],
    idempotency_keys: &[Option<String>],
) -> Result<std::collections::HashMap<i64, BookingRow>, sqlx::Error> {
    let rows: Vec<BookingRow> = sqlx::query_as(&format!(
        "INSERT INTO bookings (id, event_id, user_id, status, quantity, lines, ticket_ids,
                               total_cents, expires_at, idempotency_key)
         SELECT b.id, $1, b.holder, 'held', b.quantity, b.lines,
                ARRAY(SELECT t.id FROM tickets t WHERE t.booking_id = b.id ORDER BY t.id),
                b.total, now() + make_interval(secs => b.hold), b.key
         FROM unnest($2::bigint[], $3::bigint[], $4::int4[], $5::jsonb[], $6::bigint[],
                     $7::float8[], $8::text[])
              AS b(id, holder, quantity, lines, total, hold, key)
         RETURNING {BOOKING_COLUMNS}"
    ))
    .bind(event_id)
    .bind(ids)
    .bind(users)
    .bind(quantities)
    .bind(lines)
    .bind(totals)
    .bind(hold_seconds)
    .bind(idempotency_keys)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|row| (row.id, row)).collect())
}

/// A booking row and its tickets as the API shows them.
pub(crate) fn view(row: BookingRow, tickets: Vec<TicketRef>) -> ApiResult<BookingView> {
    BookingView::new(row, tickets)
}

/// The booking `user` made with Idempotency-Key `key`, if any.
pub(crate) async fn reserved_with_key(
    conn: &mut PgConnection,
    user: Id,
    key: &str,
) -> ApiResult<Option<BookingRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {BOOKING_COLUMNS} FROM bookings WHERE user_id = $1 AND idempotency_key = $2"
    ))
    .bind(user.as_i64())
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?)
}

async fn find_by_idempotency_key(
    conn: &mut PgConnection,
    user: Id,
    key: &str,
) -> ApiResult<BookingView> {
    let row = reserved_with_key(conn, user, key)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("keyed booking vanished")))?;
    let tickets = tickets_of(conn, &[row.id]).await?;
    BookingView::new(row, tickets)
}

/// Whether `row` is what `prepared` asks for: same event, same tiers and quantities.
fn same_request(row: &BookingRow, prepared: &Prepared) -> bool {
    let asked: BTreeMap<&str, i32> = prepared
        .wanted
        .iter()
        .map(|(tier, quantity)| (tier.as_str(), *quantity))
        .collect();
    let booked: BTreeMap<&str, i32> = row
        .lines
        .iter()
        .map(|l| (l.tier.as_str(), l.quantity))
        .collect();
    row.event_id == prepared.event_id && asked == booked
}

/// What an earlier use of `prepared`'s key answers: `None` when the key is new (the reserve
/// runs), the earlier booking again, or `422` when the key was used for something else.
pub(crate) async fn earlier_answer(
    node: &Node,
    conn: &mut PgConnection,
    prepared: &Prepared,
    key_use: KeyUse,
) -> ApiResult<Option<Reserved>> {
    match key_use {
        KeyUse::Unused => Ok(None),
        KeyUse::Recorded => Err(ApiError::IdempotencyKeyReused),
        KeyUse::Reserve(id) => {
            let row = find(conn, Id::try_from(id)?).await?;
            if !same_request(&row, prepared) {
                return Err(ApiError::IdempotencyKeyReused);
            }
            let tickets = tickets_of(conn, &[row.id]).await?;
            let mut view = BookingView::new(row, tickets)?;
            view.consistency_token = Some(consistency_token(node, conn).await?);
            Ok(Some(Reserved {
                view,
                replayed: true,
            }))
        }
    }
}

/// A position in the home shard's WAL at or past our commit record: a replica that has replayed
/// it shows everything this write did. The insert position, not `pg_current_wal_lsn()`: with
/// asynchronous commit the write position can still be short of the commit record.
/// After a write to `event_id`: drop this node's cached reads of it and return the token.
pub(crate) async fn after_write(
    node: &Node,
    conn: &mut PgConnection,
    event_id: i64,
) -> ApiResult<String> {
    node.cache
        .invalidate_event(event_id, node.region_id.get())
        .await;
    consistency_token(node, conn).await
}

async fn consistency_token(node: &Node, conn: &mut PgConnection) -> ApiResult<String> {
    let (lsn,): (String,) = sqlx::query_as("SELECT pg_current_wal_insert_lsn()::text")
        .fetch_one(conn)
        .await?;
    Ok(format!("{}:{lsn}", node.config.region))
}

async fn find(conn: &mut PgConnection, id: Id) -> ApiResult<BookingRow> {
    sqlx::query_as(&format!(
        "SELECT {BOOKING_COLUMNS} FROM bookings WHERE id = $1"
    ))
    .bind(id.as_i64())
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("booking {id}")))
}

async fn tickets_of(conn: &mut PgConnection, booking_ids: &[i64]) -> ApiResult<Vec<TicketRef>> {
    Ok(
        sqlx::query_as("SELECT id, tier FROM tickets WHERE booking_id = ANY($1) ORDER BY id")
            .bind(booking_ids)
            .fetch_all(conn)
            .await?,
    )
}

/// A held booking's owner (or an admin) may act on it while its hold is live.
fn ensure_live_hold(row: &BookingRow, caller: AuthUser) -> ApiResult<()> {
    caller.ensure_can_act_for(id_from_db(row.user_id)?, "booking")?;
    if row.status == "held" && !row.live {
        return Err(ApiError::HoldExpired(row.id.to_string()));
    }
    if row.status != "held" {
        return Err(ApiError::NotHeld {
            booking: row.id.to_string(),
            status: row.status.clone(),
        });
    }
    Ok(())
}

/// Confirm: check the hold, pay with no connection or lock held, then one guarded transaction
/// moves exactly this booking's held, unexpired tickets to sold.
pub async fn confirm(
    node: &Node,
    caller: AuthUser,
    request: ConfirmRequest,
) -> ApiResult<BookingView> {
    let booking_id = request.booking_id;
    ensure_home(node, booking_id)?;
    let row = {
        let mut conn = node.pool.acquire().await?;
        find(&mut conn, booking_id).await?
    };
    if let Err(e) = ensure_live_hold(&row, caller) {
        if matches!(e, ApiError::HoldExpired(_)) {
            let mut conn = node.pool.acquire().await?;
            release(node, &mut conn, booking_id, "expired").await?;
        }
        return Err(e);
    }

    let outcome = payment::charge(
        booking_id,
        row.total_cents,
        request.payment_simulation,
        Duration::from_millis(node.config.booking.payment_delay_ms),
    )
    .await;

    let mut conn = node.pool.acquire().await?;
    if outcome == PaymentOutcome::Declined {
        release(node, &mut conn, booking_id, "payment_failed").await?;
        node.metrics.booking_outcome("payment_failed");
        let row = find(&mut conn, booking_id).await?;
        let mut view = BookingView::new(row, Vec::new())?;
        view.consistency_token = Some(after_write(node, &mut conn, view.event_id.as_i64()).await?);
        return Ok(view);
    }

    let mut tx = conn.begin().await?;
    let sold: Vec<TicketRef> = sqlx::query_as(
        "UPDATE tickets SET status = 'sold', sold_at = now(), updated_at = now()
         WHERE booking_id = $1 AND status = 'held' AND hold_expires_at > now()
         RETURNING id, tier",
    )
    .bind(booking_id.as_i64())
    .fetch_all(&mut *tx)
    .await?;
    let confirmed: Option<BookingRow> = if sold.len() == row.quantity as usize {
        sqlx::query_as(&format!(
            "UPDATE bookings SET status = 'confirmed', confirmed_at = now(), updated_at = now()
             WHERE id = $1 AND status = 'held'
             RETURNING {BOOKING_COLUMNS}"
        ))
        .bind(booking_id.as_i64())
        .fetch_optional(&mut *tx)
        .await?
    } else {
        None
    };
    let Some(confirmed) = confirmed else {
        // The hold lapsed (or was cancelled) while the payment ran: sell nothing, give the
        // money back, and tidy what is left of the hold.
        tx.rollback().await?;
        payment::void(booking_id, row.total_cents).await;
        node.metrics.booking_outcome("hold_expired");
        let current = find(&mut conn, booking_id).await?;
        if current.status == "held" {
            release(node, &mut conn, booking_id, "expired").await?;
            return Err(ApiError::HoldExpired(booking_id.to_string()));
        }
        return Err(ApiError::NotHeld {
            booking: booking_id.to_string(),
            status: current.status,
        });
    };
    tx.commit().await?;
    node.metrics.tickets_sold.inc_by(sold.len() as u64);
    node.metrics.booking_outcome("confirmed");
    let mut view = BookingView::new(confirmed, sold)?;
    view.consistency_token = Some(after_write(node, &mut conn, view.event_id.as_i64()).await?);
    Ok(view)
}

/// Cancel: the owner gives a live hold back; its tickets are bookable at once.
pub async fn cancel(
    node: &Node,
    caller: AuthUser,
    request: CancelRequest,
) -> ApiResult<BookingView> {
    let booking_id = request.booking_id;
    ensure_home(node, booking_id)?;
    let mut conn = node.pool.acquire().await?;
    let row = find(&mut conn, booking_id).await?;
    caller.ensure_can_act_for(id_from_db(row.user_id)?, "booking")?;
    if row.status != "held" {
        return Err(ApiError::NotHeld {
            booking: booking_id.to_string(),
            status: row.status,
        });
    }
    // A lapsed hold is recorded as expired, not released: nothing was given back by the user.
    let new_status = if row.live { "released" } else { "expired" };
    if !release(node, &mut conn, booking_id, new_status).await? {
        let current = find(&mut conn, booking_id).await?;
        return Err(ApiError::NotHeld {
            booking: booking_id.to_string(),
            status: current.status,
        });
    }
    node.metrics.booking_outcome(new_status);
    let row = find(&mut conn, booking_id).await?;
    let mut view = BookingView::new(row, Vec::new())?;
    view.consistency_token = Some(after_write(node, &mut conn, view.event_id.as_i64()).await?);
    Ok(view)
}

/// Ends a held booking with `new_status` and frees the tickets it still holds, in one
/// transaction. False if the booking was no longer held.
async fn release(
    node: &Node,
    conn: &mut PgConnection,
    booking_id: Id,
    new_status: &str,
) -> ApiResult<bool> {
    let mut tx = conn.begin().await?;
    let ended = sqlx::query(
        "UPDATE bookings SET status = $2, updated_at = now() WHERE id = $1 AND status = 'held'",
    )
    .bind(booking_id.as_i64())
    .bind(new_status)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if ended == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    let freed = sqlx::query(
        "UPDATE tickets SET status = 'available', booking_id = NULL, user_id = NULL,
                            hold_expires_at = NULL, updated_at = now()
         WHERE booking_id = $1 AND status = 'held'",
    )
    .bind(booking_id.as_i64())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    node.metrics.tickets_released.inc_by(freed);
    Ok(true)
}

/// The sweeper's step: ends up to `batch` lapsed holds as `expired` and frees their tickets,
/// skipping any a request is working on. Returns how many bookings it ended.
pub async fn expire_lapsed(node: &Node, batch: i64) -> ApiResult<u64> {
    let (bookings, tickets): (i64, i64) = sqlx::query_as(
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
             RETURNING b.id)
         SELECT (SELECT count(*) FROM ended), (SELECT count(*) FROM freed)",
    )
    .bind(batch)
    .fetch_one(&node.pool)
    .await?;
    node.metrics.tickets_released.inc_by(tickets as u64);
    Ok(bookings as u64)
}

/// One booking, for its owner or an admin, from this region's copy of its shard.
pub async fn get(
    node: &Node,
    caller: AuthUser,
    id: Id,
    after: &ReadAfter,
) -> ApiResult<ReadAnswer> {
    let source = node.read_source(node.shard_of(id)?, after).await?;
    let mut conn = source.pool.acquire().await?;
    let row = find(&mut conn, id).await?;
    caller.ensure_can_act_for(id_from_db(row.user_id)?, "booking")?;
    let tickets = tickets_of(&mut conn, &[row.id]).await?;
    ReadAnswer::uncached(&BookingView::new(row, tickets)?, &source)
}

/// A user's bookings, newest first, gathered in parallel from every shard's replica in this
/// region (bookings live in their event's home shard). A token makes the shard it names wait
/// for, or skip to, data at least that new.
pub async fn for_user(
    node: &Node,
    caller: AuthUser,
    user: Id,
    limit: i64,
    after: &ReadAfter,
) -> ApiResult<ReadAnswer> {
    caller.ensure_can_act_for(user, "booking list")?;
    let per_shard = node.readers.shards().map(|shard| async move {
        let loaded = async {
            let source = node.read_source(shard, after).await?;
            let mut conn = source.pool.acquire().await?;
            let views = bookings_of_user(&mut conn, user, limit).await?;
            Ok::<_, ApiError>((views, source))
        }
        .await;
        (shard.name.clone(), loaded)
    });
    let mut all: Vec<BookingView> = Vec::new();
    let mut answer = ReadAnswer::gathering(None);
    for (shard, loaded) in futures::future::join_all(per_shard).await {
        match loaded {
            Ok((views, source)) => {
                all.extend(views);
                answer.add_shard(shard, source.source, source.data_age_ms, source.stale);
            }
            // A token we could not honour must fail the read, not quietly drop the booking.
            Err(error) if after.lsn_for(&shard).is_some() => return Err(error),
            Err(error) => {
                tracing::warn!(%shard, %error, "bookings: shard unreadable");
                answer.missing.push(shard);
            }
        }
    }
    if answer.sources.is_empty() {
        return Err(ApiError::Unavailable);
    }
    all.sort_by_key(|b| std::cmp::Reverse(b.booking_id));
    all.truncate(limit as usize);
    answer.body = serde_json::to_vec(&all)
        .map_err(|e| ApiError::Internal(e.into()))?
        .into();
    Ok(answer)
}

async fn bookings_of_user(
    conn: &mut PgConnection,
    user: Id,
    limit: i64,
) -> ApiResult<Vec<BookingView>> {
    let rows: Vec<BookingRow> = sqlx::query_as(&format!(
        "SELECT {BOOKING_COLUMNS} FROM bookings WHERE user_id = $1 ORDER BY id DESC LIMIT $2"
    ))
    .bind(user.as_i64())
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut by_booking: BTreeMap<i64, Vec<TicketRef>> = BTreeMap::new();
    if !ids.is_empty() {
        let tickets: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT booking_id, id, tier FROM tickets WHERE booking_id = ANY($1) ORDER BY id",
        )
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        for (booking, id, tier) in tickets {
            by_booking
                .entry(booking)
                .or_default()
                .push(TicketRef { id, tier });
        }
    }
    rows.into_iter()
        .map(|row| {
            let held = by_booking.remove(&row.id).unwrap_or_default();
            BookingView::new(row, held)
        })
        .collect()
}
