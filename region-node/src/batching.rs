//! Group commit for a hot event: concurrent reserves of one event are coalesced into one
//! transaction on the home primary, so that many holds share one durable commit.
//!
//! Each event has a queue and a few workers. A worker takes everything queued (no artificial
//! wait: while one batch commits, the next one gathers), locks the tickets the whole batch asks
//! for with `FOR UPDATE SKIP LOCKED`, hands them out in arrival order (each request still all or
//! nothing), and writes every hold and booking with one statement each. If the batch fails for
//! any reason, each of its requests is run again on its own, so one request's failure never
//! fails its batch-mates.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use sqlx::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::app::Node;
use crate::booking::{self, BookingView, Prepared, Reserved, TicketRef};
use crate::error::{ApiError, ApiResult};
use crate::idempotency::{self, KeyUse};

/// A worker with nothing to do for this long ends; the queue is made again on demand.
const IDLE: Duration = Duration::from_secs(30);

struct Pending {
    prepared: Prepared,
    reply: oneshot::Sender<ApiResult<Reserved>>,
}

type Queue = mpsc::UnboundedSender<Pending>;

#[derive(Default)]
pub struct Batcher {
    queues: Mutex<HashMap<i64, Queue>>,
}

impl Batcher {
    /// Queues a reserve for its event's next batch and waits for its answer.
    pub async fn submit(&self, node: &Arc<Node>, prepared: Prepared) -> ApiResult<Reserved> {
        let (reply, answer) = oneshot::channel();
        // Kept for the rare case below; a reserve is small.
        let alone = prepared.clone();
        let mut pending = Pending { prepared, reply };
        for _ in 0..2 {
            let queue = self.queue(node, pending.prepared.event_id);
            match queue.send(pending) {
                Ok(()) => {
                    return match answer.await {
                        Ok(result) => result,
                        // The queue's workers ended (idle) before taking it: it never ran, so
                        // running it alone cannot book twice.
                        Err(_) => booking::reserve_one(node, alone).await,
                    };
                }
                Err(mpsc::error::SendError(back)) => {
                    // Every worker of that queue ended; make a new one.
                    self.queues
                        .lock()
                        .expect("batch queues")
                        .remove(&back.prepared.event_id);
                    pending = back;
                }
            }
        }
        booking::reserve_one(node, pending.prepared).await
    }

    fn queue(&self, node: &Arc<Node>, event_id: i64) -> Queue {
        let mut queues = self.queues.lock().expect("batch queues");
        if let Some(queue) = queues.get(&event_id).filter(|q| !q.is_closed()) {
            return queue.clone();
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        for _ in 0..node.config.booking.batch_workers_per_event {
            tokio::spawn(work(node.clone(), receiver.clone()));
        }
        queues.insert(event_id, sender.clone());
        sender
    }
}

async fn work(node: Arc<Node>, queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>>) {
    let max = node.config.booking.batch_max;
    loop {
        let batch = {
            let mut queue = queue.lock().await;
            let first = match tokio::time::timeout(IDLE, queue.recv()).await {
                Ok(Some(first)) => first,
                _ => return,
            };
            let mut batch = vec![first];
            while batch.len() < max {
                match queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            batch
        };
        run(&node, batch).await;
    }
}

async fn run(node: &Node, batch: Vec<Pending>) {
    node.metrics.reserve_batch_size.observe(batch.len() as f64);
    if batch.len() == 1 {
        let pending = batch.into_iter().next().expect("one");
        let _ = pending
            .reply
            .send(booking::reserve_one(node, pending.prepared).await);
        return;
    }
    let batch = match answer_earlier_keys(node, batch).await {
        Ok(batch) => batch,
        Err((error, batch)) => return run_alone(node, batch, &error).await,
    };
    if batch.is_empty() {
        return;
    }
    let prepared: Vec<Prepared> = batch.iter().map(|p| p.prepared.clone()).collect();
    match reserve_batch(node, &prepared).await {
        Ok(results) => {
            for (pending, result) in batch.into_iter().zip(results) {
                let reserved = result.map(|view| Reserved {
                    view,
                    replayed: false,
                });
                let _ = pending.reply.send(reserved);
            }
        }
        Err(error) => run_alone(node, batch, &error).await,
    }
}

/// After a failed batch: each request on its own, so one request never fails its batch-mates.
async fn run_alone(node: &Node, batch: Vec<Pending>, error: &ApiError) {
    tracing::warn!(%error, size = batch.len(), "reserve batch failed; running its requests one by one");
    let alone = batch.into_iter().map(|pending| async move {
        let result = booking::reserve_one(node, pending.prepared).await;
        let _ = pending.reply.send(result);
    });
    futures::future::join_all(alone).await;
}

/// Looks up every Idempotency-Key of the batch in one statement; requests whose key was used
/// before get their earlier answer (or `422`) now, and the rest go on to the claim.
async fn answer_earlier_keys(
    node: &Node,
    batch: Vec<Pending>,
) -> Result<Vec<Pending>, (ApiError, Vec<Pending>)> {
    let keys: Vec<(i64, String)> = batch
        .iter()
        .filter_map(|p| {
            let key = p.prepared.idempotency_key.clone()?;
            Some((p.prepared.user_id.as_i64(), key))
        })
        .collect();
    if keys.is_empty() {
        return Ok(batch);
    }
    let mut conn = match node.pool.acquire().await {
        Ok(conn) => conn,
        Err(e) => return Err((e.into(), batch)),
    };
    let uses = match idempotency::key_uses(&mut conn, &keys).await {
        Ok(uses) => uses,
        Err(e) => return Err((e, batch)),
    };
    let mut uses = uses.into_iter();
    let mut fresh = Vec::with_capacity(batch.len());
    for pending in batch {
        if pending.prepared.idempotency_key.is_none() {
            fresh.push(pending);
            continue;
        }
        let key_use = uses.next().unwrap_or(KeyUse::Unused);
        if let KeyUse::Unused = key_use {
            fresh.push(pending);
            continue;
        }
        let answer = booking::earlier_answer(node, &mut conn, &pending.prepared, key_use)
            .await
            .and_then(|earlier| {
                earlier.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("used key not answered")))
            });
        let _ = pending.reply.send(answer);
    }
    Ok(fresh)
}

