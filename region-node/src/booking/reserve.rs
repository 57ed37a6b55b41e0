//! Reserve: a hold on tickets of every wanted tier, all or nothing, on the home primary.
//!
//! Concurrent reserves of one event are coalesced (group commit: `crate::coalesce`) and a
//! group runs as one transaction: one statement locks each of its holders against other
//! reserves of theirs for this event and counts what they already hold or bought (the per-user
//! cap), one claim locks the tickets the whole group asks for (`booking::store::CLAIM`,
//! `FOR UPDATE SKIP LOCKED`), `booking::assign` hands them out in arrival order within each
//! holder's cap, then one statement holds them and inserts the bookings, so many holds share
//! one durable commit. A reserve alone is a group of one. If a group fails for any reason,
//! each of its requests runs again alone, so one request's failure never fails its group-mates.
//!
//! With an `Idempotency-Key`, the booking row is the key's record: it carries the key (unique
//! per user) and is written in the hold's own transaction, so a keyed reserve costs no commit
//! more than an unkeyed one. A group looks up all its keys in one statement; a concurrent
//! duplicate waits on the unique key and then answers with the first one's booking.
//!
//! A queued event's reserve carries a queue pass, checked by signature in `prepare`; its
//! position goes into the booking, where the database allows one order per position and only
//! admitted positions of the booking user's own place (migration 0005).

use std::collections::BTreeMap;
use std::sync::Arc;

use sqlx::{Connection, PgConnection};

use crate::booking::assign::{self, Assignment, Want};
use crate::booking::idempotency::{self, KeyUse};
use crate::booking::request::{wanted_tiers, Line, Prepared, ReserveRequest};
use crate::booking::store;
use crate::booking::views::{BookingView, Reserved, TicketRef};
use crate::catalog;
use crate::coalesce::Pending;
use crate::error::{ApiError, ApiResult};
use crate::identity::auth::AuthUser;
use crate::ids::ensure_home;
use crate::queue::pass::PassError;
use crate::reads::cache::shared_error;
use crate::state::Node;

/// Reserve: checked and priced here, then held with its event's other concurrent reserves
/// (or alone, when group commit is off).
pub async fn reserve(
    node: &Arc<Node>,
    user: AuthUser,
    request: ReserveRequest,
    idempotency_key: Option<&str>,
) -> ApiResult<Reserved> {
    let prepared = prepare(node, user, request, idempotency_key).await?;
    // Unlocked claims (the race tests' negative control) race one transaction per reserve.
    if !node.config.booking.batch_reserves || node.claims.unlocked() {
        return reserve_alone(node, prepared).await;
    }
    let runner = node.clone();
    let run = move |batch| run_batch(runner.clone(), batch);
    match node.batcher.submit(prepared.event_id, prepared, run).await {
        Ok(answer) => answer,
        // Its batch never ran: running it alone cannot book twice.
        Err(prepared) => reserve_alone(node, prepared).await,
    }
}

