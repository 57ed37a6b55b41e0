//! Events and their tiers: creation, lookup, and availability per tier. All event SQL is here.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use id_gen::Id;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};

use crate::app::Node;
use crate::cache::{CacheKey, Lookup};
use crate::consistency::ReadAfter;
use crate::error::{ApiError, ApiResult};
use crate::extract::text;
use crate::reads::{self, ReadAnswer};

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewEvent {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub venue: String,
    pub starts_at: DateTime<Utc>,
    pub home_region: String,
    pub tiers: Vec<NewTier>,
    pub hold_seconds: Option<i64>,
    pub max_per_order: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewTier {
    pub name: String,
    pub price_cents: i64,
}

/// The largest tier price we accept: ten million dollars.
const MAX_PRICE_CENTS: i64 = 1_000_000_000;
const MAX_TIERS: usize = 20;

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
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TierAvailability {
    pub event_id: i64,
    pub name: String,
    pub price_cents: i64,
    pub ticket_count: i64,
    pub available: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TierView {
    pub name: String,
    pub price_cents: i64,
    /// Price in currency units, as the seed API showed it.
    pub price: f64,
    pub available: i64,
    pub total: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub id: Id,
    pub name: String,
    pub description: String,
    pub venue: String,
    pub starts_at: DateTime<Utc>,
    pub home_region: String,
    pub status: String,
    pub hold_seconds: i32,
    pub max_per_order: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub tiers: Vec<TierView>,
    pub total_available: i64,
}

impl TierView {
    pub fn from_row(row: &TierAvailability) -> TierView {
        TierView {
            name: row.name.clone(),
            price_cents: row.price_cents,
            price: row.price_cents as f64 / 100.0,
            available: row.available,
            total: row.ticket_count,
        }
    }
}

impl EventView {
    fn new(row: EventRow, tiers: &[TierAvailability]) -> ApiResult<EventView> {
        let tiers: Vec<TierView> = tiers
            .iter()
            .filter(|t| t.event_id == row.id)
            .map(TierView::from_row)
            .collect();
        Ok(EventView {
            id: id_from_db(row.id)?,
            total_available: tiers.iter().map(|t| t.available).sum(),
            name: row.name,
            description: row.description,
            venue: row.venue,
            starts_at: row.starts_at,
            home_region: row.home_region,
            status: row.status,
            hold_seconds: row.hold_seconds,
            max_per_order: row.max_per_order,
            created_at: row.created_at,
            updated_at: row.updated_at,
            tiers,
        })
    }
}

pub fn id_from_db(raw: i64) -> ApiResult<Id> {
    Id::try_from(raw).map_err(|e| ApiError::Internal(anyhow::anyhow!("bad id {raw} in db: {e}")))
}

/// Writes for an event (or a booking, whose id is minted in the event's home region) run only
/// in the region its id names.
pub fn ensure_home(node: &Node, id: Id) -> ApiResult<()> {
    let home = id.region().get();
    if home == node.region_id.get() {
        return Ok(());
    }
    match node.config.region_name(home) {
        Some(name) => Err(ApiError::Misdirected {
            home: name.to_owned(),
            local: node.config.region.clone(),
        }),
        // Id 0, or an id minted by no region of this deployment: not an id of ours at all.
        None => Err(ApiError::InvalidId(format!(
            "{id} is not an id of this deployment (it names no known region)"
        ))),
    }
}

fn validate(node: &Node, new: &NewEvent) -> ApiResult<()> {
    let bad = |m: String| Err(ApiError::Validation(m));
    text("name", &new.name, 1, 200, false)?;
    text("venue", &new.venue, 1, 200, false)?;
    text("description", &new.description, 0, 5000, true)?;
    if new.starts_at <= Utc::now() {
        return bad("startsAt must be in the future".into());
    }
    if node.config.region_id(&new.home_region).is_none() {
        let known: Vec<&str> = node
            .config
            .regions
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        return bad(format!(
            "homeRegion {:?} is not a region; regions are {}",
            new.home_region,
            known.join(", ")
        ));
    }
    if new.tiers.is_empty() || new.tiers.len() > MAX_TIERS {
        return bad(format!("tiers must hold 1 to {MAX_TIERS} tiers"));
    }
    let mut seen = HashSet::new();
    for tier in &new.tiers {
        let tier_name = text("tier name", &tier.name, 1, 50, false)?;
        if !seen.insert(tier_name) {
            return bad(format!("tier {tier_name:?} appears twice"));
        }
        if !(0..=MAX_PRICE_CENTS).contains(&tier.price_cents) {
            return bad(format!(
                "priceCents of {tier_name:?} must be 0 to {MAX_PRICE_CENTS}"
            ));
        }
    }
    if let Some(h) = new.hold_seconds {
        if !(1..=3600).contains(&h) {
            return bad("holdSeconds must be 1 to 3600".into());
        }
    }
    if let Some(m) = new.max_per_order {
        if !(1..=100).contains(&m) {
            return bad("maxPerOrder must be 1 to 100".into());
        }
    }
    Ok(())
}

pub async fn create(node: &Node, new: NewEvent) -> ApiResult<EventView> {
    validate(node, &new)?;
    if new.home_region != node.config.region {
        return Err(ApiError::Misdirected {
            home: new.home_region,
            local: node.config.region.clone(),
        });
    }
    let id = node.ids.next()?;
    let hold_seconds = new
        .hold_seconds
        .unwrap_or(node.config.booking.default_hold_seconds.into());
    let max_per_order = new
        .max_per_order
        .unwrap_or(node.config.booking.default_max_per_order.into());
    let tier_names: Vec<String> = new.tiers.iter().map(|t| t.name.trim().to_owned()).collect();
    let tier_prices: Vec<i64> = new.tiers.iter().map(|t| t.price_cents).collect();

    let mut tx = node.pool.begin().await?;
    let row: EventRow = sqlx::query_as(
        "INSERT INTO events (id, name, description, venue, starts_at, home_region, hold_seconds,
                             max_per_order)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING id, name, description, venue, starts_at, home_region, status, hold_seconds,
                   max_per_order, created_at, updated_at",
    )
    .bind(id.as_i64())
    .bind(new.name.trim())
    .bind(new.description.trim())
    .bind(new.venue.trim())
    .bind(new.starts_at)
    .bind(&new.home_region)
    .bind(hold_seconds as i32)
    .bind(max_per_order as i32)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO tiers (event_id, name, price_cents)
         SELECT $1, t.name, t.price FROM unnest($2::text[], $3::bigint[]) AS t(name, price)",
    )
    .bind(id.as_i64())
    .bind(&tier_names)
    .bind(&tier_prices)
    .execute(&mut *tx)
    .await?;
    let tiers = availability(&mut *tx, &[id.as_i64()]).await?;
    tx.commit().await?;
    EventView::new(row, &tiers)
}

