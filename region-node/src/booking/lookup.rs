//! Bookings read in this region: one booking, and a user's bookings gathered from every shard
//! (a booking lives in its event's home shard), each from this region's replica of it.

use std::collections::BTreeMap;

use id_gen::Id;
use sqlx::PgConnection;

use crate::booking::store;
use crate::booking::views::{BookingView, TicketRef};
use crate::error::{ApiError, ApiResult};
use crate::identity::auth::{AuthUser, Permissions};
use crate::ids::id_from_db;
use crate::reads::answer::ReadAnswer;
use crate::reads::consistency::ReadAfter;
use crate::state::Node;

/// One booking, for its owner or an admin, from this region's copy of its shard.
pub async fn get(
    node: &Node,
    caller: AuthUser,
    id: Id,
    after: &ReadAfter,
) -> ApiResult<ReadAnswer> {
    let source = node.read_source(node.shard_of(id)?, after).await?;
    let mut conn = source.pool.acquire().await?;
    let row = store::find(&mut conn, id).await?;
    caller.ensure_can_act_for(id_from_db(row.user_id)?, "booking")?;
    let tickets = store::tickets_of(&mut conn, &[row.id]).await?;
    let view = BookingView::new(row, tickets.into_iter().map(|(_, t)| t).collect())?;
    ReadAnswer::uncached(&view, &source)
}

/// A user's bookings, newest first, gathered in parallel from every shard's replica in this
/// region. A token makes the shard it names wait for, or skip to, data at least that new.
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
    let rows = store::of_user(conn, user, limit).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut by_booking: BTreeMap<i64, Vec<TicketRef>> = BTreeMap::new();
    if !ids.is_empty() {
        for (booking, ticket) in store::tickets_of(conn, &ids).await? {
            by_booking.entry(booking).or_default().push(ticket);
        }
    }
    rows.into_iter()
        .map(|row| {
            let held = by_booking.remove(&row.id).unwrap_or_default();
            BookingView::new(row, held)
        })
        .collect()
}
