//! Confirm: check the hold, pay with no transaction, lock or pooled connection held (payment
//! takes time; row locks must not wait on it), then one guarded transaction moves exactly the
//! booking's held, unexpired tickets to sold. A failed payment releases the tickets at once; a
//! hold that lapsed meanwhile sells nothing and the payment is voided.

use std::time::Duration;

use id_gen::Id;
use sqlx::{Connection, PgConnection};

use crate::booking::payment::{self, PaymentOutcome};
use crate::booking::request::ConfirmRequest;
use crate::booking::store;
use crate::booking::views::{BookingRow, BookingView};
use crate::error::{ApiError, ApiResult};
use crate::identity::auth::AuthUser;
use crate::ids::{ensure_home, id_from_db};
use crate::state::Node;

pub async fn confirm(
    node: &Node,
    caller: AuthUser,
    request: ConfirmRequest,
) -> ApiResult<BookingView> {
    let booking = request.booking_id;
    ensure_home(&node.config, booking)?;
    let row = {
        let mut conn = node.pool.acquire().await?;
        store::find(&mut conn, booking).await?
    };
    if let Err(refused) = ensure_live_hold(&row, caller) {
        // A lapse not yet recorded is recorded now; one the sweeper recorded stays as it is.
        if row.lapsed() && matches!(refused, ApiError::HoldExpired(_)) {
            let mut conn = node.pool.acquire().await?;
            release(node, &mut conn, booking, "expired").await?;
        }
        return Err(refused);
    }

    let outcome = payment::charge(
        booking,
        row.total_cents,
        request.payment_simulation,
        Duration::from_millis(node.config.booking.payment_delay_ms),
    )
    .await;

    let mut conn = node.pool.acquire().await?;
    if outcome == PaymentOutcome::Declined {
        release(node, &mut conn, booking, "payment_failed").await?;
        node.metrics.booking_outcome("payment_failed");
        let row = store::find(&mut conn, booking).await?;
        let token = node.event_written(&mut conn, row.event_id).await?;
        return Ok(BookingView::new(row, Vec::new())?.with_token(token));
    }
    sell(node, &mut conn, booking, &row).await
}

/// A held booking's owner (or an admin) may act on it while its hold is live; a hold that
/// lapsed is `hold_expired` before and after the sweeper records it.
fn ensure_live_hold(row: &BookingRow, caller: AuthUser) -> ApiResult<()> {
    caller.ensure_can_act_for(id_from_db(row.user_id)?, "booking")?;
    if row.hold_expired() {
        return Err(ApiError::HoldExpired(row.id.to_string()));
    }
    if row.status != "held" {
        return Err(ApiError::NotHeld {
            booking: row.id.to_string(),
            status: row.status.clone(),
        });
    }
    Ok(())
}

/// The paid booking's sale, in one transaction: all its tickets or nothing.
async fn sell(
    node: &Node,
    conn: &mut PgConnection,
    booking: Id,
    row: &BookingRow,
) -> ApiResult<BookingView> {
    let mut tx = conn.begin().await?;
    let sold = store::sell(&mut tx, booking).await?;
    let confirmed = if sold.len() == row.quantity as usize {
        store::mark_confirmed(&mut tx, booking).await?
    } else {
        None
    };
    let Some(confirmed) = confirmed else {
        // The hold lapsed (or was cancelled) while the payment ran: sell nothing, give the
        // money back, and tidy what is left of the hold.
        tx.rollback().await?;
        payment::void(booking, row.total_cents).await;
        node.metrics.booking_outcome("hold_expired");
        let current = store::find(conn, booking).await?;
        if current.status == "held" {
            release(node, conn, booking, "expired").await?;
        }
        // Still held, or the sweeper got to it first: either way its hold lapsed.
        if current.status == "held" || current.hold_expired() {
            return Err(ApiError::HoldExpired(booking.to_string()));
        }
        return Err(ApiError::NotHeld {
            booking: booking.to_string(),
            status: current.status,
        });
    };
    tx.commit().await?;
    node.metrics.tickets_sold.inc_by(sold.len() as u64);
    node.metrics.booking_outcome("confirmed");
    let token = node.event_written(conn, confirmed.event_id).await?;
    Ok(BookingView::new(confirmed, sold)?.with_token(token))
}

/// Ends a held booking with `new_status` and frees its tickets; false if it was no longer held.
pub async fn release(
    node: &Node,
    conn: &mut PgConnection,
    booking: Id,
    new_status: &str,
) -> ApiResult<bool> {
    match store::release(conn, booking, new_status).await? {
        Some(freed) => {
            node.metrics.tickets_released.inc_by(freed);
            Ok(true)
        }
        None => Ok(false),
    }
}
