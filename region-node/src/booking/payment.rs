//! The simulated payment provider. It takes time, so it always runs outside any transaction and
//! without a pooled connection.

use std::time::Duration;

use id_gen::Id;
use serde::{Deserialize, Serialize};

/// What the simulated payment provider answers: `success` pays, `fail` declines (the booking
/// becomes `payment_failed` and its tickets go back on sale).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PaymentSimulation {
    Success,
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentOutcome {
    Approved,
    Declined,
}

pub async fn charge(
    booking: Id,
    amount_cents: i64,
    simulation: PaymentSimulation,
    delay: Duration,
) -> PaymentOutcome {
    tokio::time::sleep(delay).await;
    let outcome = match simulation {
        PaymentSimulation::Success => PaymentOutcome::Approved,
        PaymentSimulation::Fail => PaymentOutcome::Declined,
    };
    tracing::info!(%booking, amount_cents, ?outcome, "payment simulated");
    outcome
}

/// Gives an approved payment back, when the hold lapsed while the payment ran.
pub async fn void(booking: Id, amount_cents: i64) {
    tracing::warn!(%booking, amount_cents, "payment voided: hold expired during payment");
}
