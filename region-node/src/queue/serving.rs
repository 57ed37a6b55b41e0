//! The serving loop, a named background loop of the home node: every `queue.tick_ms` it draws
//! the lobbies that are due and advances the serving counters by the closed loop (admitted
//! users not yet done stay near the target, never faster than the rate). Each queue is worked
//! in a transaction of its own with its row locked `FOR UPDATE SKIP LOCKED`, so several nodes
//! of a region never draw or advance one queue twice. The admission count is `admit`, pure.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;

use crate::error::ApiResult;
use crate::queue::store;
use crate::state::Node;

/// What the closed loop decides from, at one tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopState {
    /// The set point of active users.
    pub target_active: i64,
    /// Admitted users not yet done (window open, no booking) plus live holds made with a pass.
    pub active: i64,
    /// Positions behind the counter (`last_position - serving`).
    pub waiting: i64,
    /// Admissions per second at most.
    pub max_rate: f64,
    /// Since the last advance.
    pub elapsed_seconds: f64,
    /// Fractional admissions carried from the last advance.
    pub credit: f64,
}

/// What one tick admits, and the credit it carries on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Admit {
    pub count: i64,
    pub credit: f64,
}

/// The closed loop: admit `min(waiting, target - active, credit + rate * elapsed)` whole
/// places; the fraction carries on. The accrued allowance is capped at one second's worth (at
/// least one place, so rates under one a second still admit), so a queue that stood still
/// (room full, nobody waiting) never bursts past the rate. Never negative, never past the
/// last position; nonsense inputs (negative, not finite) count as nothing.
pub fn admit(state: &LoopState) -> Admit {
    let sane = |x: f64| if x.is_finite() { x.max(0.0) } else { 0.0 };
    let rate = sane(state.max_rate);
    let cap = rate.max(1.0);
    let allowance = (sane(state.credit) + rate * sane(state.elapsed_seconds)).min(cap);
    let room = (state.target_active - state.active).max(0);
    let count = (allowance.floor() as i64)
        .min(room)
        .min(state.waiting.max(0))
        .max(0);
    Admit {
        count,
        credit: (allowance - count as f64).clamp(0.0, cap),
    }
}

/// Ticks every `queue.tick_ms`, forever (the node aborts it on shutdown); returns at once on
/// a node with `queue.serving_loop` off.
pub async fn run(node: Arc<Node>) {
    if !node.config.queue.serving_loop {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(node.config.queue.tick_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(error) = tick_once(&node).await {
            tracing::warn!(%error, "queue serving tick failed");
        }
    }
}

/// One pass over this primary's queues with work; a failure of one queue leaves the others.
pub async fn tick_once(node: &Node) -> ApiResult<()> {
    for event_id in store::due_queues(&node.pool).await? {
        if let Err(error) = work(node, event_id).await {
            tracing::warn!(%error, event_id, "queue draw or advance failed");
        }
    }
    Ok(())
}

/// Draws `event_id`'s lobby if due, then advances its counter if it has places waiting.
async fn work(node: &Node, event_id: i64) -> ApiResult<()> {
    let mut conn = node.pool.acquire().await?;
    let mut tx = conn.begin().await?;
    if store::lock_due_lobby(&mut tx, event_id).await? {
        let drawn = store::draw(&mut tx, event_id).await?;
        tx.commit().await?;
        tracing::info!(event_id, drawn, "queue opened: lobby drawn");
        // Admission starts from the next tick: the draw's time is the loop's first clock.
        return Ok(());
    }
    let Some(row) = store::lock_serving(&mut tx, event_id).await? else {
        return Ok(());
    };
    let active = store::active(&mut *tx, event_id).await?;
    let admitted = admit(&LoopState {
        target_active: row.target_active.into(),
        active,
        waiting: row.last_position - row.serving,
        max_rate: row.max_admit_per_second,
        elapsed_seconds: row.elapsed_seconds,
        credit: row.admit_credit,
    });
    // Nothing admitted, nothing written: the allowance keeps accruing from the last advance.
    if admitted.count == 0 {
        return Ok(());
    }
    store::advance(&mut tx, event_id, admitted.count, admitted.credit).await?;
    tx.commit().await?;
    node.metrics.queue.admitted.inc_by(admitted.count as u64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> LoopState {
        LoopState {
            target_active: 100,
            active: 0,
            waiting: 1_000,
            max_rate: 50.0,
            elapsed_seconds: 0.2,
            credit: 0.0,
        }
    }

    #[test]
    fn the_rate_bounds_a_tick_and_the_fraction_carries_on() {
        // 50/s for 0.2 s: 10 places.
        assert_eq!(
            admit(&state()),
            Admit {
                count: 10,
                credit: 0.0
            }
        );
        // 3/s for 0.5 s plus 0.25 carried: 1.75, so one place and 0.75 on.
        let slow = LoopState {
            max_rate: 3.0,
            elapsed_seconds: 0.5,
            credit: 0.25,
            ..state()
        };
        let admitted = admit(&slow);
        assert_eq!(admitted.count, 1);
        assert!((admitted.credit - 0.75).abs() < 1e-9);
    }

    #[test]
    fn the_target_bounds_a_tick_and_a_full_room_admits_nobody() {
        let nearly_full = LoopState {
            active: 97,
            ..state()
        };
        assert_eq!(admit(&nearly_full).count, 3);
        for active in [100, 150] {
            let full = LoopState { active, ..state() };
            assert_eq!(admit(&full).count, 0, "active {active}");
        }
    }

    #[test]
    fn never_past_the_last_position_and_never_negative() {
        let few = LoopState {
            waiting: 4,
            ..state()
        };
        assert_eq!(admit(&few).count, 4);
        let none = LoopState {
            waiting: 0,
            ..state()
        };
        assert_eq!(admit(&none).count, 0);
        let nonsense = LoopState {
            waiting: -5,
            active: 1_000_000,
            elapsed_seconds: -3.0,
            credit: -2.0,
            ..state()
        };
        let admitted = admit(&nonsense);
        assert_eq!(admitted.count, 0);
        assert!(admitted.credit >= 0.0);
        let not_finite = LoopState {
            elapsed_seconds: f64::NAN,
            credit: f64::INFINITY,
            max_rate: f64::NAN,
            ..state()
        };
        assert_eq!(admit(&not_finite).count, 0);
    }

    #[test]
    fn the_credit_is_capped_at_one_second_of_rate() {
        // Idle for an hour at 50/s: one second's worth, not 180,000.
        let idle = LoopState {
            elapsed_seconds: 3_600.0,
            target_active: 1_000_000,
            waiting: 1_000_000,
            ..state()
        };
        assert_eq!(admit(&idle).count, 50);
        // Room full for a long time: the carried credit is capped too.
        let full = LoopState {
            active: 100,
            elapsed_seconds: 3_600.0,
            ..state()
        };
        let admitted = admit(&full);
        assert_eq!(admitted.count, 0);
        assert_eq!(admitted.credit, 50.0);
    }

    #[test]
    fn a_rate_under_one_a_second_still_admits_in_time() {
        // 0.5/s: nothing after one second, one place after two.
        let slow = LoopState {
            max_rate: 0.5,
            elapsed_seconds: 1.0,
            ..state()
        };
        let after_one = admit(&slow);
        assert_eq!(after_one.count, 0);
        let after_two = admit(&LoopState {
            credit: after_one.credit,
            ..slow
        });
        assert_eq!(after_two.count, 1);
    }
}
