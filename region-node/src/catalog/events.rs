//! Events and their tiers: creation on the home primary, and the event page and the event list
//! read in this region through the cache.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use id_gen::Id;
use serde::{Deserialize, Serialize};
use sqlx::Connection;
use utoipa::ToSchema;

use crate::catalog::store::{self, EventRow, NewEventRow, TierAvailability};
use crate::config::{BookingConfig, Config, MAX_TICKETS_PER_USER};
use crate::error::{ApiError, ApiResult};
use crate::ids::id_from_db;
use crate::input::text;
use crate::reads::answer::{self, ReadAnswer};
use crate::reads::cache::{CacheKey, Cached, Lookup};
use crate::reads::consistency::{Lsn, ReadAfter};
use crate::state::Node;

/// The longest page of the event list one request may ask for.
pub const MAX_LIST: i64 = 500;

/// Where a page of the event list starts: after the event with this start time and id (the
/// list's order). Written `<start, Unix microseconds>.<id>`; clients take it from the previous
/// page's `Link: <…>; rel="next"` and do not need to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub starts_at: DateTime<Utc>,
    pub id: i64,
}

impl Cursor {
    /// Before every event (PostgreSQL's timestamps start in 4713 BC; this is year 1).
    fn start() -> Cursor {
        Cursor {
            starts_at: DateTime::<Utc>::from_timestamp(-62_135_596_800, 0).unwrap_or_default(),
            id: 0,
        }
    }

    fn key(&self) -> (i64, i64) {
        (self.starts_at.timestamp_micros(), self.id)
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.starts_at.timestamp_micros(), self.id)
    }
}

impl std::str::FromStr for Cursor {
    type Err = ApiError;

    fn from_str(s: &str) -> Result<Cursor, ApiError> {
        let bad = || {
            ApiError::Validation(
                "after must be the cursor of a previous page (from its Link header)".into(),
            )
        };
        let (micros, id) = s.split_once('.').ok_or_else(bad)?;
        let micros: i64 = micros.parse().map_err(|_| bad())?;
        let id: i64 = id.parse().map_err(|_| bad())?;
        let starts_at = DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(bad)?;
        if id < 0 {
            return Err(bad());
        }
        Ok(Cursor { starts_at, id })
    }
}

/// Which page of the event list: at most `limit` events after `after` (from the start).
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: i64,
    pub after: Option<Cursor>,
}

/// A new event, homed in `homeRegion` (admin only).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "name": "Summer Night", "description": "Open air, three stages", "venue": "Harbour Arena",
    "startsAt": "2030-07-01T19:30:00Z", "homeRegion": "us-east",
    "tiers": [{"name": "VIP", "priceCents": 10000}, {"name": "GA", "priceCents": 1000}],
    "holdSeconds": 600, "maxPerOrder": 10}))]
pub struct NewEvent {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub name: String,
    #[serde(default)]
    #[schema(
        max_length = 5000,
        pattern = "^[^\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\x7F-\\x9F]*$"
    )]
    pub description: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub venue: String,
    /// In the future.
    pub starts_at: DateTime<Utc>,
    /// A configured region (the served document lists them); the event's writes go there.
    pub home_region: String,
    /// 1 to 20 tiers, each name once.
    #[schema(min_items = 1, max_items = 20)]
    pub tiers: Vec<NewTier>,
    /// How long a reserve holds tickets (default: the node's `booking.default_hold_seconds`).
    #[schema(minimum = 1, maximum = 3600)]
    pub hold_seconds: Option<i64>,
    /// Most tickets in one order (default: the node's `booking.default_max_per_order`).
    #[schema(minimum = 1, maximum = 100)]
    pub max_per_order: Option<i64>,
    /// Most tickets of the event one user may hold or have bought across all their orders;
    /// absent: the home node's default.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub max_tickets_per_user: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewTier {
    #[schema(
        min_length = 1,
        max_length = 50,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub name: String,
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub price_cents: i64,
}

/// The largest tier price we accept: ten million dollars.
const MAX_PRICE_CENTS: i64 = 1_000_000_000;
const MAX_TIERS: usize = 20;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TierView {
    pub name: String,
    pub price_cents: i64,
    /// Price in currency units, as the seed API showed it.
    pub price: f64,
    pub available: i64,
    pub total: i64,
}

/// An event with what is left of each tier.
#[derive(Debug, Serialize, ToSchema)]
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
    /// The cap in force: the event's own, else the reading node's default (one deployment
    /// configures every node alike).
    pub max_tickets_per_user: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub tiers: Vec<TierView>,
    pub total_available: i64,
    /// On creation only: `<home region>:<LSN>` of the write, for read-your-writes on replicas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency_token: Option<String>,
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
    fn new(
        row: EventRow,
        tiers: &[TierAvailability],
        booking: &BookingConfig,
    ) -> ApiResult<EventView> {
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
            max_tickets_per_user: booking.ticket_cap(row.max_tickets_per_user),
            created_at: row.created_at,
            updated_at: row.updated_at,
            tiers,
            consistency_token: None,
        })
    }
}