/// Locks up to `qty` tickets per tier of `source` for the batch, skipping rows others hold.
const LOCK_AVAILABLE: &str = "
    WITH wanted AS (SELECT * FROM unnest($2::text[], $3::int4[]) AS w(tier, qty))
    SELECT c.id, w.tier FROM wanted w CROSS JOIN LATERAL (
        SELECT t.id FROM tickets t
        WHERE t.event_id = $1 AND t.tier = w.tier AND t.status = 'available'
        ORDER BY t.id LIMIT w.qty
        FOR UPDATE SKIP LOCKED) c";

const LOCK_LAPSED: &str = "
    WITH wanted AS (SELECT * FROM unnest($2::text[], $3::int4[]) AS w(tier, qty))
    SELECT c.id, w.tier FROM wanted w CROSS JOIN LATERAL (
        SELECT t.id FROM tickets t
        WHERE t.event_id = $1 AND t.tier = w.tier AND t.status = 'held'
          AND t.hold_expires_at <= now()
        ORDER BY t.hold_expires_at LIMIT w.qty
        FOR UPDATE SKIP LOCKED) c";

/// One transaction for the whole batch; per request, its booking or its `409 sold_out`.
async fn reserve_batch(node: &Node, batch: &[Prepared]) -> ApiResult<Vec<ApiResult<BookingView>>> {
    let event_id = batch[0].event_id;
    let mut totals: BTreeMap<&str, i32> = BTreeMap::new();
    for p in batch {
        for (tier, qty) in &p.wanted {
            *totals.entry(tier.as_str()).or_default() += qty;
        }
    }
    let mut conn = node.pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let mut pools: BTreeMap<String, VecDeque<i64>> = BTreeMap::new();
    let lock = |sql: &'static str, wanted: Vec<(String, i32)>| {
        let tiers: Vec<String> = wanted.iter().map(|(t, _)| t.clone()).collect();
        let quantities: Vec<i32> = wanted.iter().map(|(_, q)| *q).collect();
        sqlx::query_as::<_, TicketRef>(sql)
            .bind(event_id)
            .bind(tiers)
            .bind(quantities)
    };
    let wanted: Vec<(String, i32)> = totals.iter().map(|(t, q)| (t.to_string(), *q)).collect();
    for ticket in lock(LOCK_AVAILABLE, wanted).fetch_all(&mut *tx).await? {
        pools.entry(ticket.tier).or_default().push_back(ticket.id);
    }
    let short: Vec<(String, i32)> = totals
        .iter()
        .filter_map(|(tier, want)| {
            let have = pools.get(*tier).map_or(0, |p| p.len() as i32);
            (have < *want).then(|| (tier.to_string(), want - have))
        })
        .collect();
    if !short.is_empty() {
        for ticket in lock(LOCK_LAPSED, short).fetch_all(&mut *tx).await? {
            pools.entry(ticket.tier).or_default().push_back(ticket.id);
        }
    }

    // Arrival order; a request that cannot be filled whole takes nothing.
    let mut assigned: Vec<Option<Vec<TicketRef>>> = Vec::with_capacity(batch.len());
    let mut refused: Vec<String> = Vec::new();
    for p in batch {
        let fits = p
            .wanted
            .iter()
            .all(|(tier, qty)| pools.get(tier).map_or(0, |pool| pool.len()) >= *qty as usize);
        if !fits {
            let message = p
                .wanted
                .iter()
                .map(|(tier, qty)| {
                    let left = pools.get(tier).map_or(0, |pool| pool.len());
                    format!("{tier} wanted {qty}, {} left", left.min(*qty as usize))
                })
                .collect::<Vec<_>>()
                .join("; ");
            refused.push(message);
            assigned.push(None);
            continue;
        }
        let mut tickets = Vec::new();
        for (tier, qty) in &p.wanted {
            let pool = pools.get_mut(tier).expect("checked above");
            for _ in 0..*qty {
                let id = pool.pop_front().expect("checked above");
                tickets.push(TicketRef {
                    id,
                    tier: tier.clone(),
                });
            }
        }
        assigned.push(Some(tickets));
    }

    let mut ticket_ids = Vec::new();
    let mut holders = Vec::new();
    let mut users = Vec::new();
    let mut holds = Vec::new();
    for (p, tickets) in batch.iter().zip(&assigned) {
        for t in tickets.iter().flatten() {
            ticket_ids.push(t.id);
            holders.push(p.booking_id.as_i64());
            users.push(p.user_id.as_i64());
            holds.push(f64::from(p.hold_seconds));
        }
    }
    let placed: Vec<&Prepared> = batch
        .iter()
        .zip(&assigned)
        .filter(|(_, t)| t.is_some())
        .map(|(p, _)| p)
        .collect();
    let mut rows = HashMap::new();
    if !placed.is_empty() {
        sqlx::query(
            "UPDATE tickets t SET status = 'held', booking_id = u.booking, user_id = u.holder,
                                  hold_expires_at = now() + make_interval(secs => u.hold),
                                  updated_at = now()
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::float8[])
                  AS u(id, booking, holder, hold)
             WHERE t.id = u.id",
        )
        .bind(&ticket_ids)
        .bind(&holders)
        .bind(&users)
        .bind(&holds)
        .execute(&mut *tx)
        .await?;
        let lines: Vec<Value> = placed
            .iter()
            .map(|p| serde_json::to_value(&p.lines).unwrap_or(Value::Null))
            .collect();
        let inserted = booking::insert_bookings(
            &mut tx,
            event_id,
            &placed
                .iter()
                .map(|p| p.booking_id.as_i64())
                .collect::<Vec<_>>(),
            &placed
                .iter()
                .map(|p| p.user_id.as_i64())
                .collect::<Vec<_>>(),
            &placed.iter().map(|p| p.quantity).collect::<Vec<_>>(),
            &lines,
            &placed.iter().map(|p| p.total_cents).collect::<Vec<_>>(),
            &placed
                .iter()
                .map(|p| f64::from(p.hold_seconds))
                .collect::<Vec<_>>(),
            &placed
                .iter()
                .map(|p| p.idempotency_key.clone())
                .collect::<Vec<_>>(),
        )
        .await?;
        rows = inserted;
    }
    tx.commit().await?;

    let token = if placed.is_empty() {
        None
    } else {
        Some(booking::after_write(node, &mut conn, event_id).await?)
    };
    let available = if refused.is_empty() {
        BTreeMap::new()
    } else {
        crate::events::available_by_tier(&mut conn, event_id).await?
    };
    node.metrics.tickets_held.inc_by(ticket_ids.len() as u64);
    let mut refused = refused.into_iter();
    let mut results = Vec::with_capacity(batch.len());
    for (p, tickets) in batch.iter().zip(assigned) {
        match tickets {
            Some(tickets) => {
                node.metrics.booking_outcome("held");
                let row = rows
                    .remove(&p.booking_id.as_i64())
                    .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("batch lost a booking")))?;
                let mut view = booking::view(row, tickets)?;
                view.consistency_token = token.clone();
                results.push(Ok(view));
            }
            None => {
                node.metrics.booking_outcome("sold_out");
                results.push(Err(ApiError::SoldOut {
                    message: refused.next().unwrap_or_default(),
                    available: available.clone(),
                }));
            }
        }
    }
    Ok(results)
}
