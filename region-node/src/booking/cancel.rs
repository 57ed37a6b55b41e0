//! Cancel: the owner gives a live hold back; its tickets are bookable at once.

use crate::booking::confirm::release;
use crate::booking::request::CancelRequest;
use crate::booking::store;
use crate::booking::views::BookingView;
use crate::error::{ApiError, ApiResult};
use crate::identity::auth::{AuthUser, Permissions};
use crate::ids::{ensure_home, id_from_db};
use crate::state::Node;

pub async fn cancel(
    node: &Node,
    caller: AuthUser,
    request: CancelRequest,
) -> ApiResult<BookingView> {
    let booking = request.booking_id;
    ensure_home(&node.config, booking)?;
    let mut conn = node.pool.acquire().await?;
    let row = store::find(&mut conn, booking).await?;
    caller.ensure_can_act_for(id_from_db(row.user_id)?, "booking")?;
    if row.status != "held" {
        return Err(ApiError::NotHeld {
            booking: booking.to_string(),
            status: row.status,
        });
    }
    // A lapsed hold is recorded as expired, not released: nothing was given back by the user.
    let new_status = if row.live { "released" } else { "expired" };
    if !release(node, &mut conn, booking, new_status).await? {
        let current = store::find(&mut conn, booking).await?;
        return Err(ApiError::NotHeld {
            booking: booking.to_string(),
            status: current.status,
        });
    }
    node.metrics.booking_outcome(new_status);
    let row = store::find(&mut conn, booking).await?;
    let token = node.event_written(&mut conn, row.event_id).await?;
    Ok(BookingView::new(row, Vec::new())?.with_token(token))
}
