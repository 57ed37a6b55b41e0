//! Tickets: bulk creation on the home primary, availability in the seed's shape, and one
//! ticket's lookup, read in this region.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use id_gen::Id;
use serde::{Deserialize, Serialize};
use sqlx::Connection;
use utoipa::ToSchema;

use crate::catalog::events::TierView;
use crate::catalog::store;
use crate::error::{ApiError, ApiResult};
use crate::ids::{ensure_home, id_from_db};
use crate::reads::answer::{self, ReadAnswer};
use crate::reads::cache::{CacheKey, Cached};
use crate::reads::consistency::{Lsn, ReadAfter};
use crate::state::Node;

/// Most tickets one request may create; bigger on-sales take several requests.
pub const MAX_TICKETS_PER_REQUEST: i64 = 1_000_000;

/// `{eventId, tiers: {"VIP": 100}}`, or the seed's `{eventId, vipCount, frontRowCount, gaCount}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"eventId": "386164735021809669", "tiers": {"VIP": 100, "GA": 5000}}))]
pub struct CreateTickets {
    pub event_id: Id,
    /// Tickets to add per tier (a tier of the event, by name); give this or the seed's counts.
    pub tiers: Option<BTreeMap<String, i64>>,
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub vip_count: Option<i64>,
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub front_row_count: Option<i64>,
    #[schema(minimum = 0, maximum = 1_000_000)]
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

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedTickets {
    pub event_id: Id,
    pub created: BTreeMap<String, i64>,
    pub tiers: Vec<TierView>,
    pub total_available: i64,
    /// `<home region>:<LSN>` of the write, for read-your-writes on replicas.
    pub consistency_token: String,
}

/// Creates the tickets in one statement per tier (UNNEST over minted ids), in one transaction;
/// the event's cached views are dropped, and the answer carries the write's consistency token.
pub async fn create(node: &Node, request: CreateTickets) -> ApiResult<CreatedTickets> {
    let counts = request.counts()?;
    let event_id = request.event_id;
    ensure_home(&node.config, event_id)?;
    let terms = node.terms.get(&node.pool, event_id).await?;
    for (tier, _) in &counts {
        terms.price_of(tier)?;
    }
    let mut conn = node.pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let mut created = BTreeMap::new();
    for (tier, count) in counts {
        let ids = node.ids.next_many(count as usize)?;
        store::insert_tickets(&mut tx, terms.id, &tier, &ids).await?;
        created.insert(tier, count);
    }
    let tiers: Vec<TierView> = store::availability(&mut *tx, &[terms.id])
        .await?
        .iter()
        .map(TierView::from_row)
        .collect();
    tx.commit().await?;
    let consistency_token = node.listing_written(&mut conn, terms.id).await?;
    Ok(CreatedTickets {
        event_id,
        created,
        total_available: tiers.iter().map(|t| t.available).sum(),
        tiers,
        consistency_token,
    })
}

/// Tickets left per tier.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Availability {
    pub event_id: Id,
    pub tiers: Vec<TierView>,
    pub total_available: i64,
}

/// Tickets left per tier, in the seed's shape, from this region's copy of the shard (cached).
pub async fn availability(
    node: &Arc<Node>,
    event_id: Id,
    after: &ReadAfter,
) -> ApiResult<ReadAnswer> {
    let token = after.lsn_for(&node.shard_of(event_id)?.name);
    let loader = Arc::clone(node);
    let (entry, lookup) = node
        .cache
        .get_or_load(
            CacheKey::Availability(event_id.as_i64()),
            token,
            move || load_availability(loader, event_id, token),
        )
        .await?;
    Ok(ReadAnswer::from_cached(&entry, lookup))
}

/// Reads one event's availability for the cache, at least as new as `token`.
async fn load_availability(node: Arc<Node>, event_id: Id, token: Option<Lsn>) -> ApiResult<Cached> {
    let source = node.readers.source(node.shard_of(event_id)?, token).await?;
    let (mut conn, lsn) = answer::snapshot(&source).await?;
    let event = store::find_event(&mut conn, event_id).await?;
    let tiers: Vec<TierView> = store::availability(&mut *conn, &[event.id])
        .await?
        .iter()
        .map(TierView::from_row)
        .collect();
    let view = Availability {
        event_id,
        total_available: tiers.iter().map(|t| t.available).sum(),
        tiers,
    };
    answer::entry(&view, &source, lsn)
}

/// A ticket as the public sees it: no holder, and a lapsed hold shows as available.
#[derive(Debug, Serialize, ToSchema)]
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
    let row = store::find_ticket(&source.pool, id).await?;
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