/// Everything a new event must be, checked before anything is written.
fn validate(config: &Config, new: &NewEvent) -> ApiResult<()> {
    let bad = |m: String| Err(ApiError::Validation(m));
    text("name", &new.name, 1, 200, false)?;
    text("venue", &new.venue, 1, 200, false)?;
    text("description", &new.description, 0, 5000, true)?;
    if new.starts_at <= Utc::now() {
        return bad("startsAt must be in the future".into());
    }
    if config.region_id(&new.home_region).is_none() {
        let known: Vec<&str> = config.regions.iter().map(|r| r.name.as_str()).collect();
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
    if let Some(m) = new.max_tickets_per_user {
        if !(1..=MAX_TICKETS_PER_USER).contains(&m) {
            return bad(format!(
                "maxTicketsPerUser must be 1 to {MAX_TICKETS_PER_USER}"
            ));
        }
    }
    Ok(())
}

/// Creates an event homed here, with its tiers; its shard's cached event list is dropped. The
/// answer carries the write's consistency token.
pub async fn create(node: &Node, new: NewEvent) -> ApiResult<EventView> {
    validate(&node.config, &new)?;
    if new.home_region != node.config.region {
        return Err(ApiError::Misdirected {
            home: new.home_region,
            local: node.config.region.clone(),
        });
    }
    let booking = &node.config.booking;
    let row = NewEventRow {
        id: node.ids.next()?,
        name: new.name.trim(),
        description: new.description.trim(),
        venue: new.venue.trim(),
        starts_at: new.starts_at,
        home_region: &new.home_region,
        hold_seconds: new
            .hold_seconds
            .unwrap_or(booking.default_hold_seconds.into()) as i32,
        max_per_order: new
            .max_per_order
            .unwrap_or(booking.default_max_per_order.into()) as i32,
        // Checked above to fit; absent stays absent, so the default keeps applying.
        max_tickets_per_user: new.max_tickets_per_user.map(|m| m as i32),
        tiers: new
            .tiers
            .iter()
            .map(|t| (t.name.trim().to_owned(), t.price_cents))
            .collect(),
    };
    let mut conn = node.pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let event = store::insert_event(&mut tx, &row).await?;
    let tiers = store::availability(&mut *tx, &[event.id]).await?;
    tx.commit().await?;
    let token = node.listing_written(&mut conn, event.id).await?;
    let mut view = EventView::new(event, &tiers, booking)?;
    view.consistency_token = Some(token);
    Ok(view)
}

/// One event with availability per tier, from this region's copy of its shard (cached).
pub async fn get(node: &Arc<Node>, id: Id, after: &ReadAfter) -> ApiResult<ReadAnswer> {
    let token = after.lsn_for(&node.shard_of(id)?.name);
    let loader = Arc::clone(node);
    let (entry, lookup) = node
        .cache
        .get_or_load(CacheKey::Event(id.as_i64()), token, move || {
            load_event(loader, id, token)
        })
        .await?;
    Ok(ReadAnswer::from_cached(&entry, lookup))
}

/// Reads one event's page for the cache, at least as new as `token`.
async fn load_event(node: Arc<Node>, id: Id, token: Option<Lsn>) -> ApiResult<Cached> {
    let source = node.readers.source(node.shard_of(id)?, token).await?;
    let (mut conn, lsn) = answer::snapshot(&source).await?;
    let row = store::find_event(&mut conn, id).await?;
    let tiers = store::availability(&mut *conn, &[row.id]).await?;
    let view = EventView::new(row, &tiers, &node.config.booking)?;
    answer::entry(&view, &source, lsn)
}

/// A page of the events of every shard, soonest first, gathered in parallel from this region's
/// replicas (never across the WAN unless a replica is too far behind): each shard gives its
/// own first `limit` after the cursor, and the page is the first `limit` of them all. Costs
/// O(events on the page) whatever the events' sizes. A shard that cannot be read at all is
/// left out and named in `X-Missing-Shards`.
pub async fn list(node: &Arc<Node>, page: Page, after: &ReadAfter) -> ApiResult<ReadAnswer> {
    let from = page.after.unwrap_or_else(Cursor::start);
    let per_shard = node.readers.shards().map(|shard| {
        let token = after.lsn_for(&shard.name);
        let key =
            node.cache
                .event_list_key(shard.region_id, page.after.map(|c| c.key()), page.limit);
        let loader = Arc::clone(node);
        let region_id = shard.region_id;
        async move {
            let loaded = node
                .cache
                .get_or_load(key, token, move || {
                    load_list_page(loader, region_id, from, page.limit, token)
                })
                .await;
            (shard.name.clone(), loaded)
        }
    });
    let mut parts: Vec<Vec<ListedEvent>> = Vec::new();
    let mut answer = ReadAnswer::gathering(Some(Lookup::Hit));
    for (shard, loaded) in futures::future::join_all(per_shard).await {
        match loaded {
            Ok((entry, lookup)) => {
                parts.push(
                    serde_json::from_slice(&entry.body)
                        .map_err(|e| ApiError::Internal(e.into()))?,
                );
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
    let (events, next) = first_of_all(parts, page.limit as usize);
    answer.body = serde_json::to_vec(&events)
        .map_err(|e| ApiError::Internal(e.into()))?
        .into();
    answer.next_page = next.map(|c| format!("/api/v1/events?limit={}&after={c}", page.limit));
    Ok(answer)
}

/// Reads one shard's page of the event list for the cache, at least as new as `token`.
async fn load_list_page(
    node: Arc<Node>,
    shard_region: u8,
    from: Cursor,
    limit: i64,
    token: Option<Lsn>,
) -> ApiResult<Cached> {
    let shard = node
        .readers
        .shard_by_region(shard_region)
        .ok_or(ApiError::Unavailable)?;
    let source = node.readers.source(shard, token).await?;
    let (mut conn, lsn) = answer::snapshot(&source).await?;
    let rows = store::list_events(&mut conn, (from.starts_at, from.id), limit).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let tiers = store::availability(&mut *conn, &ids).await?;
    let views = rows
        .into_iter()
        .map(|row| EventView::new(row, &tiers, &node.config.booking))
        .collect::<ApiResult<Vec<_>>>()?;
    answer::entry(&views, &source, lsn)
}

/// An event of a shard's page: its place in the list, and the rest of it as it was cached.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct ListedEvent {
    id: Id,
    starts_at: DateTime<Utc>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// The first `limit` events of the shards' pages (each sorted, each at most `limit` long), and
/// the cursor of the next page when this one is full.
fn first_of_all(parts: Vec<Vec<ListedEvent>>, limit: usize) -> (Vec<ListedEvent>, Option<Cursor>) {
    let mut events: Vec<ListedEvent> = parts.into_iter().flatten().collect();
    events.sort_by_key(|e| (e.starts_at, e.id));
    events.truncate(limit);
    let next = (events.len() == limit)
        .then(|| events.last())
        .flatten()
        .map(|e| Cursor {
            starts_at: e.starts_at,
            id: e.id.as_i64(),
        });
    (events, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use id_gen::{IdParts, RegionId, EPOCH_UNIX_MS};

    fn event(region: u8, sequence: u16, starts: &str) -> ListedEvent {
        let id = IdParts {
            timestamp_ms: EPOCH_UNIX_MS + 1_000,
            region: RegionId::new(region).unwrap(),
            machine: 0,
            sequence,
        }
        .encode()
        .unwrap();
        ListedEvent {
            id,
            starts_at: starts.parse().unwrap(),
            rest: serde_json::Map::new(),
        }
    }

    /// Walks every page of `shards` (each sorted) as `list` would, `limit` at a time.
    fn walk(shards: &[Vec<(u8, u16, &str)>], limit: usize) -> Vec<(i64, i64)> {
        let mut seen = Vec::new();
        let mut after = Cursor::start();
        loop {
            let parts = shards
                .iter()
                .map(|shard| {
                    shard
                        .iter()
                        .map(|(r, s, t)| event(*r, *s, t))
                        .filter(|e| (e.starts_at, e.id.as_i64()) > (after.starts_at, after.id))
                        .take(limit)
                        .collect()
                })
                .collect();
            let (page, next) = first_of_all(parts, limit);
            seen.extend(
                page.iter()
                    .map(|e| (e.starts_at.timestamp_micros(), e.id.as_i64())),
            );
            match next {
                Some(cursor) => after = cursor,
                None => return seen,
            }
        }
    }

    #[test]
    fn the_cursor_walks_every_event_of_every_shard_exactly_once_in_order() {
        let shards = vec![
            vec![
                (1, 0, "2030-01-01T10:00:00Z"),
                (1, 1, "2030-01-01T10:00:00Z"),
                (1, 2, "2030-03-01T10:00:00.5Z"),
            ],
            vec![
                (2, 0, "2030-01-01T10:00:00Z"),
                (2, 1, "2030-02-01T10:00:00Z"),
            ],
            vec![],
            vec![
                (3, 0, "2029-12-31T23:59:59Z"),
                (3, 1, "2030-03-01T10:00:00Z"),
                (3, 2, "2031-01-01T00:00:00Z"),
            ],
        ];
        let mut all: Vec<(i64, i64)> = shards
            .iter()
            .flatten()
            .map(|(r, s, t)| {
                let e = event(*r, *s, t);
                (e.starts_at.timestamp_micros(), e.id.as_i64())
            })
            .collect();
        all.sort();
        for limit in 1..=9 {
            assert_eq!(walk(&shards, limit), all, "page size {limit}");
        }
    }

    #[test]
    fn cursors_read_back_what_they_wrote_and_refuse_anything_else() {
        let cursor = Cursor {
            starts_at: "2030-07-01T19:30:00.123456Z".parse().unwrap(),
            id: 386_164_735_021_809_669,
        };
        assert_eq!(cursor.to_string().parse::<Cursor>().unwrap(), cursor);
        for bad in [
            "",
            "1",
            "x.1",
            "1.x",
            "1.-5",
            "99999999999999999999.1",
            "1.2.3",
        ] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad:?}");
        }
    }
}