/// Validation, the event's reserve budget (`limits`), its terms and prices, and the booking's
/// id: everything but the claim.
async fn prepare(
    node: &Node,
    user: AuthUser,
    request: ReserveRequest,
    idempotency_key: Option<&str>,
) -> ApiResult<Prepared> {
    let event_id = request.event_id;
    ensure_home(&node.config, event_id)?;
    node.limits.event_reserve(event_id)?;
    let terms = node.terms.get(&node.pool, event_id).await?;
    if terms.status != "on_sale" {
        return Err(ApiError::EventNotOnSale(event_id.to_string()));
    }
    let queue_position = if terms.queued {
        match queue_position(node, &request, user) {
            Ok(position) => Some(position),
            // A retry of a keyed reserve is answered by the key's lookup (before any hold),
            // whatever its pass has become since: expired, or used by that very booking.
            Err(refused) => match idempotency_key {
                Some(key) if key_was_used(node, user, key).await? => None,
                _ => return Err(refused),
            },
        }
    } else {
        // A pass for an event that is not queued is ignored.
        None
    };
    let wanted = wanted_tiers(&request.tickets, terms.max_per_order.into())?;
    let lines = wanted
        .iter()
        .map(|(tier, quantity)| {
            Ok(Line {
                tier: tier.clone(),
                quantity: *quantity,
                unit_price_cents: terms.price_of(tier)?,
            })
        })
        .collect::<ApiResult<Vec<Line>>>()?;
    let total_cents = lines
        .iter()
        .map(|l| l.unit_price_cents * i64::from(l.quantity))
        .sum();
    Ok(Prepared {
        event_id: terms.id,
        booking_id: node.ids.next()?,
        user_id: user.id,
        hold_seconds: terms.hold_seconds,
        max_tickets_per_user: node.config.booking.ticket_cap(terms.max_tickets_per_user),
        quantity: wanted.iter().map(|(_, q)| q).sum(),
        wanted,
        lines,
        total_cents,
        idempotency_key: idempotency_key.map(str::to_owned),
        queue_position,
    })
}

/// The queue position a reserve of a queued event books with: its pass's, checked by signature
/// alone (no lookup). That the position is unused, and the caller's own, the database enforces
/// when the booking is inserted (`bookings_one_per_pass`, `bookings_pass_is_the_users_place`).
fn queue_position(node: &Node, request: &ReserveRequest, user: AuthUser) -> ApiResult<i64> {
    let pass = request.queue_pass.as_deref().ok_or(PassError::Required)?;
    let now = chrono::Utc::now().timestamp();
    Ok(node
        .passes
        .verify(pass, request.event_id.as_i64(), user.id.as_i64(), now)?)
}

/// A batch the coalescer gathered: every request gets its own answer.
async fn run_batch(node: Arc<Node>, batch: Vec<Pending<Prepared, ApiResult<Reserved>>>) {
    node.metrics.reserve_batch_size.observe(batch.len() as f64);
    let (requests, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.job, p.reply)).unzip();
    let answers = reserve_group(&node, requests).await;
    for (reply, answer) in replies.into_iter().zip(answers) {
        let _ = reply.send(answer);
    }
}

/// Whether `key` is taken: by a reserve of this user (its booking is the answer) or another
/// operation (`422`). Only asked when a pass is refused, so it costs the hot path nothing.
async fn key_was_used(node: &Node, user: AuthUser, key: &str) -> ApiResult<bool> {
    let mut conn = node.pool.acquire().await?;
    let key_use = idempotency::key_use(&mut conn, user.id, key).await?;
    Ok(!matches!(key_use, KeyUse::Unused))
}

/// A reserve in a transaction of its own: its key's earlier answer, else its hold.
async fn reserve_alone(node: &Node, prepared: Prepared) -> ApiResult<Reserved> {
    let alone = std::slice::from_ref(&prepared);
    let mut conn = node.pool.acquire().await?;
    if let Some(Some(earlier)) = answer_used_keys(node, &mut conn, alone).await?.pop() {
        return earlier;
    }
    match hold_group(node, &mut conn, alone).await {
        Ok(mut held) => held.pop().unwrap_or_else(|| {
            Err(ApiError::Internal(anyhow::anyhow!(
                "reserve answered nothing"
            )))
        }),
        Err(failure) => failure.answer_alone(node, &mut conn, &prepared).await,
    }
}

