//! Joining a queue (`POST /events/{id}/queue`, on the event's home node): concurrent joins of
//! one event are coalesced (`crate::coalesce`) into one transaction that locks the queue row,
//! adds the new members (in the lobby before the draw, at the next positions in arrival order
//! after it) and commits once for all. A repeated join adds nothing and answers the same place.
//! If a batch fails, each of its joins runs again alone, so one never fails the others.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use id_gen::Id;
use sqlx::{Connection, PgConnection};

use crate::coalesce::Pending;
use crate::error::{ApiError, ApiResult};
use crate::identity::auth::AuthUser;
use crate::ids::{ensure_home, id_from_db};
use crate::queue::place::{Joining, QueuePlace};
use crate::queue::settings::missing_queue;
use crate::queue::store::{self, PlaceRow};
use crate::reads::consistency::token_after_write;
use crate::state::Node;

/// `user`'s place in `event_id`'s queue, joining it if they had none.
pub async fn join(node: &Arc<Node>, user: AuthUser, event_id: Id) -> ApiResult<QueuePlace> {
    ensure_home(&node.config, event_id)?;
    let joining = Joining {
        event_id: event_id.as_i64(),
        user_id: user.id.as_i64(),
    };
    let runner = node.clone();
    let run = move |batch| run_batch(runner.clone(), batch);
    match node.joins.submit(joining.event_id, joining, run).await {
        Ok(answer) => answer,
        // Its batch never ran: joining alone cannot place the user twice anyway.
        Err(joining) => join_alone(node, joining).await,
    }
}

/// A batch the coalescer gathered: every join gets its own answer.
async fn run_batch(node: Arc<Node>, batch: Vec<Pending<Joining, ApiResult<QueuePlace>>>) {
    let (joins, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.job, p.reply)).unzip();
    let answers = match join_group(&node, &joins).await {
        Ok(answers) => answers,
        Err(error) => {
            tracing::warn!(%error, size = joins.len(), "join batch failed; running its joins one by one");
            let alone = joins.iter().map(|j| join_alone(&node, *j));
            futures::future::join_all(alone).await
        }
    };
    for (reply, answer) in replies.into_iter().zip(answers) {
        let _ = reply.send(answer);
    }
}

/// A join in a transaction of its own.
async fn join_alone(node: &Node, joining: Joining) -> ApiResult<QueuePlace> {
    join_group(node, std::slice::from_ref(&joining))
        .await?
        .pop()
        .unwrap_or_else(|| Err(ApiError::Internal(anyhow::anyhow!("join answered nothing"))))
}

/// Joins of one event in one transaction, answered in their order. `Err` when the batch as a
/// whole failed (its joins may each be run again); a refusal every join shares (no queue,
/// closed) is each join's answer.
async fn join_group(node: &Node, joins: &[Joining]) -> ApiResult<Vec<ApiResult<QueuePlace>>> {
    let Some(first) = joins.first() else {
        return Ok(Vec::new());
    };
    let event_id = id_from_db(first.event_id)?;
    let mut conn = node.pool.acquire().await?;
    // A refusal every join of the batch shares, made again for each.
    let refused = |error: fn(String) -> ApiError| {
        Ok(joins
            .iter()
            .map(|_| Err(error(event_id.to_string())))
            .collect())
    };
    let mut tx = conn.begin().await?;
    match store::lock_for_joins(&mut tx, first.event_id).await? {
        None => {
            tx.rollback().await?;
            return match missing_queue(&mut conn, event_id).await {
                ApiError::QueueNotFound(_) => refused(ApiError::QueueNotFound),
                ApiError::NotFound(_) => refused(|id| ApiError::NotFound(format!("event {id}"))),
                other => Err(other),
            };
        }
        Some(true) => return refused(ApiError::QueueClosed),
        Some(false) => {}
    }
    let added = store::add_members(&mut tx, first.event_id, &arrivals(joins)).await?;
    tx.commit().await?;
    node.metrics.queue.joins.inc_by(added.max(0) as u64);
    let token = token_after_write(&mut conn, &node.config.region).await?;
    places(&mut conn, joins, &token).await
}

/// Each user once, in order of first arrival (a user may send two joins into one batch).
fn arrivals(joins: &[Joining]) -> Vec<i64> {
    let mut seen = HashSet::new();
    joins
        .iter()
        .map(|j| j.user_id)
        .filter(|user| seen.insert(*user))
        .collect()
}

/// The joiners' places as committed, read back on the primary in one statement, with the
/// write's token.
async fn places(
    conn: &mut PgConnection,
    joins: &[Joining],
    token: &str,
) -> ApiResult<Vec<ApiResult<QueuePlace>>> {
    let Some(first) = joins.first() else {
        return Ok(Vec::new());
    };
    let queue = store::queue(&mut *conn, first.event_id)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("queue vanished after a join")))?;
    let rows: HashMap<i64, PlaceRow> = store::places(&mut *conn, first.event_id, &arrivals(joins))
        .await?
        .into_iter()
        .map(|row| (row.user_id, row))
        .collect();
    let answers = joins
        .iter()
        .map(|joining| match rows.get(&joining.user_id) {
            Some(row) => {
                let mut place = QueuePlace::new(row, &queue);
                place.consistency_token = Some(token.to_owned());
                Ok(place)
            }
            None => Err(ApiError::Internal(anyhow::anyhow!(
                "user {} has no place after joining",
                joining.user_id
            ))),
        })
        .collect();
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_joining_twice_in_one_batch_arrives_once_at_their_first_place() {
        let join = |user_id| Joining {
            event_id: 1,
            user_id,
        };
        let batch = [join(5), join(3), join(5), join(9), join(3)];
        assert_eq!(arrivals(&batch), vec![5, 3, 9]);
    }
}
