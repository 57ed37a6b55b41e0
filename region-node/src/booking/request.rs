//! What a booking request asks for, checked before anything touches the database: the bodies
//! of reserve, confirm and cancel, the tiers a reserve wants, and a reserve made ready for the
//! claim (`Prepared`).

use std::collections::BTreeMap;

use id_gen::Id;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::booking::payment::PaymentSimulation;
use crate::error::{ApiError, ApiResult};

/// Hold tickets of one event: all the tiers asked for, or none.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"eventId": "386164735021809669",
                          "tickets": [{"tier": "VIP", "quantity": 2}, {"tier": "GA", "quantity": 1}]}))]
pub struct ReserveRequest {
    pub event_id: Id,
    /// At least one tier; a tier named twice counts twice.
    #[schema(min_items = 1)]
    pub tickets: Vec<TierQuantity>,
    /// The pass of an admitted place in the event's queue (`POST /events/{id}/queue/pass`):
    /// required when the event is queued, ignored when it is not.
    #[serde(default)]
    pub queue_pass: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierQuantity {
    /// A tier of the event, by name.
    pub tier: String,
    /// 1 to the event's `maxPerOrder` (at most 100), all tiers of the order together.
    #[schema(minimum = 1, maximum = 100)]
    pub quantity: i64,
}

/// Pay for a held booking (the payment is simulated).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"bookingId": "386164735021809670", "paymentSimulation": "success"}))]
pub struct ConfirmRequest {
    pub booking_id: Id,
    pub payment_simulation: PaymentSimulation,
}

/// Give a held or confirmed booking's tickets back.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"bookingId": "386164735021809670"}))]
pub struct CancelRequest {
    pub booking_id: Id,
}

/// One ordered tier, as stored in `bookings.lines`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub tier: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

/// A reserve checked and priced, ready for the claim: what a batch is made of.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub event_id: i64,
    pub booking_id: Id,
    pub user_id: Id,
    pub hold_seconds: i32,
    /// The event's per-user ticket cap in force (held and bought, across orders).
    pub max_tickets_per_user: i64,
    /// (tier, quantity), each tier once, in tier-name order.
    pub wanted: Vec<(String, i32)>,
    pub lines: Vec<Line>,
    pub total_cents: i64,
    pub quantity: i32,
    pub idempotency_key: Option<String>,
    /// The queue position the pass admitted (queued events only): one order per position.
    pub queue_position: Option<i64>,
}

/// Merges repeated tiers and checks quantities against the per-order maximum.
pub fn wanted_tiers(tickets: &[TierQuantity], max_per_order: i64) -> ApiResult<Vec<(String, i32)>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn want(tier: &str, quantity: i64) -> TierQuantity {
        TierQuantity {
            tier: tier.into(),
            quantity,
        }
    }

    #[test]
    fn repeated_tiers_merge_and_the_order_maximum_counts_them_all() {
        let wanted = wanted_tiers(&[want("VIP", 1), want("GA", 2), want("VIP", 3)], 10).unwrap();
        assert_eq!(wanted, [("GA".to_owned(), 2), ("VIP".to_owned(), 4)]);
        let error = wanted_tiers(&[want("VIP", 6), want("VIP", 5)], 10).unwrap_err();
        assert_eq!(
            error.to_string(),
            "at most 10 tickets per order, asked for 11"
        );
    }

    #[test]
    fn empty_orders_and_bad_quantities_are_refused() {
        assert!(wanted_tiers(&[], 10).is_err());
        for quantity in [0, -1, 11] {
            let error = wanted_tiers(&[want("GA", quantity)], 10).unwrap_err();
            assert!(error.to_string().contains("must be 1 to 10"), "{error}");
        }
    }
}