const EVENT_COLUMNS: &str = "id, name, description, venue, starts_at, home_region, status, \
                             hold_seconds, max_per_order, created_at, updated_at";

/// What a reserve needs to know about its event.
#[derive(Debug, sqlx::FromRow)]
pub struct SaleTerms {
    pub id: i64,
    pub status: String,
    pub max_per_order: i32,
    pub hold_seconds: i32,
    /// (tier, price in cents).
    pub prices: sqlx::types::Json<Vec<(String, i64)>>,
}

/// The sale terms of events homed here, kept for a second: every reserve needs them, the API
/// never changes them once the event exists, and the second bounds how long an operator's edit
/// in the database goes unseen. Saves two queries per reserve on the hot path.
pub struct TermsCache(moka::future::Cache<i64, Arc<SaleTerms>>);

impl TermsCache {
    pub fn new() -> TermsCache {
        TermsCache(
            moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(1))
                .build(),
        )
    }

    pub async fn get(&self, node: &Node, id: Id) -> ApiResult<Arc<SaleTerms>> {
        self.0
            .try_get_with(id.as_i64(), async {
                let mut conn = node.pool.acquire().await?;
                sqlx::query_as::<_, SaleTerms>(
                    "SELECT e.id, e.status, e.max_per_order, e.hold_seconds,
                            coalesce((SELECT json_agg(json_build_array(t.name, t.price_cents))
                                      FROM tiers t WHERE t.event_id = e.id), '[]') AS prices
                     FROM events e WHERE e.id = $1",
                )
                .bind(id.as_i64())
                .fetch_optional(&mut *conn)
                .await?
                .map(Arc::new)
                .ok_or_else(|| ApiError::NotFound(format!("event {id}")))
            })
            .await
            .map_err(|e: Arc<ApiError>| crate::cache::shared_error(&e))
    }
}

impl Default for TermsCache {
    fn default() -> Self {
        TermsCache::new()
    }
}

pub async fn find(conn: &mut PgConnection, id: Id) -> ApiResult<EventRow> {
    sqlx::query_as(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1"))
        .bind(id.as_i64())
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("event {id}")))
}