/// Answers a batch of reserves of one event, in their order: earlier answers for keys used
/// before, then one transaction for the rest; if anything fails, each of the rest alone.
async fn reserve_group(node: &Node, group: Vec<Prepared>) -> Vec<ApiResult<Reserved>> {
    let (answers, failed) = match node.pool.acquire().await {
        Ok(mut conn) => held_on(node, &mut conn, group).await,
        Err(error) => {
            let error = ApiError::from(error);
            let answers = group
                .iter()
                .map(|_| Some(Err(shared_error(&error))))
                .collect();
            (answers, Vec::new())
        }
    };
    // The batch's connection is back in the pool before its failed requests each take one.
    let mut answers = answers;
    if !failed.is_empty() {
        let (slots, requests): (Vec<usize>, Vec<Prepared>) = failed.into_iter().unzip();
        for (slot, answer) in slots.into_iter().zip(each_alone(node, requests).await) {
            answers[slot] = Some(answer);
        }
    }
    answers
        .into_iter()
        .map(|a| {
            a.unwrap_or_else(|| Err(ApiError::Internal(anyhow::anyhow!("reserve unanswered"))))
        })
        .collect()
}

/// A batch on one connection: earlier answers for keys used before, then one transaction for
/// the rest. Returns the answers so far, and the requests (with their slots) to run alone
/// because the batch's lookup or transaction failed.
async fn held_on(
    node: &Node,
    conn: &mut PgConnection,
    group: Vec<Prepared>,
) -> (Vec<Option<ApiResult<Reserved>>>, Vec<(usize, Prepared)>) {
    let earlier = match answer_used_keys(node, conn, &group).await {
        Ok(earlier) => earlier,
        Err(error) => {
            tracing::warn!(%error, size = group.len(), "reserve batch's key lookup failed; running its requests one by one");
            let answers = group.iter().map(|_| None).collect();
            return (answers, group.into_iter().enumerate().collect());
        }
    };
    let mut answers = Vec::with_capacity(group.len());
    let mut fresh = Vec::new();
    for (prepared, earlier) in group.into_iter().zip(earlier) {
        if earlier.is_none() {
            fresh.push((answers.len(), prepared));
        }
        answers.push(earlier);
    }
    if fresh.is_empty() {
        return (answers, Vec::new());
    }
    let requests: Vec<Prepared> = fresh.iter().map(|(_, p)| p.clone()).collect();
    match hold_group(node, conn, &requests).await {
        Ok(held) => {
            for ((slot, _), answer) in fresh.into_iter().zip(held) {
                answers[slot] = Some(answer);
            }
            (answers, Vec::new())
        }
        Err(failure) => {
            tracing::warn!(error = %failure, size = requests.len(), "reserve batch failed; running its requests one by one");
            (answers, fresh)
        }
    }
}

/// After a failed batch: each request on its own, so one never fails the others.
async fn each_alone(node: &Node, requests: Vec<Prepared>) -> Vec<ApiResult<Reserved>> {
    futures::future::join_all(requests.into_iter().map(|p| reserve_alone(node, p))).await
}

/// One statement for every key of the group: `Some(answer)` for a request whose key was used
/// before (that booking again, or `422`), `None` for the rest.
async fn answer_used_keys(
    node: &Node,
    conn: &mut PgConnection,
    group: &[Prepared],
) -> ApiResult<Vec<Option<ApiResult<Reserved>>>> {
    let keys: Vec<(i64, String)> = group
        .iter()
        .filter_map(|p| Some((p.user_id.as_i64(), p.idempotency_key.clone()?)))
        .collect();
    if keys.is_empty() {
        return Ok(group.iter().map(|_| None).collect());
    }
    let mut uses = idempotency::key_uses(conn, &keys).await?.into_iter();
    let mut answers = Vec::with_capacity(group.len());
    for prepared in group {
        let key_use = match prepared.idempotency_key {
            Some(_) => uses.next().unwrap_or(KeyUse::Unused),
            None => KeyUse::Unused,
        };
        answers.push(
            earlier_answer(node, conn, prepared, key_use)
                .await
                .transpose(),
        );
    }
    Ok(answers)
}

