//! Tickets: bulk creation, availability in the seed's shape, and single-ticket lookup.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use id_gen::Id;
use serde::{Deserialize, Serialize};

use crate::app::Node;
use crate::cache::CacheKey;
use crate::consistency::ReadAfter;
use crate::error::{ApiError, ApiResult};
use crate::events::{self, ensure_home, id_from_db, TierView};
use crate::reads::{self, ReadAnswer};

/// Most tickets one request may create; bigger on-sales take several requests.
pub const MAX_TICKETS_PER_REQUEST: i64 = 1_000_000;

/// `{eventId, tiers: {"VIP": 100}}`, or the seed's `{eventId, vipCount, frontRowCount, gaCount}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTickets {
    pub event_id: Id,
    pub tiers: Option<BTreeMap<String, i64>>,
    pub vip_count: Option<i64>,
    pub front_row_count: Option<i64>,
    pub ga_count: Option<i64>,
}

impl CreateTickets {
    /// Both shapes as one tier -> count list, checked.
    fn counts(&self) -> ApiResult<Vec<(String, i64)>> {
        let seed_shape = [
            ("VIP", self.vip_count),
            ("Front Row", self.front_row_count),
            ("GA", self.ga_count),
        ];
        let uses_seed_shape = seed_shape.iter().any(|(_, c)| c.is_some());
        let counts: Vec<(String, i64)> = match (&self.tiers, uses_seed_shape) {
            (Some(_), true) => {
                return Err(ApiError::Validation(
                    "give either tiers or vipCount/frontRowCount/gaCount, not both".into(),
                ))
            }
            (None, false) => {
                return Err(ApiError::Validation(
                    "tiers is required, e.g. {\"VIP\": 100, \"GA\": 5000}".into(),
                ))
            }
            (Some(tiers), false) => tiers.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            (None, true) => seed_shape
                .iter()
                .filter_map(|(name, count)| count.map(|c| (name.to_string(), c)))
                .collect(),
        };
        let mut total: i64 = 0;
        for (tier, count) in &counts {
            if !(0..=MAX_TICKETS_PER_REQUEST).contains(count) {
                return Err(ApiError::Validation(format!(
                    "count for {tier:?} must be 0 to {MAX_TICKETS_PER_REQUEST}"
                )));
            }
            total += count;
        }
        if total == 0 {
            return Err(ApiError::Validation("no tickets to create".into()));
        }
        if total > MAX_TICKETS_PER_REQUEST {
            return Err(ApiError::Validation(format!(
                "at most {MAX_TICKETS_PER_REQUEST} tickets per request"
            )));
        }
        Ok(counts.into_iter().filter(|(_, c)| *c > 0).collect())
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedTickets {
    pub event_id: Id,
    pub created: BTreeMap<String, i64>,
    pub tiers: Vec<TierView>,
    pub total_available: i64,
}

/// Creates the tickets in one statement per tier (UNNEST over minted ids), in one transaction.
pub async fn create(node: &Node, request: CreateTickets) -> ApiResult<CreatedTickets> {
    let counts = request.counts()?;
    let event_id = request.event_id;
    ensure_home(node, event_id)?;
    let mut tx = node.pool.begin().await?;
    let event = events::find(&mut tx, event_id).await?;
    let known: Vec<(String,)> = sqlx::query_as("SELECT name FROM tiers WHERE event_id = $1")
        .bind(event.id)
        .fetch_all(&mut *tx)
        .await?;
    for (tier, _) in &counts {
        if !known.iter().any(|(k,)| k == tier) {
            return Err(unknown_tier(tier, &known));
        }
    }
    let mut created = BTreeMap::new();
    for (tier, count) in counts {
        let ids = node.ids.next_many(count as usize)?;
        sqlx::query(
            "INSERT INTO tickets (id, event_id, tier)
             SELECT u.id, $2, $3 FROM unnest($1::bigint[]) AS u(id)",
        )
        .bind(&ids)
        .bind(event.id)
        .bind(&tier)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE tiers SET ticket_count = ticket_count + $3 WHERE event_id = $1 AND name = $2",
        )
        .bind(event.id)
        .bind(&tier)
        .bind(count)
        .execute(&mut *tx)
        .await?;
        created.insert(tier, count);
    }
    let tiers: Vec<TierView> = events::availability(&mut *tx, &[event.id])
        .await?
        .iter()
        .map(TierView::from_row)
        .collect();
    tx.commit().await?;
    node.cache
        .invalidate_event(event.id, node.region_id.get())
        .await;
    Ok(CreatedTickets {
        event_id,
        created,
        total_available: tiers.iter().map(|t| t.available).sum(),
        tiers,
    })
}

pub fn unknown_tier(tier: &str, known: &[(String,)]) -> ApiError {
    let names: Vec<&str> = known.iter().map(|(k,)| k.as_str()).collect();
    ApiError::Validation(format!(
        "unknown tier {tier:?}; this event has {}",
        names.join(", ")
    ))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Availability {
    pub event_id: Id,
    pub tiers: Vec<TierView>,
    pub total_available: i64,
}

/// Tickets left per tier, in the seed's shape, from this region's copy of the shard (cached).
pub async fn availability(node: &Node, event_id: Id, after: &ReadAfter) -> ApiResult<ReadAnswer> {
    let shard = node.shard_of(event_id)?;
    let token = after.lsn_for(&shard.name);
    let (entry, lookup) = node
        .cache
        .get_or_load(CacheKey::Availability(event_id.as_i64()), token, || async {
            let source = node.read_source(shard, after).await?;
            let (mut conn, lsn) = reads::snapshot(&source).await?;
            let event = events::find(&mut conn, event_id).await?;
            let tiers: Vec<TierView> = events::availability(&mut *conn, &[event.id])
                .await?
                .iter()
                .map(TierView::from_row)
                .collect();
            let view = Availability {
                event_id,
                total_available: tiers.iter().map(|t| t.available).sum(),
                tiers,
            };
            reads::entry(&view, &source, lsn)
        })
        .await?;
    Ok(ReadAnswer::from_cached(&entry, lookup))
}

#[derive(Debug, sqlx::FromRow)]
struct TicketRow {
    id: i64,
    event_id: i64,
    tier: String,
    status: String,
    lapsed_hold: bool,
    price_cents: i64,
    sold_at: Option<DateTime<Utc>>,
}

/// A ticket as the public sees it: no holder, and a lapsed hold shows as available.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketView {
    pub id: Id,
    pub event_id: Id,
    pub tier: String,
    pub status: String,
    pub price_cents: i64,
    pub sold_at: Option<DateTime<Utc>>,
}

pub async fn get(node: &Node, id: Id, after: &ReadAfter) -> ApiResult<ReadAnswer> {
    let source = node.read_source(node.shard_of(id)?, after).await?;
    let row: TicketRow = sqlx::query_as(
        "SELECT t.id, t.event_id, t.tier, t.status,
                (t.status = 'held' AND t.hold_expires_at <= now()) AS lapsed_hold,
                tr.price_cents, t.sold_at
         FROM tickets t JOIN tiers tr ON tr.event_id = t.event_id AND tr.name = t.tier
         WHERE t.id = $1",
    )
    .bind(id.as_i64())
    .fetch_optional(&source.pool)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("ticket {id}")))?;
    let view = TicketView {
        id: id_from_db(row.id)?,
        event_id: id_from_db(row.event_id)?,
        tier: row.tier,
        status: if row.lapsed_hold {
            "available".into()
        } else {
            row.status
        },
        price_cents: row.price_cents,
        sold_at: row.sold_at,
    };
    ReadAnswer::uncached(&view, &source)
}