/// One event with availability per tier, from this region's copy of its shard (cached).
pub async fn get(node: &Node, id: Id, after: &ReadAfter) -> ApiResult<ReadAnswer> {
    let shard = node.shard_of(id)?;
    let token = after.lsn_for(&shard.name);
    let (entry, lookup) = node
        .cache
        .get_or_load(CacheKey::Event(id.as_i64()), token, || async {
            let source = node.read_source(shard, after).await?;
            let (mut conn, lsn) = reads::snapshot(&source).await?;
            let row = find(&mut conn, id).await?;
            let tiers = availability(&mut *conn, &[row.id]).await?;
            reads::entry(&EventView::new(row, &tiers)?, &source, lsn)
        })
        .await?;
    Ok(ReadAnswer::from_cached(&entry, lookup))
}

/// Events of every shard, soonest first, gathered in parallel from this region's replicas
/// (never across the WAN unless a replica is too far behind). A shard that cannot be read at
/// all is left out and named in `X-Missing-Shards`.
pub async fn list(node: &Node, limit: i64, after: &ReadAfter) -> ApiResult<ReadAnswer> {
    let per_shard = node.readers.shards().map(|shard| async move {
        let token = after.lsn_for(&shard.name);
        let loaded = node
            .cache
            .get_or_load(
                CacheKey::EventList(shard.region_id, limit),
                token,
                || async {
                    let source = node.read_source(shard, after).await?;
                    let (mut conn, lsn) = reads::snapshot(&source).await?;
                    let rows: Vec<EventRow> = sqlx::query_as(&format!(
                        "SELECT {EVENT_COLUMNS} FROM events ORDER BY starts_at, id LIMIT $1"
                    ))
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await?;
                    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                    let tiers = availability(&mut *conn, &ids).await?;
                    let views = rows
                        .into_iter()
                        .map(|row| EventView::new(row, &tiers))
                        .collect::<ApiResult<Vec<_>>>()?;
                    reads::entry(&views, &source, lsn)
                },
            )
            .await;
        (shard.name.clone(), loaded)
    });
    let mut events: Vec<serde_json::Value> = Vec::new();
    let mut answer = ReadAnswer::gathering(Some(Lookup::Hit));
    for (shard, loaded) in futures::future::join_all(per_shard).await {
        match loaded {
            Ok((entry, lookup)) => {
                let part: Vec<serde_json::Value> = serde_json::from_slice(&entry.body)
                    .map_err(|e| ApiError::Internal(e.into()))?;
                events.extend(part);
                if lookup == Lookup::Miss {
                    answer.lookup = Some(Lookup::Miss);
                }
                answer.add_shard(shard, entry.source, entry.data_age_ms(), entry.stale);
            }
            Err(error) => {
                tracing::warn!(%shard, %error, "event list: shard unreadable");
                answer.missing.push(shard);
            }
        }
    }
    if answer.sources.is_empty() {
        return Err(ApiError::Unavailable);
    }
    let key = |e: &serde_json::Value| {
        let starts = e["startsAt"].as_str().unwrap_or_default().to_owned();
        let id: u64 = e["id"]
            .as_str()
            .and_then(|i| i.parse().ok())
            .unwrap_or_default();
        (starts, id)
    };
    events.sort_by_key(key);
    events.truncate(limit as usize);
    answer.body = serde_json::to_vec(&events)
        .map_err(|e| ApiError::Internal(e.into()))?
        .into();
    Ok(answer)
}

/// Tickets left per tier. A hold that has lapsed counts as available at once, before the
/// sweeper gets to it. Both counts read only partial indexes, never the sold tickets.
pub async fn availability<'e>(
    db: impl PgExecutor<'e>,
    event_ids: &[i64],
) -> ApiResult<Vec<TierAvailability>> {
    Ok(sqlx::query_as(
        "SELECT tr.event_id, tr.name, tr.price_cents, tr.ticket_count,
                (SELECT count(*) FROM tickets t
                  WHERE t.event_id = tr.event_id AND t.tier = tr.name AND t.status = 'available')
              + (SELECT count(*) FROM tickets t
                  WHERE t.event_id = tr.event_id AND t.tier = tr.name AND t.status = 'held'
                    AND t.hold_expires_at <= now()) AS available
         FROM tiers tr
         WHERE tr.event_id = ANY($1)
         ORDER BY tr.event_id, tr.price_cents DESC, tr.name",
    )
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