/// What an earlier use of `prepared`'s key answers: `None` when the key is new (the reserve
/// runs), the earlier booking as it is now, or `422` when the key was used for something else.
async fn earlier_answer(
    node: &Node,
    conn: &mut PgConnection,
    prepared: &Prepared,
    key_use: KeyUse,
) -> ApiResult<Option<Reserved>> {
    match key_use {
        KeyUse::Unused => Ok(None),
        KeyUse::Recorded => Err(ApiError::IdempotencyKeyReused),
        KeyUse::Reserve(id) => {
            let row = store::find(conn, crate::ids::id_from_db(id)?).await?;
            if !same_request(&row.lines.0, row.event_id, prepared) {
                return Err(ApiError::IdempotencyKeyReused);
            }
            let tickets = store::tickets_of(conn, &[row.id]).await?;
            let view = BookingView::new(row, tickets.into_iter().map(|(_, t)| t).collect())?;
            let token =
                crate::reads::consistency::token_after_write(conn, &node.config.region).await?;
            Ok(Some(Reserved {
                view: view.with_token(token),
                replayed: true,
            }))
        }
    }
}

/// Whether a booking of `event_id` with `lines` is what `prepared` asks for.
fn same_request(lines: &[Line], event_id: i64, prepared: &Prepared) -> bool {
    let booked: BTreeMap<&str, i32> = lines
        .iter()
        .map(|l| (l.tier.as_str(), l.quantity))
        .collect();
    let asked: BTreeMap<&str, i32> = prepared
        .wanted
        .iter()
        .map(|(tier, quantity)| (tier.as_str(), *quantity))
        .collect();
    event_id == prepared.event_id && asked == booked
}

/// Why a group's transaction did not answer its requests.
#[derive(Debug, thiserror::Error)]
enum HoldFailure {
    /// A request's `Idempotency-Key` was taken by a concurrent duplicate meanwhile.
    #[error("an Idempotency-Key was used concurrently")]
    KeyTaken,
    #[error(transparent)]
    Failed(#[from] ApiError),
}

impl From<sqlx::Error> for HoldFailure {
    fn from(error: sqlx::Error) -> Self {
        HoldFailure::Failed(error.into())
    }
}

impl HoldFailure {
    /// The answer to a request that failed alone, on its own connection: for a taken key, the
    /// booking the key made.
    async fn answer_alone(
        self,
        node: &Node,
        conn: &mut PgConnection,
        prepared: &Prepared,
    ) -> ApiResult<Reserved> {
        match self {
            // The pass's order may be this request's own: a concurrent duplicate with the same
            // key, whose insert won. Then that booking is the answer, as for a taken key.
            HoldFailure::Failed(ApiError::QueuePass(PassError::Used)) => {
                match earlier_by_key(node, conn, prepared).await? {
                    Some(earlier) => Ok(earlier),
                    None => Err(PassError::Used.into()),
                }
            }
            HoldFailure::Failed(error) => Err(error),
            HoldFailure::KeyTaken => earlier_by_key(node, conn, prepared)
                .await?
                .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("taken key has no booking"))),
        }
    }
}

/// The booking an earlier reserve with `prepared`'s `Idempotency-Key` made, if it has one and
/// that reserve committed (see [`earlier_answer`]).
async fn earlier_by_key(
    node: &Node,
    conn: &mut PgConnection,
    prepared: &Prepared,
) -> ApiResult<Option<Reserved>> {
    let Some(key) = &prepared.idempotency_key else {
        return Ok(None);
    };
    let key_use = idempotency::key_use(conn, prepared.user_id, key).await?;
    earlier_answer(node, conn, prepared, key_use).await
}

/// One transaction for the group (of one event): lock and count its holders' tickets, claim,
/// hand out, hold, insert, commit. Per request, its booking, its `409 sold_out` or its
/// `409 ticket_limit`.
async fn hold_group(
    node: &Node,
    conn: &mut PgConnection,
    group: &[Prepared],
) -> Result<Vec<ApiResult<Reserved>>, HoldFailure> {
    let event_id = group[0].event_id;
    let wants: Vec<Want> = group
        .iter()
        .map(|p| Want {
            holder: p.user_id.as_i64(),
            cap: p.max_tickets_per_user,
            tiers: &p.wanted,
        })
        .collect();
    let mut holders: Vec<i64> = wants.iter().map(|w| w.holder).collect();
    holders.sort_unstable();
    holders.dedup();
    let mut tx = conn.begin().await?;
    node.claims.prepare_transaction(&mut tx).await?;
    // Before the claim, so no ticket row is locked while this waits on another batch of the
    // same holder.
    let held = node.claims.holdings(&mut tx, event_id, &holders).await?;
    let totals = assign::totals(&wants, &held);
    let claimed = if totals.is_empty() {
        Vec::new()
    } else {
        node.claims.claim(&mut tx, event_id, &totals).await?
    };
    let assignments = assign::assign(claimed, &wants, held);
    let placed: Vec<(&Prepared, &[TicketRef])> = group
        .iter()
        .zip(&assignments)
        .filter_map(|(p, a)| match a {
            Assignment::Tickets(tickets) => Some((p, tickets.as_slice())),
            Assignment::Short(_) | Assignment::OverCap { .. } => None,
        })
        .collect();
    let mut rows = Default::default();
    if !placed.is_empty() {
        rows = match store::hold_and_insert(&mut tx, event_id, &placed).await {
            Ok(rows) => rows,
            // A refused pass fails the group, whose members then run alone: only the request
            // with that pass is refused.
            Err(sqlx::Error::Database(e)) => {
                if let Some(refused) = store::pass_refusal(e.as_ref()) {
                    return Err(HoldFailure::Failed(refused.into()));
                }
                if e.is_unique_violation() {
                    return Err(HoldFailure::KeyTaken);
                }
                return Err(sqlx::Error::Database(e).into());
            }
            Err(e) => return Err(e.into()),
        };
    }
    tx.commit().await?;
    let token = if placed.is_empty() {
        None
    } else {
        Some(node.event_written(conn, event_id).await?)
    };
    let short = assignments
        .iter()
        .any(|a| matches!(a, Assignment::Short(_)));
    let available = if short {
        catalog::store::available_by_tier(conn, event_id).await?
    } else {
        BTreeMap::new()
    };
    let held: usize = placed.iter().map(|(_, t)| t.len()).sum();
    node.metrics.tickets_held.inc_by(held as u64);
    let mut answers = Vec::with_capacity(group.len());
    for (prepared, assignment) in group.iter().zip(assignments) {
        answers.push(match assignment {
            Assignment::Tickets(tickets) => {
                node.metrics.booking_outcome("held");
                let row = rows.remove(&prepared.booking_id.as_i64()).ok_or_else(|| {
                    ApiError::Internal(anyhow::anyhow!("a held booking went missing"))
                })?;
                let view = BookingView::new(row, tickets)?;
                Ok(Reserved {
                    view: match &token {
                        Some(token) => view.with_token(token.clone()),
                        None => view,
                    },
                    replayed: false,
                })
            }
            Assignment::Short(message) => {
                node.metrics.booking_outcome("sold_out");
                Err(ApiError::SoldOut {
                    message,
                    available: available.clone(),
                })
            }
            Assignment::OverCap { cap, held } => over_cap(node, conn, prepared, cap, held).await,
        });
    }
    Ok(answers)
}

/// The answer to a request over its user's cap: `409 ticket_limit`, unless it repeats (same
/// `Idempotency-Key`) a reserve that committed while this one waited on the user's lock; then
/// that reserve's booking, which the count just included, is its answer. Looked up only here,
/// where it can matter, and never failing the group (its transaction is over).
async fn over_cap(
    node: &Node,
    conn: &mut PgConnection,
    prepared: &Prepared,
    cap: i64,
    held: i64,
) -> ApiResult<Reserved> {
    if let Some(earlier) = earlier_by_key(node, conn, prepared).await? {
        return Ok(earlier);
    }
    node.metrics.booking_outcome("ticket_limit");
    Err(ApiError::TicketLimit {
        cap,
        held,
        asked: prepared.quantity.into(),
    })
}
